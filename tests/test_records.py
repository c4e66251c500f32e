"""toolchain/analysis/records.py: run records and backend comparisons of a tiny reference run.

The network is one IF layer behind an identity weight with threshold 0.5 and reset to 0, so a
neuron spikes exactly at the steps where its input is non-zero: the expected spike counts and
predictions come from numpy on the inputs, not from the simulator.
"""

import copy
import json

import nir
import numpy as np
import pytest

from simulators.reference import simulate
from toolchain.analysis.records import compare_results, read_json, run_record, write_json
from toolchain.errors import NirDeployError
from toolchain.ir import Discretization, make_graph
from toolchain.program import lower

N, T, S = 4, 12, 6  # neurons, steps, samples


@pytest.fixture(scope="module")
def tiny():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([N])}),
        "fc": nir.Linear(weight=np.eye(N)),
        "if": nir.IF(r=np.ones(N), v_threshold=np.full(N, 0.5), v_reset=np.zeros(N)),
        "output": nir.Output(output_type={"output": np.array([N])}),
    }
    g = make_graph(nodes, [("input", "fc"), ("fc", "if"), ("if", "output")])
    prog = lower(g, Discretization(dt=1e-3, scheme="euler", input_convention="impulse"))
    rng = np.random.default_rng(3)
    x = rng.poisson(0.4, (S, T, N)).astype(np.float64)
    x[np.arange(S), :, np.arange(S) % N] += rng.integers(0, 2, (S, T))  # a clear favourite per sample
    return prog, x, simulate(prog, x)


def test_spikes_are_where_the_input_is(tiny):
    prog, x, res = tiny
    np.testing.assert_array_equal(res.spikes["if"].astype(bool), x > 0)


def test_run_record_keys_accuracy_and_counts(tiny):
    prog, x, res = tiny
    counts = np.count_nonzero(x, axis=1)  # [samples, neurons]: spikes per neuron, from the inputs
    want_pred = np.argmax(counts, axis=1)
    labels = want_pred.copy()
    labels[:2] = (labels[:2] + 1) % N  # two of six samples labelled wrongly
    rec = run_record(res, prog, labels=labels, metrics=False)
    for k in ("nirdeploy", "created", "backend", "dt", "samples", "n_steps", "readout", "predictions", "labels",
              "accuracy", "layers", "total_spikes_per_sample", "discretization"):  # fmt: skip
        assert k in rec, k
    assert rec["backend"] == "reference" and rec["dt"] == 1e-3 and rec["samples"] == S and rec["n_steps"] == T
    assert rec["predictions"] == want_pred.tolist()
    assert rec["accuracy"] == pytest.approx(4 / 6)
    (layer,) = rec["layers"]
    assert layer["name"] == "if" and layer["type"] == "IF" and layer["neurons"] == N
    assert layer["spikes"] == int(counts.sum())
    assert layer["spikes_per_sample"] == pytest.approx(counts.sum() / S)
    assert layer["firing_rate"] == pytest.approx(counts.sum() / (S * T * N))
    assert layer["firing_rate_hz"] == pytest.approx(counts.sum() / (S * T * N) / 1e-3)
    assert rec["discretization"]["scheme"] == "euler"
    json.dumps(rec)  # a run record is plain JSON


def test_compare_results(tiny):
    prog, x, res = tiny
    same = compare_results(res, res)
    assert same["spike_agreement"] == 1.0 and same["prediction_agreement"] == 1.0
    assert same["samples_with_identical_spikes"] == S and same["output_max_abs_diff"] == 0.0
    other = copy.deepcopy(res)
    other.backend = "other"
    other.spikes["if"][0, 0, 0] = ~other.spikes["if"][0, 0, 0]  # one spike flipped in sample 0
    c = compare_results(res, other)
    assert c["backends"] == ["reference", "other"]
    assert c["spike_agreement"] == pytest.approx(1 - 1 / (S * T * N))
    assert c["samples_with_identical_spikes"] == S - 1
    (layer,) = c["layers"]
    assert abs(layer["spikes_a"] - layer["spikes_b"]) == 1 and layer["samples_identical"] == S - 1


def test_compare_results_refuses_different_runs(tiny):
    prog, x, res = tiny
    with pytest.raises(ValueError, match="different samples or steps"):
        compare_results(res, simulate(prog, x[:2]))


def test_write_read_json_roundtrip_of_numpy_values(tmp_path):
    obj = {
        "f32": np.float32(0.5), "i64": np.int64(7), "b": np.bool_(True), "arr": np.arange(3),
        "nested": {"m": np.eye(2), 3: (np.int8(1), 2.5)},
    }  # fmt: skip
    path = tmp_path / "sub" / "r.json"
    write_json(obj, str(path))
    back = read_json(str(path))
    assert back == {"f32": 0.5, "i64": 7, "b": True, "arr": [0, 1, 2],
                    "nested": {"m": [[1.0, 0.0], [0.0, 1.0]], "3": [1, 2.5]}}  # fmt: skip
    assert path.read_text().endswith("\n")


def test_read_json_errors(tmp_path):
    with pytest.raises(NirDeployError, match="no such file"):
        read_json(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(NirDeployError, match="not a JSON run record"):
        read_json(str(tmp_path / "bad.json"))
