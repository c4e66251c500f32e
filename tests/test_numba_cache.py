"""The emulator's numba kernels are cached under the user's cache folder, not in the package (issue 16)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CODE = """
import numpy as np
from toolchain import api
from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL
import simulators.emulator as em
assert em.HAVE_NUMBA
g = api.export_checkpoint(DEMO_MODEL, DEMO_CHECKPOINT)
_, prog = api.lower(g)
x = api.load_inputs(prog, data="default", samples=2)["x"][:, :20]
api.simulate(prog, x, "emulator")
import numba
print(numba.config.CACHE_DIR)
"""


def test_numba_caches_under_the_user_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    cache = tmp_path / "cache" / "nirdeploy" / "numba"
    assert r.stdout.strip().splitlines()[-1] == str(cache)
    assert list(cache.rglob("*.nbi")), "no numba index was written under the user's cache"


def test_an_explicit_numba_cache_dir_wins(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "mine"), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", "import simulators.emulator as em, numba; print(numba.config.CACHE_DIR)"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "mine")
