"""``nirdeploy report``: every section and every image of the HTML is there and non-empty."""

import base64
import copy
import json
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import norse.torch as nt

from exporters.torch_to_nir import export_model
from simulators.reference import simulate
from toolchain.cli.main import main
from toolchain.ir import discretization_of
from toolchain.program import lower
from toolchain.analysis.records import run_record, write_json

PNG = b"\x89PNG\r\n\x1a\n"


class Sections(HTMLParser):
    """section id -> {"text": ..., "images": [png bytes], "tables": n}"""

    def __init__(self):
        super().__init__()
        self.sections, self.cur = {}, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.cur = a["id"]
            self.sections[self.cur] = {"text": "", "images": [], "tables": 0}
        elif self.cur and tag == "img":
            src = a.get("src", "")
            assert src.startswith("data:image/png;base64,")
            self.sections[self.cur]["images"].append(base64.b64decode(src.split(",", 1)[1]))
        elif self.cur and tag == "table":
            self.sections[self.cur]["tables"] += 1

    def handle_endtag(self, tag):
        if tag == "section":
            self.cur = None

    def handle_data(self, data):
        if self.cur:
            self.sections[self.cur]["text"] += data


def parse(path):
    p = Sections()
    p.feed(open(path).read())
    return p.sections


def make_record(dt=1e-3, seed=0, samples=6, steps=50):
    torch.manual_seed(seed)
    m = nt.SequentialState(
        torch.nn.Linear(12, 24), nt.LIFBoxCell(nt.LIFBoxParameters(v_th=torch.tensor(0.1)), dt=dt),
        torch.nn.Linear(24, 4), nt.LIFBoxCell(nt.LIFBoxParameters(v_th=torch.tensor(0.1)), dt=dt),
    )
    g = export_model(m)
    prog = lower(g, discretization_of(g))
    x = (torch.rand(samples, steps, 12) < 0.3).double().numpy()
    res = simulate(prog, x)
    return run_record(res, prog, labels=np.arange(samples) % 4, inputs=x, model="m.nir")


RUN_SECTIONS = ("summary", "metrics", "synops", "energy", "ann", "resources", "plots", "raster", "caveats")


def check_images(sections, sid, n):
    imgs = sections[sid]["images"]
    assert len(imgs) == n, sid
    for png in imgs:
        assert png.startswith(PNG) and len(png) > 2000, sid


def test_report_of_run_record(tmp_path, capsys):
    rec = make_record()
    write_json(rec, tmp_path / "run.json")
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(tmp_path / "run.json"), "-o", str(out)]) == 0
    s = parse(out)
    for sid in RUN_SECTIONS:
        assert sid in s and s[sid]["text"].strip(), sid
    for sid in ("summary", "metrics", "synops", "energy", "ann", "resources"):
        assert s[sid]["tables"] >= 1, sid
    check_images(s, "plots", 2)
    check_images(s, "raster", 1)
    assert "Effective_ACs" in s["synops"]["text"] and "loihi2-estimate" in s["energy"]["text"]
    md = (tmp_path / "out" / "report.md").read_text()
    for title in ("## Summary", "## Energy per inference", "## Spike raster", "## Chip resources"):
        assert title in md
    pngs = sorted((tmp_path / "out" / "report_files").glob("*.png"))
    assert {p.stem for p in pngs} == {"spikes_per_layer", "energy_per_layer", "raster"}
    assert all(p.read_bytes().startswith(PNG) and p.stat().st_size > 2000 for p in pngs)
    printed = capsys.readouterr().out
    assert "Energy per inference by model" in printed and "wrote" in printed


def test_report_of_sweep_directory(tmp_path):
    rows = []
    for method in ("tau", "exact"):
        for i, dt in enumerate((0.5e-3, 1e-3, 2e-3)):
            rec = make_record(dt=dt, seed=i, steps=int(50e-3 / dt))
            rows.append({"dt": dt, "rho": dt / 1e-3, "method": method, "accuracy": rec["accuracy"],
                         "spikes_per_sample": rec["total_spikes_per_sample"], "record": rec})
    rows.append({"dt": 4e-3, "rho": 4.0, "method": "tau", "accuracy": None, "spikes_per_sample": None, "error": "diverged"})
    d = tmp_path / "sweep"
    write_json({"model": "m.nir", "backend": "reference", "source_dt": 1e-3, "rows": rows}, d / "sweep.json")
    out = tmp_path / "sweep_report.md"
    assert main(["report", str(d), "-o", str(out), "-q"]) == 0
    s = parse(tmp_path / "sweep_report.html")
    assert "sweep" in s and s["sweep"]["tables"] == 1
    check_images(s, "sweep", 3)  # accuracy, spikes, energy vs timestep
    for sid in RUN_SECTIONS:
        assert sid in s and s[sid]["text"].strip(), sid
    assert "diverged" in s["sweep"]["text"]
    md = out.read_text()
    assert "![sweep_energy](sweep_report_files/sweep_energy.png)" in md


def test_report_with_user_energy_model(tmp_path):
    rec = make_record()
    write_json(rec, tmp_path / "run.json")
    f = tmp_path / "mine.toml"
    f.write_text('name = "my-chip"\n[costs.synop_dense]\nvalue = 1e-9\nsource = "datasheet"\nstatus = "assumption"\n')
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "run.json"), "-o", str(out), "--energy-model", str(f), "--no-markdown", "-q"]) == 0
    s = parse(out)
    assert "my-chip" in s["energy"]["text"] and "loihi1-sanafe" not in s["energy"]["text"]
    assert not (tmp_path / "r.md").exists()


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "r.html")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")]) == 2
    assert "sweep.json" in capsys.readouterr().err
    write_json({"hello": 1}, tmp_path / "x.json")
    assert main(["report", str(tmp_path / "x.json"), "-o", str(tmp_path / "r.html")]) == 2
    assert main(["report", str(tmp_path / "x.json"), "-o", str(tmp_path / "r.pdf")]) == 2


def test_node_names_are_text_in_terminal_tables_and_markdown():
    """A node called "[foo]" must not vanish as rich markup, nor "a|b" split a Markdown table."""
    import io

    from rich.console import Console

    from toolchain.reports.console import table
    from toolchain.reports.report import md_escape

    buf = io.StringIO()
    Console(file=buf, width=80).print(table("layers", ["layer", "spikes"], [["[foo]", 3], ["a|b", 4]]))
    assert "[foo]" in buf.getvalue()
    assert md_escape("[foo]") == "\\[foo\\]" and md_escape("a|b") == "a\\|b" and md_escape("1.5e-3") == "1.5e-3"
