"""No orphans: SIGTERM, SIGHUP and SIGKILL of a Lava run or a sweep leave nothing behind.

Each test starts the CLI in its own session, waits until the run is under way, signals the main
process and polls (generously: the machine is shared) until no process of the session is left
and none of the run's /dev/shm/psm_* segments or nirdeploy-lava-* folders remains. "The run's"
segments and folders are those mapped by the session's processes while it ran (other jobs on
this machine create their own at the same time).
"""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lava.magma.core.process.process  # noqa: F401  (a missing Lava fails these tests)
import pytest

from toolchain.signals import Terminated, raise_on_termination

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
TIMEOUT = 90.0


def _cli(*argv, **kw):
    return subprocess.Popen([sys.executable, "-m", "toolchain.cli.main", *argv], cwd=str(REPO), env=ENV,
                            start_new_session=True, **kw)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("signals") / "demo.nir"
    subprocess.run([sys.executable, "-m", "toolchain.cli.main", "export", "--model", "toolchain.demo_model.model:build_model",
                    "--checkpoint", "toolchain/demo_model/checkpoint.pt", "-o", str(out)],
                   cwd=str(REPO), env=ENV, check=True, capture_output=True)
    return out


def session_members(sid: int):
    """Live (not zombie) processes of session ``sid``."""
    pids = []
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(st.split("/")[2]))
    return pids


def mapped_files(pids):
    """The psm_* segments and nirdeploy-lava-* folders that ``pids`` have mapped."""
    shm, dirs = set(), set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps") as f:
                text = f.read()
        except OSError:
            continue
        shm.update(re.findall(r"/dev/shm/(psm_\w+)", text))
        dirs.update(re.findall(r"(/tmp/nirdeploy-lava-[^/\s]+)/", text))
    return shm, dirs


def poll(cond, timeout=TIMEOUT, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return cond()


def _kill_session(sid):
    for pid in session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.parametrize("sig,workers", [(signal.SIGTERM, 1), (signal.SIGHUP, 1), (signal.SIGKILL, 1),
                                         (signal.SIGTERM, 2), (signal.SIGKILL, 2)],
                         ids=["TERM", "HUP", "KILL", "TERM-2-workers", "KILL-2-workers"])  # fmt: skip
def test_a_signalled_lava_run_leaves_nothing_behind(model, tmp_path, sig, workers):
    """Also a sharded run (simulators/shards.py): the workers and their Lava processes go too."""
    err = tmp_path / "stderr.txt"
    with open(err, "w") as ef:
        p = _cli("simulate", str(model), "--data", "default", "--samples", "64", "--backend", "lava-float", "-q",
                 "--workers", str(workers), stdout=subprocess.DEVNULL, stderr=ef)
    try:
        # under way: Lava's processes are up and have mapped their segments and recordings
        seen = {"shm": set(), "dirs": set()}

        def started():
            shm, dirs = mapped_files(session_members(p.pid))
            seen["shm"] |= shm
            seen["dirs"] |= dirs
            return len(session_members(p.pid)) >= 5 and seen["shm"] and seen["dirs"]

        assert poll(started), "the Lava run did not start"
        time.sleep(0.5)
        seen["shm"] |= mapped_files(session_members(p.pid))[0]
        assert p.poll() is None, "the run finished before the signal: give it more samples"
        os.kill(p.pid, sig)
        rc = p.wait(timeout=TIMEOUT)
        assert poll(lambda: not session_members(p.pid)), f"survivors: {session_members(p.pid)}"
        assert poll(lambda: not any(os.path.exists("/dev/shm/" + n) for n in seen["shm"])), \
            [n for n in seen["shm"] if os.path.exists("/dev/shm/" + n)]
        assert poll(lambda: not any(os.path.exists(d) for d in seen["dirs"])), seen["dirs"]
        if sig == signal.SIGKILL:
            assert rc == -signal.SIGKILL
        else:
            assert rc == 128 + sig
            lines = err.read_text().strip().splitlines()
            assert lines == [f"nirdeploy: terminated ({signal.Signals(sig).name})"], lines
    finally:
        _kill_session(p.pid)


@pytest.mark.parametrize("sig,group", [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["TERM", "ctrl-c"])
def test_a_terminated_sweep_stops_its_workers(model, tmp_path, sig, group):
    """SIGTERM to the sweep, or Ctrl-C (SIGINT to the whole foreground process group)."""
    out = tmp_path / "sweep"
    p = _cli("sweep", str(model), "--data", "default", "--samples", "16", "--backend", "reference", "--workers", "2",
             "--dt", "0.001,0.0015,0.002,0.0025,0.003,0.004,0.005,0.006,0.008,0.01", "--method", "tau", "-q",
             "-o", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        cells = out / "cells"
        assert poll(lambda: cells.is_dir() and any(cells.glob("*.json"))), "no cell was written"
        (os.killpg if group else os.kill)(p.pid, sig)
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 128 + sig, err
        assert "Traceback" not in err
        assert poll(lambda: not session_members(p.pid)), f"workers survive: {session_members(p.pid)}"
        written = sorted(cells.glob("*.json"))
        time.sleep(3)
        assert sorted(cells.glob("*.json")) == written  # no cell is written afterwards
        assert len(written) < 10  # ... and not every cell ran
    finally:
        _kill_session(p.pid)


def test_raise_on_termination_raises_and_restores():
    before = signal.getsignal(signal.SIGTERM)
    assert before == signal.SIG_DFL
    with pytest.raises(Terminated) as e:
        with raise_on_termination():
            os.kill(os.getpid(), signal.SIGTERM)
            poll(lambda: False, timeout=10, every=0.01)
    assert e.value.signum == signal.SIGTERM and e.value.exit_code == 143
    assert isinstance(e.value, KeyboardInterrupt)  # the Ctrl-C cleanup paths run for it
    assert signal.getsignal(signal.SIGTERM) == before


def test_an_ignored_sighup_stays_ignored():
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with raise_on_termination():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)
