"""`nirdeploy sweep`: one row per (dt, method) with its run record, csv and plots, cells in
parallel, resumption without redoing finished cells, refusals as rows, fixed-point profiles."""

import json
import os

import pytest

from toolchain.cli.main import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CK = os.path.join(REPO, "toolchain", "demo_model", "checkpoint.pt")


@pytest.fixture(scope="module")
def demo_nir(tmp_path_factory):
    p = tmp_path_factory.mktemp("sweep") / "demo.nir"
    assert main(["export", "--model", "examples.zoo.temporal.model:build_model", "--checkpoint", CK, "-o", str(p)]) == 0
    return str(p)


def _sweep(model, out, *extra):
    return main(["sweep", model, "--data", "default", "--samples", "12", "-q", "-o", str(out), *extra])


def _mtimes(out):
    cells = out / "cells"
    return {f: os.stat(cells / f).st_mtime_ns for f in os.listdir(cells)}


def test_sweep_rows_files_and_parallel_cells(demo_nir, tmp_path):
    out = tmp_path / "sw"
    assert _sweep(demo_nir, out, "--dt", "0.001,0.002", "--method", "tau,integral", "--workers", "2") == 0
    res = json.loads((out / "sweep.json").read_text())
    rows = res["rows"]
    assert [(r["dt"], r["method"]) for r in rows] == [(0.001, "tau"), (0.001, "integral"), (0.002, "tau"), (0.002, "integral")]
    assert [r["rho"] for r in rows] == [1.0, 1.0, 2.0, 2.0]
    for r in rows:
        rec = r["record"]
        assert rec["samples"] == 12 and rec["dt"] == pytest.approx(r["dt"])
        assert rec["retime"]["method"] == r["method"] and rec["retime"]["source_dt"] == pytest.approx(1e-3)
        assert r["accuracy"] == rec["accuracy"] and r["spikes_per_sample"] == rec["total_spikes_per_sample"]
    # rho = 1 is the identity for every method: the same record numbers
    assert rows[0]["record"]["layers"] == rows[1]["record"]["layers"]
    # at rho = 2 the two methods give different networks
    assert rows[2]["spikes_per_sample"] != rows[3]["spikes_per_sample"]
    # ... and the same numbers as `simulate --dt --method`
    rec_path = tmp_path / "sim.json"
    assert main(["simulate", demo_nir, "--data", "default", "--samples", "12", "--dt", "0.002", "--method", "integral",
                 "-q", "-o", str(rec_path)]) == 0
    sim = json.loads(rec_path.read_text())
    assert sim["accuracy"] == rows[3]["accuracy"] and sim["total_spikes_per_sample"] == rows[3]["spikes_per_sample"]
    csv = (out / "sweep.csv").read_text().splitlines()
    assert csv[0] == "dt,rho,method,accuracy,spikes_per_sample,error" and len(csv) == 5
    for png in ("accuracy_vs_dt.png", "spikes_vs_dt.png"):
        assert (out / png).stat().st_size > 1000


def test_interrupted_sweep_resumes_without_redoing_finished_cells(demo_nir, tmp_path):
    out = tmp_path / "sw"
    args = ("--dt", "0.0005,0.002", "--method", "integral,exact", "--workers", "1")
    assert _sweep(demo_nir, out, *args) == 0
    first = json.loads((out / "sweep.json").read_text())
    before = _mtimes(out)
    # an interrupted sweep: one cell never written, one cut off while it was being written
    os.remove(out / "cells" / "dt0.0005_exact.json")
    (out / "cells" / "dt0.002_integral.json").write_text('{"dt": 0.002, "rho"')
    assert _sweep(demo_nir, out, *args) == 0
    after = _mtimes(out)
    redone = {f for f in after if after[f] != before.get(f)}
    assert redone == {"dt0.0005_exact.json", "dt0.002_integral.json"}
    again = json.loads((out / "sweep.json").read_text())
    strip = lambda res: [{k: v for k, v in r.items() if k != "record"} for r in res["rows"]]
    assert strip(again) == strip(first)


def test_unstable_euler_is_a_row_with_its_reason(demo_nir, tmp_path):
    out = tmp_path / "sw"
    # rho = 25 makes euler's leak factor 1 - 25 dt / tau negative for tau = 10 ms
    assert _sweep(demo_nir, out, "--dt", "0.025", "--method", "euler,integral", "--workers", "1") == 0
    rows = {r["method"]: r for r in json.loads((out / "sweep.json").read_text())["rows"]}
    assert rows["euler"]["accuracy"] is None and "unstable" in rows["euler"]["error"]
    assert rows["integral"]["accuracy"] is not None and "error" not in rows["integral"]


def test_fixed_point_profile_is_recorded_and_not_mixed_on_resume(demo_nir, tmp_path):
    out = tmp_path / "sw"
    args = ("--dt", "0.002", "--method", "integral", "--backend", "emulator", "--workers", "1")
    assert _sweep(demo_nir, out, *args) == 0
    netx = json.loads((out / "sweep.json").read_text())
    assert netx["profile"] == "netx" and netx["rows"][0]["profile"] == "netx"
    assert netx["rows"][0]["record"]["backend_info"]["quantization"] == "netx"
    before = _mtimes(out)
    assert _sweep(demo_nir, out, *args, "--profile", "loihi") == 0  # same directory, other profile: rerun
    loihi = json.loads((out / "sweep.json").read_text())
    assert loihi["rows"][0]["profile"] == "loihi" and _mtimes(out) != before
    assert loihi["rows"][0]["record"]["backend_info"]["quantization"] == "loihi"
    # a floating-point sweep has no profile
    ref = tmp_path / "ref"
    assert _sweep(demo_nir, ref, "--dt", "0.002", "--method", "integral", "--workers", "1") == 0
    assert json.loads((ref / "sweep.json").read_text())["profile"] is None


def test_sweep_refuses_bad_arguments(demo_nir, tmp_path, capsys):
    assert _sweep(demo_nir, tmp_path / "a", "--dt", "0.002", "--method", "bogus") == 2
    assert "unknown method 'bogus'" in capsys.readouterr().err
    assert _sweep(demo_nir, tmp_path / "b", "--dt", "-0.001", "--method", "integral") == 2
    assert "positive" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "b" / "sweep.json")


def test_simulate_and_compare_pass_the_profile(demo_nir, tmp_path):
    for prof in ("netx", "loihi"):
        p = tmp_path / f"{prof}.json"
        assert main(["simulate", demo_nir, "--data", "default", "--samples", "4", "--backend", "emulator", "--profile", prof,
                     "-q", "-o", str(p)]) == 0
        assert json.loads(p.read_text())["backend_info"]["quantization"] == prof
    c = tmp_path / "cmp.json"
    assert main(["compare", demo_nir, "--data", "default", "--samples", "2", "--backends", "reference,emulator",
                 "--profile", "loihi", "-q", "-o", str(c)]) == 0
    runs = json.loads(c.read_text())["runs"]
    assert runs["emulator"]["backend_info"]["quantization"] == "loihi"
    assert "quantization" not in runs["reference"].get("backend_info", {})
