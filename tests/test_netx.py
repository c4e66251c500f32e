"""exporters/nir_to_netx.py and ``nirdeploy deploy``: the netx HDF5 loads in lava-dl netx, runs on
Lava's fixed-point models and spikes exactly like the emulator; what netx cannot express is refused
with the node named.

Lava is imported at module level on purpose: without Lava these tests must fail, not skip.
"""

import json
import sys
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
pytestmark = pytest.mark.lava

from exporters.nir_to_netx import netx_layers, read_description, write_netx  # noqa: E402
from simulators.lava_netx import run_netx  # noqa: E402
from simulators.emulator import emulate  # noqa: E402
from toolchain.loihi.plan import check_integer_inputs  # noqa: E402
from toolchain.errors import NirDeployError, UnsupportedNodeError  # noqa: E402
from toolchain.ir import Discretization, make_graph  # noqa: E402
from toolchain.program import lower  # noqa: E402
from toolchain.loihi.quantize import quantize  # noqa: E402

EULER = Discretization(dt=1e-3, scheme="euler", input_convention="impulse", v_init="v_reset")


def _in(n):
    return nir.Input(input_type={"input": np.array([n])})


def _out(n):
    return nir.Output(output_type={"output": np.array([n])})


def _lif(n, tau=1e-2, th=1.0, rng=None):
    th = np.full(n, th) if rng is None else rng.uniform(0.8, 1.5, n)
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=th, v_reset=np.zeros(n))


def _cuba(n, rng):
    return nir.CubaLIF(tau_syn=np.full(n, 5e-3), tau_mem=np.full(n, 1e-2), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=rng.uniform(1, 2, n), v_reset=np.zeros(n), w_in=np.ones(n))  # fmt: skip


def chain(rec_gain=None):
    """Affine (bias) -> LIF (per-neuron thresholds) -> Linear -> CubaLIF [-> recurrent Linear] -> Linear -> LIF."""
    rng = np.random.default_rng(3)
    nodes = {
        "input": _in(6),
        "fc1": nir.Affine(weight=rng.normal(0.3, 1, (12, 6)), bias=rng.normal(0, 0.1, 12)),
        "lif1": _lif(12, rng=rng),
        "fc2": nir.Linear(weight=rng.normal(0.2, 1, (9, 12))),
        "cuba": _cuba(9, rng),
        "fc3": nir.Linear(weight=rng.normal(0.2, 1, (4, 9))),
        "lif3": _lif(4, tau=2e-2),
        "output": _out(4),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "cuba"), ("cuba", "fc3"), ("fc3", "lif3"),
             ("lif3", "output")]  # fmt: skip
    if rec_gain is not None:  # no bias anywhere: without input every layer falls silent
        nodes["fc1"] = nir.Linear(weight=nodes["fc1"].weight)
        nodes["rec"] = nir.Linear(weight=rng.normal(-rec_gain, 0.2, (9, 9)))  # inhibitory: falls silent
        edges += [("cuba", "rec"), ("rec", "cuba")]
    return lower(make_graph(nodes, edges), EULER)


def _counts(prog, n=3, steps=24, seed=1, rate=0.7, tail=6):
    rng = np.random.default_rng(seed)
    shape = (n, steps) + tuple(prog.input_shape)
    x = (rng.random(shape) < 0.15).astype(float) if len(prog.input_shape) == 3 else rng.poisson(rate, shape).astype(float)
    x[:, steps - tail :] = 0  # every sample ends quietly
    x[1] = 0
    return x


def _layer_spikes(fx, desc, out):
    """(netx spikes, emulator spikes) per netx neuron layer, both in the netx layer's neuron order."""
    pairs = []
    layers = [l for l in desc["layers"] if l["type"] not in ("input", "flatten")]
    for i, l in enumerate(layers):
        g = fx.groups[fx.node_groups[l["node"]][0]]
        z = out["emu"]["spikes"][g.key]  # NIR order
        if l["type"] == "conv":  # netx: Lava's (W, H, C) order
            z = z[:, :, g.idx]  # process position p holds NIR neuron idx[p]
        pairs.append((l["node"], out["netx"]["spikes"][i], z))
    return pairs


def _run_both(prog, x, path, fx=None):
    fx = fx or quantize(prog)
    desc = write_netx(fx, str(path))
    return fx, desc, {"netx": run_netx(str(path), x), "emu": emulate(fx, check_integer_inputs(prog, x))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, conformance_file):
    d = tmp_path_factory.mktemp("netx")
    out = {}
    prog = chain()
    x = _counts(prog)
    out["chain"] = (prog, x) + _run_both(prog, x, d / "chain.net")
    prog = chain(rec_gain=1.0)
    x = _counts(prog, steps=36, tail=18)
    out["recurrent"] = (prog, x) + _run_both(prog, x, d / "rec.net")
    from toolchain.api import deploy

    cnn = conformance_file("cnn_sinabs.nir")
    fx, desc = deploy(str(cnn), str(d / "cnn.net"), dt=1e-3, input_convention="impulse")
    x = _counts(fx.program, n=2, steps=20, tail=4)
    out["cnn"] = (fx.program, x, fx, desc, {"netx": run_netx(str(d / "cnn.net"), x),
                                            "emu": emulate(fx, check_integer_inputs(fx.program, x))})  # fmt: skip
    out["dir"] = d
    return out


@pytest.mark.parametrize("name", ["chain", "recurrent", "cnn"])
def test_netx_network_spikes_exactly_like_the_emulator(runs, name):
    prog, x, fx, desc, out = runs[name]
    pairs = _layer_spikes(fx, desc, out)
    assert len(pairs) == len(prog.neurons())
    for node, netx_z, emu_z in pairs:
        assert emu_z.any(), f"{name}: layer {node} never spikes"
        assert netx_z.shape == emu_z.shape
        mism = np.argwhere(netx_z != emu_z)
        assert mism.size == 0, f"{name}: layer {node} differs at [sample, step, neuron] {mism[:5].tolist()}"


def test_recurrent_layer_is_dense_rec_and_silent_between_samples(runs):
    prog, x, fx, desc, out = runs["recurrent"]
    assert [l["type"] for l in desc["layers"]] == ["input", "dense", "dense_rec", "dense"]
    g = fx.groups[fx.node_groups["cuba"][0]]
    assert not out["emu"]["spikes"][g.key][:, -1].any()  # the precondition for streaming without a gate


def test_cnn_file_has_the_netx_layout(runs):
    prog, x, fx, desc, out = runs["cnn"]
    path = runs["dir"] / "cnn.net"
    with h5py.File(path, "r") as f:
        types = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", "conv", "flatten", "dense", "dense"]
        assert list(f["layer/0/shape"][()]) == [2, 34, 34]
        w = f["layer/1/weight"][()]
        assert w.dtype.kind == "i" and np.all(w % 2 == 0) and np.abs(w).max() <= 254
        assert list(f["layer/3/stride"][()]) == [2, 2] and f["layer/3/weight"].shape[2:] == (6, 6)  # pool folded
        n = f["layer/5/neuron"]
        assert n["type"][0].decode() == "CUBA" and int(n["iDecay"][()]) == 4096 and int(n["vDecay"][()]) == 0
    d = read_description(str(path))
    assert d["dt"] == 1e-3 and "reset_offset=1" in d["run"] and d["report"]["layers"][0]["node"] == "1"
    assert "Conv" in out["netx"]["network"] and "Dense" in out["netx"]["network"]


def test_deploy_command_writes_the_network_and_the_report(tmp_path, capsys, conformance_file):
    from toolchain.cli.main import main

    net, rep = tmp_path / "m.net", tmp_path / "m.json"
    code = main(["deploy", str(conformance_file("cnn_sinabs.nir")), "--dt", "1e-3", "--input-convention", "impulse",
                 "-o", str(net), "--report", str(rep)])  # fmt: skip
    assert code == 0 and net.exists()
    text = capsys.readouterr().out
    assert "wrote" in text and "reset_interval" in text and "Loihi fixed point" in text
    r = json.loads(rep.read_text())
    assert [l["node"] for l in r["quantization"]["layers"]] == ["1", "3", "6", "10", "12"]
    assert r["netx"]["layers"][1]["type"] == "conv"


def test_deploy_refusal_is_one_line(tmp_path, capsys):
    from toolchain.cli.main import main
    from toolchain.ir import save_graph

    rng = np.random.default_rng(6)
    li = nir.LI(tau=np.full(3, 1e-2), r=np.ones(3), v_leak=np.zeros(3))
    nodes = {"input": _in(2), "a": nir.Linear(weight=rng.normal(size=(3, 2))), "readout": li, "output": _out(3)}
    save_graph(make_graph(nodes, [("input", "a"), ("a", "readout"), ("readout", "output")]), tmp_path / "li.nir")
    code = main(["deploy", str(tmp_path / "li.nir"), "--dt", "1e-3", "-o", str(tmp_path / "x.net")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nirdeploy: error: node 'readout' (LI) does not spike")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.net").exists()


# --------------------------------------------------------------------------- refusals (no Lava run)
def _graph(nodes, edges, disc=EULER):
    return quantize(lower(make_graph(nodes, edges), disc))


def test_residual_connection_is_refused_naming_the_node():
    rng = np.random.default_rng(0)
    nodes = {"input": _in(3), "a": nir.Linear(weight=rng.normal(size=(4, 3))), "l1": _lif(4),
             "b": nir.Linear(weight=rng.normal(size=(4, 4))), "l2": _lif(4), "skip": nir.Linear(weight=rng.normal(size=(4, 3))),
             "output": _out(4)}  # fmt: skip
    edges = [("input", "a"), ("a", "l1"), ("l1", "b"), ("b", "l2"), ("input", "skip"), ("skip", "l2"), ("l2", "output")]
    with pytest.raises(UnsupportedNodeError, match="node 'l2' \\(LIF\\) receives input from 'input', 'l1'"):
        netx_layers(_graph(nodes, edges))


def test_several_time_constants_in_one_layer_are_refused():
    rng = np.random.default_rng(1)
    lif = nir.LIF(tau=np.array([1e-2, 2e-2, 1e-2]), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
                  v_reset=np.zeros(3))  # fmt: skip
    nodes = {"input": _in(2), "a": nir.Linear(weight=rng.normal(size=(3, 2))), "mixed": lif, "output": _out(3)}
    with pytest.raises(UnsupportedNodeError, match="node 'mixed' \\(LIF\\) has neurons with 2 different time constants"):
        netx_layers(_graph(nodes, [("input", "a"), ("a", "mixed"), ("mixed", "output")]))


def test_non_spiking_layer_is_refused():
    rng = np.random.default_rng(2)
    li = nir.LI(tau=np.full(3, 1e-2), r=np.ones(3), v_leak=np.zeros(3))
    nodes = {"input": _in(2), "a": nir.Linear(weight=rng.normal(size=(3, 2))), "readout": li, "output": _out(3)}
    with pytest.raises(UnsupportedNodeError, match="node 'readout' \\(LI\\) does not spike"):
        netx_layers(_graph(nodes, [("input", "a"), ("a", "readout"), ("readout", "output")]))


def test_linear_layer_after_the_last_neuron_is_refused():
    rng = np.random.default_rng(3)
    nodes = {"input": _in(2), "a": nir.Linear(weight=rng.normal(size=(3, 2))), "l1": _lif(3),
             "head": nir.Linear(weight=rng.normal(size=(2, 3))), "output": _out(2)}  # fmt: skip
    edges = [("input", "a"), ("a", "l1"), ("l1", "head"), ("head", "output")]
    with pytest.raises(UnsupportedNodeError, match="Output 'output' is computed from 'head'"):
        netx_layers(_graph(nodes, edges))


def test_pool_that_cannot_be_folded_is_refused_naming_it():
    rng = np.random.default_rng(4)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
        "c": nir.Conv2d(input_shape=None, weight=rng.normal(size=(2, 1, 3, 3)), stride=1, padding=1, dilation=1,
                        groups=1, bias=np.zeros(2)),  # fmt: skip
        "if1": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "if2": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "output": nir.Output(output_type={"output": np.array([2, 4, 4])}),
    }
    edges = [("input", "c"), ("c", "if1"), ("if1", "pool"), ("pool", "if2"), ("if2", "output")]
    with pytest.raises(UnsupportedNodeError, match="node 'pool' \\(SumPool2d\\).*no pool layer"):
        netx_layers(_graph(nodes, edges, Discretization(dt=1e-3, input_convention="impulse")))


def test_weight_exponents_of_the_loihi_profile_are_refused():
    rng = np.random.default_rng(5)
    nodes = {"input": _in(20), "a": nir.Linear(weight=rng.normal(0, 1e-6, (3, 20))), "l1": _lif(3), "output": _out(3)}
    prog = lower(make_graph(nodes, [("input", "a"), ("a", "l1"), ("l1", "output")]), EULER)
    with pytest.raises(NirDeployError, match="node 'l1' \\(LIF\\).*weight exponent -?\\d+, which netx"):
        netx_layers(quantize(prog, profile="loihi"))
