"""Sharded runs: the samples of one run split over worker processes, merged into one result.

Lava's CPU simulator runs one sample after another (about 1,000-1,300 steps per second on the
demo network, most of it inter-process channel traffic), so a run of many samples is split into
``workers`` contiguous shards, each its own Lava run in its own worker process, and the shards'
:class:`~simulators.result.SimResult` are concatenated in sample order. Every sample of a Lava
run starts from the same state (the window reset of simulators/lava_runtime.py), so the merged
result equals a single run: predictions, spikes per layer, potentials and outputs
(tests/test_shards.py checks it on lava-float and lava-fixed).

Workers die with their parent (``toolchain.signals.die_with_parent``) and ignore SIGINT: Ctrl-C
reaches the parent, which cancels the shards not yet started and stops the running ones
(SIGTERM, then SIGKILL after a grace period), so no Lava process outlives the command.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from simulators.result import SimResult
from simulators.shard_plan import default_workers, merge_info, shard_bounds  # noqa: F401  (part of this API)
from toolchain.signals import die_with_parent


#: set while a worker runs a task: a SIGTERM then stops the task (a Lava run stops its runtime)
_BUSY = [False]


def _on_terminate(signum, frame):
    if _BUSY[0]:
        from toolchain.signals import Terminated

        raise Terminated(signum)
    os._exit(128 + signum)  # idle, waiting for a task: nothing to clean up, and no traceback


def worker_init(parent: int) -> None:
    """A worker dies with its parent and leaves Ctrl-C (SIGINT to the terminal's process group) to
    it; SIGTERM and SIGHUP stop its task, or end it at once when it is idle."""
    import signal

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _on_terminate)


def busy(fn, *args, **kw):
    """``fn(*args, **kw)`` in a worker, marked as running (see :func:`_on_terminate`)."""
    _BUSY[0] = True
    try:
        return fn(*args, **kw)
    finally:
        _BUSY[0] = False


def stop_pool(ex: ProcessPoolExecutor, grace: float = 10.0) -> None:
    """Cancel the queued tasks and end the workers: SIGTERM (a Lava run in a worker stops its
    runtime), SIGKILL for those still alive after ``grace`` seconds."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.terminate()
        except Exception:  # pragma: no cover - already gone
            pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        except Exception:  # pragma: no cover
            pass


#: the run the forked workers take their shards from: a lowered program holds closures (its linear
#: ops), which do not pickle, so the workers inherit it at fork instead of receiving it
_JOB: Dict[str, Any] = {}


def _run_shard(a: int, b: int) -> SimResult:
    import sys

    from simulators.backends import run

    # a forked child of a process whose torch used its OpenMP thread pool hangs in its first
    # parallel region (GNU OpenMP does not survive fork): the shard's own torch work is small
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    j = _JOB
    return run(j["backend"], j["program"], j["x"][a:b], record_v=j["record_v"], progress=False, profile=j["profile"],
               **j["kw"])  # fmt: skip


def run_with_workers(backend: str, program, inputs, workers: Optional[int] = None, record_v: bool = False,
                     progress: bool = False, profile=None, executor: Optional[str] = None,
                     ray_address: Optional[str] = None, **kw) -> SimResult:  # fmt: skip
    """``simulators.backends.run``, sharded over ``workers`` processes when the backend is a Lava one
    and there is more than one sample (the other backends are batched already and ignore it).

    ``executor="ray"`` runs the shards as Ray tasks (simulators/ray_executor.py) on the cluster at
    ``ray_address`` / ``$RAY_ADDRESS``, or on a local Ray started for the run; ``workers`` is then
    the number of shards (default: the cluster's CPUs)."""
    from simulators.backends import get, run
    from toolchain.errors import NirDeployError

    if workers is not None and (isinstance(workers, bool) or int(workers) != workers or int(workers) < 1):
        raise NirDeployError(f"--workers must be a whole number of at least 1, got {workers!r}")
    from simulators.ray_executor import check_executor

    ex = check_executor(executor)
    if ray_address and ex != "ray":
        raise NirDeployError("--ray-address is for --executor ray")
    lava = get(backend).needs_lava and np.shape(inputs)[0] > 1
    if ex == "ray" and lava:
        from simulators.ray_executor import run_sharded_ray

        return run_sharded_ray(backend, program, inputs, workers, record_v=record_v, progress=progress,
                               profile=profile, address=ray_address, **kw)  # fmt: skip
    if workers and int(workers) > 1 and lava:
        t0 = time.perf_counter()
        res = run_sharded(backend, program, inputs, int(workers), record_v=record_v, progress=progress, profile=profile, **kw)
        res.info["seconds"] = time.perf_counter() - t0
        return res
    return run(backend, program, inputs, record_v=record_v, progress=progress, profile=profile, **kw)


def run_sharded(backend: str, program, inputs, workers: int, record_v: bool = False, progress: bool = False,
                profile=None, **kw) -> SimResult:  # fmt: skip
    """``inputs`` [samples, steps, ...] on ``backend`` in ``workers`` processes, merged in sample order.

    With one worker (or one sample) it is the plain run. ``progress`` shows shards finished."""
    x = np.asarray(inputs)
    bounds = shard_bounds(x.shape[0], workers)
    if len(bounds) <= 1:
        from simulators.backends import run

        return run(backend, program, x, record_v=record_v, progress=progress, profile=profile, **kw)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(bounds), desc=f"{backend} ({len(bounds)} workers, {x.shape[0]} samples)", unit="shard")
    import multiprocessing

    _JOB.clear()
    _JOB.update(backend=backend, program=program, x=x, record_v=record_v, profile=profile, kw=kw)
    ctx = multiprocessing.get_context("fork")  # the workers inherit _JOB (the program does not pickle)
    with ProcessPoolExecutor(max_workers=len(bounds), mp_context=ctx, initializer=worker_init,
                             initargs=(os.getpid(),)) as ex:  # fmt: skip
        futs = {ex.submit(busy, _run_shard, a, b): i for i, (a, b) in enumerate(bounds)}
        parts: List[Optional[SimResult]] = [None] * len(futs)
        try:
            for f in as_completed(futs):
                parts[futs[f]] = f.result()
                if bar:
                    bar.update(1)
        except BaseException:  # Ctrl-C, Terminated, or a shard's error: no shard keeps running
            stop_pool(ex)
            raise
        finally:
            _JOB.clear()
            if bar:
                bar.close()
    res = SimResult.concat(parts)  # type: ignore[arg-type]
    res.info = merge_info(parts, bounds)  # type: ignore[arg-type]
    res.info["workers"] = len(bounds)
    return res
