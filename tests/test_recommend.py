"""The sweep's recommendation (toolchain/analysis/recommend.py): the rule, the front, the demo sweep,
the `recommend` command and the report's first section."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from toolchain.analysis.recommend import PREFERENCE, recommendation  # noqa: E402


def _row(dt, method, acc, energy, latency=1e-4, spikes=100.0, error=None):
    rec = {"samples": 100, "energy": {"default": "m", "models": [{"name": "m", "total_j": energy, "time_per_inference_s": latency}]}}
    r = {"dt": dt, "rho": dt / 1e-3, "method": method, "accuracy": acc, "spikes_per_sample": spikes, "record": rec}
    if error:
        r["error"] = error
        r["accuracy"] = None
    return r


def test_rule_best_metric_then_ties_by_energy_and_failures_never_win():
    rows = [
        _row(1e-3, "exact", 0.90, 5e-5), _row(1e-3, "tau", 0.90, 5e-5),
        _row(2e-3, "tau", 0.80, 1e-5), _row(2e-3, "integral", 0.855, 3e-5), _row(2e-3, "exact", 0.86, 4e-5),
        _row(5e-4, "tau", 0.20, 9e-5), _row(5e-4, "integral", 0.95, 9e-5), _row(5e-4, "exact", None, 1e-6, error="boom"),
    ]  # fmt: skip
    rec = recommendation({"metric": "accuracy", "source_dt": 1e-3, "rows": rows})
    by = {c["dt"]: c for c in rec["per_dt"]}
    # 2 ms: integral is within one sample (0.01) of exact and cheaper: it wins; tau is far below
    assert by[2e-3]["method"] == "integral" and by[2e-3]["loss"] == pytest.approx(0.90 - 0.855)
    assert [c["method"] for c in by[2e-3]["candidates"]] == ["integral", "exact", "tau"]
    # 1 ms: a full tie (same energy, spikes) goes to the preference order
    assert by[1e-3]["method"] == PREFERENCE[0] and by[1e-3]["loss"] == 0
    # 0.5 ms: the failed row never wins
    assert by[5e-4]["method"] == "integral"
    # the front: nothing else is at least as accurate, as cheap and as fast
    front = {(c["dt"], c["method"]) for c in rec["pareto"]}
    assert (2e-3, "tau") in front and (2e-3, "integral") in front and (5e-4, "tau") not in front
    assert rec["source_metric"] == 0.90 and rec["tie"] == pytest.approx(0.01)


def test_without_the_training_dt_there_is_no_loss():
    rec = recommendation({"metric": "accuracy", "source_dt": 1e-3, "rows": [_row(2e-3, "exact", 0.8, 1e-5)]})
    assert rec["per_dt"][0]["loss"] is None and "add it to --dt" in rec["note"]


@pytest.fixture(scope="module")
def demo_sweep(tmp_path_factory):
    """The demo model (trained at 1 ms) swept over 0.5, 1 and 2 ms with every zero-shot method."""
    from toolchain import api
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL

    d = tmp_path_factory.mktemp("rec")
    nir_path = d / "model.nir"
    api.export_checkpoint(DEMO_MODEL, str(DEMO_CHECKPOINT), output=str(nir_path))
    out = d / "sweep"
    res = api.sweep(str(nir_path), "default", [5e-4, 1e-3, 2e-3], ["tau", "integral", "euler", "exact", "exact-carry"],
                    output=str(out), samples=200, workers=1, progress=False)  # fmt: skip
    return nir_path, out, res


def test_demo_sweep_recommendation_matches_a_hand_computation(demo_sweep):
    _, out, res = demo_sweep
    rec = json.loads((out / "sweep.json").read_text())["recommendation"]
    assert rec == res["recommendation"]
    n = 200
    for c in rec["per_dt"]:
        rows = [r for r in res["rows"] if r["dt"] == c["dt"]]
        best = max(r["accuracy"] for r in rows)
        ties = [r for r in rows if r["accuracy"] >= best - 1.0 / n - 1e-12]
        energy = {r["method"]: r["record"]["energy"]["models"][0]["total_j"] for r in ties}
        cheapest = min(energy.values())
        assert c["metric"] >= best - 1.0 / n - 1e-12
        assert energy[c["method"]] == cheapest
        assert c["spikes_per_inference"] == next(r for r in rows if r["method"] == c["method"])["spikes_per_sample"]
    half = next(c for c in rec["per_dt"] if c["rho"] == 0.5)
    assert half["method"] != "tau"  # the reference method collapses at rho = 1/2 (retiming.md)
    tau_half = next(r for r in res["rows"] if r["rho"] == 0.5 and r["method"] == "tau")["accuracy"]
    assert half["metric"] > tau_half + 0.2
    src = next(c for c in rec["per_dt"] if c["rho"] == 1.0)
    assert src["loss"] == 0 and rec["source_metric"] == src["metric"]
    # the default energy model is the calibrated one and the recommendation says what it was calibrated on
    for c in rec["per_dt"]:
        assert c["energy_model"] == "loihi2-pilotnet" and "PilotNet LIF" in c["energy_model_calibrated_on"]
    # a coarser target: the reset-aware method beats exact by more than a tie (docs/retiming.md)
    two = next(c for c in rec["per_dt"] if c["rho"] == 2.0)
    acc2 = {r["method"]: r["accuracy"] for r in res["rows"] if r["rho"] == 2.0}
    assert two["method"] == "exact-carry" and acc2["exact-carry"] > acc2["exact"] + 2.0 / n


def test_sweep_report_opens_with_the_recommendation(demo_sweep, tmp_path):
    from toolchain.reports.report import build_report

    _, out, _ = demo_sweep
    r = build_report(str(out), str(tmp_path / "r.html"), str(tmp_path / "r.md"))
    assert r["sections"][0] == "recommendation"
    md = (tmp_path / "r.md").read_text()
    assert md.index("Recommendation") < md.index("Timestep sweep")
    assert (tmp_path / "r_files" / "front.png").stat().st_size > 10_000
    assert "img-front" in (tmp_path / "r.html").read_text()


def test_recommend_command_prints_the_answer_first(demo_sweep, tmp_path):
    nir_path, _, _ = demo_sweep
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "recommend", str(nir_path), "--data", "default",
                        "--dt", "2e-3", "--samples", "50", "--workers", "1", "-q", "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("recommendation")
    assert any(l.strip().startswith("dt 2 ms (rho 2):") for l in lines[1:4])
    assert any(l.strip().startswith("dt 1 ms (rho 1):") for l in lines[1:4])  # the training dt is added
    sw = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert sorted({row["method"] for row in sw["rows"]}) == ["euler", "exact", "exact-carry", "integral", "integral-carry", "tau"]
    assert len(lines) <= 8
    assert np.isclose(sw["recommendation"]["source_dt"], 1e-3)


def test_report_of_a_compare_record(tmp_path):
    """`nirdeploy report` renders a compare record (the agreement with Lava reaches a report)."""
    from toolchain import api
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL
    from toolchain.reports.report import build_report

    api.export_checkpoint(DEMO_MODEL, str(DEMO_CHECKPOINT), output=str(tmp_path / "m.nir"))
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "compare", str(tmp_path / "m.nir"), "--data",
                        "default", "--samples", "20", "--backends", "reference,emulator", "-q", "-o",
                        str(tmp_path / "cmp.json")], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert p.returncode == 0, p.stderr
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    r = build_report(str(tmp_path / "cmp.json"), str(tmp_path / "c.html"), str(tmp_path / "c.md"))
    assert r["kind"] == "compare" and r["sections"][0] == "comparison" and "summary" in r["sections"]
    md = (tmp_path / "c.md").read_text()
    assert "reference vs emulator" in md and f"{cmp['spike_agreement']:.4g}"[:4] in md


def test_demo_fits_one_screen(tmp_path):
    """The demo's default output is at most 50 lines: the accuracy/agreement table and where the files are."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "100"}
    r = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "demo", "-o", str(tmp_path / "d"),
                        "--lava-samples", "4"], capture_output=True, text=True, env=env, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) <= 50, len(lines)
    text = r.stdout
    assert "accuracy and agreement" in text and "reference on the Lava samples" in text
    assert "report.html" in text and "uJ" in text
    # the demo's report opens with torch vs reference vs Lava, each number with its samples
    md = (tmp_path / "d" / "report.md").read_text()
    summary = json.loads((tmp_path / "d" / "demo_summary.json").read_text())
    assert md.index("Demo: torch vs reference vs Lava") < md.index("Summary")
    assert "all 500 test samples" in md and "first 4 test samples" in md and "identical spikes in" in md
    assert f"{summary['accuracy']['lava-float']:.4g}"[:4] in md


def test_lava_agreement_in_the_recommendation(tmp_path, capsys):
    """sweep --lava-check N: the recommended cell of each dt runs on lava-fixed on N samples; the
    agreement is in sweep.json, the terminal lines and the report. Checked against runs the check
    did not make: the sweep cell's own reference predictions and the emulator (bit-exact with
    lava-fixed) on the same retimed program."""
    from toolchain import api
    from toolchain.cli.commands.retime import print_recommendation
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL
    from toolchain.reports.report import build_report
    from toolchain.reports.sweep import Cell, cell_program

    nir_path = tmp_path / "m.nir"
    api.export_checkpoint(DEMO_MODEL, str(DEMO_CHECKPOINT), output=str(nir_path))
    out = tmp_path / "sw"
    res = api.sweep(str(nir_path), "default", [1e-3, 2e-3], ["integral", "exact"], output=str(out), samples=4,
                    workers=1, progress=False, lava_check=2)  # fmt: skip
    per_dt = json.loads((out / "sweep.json").read_text())["recommendation"]["per_dt"]
    assert len(per_dt) == 2
    for c in per_dt:
        lava = c["lava"]
        assert lava["backend"] == "lava-fixed" and lava["against"] == "reference" and lava["samples"] == 2
        assert 0 <= lava["spike_agreement"] <= 1 and [l["name"] for l in lava["layers"]] == ["1", "3"]
        cmp = json.loads((out / lava["record"]).read_text())
        assert cmp["dt"] == c["dt"] and cmp["method"] == c["method"]
        row = next(r for r in res["rows"] if r["dt"] == c["dt"] and r["method"] == c["method"])
        assert cmp["runs"]["reference"]["predictions"] == row["record"]["predictions"][:2]
        program = cell_program(str(nir_path), Cell(c["dt"], c["method"]))
        x = api.load_inputs(program, data="default", samples=2)["x"]
        emu = api.simulate(program, x, "emulator")
        for layer in cmp["runs"]["lava-fixed"]["layers"]:
            assert layer["spikes"] == int(emu.spikes[layer["name"]].sum()), layer["name"]
        agree = float(np.mean(emu.predictions("sum") == np.asarray(cmp["runs"]["reference"]["predictions"])))
        assert lava["prediction_agreement"] == agree
    print_recommendation(res)
    lines = capsys.readouterr().out.splitlines()
    assert sum("lava-fixed vs reference on 2 samples: predictions" in l for l in lines) == 2
    build_report(str(out), str(tmp_path / "r.html"), str(tmp_path / "r.md"))
    md = (tmp_path / "r.md").read_text()
    assert "Lava agreement" in md and "lava-fixed vs reference: " in md
