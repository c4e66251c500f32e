"""Host readouts: a graph whose last neuron layer does not spike (LI, CubaLI) deploys to a ``.net``
whose spiking part runs in lava-dl netx and whose readout runs on the host
(``exporters/nir_to_netx.py``: split_readout / host_readout, ``simulators/host_readout.py``), and
chip + host readout equals the emulator bit for bit.

The Lava tests import Lava inside their fixture: without Lava they fail (an error), they never
skip; the numpy tests run without it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from exporters.nir_to_netx import (  # noqa: E402
    READOUT_GROUP,
    host_readout,
    netx_layers,
    read_description,
    read_host_readout,
    split_readout,
    write_netx,
)
from simulators.emulator import emulate, run_emulator  # noqa: E402
from simulators.host_readout import run_host_readout  # noqa: E402
from toolchain.errors import UnsupportedNodeError  # noqa: E402
from toolchain.ir import Discretization, make_graph, save_graph  # noqa: E402
from toolchain.loihi.plan import check_integer_inputs  # noqa: E402
from toolchain.loihi.quantize import quantize  # noqa: E402
from toolchain.program import lower  # noqa: E402

#: norse's LIFCell / LICell: euler, impulse input (docs/discretization.md)
NORSE = Discretization(dt=1e-3, scheme="euler", input_convention="impulse", v_init="v_reset")
N_IN, N_H, N_O = 10, 24, 6


def _cuba_lif(n, rng):
    return nir.CubaLIF(tau_syn=np.full(n, 5e-3), tau_mem=np.full(n, 1e-2), r=np.ones(n), v_leak=np.zeros(n),
                       v_threshold=rng.uniform(0.8, 1.2, n), v_reset=np.zeros(n), w_in=np.ones(n))  # fmt: skip


def norse_graph(readout: str, seed: int = 0, li_taus=(2e-2,)):
    """input -> Linear -> CubaLIF -> Linear/Affine -> CubaLI (LICell) or LI (LIBoxCell) -> Output.

    ``li_taus``: the LI readout's time constants, spread over its neurons (several: several groups)."""
    rng = np.random.default_rng(seed)
    if readout == "CubaLI":
        head = nir.CubaLI(tau_syn=np.full(N_O, 5e-3), tau_mem=np.full(N_O, 2e-2), r=np.ones(N_O), v_leak=np.zeros(N_O),
                          w_in=np.ones(N_O))  # fmt: skip
        fc2 = nir.Linear(weight=rng.normal(0.0, 1.0, (N_O, N_H)))  # no bias: not yet into a two-state current
    else:
        tau = np.resize(np.asarray(li_taus, dtype=float), N_O)
        head = nir.LI(tau=tau, r=np.ones(N_O), v_leak=np.full(N_O, 0.1))
        fc2 = nir.Affine(weight=rng.normal(0.0, 1.0, (N_O, N_H)), bias=rng.normal(0, 0.3, N_O))
    nodes = {
        "input": nir.Input(input_type={"input": np.array([N_IN])}),
        "fc1": nir.Linear(weight=rng.normal(5e-4, 2e-3, (N_H, N_IN))),
        "lif": _cuba_lif(N_H, rng),
        "fc2": fc2,
        "head": head,
        "output": nir.Output(output_type={"output": np.array([N_O])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "head"), ("head", "output")]
    return make_graph(nodes, edges)


def conv_graph(seed: int = 1):
    """Conv2d -> LIF (3D, netx conv layer: Lava's (W, H, C) neuron order) -> Flatten -> Linear -> LI."""
    rng = np.random.default_rng(seed)
    C, H, W = 3, 6, 6
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, H, W])}),
        "conv": nir.Conv2d(input_shape=None, weight=rng.normal(0.004, 0.02, (C, 1, 3, 3)), stride=1, padding=1,
                           dilation=1, groups=1, bias=np.zeros(C)),  # fmt: skip
        "lif": nir.LIF(tau=np.full((C, H, W), 1e-2), r=np.ones((C, H, W)), v_leak=np.zeros((C, H, W)),
                       v_threshold=np.ones((C, H, W)), v_reset=np.zeros((C, H, W))),  # fmt: skip
        "flat": nir.Flatten(input_type={"input": np.array([C, H, W])}, start_dim=0),
        "fc": nir.Linear(weight=rng.normal(0.0, 1.0, (N_O, C * H * W))),
        "head": nir.LI(tau=np.full(N_O, 2e-2), r=np.ones(N_O), v_leak=np.zeros(N_O)),
        "output": nir.Output(output_type={"output": np.array([N_O])}),
    }
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "fc"), ("fc", "head"), ("head", "output")]
    return make_graph(nodes, edges)


def _counts(prog, n, steps, seed=2, rate=0.5):
    rng = np.random.default_rng(seed)
    return rng.poisson(rate, (n, steps) + tuple(prog.input_shape)).astype(float)


def _chip_spikes(fx, layers, emu):
    """The emulator's spikes of the last spiking layer, in netx's neuron order (what the chip sends)."""
    chip, _ = split_readout(fx)
    g = fx.groups[fx.node_groups[chip[-1]][0]]
    z = emu["spikes"][g.key]  # NIR order
    conv = [l for l in layers if l.get("node") == chip[-1]][-1]["type"] == "conv"
    return z[:, :, g.idx] if conv else z


def _assert_equal(name, got, want):
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{name} differs at {bad[:5].tolist()} ({bad.shape[0]} places)"


def _check_against_emulator(fx, x, chip_spikes, host, emu, res):
    """host readout (of ``chip_spikes``) == emulator: integer v, v in NIR units, outputs."""
    _, readout = split_readout(fx)
    for node in readout:
        for k in fx.node_groups[node]:
            assert np.abs(emu["v"][k]).max() > 1000, f"readout {k} barely moves: the test would prove little"
            _assert_equal(f"v_int[{k}]", host["v_int"][k], emu["v"][k])
        _assert_equal(f"v[{node}]", host["v"][node], res.v[node])
    assert set(host["outputs"]) == set(res.outputs)
    for o in res.outputs:
        _assert_equal(f"output {o}", host["outputs"][o], res.outputs[o])


# --------------------------------------------------------------------------- numpy only (no Lava)
@pytest.mark.parametrize("case", ["CubaLI", "LI", "LI, two time constants", "conv -> LI"])
def test_host_readout_equals_the_emulator(tmp_path, case):
    graph = conv_graph() if case.startswith("conv") else norse_graph(
        case.split(",")[0], li_taus=(2e-2, 5e-3) if "two" in case else (2e-2,))  # fmt: skip
    prog = lower(graph, NORSE)
    fx = quantize(prog)
    if "two" in case:
        assert len(fx.node_groups["head"]) == 2  # two readout groups: their neuron order matters
    desc = write_netx(fx, str(tmp_path / "m.net"))
    ro = read_host_readout(str(tmp_path / "m.net"))  # what the host reads back from the file
    x = _counts(prog, n=64, steps=40)
    xi = check_integer_inputs(prog, x)
    emu = emulate(fx, xi)
    res = run_emulator(prog, x, quant=fx, record_v=True)
    z = _chip_spikes(fx, netx_layers(fx), emu)
    assert 0.02 < z.mean() < 0.6, f"hidden spike rate {z.mean():.3f}"
    host = run_host_readout(ro, z)
    _check_against_emulator(fx, x, z, host, emu, res)
    assert desc["host_readout"]["nodes"][0]["node"] == "head"


def test_host_readout_detects_a_wrong_chip_output(tmp_path):
    """The comparison can fail: one spike fewer on the chip changes the readout's v."""
    prog = lower(norse_graph("CubaLI"), NORSE)
    fx = quantize(prog)
    ro = host_readout(fx)
    x = _counts(prog, n=4, steps=30)
    emu = emulate(fx, check_integer_inputs(prog, x))
    z = _chip_spikes(fx, netx_layers(fx), emu).copy()
    key = fx.node_groups["head"][0]
    assert np.array_equal(run_host_readout(ro, z)["v_int"][key], emu["v"][key])
    s, t, i = np.argwhere(z)[len(np.argwhere(z)) // 2]
    z[s, t, i] = False
    assert not np.array_equal(run_host_readout(ro, z)["v_int"][key], emu["v"][key])


def test_the_file_stores_the_readout_and_the_description_says_host_readout(tmp_path):
    prog = lower(norse_graph("CubaLI"), NORSE)
    fx = quantize(prog)
    path = tmp_path / "m.net"
    desc = write_netx(fx, str(path))
    assert [l["type"] for l in desc["layers"]] == ["input", "dense"]  # the readout is no netx layer
    d = read_description(str(path))
    hr = d["host_readout"]
    assert hr["nodes"] == [{"node": "head", "type": "CubaLI", "shape": [N_O]}]
    assert "host" in hr["runs"] and "integer" in hr["runs"] and hr["data"] == "/" + READOUT_GROUP
    assert hr["outputs"] == {"output": "head"} and "'lif'" in hr["input"]
    g, c = fx.groups[fx.node_groups["head"][0]], fx.conns_into(fx.node_groups["head"][0])[0]
    with h5py.File(path, "r") as f:
        assert sorted(f["layer"].keys()) == ["0", "1"]
        h = f[READOUT_GROUP + "/groups/0"]
        assert int(h.attrs["du"]) == g.du and int(h.attrs["dv"]) == g.dv and float(h.attrs["scale"]) == g.scale
        assert h.attrs["node"] == "head" and int(h.attrs["lag"]) == 0
        np.testing.assert_array_equal(h["weight"][()], c.weights)  # dense: netx's order is NIR order
        np.testing.assert_array_equal(h["bias_mant"][()], g.bias_mant)


def test_readout_that_does_not_read_the_last_spiking_layer_is_refused():
    rng = np.random.default_rng(4)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "a": nir.Linear(weight=rng.normal(size=(4, 3))),
        "l1": nir.LIF(tau=np.full(4, 1e-2), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4), v_reset=np.zeros(4)),
        "b": nir.Linear(weight=rng.normal(size=(2, 4))),
        "skip": nir.Linear(weight=rng.normal(size=(2, 3))),
        "head": nir.LI(tau=np.full(2, 1e-2), r=np.ones(2), v_leak=np.zeros(2)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "a"), ("a", "l1"), ("l1", "b"), ("b", "head"), ("input", "skip"), ("skip", "head"),
             ("head", "output")]  # fmt: skip
    fx = quantize(lower(make_graph(nodes, edges), NORSE))
    with pytest.raises(UnsupportedNodeError, match=r"node 'head' \(LI\) does not spike and is fed by 'input', 'l1'.*"
                                                   r"last spiking layer 'l1' alone.*--backend emulator"):  # fmt: skip
        netx_layers(fx)


def test_deploy_command_says_the_readout_runs_on_the_host(tmp_path):
    save_graph(norse_graph("CubaLI"), tmp_path / "m.nir")
    net, rep = tmp_path / "m.net", tmp_path / "m.json"
    p = subprocess.run(
        [sys.executable, "-m", "toolchain.cli.main", "deploy", str(tmp_path / "m.nir"), "--dt", "1e-3",
         "--input-convention", "impulse", "-o", str(net), "--report", str(rep)],
        capture_output=True, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    line = [l for l in p.stdout.splitlines() if "on the host" in l]
    assert line and "on the chip: 'lif'" in line[0] and "readout 'head' (CubaLI)" in line[0], p.stdout
    r = json.loads(rep.read_text())
    assert r["netx"]["host_readout"]["nodes"][0]["node"] == "head"
    assert read_host_readout(str(net)) is not None


# --------------------------------------------------------------------------- in lava-dl netx
@pytest.fixture(scope="module")
def netx_runs(tmp_path_factory):
    import simulators.lava_runtime  # noqa: F401  (imports Lava: a missing Lava fails here, never skips)
    from simulators.lava_netx import run_netx
    from toolchain.api import deploy

    d = tmp_path_factory.mktemp("host_readout")
    out = {}
    for readout in ("CubaLI", "LI"):
        save_graph(norse_graph(readout), d / f"{readout}.nir")
        path = d / f"{readout}.net"
        fx, desc = deploy(str(d / f"{readout}.nir"), str(path), dt=1e-3, input_convention="impulse",
                          scheme="euler")  # fmt: skip
        x = _counts(fx.program, n=3, steps=25, seed=5)
        x[1, 10:] = 0  # a sample that falls quiet
        out[readout] = (fx, desc, x, path, run_netx(str(path), x))
    return out


@pytest.mark.lava
@pytest.mark.parametrize("readout", ["CubaLI", "LI"])
def test_netx_chip_plus_host_readout_equals_the_emulator(netx_runs, readout):
    fx, desc, x, path, net = netx_runs[readout]
    prog = fx.program
    emu = emulate(fx, check_integer_inputs(prog, x))
    res = run_emulator(prog, x, quant=fx, record_v=True)
    chip, _ = split_readout(fx)
    assert len(net["spikes"]) == len(chip) == 1  # netx loaded the file: one neuron layer, no readout layer
    z = _chip_spikes(fx, netx_layers(fx), emu)
    assert 0.02 < z.mean() < 0.6
    _assert_equal("chip spikes", net["spikes"][-1], z)
    assert "host_readout" in net, "run_netx did not apply the file's host readout"
    _check_against_emulator(fx, x, z, net["host_readout"], emu, res)
    assert "host_readout" in desc and "Dense" in net["network"]
