"""Installs anywhere: the wheel of this checkout, installed into a folder of its own, runs
``nirdeploy demo`` from a directory outside the checkout, with nothing of the checkout on sys.path.

The wheel is built from a copy of the source tree (so no ``build/`` or ``*.egg-info`` is left in
the checkout and no stale ``build/lib`` can leak into it) without build isolation and without
dependencies: the test venv already has setuptools and every dependency, only the nirdeploy
packages themselves come from the wheel.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "*.egg-info", "build", "demo_out", "runs", "out",
    ".pytest_cache", ".hypothesis",
)

DEMO = """
import os, sys
sys.path.insert(0, {site!r})
import toolchain
print("toolchain.__file__ =", toolchain.__file__, flush=True)
from toolchain.cli.main import main
rc = main(["demo", "-o", {out!r}, "--lava-samples", "2", "-q"])
# every project module the demo loaded, and where from
ours = ("toolchain", "exporters", "simulators", "examples")
outside = sorted(n for n, m in list(sys.modules.items()) if n.split(".")[0] in ours
                 and not os.path.realpath(getattr(m, "__file__", None) or next(iter(getattr(m, "__path__", None) or [""])))
                 .startswith(os.path.realpath({site!r})))
print("project modules from outside the wheel:", outside)
sys.exit(rc)
"""


def _run(cmd, cwd, env):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"
    return r


@pytest.mark.lava
def test_wheel_runs_demo_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=IGNORE)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."], src, env)
    (wheel,) = glob.glob(str(wheels / "nirdeploy-*.whl"))
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel], tmp_path, env)
    shutil.rmtree(src)  # the installed copy must not need the source it was built from

    work = tmp_path / "elsewhere"
    work.mkdir()
    out = tmp_path / "out"
    # -I: isolated mode (no cwd or script dir on sys.path, no user site, PYTHON* ignored)
    r = _run([sys.executable, "-I", "-c", DEMO.format(site=str(site), out=str(out))], work, env)
    print(r.stdout.splitlines()[0])
    where = Path(r.stdout.split("toolchain.__file__ =", 1)[1].split()[0]).resolve()
    assert site.resolve() in where.parents, f"toolchain imported from {where}, not from the wheel in {site}"
    assert REPO not in where.parents
    assert "project modules from outside the wheel: []" in r.stdout, r.stdout[-2000:]

    for name in ("model.nir", "run_reference.json", "run_lava-float.json", "compare_reference_lava-float.json",
                 "demo_summary.json", "report.html", "report.md"):
        assert (out / name).is_file(), f"the demo did not write {name}"
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["reference_vs_lava_float"]["samples"] == 2
    assert summary["accuracy"]["reference"] > 0.8
