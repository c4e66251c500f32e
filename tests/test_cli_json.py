"""--json on every command (toolchain/cli/output.py): stdout is exactly one JSON object, the rest
goes to stderr; tables keep their numbers at 80 columns; `simulate -q` prints its line."""

import json
import re

import pytest

from toolchain.cli.main import build_parser, main
from toolchain.reports.console import fmt


def _subcommands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The shipped demo model as .nir (trained at 1 ms, 40 inputs, 10 classes)."""
    from toolchain import api
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL

    d = tmp_path_factory.mktemp("json")
    api.export_checkpoint(DEMO_MODEL, str(DEMO_CHECKPOINT), output=str(d / "m.nir"))
    return d


def run_json(capsys, argv, code=0):
    """main(argv + --json): the one JSON object on stdout, and stderr."""
    assert main(argv + ["--json"]) == code
    out, err = capsys.readouterr()
    obj = json.loads(out)  # fails on anything else on stdout
    assert isinstance(obj, dict) and obj["command"] == argv[0] and obj["exit_status"] == code
    return obj, err


def table_lines(text):
    return [l for l in text.splitlines() if l[:1] in "┏┃┡│└"]


def assert_fits_80(text):
    """Every table line fits in 80 columns and no cell was cut ("512,0...")."""
    lines = table_lines(text)
    assert lines, text
    assert all(len(l) <= 80 for l in lines), max(lines, key=len)
    assert "…" not in text


def test_every_command_has_json():
    for name, p in _subcommands().items():
        assert "--json" in p._option_string_actions, name


def test_export_json(demo, capsys):
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL

    obj, err = run_json(capsys, ["export", "--model", DEMO_MODEL, "--checkpoint", str(DEMO_CHECKPOINT), "-o",
                                 str(demo / "e.nir")])  # fmt: skip
    assert obj["output"] == str(demo / "e.nir") and obj["dt"] == pytest.approx(1e-3) and obj["neuron_layers"] == 2
    assert "wrote" in err  # the human line went to stderr


def test_inspect_json(demo, capsys):
    obj, _ = run_json(capsys, ["inspect", str(demo / "m.nir")])
    assert [n["type"] for n in obj["nodes"]][0] == "Input" and obj["metadata"]["dt"] == pytest.approx(1e-3)


def test_retime_json(demo, capsys):
    obj, _ = run_json(capsys, ["retime", str(demo / "m.nir"), "--dt", "2e-3", "--method", "integral", "-o",
                               str(demo / "r.nir")])  # fmt: skip
    assert obj["rho"] == pytest.approx(2.0) and obj["method"] == "integral" and (demo / "r.nir").exists()


def test_simulate_json_and_80_columns(demo, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    obj, err = run_json(capsys, ["simulate", str(demo / "m.nir"), "--data", "default", "--samples", "3"])
    assert obj["samples"] == 3 and obj["output"] is None and len(obj["layers"]) == 2
    assert_fits_80(err)
    for l in obj["layers"]:  # every number of the table, whole
        assert fmt(l["spikes_per_sample"]) in err and fmt(l["firing_rate"]) in err


def test_simulate_quiet_prints_one_line(demo, capsys):
    assert main(["simulate", str(demo / "m.nir"), "--data", "default", "--samples", "3", "-q"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    assert re.match(r"reference dt 0\.001 s, 3 samples x 100 steps: accuracy \d\.\d{4}, [\d.]+ spikes/sample", out[0])
    assert "nothing written" in out[0]
    assert main(["simulate", str(demo / "m.nir"), "--data", "default", "--samples", "3", "-q", "-o",
                 str(demo / "run.json")]) == 0  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].endswith(f"wrote {demo / 'run.json'}")


def test_compare_json_and_80_columns(demo, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    obj, err = run_json(capsys, ["compare", str(demo / "m.nir"), "--data", "default", "--samples", "2", "--backends",
                                 "reference,emulator", "-q"])  # fmt: skip
    assert obj["backends"] == ["reference", "emulator"] and obj["samples"] == 2 and "runs" not in obj
    assert 0 <= obj["spike_agreement"] <= 1
    assert_fits_80(err)
    for l in obj["layers"]:
        assert fmt(l["spikes_a"]) in err and fmt(l["spikes_b"]) in err


def test_sweep_json_and_80_columns(demo, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    obj, err = run_json(capsys, ["sweep", str(demo / "m.nir"), "--data", "default", "--dt", "1e-3,2e-3", "--method",
                                 "integral,exact", "--samples", "2", "--workers", "1", "-o", str(demo / "sw")])  # fmt: skip
    assert len(obj["rows"]) == 4 and all("record" not in r for r in obj["rows"])
    assert obj["recommendation"]["per_dt"] and obj["output"] == str(demo / "sw")
    assert_fits_80(err)
    for r in obj["rows"]:
        assert fmt(r["spikes_per_sample"]) in err


def test_recommend_json(demo, capsys):
    obj, err = run_json(capsys, ["recommend", str(demo / "m.nir"), "--data", "default", "--dt", "2e-3", "--samples", "2",
                                 "--workers", "1", "-q", "-o", str(demo / "rec")])  # fmt: skip
    assert [c["dt"] for c in obj["recommendation"]["per_dt"]] == pytest.approx([1e-3, 2e-3])
    assert err.startswith("recommendation")  # the terminal lines, on stderr


def test_deploy_json(demo, capsys):
    obj, _ = run_json(capsys, ["deploy", str(demo / "m.nir"), "-o", str(demo / "m.net"), "-q"])
    assert obj["output"] == str(demo / "m.net") and [l["type"] for l in obj["netx"]["layers"]][0] == "input"
    assert obj["quantization"]


def test_import_netx_json(demo, capsys):
    assert main(["deploy", str(demo / "m.nir"), "-o", str(demo / "i.net"), "-q"]) == 0
    capsys.readouterr()
    obj, _ = run_json(capsys, ["import-netx", str(demo / "i.net"), "--dt", "1e-3", "-o", str(demo / "i.nir")])
    assert obj["output"] == str(demo / "i.nir") and obj["dt"] == pytest.approx(1e-3)
    assert len(obj["imported_from"]["sha256"]) == 64 and obj["netx"]["layers"]


def test_report_json(demo, capsys):
    assert main(["simulate", str(demo / "m.nir"), "--data", "default", "--samples", "2", "-q", "-o",
                 str(demo / "run2.json")]) == 0  # fmt: skip
    capsys.readouterr()
    obj, _ = run_json(capsys, ["report", str(demo / "run2.json"), "-o", str(demo / "r.html"), "-q"])
    assert obj["kind"] == "run" and obj["paths"]["html"] == str(demo / "r.html") and "summary" in obj["sections"]


def test_demo_json_and_80_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    obj, err = run_json(capsys, ["demo", "-o", str(tmp_path / "d"), "--lava-samples", "1", "-v"])
    assert obj["reference_vs_lava_float"]["samples"] == 1 and obj["accuracy"]["reference"] > 0.5
    assert_fits_80(err)
    assert "512,000" in err  # the demo's Dense synaptic operations, cut to "512,0..." before


def test_error_is_one_json_object(tmp_path, capsys):
    f = tmp_path / "m.nir"
    f.write_text("not nir")
    obj, err = run_json(capsys, ["inspect", str(f)], code=2)
    assert "is not a NIR file" in obj["error"]
    assert err.strip().splitlines() == [f"nirdeploy: error: {obj['error']}"]


def test_json_is_strict():
    import numpy as np

    from toolchain.cli.output import dumps

    s = dumps({"a": np.float32(0.5), "b": np.array([1, 2]), "c": float("nan"), "d": np.array([np.inf]), 3: (1,)})
    assert json.loads(s) == {"a": 0.5, "b": [1, 2], "c": None, "d": [None], "3": [1]}


def test_usage_error_is_one_json_object(capsys):
    with pytest.raises(SystemExit) as e:
        main(["simulate", "m.nir", "--backend", "nope", "--json"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    obj = json.loads(out)
    assert obj["command"] == "simulate" and obj["exit_status"] == 2 and "invalid choice: 'nope'" in obj["error"]
    assert "usage: nirdeploy simulate" in err


def test_table_keeps_numbers_and_folds_text_at_80_columns():
    """The widths rule on its own: a long layer name folds, every number keeps its digits."""
    import io

    from rich.console import Console

    from toolchain.reports.console import table

    rows = [["lif_hidden_convolution_layer_1", "CubaLIF", 51200, 512012.5, 0.01234, "512,000"], ["out", "LI", 10, 3.0]]
    buf = io.StringIO()
    Console(file=buf, width=80).print(table("t", ["layer", "type", "neurons", "ref spikes/sample",
                                                  "lava spikes/sample", "Dense synops"], rows))  # fmt: skip
    text = buf.getvalue()
    assert_fits_80(text)
    for number in ("51200", "5.12e+05", "0.01234", "512,000"):
        assert number in text
    assert "lif_hidden" in text and "layer_1" in text  # folded onto two lines, not cut
