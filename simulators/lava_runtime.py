"""Running a planned network on Lava's CPU simulator: recorder processes, wiring, runtime control.

The plan itself (``toolchain/loihi/plan.py``) imports no Lava; this module is the Lava boundary
shared by the floating-point (``simulators/lava_float.py``) and fixed-point
(``simulators/lava_fixed.py``) backends.

Recording: every spiking layer's s_out goes to a :class:`SpikeRecorder` sink and, when wanted,
its v is read after every step by a :class:`VarRecorder`; both write into memory-mapped .npy
files because Lava's own sinks are read back with ``Var.get()``, which moves one element per
message (about 25 us each: minutes for a few hundred steps of a CNN).

No orphans: Lava forks one operating-system process per Lava process (and one for its shared
memory manager), all from the thread that calls ``create_runtime``, and connects them through
``/dev/shm/psm_*`` segments. A run must not leave any of it behind when this process dies:

* SIGINT, SIGTERM and SIGHUP: Lava's children are forked with these signals ignored, so only this
  process stops them; here SIGTERM and SIGHUP raise :class:`toolchain.signals.Terminated` (a
  KeyboardInterrupt) during the run (:func:`toolchain.signals.raise_on_termination`), and the
  ordinary cleanup of :func:`run_network` stops the runtime (:func:`stop_runtime`).
* SIGKILL (or any death without cleanup): every process forked while a run is active (an
  ``os.register_at_fork`` hook, guarded by the module's ``_ACTIVE`` count) asks Linux for
  ``PR_SET_PDEATHSIG = SIGKILL`` right after the fork and exits at once if its parent is already
  gone. The hook runs in the forking thread's child; the signal fires when that *thread* exits,
  which for Lava is the thread running :func:`run_network` (normally the main thread).
* A watchdog (:func:`_start_watchdog`, a tiny ``python -c`` process started with ``subprocess``,
  no multiprocessing) learns the run's segment names (from Lava's shared memory manager), child
  pids and work folder over a pipe, polls its parent every 0.2 s, and when the parent has vanished
  kills the recorded children, unlinks the segments and removes the ``nirdeploy-lava-*`` folder.
  At the end of a normal or interrupted run it is told ``done`` and exits without touching the
  folder (it unlinks only recorded segments that are still there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from toolchain.signals import TERMINATING, die_with_parent, load_libc, raise_on_termination

#: one Lava run is cut into at most this many RunSteps calls (for the progress bar)
MAX_CHUNKS = 20
MIN_CHUNK = 100

# --------------------------------------------------------------------------- recording
# Lava's own sinks (lava.proc.io.sink.RingBuffer, Read, Monitor) keep what they record in a Var
# that the host reads with Var.get(), which the CPU runtime transfers one element per message
# (about 25 us per element here: 2 s for 10 steps of a 9000-neuron network). These recorders
# write each step's vector straight into a memory-mapped .npy file instead.
def _let_lava_set_fork() -> None:
    """Lava's runtime calls ``multiprocessing.set_start_method('fork')`` when it is first imported,
    which raises once a start method is fixed -- e.g. in a worker of a sweep's process pool, which
    imports Lava (through this module) only after the pool forked it. A fixed choice that already
    is 'fork' is cleared so that Lava can set the same again."""
    import multiprocessing as mp
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    ctx = getattr(mp.context, "_default_context", None)
    actual = getattr(ctx, "_actual_context", None)
    if actual is not None and actual.get_start_method() == "fork":
        ctx._actual_context = None


_let_lava_set_fork()
from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyRefPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, RefPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402


class SpikeRecorder(AbstractProcess):
    """A sink: what arrives at ``a_in`` at Lava step t goes to row t-1 of the .npy file ``path``."""

    def __init__(self, *, shape: Tuple[int, ...], path: str, name: Optional[str] = None) -> None:
        super().__init__(shape=shape, path=path, name=name)
        self.a_in = InPort(shape=shape)


class VarRecorder(AbstractProcess):
    """Reads ``var`` after every step (post-management phase) into row t-1 of the .npy file ``path``."""

    def __init__(self, *, var, path: str, name: Optional[str] = None) -> None:
        super().__init__(shape=var.shape, path=path, name=name)
        self.state = RefPort(var.shape)
        self.state.connect_var(var)


class _MemmapWriter:
    _mm = None

    def _rows(self):
        if self._mm is None:
            self._mm = np.load(self.proc_params["path"], mmap_mode="r+", allow_pickle=False)
        return self._mm


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt", "bit_accurate_loihi")
class PySpikeRecorderModel(_MemmapWriter, PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    def run_spk(self) -> None:
        x = self.a_in.recv()
        self._rows()[self.time_step - 1] = x != 0


@implements(proc=VarRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyVarRecorderFloatModel(_MemmapWriter, PyLoihiProcessModel):
    state: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, float)

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:
        self._rows()[self.time_step - 1] = self.state.read()


# --------------------------------------------------------------------------- running
@dataclass
class LavaNetwork:
    """Built Lava processes of a plan and the files their recorders write."""

    root: object  # any process of the network (run/stop are called on it)
    processes: Dict[str, object]
    recordings: Dict[Tuple[str, str], str]  # ("s"|"v", group key) -> .npy path
    models: Dict[object, type] = field(default_factory=dict)  # recorder instance -> its ProcessModel
    chunk: int = MIN_CHUNK


def new_recording(workdir: str, kind: str, index: int, n: int, total: int) -> str:
    """An empty .npy file [total, n] (bool spikes or float64 potentials) for a recorder."""
    import os

    path = os.path.join(workdir, f"{kind}{index}.npy")
    dtype = bool if kind == "s" else np.float64
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(total, n))
    del mm
    return path


def _weight_bits(w: np.ndarray) -> int:
    """Lava Dense's ``num_weight_bits`` that keeps every mantissa: 8, or 9 for a mixed-sign matrix with
    odd weights (Lava truncates 8 - num_weight_bits + 1 bits of mixed-sign weights; netx's
    optimize_weight_bits passes 9 there too). The quantizer writes even weights except for a layer
    at a scale hint (toolchain/loihi/quantize.py), whose integers come from a file."""
    w = np.asarray(w)
    mixed = bool(w.size and w.min() < 0 < w.max())
    return 9 if mixed and bool(np.any(w % 2)) else 8


def connect_synapses(procs: Dict[str, object], conns, n_of: Dict[str, int], fixed_point: bool = False) -> None:
    """Create a Lava Conv or Dense process for every planned connection and wire it between its
    source's ``s_out`` and its target group's ``a_in``; ``procs`` gains them under ``conn.key``.

    Floating point: the weights as they are. Fixed point (``fixed_point``, conns of
    toolchain/loihi/quantize.py): int32 weight mantissas, the Dense weight exponent, 8-bit weights.
    A graded (non-binary) source sends 24-bit messages.
    """
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense

    for c in conns:
        src, dst = procs[c.src], procs[c.dst]
        nmb = 24 if c.graded else 0
        weights = c.weights.astype(np.int32) if fixed_point else c.weights
        if c.kind == "conv":
            p = c.conv
            conn = Conv(
                weight=weights,
                input_shape=p["input_shape"],
                padding=p["padding"],
                stride=p["stride"],
                dilation=p["dilation"],
                groups=p["groups"],
                num_message_bits=nmb,
                name=c.key,
            )
            src.s_out.reshape(p["input_shape"]).connect(conn.s_in)
            conn.a_out.reshape((n_of[c.dst],)).connect(dst.a_in)
        else:
            fixed = dict(weight_exp=int(c.weight_exp), num_weight_bits=_weight_bits(weights)) if fixed_point else {}
            conn = Dense(weights=weights, num_message_bits=nmb, name=c.key, **fixed)
            src.s_out.connect(conn.s_in)
            conn.a_out.connect(dst.a_in)
        procs[c.key] = conn


def attach_recorders(procs: Dict[str, object], layers, workdir: str, total: int, var_model: type):
    """Recorders for ``layers`` = iterable of ``(group key, n, record spikes, record v)``: a
    SpikeRecorder on ``s_out`` and/or a VarRecorder of ``v`` (ProcessModel ``var_model``), each
    writing a memory-mapped .npy in ``workdir``. Returns ``(recordings, models)`` for LavaNetwork."""
    recordings: Dict[Tuple[str, str], str] = {}
    models: Dict[object, type] = {}
    for key, n, spikes, v in layers:
        if spikes:
            path = new_recording(workdir, "s", len(recordings), n, total)
            rec = SpikeRecorder(shape=(n,), path=path, name=key + "~spikes")
            procs[key].s_out.connect(rec.a_in)
            recordings[("s", key)] = path
            models[rec] = PySpikeRecorderModel
            procs[key + "~spikes"] = rec
        if v:
            path = new_recording(workdir, "v", len(recordings), n, total)
            rec = VarRecorder(var=procs[key].v, path=path, name=key + "~v")
            recordings[("v", key)] = path
            models[rec] = var_model
            procs[key + "~v"] = rec
    return recordings, models


def chunk_size(total: int, max_chunks: int = MAX_CHUNKS, min_chunk: int = MIN_CHUNK) -> int:
    return int(min(total, max(min_chunk, -(-total // max_chunks))))


# --------------------------------------------------------------------------- no orphans
#: > 0 while a run of this process is active: processes forked then die with their parent
_ACTIVE = 0
_FORK_PARENT: Optional[int] = None


def _before_fork() -> None:
    global _FORK_PARENT
    _FORK_PARENT = os.getpid()


def _after_fork_in_child() -> None:
    if _ACTIVE > 0:
        import signal

        die_with_parent(_FORK_PARENT)
        for s in (signal.SIGINT,) + TERMINATING:  # only the parent stops Lava's processes
            signal.signal(s, signal.SIG_IGN)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
    load_libc()  # now, in the parent (a prctl with signal 0 here would clear a death signal set before)

_WATCHDOG = r"""
import os, select, shutil, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
parent = int(sys.argv[1]); sid = os.getsid(0)
shm, dirs, pids, buf = [], [], [], b""
def gone():
    if os.getppid() != parent:
        return True
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return True
    return False
def unlink():
    for n in shm:
        try:
            os.unlink("/dev/shm/" + n)
        except OSError:
            pass
while True:
    r, _, _ = select.select([0], [], [], 0.2)
    if r:
        data = os.read(0, 65536)
        if not data:
            break  # the parent and everything that shared the pipe are gone
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            kind, _, value = line.decode().partition(" ")
            if kind == "done":
                unlink()
                sys.exit(0)
            {"shm": shm, "dir": dirs, "pid": pids}.get(kind, []).append(value)
    elif gone():
        break
for p in pids:
    try:
        if os.getsid(int(p)) == sid:
            os.kill(int(p), signal.SIGKILL)
    except (OSError, ValueError):
        pass
unlink()
for d in dirs:
    if os.path.basename(d.rstrip("/")).startswith("nirdeploy-lava"):
        shutil.rmtree(d, ignore_errors=True)
"""


class _Watchdog:
    """The cleanup process of one run (see the module docstring)."""

    def __init__(self, dirs: List[str]) -> None:
        import subprocess
        import sys

        self.proc = None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        except OSError:  # pragma: no cover - best effort
            return
        for d in dirs:
            self.send("dir", d)

    def send(self, kind: str, value: str = "") -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.write(f"{kind} {value}\n".encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):  # pragma: no cover
            pass

    def learn(self, root) -> None:
        """Segments and child processes of ``root``'s started runtime."""
        infra = getattr(getattr(root, "runtime", None), "_messaging_infrastructure", None)
        smm = getattr(infra, "smm", None)
        for h in list(getattr(smm, "_shared_memory_handles", []) or []):
            self.send("shm", h.name.lstrip("/"))
        procs = list(getattr(infra, "actors", []) or [])
        mgr = getattr(getattr(smm, "_manager", None), "_process", None)
        if mgr is not None:
            procs.append(mgr)
        for p in procs:
            if getattr(p, "pid", None):
                self.send("pid", str(p.pid))

    def close(self) -> None:
        if self.proc is None:
            return
        self.send("done")
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:  # pragma: no cover - it exits on its own
            pass


def run_network(
    plan,
    net: LavaNetwork,
    run_cfg,
    progress: bool = True,
    desc: str = "lava",
    on_chunk: Optional[Callable[[int, int], None]] = None,
) -> Dict[Tuple[str, str], np.ndarray]:
    """Run ``net`` for the plan's total steps in chunks; always stops the Lava runtime.

    Returns the recordings as arrays [n, total_steps] keyed ("s" | "v", group key). SIGTERM and
    SIGHUP raise :class:`toolchain.signals.Terminated` during the run (in the main thread, if
    their handlers are the default ones); nothing of the run survives this process.
    """
    global _ACTIVE
    from lava.magma.core.run_conditions import RunSteps

    total = plan.total_steps
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="step", leave=False)
    finished = False
    dirs = sorted({os.path.dirname(os.path.abspath(p)) for p in net.recordings.values()})
    with raise_on_termination():
        _ACTIVE += 1
        watchdog = None
        try:
            watchdog = _Watchdog(dirs)
            try:
                _create_runtime(net.root, run_cfg)
            finally:
                watchdog.learn(net.root)
            t0 = 0
            while t0 < total:
                c = min(net.chunk, total - t0)
                net.root.run(condition=RunSteps(num_steps=c, blocking=True), run_cfg=run_cfg)
                t0 += c
                if bar is not None:
                    bar.update(c)
                if on_chunk is not None:
                    on_chunk(t0, total)
            finished = True
        finally:
            _ACTIVE -= 1
            try:
                stop_runtime(net.root, graceful=finished)
            finally:
                if watchdog is not None:
                    watchdog.close()
                if bar is not None:
                    bar.close()
    return {k: np.array(np.load(p, mmap_mode="r", allow_pickle=False).T) for k, p in net.recordings.items()}


def _create_runtime(root, run_cfg) -> None:
    """Compile, then start Lava's processes with SIGINT, SIGTERM and SIGHUP ignored in them.

    Lava forks one operating-system process per Lava process. Ctrl-C sends SIGINT to the whole
    process group (a closed terminal SIGHUP): children that die of it leave the runtime's stop()
    waiting forever. Children that ignore it (set in the fork hook) keep running, and this
    process stops them cleanly (or kills them: :func:`_terminate`). A signal that arrives here
    while the runtime is being created is held back and raised once it stands.
    """
    import signal
    import threading

    executable = root.compile(run_cfg)
    if threading.current_thread() is not threading.main_thread():
        root.create_runtime(executable=executable)
        return
    held: List[Tuple[int, object]] = []
    sigs = [s for s in (signal.SIGINT,) + TERMINATING if signal.getsignal(s) not in (signal.SIG_IGN, None)]
    old = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, lambda signum, frame: held.append((signum, frame)))
    try:
        root.create_runtime(executable=executable)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if held:
        signum, frame = held[0]
        h = old[signum]
        if callable(h):
            h(signum, frame)
        elif h == signal.SIG_DFL:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)


def stop_runtime(root, graceful: bool = True, drain_seconds: float = 5.0) -> None:
    """Stop the Lava runtime of ``root``'s network, also after an interrupted or failed run.

    An interrupted blocking run leaves the runtime service busy with the rest of its chunk:
    wait (at most ``drain_seconds``) for its answer, then stop as usual; if that does not work,
    terminate the processes (an aborted run's results are thrown away anyway).
    """
    import time

    rt = getattr(root, "runtime", None)
    if rt is None:
        return
    if graceful:
        root.stop()
        return
    try:
        if getattr(rt, "_is_running", False):
            deadline = time.monotonic() + drain_seconds
            for port in list(getattr(rt, "service_to_runtime", [])):
                while not port.probe():
                    if time.monotonic() > deadline:
                        raise TimeoutError("the Lava runtime did not finish its chunk")
                    time.sleep(0.01)
                port.recv()
            rt._is_running = False
        root.stop()
    except BaseException:
        _terminate(rt)


def _terminate(rt) -> None:
    infra = getattr(rt, "_messaging_infrastructure", None)
    for actor in list(getattr(infra, "actors", []) or []):
        try:
            if actor.is_alive():
                actor.kill()  # they ignore SIGTERM (see _create_runtime)
            actor.join(timeout=5)
        except Exception:  # pragma: no cover - best effort
            pass
    try:
        if getattr(infra, "smm", None) is not None:
            infra.smm.shutdown()
    except Exception:  # pragma: no cover - best effort
        pass
    try:
        rt._is_running = False
        rt._is_started = False
    except Exception:  # pragma: no cover
        pass
