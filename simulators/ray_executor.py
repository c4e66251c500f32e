"""Ray as the engine beyond one machine: Lava shards and sweep cells as Ray tasks.

The only module that imports Ray (an optional dependency: ``pip install 'nirdeploy[ray]'``).
``--executor ray`` connects to the cluster at ``--ray-address`` or ``$RAY_ADDRESS``, else starts a
local Ray for the run (one CPU per core this process may use) and stops it afterwards.

What runs where: the driver (the ``nirdeploy`` command) loads the graph and the data, lowers the
program and bins the inputs; a task receives the program and its slice of the inputs (cloudpickle
carries the program's closures, which the standard pickle cannot) and returns the
:class:`~simulators.result.SimResult`. The workers therefore need the same Python environment,
not the files: no model, data or output folder has to be on the worker nodes. Records are written
by the driver as the tasks finish, so a sweep on Ray resumes like a local one.

Stopping: each task takes one CPU and is never retried (``max_retries=0``: a failure is the
user's answer, not something to repeat). When the driver is interrupted (Ctrl-C, SIGTERM) or a
task fails, every task of the run is cancelled with ``force=True`` (its worker process is killed,
and with it the Lava processes it started, which die with their parent); a local Ray started for
the run is shut down, so no raylet, GCS or worker process outlives the command.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from simulators.result import SimResult
from toolchain.errors import NirDeployError

#: the ``--executor`` choices: worker processes on this machine, or Ray tasks
EXECUTORS = ("local", "ray")

#: object store of a local Ray started for a run: inputs of a few thousand samples fit, and a
#: small store starts fast on machines with little /dev/shm
LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2


def check_executor(executor: Optional[str]) -> str:
    name = executor or "local"
    if name not in EXECUTORS:
        raise NirDeployError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    return name


def import_ray():
    """The ``ray`` module, or a NirDeployError saying how to install it."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise NirDeployError(
            f"--executor ray needs Ray, which is not installed ({e}); install it with "
            "pip install 'nirdeploy[ray]' (the version pinned in requirements.lock)"
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: Optional[str] = None) -> Iterator[Dict[str, Any]]:
    """Ray connected for the duration of the block; yields :func:`cluster_info`.

    ``address`` (``--ray-address``), else ``$RAY_ADDRESS``: join that cluster (``auto`` finds the
    one started on this machine with ``ray start``). Neither: a local Ray with one CPU per core
    this process may use, shut down at the end. A Ray this process had already initialised is
    used as it is and left running."""
    ray = import_ray()
    from simulators.shard_plan import default_workers

    started, guard = False, None
    if not ray.is_initialized():
        import signal
        import threading

        # Ray's core worker installs its own handlers for fatal signals, SIGTERM among them (it
        # prints a stack and exits 1); this process's own (toolchain/signals.py: SIGTERM and SIGHUP
        # stop the run like Ctrl-C) are put back after ray.init
        main = threading.current_thread() is threading.main_thread()
        saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)} if main else {}
        addr = address or os.environ.get("RAY_ADDRESS") or None
        kw: Dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            if addr:
                _auth_from_environment()
                ray.init(address=addr, **kw)
            else:
                # the run's own Ray folder, watched from before Ray starts: whatever ends the driver,
                # every process of this Ray (their command lines name the folder) is stopped
                guard, kw["_temp_dir"] = _start_watchdog()
                ray.init(num_cpus=default_workers(), object_store_memory=LOCAL_OBJECT_STORE_BYTES, **kw)
        except BaseException as e:
            if guard is not None:
                _stop_watchdog(guard)
            if not isinstance(e, Exception) or isinstance(e, NirDeployError):
                raise
            where = f"the Ray cluster at {addr}" if addr else "a local Ray"
            # ConnectionError, RuntimeError, ValueError: an address that is not a Ray cluster
            raise NirDeployError(f"could not start or join {where}: {type(e).__name__}: {e}") from None
        started = True
        for sig, h in saved.items():
            if h is not None:
                with contextlib.suppress(Exception):
                    signal.signal(sig, h)
    try:
        yield cluster_info(address or os.environ.get("RAY_ADDRESS") or ("local" if started else "existing"))
    finally:
        if started:
            with contextlib.suppress(Exception):
                ray.shutdown()
        if guard is not None:
            _stop_watchdog(guard)


def _auth_from_environment() -> None:
    """Joining a cluster: token authentication as the nodes were started with. Ray reads
    ``RAY_AUTH_MODE`` / ``RAY_AUTH_TOKEN_PATH`` once, at import; read them again now (an API user
    may set them later), and, as ``ray start --head`` does, use a token in ``~/.ray/auth_token``
    when the mode is not set."""
    with contextlib.suppress(Exception):  # Ray's internals moved: its import-time reading remains
        from ray._private.authentication import authentication_token_setup as auth
        from ray._raylet import AuthenticationTokenLoader, Config

        if os.environ.get(auth.AUTH_MODE_ENV_VAR) is None:
            auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


#: the watchdog of a local Ray (``python -c``; imports nothing of ours). Until the end of its
#: stdin (a pipe only the driver holds, which closes when the driver ends for any reason, SIGKILL
#: included) it keeps a list of this Ray's processes: those whose command line names the run's
#: Ray folder (GCS, raylet, ...) and, followed by parent pid, their descendants (the raylet's agents
#: and workers rename themselves, e.g. ``ray::DashboardAgent``; the Lava processes a worker forks).
#: Then it stops them, SIGTERM and SIGKILL after a grace period, and removes the folder.
_WATCHDOG = r"""
import os, select, shutil, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)  # Ctrl-C to the terminal's group: the driver handles it
root = sys.argv[1]
tag = root.encode()
me = os.getpid()
known = {}  # pid -> start time (a reused pid is not ours)
def stat(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        rest = f.read().rsplit(b")", 1)[1].split()
    return int(rest[1]), rest[19]  # ppid, start time
def scan():
    for _ in range(3):  # a new process and its children in one pass
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            pid = int(d)
            try:
                ppid, start = stat(pid)
                if pid in known and known[pid] == start:
                    continue
                if ppid in known:
                    known[pid] = start
                    continue
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if tag in f.read():
                        known[pid] = start
            except (OSError, IndexError, ValueError):
                pass
def alive():
    out = []
    for pid, start in list(known.items()):
        try:
            if stat(pid)[1] == start and open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(pid)
        except (OSError, IndexError):
            pass
    return out
fd = sys.stdin.fileno()
while True:
    scan()
    r, _, _ = select.select([fd], [], [], 0.3)
    if r and not os.read(fd, 4096):
        break
scan()
for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
    pids = alive()
    if not pids:
        break
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    end = time.monotonic() + wait
    while time.monotonic() < end and alive():
        time.sleep(0.1)
        scan()
shutil.rmtree(root, ignore_errors=True)
"""


def _start_watchdog():
    """``(watchdog process, the run's Ray folder)``: a short folder (Ray's sockets live under it,
    and a socket path may not exceed 107 bytes) and the process that cleans up after the run."""
    import subprocess
    import sys
    import tempfile

    base = tempfile.gettempdir()
    root = tempfile.mkdtemp(prefix="nirdeploy-ray-", dir=base if len(base) <= 24 else "/tmp")
    guard = subprocess.Popen([sys.executable, "-c", _WATCHDOG, root], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)  # fmt: skip
    return guard, root


def _stop_watchdog(guard) -> None:
    """End of the run: the watchdog stops what ``ray.shutdown`` left, removes the folder and exits."""
    with contextlib.suppress(Exception):
        guard.stdin.close()
    with contextlib.suppress(Exception):
        guard.wait(timeout=15)


def cluster_info(address: str) -> Dict[str, Any]:
    """The cluster the run used: address, alive nodes and their CPUs."""
    ray = import_ray()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {
        "name": "ray",
        "address": address,
        "nodes": len(nodes),
        "cpus": int(sum(float(n.get("Resources", {}).get("CPU", 0)) for n in nodes)),
        "ray": ray.__version__,
    }


def _run_task(backend: str, program, inputs, record_v: bool, profile, kw: Dict[str, Any]):
    """One shard or one cell in a Ray worker: ``(SimResult, None)``, or ``(None, message)`` for a
    NirDeployError (the user's answer, e.g. a network Lava cannot run), so that it arrives as our
    error and not as Ray's wrapped one. The result says where it ran (``info["ray"]``)."""
    import socket

    import torch

    torch.set_num_threads(1)  # one task per CPU: the task's own torch work is small
    from simulators.backends import run

    try:
        res = run(backend, program, inputs, record_v=record_v, progress=False, profile=profile, **kw)
    except NirDeployError as e:
        return None, str(e)
    import ray

    ctx = ray.get_runtime_context()
    res.info["ray"] = {"node": ctx.get_node_id(), "host": socket.gethostname(), "pid": os.getpid()}
    return res, None


_REMOTE = None


def _remote():
    global _REMOTE
    if _REMOTE is None:
        ray = import_ray()
        _REMOTE = ray.remote(num_cpus=1, max_retries=0)(_run_task)
    return _REMOTE


def cancel_all(refs: Iterable, grace: float = 10.0) -> None:
    """Stop the tasks ``refs``: cancel them (a running task gets a KeyboardInterrupt, so that a Lava
    run stops its runtime and frees its shared memory, as on Ctrl-C), wait up to ``grace`` seconds,
    then cancel what still runs with ``force`` (its worker process is killed; the Lava processes
    it started die with it, and the Lava run's watchdog frees their segments)."""
    ray = import_ray()
    refs = list(refs)
    if not refs:
        return
    for force, wait in ((False, grace), (True, grace)):
        for r in refs:
            with contextlib.suppress(Exception):  # finished already
                ray.cancel(r, force=force)
        with contextlib.suppress(Exception):
            done, refs = ray.wait(refs, num_returns=len(refs), timeout=wait)
        if not refs:
            return


def imap_tasks(jobs: Iterable[Tuple[Any, Tuple]], window: int) -> Iterator[Tuple[Any, Any]]:
    """Run ``jobs`` ((tag, args of _run_task)) as Ray tasks, at most ``window`` at a time (the jobs
    are produced lazily, so a sweep prepares a cell's inputs only when it is about to run);
    yields ``(tag, (SimResult or None, error or None))`` as they finish. Any exception in the
    consumer or here (Ctrl-C, SIGTERM, a task that crashed) cancels every task still running."""
    ray = import_ray()
    remote = _remote()
    it = iter(jobs)
    pending: Dict[Any, Any] = {}  # ref -> tag
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < max(1, window):
                try:
                    tag, args = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending[remote.remote(*args)] = tag
            if not pending:
                return
            # poll, and wait in Python: a signal during a wait inside Ray's core comes out as a plain
            # KeyboardInterrupt, losing which signal it was (SIGTERM exits 143, Ctrl-C 130)
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            if not done:
                time.sleep(0.1)
            for ref in done:
                tag = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as e:  # the worker died or raised something unexpected
                    import re

                    msg = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # Ray colours its task names
                    raise NirDeployError(
                        f"a Ray task failed: {type(e).__name__}: {msg}\n(every Ray node needs the Python "
                        "environment of this machine: the same nirdeploy and pinned packages)"
                    ) from None
                yield tag, out
    finally:
        if pending:
            cancel_all(list(pending))


def run_sharded_ray(backend: str, program, inputs, workers: Optional[int] = None, record_v: bool = False,
                    progress: bool = False, profile=None, address: Optional[str] = None, **kw) -> SimResult:  # fmt: skip
    """``inputs`` on ``backend`` as Ray tasks, one shard per task, merged in sample order.

    ``workers`` shards (default: the cluster's CPUs). The record's ``info["shards"]`` says where
    each shard ran (node, host, pid), ``info["executor"]`` which cluster."""
    from simulators.shard_plan import merge_info, shard_bounds

    ray = import_ray()
    x = np.asarray(inputs)
    t0 = time.perf_counter()
    with ray_session(address) as cluster:
        n = int(workers) if workers else max(1, cluster["cpus"])
        bounds = shard_bounds(x.shape[0], n)
        prog_ref = ray.put(program)  # once, not once per task
        jobs = ((i, (backend, prog_ref, x[a:b], record_v, profile, kw)) for i, (a, b) in enumerate(bounds))
        parts: List[Optional[SimResult]] = [None] * len(bounds)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(bounds), desc=f"{backend} on Ray ({len(bounds)} tasks, {x.shape[0]} samples)",
                       unit="shard")  # fmt: skip
        try:
            for i, (res, err) in imap_tasks(jobs, window=len(bounds)):
                if err is not None:
                    raise NirDeployError(err)
                parts[i] = res
                if bar:
                    bar.update(1)
        finally:
            if bar:
                bar.close()
    res = SimResult.concat(parts)  # type: ignore[arg-type]
    res.info = merge_info(parts, bounds)  # type: ignore[arg-type]
    for s, p in zip(res.info["shards"], parts):
        s.update(p.info.get("ray", {}))  # type: ignore[union-attr]
    res.info.pop("ray", None)
    res.info["workers"] = len(bounds)
    cluster["nodes_used"] = len({s.get("node") for s in res.info["shards"]})
    res.info["executor"] = cluster
    res.info["seconds"] = time.perf_counter() - t0
    return res


def run_cells_ray(jobs: Iterable[Tuple[Any, Tuple]], on_done: Callable[[Any, Any, Optional[str]], None],
                  address: Optional[str] = None) -> Dict[str, Any]:  # fmt: skip
    """Sweep cells on Ray: ``jobs`` yields ``(tag, (backend, program, inputs, record_v, profile, kw))``
    lazily; ``on_done(tag, result, error)`` runs on the driver as each finishes. Returns the
    cluster's description with the nodes the cells ran on."""
    with ray_session(address) as cluster:
        nodes = set()
        for tag, (res, err) in imap_tasks(jobs, window=max(1, cluster["cpus"])):
            if res is not None:
                nodes.add(res.info.get("ray", {}).get("node"))
            on_done(tag, res, err)
        cluster["nodes_used"] = len(nodes)
    return cluster
