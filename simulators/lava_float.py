"""The Lava floating-point backend: a lowered program on Lava's CPU simulator (``floating_pt``).

``run_lava_float(program, inputs)`` plans the network (``toolchain/loihi/plan.py``: CUBA
forms, one Dense or Conv per neuron-to-neuron connection, depths, relays, gates), builds Lava
processes (a LIFReset per neuron group, plain LIF relays, Dense/Conv, RingBuffer sources for
the input and the gates, memory-mapped recorders for spikes and membrane potentials), runs all
samples in ONE Lava run and returns a :class:`SimResult` that lines up step for step with
``simulators/reference.py``. Neuron parameters are Lava floats (``toolchain/dynamics/cuba.py``).
"""

from __future__ import annotations

import tempfile
import time
from typing import Callable, Dict, Optional

import numpy as np

from simulators.lava_runtime import LavaNetwork, PyVarRecorderFloatModel, attach_recorders, connect_synapses, chunk_size, run_network
from toolchain.loihi.plan import LavaPlan, check_inputs, gate_data, host_outputs, input_data, plan_network, window_view
from simulators.result import SimResult
from toolchain.errors import NirDeployError
from toolchain.program import Program


def build_float(
    plan: LavaPlan, x: np.ndarray, workdir: str, record_v: bool = False, chunk: Optional[int] = None
) -> LavaNetwork:
    """Lava processes (float models) for ``plan`` with inputs x [N, T, n_in]; recordings go to ``workdir``."""
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF, LIFReset

    W = plan.window
    total = plan.total_steps
    procs: Dict[str, object] = {}
    sub_models: Dict[object, type] = {}  # LIFSubtractReset processes -> their model
    for key, pin in plan.inputs.items():
        procs[key] = Source(data=input_data(plan, pin, x))
    for key, g in plan.groups.items():
        common = dict(shape=(g.n,), du=g.du, dv=g.dv, vth=g.vth, bias_mant=g.bias.copy(), name=key)
        if g.role == "relay":  # memoryless: no reset needed
            procs[key] = LIF(**common)
        elif g.refractory or g.reset_guard:  # snnTorch's held zero reset / reset_delay=False: nirdeploy's own
            from simulators.lava_subtract import LIFSnnTorchReset, PyLifSnnTorchResetModelFloat

            v_sub = g.v_sub.copy() if g.v_sub is not None else np.zeros(g.n)
            procs[key] = LIFSnnTorchReset(**common, v_sub=v_sub, refractory=g.refractory, reset_guard=g.reset_guard,
                                          reset_interval=W, reset_offset=(1 + g.depth) % W)  # fmt: skip
            sub_models[procs[key]] = PyLifSnnTorchResetModelFloat
        elif g.v_sub is not None:  # reset by subtraction: nirdeploy's own process
            from simulators.lava_subtract import LIFSubtractReset, PyLifSubtractResetModelFloat

            keep = None if getattr(g, "v_keep", None) is None else g.v_keep.copy()
            procs[key] = LIFSubtractReset(**common, v_sub=g.v_sub.copy(), v_keep=keep, reset_interval=W,
                                          reset_offset=(1 + g.depth) % W)  # fmt: skip
            sub_models[procs[key]] = PyLifSubtractResetModelFloat  # exception_proc_model_map is keyed by instance
        else:
            procs[key] = LIFReset(**common, reset_interval=W, reset_offset=(1 + g.depth) % W)
        if g.gate:
            src = Source(data=gate_data(plan, g))
            src.s_out.connect(procs[key].a_in)
            procs[key + "~gate"] = src
    connect_synapses(procs, plan.conns, {k: g.n for k, g in plan.groups.items()})
    layers = [(k, g.n, g.spiking, g.record_v or record_v) for k, g in plan.groups.items() if g.role == "neuron"]
    recordings, models = attach_recorders(procs, layers, workdir, total, PyVarRecorderFloatModel)
    models.update(sub_models)
    root = procs[next(iter(plan.groups))]
    return LavaNetwork(
        root=root, processes=procs, recordings=recordings, models=models, chunk=chunk or chunk_size(total)
    )


def collect(plan: LavaPlan, rec, x: np.ndarray, record_v: bool, backend: str) -> SimResult:
    """Recorded Lava activity -> a SimResult in the reference's layout (NIR order, aligned steps)."""
    program = plan.program
    N, T = plan.n_samples, plan.n_steps
    spikes: Dict[str, np.ndarray] = {}
    vs: Dict[str, np.ndarray] = {}
    for node, keys in plan.node_groups.items():
        op = program.ops[node]
        n = op.ssm.n
        form = plan.forms[node]
        if form.spiking:
            z = np.zeros((N, T, n), dtype=bool)
            for k in keys:
                g = plan.groups[k]
                z[:, :, g.idx] = window_view(plan, g, rec[("s", k)])
            spikes[node] = z.reshape((N, T) + tuple(op.out_shape))
        if ("v", keys[0]) in rec:
            v = np.zeros((N, T, n))
            for k in keys:
                g = plan.groups[k]
                v[:, :, g.idx] = window_view(plan, g, rec[("v", k)]) / g.v_scale + g.v_offset
            vs[node] = v.reshape((N, T) + tuple(op.out_shape))
    values = {}
    for s in plan.host_sources:
        op = program.ops[s]
        if op.kind == "input":
            values[s] = x.reshape((N, x.shape[1]) + tuple(op.out_shape))
        elif plan.forms[s].spiking:
            values[s] = spikes[s].astype(np.float64)
        else:
            values[s] = vs[s]
    outputs = host_outputs(program, values)
    if not record_v:
        vs = {}
    return SimResult(
        backend=backend,
        dt=program.disc.dt,
        n_steps=T,
        outputs=outputs,
        spikes=spikes,
        v=vs,
        layer_types={op.name: op.type for op in program.neurons()},
        layer_sizes={op.name: op.ssm.n for op in program.neurons()},
        info=plan.describe(),
    )


def run_lava_float(
    program: Program,
    inputs,
    record_v: bool = False,
    progress: bool = True,
    chunk: Optional[int] = None,
    on_chunk: Optional[Callable[[int, int], None]] = None,
    max_processes: int = 256,
) -> SimResult:
    """Run ``inputs`` [samples, steps, *input_shape] through ``program`` on Lava (floating_pt).

    All samples run in one Lava run. ``record_v`` also records every layer's membrane
    potential (in the NIR model's units). ``chunk``: steps per RunSteps call (default: about
    1/20 of the run); ``on_chunk(done, total)`` is called after each chunk. Lava starts one
    operating-system process per Lava process: more than ``max_processes`` is refused.
    """
    from lava.magma.core.run_configs import Loihi2SimCfg

    x = check_inputs(program, inputs)
    N, T = x.shape[0], x.shape[1]
    t0 = time.perf_counter()
    plan = plan_network(program, N, T)
    n_proc = plan.n_processes(record_v)
    if n_proc > max_processes:
        sizes = {k: len(v) for k, v in plan.node_groups.items() if len(v) > 1}
        raise NirDeployError(
            f"the network needs {n_proc} Lava processes (limit {max_processes}; each is an operating-system process): "
            f"layers with many distinct time constants become one Lava process per distinct value ({sizes}); "
            f"raise max_processes if you mean it"
        )
    with tempfile.TemporaryDirectory(prefix="nirdeploy-lava-") as workdir:
        net = build_float(plan, x, workdir, record_v=record_v, chunk=chunk)
        cfg = Loihi2SimCfg(select_tag="floating_pt", exception_proc_model_map=net.models)
        t1 = time.perf_counter()
        rec = run_network(plan, net, cfg, progress=progress, desc="lava-float", on_chunk=on_chunk)
    t2 = time.perf_counter()
    res = collect(plan, rec, x, record_v, "lava-float")
    res.info.update(build_seconds=t1 - t0, run_seconds=t2 - t1, lava_processes=len(net.processes))
    return res
