"""Conformance: the NIR paper's graphs on the reference simulator and on Lava (floating point).

Lava is imported at module level on purpose: without Lava these tests must fail, not skip.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
pytestmark = pytest.mark.lava

from simulators.lava_float import run_lava_float  # noqa: E402
from simulators.reference import simulate  # noqa: E402
from toolchain.ir import discretization_of, load_graph  # noqa: E402
from toolchain.program import lower  # noqa: E402

# the shared conformance files come from the conformance_file fixture (tests/conftest.py)


# --------------------------------------------------------------------------- single LIF neuron
@pytest.fixture(scope="module")
def lif_runs(conformance_file):
    g = load_graph(conformance_file("lif_norse.nir"))
    prog = lower(g, discretization_of(g, dt=1e-4, scheme="exact", input_convention="current"))
    table = np.loadtxt(conformance_file("lif_exact.csv"), delimiter=",")
    assert table.shape == (1000, 3)
    x = table[None, :, 0:1]
    ref = simulate(prog, x, record_v=True)
    lava = run_lava_float(prog, x, record_v=True, progress=False)
    return table, ref, lava


@pytest.mark.parametrize("backend", ["reference", "lava-float"])
def test_lif_spikes_at_the_exact_steps(lif_runs, backend):
    table, ref, lava = lif_runs
    res = ref if backend == "reference" else lava
    (layer,) = res.spikes
    got = np.flatnonzero(res.spikes[layer][0].reshape(-1))
    want = np.flatnonzero(table[:, 2] == 1)
    assert len(want) == 4
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(res.outputs["output"][0].reshape(-1), table[:, 2])


@pytest.mark.parametrize("backend", ["reference", "lava-float"])
def test_lif_voltage_follows_the_exact_trace(lif_runs, backend):
    table, ref, lava = lif_runs
    res = ref if backend == "reference" else lava
    (layer,) = res.v
    v = res.v[layer][0].reshape(-1)
    assert v.shape == (1000,)
    assert np.max(np.abs(v - table[:, 1])) < 0.01


def test_lif_lava_equals_reference(lif_runs):
    _, ref, lava = lif_runs
    (layer,) = ref.v
    np.testing.assert_allclose(lava.v[layer], ref.v[layer], rtol=0, atol=1e-12)
    assert lava.backend == "lava-float"


# --------------------------------------------------------------------------- Sinabs N-MNIST CNN
@pytest.fixture(scope="module")
def cnn_runs(conformance_file):
    g = load_graph(conformance_file("cnn_sinabs.nir"))
    prog = lower(g, discretization_of(g, dt=1e-3, input_convention="impulse"))
    rng = np.random.default_rng(7)
    n, steps = 3, 40
    x = (rng.random((n, steps, 2, 34, 34)) < 0.1).astype(np.float64)
    ref = simulate(prog, x)
    lava = run_lava_float(prog, x, progress=False)
    return prog, ref, lava


def test_cnn_spikes_identical_on_every_layer_and_step(cnn_runs):
    prog, ref, lava = cnn_runs
    layers = [op.name for op in prog.neurons()]
    assert sorted(ref.spikes) == sorted(lava.spikes) == sorted(layers)
    for k in layers:
        assert lava.spikes[k].shape == ref.spikes[k].shape
        mism = int(np.sum(lava.spikes[k] != ref.spikes[k]))
        assert mism == 0, f"layer {k}: {mism} spikes differ"
    np.testing.assert_array_equal(lava.outputs["output"], ref.outputs["output"])


def test_cnn_input_is_dense_enough_that_every_layer_spikes(cnn_runs):
    prog, ref, _ = cnn_runs
    for k, z in ref.spikes.items():
        per_sample = z.reshape(z.shape[0], -1).sum(axis=1)
        assert np.all(per_sample > 0), f"layer {k} is silent in some sample: {per_sample}"


def test_cnn_runs_convolutions_as_lava_conv(cnn_runs):
    _, _, lava = cnn_runs
    kinds = lava.info["conns"]
    assert list(kinds.values()).count("conv") == 2  # the two Conv2d that sit alone between layers
    assert lava.info["lava_depth"] == 5
