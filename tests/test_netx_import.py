"""Reading lava-dl netx ``.net`` files (toolchain/loihi/netx_read.py): files written by lava-dl's own
``export_hdf5`` and by ``nirdeploy deploy`` go through one reader; the emulator runs their integers
bit-exactly what lava-dl netx computes on Lava's fixed-point models; PilotNet (bias-driven input layer)
inspects and runs; the CLI reads a .net.

Lava is imported at module level on purpose: without Lava these tests must fail, not skip.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here)
import lava.lib.dl.slayer as slayer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
pytestmark = pytest.mark.lava

from toolchain import api  # noqa: E402
from toolchain.errors import NirDeployError, UnsupportedNodeError  # noqa: E402
from toolchain.loihi.netx_read import read_netx  # noqa: E402

PILOTNET = ROOT.parent / "shared" / "conformance" / "lava-dl" / "pilotnet_lif.net"


def slayer_net(path, seed=0, biases=True, rec=True):
    """A SLAYER CUBA network with random weights exported by lava-dl's own export_hdf5: Conv (padding),
    Conv (stride 2), Flatten, Dense, Recurrent (dense_rec), Dense with small weights (negative weight
    exponent). SLAYER blocks export no bias; the biases netx reads (as in lava-dl's PilotNet file) are
    added as 'bias' datasets. With ``rec`` only the last layer has a bias: a biased layer in front of a
    dense_rec layer spikes before its first window in netx, and netx's dense_rec carries those spikes
    into its first step (docs/fixed-point.md section 3), which the emulator (every sample from zero
    state) does not model; without ``rec`` layer 5 is a plain Dense and layers 1, 4, 6 have biases."""
    torch.manual_seed(seed)
    p = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.05, "requires_grad": False}
    cuba = slayer.block.cuba
    blocks = torch.nn.ModuleList([
        cuba.Conv(p, 2, 4, 3, padding=1, stride=1, weight_scale=2),
        cuba.Conv(p, 4, 6, 3, padding=0, stride=2, weight_scale=2),
        cuba.Flatten(),
        cuba.Dense(p, 6 * 3 * 3, 16, weight_scale=4),
        cuba.Recurrent(p, 16, 10, weight_scale=4) if rec else cuba.Dense(p, 16, 10, weight_scale=4),
        cuba.Dense(p, 10, 6, weight_scale=1),
    ])  # fmt: skip
    with torch.no_grad():  # one forward pass sets the neuron shapes
        x = (torch.rand(1, 2, 8, 8, 4) < 0.3).float()
        for b in blocks:
            x = b(x)
        blocks[5].synapse.weight.mul_(0.08)  # small weights: netx shifts them and uses a negative exponent
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        lay = f.create_group("layer")
        h = lay.create_group("0")
        h.create_dataset("type", (1,), "S10", [b"input"])
        h.create_dataset("shape", data=np.array([2, 8, 8]))
        for i, b in enumerate(blocks):
            b.export_hdf5(lay.create_group(str(i + 1)))
        if biases and not rec:
            lay["1"].create_dataset("bias", data=rng.integers(-20, 40, 4).astype(np.float32))  # per channel
            lay["4"].create_dataset("bias", data=rng.integers(-10, 60, 16).astype(np.float32))
        if biases:
            lay["6"].create_dataset("bias", data=rng.integers(0, 50, 6).astype(np.float32))
    return path


def _counts(prog, n, steps, seed=1, tail=4):
    rng = np.random.default_rng(seed)
    x = rng.poisson(1.0, (n, steps) + tuple(prog.input_shape)).astype(float)
    x[:, steps - tail :] = 0
    return x


@pytest.mark.parametrize("rec", [True, False], ids=["dense_rec", "biases"])
def test_lava_dl_export_lava_fixed_equals_emulator(tmp_path, rec):
    path = slayer_net(str(tmp_path / "slayer.net"), rec=rec)
    net = read_netx(path)
    types = [L.type for L in net.layers]
    assert types == ["input", "conv", "conv", "flatten", "dense", "dense_rec" if rec else "dense", "dense"]
    assert net.layers[6].weight_exp < 0  # netx's optimize_weight_bits shifts small weights
    assert net.layers[6].bias is not None and (rec or net.layers[1].bias is not None and net.layers[4].bias is not None)
    _, prog = api.load_netx(path)
    x = _counts(prog, 2, 12)
    emu = api.simulate(prog, x, "emulator")
    lava = api.simulate(prog, x, "lava-fixed")
    assert lava.info["quantization"] == "netx file"
    assert list(emu.spikes) == ["layer1", "layer2", "layer4", "layer5", "layer6"]
    for k in emu.spikes:
        assert emu.spikes[k].any(), k  # every layer is active: the comparison means something
        assert np.array_equal(emu.spikes[k], lava.spikes[k]), k


def test_emulator_uses_the_files_integers(tmp_path):
    """Changing one integer of the file (the last layer's threshold) changes the emulator's spikes: it
    runs the file, not a re-quantization of the float view."""
    path = slayer_net(str(tmp_path / "a.net"))
    _, prog = api.load_netx(path)
    x = _counts(prog, 4, 12)
    a = api.simulate(prog, x, "emulator").spikes["layer6"]
    with h5py.File(path, "r+") as f:
        d = f["layer/6/neuron/vThMant"]
        d[()] = int(d[()]) * 3
    _, prog2 = api.load_netx(path)
    b = api.simulate(prog2, x, "emulator").spikes["layer6"]
    assert a.sum() > b.sum()


def test_nirdeploy_written_net_same_reader(tmp_path):
    """A .net that nirdeploy deploy wrote reads back into the integers the quantizer produced: the
    emulator on the file == the emulator on the quantized program, every layer."""
    from test_netx import chain, _counts as counts

    prog = chain()
    out = str(tmp_path / "chain.net")
    api.deploy_program(prog, out)
    net = read_netx(out)
    assert [L.type for L in net.layers] == ["input", "dense", "dense", "dense"]
    assert net.dt == pytest.approx(prog.disc.dt)
    _, p2 = api.load_netx(out)
    x = counts(prog, n=4, steps=24)
    ref = api.simulate(prog, x, "emulator")
    got = api.simulate(p2, x, "emulator")
    names = [op.name for op in prog.neurons()]
    assert len(names) == len(got.spikes)
    for a, b in zip(names, got.spikes):
        assert ref.spikes[a].any()
        assert np.array_equal(ref.spikes[a].reshape(got.spikes[b].shape), got.spikes[b]), (a, b)


def test_refused_layer_types(tmp_path):
    path = slayer_net(str(tmp_path / "p.net"), biases=False)
    with h5py.File(path, "r+") as f:
        del f["layer/3/type"]
        f["layer/3"].create_dataset("type", (1,), "S10", [b"pool"])
    with pytest.raises(UnsupportedNodeError, match="'pool'"):
        read_netx(path)
    with pytest.raises(NirDeployError, match="import-netx"):
        api.lower(path, 1e-3, method="integral")


@pytest.mark.skipif(not PILOTNET.exists(), reason="conformance material not checked out")
def test_pilotnet_inspect_and_emulator():
    info = api.inspect(str(PILOTNET))
    assert info["netx"][0]["type"] == "input" and "bias" in info["netx"][0]["driven_by"]
    assert [r["type"] for r in info["netx"]].count("conv") == 5
    _, prog = api.load_netx(str(PILOTNET))
    assert tuple(prog.input_shape) == (3, 66, 200)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 3, 66, 200))
    x = np.repeat(img[:, None], 3, axis=1).astype(float)
    res = api.simulate(prog, x, "emulator")
    assert res.spikes["input_layer"].any() and res.spikes["layer1"].any()
    with pytest.raises(NirDeployError, match="same at every step"):
        x2 = x.copy()
        x2[:, 1] += 1
        api.simulate(prog, x2, "emulator")
    rec = api.run_record(res, prog, model=str(PILOTNET))
    assert rec["energy"]["models"][0]["total_j"] > 0 and rec["resources"]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "toolchain.cli.main", *args], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=600)  # fmt: skip


def test_cli_inspect_and_simulate(tmp_path):
    path = slayer_net(str(tmp_path / "cli.net"))
    r = _cli("inspect", path)
    assert r.returncode == 0, r.stderr
    assert "netx layers" in r.stdout and "dense_rec" in r.stdout
    _, prog = api.load_netx(path)
    x = _counts(prog, 1, 10)[0]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "run.json"
    r = _cli("simulate", path, "--backend", "emulator", "--input", str(tmp_path / "x.npy"), "-o", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text())
    emu = api.simulate(prog, x[None], "emulator")
    got = {l["name"]: l["spikes_per_sample"] for l in rec["layers"]}
    assert got == {k: pytest.approx(float(v.sum())) for k, v in emu.spikes.items()}
    assert rec["energy"]["models"] and rec["resources"]
