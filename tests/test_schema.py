"""The record schema (toolchain/analysis/schema.py, docs/records.md): what is written reads back."""

import json

import nir
import numpy as np
import pytest

from simulators.reference import simulate
from toolchain.analysis.records import compare_results, run_record, write_json
from toolchain.analysis.schema import SCHEMA_VERSION, CompareRecord, RunRecord, SweepRecord, kind_of, parse
from toolchain.errors import NirDeployError
from toolchain.ir import Discretization, make_graph
from toolchain.program import lower


@pytest.fixture(scope="module")
def run():
    g = make_graph(
        {"input": nir.Input(input_type={"input": np.array([4])}),
         "fc": nir.Affine(weight=np.full((3, 4), 0.6), bias=np.zeros(3)),
         "lif": nir.LIF(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
                        v_reset=np.zeros(3)),
         "output": nir.Output(output_type={"output": np.array([3])})},
        [("input", "fc"), ("fc", "lif"), ("lif", "output")],
        Discretization(dt=1e-3).to_metadata(),
    )  # fmt: skip
    prog = lower(g, Discretization(dt=1e-3))
    x = np.random.default_rng(0).poisson(0.5, (4, 20, 4)).astype(float)
    res = simulate(prog, x)
    return prog, x, res


def test_run_record_carries_schema_and_reads_back(run, tmp_path):
    prog, x, res = run
    rec = run_record(res, prog, labels=[0, 1, 2, 0], inputs=x)
    assert rec["schema"] == "nirdeploy.run" and rec["schema_version"] == SCHEMA_VERSION
    write_json(rec, tmp_path / "r.json")
    back = json.loads((tmp_path / "r.json").read_text())
    kind, typed = parse(back)
    assert kind == "run" and isinstance(typed, RunRecord)
    assert typed.layers[0].spikes == int(res.spikes["lif"].sum())  # counted independently of the record
    assert typed.to_dict() == back


def test_compare_record_is_typed(run):
    _, _, res = run
    cmp = compare_results(res, res)
    kind, typed = parse(cmp)
    assert kind == "compare" and isinstance(typed, CompareRecord) and typed.spike_agreement == 1.0


def test_newer_schema_versions_and_other_kinds_are_refused(run):
    prog, x, res = run
    rec = run_record(res, prog)
    with pytest.raises(NirDeployError, match="schema version"):
        RunRecord.from_dict(dict(rec, schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(NirDeployError, match="not a 'nirdeploy.sweep' record"):
        SweepRecord.from_dict(rec)
    with pytest.raises(NirDeployError, match="missing"):
        RunRecord.from_dict({k: v for k, v in rec.items() if k != "layers"})
    with pytest.raises(NirDeployError, match="unknown schema"):
        parse({"schema": "something.else"})


def test_records_written_before_the_schema_are_recognised():
    assert kind_of({"rows": [], "source_dt": 1e-3}) == "sweep"
    assert kind_of({"backend": "reference", "layers": []}) == "run"
    assert kind_of({"backends": ["a", "b"], "spike_agreement": 1.0}) == "compare"
    assert kind_of({"hello": 1}) is None
