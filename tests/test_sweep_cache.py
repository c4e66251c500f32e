"""The sweep's cell cache: cells are keyed by everything that determines them (model bytes, data,
samples, source discretization, dt, method, backend, profile, version), a folder is written by
one sweep at a time, and bad arguments are refused before any cell runs (never cached)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import toolchain
from toolchain.cli.main import main
from toolchain.data import make_temporal_task
from toolchain.ir import load_graph, save_graph
from toolchain.reports.sweep import lock_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CK = os.path.join(REPO, "toolchain", "demo_model", "checkpoint.pt")
CELLS = ("--dt", "0.001,0.002", "--method", "integral,exact", "--workers", "1")


@pytest.fixture(scope="module")
def demo_nir(tmp_path_factory):
    p = tmp_path_factory.mktemp("sweep_cache") / "demo.nir"
    assert main(["export", "--model", "examples.zoo.temporal.model:build_model", "--checkpoint", CK, "-o", str(p)]) == 0
    return str(p)


def _sweep(model, out, data="default", samples="6", *extra):
    return main(["sweep", model, "--data", str(data), "--samples", str(samples), "-q", "-o", str(out), *CELLS, *extra])


def _mtimes(out):
    cells = out / "cells"
    return {f: os.stat(cells / f).st_mtime_ns for f in os.listdir(cells)}


def _keys(out):
    return {f: json.loads((out / "cells" / f).read_text())["cache_key"] for f in os.listdir(out / "cells")}


def _rows(out):
    return json.loads((out / "sweep.json").read_text())["rows"]


def _essence(rows):
    """What a row says, without the run record's timestamps and timings."""
    return [{**{k: v for k, v in r.items() if k != "record"},
             "samples": r["record"]["samples"], "data": r["record"]["data"], "retime": r["record"]["retime"]}
            for r in rows]  # fmt: skip


def _data_file(path, seed, n=8):
    _, test = make_temporal_task(2, n, seed=seed)
    test.save(path)
    return str(path)


def _model_with_one_weight_changed(src, dst):
    g = load_graph(src)
    name = next(n for n, node in g.nodes.items() if getattr(node, "weight", None) is not None)
    w = np.array(g.nodes[name].weight, dtype=float, copy=True)
    w.flat[0] += 5.0 * (np.abs(w).max() + 1.0)  # one weight, made large enough to change spikes
    g.nodes[name].weight = w
    save_graph(g, dst)
    return str(dst)


def test_unchanged_arguments_reuse_every_cell(demo_nir, tmp_path):
    out = tmp_path / "sw"
    assert _sweep(demo_nir, out) == 0
    before, first = _mtimes(out), _rows(out)
    assert len(before) == 4
    for r in first:
        k = r["cache_key"]
        assert len(k["hash"]) == 64 and k["samples"] == 6 and k["dt"] == r["dt"] and k["method"] == r["method"]
        assert k["data"]["spec"] == "default" and len(k["data"]["sha256"]) == 64  # the shipped file's hash
        assert k["source"]["dt"] == pytest.approx(1e-3) and k["nirdeploy"] == toolchain.__version__
        assert k["backend"] == "reference" and k["profile"] is None and len(k["model_sha256"]) == 64
    assert _sweep(demo_nir, out) == 0
    assert _mtimes(out) == before
    assert _rows(out) == first


def _other_model(demo_nir, tmp_path):
    return dict(model=_model_with_one_weight_changed(demo_nir, tmp_path / "changed.nir"))


def _other_samples(demo_nir, tmp_path):
    return dict(samples="4")


def _other_data(demo_nir, tmp_path):
    return dict(data=_data_file(tmp_path / "other.h5", seed=11))


def _other_source_dt(demo_nir, tmp_path):
    return dict(extra=("--source-dt", "0.0005"))


@pytest.mark.parametrize("change", [_other_model, _other_samples, _other_data, _other_source_dt],
                         ids=["model", "samples", "data", "source-dt"])  # fmt: skip
def test_rerun_with_other_arguments_recomputes_every_cell(demo_nir, tmp_path, change):
    out = tmp_path / "sw"
    assert _sweep(demo_nir, out) == 0
    before, keys = _mtimes(out), _keys(out)
    args = dict(model=demo_nir, data="default", samples="6", extra=())
    args.update(change(demo_nir, tmp_path))
    run = lambda o: _sweep(args["model"], o, args["data"], args["samples"], *args["extra"])  # noqa: E731
    assert run(out) == 0
    after, new_keys = _mtimes(out), _keys(out)
    assert set(after) == set(before) and all(after[f] != before[f] for f in before)
    assert all(new_keys[f]["hash"] != keys[f]["hash"] for f in keys)
    # the rows are those of a sweep with the new arguments into an empty folder
    fresh = tmp_path / "fresh"
    assert run(fresh) == 0
    assert _essence(_rows(out)) == _essence(_rows(fresh))
    rows = _rows(out)
    if "samples" in change.__name__:
        assert all(r["record"]["samples"] == 4 and r["cache_key"]["samples"] == 4 for r in rows)
    if "data" in change.__name__:
        assert all(r["record"]["data"]["source"] == args["data"] for r in rows)
    if "source_dt" in change.__name__:
        assert [r["rho"] for r in rows] == [2.0, 2.0, 4.0, 4.0]
        assert all(r["cache_key"]["source"]["dt"] == 0.0005 for r in rows)
    if "model" in change.__name__:
        assert all(new_keys[f]["model_sha256"] != keys[f]["model_sha256"] for f in keys)
        old = json.loads((tmp_path / "sw" / "sweep.json").read_text())
        assert old["model"] == args["model"]


def test_data_file_rewritten_in_place_recomputes(demo_nir, tmp_path):
    data = _data_file(tmp_path / "d.h5", seed=1)
    out = tmp_path / "sw"
    assert _sweep(demo_nir, out, data) == 0
    before, keys = _mtimes(out), _keys(out)
    assert _sweep(demo_nir, out, data) == 0
    assert _mtimes(out) == before  # same file, same bytes: reused
    _data_file(data, seed=2)  # same name, other events
    assert _sweep(demo_nir, out, data) == 0
    after, new_keys = _mtimes(out), _keys(out)
    assert all(after[f] != before[f] for f in before)
    assert all(new_keys[f]["data"]["sha256"] != keys[f]["data"]["sha256"] for f in keys)


def test_another_nirdeploy_version_recomputes(demo_nir, tmp_path, monkeypatch):
    out = tmp_path / "sw"
    assert _sweep(demo_nir, out) == 0
    before = _mtimes(out)
    monkeypatch.setattr(toolchain, "__version__", toolchain.__version__ + ".post1")
    assert _sweep(demo_nir, out) == 0
    after = _mtimes(out)
    assert all(after[f] != before[f] for f in before)
    assert {k["nirdeploy"] for k in _keys(out).values()} == {toolchain.__version__}


def test_cell_without_a_cache_key_is_recomputed(demo_nir, tmp_path):
    out = tmp_path / "sw"
    assert _sweep(demo_nir, out) == 0
    p = out / "cells" / "dt0.002_exact.json"
    old = json.loads(p.read_text())
    del old["cache_key"]  # a cell written before cells were keyed
    p.write_text(json.dumps(old))
    before = _mtimes(out)
    assert _sweep(demo_nir, out) == 0
    after = _mtimes(out)
    assert {f for f in after if after[f] != before[f]} == {"dt0.002_exact.json"}


def test_second_sweep_into_a_locked_folder_is_refused(demo_nir, tmp_path):
    out = tmp_path / "sw"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "toolchain.cli.main", "sweep", demo_nir, "--data", "default", "--samples", "2",
           "-q", "-o", str(out), "--dt", "0.002", "--method", "integral", "--workers", "1"]  # fmt: skip
    with lock_folder(str(out)):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path))
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip() == f"nirdeploy: error: {out} is being written by another sweep (pid {os.getpid()})"
        assert not (out / "cells").exists() and not (out / "sweep.json").exists()
    # the lock is released with the first sweep: the folder can be written again
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert (out / "cells" / "dt0.002_integral.json").exists()


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with lock_folder(str(tmp_path)):
        with pytest.raises(toolchain.errors.NirDeployError, match=r"being written by another sweep \(pid \d+\)"):
            with lock_folder(str(tmp_path)):
                pass
    with lock_folder(str(tmp_path)):  # released
        pass


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nirdeploy: error: "), err
    for n in needles:
        assert n in err, err


def test_bad_data_is_an_error_and_writes_no_cell(demo_nir, tmp_path, capsys):
    out = tmp_path / "sw"
    assert _sweep(demo_nir, out, tmp_path / "missing.h5") == 2
    _one_line_error(capsys, "missing.h5", "no such file")
    assert not (out / "cells").exists() or not os.listdir(out / "cells")
    bad = tmp_path / "bad.h5"
    bad.write_text("not events")
    assert _sweep(demo_nir, out, bad) == 2
    _one_line_error(capsys, "bad.h5")
    assert not (out / "cells").exists() or not os.listdir(out / "cells")
    # a folder with finished cells keeps them untouched
    assert _sweep(demo_nir, out) == 0
    capsys.readouterr()
    before = _mtimes(out)
    assert _sweep(demo_nir, out, tmp_path / "missing.h5") == 2
    _one_line_error(capsys, "no such file")
    assert _mtimes(out) == before


@pytest.mark.parametrize("samples", ["0", "-3"])
def test_samples_below_one_are_refused(demo_nir, tmp_path, capsys, samples):
    out = tmp_path / "sw"
    assert _sweep(demo_nir, out, "default", samples) == 2
    _one_line_error(capsys, "--samples", samples)
    assert not out.exists()


def test_missing_model_is_refused_before_any_cell(tmp_path, capsys):
    out = tmp_path / "sw"
    assert _sweep(str(tmp_path / "nope.nir"), out) == 2
    _one_line_error(capsys, "nope.nir")
    assert not out.exists()
