"""Calibrated networks are checkable (issue 12, point 5): the `.net` that `deploy --data` writes runs
through `simulate` / `compare` on the emulator and on lava-fixed (lava-dl netx running the file), and
its integers are the ones deploy's calibration computed, not the uncalibrated ones."""

import json

import nir
import numpy as np
import pytest

from simulators.emulator import run_emulator
from toolchain import api
from toolchain.cli.main import main
from toolchain.data.events import EventDataset
from toolchain.ir import make_graph, save_graph
from toolchain.loihi.netx_read import read_netx


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """IF neurons driven deep below rest by heavy inhibition, then excited: calibration on these
    inputs lowers the state scale (docs/fixed-point.md); the data as an event file."""
    d = tmp_path_factory.mktemp("cal")
    rng = np.random.default_rng(4)
    W = -np.abs(rng.normal(0, 1.0, (5, 10)))
    W[:, 0] = 20.0
    nodes = {
        "input": nir.Input(input_type={"input": np.array([10])}),
        "fc1": nir.Linear(weight=W),
        "n1": nir.IF(r=np.ones(5), v_threshold=np.full(5, 1.0), v_reset=np.zeros(5)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    save_graph(make_graph(nodes, [("input", "fc1"), ("fc1", "n1"), ("n1", "output")], {"dt": 1e-3}), d / "m.nir")
    x = np.zeros((3, 60, 10))
    x[:, :30, 1:] = 30
    x[:, 30:, 0] = 30
    x[1, :40, 1:] = 10
    x[2, :, 0] += rng.poisson(1.0, 60)
    t, c, v, ptr = [], [], [], [0]
    for s in range(3):  # one event per occupied bin, in its middle, carrying the count
        k, ch = np.nonzero(x[s])
        t += list((k + 0.5) * 1e-3)
        c += list(ch)
        v += list(x[s][k, ch])
        ptr.append(len(t))
    EventDataset(times=np.array(t), channels=np.array(c), sample_ptr=np.array(ptr), labels=np.zeros(3),
                 input_shape=(10,), duration=0.06, values=np.array(v), classes=["a"], name="sat").save(d / "d.h5")  # fmt: skip
    assert main(["deploy", str(d / "m.nir"), "--data", str(d / "d.h5"), "-o", str(d / "m.net"), "--report",
                 str(d / "q.json"), "-q"]) == 0  # fmt: skip
    return d, x


def test_the_net_holds_the_calibrated_integers(calibrated):
    d, x = calibrated
    _, prog = api.lower(str(d / "m.nir"))
    cal, plain = api.quantize(prog, calib_inputs=x), api.quantize(prog)
    assert cal.groups["n1"].scale < plain.groups["n1"].scale  # the calibration changed the network
    q = json.loads((d / "q.json").read_text())["quantization"]
    assert q["calibration"]["samples"] == 3
    layer = read_netx(str(d / "m.net")).layers[1]
    assert np.array_equal(layer.weight, cal.conns[0].weights) and layer.weight_exp == cal.conns[0].weight_exp
    assert layer.neuron["vThMant"] == cal.groups["n1"].vth != plain.groups["n1"].vth
    assert not np.array_equal(layer.weight, plain.conns[0].weights)


def test_simulate_the_calibrated_net_on_emulator_equals_lava_fixed(calibrated, capsys):
    d, x = calibrated
    spikes = {}
    for b in ("emulator", "lava-fixed"):
        assert main(["simulate", str(d / "m.net"), "--data", str(d / "d.h5"), "--backend", b, "-q", "-o",
                     str(d / f"{b}.json")]) == 0  # fmt: skip
        rec = json.loads((d / f"{b}.json").read_text())
        spikes[b] = [l["spikes"] for l in rec["layers"]]
    assert spikes["emulator"] == spikes["lava-fixed"]
    # ... and both run what deploy computed: the emulator on the calibrated quantization, which
    # differs from the uncalibrated one on these inputs
    _, prog = api.lower(str(d / "m.nir"))
    want = run_emulator(prog, x, quant=api.quantize(prog, calib_inputs=x)).spikes["n1"]
    other = run_emulator(prog, x, quant=api.quantize(prog)).spikes["n1"]
    assert spikes["emulator"] == [int(want.sum())] and not np.array_equal(want, other)
    _, net_prog = api.lower(str(d / "m.net"))
    got = api.simulate(net_prog, x, "emulator").spikes
    assert np.array_equal(next(iter(got.values())).reshape(want.shape), want)  # every spike, not only the count
    capsys.readouterr()
    assert main(["compare", str(d / "m.net"), "--data", str(d / "d.h5"), "--backends", "emulator,lava-fixed", "-q",
                 "--json"]) == 0  # fmt: skip
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["spike_agreement"] == 1.0 and cmp["samples_with_identical_spikes"] == 3
