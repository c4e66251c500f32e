"""``import-netx`` (``api.import_netx``): a lava-dl netx ``.net`` -> a float NIR graph whose ``deploy``
gives back the file's integers (as netx uses them: weights after optimize_weight_bits, weight
exponents and bits, biases, iDecay, vDecay, vThMant) and whose emulator run gives the file's spikes
in every layer; retime and deploy of the imported graph work (new decays).

Files: written by lava-dl's own ``export_hdf5`` from SLAYER blocks with random weights
(tests/test_netx_import.py: cuba Conv, Conv stride 2, Flatten, Dense, Recurrent = dense_rec, Dense
with a negative weight exponent, biases) and lava-dl's PilotNet (conformance material).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
pytestmark = pytest.mark.lava

from test_netx_import import PILOTNET, _counts, slayer_net  # noqa: E402

from toolchain import api  # noqa: E402
from toolchain.errors import NirDeployError  # noqa: E402
from toolchain.ir import graph_metadata  # noqa: E402
from toolchain.loihi.netx_read import read_netx  # noqa: E402


def _same_integers(a, b):
    """Every layer of netx networks ``a`` and ``b`` has the integers netx runs (an absent bias = zeros)."""
    assert [L.type for L in a.layers] == [L.type for L in b.layers]
    assert a.bias_input == b.bias_input
    for La, Lb in zip(a.layers, b.layers):
        assert int(np.prod(La.shape)) == int(np.prod(Lb.shape)) and (La.type == "flatten" or La.shape == Lb.shape), La.index
        for q in ("iDecay", "vDecay", "vThMant"):
            assert La.neuron.get(q) == Lb.neuron.get(q), (La.index, q)
        for q in ("w_eff", "w_rec_eff"):
            x, y = getattr(La, q), getattr(Lb, q)
            assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), (La.index, q)
        if La.type == "conv":
            assert np.array_equal(La.weight, Lb.weight), La.index
            assert (La.stride, La.padding, La.dilation, La.groups) == (Lb.stride, Lb.padding, Lb.dilation, Lb.groups)
        assert (La.weight_exp, La.num_weight_bits, La.graded_in) == (Lb.weight_exp, Lb.num_weight_bits, Lb.graded_in)
        ba = np.zeros(La.n, np.int64) if La.bias is None else La.bias
        bb = np.zeros(Lb.n, np.int64) if Lb.bias is None else Lb.bias
        if La.has_neuron and La.type != "input":
            assert np.array_equal(ba, bb), La.index


def _same_spikes(path, graph, x):
    _, prog = api.load_netx(path)
    _, prog2 = api.lower(graph)
    ref = api.simulate(prog, x, "emulator")
    got = api.simulate(prog2, x, "emulator")
    assert set(ref.spikes) <= set(got.spikes)
    for k in ref.spikes:
        assert np.array_equal(ref.spikes[k], got.spikes[k]), k
    return ref


@pytest.mark.parametrize("rec", [True, False], ids=["dense_rec", "biases"])
def test_slayer_import_deploy_gives_the_files_integers(tmp_path, rec):
    path = slayer_net(str(tmp_path / "slayer.net"), rec=rec)
    net = read_netx(path)
    assert any(L.weight_exp < 0 for L in net.layers) and any(L.bias is not None for L in net.layers)
    out = str(tmp_path / "imp.nir")
    api.import_netx(path, 1e-3, output=out)
    fx, _ = api.deploy(out, str(tmp_path / "back.net"))
    assert {g.limit for g in fx.groups.values()} == {"scale hint"}
    _same_integers(net, read_netx(str(tmp_path / "back.net")))
    # without the hint the quantizer picks other scales: the round trip is the hint's doing
    graph = api.load(out)
    graph.metadata.pop("quantization_hint")
    api.deploy(graph, str(tmp_path / "plain.net"))
    with pytest.raises(AssertionError):
        _same_integers(net, read_netx(str(tmp_path / "plain.net")))
    ref = _same_spikes(path, api.load(out), _counts(api.load_netx(path)[1], 2, 12))
    assert all(s.any() for s in ref.spikes.values())


@pytest.mark.skipif(not PILOTNET.exists(), reason="conformance material not checked out")
def test_pilotnet_import_deploy_and_emulator(tmp_path):
    """lava-dl's PilotNet: a bias-driven input layer (written back as an input layer with neurons),
    five convs, dense layers with negative weight exponents, a non-spiking last layer (vThMant 2^17 - 1)."""
    net = read_netx(str(PILOTNET))
    graph = api.import_netx(str(PILOTNET), 1e-3)
    fx, desc = api.deploy(graph, str(tmp_path / "back.net"))
    back = read_netx(str(tmp_path / "back.net"))
    assert back.bias_input and desc["layers"][0]["type"] == "input" and "bias_mant" in desc["input_order"]
    _same_integers(net, back)
    img = np.random.default_rng(0).integers(0, 256, (1, 3, 66, 200))
    ref = _same_spikes(str(PILOTNET), graph, np.repeat(img[:, None], 4, axis=1).astype(float))
    assert ref.spikes["layer5"].any()


def test_metadata_retime_and_deploy(tmp_path):
    path = slayer_net(str(tmp_path / "s.net"), rec=False)
    out = str(tmp_path / "imp.nir")
    api.import_netx(path, 1e-3, output=out)
    meta = api.inspect(out)["metadata"]
    src = meta["imported_from"]
    import hashlib

    assert src["file"] == "s.net" and src["dt"] == 1e-3
    assert src["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert meta["netx"]["layers"]["layer6"]["weight_exp"] == read_netx(path).layers[6].weight_exp
    path = slayer_net(str(tmp_path / "nobias.net"), rec=False, biases=False)  # (a retime also scales biases)
    out = str(tmp_path / "nobias.nir")
    api.import_netx(path, 1e-3, output=out)
    orig = read_netx(path).neuron_layers

    def eff(L):  # the integer weight netx applies per input (exponent applied)
        return (L.w_eff * 2.0**L.weight_exp) if L.w_eff is not None else L.weight.astype(float)

    # euler at dt / 2: the per-step decays halve (decay = dt / tau) for both methods. exact keeps the
    # charge of an input count in u (w_in / rho) and halves its step into v (dv r): the SLAYER
    # weights (even) halve exactly, so the scale hint still holds (thresholds unchanged). tau also
    # halves the step into u: weights / 4 are not all integers, so the usual scale is chosen
    # (more precision) and weight / threshold is a quarter of the file's.
    for method, factor in (("exact", 0.5), ("tau", 0.25)):
        api.retime(out, 5e-4, method, output=str(tmp_path / f"{method}.nir"))
        fx, _ = api.deploy(str(tmp_path / f"{method}.nir"), str(tmp_path / f"{method}.net"))
        r = read_netx(str(tmp_path / f"{method}.net"))
        assert r.dt == pytest.approx(5e-4)
        assert {g.limit == "scale hint" for g in fx.groups.values()} == {method == "exact"}
        for La, Lb in zip(orig, r.neuron_layers):
            assert Lb.neuron["iDecay"] == round(La.neuron["iDecay"] / 2)
            assert abs(Lb.neuron["vDecay"] - La.neuron["vDecay"] / 2) <= 0.5
            want = eff(La) / La.neuron["vThMant"] * factor
            got = eff(Lb) / Lb.neuron["vThMant"]
            if method == "exact":
                assert Lb.neuron["vThMant"] == La.neuron["vThMant"] and np.array_equal(eff(Lb), eff(La) * factor)
            assert np.max(np.abs(got - want)) <= 0.01 * np.max(np.abs(want)), (method, La.index)


def test_nirdeploy_written_net_round_trip(tmp_path):
    """A .net that nirdeploy deploy wrote (a bias unit as an extra input element, a CubaLIF layer, per-layer
    scales other than 4096) imports and deploys back to the same integers; the emulator gives its spikes."""
    from test_netx import _counts as counts, chain

    prog = chain()
    a = str(tmp_path / "a.net")
    api.deploy_program(prog, a)
    graph = api.import_netx(a, prog.disc.dt)
    assert graph_metadata(graph)["imported_from"]["written_by"] == "nirdeploy"
    api.deploy(graph, str(tmp_path / "b.net"))
    _same_integers(read_netx(a), read_netx(str(tmp_path / "b.net")))
    _, pa = api.load_netx(a)
    x = counts(pa, n=3, steps=20)
    x[..., -1] = 1  # the bias unit's input element
    ref = _same_spikes(a, graph, x)
    assert all(s.any() for s in ref.spikes.values())


def test_refusals(tmp_path):
    path = slayer_net(str(tmp_path / "s.net"))
    import h5py

    graded = str(tmp_path / "graded.net")
    slayer_net(graded)
    with h5py.File(graded, "r+") as f:
        f["layer/4/neuron"].create_dataset("messageBits", data=3)
    with pytest.raises(NirDeployError, match="layer 4 sends graded spikes"):
        api.import_netx(graded, 1e-3)
    with pytest.raises(NirDeployError, match="positive"):
        api.import_netx(path, -1e-3)
    nir_file = str(tmp_path / "g.nir")
    api.import_netx(path, 1e-3, output=nir_file)
    with pytest.raises(NirDeployError, match="not a lava-dl netx"):
        api.import_netx(nir_file, 1e-3)
    with pytest.raises(NirDeployError, match="not a run record: run it first"):
        api.report(path, str(tmp_path / "r.html"))

    with h5py.File(path, "r+") as f:  # lava-dl's tutorial layout (blocks from /layer/0) with a conv first
        del f["layer/0"]
    with pytest.raises(NirDeployError, match="the first layer is a conv layer, not an input layer"):
        read_netx(path)


def test_cli_import_netx(tmp_path):
    path = slayer_net(str(tmp_path / "cli.net"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "cli.nir"
    r = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "import-netx", path, "--dt", "0.001", "-o", str(out)],
                       capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "layer5" in r.stdout
    assert graph_metadata(api.load(str(out)))["imported_from"]["file"] == "cli.net"
    r = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "import-netx", str(out), "--dt", "0.001", "-o",
                        str(tmp_path / "x.nir")], capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)  # fmt: skip
    assert r.returncode != 0 and "not a lava-dl netx" in r.stderr and "Traceback" not in r.stderr


def dense_net(path, seed=0):
    """SLAYER cuba Dense 40 -> 16 -> 10 (random weights, lava-dl's export_hdf5): the default data's shape."""
    import h5py
    import torch
    import lava.lib.dl.slayer as slayer

    torch.manual_seed(seed)
    p = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.05, "requires_grad": False}
    blocks = [slayer.block.cuba.Dense(p, 40, 16, weight_scale=2), slayer.block.cuba.Dense(p, 16, 10, weight_scale=2)]
    with torch.no_grad():
        x = torch.rand(1, 40, 4)
        for b in blocks:
            x = b(x)
    with h5py.File(path, "w") as f:
        lay = f.create_group("layer")
        h = lay.create_group("0")
        h.create_dataset("type", (1,), "S10", [b"input"])
        h.create_dataset("shape", data=np.array([40]))
        for i, b in enumerate(blocks):
            b.export_hdf5(lay.create_group(str(i + 1)))
    return path


def test_sweep_and_report_of_a_net(tmp_path):
    """nirdeploy sweep NET.net: the float view imported at the file's dt (1 ms: lava-dl files record
    none), said in the output and in sweep.json; the cell at rho = 1 runs the file's integers (its
    spike count equals the emulator's on the .net); report renders the sweep and a .net run record."""
    path = dense_net(str(tmp_path / "d.net"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "sw"
    r = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "sweep", path, "--data", "default", "--dt", "0.001,0.002",
                        "--method", "tau", "--backend", "emulator", "--samples", "3", "--workers", "1", "-o", str(out), "-q"],
                       capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "is a lava-dl netx network: swept as its float NIR view at dt=0.001 s" in r.stdout
    import json

    sw = json.loads((out / "sweep.json").read_text())
    assert sw["imported_from"]["file"] == "d.net" and sw["source_dt"] == pytest.approx(1e-3)
    _, prog = api.load_netx(path)
    x = api.load_inputs(prog, data="default", samples=3)["x"]
    res = api.simulate(prog, x, "emulator")
    row = next(r for r in sw["rows"] if r["dt"] == pytest.approx(1e-3))
    assert row["spikes_per_sample"] == pytest.approx(sum(float(s.sum()) for s in res.spikes.values()) / 3)
    rep = api.report(str(out), str(tmp_path / "sw.html"))
    assert os.path.getsize(rep["paths"]["html"]) > 0
    sw2 = api.sweep(path, "default", [2e-3], ["tau"], backend="emulator", output=str(tmp_path / "sw2"), source_dt=2e-3,
                    samples=2, workers=1, progress=False)  # fmt: skip
    assert sw2["imported_from"]["dt"] == pytest.approx(2e-3) and sw2["source_dt"] == pytest.approx(2e-3)
    assert graph_metadata(api.load(sw2["imported_from"]["graph"]))["dt"] == pytest.approx(2e-3)
    rec = api.run_record(res, prog, labels=api.load_inputs(prog, data="default", samples=3)["labels"], model=path)
    from toolchain.analysis.records import write_json

    write_json(rec, str(tmp_path / "run.json"))
    rep = api.report(str(tmp_path / "run.json"), str(tmp_path / "run.html"))
    assert "energy" in Path(rep["paths"]["html"]).read_text().lower()


def test_odd_weights_lava_fixed_equals_emulator(tmp_path):
    """A file with odd mixed-sign weights (netx keeps them): the imported graph quantizes to those
    odd integers, and lava-fixed (Lava's Dense, num_weight_bits 9) == emulator; with Lava's default
    8 bits the last bit would be truncated."""
    import h5py

    path = dense_net(str(tmp_path / "odd.net"))
    with h5py.File(path, "r+") as f:
        w = np.asarray(f["layer/1/weight"][()])
        f["layer/1/weight"][...] = np.where(w > 0, w + 1, w)  # odd positives
    net = read_netx(path)
    assert np.any(net.layers[1].weight % 2) and net.layers[1].weight.min() < 0
    graph = api.import_netx(path, 1e-3)
    _, prog = api.lower(graph)
    fx = api.quantize(prog)
    assert any(np.any(c.weights % 2) for c in fx.conns)
    x = _counts(prog, 2, 10)
    emu = api.simulate(prog, x, "emulator")
    lava = api.simulate(prog, x, "lava-fixed")
    assert emu.spikes["layer2"].any()
    for k in emu.spikes:
        assert np.array_equal(emu.spikes[k], lava.spikes[k]), k
    ref = api.simulate(api.load_netx(path)[1], x, "emulator")
    for k in ref.spikes:
        assert np.array_equal(ref.spikes[k], emu.spikes[k]), k


def test_calibrated_deploy_keeps_the_hint(tmp_path):
    """deploy --data of an imported graph: the states are measured and reported, the hinted scales
    (the file's integers) stay."""
    path = slayer_net(str(tmp_path / "s.net"), rec=False)
    graph = api.import_netx(path, 1e-3)
    _, prog = api.lower(graph)
    fx, _ = api.deploy(graph, str(tmp_path / "c.net"), calib_inputs=_counts(prog, 2, 8))
    assert {g.limit for g in fx.groups.values()} == {"scale hint"}
    assert "calibration" in fx.report and all(l["seen_max_abs_v"] > 0 for l in fx.report["layers"])
    _same_integers(read_netx(path), read_netx(str(tmp_path / "c.net")))
