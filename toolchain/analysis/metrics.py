"""Activity metrics counted from recorded spikes: the same numbers from every backend.

Everything here is computed from a :class:`~simulators.result.SimResult` (the spikes a backend
recorded) plus the lowered :class:`~toolchain.program.Program` (the connectivity), and, for the
layers that read the network input, the input itself. Nothing depends on how the spikes were
produced, so the reference simulator, Lava and any later backend give identical metrics for
identical spikes.

Synaptic operations follow NeuroBench 2.3.0 (``neurobench.metrics.workload.SynapticOperations``)
exactly, with its names:

* a *connection* is a weight op: NIR ``Affine``, ``Linear``, ``Conv1d``, ``Conv2d``
  (NeuroBench hooks ``nn.Linear`` / ``nn.Conv*``; pooling, flatten and scale are not counted);
* at every time step the input of a connection is binarized (nonzero -> 1) and pushed through a
  copy of the op whose nonzero weights are 1 and whose bias is 0: the sum of the result is the
  number of effective operations, i.e. for every nonzero input element its number of nonzero
  synapses (exact for convolutions: padding gives edge pixels a smaller fan-out);
* the operations of a step count as ``Effective_ACs`` when every input value is in {-1, 0, 1}
  (a spike), otherwise as ``Effective_MACs`` (NeuroBench decides this per forward call, i.e.
  per batch; we decide per sample and step, which equals NeuroBench with batch size 1 or with
  binary inputs; ``granularity="batch"`` reproduces a batched NeuroBench run exactly);
* ``Dense`` counts all synapses (zero weights included) for every input element at every step;
* everything is summed over the time steps and divided by the number of samples (per inference);
  biases are not synaptic operations.

A recurrent connection (a NIR back edge) delivers the previous step's spikes, as an RNN cell
does: at step t it processes the spikes of step t-1 (zero at step 0).

See docs/metrics-and-energy.md for every definition and formula.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional

import numpy as np
import torch

from toolchain.ir.nodes import linear_fns
from toolchain.program import Program
from toolchain.program.interpreter import (
    SequenceInterpreter,
    ConstantValues,
    add_all,
    apply_per_step,
    incoming,
    outgoing,
    shift_steps,
    sources_through_linear,
)

SYNAPTIC_TYPES = ("Affine", "Linear", "Conv1d", "Conv2d")
CONV_TYPES = ("Conv1d", "Conv2d")
#: elements per chunk when pushing recorded activity through the linear ops
CHUNK_ELEMENTS = 4_000_000


# --------------------------------------------------------------------------- static structure
def _weight_node(node, mode: str):
    """Copy of a weight node with weights replaced by (W != 0) ("nonzero") or ones ("ones")."""
    n = copy.copy(node)
    w = np.asarray(node.weight, dtype=np.float64)
    n.weight = (w != 0).astype(np.float64) if mode == "nonzero" else np.ones_like(w)
    if getattr(node, "bias", None) is not None:
        n.bias = np.zeros_like(np.asarray(node.bias, dtype=np.float64))
    return n


def _binary_fn(op, mode: str = "nonzero"):
    """Bias-free function of a linear op with 0/1 weights (pooling/flatten/scale kept, |scale|)."""
    if op.type in SYNAPTIC_TYPES:
        return linear_fns(_weight_node(op.node, mode), op.name)[1]
    if op.type == "Scale":
        n = copy.copy(op.node)
        n.scale = (np.asarray(op.node.scale, dtype=np.float64) != 0).astype(np.float64)
        return linear_fns(n, op.name)[1]
    return op.fn_nobias


def fanout_vector(op, mode: str = "nonzero") -> np.ndarray:
    """Synapses per input element of a weight op (nonzero weights, or all with mode="ones")."""
    fn = _binary_fn(op, mode)
    x = torch.zeros((1,) + tuple(op.in_shape), dtype=torch.float64, requires_grad=True)
    fn(x).sum().backward()
    return x.grad.detach().numpy().reshape(-1)


def fanin_vector(op, mode: str = "nonzero") -> np.ndarray:
    """Synapses per output element of a weight op."""
    with torch.no_grad():
        y = _binary_fn(op, mode)(torch.ones((1,) + tuple(op.in_shape), dtype=torch.float64))
    return y.numpy().reshape(-1)


def delayed_ops(program: Program) -> Dict[str, bool]:
    """Linear ops whose output reaches its consumers only through a back edge (a recurrence).

    Such an op is counted as running on the previous step's input (as an RNN cell does), which
    by linearity delivers the same values one step later.
    """
    succ = {k: outgoing(program, k) for k in program.ops}
    delayed = {k: False for k in program.ops}
    changed = True
    while changed:
        changed = False
        for name in reversed(program.order):
            op = program.ops[name]
            if op.kind != "linear" or delayed[name] or not succ[name]:
                continue
            if all(e.recurrent or (program.ops[s].kind == "linear" and delayed[s]) for s, e in succ[name]):
                delayed[name] = True
                changed = True
    return delayed


def _edge_shift(program: Program, delayed, p: str, c: str) -> int:
    back = any(e.src == p and e.recurrent for e in incoming(program, c))
    if program.ops[c].kind == "linear" and delayed[c]:
        return 0 if delayed[p] else 1
    if back:
        return 0 if delayed[p] else 1
    return 0


def synaptic_ops_of(program: Program) -> List[str]:
    return [k for k in program.order if program.ops[k].kind == "linear" and program.ops[k].type in SYNAPTIC_TYPES]


def downstream_neuron(program: Program, name: str) -> Optional[str]:
    """First neuron (or output) node reached from ``name`` through linear ops."""
    seen, todo = set(), [name]
    while todo:
        k = todo.pop(0)
        for s, _ in outgoing(program, k):
            if s in seen:
                continue
            seen.add(s)
            if program.ops[s].kind in ("neuron", "output"):
                return s
            todo.append(s)
    return None


def upstream_sources(program: Program, name: str) -> List[str]:
    """Neuron or input nodes that feed ``name`` through linear ops only."""
    out = []
    for (src, _lag) in sources_through_linear(program, name):
        if src not in out:
            out.append(src)
    return out


def static_metrics(program: Program, bytes_per_param: int = 4) -> Dict[str, object]:
    """Per-connection structure: weights, zero weights, dense ops per step, footprint."""
    conns = []
    n_w = n_zero = n_bias = 0
    for name in synaptic_ops_of(program):
        op = program.ops[name]
        w = np.asarray(op.node.weight)
        b = getattr(op.node, "bias", None)
        nb = 0 if b is None else int(np.asarray(b).size)
        if op.type in CONV_TYPES and not np.any(np.asarray(b) != 0):
            nb = 0  # NIR's Conv nodes always carry a bias: an all-zero one counts as absent (bias=False)
        dense = float(fanout_vector(op, "ones").sum())
        conns.append(
            {
                "name": name,
                "type": op.type,
                "kind": "conv" if op.type in CONV_TYPES else "dense",
                "in_shape": list(op.in_shape),
                "out_shape": list(op.out_shape),
                "weights": int(w.size),
                "zero_weights": int(np.sum(w == 0)),
                "biases": nb,
                "dense_per_step": dense,
                "target": downstream_neuron(program, name),
                "sources": upstream_sources(program, name),
            }
        )
        n_w += int(w.size)
        n_zero += int(np.sum(w == 0))
        n_bias += nb
    neuron_params = 0
    for op in program.neurons():
        for p in ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
            v = getattr(op.node, p, None)
            if v is not None:
                neuron_params += int(np.asarray(v).size)
    return {
        "connections": conns,
        "weights": n_w,
        "zero_weights": n_zero,
        "biases": n_bias,
        "connection_sparsity": n_zero / n_w if n_w else 0.0,
        "bytes_per_param": bytes_per_param,
        "footprint_bytes": (n_w + n_bias) * bytes_per_param,
        "neuron_parameter_bytes": neuron_params * bytes_per_param,
    }


# --------------------------------------------------------------------------- activity
def _is_binary_rows(x: torch.Tensor) -> torch.Tensor:
    """[b, T, ...] -> [b, T] True where every value is in {-1, 0, 1}."""
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    return ((flat == 0) | (flat == 1) | (flat == -1)).all(dim=-1)


class _Activity(SequenceInterpreter):
    """Recorded activity [b, T, *shape] pushed through the linear ops (the one interpreter).

    A node's value is a pair (values, events): events are the nonzero pattern carried through
    0/1-weight copies of the ops. Every synaptic op counts its effective operations on its input,
    as AC where the input of that step is binary and as MAC otherwise. A linear op that reaches its
    consumers only through back edges runs on the previous step's input (``delayed_ops``)."""

    def __init__(self, program, leaves, delayed, eff, fan, binfn, granularity, batch_size):
        super().__init__(program)
        self.leaves, self.delayed, self.eff, self.fan, self.binfn = leaves, delayed, eff, fan, binfn
        self.granularity, self.batch_size = granularity, batch_size

    def leaf(self, op):
        v = self.leaves.get(op.name)
        return None if v is None else (v, (v != 0).to(torch.float64))

    def lag(self, edge, dst):
        return _edge_shift(self.program, self.delayed, edge.src, dst)

    def delay(self, value, lag, src=None):
        v, b = value
        return shift_steps(v, lag), shift_steps(b, lag)

    def combine(self, op, parts):
        if any(p is None for p in parts):
            return None
        return add_all([p[0] for p in parts]), add_all([p[1] for p in parts])

    def run_node(self, op, x):
        if op.kind != "linear":
            return super().run_node(op, x)
        name = op.name
        if x is None:
            if name in self.eff:
                self.eff[name]["known"] = False
            return None
        x, xb = x
        val = apply_per_step(op.fn, x)
        ev = apply_per_step(self.binfn[name], (xb != 0).to(torch.float64) if op.type in SYNAPTIC_TYPES else xb)
        if name in self.eff:
            e = self.eff[name]
            T = x.shape[1]
            nz = (x != 0).reshape(x.shape[0], T, -1).to(torch.float64)
            ops_bt = nz @ self.fan[name]  # [b, T]
            isbin = _is_binary_rows(x)
            if self.granularity == "batch":
                bs = self.batch_size
                g = isbin.reshape(-1, bs, T) if isbin.shape[0] % bs == 0 else None
                if g is None:  # last, partial batch
                    isbin = isbin.all(dim=0, keepdim=True).expand_as(isbin)
                else:
                    isbin = g.all(dim=1, keepdim=True).expand(-1, bs, -1).reshape(isbin.shape)
            e["ac"] += float(ops_bt[isbin].sum())
            e["mac"] += float(ops_bt[~isbin].sum())
            e["binary_steps"] += int(isbin.sum())
        return val, ev


def activity_metrics(
    result,
    program: Program,
    inputs=None,
    granularity: str = "sample",
    batch_size: Optional[int] = None,
    bytes_per_param: int = 4,
) -> Dict[str, object]:
    """All activity metrics of a run, per sample (per inference), per layer and in total.

    ``inputs``: the network input [samples, steps, *input_shape] as simulated; without it the
    connections that read the input report ``null`` effective operations (their Dense count is
    known) and ``complete`` is false.
    ``granularity``: "sample" (AC vs MAC decided per sample and step) or "batch" (per group of
    ``batch_size`` samples and step, as NeuroBench does for one forward call).
    """
    if granularity not in ("sample", "batch"):
        raise ValueError("granularity must be 'sample' or 'batch'")
    if granularity == "batch" and not batch_size:
        raise ValueError("granularity='batch' needs batch_size")
    S, T = int(result.n_samples), int(result.n_steps)
    static = static_metrics(program, bytes_per_param)
    delayed = delayed_ops(program)
    syn_names = [c["name"] for c in static["connections"]]
    fan = {k: torch.as_tensor(fanout_vector(program.ops[k], "nonzero")) for k in syn_names}
    binfn = {k: _binary_fn(program.ops[k]) for k in program.order if program.ops[k].kind == "linear"}

    x_all = None
    if inputs is not None:
        x_all = np.asarray(inputs)
        want = tuple(program.input_shape)
        x_all = x_all.reshape((x_all.shape[0], x_all.shape[1]) + want)
        if x_all.shape[0] != S or x_all.shape[1] != T:
            raise ValueError(f"inputs cover {x_all.shape[:2]} samples x steps, the result {S} x {T}")

    # constant drive per neuron (bias of the incoming affine ops, leak): such neurons update always
    drive = _constant_drive(program)

    width = max(int(np.prod(op.out_shape or (1,))) for op in program.ops.values())
    chunk = max(1, CHUNK_ELEMENTS // max(1, T * width))
    if granularity == "batch":
        chunk = max(batch_size, (chunk // batch_size) * batch_size)

    eff = {k: {"ac": 0.0, "mac": 0.0, "known": True, "binary_steps": 0} for k in syn_names}
    received = {op.name: 0.0 for op in program.neurons()}
    active = {op.name: 0.0 for op in program.neurons()}

    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        leaves: Dict[str, Optional[torch.Tensor]] = {}
        for name in program.order:
            op = program.ops[name]
            v = None
            if op.kind == "input":
                v = None if x_all is None else torch.as_tensor(x_all[s0:s1], dtype=torch.float64)
            elif op.kind == "neuron":
                rec = result.spikes.get(name, result.v.get(name))
                if rec is not None:
                    v = torch.as_tensor(np.asarray(rec[s0:s1]), dtype=torch.float64)
                    v = v.reshape((s1 - s0, T) + tuple(op.out_shape))
            leaves[name] = v
        walk = _Activity(program, leaves, delayed, eff, fan, binfn, granularity, batch_size)
        with torch.no_grad():
            for name in program.order:
                if program.ops[name].kind == "linear":
                    walk.value(name)
        # events arriving at every neuron layer
        for op in program.neurons():
            name = op.name
            parts = walk.incoming_values(name)
            inc = None if any(pr is None for pr in parts) else add_all([pr[1] for pr in parts])
            spk = result.spikes.get(name)
            fired = None
            if spk is not None:
                fired = torch.as_tensor(np.asarray(spk[s0:s1])).reshape(s1 - s0, T, -1).bool()
            if inc is None:
                active[name] = received[name] = None
                continue
            got = inc.reshape(s1 - s0, T, -1) != 0
            if received[name] is not None:
                received[name] += float(inc.sum())
            act = got | torch.as_tensor(drive[name]).reshape(1, 1, -1)
            if fired is not None:
                act = act | fired
            if active[name] is not None:
                active[name] += float(act.sum())

    # ------------------------------------------------------------------ assemble
    conns = []
    for c in static["connections"]:
        e = eff[c["name"]]
        dense = c["dense_per_step"] * T
        row = dict(c)
        row["Dense"] = dense
        row["Effective_ACs"] = e["ac"] / S if e["known"] else None
        row["Effective_MACs"] = e["mac"] / S if e["known"] else None
        row["binary_input_fraction"] = e["binary_steps"] / (S * T) if e["known"] else None
        conns.append(row)

    from toolchain.loihi.plan import bias_unit_needs

    needs = bias_unit_needs(program)
    layers = []
    tot_spikes = tot_slots = 0.0
    for op in program.neurons():
        name = op.name
        n = int(op.ssm.n)
        spk = result.spikes.get(name)
        spikes = float(np.asarray(spk).sum()) if spk is not None else 0.0
        spiking = spk is not None
        mine = [c for c in conns if c["target"] == name]
        syn = _sum_synops(mine)
        by_kind = {k: _sum_synops([c for c in mine if c["kind"] == k]) for k in ("dense", "conv")}
        rate = spikes / max(1, n * T * S)
        row = {
            "name": name,
            "type": op.type,
            "neurons": n,
            "spiking": spiking,
            "spikes_per_sample": spikes / S,
            "firing_rate": rate,
            "firing_rate_hz": rate / float(result.dt),
            "activation_sparsity": 1.0 - rate if spiking else None,
            "neuron_updates": float(n * T),
            "active_updates": None if active[name] is None else active[name] / S,
            "synaptic_events_in": None if received[name] is None else received[name] / S,
            "constant_drive_neurons": int(drive[name].sum()),
            "synops": syn,
            "synops_by_kind": by_kind,
            "connections": [c["name"] for c in mine],
        }
        if name in needs:  # Loihi only: always-on units deliver a constant into the current
            u = needs[name]
            row["bias_unit"] = {
                "units": u["units"],
                "lags": u["lags"],
                "synapses": u["synapses"],
                "spikes_per_sample": float(u["units"] * T),
                "synops_per_sample": float(u["synapses"] * T),
            }
        if spiking:
            tot_spikes += spikes
            tot_slots += n * T * S
            row["spike_counts_per_neuron"] = np.asarray(spk).reshape(S, T, -1).sum(axis=(0, 1)) / S
        layers.append(row)

    total_syn = _sum_synops(conns)
    missing = [c["name"] for c in conns if c["Effective_ACs"] is None]
    totals = {
        "spikes_per_sample": tot_spikes / S,
        "neurons": int(sum(l["neurons"] for l in layers)),
        "neuron_updates": float(sum(l["neuron_updates"] for l in layers)),
        "active_updates": None if any(l["active_updates"] is None for l in layers) else float(sum(l["active_updates"] for l in layers)),
        **total_syn,
        "activation_sparsity": 1.0 - tot_spikes / tot_slots if tot_slots else None,
        "connection_sparsity": static["connection_sparsity"],
        "footprint_bytes": static["footprint_bytes"],
        "neuron_parameter_bytes": static["neuron_parameter_bytes"],
        "weights": static["weights"],
        "biases": static["biases"],
    }
    return {
        "convention": "NeuroBench 2.3.0 names; per sample (inference), summed over time steps",
        "granularity": granularity if granularity == "sample" else f"batch of {batch_size}",
        "samples": S,
        "n_steps": T,
        "dt": float(result.dt),
        "complete": not missing,
        "missing_effective_ops": missing,
        "active_rule": "a neuron update is active when the neuron receives a synaptic event, fires, or has a constant drive (bias or leak); a lower bound of what a chip counts",
        "layers": layers,
        "connections": conns,
        "totals": totals,
    }


def _sum_synops(conns) -> Dict[str, Optional[float]]:
    dense = float(sum(c["Dense"] for c in conns))
    if any(c["Effective_ACs"] is None for c in conns):
        known = [c for c in conns if c["Effective_ACs"] is not None]
        return {
            "Dense": dense,
            "Effective_ACs": None,
            "Effective_MACs": None,
            "Effective_ACs_known": float(sum(c["Effective_ACs"] for c in known)),
            "Effective_MACs_known": float(sum(c["Effective_MACs"] for c in known)),
        }
    return {
        "Dense": dense,
        "Effective_ACs": float(sum(c["Effective_ACs"] for c in conns)),
        "Effective_MACs": float(sum(c["Effective_MACs"] for c in conns)),
    }


def _constant_drive(program: Program) -> Dict[str, np.ndarray]:
    """Neurons that receive a constant input (affine bias upstream) or have a nonzero leak drive."""
    walk = ConstantValues(program)
    out: Dict[str, np.ndarray] = {}
    with torch.no_grad():
        for op in program.neurons():
            parts = [p for p in walk.incoming_values(op.name) if p is not None]
            u = add_all([torch.zeros((1,) + tuple(op.in_shape), dtype=torch.float64)] + parts)
            d = (u.reshape(-1) != 0).numpy()
            c = np.asarray(op.ssm.c)
            if c.ndim == 2:
                d = d | np.any(c != 0, axis=1)
            out[op.name] = d
    return out


def compact(metrics: Dict[str, object]) -> Dict[str, object]:
    """The JSON form for run records: per-neuron arrays dropped."""
    m = dict(metrics)
    m["layers"] = [{k: v for k, v in l.items() if k != "spike_counts_per_neuron"} for l in metrics["layers"]]
    return m


def raster(result, max_events: int = 20000, sample: int = 0) -> Dict[str, object]:
    """Spike events of one sample per spiking layer, as step and neuron index lists (capped)."""
    layers = {}
    for name, spk in result.spikes.items():
        a = np.asarray(spk[sample]).reshape(spk.shape[1], -1)
        t, n = np.nonzero(a)
        total = int(t.size)
        layers[name] = {
            "neurons": int(a.shape[1]),
            "events": total,
            "truncated": total > max_events,
            "steps": t[:max_events].astype(int).tolist(),
            "neuron": n[:max_events].astype(int).tolist(),
        }
    return {"sample": sample, "n_steps": int(result.n_steps), "dt": float(result.dt), "max_events": max_events, "layers": layers}
