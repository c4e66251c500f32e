"""Planning and running a lowered program as a network of Lava processes (float and fixed point).

The plan (:func:`plan_network`) is independent of the number format; a backend turns it into
Lava processes (``simulators/lava_float.py``) and :func:`run_network` runs them.

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
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from toolchain.cuba import CubaForm, cuba_form, split_groups
from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.program import Program

#: drive added to a back-edge source during the gated steps (finite: reset multiplies by 0)
GATE_DRIVE = -1e30
#: one Lava run is cut into at most this many RunSteps calls (for the progress bar)
MAX_CHUNKS = 20
MIN_CHUNK = 100
#: largest dense matrix (weights) composed for a connection
MAX_DENSE = 200_000_000


# --------------------------------------------------------------------------- plan
@dataclass
class PlanGroup:
    """One Lava LIF process."""

    key: str
    node: str  # the NIR neuron node (for relays: the node whose spikes they repeat)
    role: str  # "neuron" | "relay"
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
            "conns": {c.key: c.kind for c in self.conns},
            "cuba_error": {k: f.error for k, f in self.forms.items()},
        }

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


def _is_neuron(program: Program, name: str) -> bool:
    return program.ops[name].kind == "neuron"


def _is_source(program: Program, name: str) -> bool:
    return program.ops[name].kind in ("neuron", "input")


def _incoming_paths(program: Program, target: str) -> Dict[Tuple[str, int], List[Tuple[str, ...]]]:
    """Paths of linear ops from each source (neuron or input, with j back edges) to ``target``."""
    out: Dict[Tuple[str, int], List[Tuple[str, ...]]] = {}

    def walk(node, j, path, depth=0):
        if depth > 200:  # pragma: no cover - a purely linear cycle
            raise NirDeployError(f"the linear ops in front of {target!r} form a cycle without a neuron")
        for p, dj in [(p, 0) for p in program.preds(node)] + [(p, 1) for p in program.back_preds(node)]:
            if _is_source(program, p):
                out.setdefault((p, j + dj), []).append(tuple(reversed(path)))
            elif program.ops[p].kind == "linear":
                walk(p, j + dj, path + [p], depth + 1)
            else:  # pragma: no cover - outputs feed nothing
                raise NirDeployError(f"node {p!r} feeds {node!r} but is an Output")

    walk(target, 0, [])
    return out


def _matrix(program: Program, target: str, S: str, j: int) -> np.ndarray:
    """M [n_target, n_S] (flat NIR order): the part of u_target driven by x_S[k - j]."""
    ops = program.ops
    n_t = int(np.prod(ops[target].in_shape))
    shape = ops[S].out_shape
    n_s = int(np.prod(shape))
    if n_s * n_t > MAX_DENSE:
        raise NirDeployError(
            f"the connection {S!r} -> {target!r} would need a dense matrix of {n_t} x {n_s} weights; "
            f"only a single Conv2d between two layers runs as a Lava Conv"
        )
    X = torch.eye(n_s, dtype=torch.float64).reshape((n_s,) + tuple(shape))
    memo = {}

    def val(node, jj):
        key = (node, jj)
        if key not in memo:
            op = ops[node]
            if op.kind in ("neuron", "input"):
                r = X if (node == S and jj == 0) else None
            else:
                r = gather(node, jj)
                if r is not None:
                    r = op.fn_nobias(r)
            memo[key] = r
        return memo[key]

    def gather(node, jj):
        acc = None
        terms = [val(p, jj) for p in program.preds(node)]
        if jj > 0:
            terms += [val(p, jj - 1) for p in program.back_preds(node)]
        for t in terms:
            if t is not None:
                acc = t if acc is None else acc + t
        return acc

    with torch.no_grad():
        y = gather(target, j)
    if y is None:
        return np.zeros((n_t, n_s))
    return y.reshape(n_s, n_t).T.numpy().copy()


def _input_bias(program: Program, target: str, recurrent: bool) -> np.ndarray:
    """The constant part of u_target (biases of the linear ops in front), flat NIR order."""
    ops = program.ops

    def bias(deliver_back: bool):
        memo = {}

        def val(node):
            if node not in memo:
                op = ops[node]
                if op.kind in ("neuron", "input"):
                    memo[node] = torch.zeros((1,) + tuple(op.out_shape), dtype=torch.float64)
                else:
                    memo[node] = op.fn(gather(node))
            return memo[node]

        def gather(node):
            acc = torch.zeros((1,) + tuple(ops[node].in_shape), dtype=torch.float64)
            for p in program.preds(node):
                acc = acc + val(p)
            if deliver_back:
                for p in program.back_preds(node):
                    acc = acc + val(p)
            return acc

        with torch.no_grad():
            return gather(target).reshape(-1).numpy().copy()

    b0 = bias(False)
    if recurrent and not np.array_equal(b0, bias(True)):
        raise UnsupportedNodeError(
            f"node {target!r}: a recurrent edge into it carries a bias, which is absent at the first step "
            f"of a sample and present afterwards; Lava's constant bias cannot express that"
        )
    return b0


def _conv_params(op, in_shape3, out_shape3) -> Optional[Dict[str, object]]:
    """Lava Conv parameters for NIR Conv2d op (torch (C, H, W) semantics), or None."""
    node = op.node
    W = np.asarray(node.weight, dtype=np.float64)
    if W.ndim != 4:
        return None
    from toolchain.program import _pair

    stride = _pair(node.stride)
    dilation = _pair(node.dilation)
    groups = int(np.asarray(node.groups).reshape(-1)[0])
    pad = node.padding
    if isinstance(pad, (bytes, str)):
        pad = pad.decode() if isinstance(pad, bytes) else pad
        if pad == "valid":
            pad = (0, 0)
        else:  # "same": symmetric only for odd effective kernels
            eff = [dilation[i] * (W.shape[2 + i] - 1) for i in range(2)]
            if any(e % 2 for e in eff):
                return None
            pad = (eff[0] // 2, eff[1] // 2)
    else:
        pad = _pair(pad)
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


def plan_network(program: Program, n_samples: int, n_steps: int, use_conv: bool = True) -> LavaPlan:
    """Map ``program`` onto Lava processes for ``n_samples`` samples of ``n_steps`` steps."""
    ops = program.ops
    groups: Dict[str, PlanGroup] = {}
    node_groups: Dict[str, List[str]] = {}
    forms: Dict[str, CubaForm] = {}
    paths: Dict[str, Dict[Tuple[str, int], List[Tuple[str, ...]]]] = {}
    depth: Dict[str, int] = {}
    neurons = [op.name for op in program.neurons()]
    if not neurons:
        raise NirDeployError("the graph has no neuron layer; there is nothing to run on Lava")

    # --- per neuron layer: incoming affine map, CUBA form, groups, depth
    for name in neurons:
        op = ops[name]
        pth = _incoming_paths(program, name)
        for (S, j) in pth:
            if ops[S].kind == "neuron" and not ops[S].ssm.spiking:
                raise UnsupportedNodeError(
                    f"node {S!r} ({ops[S].type}) is non-spiking but feeds neuron layer {name!r}; "
                    f"Lava's LIF can send only spikes to other layers"
                )
        recurrent = any(j > 0 for _, j in pth)
        b_in = _input_bias(program, name, recurrent)
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
            idx, scale, bias, vs, vo = g.idx, g.scale, g.bias, g.v_scale, g.v_offset
            if shape3 is not None:
                perm = _perm_whc(shape3)  # g.idx is arange(n) for a single group
                idx, scale, bias, vs, vo = perm, scale[perm], bias[perm], vs[perm], vo[perm]
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
                and not program.back_preds(pth[0][0])
                and program.preds(pth[0][0]) == [S]
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
                        f"{name!r}, so its spikes cannot arrive one step later as the model requires"
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
                        conv = _conv_params(ops[pth[0][0]], sshape3, dg.shape3)
                        if conv is not None:
                            sc = np.empty(dg.n)
                            sc[dg.idx] = dg.scale
                            sc = sc.reshape(dg.shape3)
                            per_ch = sc[:, :1, :1]
                            if np.all(sc == per_ch):
                                conv["weight"] = conv["weight"] * per_ch.reshape(-1, 1, 1, 1)
                            else:
                                conv = None
                    if conv is not None:
                        conns.append(PlanConn(f"{sk}->{dk}", sk, dk, "conv", conv.pop("weight"), graded, conv))
                        continue
                    if M is None:
                        M = _matrix(program, name, S, j)
                    Wm = M[dg.idx][:, sidx] * dg.scale[:, None]
                    if np.any(Wm):
                        conns.append(PlanConn(f"{sk}->{dk}", sk, dk, "dense", Wm, graded))

    for gk, j in gate.items():
        groups[gk].gate = j
    padding = max(gate.values(), default=0)

    # --- what the host needs for the outputs
    host_sources: List[str] = []
    seen = set()

    def need(node):
        if node in seen:
            return
        seen.add(node)
        op = ops[node]
        if op.kind in ("neuron", "input"):
            host_sources.append(node)
            return
        for p in program.preds(node) + program.back_preds(node):
            need(p)

    for o in program.output_names:
        need(o)
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
    ops = program.ops
    memo: Dict[str, torch.Tensor] = {}

    def val(node) -> torch.Tensor:
        if node in memo:
            return memo[node]
        op = ops[node]
        if op.kind in ("neuron", "input"):
            r = torch.as_tensor(values[node], dtype=torch.float64)
        else:
            acc = None
            for p in program.preds(node):
                t = val(p)
                acc = t if acc is None else acc + t
            for p in program.back_preds(node):
                t = val(p)
                t = torch.cat([torch.zeros_like(t[:, :1]), t[:, :-1]], dim=1)  # previous step
                acc = t if acc is None else acc + t
            if op.kind == "linear":
                N, T = acc.shape[:2]
                r = op.fn(acc.reshape((N * T,) + tuple(op.in_shape)))
                r = r.reshape((N, T) + tuple(op.out_shape))
            else:
                r = acc
        memo[node] = r
        return r

    with torch.no_grad():
        return {o: val(o).numpy() for o in program.output_names}


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
            self._mm = np.load(self.proc_params["path"], mmap_mode="r+")
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
    toolchain/quantize.py): int32 weight mantissas, the Dense weight exponent, 8-bit weights.
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
    plan: LavaPlan,
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
    return {k: np.array(np.load(p, mmap_mode="r").T) for k, p in net.recordings.items()}


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
