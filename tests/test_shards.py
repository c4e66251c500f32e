"""Sharded Lava runs (issue 16, point 1): the samples split over worker processes, merged into one
result that equals a single run, on lava-float and lava-fixed, through the API and the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here, it never skips)

from simulators.shards import shard_bounds
from toolchain import api

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.lava


@pytest.mark.parametrize("n, w", [(1, 2), (5, 2), (6, 3), (7, 4), (64, 2), (3, 8)])
def test_shards_cover_the_samples_in_order(n, w):
    b = shard_bounds(n, w)
    assert b[0][0] == 0 and b[-1][1] == n and all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))
    sizes = [y - x for x, y in b]
    assert len(b) == min(n, w) and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL

    path = tmp_path_factory.mktemp("shards") / "demo.nir"
    api.export_checkpoint(DEMO_MODEL, DEMO_CHECKPOINT, output=str(path))
    graph, prog = api.lower(str(path))
    inp = api.load_inputs(prog, data="default", samples=5)
    return path, prog, inp["x"][:, :40], inp["labels"]


@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_sharded_run_equals_one_run(demo, backend):
    _, prog, x, _ = demo
    one = api.simulate(prog, x, backend, record_v=True)
    two = api.simulate(prog, x, backend, record_v=True, workers=2)
    assert two.info["workers"] == 2 and [s["samples"] for s in two.info["shards"]] == [3, 2]
    assert sorted(one.spikes) == sorted(two.spikes) and one.spikes
    for k in one.spikes:
        np.testing.assert_array_equal(one.spikes[k], two.spikes[k], err_msg=k)
    for k in one.v:
        np.testing.assert_array_equal(one.v[k], two.v[k], err_msg=k)
    for k in one.outputs:
        np.testing.assert_array_equal(one.outputs[k], two.outputs[k], err_msg=k)
    assert np.array_equal(one.predictions(), two.predictions())
    assert sum(int(z.sum()) for z in one.spikes.values()) > 0


def test_workers_must_be_positive(demo):
    from toolchain.errors import NirDeployError

    _, prog, x, _ = demo
    with pytest.raises(NirDeployError, match="--workers"):
        api.simulate(prog, x, "lava-float", workers=0)


def test_cli_simulate_with_workers_writes_the_same_record(demo, tmp_path):
    path = demo[0]
    recs = []
    for w in ("1", "2"):
        out = tmp_path / f"w{w}.json"
        r = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "simulate", str(path), "--data", "default",
                            "--samples", "4", "--backend", "lava-float", "--workers", w, "-q", "-o", str(out)],
                           capture_output=True, text=True, cwd=REPO, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr
        recs.append(json.loads(out.read_text()))
    a, b = recs
    assert a["predictions"] == b["predictions"] and a["accuracy"] == b["accuracy"]
    assert [l["spikes"] for l in a["layers"]] == [l["spikes"] for l in b["layers"]]
