"""The one graph interpreter: how values flow through a lowered program, with hooks.

The rule for every edge is decided here, once (:func:`incoming`): a forward edge delivers its
source's value of the same time step; a recurrent (back) edge delivers its source's value of the
previous time step. What a back edge delivers at a sample's first step is decided here too
(:func:`step0_values`), by the discretization's ``recurrent_step0``: ``"bias"`` (the default, the
literal reading of the graph) delivers the value its source has when every neuron and the input
are zero -- a recurrent Affine sees zero spikes and outputs its bias, as snnTorch's RLeaky /
RSynaptic compute -- and ``"none"`` delivers nothing (zeros). Several edges into one node are
summed, in the order of :func:`incoming` (forward edges first, in graph order, then back edges), so
that float sums are the same in every walk.

Two drivers share the hooks, as torch.fx's ``Interpreter`` subclasses override ``run_node``:

:class:`StepInterpreter`
    runs the program one time step at a time in execution order (the reference simulator);
:class:`SequenceInterpreter`
    evaluates nodes over whole sequences ``[N, T, *shape]`` on demand, memoized, from given values
    of the *leaves* (the input and the neuron layers: recorded by a backend, or set by the caller);
    used for the host-side outputs of the Lava backends and the emulator, the activity metrics, and
    the Loihi plan's connection matrices and biases.

Hooks: ``input(op)``, ``linear(op, x)``, ``neuron(op, x)``, ``output(op, x)``, ``combine(op, parts)``
and ``delay(value, lag)`` (how a value arrives ``lag`` steps late), plus ``leaf(op)`` in sequence
mode and ``lag(edge, dst)`` where an analysis moves a delay across a linear op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

#: time steps a recurrent (back) edge delays its source's value
BACK_EDGE_LAG = 1


@dataclass(frozen=True)
class Edge:
    """An edge into a node: ``src``'s value arrives ``lag`` time steps late (0 or BACK_EDGE_LAG)."""

    src: str
    lag: int = 0

    @property
    def recurrent(self) -> bool:
        return self.lag > 0


def incoming(program, name: str) -> List[Edge]:
    """The edges into ``name``, forward edges first (graph order), then back edges."""
    return [Edge(p, 0) for p in program.preds(name)] + [Edge(p, BACK_EDGE_LAG) for p in program.back_preds(name)]


def outgoing(program, name: str) -> List[Tuple[str, Edge]]:
    """``(destination, edge)`` for every edge leaving ``name``, in the graph's edge order."""
    return [
        (dst, Edge(name, BACK_EDGE_LAG if name in program.back_preds(dst) else 0)) for dst in program.topo.succs[name]
    ]


def sources_through_linear(program, name: str) -> Dict[Tuple[str, int], List[Tuple[str, ...]]]:
    """``{(source, lag): [paths]}``: the neuron or input nodes that feed ``name`` through linear ops
    only, each with the total delay of the path and the linear ops on it (source side first)."""
    out: Dict[Tuple[str, int], List[Tuple[str, ...]]] = {}

    def walk(node, lag, path, depth=0):
        if depth > 200:  # pragma: no cover - lowering guarantees a neuron on every cycle
            from toolchain.errors import NirDeployError

            raise NirDeployError(f"the linear ops in front of {name!r} form a cycle without a neuron")
        for e in incoming(program, node):
            kind = program.ops[e.src].kind
            if kind in ("neuron", "input"):
                out.setdefault((e.src, lag + e.lag), []).append(tuple(reversed(path)))
            elif kind == "linear":
                walk(e.src, lag + e.lag, path + [e.src], depth + 1)

    walk(name, 0, [])
    return out


def step0_values(program) -> Dict[str, torch.Tensor]:
    """``{back-edge source: value [1, *shape]}`` that its back edges deliver at step 0, where nonzero.

    With ``recurrent_step0 == "bias"`` the source's value on zero leaves (neurons and input zero,
    linear ops with their biases; a constant arrives unchanged through further back edges, so it
    is the same at every step); with ``"none"``: nothing (an empty dict: zeros everywhere).
    """
    cached = getattr(program, "_step0_values", None)
    if cached is not None:
        return cached
    out: Dict[str, torch.Tensor] = {}
    if getattr(program.disc, "recurrent_step0", "bias") == "bias":
        walk = ConstantValues(program)
        with torch.no_grad():
            for src in sorted({e.src for k in program.order for e in incoming(program, k) if e.recurrent}):
                if program.ops[src].kind != "linear":
                    continue  # a neuron's (or the input's) value before the first step is zero
                v = walk.value(src)
                if v is not None and bool(torch.any(v != 0)):
                    out[src] = v
    program._step0_values = out
    return out


def add_all(parts: Iterable[Any]):
    """The sum of ``parts`` in their order (None for none), the one summation order of the walks."""
    acc = None
    for p in parts:
        acc = p if acc is None else acc + p
    return acc


class Interpreter:
    """Hooks shared by both drivers; ``run_node`` dispatches on the op's kind."""

    def __init__(self, program):
        self.program = program
        self.ops = program.ops

    # ------------------------------------------------------------------ hooks
    def input(self, op):
        raise NotImplementedError

    def linear(self, op, x):
        return op.fn(x)

    def neuron(self, op, x):
        raise NotImplementedError

    def output(self, op, x):
        return x

    def combine(self, op, parts: List[Any]):
        """The value entering ``op``: the sum of its incoming values (None if any is unknown)."""
        if any(p is None for p in parts):
            return None
        return add_all(parts)

    def delay(self, value, lag: int, src: Optional[str] = None):
        """``value`` (of node ``src``) as it arrives ``lag`` steps late; before the first step a back
        edge delivers ``step0_values(program).get(src)`` (None: zeros)."""
        raise NotImplementedError

    def lag(self, edge: Edge, dst: str) -> int:
        """The delay applied on ``edge`` into ``dst`` (default: the edge's own)."""
        return edge.lag

    # ------------------------------------------------------------------ dispatch
    def run_node(self, op, x):
        if op.kind == "linear":
            return None if x is None else self.linear(op, x)
        if op.kind == "neuron":
            return self.neuron(op, x)
        if op.kind == "output":
            return self.output(op, x)
        return self.input(op)


class StepInterpreter(Interpreter):
    """Runs the program step by step: ``run(T)`` calls ``begin_step(t)``, every node in execution
    order, then ``end_step(t, values)``; back edges read the previous step's values."""

    def zeros_like_output(self, op):
        raise NotImplementedError

    def begin_step(self, t: int) -> None:
        self.t = t

    def end_step(self, t: int, values: Dict[str, Any]) -> None:
        pass

    def run(self, n_steps: int) -> None:
        prog = self.program
        back = {e.src for k in prog.order for e in incoming(prog, k) if e.recurrent}
        init = step0_values(prog)
        prev = {}  # what the back edges deliver at the first step
        for k in back:
            z = self.zeros_like_output(self.ops[k])
            prev[k] = z + init[k].to(z.dtype) if k in init else z
        for t in range(n_steps):
            self.begin_step(t)
            vals: Dict[str, Any] = {}
            for name in prog.order:
                op = self.ops[name]
                if op.kind == "input":
                    vals[name] = self.input(op)
                    continue
                parts = [prev[e.src] if e.recurrent else vals[e.src] for e in incoming(prog, name)]
                vals[name] = self.run_node(op, self.combine(op, parts))
            for k in back:
                prev[k] = vals[k]
            self.end_step(t, vals)


class SequenceInterpreter(Interpreter):
    """Evaluates nodes over whole sequences, memoized; ``leaf(op)`` gives the input's and the neuron
    layers' values (None where unknown, which then propagates)."""

    def __init__(self, program):
        super().__init__(program)
        self.memo: Dict[str, Any] = {}

    def leaf(self, op):
        raise NotImplementedError

    def input(self, op):
        return self.leaf(op)

    def neuron(self, op, x):  # neurons are leaves in sequence mode
        return self.leaf(op)

    def incoming_values(self, name: str) -> List[Any]:
        out = []
        for e in incoming(self.program, name):
            v = self.value(e.src)
            lag = self.lag(e, name)
            out.append(v if (v is None or lag == 0) else self.delay(v, lag, e.src))
        return out

    def value(self, name: str):
        if name not in self.memo:
            self.memo[name] = None  # a cycle through linear ops only (no neuron on it) is unknown
            op = self.ops[name]
            if op.kind in ("input", "neuron"):
                self.memo[name] = self.leaf(op)
            else:
                self.memo[name] = self.run_node(op, self.combine(op, self.incoming_values(name)))
        return self.memo[name]


def shift_steps(x: torch.Tensor, lag: int, init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[N, T, ...] -> the value ``lag`` steps earlier (``init`` [1, ...], or zeros, before the first step)."""
    if lag == 0:
        return x
    out = torch.zeros_like(x)
    if lag < x.shape[1]:
        out[:, lag:] = x[:, :-lag]
    if init is not None:
        out[:, : min(lag, x.shape[1])] += init.to(x.dtype).reshape((1, 1) + tuple(x.shape[2:]))
    return out


def apply_per_step(fn, x: torch.Tensor) -> torch.Tensor:
    """A batch function over [N, T, *shape] (N x T rows)."""
    N, T = x.shape[:2]
    y = fn(x.reshape((N * T,) + tuple(x.shape[2:])))
    return y.reshape((N, T) + tuple(y.shape[1:]))


class SequenceValues(SequenceInterpreter):
    """Sequence mode on tensors [N, T, *shape]: linear ops run per step, delays shift along T."""

    def __init__(self, program, leaves: Dict[str, Optional[torch.Tensor]]):
        super().__init__(program)
        self.leaves = leaves

    def leaf(self, op):
        return self.leaves.get(op.name)

    def linear(self, op, x):
        return apply_per_step(op.fn, x)

    def delay(self, value, lag, src=None):
        return shift_steps(value, lag, step0_values(self.program).get(src))


class ConstantValues(SequenceInterpreter):
    """The constant part of every node's value: linear ops with their biases on zero leaves, a
    constant arriving unchanged through a back edge."""

    def leaf(self, op):
        return torch.zeros((1,) + tuple(op.out_shape), dtype=torch.float64)

    def delay(self, value, lag, src=None):
        return value
