"""Ray as the engine beyond one machine (issue 16, point 2; simulators/ray_executor.py).

* Lava shards as Ray tasks on a two-node cluster (``ray start --head`` plus ``ray start
  --address``, both on this machine, as docs/scale.md shows) give the run of one process, with
  the shards on both nodes; through the API and the CLI (``$RAY_ADDRESS``).
* A sweep on Ray gives the rows of a local sweep, and resumes like one: cached cells are not run
  again; one interrupted by Ctrl-C resumes from the cells that finished.
* Ctrl-C, SIGTERM and SIGKILL of a run on a local Ray started for it leave nothing behind: no
  process (GCS, raylet, agents, workers, Lava), no /dev/shm segment, no Ray folder.
* Bad use is a clear error: Ray missing, --ray-address without --executor ray, an unknown
  executor.

Ray and Lava are required: a missing one fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here)
import ray  # noqa: F401  (a missing Ray fails here: it is in requirements.lock)

from toolchain import api
from toolchain.errors import NirDeployError

from test_signals import mapped_files, poll, session_members, _kill_session

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.lava
RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module", autouse=True)
def auth(tmp_path_factory):
    """Token authentication, as a real cluster should run: the nodes and the drivers of this module
    share one token (docs/scale.md), in a file of their own, not the user's ~/.ray/auth_token."""
    import secrets

    token = tmp_path_factory.mktemp("ray-auth") / "auth_token"
    token.write_text(secrets.token_hex(32))
    with pytest.MonkeyPatch.context() as m:
        m.setenv("RAY_AUTH_MODE", "token")
        m.setenv("RAY_AUTH_TOKEN_PATH", str(token))
        m.delenv("RAY_AUTH_TOKEN", raising=False)
        m.delenv("RAY_ADDRESS", raising=False)
        yield token


def env(**extra):
    """The environment of a command: this checkout first on the path (and the module's token)."""
    e = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    e.update(extra)
    return e


def cli(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "toolchain.cli.main", *argv], cwd=str(REPO), capture_output=True,
                          text=True, timeout=600, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL

    path = tmp_path_factory.mktemp("ray") / "demo.nir"
    api.export_checkpoint(DEMO_MODEL, DEMO_CHECKPOINT, output=str(path))
    graph, prog = api.lower(str(path))
    inp = api.load_inputs(prog, data="default", samples=5)
    return path, prog, inp["x"][:, :40], inp["labels"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(auth):
    """A Ray cluster of two nodes on this machine, one CPU each, started as docs/scale.md does."""
    if subprocess.run(["pgrep", "-f", "ray/core/src/ray/raylet/raylet"], capture_output=True).returncode == 0:
        pytest.fail("a Ray cluster is already running on this machine: these tests start (and `ray stop`) their own")
    port = _free_port()
    e = env()
    try:
        head = subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                               "--disable-usage-stats"], env=e, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert head.returncode == 0, head.stdout + head.stderr
        node = subprocess.run([RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--disable-usage-stats"],
                              env=e, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert node.returncode == 0, node.stdout + node.stderr
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=e, capture_output=True, timeout=120)


def _same_run(one, two):
    assert sorted(one.spikes) == sorted(two.spikes) and one.spikes
    for k in one.spikes:
        np.testing.assert_array_equal(one.spikes[k], two.spikes[k], err_msg=k)
    for k in one.v:
        np.testing.assert_array_equal(one.v[k], two.v[k], err_msg=k)
    for k in one.outputs:
        np.testing.assert_array_equal(one.outputs[k], two.outputs[k], err_msg=k)
    assert np.array_equal(one.predictions(), two.predictions())


@pytest.mark.parametrize("backend", ["lava-float", "lava-fixed"])
def test_shards_on_a_two_node_cluster_equal_one_run(demo, cluster, backend):
    _, prog, x, _ = demo
    one = api.simulate(prog, x, backend, record_v=True, workers=1)
    two = api.simulate(prog, x, backend, record_v=True, executor="ray", ray_address=cluster)
    _same_run(one, two)
    ex = two.info["executor"]
    assert ex["name"] == "ray" and ex["address"] == cluster and ex["nodes"] == 2 and ex["cpus"] == 2
    assert two.info["workers"] == 2 and [s["samples"] for s in two.info["shards"]] == [3, 2]
    # one shard per CPU, and each node has one: the shards ran on both nodes
    assert ex["nodes_used"] == 2 and len({s["node"] for s in two.info["shards"]}) == 2
    assert not ray.is_initialized()  # the driver disconnected (and left the cluster running)


def test_cli_simulate_on_the_cluster_writes_the_local_record(demo, cluster, tmp_path):
    path = demo[0]
    args = ["simulate", str(path), "--data", "default", "--samples", "4", "--backend", "lava-fixed", "-q"]
    r1 = cli(*args, "--workers", "1", "-o", str(tmp_path / "local.json"), env=env())
    assert r1.returncode == 0, r1.stderr
    r2 = cli(*args, "--executor", "ray", "-o", str(tmp_path / "ray.json"), env=env(RAY_ADDRESS=cluster))
    assert r2.returncode == 0, r2.stderr
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("local.json", "ray.json"))
    assert a["predictions"] == b["predictions"] and a["accuracy"] == b["accuracy"]
    assert [l["spikes"] for l in a["layers"]] == [l["spikes"] for l in b["layers"]]
    ex = b["backend_info"]["executor"]
    assert ex["address"] == cluster and ex["nodes_used"] == 2


def _rows(res):
    return [(r["dt"], r["method"], r["accuracy"], r["spikes_per_sample"], r.get("error")) for r in res["rows"]]


@pytest.mark.parametrize("backend", ["reference", "lava-fixed"])
def test_a_sweep_on_ray_equals_a_local_sweep_and_resumes(demo, cluster, tmp_path, backend):
    path = str(demo[0])
    kw = dict(dts=[0.001, 0.002], methods=["exact", "euler"], backend=backend, samples=4, progress=False)
    local = api.sweep(path, "default", output=str(tmp_path / "local"), **kw)
    out = tmp_path / "ray"
    on_ray = api.sweep(path, "default", output=str(out), executor="ray", ray_address=cluster, **kw)
    assert _rows(local) == _rows(on_ray) and all(r[2] is not None for r in _rows(local))
    assert on_ray["executor"]["nodes_used"] == 2  # two cells at a time, one per node
    for a, b in zip(local["rows"], on_ray["rows"]):
        assert [l["spikes"] for l in a["record"]["layers"]] == [l["spikes"] for l in b["record"]["layers"]]
    # resume: the cached cells are not run again; a missing one is
    cells = sorted((out / "cells").glob("*.json"))
    stamps = {p.name: p.stat().st_mtime_ns for p in cells}
    cells[0].unlink()
    again = api.sweep(path, "default", output=str(out), executor="ray", ray_address=cluster, **kw)
    assert _rows(again) == _rows(on_ray)
    assert {p.name: p.stat().st_mtime_ns for p in cells[1:]} == {k: v for k, v in stamps.items() if k != cells[0].name}
    assert cells[0].exists()
    assert again["executor"]["nodes_used"] == 1  # only the missing cell ran


def test_missing_ray_is_a_clear_error(monkeypatch, demo):
    from simulators.ray_executor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(NirDeployError, match=r"pip install 'nirdeploy\[ray\]'"):
        import_ray()
    _, prog, x, _ = demo
    with pytest.raises(NirDeployError, match="needs Ray"):
        api.simulate(prog, x, "lava-float", executor="ray")


def test_bad_executor_arguments_are_refused(demo, tmp_path):
    _, prog, x, _ = demo
    with pytest.raises(NirDeployError, match="--ray-address is for --executor ray"):
        api.simulate(prog, x, "lava-float", ray_address="127.0.0.1:6379")
    with pytest.raises(NirDeployError, match="unknown executor"):
        api.simulate(prog, x, "lava-float", executor="dask")
    r = cli("simulate", str(demo[0]), "--data", "default", "--samples", "2", "--ray-address", "127.0.0.1:6379")
    assert r.returncode != 0 and "--ray-address is for --executor ray" in r.stderr and "Traceback" not in r.stderr
    r = cli("sweep", str(demo[0]), "--data", "default", "--dt", "0.001", "--method", "exact", "-o", str(tmp_path / "s"),
            "--ray-address", "127.0.0.1:6379")  # fmt: skip
    assert r.returncode != 0 and "--ray-address is for --executor ray" in r.stderr
    assert not (tmp_path / "s").exists()  # refused before the folder is touched


# --------------------------------------------------------------------------- signals
def _start(argv, err_path):
    with open(err_path, "w") as ef:
        return subprocess.Popen([sys.executable, "-m", "toolchain.cli.main", *argv], cwd=str(REPO), env=env(),
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=ef)  # fmt: skip


def _ray_folders(pids):
    """The run's own Ray folders, named on the command line of its watchdog."""
    out = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out.update(a.decode() for a in f.read().split(b"\0") if b"/nirdeploy-ray-" in a)
        except OSError:
            pass
    return out


def _tasks(pids):
    n = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                n += b"_run_task" in f.read()
        except OSError:
            pass
    return n


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "TERM", "KILL"])
def test_a_signalled_run_on_ray_leaves_nothing_behind(demo, tmp_path, sig):
    """A local Ray started for the run: Ctrl-C (SIGINT to the whole process group), SIGTERM or
    SIGKILL to the command while its Lava shards run as Ray tasks."""
    err = tmp_path / "stderr.txt"
    p = _start(["simulate", str(demo[0]), "--data", "default", "--samples", "64", "--backend", "lava-float",
                "--executor", "ray", "-q"], err)  # fmt: skip
    try:
        seen = {"shm": set(), "folders": set(), "pids": set()}

        def started():
            members = session_members(p.pid)
            seen["pids"] |= set(members)
            seen["shm"] |= mapped_files(members)[0]
            seen["folders"] |= _ray_folders(members)
            return _tasks(members) >= 2 and len(seen["shm"]) > 0

        assert poll(started, timeout=240), f"the shards did not start: {err.read_text()[-2000:]}"
        time.sleep(1.0)
        seen["shm"] |= mapped_files(session_members(p.pid))[0]
        assert p.poll() is None, "the run finished before the signal: give it more samples"
        assert seen["folders"], "no Ray folder of the run was seen"
        (os.killpg if sig == signal.SIGINT else os.kill)(p.pid, sig)
        rc = p.wait(timeout=120)
        assert poll(lambda: not session_members(p.pid), timeout=60), f"survivors: {session_members(p.pid)}"
        assert poll(lambda: not any(os.path.exists("/dev/shm/" + n) for n in seen["shm"])), \
            [n for n in seen["shm"] if os.path.exists("/dev/shm/" + n)]
        assert poll(lambda: not any(os.path.exists(d) for d in seen["folders"])), seen["folders"]
        if sig == signal.SIGKILL:
            assert rc == -signal.SIGKILL
        else:
            assert rc == 128 + sig, err.read_text()
            assert "Traceback" not in err.read_text()
    finally:
        _kill_session(p.pid)


def test_an_interrupted_sweep_on_ray_resumes(demo, tmp_path):
    """Ctrl-C during a sweep on Ray: no task keeps running, no cell is written afterwards, and the
    same command finishes the sweep without running the cells that were done."""
    out = tmp_path / "sweep"
    argv = ["sweep", str(demo[0]), "--data", "default", "--samples", "16", "--backend", "reference", "--executor", "ray",
            "--dt", "0.001,0.0015,0.002,0.0025,0.003,0.004,0.005,0.006,0.008,0.01,0.012,0.015", "--method", "tau",
            "-q", "-o", str(out)]  # fmt: skip
    p = _start(argv, tmp_path / "err1.txt")
    try:
        cells = out / "cells"
        assert poll(lambda: cells.is_dir() and any(cells.glob("*.json")), timeout=240), "no cell was written"
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=120)
        assert rc == 130, (tmp_path / "err1.txt").read_text()
        assert poll(lambda: not session_members(p.pid), timeout=60), f"survivors: {session_members(p.pid)}"
    finally:
        _kill_session(p.pid)
    written = {c.name: c.stat().st_mtime_ns for c in cells.glob("*.json")}
    time.sleep(2)
    assert {c.name: c.stat().st_mtime_ns for c in cells.glob("*.json")} == written  # nothing ran on
    assert 1 <= len(written) < 12
    r = cli(*argv, env=env())
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "sweep.json").read_text())
    assert len(res["rows"]) == 12 and all(row["accuracy"] is not None for row in res["rows"])
    assert {n: (cells / n).stat().st_mtime_ns for n in written} == written  # the finished cells were not rerun
    assert res["executor"]["name"] == "ray"
