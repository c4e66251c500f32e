"""Running a planned network on Lava's CPU simulator: recorder processes, wiring, runtime control.

The plan itself (``toolchain/loihi/plan.py``) imports no Lava; this module is the Lava boundary
shared by the floating-point (``simulators/lava_float.py``) and fixed-point
(``simulators/lava_fixed.py``) backends.

Recording: every spiking layer's s_out goes to a :class:`SpikeRecorder` sink and, when wanted,
its v is read after every step by a :class:`VarRecorder`; both write into memory-mapped .npy
files because Lava's own sinks are read back with ``Var.get()``, which moves one element per
message (about 25 us each: minutes for a few hundred steps of a CNN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

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
            fixed = dict(weight_exp=int(c.weight_exp), num_weight_bits=8) if fixed_point else {}
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


def run_network(
    plan,
    net: LavaNetwork,
    run_cfg,
    progress: bool = True,
    desc: str = "lava",
    on_chunk: Optional[Callable[[int, int], None]] = None,
) -> Dict[Tuple[str, str], np.ndarray]:
    """Run ``net`` for the plan's total steps in chunks; always stops the Lava runtime.

    Returns the recordings as arrays [n, total_steps] keyed ("s" | "v", group key).
    """
    from lava.magma.core.run_conditions import RunSteps

    total = plan.total_steps
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="step", leave=False)
    finished = False
    try:
        _create_runtime(net.root, run_cfg)
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
        try:
            stop_runtime(net.root, graceful=finished)
        finally:
            if bar is not None:
                bar.close()
    return {k: np.array(np.load(p, mmap_mode="r", allow_pickle=False).T) for k, p in net.recordings.items()}


def _create_runtime(root, run_cfg) -> None:
    """Compile, then start Lava's processes with SIGINT ignored in them.

    Lava forks one operating-system process per Lava process. Ctrl-C sends SIGINT to the whole
    process group: children that die of KeyboardInterrupt leave the runtime's stop() waiting
    forever. Children that ignore SIGINT keep running, and this process stops them cleanly.
    """
    import signal
    import threading

    executable = root.compile(run_cfg)
    if threading.current_thread() is not threading.main_thread():
        root.create_runtime(executable=executable)
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        root.create_runtime(executable=executable)
    finally:
        signal.signal(signal.SIGINT, old)


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
                actor.terminate()
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
