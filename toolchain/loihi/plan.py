"""The Loihi layer plan: a lowered program as a network of Lava processes (float and fixed point).

The plan (:func:`plan_network`) is independent of the number format and imports no Lava; a
backend turns it into Lava processes (``simulators/lava_float.py``, ``simulators/lava_fixed.py``)
and ``simulators/lava_runtime.py`` runs them.

Layout of one Lava run
----------------------
Every sample occupies a *window* of ``W = T + P`` consecutive Lava steps (``T``: steps per
sample; ``P``: padding, only needed for recurrent edges, see below). Every Dense/Conv hop
delays by one step (it sends the input it received one step earlier), so a neuron layer
processes its input ``d`` steps after the source sent it -- ``d`` is the layer's Lava *depth*
(first layer: 1). Sample ``n``'s reference step ``k`` (0-based) of a layer at depth ``d`` runs at
Lava ``time_step = n W + 1 + k + d`` (Lava counts time steps from 1). Each layer is a
``LIFReset`` process resetting u and v to 0 at the first step of its own windows
(``reset_offset = (1 + d) % W``); Lava's LIFReset resets *before* the update of that step, so
the first update starts from the zero state exactly like the reference. Since each layer's
window is shifted by its own depth, the activity of sample n never leaks into sample n+1
through a feed-forward edge, and no padding is needed between samples: ``N W + max(d)`` steps
run ``N`` samples.

Where several paths of different depth meet in one node (residual connections), a spiking
source is delayed by relay layers (identity Dense + LIF with du = dv = 1, vth = 0.5, which
repeats a binary spike one step later), and the input is delayed by an extra input ring buffer
with shifted data (graded values cannot be relayed through spikes).

A recurrent (back) edge delivers its source's value of the previous step: source and target at
the same depth (a neuron -> Linear -> same neuron) get exactly that from the Dense's one-step
buffer. A back edge's last spikes of one window would arrive at the first step of the next
window, so every back-edge source is *gated*: an extra ring buffer drives it with a large
negative input during the last ``j`` steps of each window (``j``: the number of back edges on
the path; the padding ``P`` = max j keeps those steps out of the reported ones), and the reset
at the next window start clears the gate's effect.

Constant inputs (the bias of a Linear or a folded BatchNorm in front of a layer) go onto Lava's
voltage bias where the CUBA form allows it (``toolchain/dynamics/cuba.py``). A constant into a
remembered synaptic current, and a constant that arrives only from step j > 0 of a sample (a
biased recurrent edge read with ``recurrent_step0 = "none"``), is delivered by a *bias unit*: an
always-on LIF (du = dv = 1, bias 1 > vth 0.5: one spike every step, no state) at depth
``d - 1 + j`` whose Dense weights into the layer are the constants (:func:`constant_inputs`);
lag-j units are gated in the last j steps of their window, so that the constant starts j steps
into each sample. Units are shared per (depth, lag); ``LavaPlan.bias_units`` lists what they feed.

Linear ops after the last neuron layer (e.g. an Affine feeding the Output) run on the host
on the recorded spikes or membrane potentials.

Recording: every spiking layer's s_out goes to a :class:`SpikeRecorder` sink and, when wanted,
its v is read after every step by a :class:`VarRecorder`; both write into memory-mapped .npy
files because Lava's own sinks are read back with ``Var.get()``, which moves one element per
message (about 25 us each: minutes for a few hundred steps of a CNN).

Lava facts this relies on (lava-nc 0.10.0, checked by the tests): a RingBuffer source sends
``data[:, (t - 1) % len]`` at step t; a direct OutPort -> InPort connection has no delay;
several OutPorts into one InPort are added (in an order that may differ between builds, so
float sums can differ in the last bit); Lava's Conv is a true convolution (kernel flipped) on
(X, Y, C) = (W, H, C) arrays in float64 (scipy; its torch path is disabled); ConcatPorts are
not supported, ReshapePorts are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from toolchain.dynamics.cuba import CubaForm, cuba_form, split_groups
from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.program import Program
from toolchain.program.interpreter import Edge, SequenceInterpreter, add_all, incoming, sources_through_linear

#: drive added to a back-edge source during the gated steps (finite: reset multiplies by 0)
GATE_DRIVE = -1e30
#: largest dense matrix (weights) composed for a connection
MAX_DENSE = 200_000_000


# --------------------------------------------------------------------------- plan
@dataclass
class PlanGroup:
    """One Lava LIF process."""

    key: str
    node: str  # the NIR neuron node (relays: the node whose spikes they repeat; bias units: the first they feed)
    role: str  # "neuron" | "relay" | "bias" (an always-on unit whose outgoing weights are constant inputs)
    idx: np.ndarray  # NIR flat indices of the node, in the process's order
    du: float
    dv: float
    vth: float  # +inf: non-spiking
    bias: np.ndarray
    v_scale: np.ndarray
    v_offset: np.ndarray
    depth: int
    scale: np.ndarray  # incoming weight scale (already applied to the conns' weights)
    shape3: Optional[Tuple[int, int, int]] = None  # (C, H, W) when laid out as Lava (W, H, C)
    gate: int = 0  # gate the last `gate` steps of each window (back-edge source)
    record_v: bool = False
    relay_of: Optional[str] = None  # relays: the group whose spikes they repeat ...
    relay_steps: int = 0  # ... this many steps later
    u_bias: Optional[np.ndarray] = None  # neuron groups: constant into u every step (a bias unit delivers it)
    v_sub: Optional[np.ndarray] = None  # reset by subtraction: v -= v_sub on a spike (None: v <- 0)
    v_keep: Optional[np.ndarray] = None  # partial reset: v <- v_keep v - v_sub on a spike (None: 1)
    refractory: int = 0  # v is held at 0 (its reset value) through the step after a spike
    reset_guard: bool = False  # v > vth after its subtraction: the next decision is against vth + v_sub

    @property
    def n(self) -> int:
        return int(self.idx.size)

    @property
    def spiking(self) -> bool:
        return bool(np.isfinite(self.vth))


@dataclass
class PlanInput:
    """A ring buffer sending the input: value at 0-based step ``n W + k + offset`` is x_n[k - lag]."""

    key: str
    offset: int
    lag: int
    idx: np.ndarray  # NIR flat input indices in the buffer's order
    shape3: Optional[Tuple[int, int, int]] = None


@dataclass
class PlanConn:
    key: str
    src: str  # PlanGroup or PlanInput key
    dst: str  # PlanGroup key
    kind: str  # "dense" | "conv"
    weights: np.ndarray  # dense: [n_dst, n_src] in the processes' orders; conv: Lava kernel
    graded: bool  # the source sends real values (the input), not spikes
    conv: Dict[str, object] = field(default_factory=dict)  # input_shape, padding, stride, dilation, groups


@dataclass
class LavaPlan:
    program: Program
    n_samples: int
    n_steps: int  # T
    padding: int  # P
    groups: Dict[str, PlanGroup]
    inputs: Dict[str, PlanInput]
    conns: List[PlanConn]
    forms: Dict[str, CubaForm]
    node_groups: Dict[str, List[str]]  # neuron node -> its (non-relay) group keys
    host_sources: List[str]  # nodes whose recorded values the host needs for the outputs

    @property
    def window(self) -> int:
        return self.n_steps + self.padding

    @property
    def depth(self) -> int:
        return max([g.depth for g in self.groups.values()] + [0])

    @property
    def total_steps(self) -> int:
        return self.n_samples * self.window + self.depth

    def describe(self) -> Dict[str, object]:
        return {
            "lava_depth": self.depth,
            "window": self.window,
            "padding": self.padding,
            "total_steps": self.total_steps,
            "lava_processes": self.n_processes(),
            "lif_processes": len(self.groups),
            "relays": sum(g.role == "relay" for g in self.groups.values()),
            "bias_units": self.bias_units(),
            "conns": {c.key: c.kind for c in self.conns},
            "cuba_error": {k: f.error for k, f in self.forms.items()},
        }

    def bias_units(self) -> Dict[str, Dict[str, int]]:
        """Per bias unit: the neuron nodes it feeds and the synapses (nonzero weights) into each."""
        out: Dict[str, Dict[str, int]] = {}
        for c in self.conns:
            g = self.groups.get(c.src)
            if g is not None and g.role == "bias":
                node = self.groups[c.dst].node
                out.setdefault(c.src, {})
                out[c.src][node] = out[c.src].get(node, 0) + int(np.count_nonzero(c.weights))
        return out

    def n_processes(self, record_v: bool = False) -> int:
        n = len(self.groups) + len(self.inputs) + len(self.conns)
        n += sum(g.gate > 0 for g in self.groups.values())
        n += sum(g.spiking and g.role == "neuron" for g in self.groups.values())  # spike sinks
        n += sum(g.role == "neuron" and (g.record_v or record_v) for g in self.groups.values())
        return n


def _layout3(shape) -> Optional[Tuple[int, int, int]]:
    return tuple(int(d) for d in shape) if len(shape) == 3 else None


def _perm_whc(shape3) -> np.ndarray:
    """NIR flat index (C, H, W order) of each element of Lava's (W, H, C) flat order."""
    C, H, W = shape3
    return np.arange(C * H * W).reshape(C, H, W).transpose(2, 1, 0).reshape(-1)


class _Transfer(SequenceInterpreter):
    """The linear map from source ``S``'s value ``j`` steps earlier to a node's input.

    Values are [n_S, *shape] batches (one row per element of S, the identity at S); a value keyed
    by (node, jj) is the part of the node's value driven by x_S[k - jj], so an edge of lag l reads
    its source at jj - l (``incoming``'s delays, in the key instead of on tensors)."""

    def __init__(self, program, S, j):
        super().__init__(program)
        self.S, self.j = S, j
        shape = program.ops[S].out_shape
        n = int(np.prod(shape))
        self.X = torch.eye(n, dtype=torch.float64).reshape((n,) + tuple(shape))

    def at(self, node: str, jj: int):
        key = (node, jj)
        if key not in self.memo:
            op = self.ops[node]
            if op.kind in ("neuron", "input"):
                self.memo[key] = self.X if (node == self.S and jj == 0) else None
            else:
                r = self.gather(node, jj)
                self.memo[key] = None if r is None else op.fn_nobias(r)
        return self.memo[key]

    def gather(self, node: str, jj: int):
        terms = [self.at(e.src, jj - e.lag) for e in incoming(self.program, node) if jj - e.lag >= 0]
        return _sum_known(terms)


def _sum_known(terms):
    return add_all(t for t in terms if t is not None)


def _matrix(program: Program, target: str, S: str, j: int) -> np.ndarray:
    """M [n_target, n_S] (flat NIR order): the part of u_target driven by x_S[k - j]."""
    ops = program.ops
    n_t = int(np.prod(ops[target].in_shape))
    n_s = int(np.prod(ops[S].out_shape))
    if n_s * n_t > MAX_DENSE:
        raise NirDeployError(
            f"the connection {S!r} -> {target!r} would need a dense matrix of {n_t} x {n_s} weights; "
            f"only a single Conv2d between two layers runs as a Lava Conv"
        )
    with torch.no_grad():
        y = _Transfer(program, S, j).gather(target, j)
    if y is None:
        return np.zeros((n_t, n_s))
    return y.reshape(n_s, n_t).T.numpy().copy()


def constant_inputs(program: Program, target: str) -> Dict[int, np.ndarray]:
    """``{j: b_j}``: the constant part of neuron ``target``'s input u (biases of the linear ops in
    front, flat NIR order) is ``sum of b_j over j <= k`` at step k of a sample.

    Everything arrives from step 0 (``j = 0``) except what crosses a back edge under the
    ``recurrent_step0 == "none"`` reading, which arrives one step later per back edge; under the
    default ``"bias"`` reading (``toolchain/program/interpreter.py``: step0_values) a back edge
    delivers a constant from the first step on. Exact: each part is computed once, nothing is
    subtracted.
    """
    delayed = getattr(program.disc, "recurrent_step0", "bias") == "none"
    ops = program.ops
    memo: Dict[str, Dict[int, torch.Tensor]] = {}

    def add(acc, j, v):
        acc[j] = v if j not in acc else acc[j] + v

    def parts_into(node) -> Dict[int, torch.Tensor]:
        acc: Dict[int, torch.Tensor] = {}
        for e in incoming(program, node):
            for j, v in const_of(e.src).items():
                add(acc, j + (e.lag if delayed else 0), v)
        return acc

    def const_of(node) -> Dict[int, torch.Tensor]:
        if node in memo:
            return memo[node]
        memo[node] = {}  # a cycle without a neuron is refused by lowering
        op = ops[node]
        if op.kind != "linear":
            return memo[node]
        out: Dict[int, torch.Tensor] = {}
        zero = torch.zeros((1,) + tuple(op.in_shape), dtype=torch.float64)
        own = op.fn(zero)  # the op's own bias (every linear op is W x + b)
        if bool(torch.any(own != 0)):
            out[0] = own
        for j, v in parts_into(node).items():
            add(out, j, op.fn_nobias(v))
        memo[node] = out
        return out

    n = int(np.prod(ops[target].in_shape))
    with torch.no_grad():
        got = parts_into(target)
        out = {j: v.reshape(-1).numpy().astype(np.float64).copy() for j, v in got.items()}
    out = {j: b for j, b in out.items() if np.any(b != 0)}
    out.setdefault(0, np.zeros(n))
    return out


def unit_weights(u_bias: Optional[np.ndarray], late: Dict[int, np.ndarray], scale: np.ndarray) -> Dict[int, np.ndarray]:
    """``{lag j: weights}`` of the bias units feeding one group: ``u_bias`` (lag 0) and the late
    constants ``late`` (j > 0), which enter like the input (scaled by ``scale``); zero ones dropped."""
    terms: Dict[int, np.ndarray] = {}
    if u_bias is not None and np.any(u_bias != 0):
        terms[0] = np.asarray(u_bias, dtype=np.float64)
    for j, b in late.items():
        w = b * scale
        if np.any(w != 0):
            terms[j] = terms[j] + w if j in terms else w
    return terms


def bias_unit_needs(program: Program) -> Dict[str, Dict[str, object]]:
    """Per neuron node that Loihi feeds through bias units (see the module docstring): ``units``
    (one per lag; :func:`plan_network` shares units between layers of equal depth), ``lags`` and
    ``synapses`` (nonzero unit weights into the node). For resources and energy; nodes Lava
    cannot run are left out. Computed once per program."""
    cached = getattr(program, "_bias_unit_needs", None)
    if cached is not None:
        return cached
    out: Dict[str, Dict[str, object]] = {}
    for op in program.neurons():
        consts = constant_inputs(program, op.name)
        b0 = consts.pop(0)
        try:
            form = cuba_form(op.ssm, op.name, input_bias=b0)
        except NirDeployError:
            continue
        terms = unit_weights(form.u_bias, consts, form.scale)
        if terms:
            out[op.name] = {"units": len(terms), "lags": sorted(terms),
                            "synapses": int(sum(np.count_nonzero(w) for w in terms.values()))}  # fmt: skip
    program._bias_unit_needs = out
    return out


def loihi_mapping(program: Program) -> Dict[str, object]:
    """How ``program`` maps onto Loihi beyond one LIF per layer, for run records and reports:
    ``chip_layers`` (spiking neuron nodes), ``host_readout`` (non-spiking nodes: in a ``.net`` they
    run on the host from the chip's output spikes, exporters/nir_to_netx.py), ``bias_units``
    (:func:`bias_unit_needs`) and the neurons that reset by subtraction (``reset_subtract``; a
    ``.net`` cannot express it)."""
    neurons = program.neurons()
    return {
        "chip_layers": [op.name for op in neurons if op.ssm.spiking],
        "host_readout": [op.name for op in neurons if not op.ssm.spiking],
        "bias_units": bias_unit_needs(program),
        "reset_subtract": [op.name for op in neurons if op.ssm.spiking and getattr(op.ssm, "v_subtract", None) is not None
                           and getattr(op.ssm, "v_keep", None) is None],  # fmt: skip
        "reset_partial": {op.name: float(np.max(op.ssm.v_keep)) for op in neurons
                          if op.ssm.spiking and getattr(op.ssm, "v_keep", None) is not None},  # fmt: skip
    }


def _conv_params(op, in_shape3, out_shape3) -> Optional[Dict[str, object]]:
    """Lava Conv parameters for NIR Conv2d op (torch (C, H, W) semantics), or None."""
    node = op.node
    W = np.asarray(node.weight, dtype=np.float64)
    if W.ndim != 4:
        return None
    from toolchain.ir.nodes import explicit_padding, pair, scalar_int

    stride = pair(node.stride)
    dilation = pair(node.dilation)
    groups = scalar_int(node.groups)
    pad = explicit_padding(node)
    if pad is None:  # "same" with an even effective kernel: asymmetric
        return None
    C, H, Wd = in_shape3
    # Lava: input (X, Y, C) = (W, H, C); kernel (C_out, kW, kH, C_in/groups), flipped (a true
    # convolution, lava.proc.conv.utils.conv), padding/stride/dilation in (X, Y) order
    kernel = W.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :].copy()
    return dict(
        weight=kernel,
        input_shape=(Wd, H, C),
        padding=tuple(pad[::-1]),
        stride=tuple(stride[::-1]),
        dilation=tuple(dilation[::-1]),
        groups=groups,
        output_shape=(out_shape3[2], out_shape3[1], out_shape3[0]),
    )


def _scaled_conv(op, in_shape3, dg: PlanGroup) -> Optional[Dict[str, object]]:
    """Lava Conv parameters of ``op`` into group ``dg`` with the group's incoming weight scale
    folded into the kernel (None when the scale is not one value per output channel)."""
    conv = _conv_params(op, in_shape3, dg.shape3)
    if conv is None:
        return None
    sc = np.empty(dg.n)
    sc[dg.idx] = dg.scale
    sc = sc.reshape(dg.shape3)
    per_ch = sc[:, :1, :1]
    if not np.all(sc == per_ch):
        return None
    conv["weight"] = conv["weight"] * per_ch.reshape(-1, 1, 1, 1)
    return conv


def _host_sources(program: Program) -> List[str]:
    """The neuron and input nodes whose recorded values the host needs to compute the outputs."""
    out: List[str] = []
    seen = set()

    def need(node):
        if node in seen:
            return
        seen.add(node)
        if program.ops[node].kind in ("neuron", "input"):
            out.append(node)
            return
        for e in incoming(program, node):
            need(e.src)

    for o in program.output_names:
        need(o)
    return out


def plan_network(program: Program, n_samples: int, n_steps: int, use_conv: bool = True) -> LavaPlan:
    """Map ``program`` onto Lava processes for ``n_samples`` samples of ``n_steps`` steps."""
    ops = program.ops
    groups: Dict[str, PlanGroup] = {}
    node_groups: Dict[str, List[str]] = {}
    forms: Dict[str, CubaForm] = {}
    paths: Dict[str, Dict[Tuple[str, int], List[Tuple[str, ...]]]] = {}
    depth: Dict[str, int] = {}
    late: Dict[str, Dict[int, np.ndarray]] = {}
    neurons = [op.name for op in program.neurons()]
    if not neurons:
        raise NirDeployError("the graph has no neuron layer; there is nothing to run on Lava")

    # --- per neuron layer: incoming affine map, CUBA form, groups, depth
    for name in neurons:
        op = ops[name]
        pth = sources_through_linear(program, name)
        for (S, j) in pth:
            if ops[S].kind == "neuron" and not ops[S].ssm.spiking:
                raise UnsupportedNodeError(
                    f"node {S!r} ({ops[S].type}) is non-spiking but feeds neuron layer {name!r}; "
                    f"Lava's LIF can send only spikes to other layers; the reference backend runs the graph as it is"
                )
        consts = constant_inputs(program, name)
        b_in = consts.pop(0)
        late[name] = consts  # constants that arrive only from step j > 0 on (bias units of lag j)
        form = cuba_form(op.ssm, name, input_bias=b_in)
        forms[name] = form
        paths[name] = pth
        d = 1
        for (S, j) in pth:
            if ops[S].kind == "neuron" and S in depth:
                d = max(d, depth[S] + 1 - j)
        depth[name] = d
        gs = split_groups(form)
        shape3 = _layout3(op.ssm.shape) if len(gs) == 1 else None
        keys = []
        for gi, g in enumerate(gs):
            key = name if len(gs) == 1 else f"{name}#{gi}"
            idx, scale, bias, vs, vo, ub = g.idx, g.scale, g.bias, g.v_scale, g.v_offset, g.u_bias
            v_sub, v_keep = g.v_sub, g.v_keep
            if shape3 is not None:
                perm = _perm_whc(shape3)  # g.idx is arange(n) for a single group
                idx, scale, bias, vs, vo = perm, scale[perm], bias[perm], vs[perm], vo[perm]
                ub = None if ub is None else ub[perm]
                v_sub = None if v_sub is None else v_sub[perm]
                v_keep = None if v_keep is None else v_keep[perm]
            groups[key] = PlanGroup(
                key=key,
                node=name,
                role="neuron",
                idx=idx,
                du=g.du,
                dv=g.dv,
                vth=g.vth,
                bias=bias,
                v_scale=vs,
                v_offset=vo,
                depth=d,
                scale=scale,
                shape3=shape3,
                u_bias=ub,
                v_sub=v_sub,
                v_keep=v_keep,
                refractory=g.refractory,
                reset_guard=g.reset_guard,
            )
            keys.append(key)
        node_groups[name] = keys

    # --- delays: every (S, j) edge must arrive r = d_N - d_S - 1 + j >= 0 steps late
    inputs: Dict[str, PlanInput] = {}
    conns: List[PlanConn] = []
    relay_chain: Dict[str, List[str]] = {}  # source group -> relay group keys (1, 2, ...)
    in_name = program.input_name
    in_shape3 = _layout3(ops[in_name].out_shape)
    in_idx = _perm_whc(in_shape3) if in_shape3 else np.arange(int(np.prod(ops[in_name].out_shape)))
    gate: Dict[str, int] = {}

    def relay(src_key: str, r: int) -> str:
        chain = relay_chain.setdefault(src_key, [])
        base = groups[src_key]
        while len(chain) < r:
            prev = chain[-1] if chain else src_key
            k = f"{src_key}~relay{len(chain) + 1}"
            n = base.n
            groups[k] = PlanGroup(
                key=k,
                node=base.node,
                role="relay",
                idx=base.idx,
                du=1.0,
                dv=1.0,
                vth=0.5,
                bias=np.zeros(n),
                v_scale=np.ones(n),
                v_offset=np.zeros(n),
                depth=groups[prev].depth + 1,
                scale=np.ones(n),
                shape3=base.shape3,
                relay_of=src_key,
                relay_steps=len(chain) + 1,
            )
            conns.append(PlanConn(f"{prev}->{k}", prev, k, "dense", np.eye(n), graded=False))
            chain.append(k)
        return chain[r - 1] if r > 0 else src_key

    for name in neurons:
        dN = depth[name]
        for (S, j), pth in paths[name].items():
            M = None
            single_conv = (
                use_conv
                and j == 0
                and len(pth) == 1
                and len(pth[0]) == 1
                and ops[pth[0][0]].type == "Conv2d"
                and incoming(program, pth[0][0]) == [Edge(S, 0)]
            )
            if ops[S].kind == "input":
                src_keys = []
                key = "input" if (dN - 1, j) == (0, 0) else f"input@{dN - 1}-{j}"
                if key not in inputs:
                    inputs[key] = PlanInput(key, offset=dN - 1, lag=j, idx=in_idx, shape3=in_shape3)
                src_keys.append((key, in_idx, in_shape3))
                graded = True
            else:
                r = dN - depth[S] - 1 + j
                if r < 0:
                    raise UnsupportedNodeError(
                        f"recurrent edge from {S!r} into {name!r}: {S!r} runs {depth[S] - dN} Lava step(s) after "
                        f"{name!r}, so its spikes cannot arrive one step later as the model requires; the reference backend runs the graph "
                        f"as it is"
                    )
                if j > 0:
                    for gk in node_groups[S]:
                        gate[gk] = max(gate.get(gk, 0), j)
                src_keys = []
                for gk in node_groups[S]:
                    rk = relay(gk, r)
                    src_keys.append((rk, groups[gk].idx, groups[gk].shape3))
                graded = False
            for dk in node_groups[name]:
                dg = groups[dk]
                for sk, sidx, sshape3 in src_keys:
                    conv = None
                    if single_conv and len(src_keys) == 1 and len(node_groups[name]) == 1 and sshape3 and dg.shape3:
                        conv = _scaled_conv(ops[pth[0][0]], sshape3, dg)
                    if conv is not None:
                        conns.append(PlanConn(f"{sk}->{dk}", sk, dk, "conv", conv.pop("weight"), graded, conv))
                        continue
                    if M is None:
                        M = _matrix(program, name, S, j)
                    Wm = M[dg.idx][:, sidx] * dg.scale[:, None]
                    if np.any(Wm):
                        conns.append(PlanConn(f"{sk}->{dk}", sk, dk, "dense", Wm, graded))

    # --- bias units: constant inputs into u (a remembered current, or anything that arrives late)
    def bias_unit(D: int, j: int, node: str) -> str:
        key = f"bias@{D}" if j == 0 else f"bias@{D}-{j}"
        if key not in groups:
            groups[key] = PlanGroup(
                key=key,
                node=node,
                role="bias",
                idx=np.arange(1),
                du=1.0,
                dv=1.0,
                vth=0.5,
                bias=np.ones(1),  # v = 1 > 0.5 at every step: one spike per step, no state
                v_scale=np.ones(1),
                v_offset=np.zeros(1),
                depth=D,
                scale=np.ones(1),
            )
            if j:  # silent in the last j steps of its window: the constant starts j steps late
                gate[key] = j
        return key

    for name in neurons:
        for dk in node_groups[name]:
            dg = groups[dk]
            terms = unit_weights(dg.u_bias, {j: b[dg.idx] for j, b in late[name].items()}, dg.scale)
            for j, w in sorted(terms.items()):
                uk = bias_unit(depth[name] - 1 + j, j, name)
                conns.append(PlanConn(f"{uk}->{dk}", uk, dk, "dense", np.asarray(w, dtype=np.float64)[:, None].copy(), False))

    for gk, j in gate.items():
        groups[gk].gate = j
    padding = max(gate.values(), default=0)

    host_sources = _host_sources(program)
    for s in host_sources:
        if s in node_groups and not forms[s].spiking:
            for gk in node_groups[s]:
                groups[gk].record_v = True

    return LavaPlan(
        program=program,
        n_samples=int(n_samples),
        n_steps=int(n_steps),
        padding=padding,
        groups=groups,
        inputs=inputs,
        conns=conns,
        forms=forms,
        node_groups=node_groups,
        host_sources=host_sources,
    )


# --------------------------------------------------------------------------- data in and out
def check_inputs(program: Program, inputs) -> np.ndarray:
    x = np.asarray(inputs, dtype=np.float64)
    want = tuple(program.input_shape)
    if x.ndim < 2 or int(np.prod(x.shape[2:])) != int(np.prod(want)):
        raise NirDeployError(
            f"shape mismatch: the input has shape {tuple(x.shape[2:])} per step, but the graph's input is {want}"
        )
    return x.reshape(x.shape[0], x.shape[1], -1)


def check_integer_inputs(program, inputs) -> np.ndarray:
    """Inputs [N, T, *input_shape] -> int64 [N, T, n_in] (flat NIR order); refuses non-integers."""
    x = check_inputs(program, inputs)
    if not np.all(np.isfinite(x)):
        raise NirDeployError("the input contains NaN or infinity")
    xi = np.rint(x)
    if not np.array_equal(xi, x):
        bad = x[xi != x].reshape(-1)[0]
        raise NirDeployError(
            f"the fixed-point backends take integer inputs (event counts per bin); the input contains {bad:g}"
        )
    if xi.size and np.max(np.abs(xi)) >= 2**31:
        raise NirDeployError("the input has values beyond 32 bits, which Lava's integer input buffer cannot hold")
    return xi.astype(np.int64)


# --------------------------------------------------------------------------- connections


def input_data(plan: LavaPlan, pin: PlanInput, x: np.ndarray) -> np.ndarray:
    """Ring buffer data [n_in, total_steps] of input source ``pin`` for inputs x [N, T, n_in]."""
    N, T, n_in = x.shape
    Wn = plan.window
    win = np.zeros((N, Wn, n_in))
    win[:, pin.lag : T, :] = x[:, : T - pin.lag, :]
    flat = win.reshape(N * Wn, n_in)
    data = np.zeros((plan.total_steps, n_in))
    end = min(plan.total_steps, pin.offset + N * Wn)
    data[pin.offset : end] = flat[: end - pin.offset]
    return data[:, pin.idx].T.copy()


def gate_data(plan: LavaPlan, g: PlanGroup) -> np.ndarray:
    """Periodic ring buffer [n, W] driving back-edge source ``g`` down in its last steps."""
    Wn = plan.window
    m = np.arange(Wn)
    gated = ((m - g.depth) % Wn) >= Wn - g.gate
    return np.where(gated[None, :], GATE_DRIVE, 0.0) * np.ones((g.n, 1))


def window_view(plan: LavaPlan, g: PlanGroup, full: np.ndarray) -> np.ndarray:
    """Recorded [n, total_steps] of group ``g`` -> [samples, T, n] aligned with the reference."""
    N, Wn, T = plan.n_samples, plan.window, plan.n_steps
    seg = full[:, g.depth : g.depth + N * Wn]
    return seg.reshape(g.n, N, Wn)[:, :, :T].transpose(1, 2, 0)


def host_outputs(program: Program, values: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Evaluate the Output nodes from recorded source values [N, T, *shape] (linear ops on the host)."""
    from toolchain.program.interpreter import SequenceValues

    leaves = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in values.items()}
    run = SequenceValues(program, leaves)
    with torch.no_grad():
        return {o: run.value(o).numpy() for o in program.output_names}


