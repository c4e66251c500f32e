"""The Lava fixed-point backend: a quantized program on Lava's bit-accurate CPU models (``fixed_pt``).

``run_lava_fixed(program, inputs)`` quantizes ``program`` (``toolchain/loihi/quantize.py``, the same
integers the emulator and ``nirdeploy deploy`` use), builds the Lava network of the float
backend's plan (``toolchain/loihi/plan.py``: one ``LIFReset`` per neuron group with windows
aligned by depth, relays, Dense/Conv per connection, gated back-edge sources) with integer
parameters, runs all samples in ONE Lava run with ``Loihi2SimCfg(select_tag="fixed_pt")`` and
returns a :class:`SimResult` that lines up step for step with the reference.

Fixed-point counterparts of the float backend's devices:

* inputs: an int32 ``RingBuffer`` (the inputs must be integer counts), graded Dense/Conv
  (``num_message_bits=24``);
* the gate of a back-edge source: an int32 ``RingBuffer`` into the LIF's ``a_in`` sending
  ``GATE_A_IN`` (-(3 2^15 - 1), i.e. -(3 2^21 - 64) after Lava's ``<< 6``) during the last steps
  of each window; the quantizer keeps such groups' threshold at most 2^14 x 64 so that this
  cannot wrap u and always leaves v below threshold; the backend checks afterwards that no gated
  step spiked;
* membrane potentials: :class:`VarRecorder` with an integer model (:class:`PyVarRecorderFixedModel`).
"""

from __future__ import annotations

import tempfile
import time
from typing import Callable, Dict, Optional

import numpy as np

from simulators.lava_runtime import LavaNetwork, VarRecorder, _MemmapWriter, attach_recorders, chunk_size, connect_synapses, run_network
from toolchain.loihi.plan import input_data, window_view
from simulators.result import SimResult
from toolchain.errors import NirDeployError
from toolchain.program import Program

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyRefPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402


@implements(proc=VarRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyVarRecorderFixedModel(_MemmapWriter, PyLoihiProcessModel):
    """Reads an integer Var (e.g. a bit-accurate LIF's v) after every step into a .npy row."""

    state: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)

    def post_guard(self) -> bool:
        return True

    def run_post_mgmt(self) -> None:
        self._rows()[self.time_step - 1] = self.state.read()


def gate_data_fixed(plan, g) -> np.ndarray:
    """Periodic int32 ring buffer [n, W]: GATE_A_IN during the last ``g.gate`` steps of each window."""
    from toolchain.loihi.bits import GATE_A_IN

    Wn = plan.window
    m = np.arange(Wn)
    gated = ((m - g.depth) % Wn) >= Wn - g.gate
    return (np.where(gated[None, :], GATE_A_IN, 0) * np.ones((g.n, 1), dtype=np.int64)).astype(np.int32)


def build_fixed(fx, plan, x: np.ndarray, workdir: str, record_v: bool = False, chunk: Optional[int] = None) -> LavaNetwork:
    """Lava processes (fixed-point models) for quantized network ``fx`` laid out by ``plan``."""
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF, LIFReset

    W = plan.window
    total = plan.total_steps
    procs: Dict[str, object] = {}
    sub_models: Dict[object, type] = {}  # LIFSubtractReset processes -> their model
    for key, pin in plan.inputs.items():
        procs[key] = Source(data=input_data(plan, pin, x.astype(np.float64)).astype(np.int32))
    for key, g in fx.groups.items():
        pg = plan.groups[key]
        common = dict(
            shape=(g.n,),
            du=int(g.du),
            dv=int(g.dv),
            vth=int(g.vth),
            bias_mant=g.bias_mant.astype(np.int32),
            bias_exp=np.full(g.n, int(g.bias_exp), dtype=np.int32),
            name=key,
        )
        if g.role == "relay":
            procs[key] = LIF(**common)
        elif g.refractory or g.reset_guard:  # snnTorch's held zero reset / reset_delay=False: nirdeploy's own
            from simulators.lava_subtract import LIFSnnTorchReset, PyLifSnnTorchResetModelBitAcc

            v_sub = g.v_sub.astype(np.int32) if g.v_sub is not None else np.zeros(g.n, np.int32)
            procs[key] = LIFSnnTorchReset(**common, v_sub=v_sub, fixed_keep=True, refractory=g.refractory, reset_guard=g.reset_guard,
                                          reset_interval=W, reset_offset=(1 + g.depth) % W)  # fmt: skip
            sub_models[procs[key]] = PyLifSnnTorchResetModelBitAcc
        elif g.v_sub is not None:  # reset by subtraction: nirdeploy's own process
            from simulators.lava_subtract import LIFSubtractReset, PyLifSubtractResetModelBitAcc

            keep = None if getattr(g, "v_keep", None) is None else g.v_keep.astype(np.int32)
            procs[key] = LIFSubtractReset(**common, v_sub=g.v_sub.astype(np.int32), v_keep=keep, fixed_keep=True,
                                          reset_interval=W, reset_offset=(1 + g.depth) % W)  # fmt: skip
            sub_models[procs[key]] = PyLifSubtractResetModelBitAcc  # exception_proc_model_map is keyed by instance
        else:
            procs[key] = LIFReset(**common, reset_interval=W, reset_offset=(1 + g.depth) % W)
        if pg.gate:
            src = Source(data=gate_data_fixed(plan, pg))
            src.s_out.connect(procs[key].a_in)
            procs[key + "~gate"] = src
    connect_synapses(procs, fx.conns, {k: g.n for k, g in fx.groups.items()}, fixed_point=True)
    layers = [(k, g.n, g.spiking, plan.groups[k].record_v or record_v or not g.spiking)
              for k, g in fx.groups.items() if g.role == "neuron"]
    recordings, models = attach_recorders(procs, layers, workdir, total, PyVarRecorderFixedModel)
    models.update(sub_models)
    root = procs[next(iter(fx.groups))]
    return LavaNetwork(
        root=root, processes=procs, recordings=recordings, models=models, chunk=chunk or chunk_size(total)
    )


def check_gates(fx, plan, rec) -> None:
    """A gated group must be silent in its gated steps, or its spikes would reach the next sample."""
    N, Wn = plan.n_samples, plan.window
    for key, g in fx.groups.items():
        pg = plan.groups[key]
        if not pg.gate or ("s", key) not in rec:
            continue
        full = rec[("s", key)]
        seg = full[:, pg.depth : pg.depth + N * Wn].reshape(g.n, N, Wn)[:, :, Wn - pg.gate :]
        if seg.any():
            raise NirDeployError(
                f"the gate of recurrent layer {g.node!r} did not silence it between samples in the Lava run "
                f"(its states exceed the range the quantizer planned for); quantize with calibration inputs"
            )


def run_lava_fixed(
    program: Program,
    inputs,
    record_v: bool = False,
    progress: bool = True,
    quant=None,
    profile: str = "netx",
    chunk: Optional[int] = None,
    on_chunk: Optional[Callable[[int, int], None]] = None,
    max_processes: int = 256,
) -> SimResult:
    """Run ``inputs`` [samples, steps, *input_shape] (integer counts) through ``program`` on Lava (fixed_pt).

    ``quant``: a :class:`~toolchain.loihi.quantize.FixedNetwork` of this program (default: quantize it
    with ``profile``, without calibration, exactly as the emulator does by default).
    """
    from lava.magma.core.run_configs import Loihi2SimCfg

    from simulators.emulator import to_result
    from toolchain.loihi.plan import check_integer_inputs
    from toolchain.loihi.quantize import quantize

    x = check_integer_inputs(program, inputs)
    if quant is None and getattr(program, "netx_fixed", None) is not None:  # a lava-dl .net: run the file in netx
        from simulators.lava_netx import run_netx_program

        return run_netx_program(program, x, record_v=record_v, progress=progress)
    N, T = x.shape[0], x.shape[1]
    t0 = time.perf_counter()
    fx = quant if quant is not None else quantize(program, profile=profile)
    plan = fx.with_window(N, T)
    n_proc = plan.n_processes(record_v) + sum(not g.spiking for g in fx.groups.values())
    if n_proc > max_processes:
        sizes = {k: len(v) for k, v in plan.node_groups.items() if len(v) > 1}
        raise NirDeployError(
            f"the network needs {n_proc} Lava processes (limit {max_processes}; each is an operating-system process): "
            f"layers with many distinct time constants become one Lava process per distinct value ({sizes}); "
            f"raise max_processes if you mean it"
        )
    if any(g.gate > 1 for g in plan.groups.values()):
        k = next(k for k, g in plan.groups.items() if g.gate > 1)
        raise NirDeployError(
            f"layer {plan.groups[k].node!r} is the source of a recurrent path through {plan.groups[k].gate} back edges; "
            f"the fixed-point backend gates one step per window only"
        )
    with tempfile.TemporaryDirectory(prefix="nirdeploy-lava-fixed-") as workdir:
        net = build_fixed(fx, plan, x, workdir, record_v=record_v, chunk=chunk)
        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=net.models)
        t1 = time.perf_counter()
        rec = run_network(plan, net, cfg, progress=progress, desc="lava-fixed", on_chunk=on_chunk)
    t2 = time.perf_counter()
    check_gates(fx, plan, rec)
    out = {"spikes": {}, "v": {}}
    for (kind, key), arr in rec.items():
        g = plan.groups[key]
        view = window_view(plan, g, arr)
        if kind == "s":
            out["spikes"][key] = view.astype(bool)
        else:
            out["v"][key] = np.rint(view).astype(np.int32)
    for key, g in fx.groups.items():  # non-spiking groups: no spike recorder
        if g.role == "neuron" and not g.spiking:
            out["spikes"][key] = np.zeros((N, T, g.n), dtype=bool)
    res = to_result(fx, x, out, record_v, "lava-fixed", order="process")
    res.info.update(plan.describe())
    from simulators.emulator import fixed_point_summary

    res.info.update(
        quantization=fx.profile,
        fixed_point=fixed_point_summary(fx),
        build_seconds=t1 - t0,
        run_seconds=t2 - t1,
        lava_processes=len(net.processes),
    )
    return res
