"""Reading, writing and checking NIR graphs, and the discretization they carry.

NIR stores continuous-time parameters and no timestep. A graph written by nirdeploy carries in
``graph.metadata`` everything needed to recover the trained discrete model exactly::

    dt                        seconds per time step the model was trained at
    scheme                    "exact" (A = expm(Ac dt)) or "euler" (semi-implicit, current first)
    input_convention          "current" (a count is a current held for the bin) or
                              "impulse" (a count is a Dirac impulse: B = Bc)
    reset                     "value" (v <- v_reset, NIR's rule) or "subtract" (v <- v - v_th)
    v_init                    initial membrane potential: "zero", "v_leak" or "v_reset"
    node_conventions          per-node overrides of input_convention / v_init
    source_framework(_version) who trained it
    readout                   how outputs become a class: "sum", "max", "mean" or "last" over time

Graphs written elsewhere have none of this; the user must supply at least ``dt``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from .errors import NirDeployError

SCHEMES = ("exact", "euler")
CONVENTIONS = ("current", "impulse")
RESETS = ("value", "subtract")
V_INITS = ("zero", "v_leak", "v_reset")
READOUTS = ("sum", "max", "mean", "last")

NEURON_TYPES = ("LI", "LIF", "CubaLI", "CubaLIF", "IF", "I")


# --------------------------------------------------------------------------- metadata
def _py(v: Any) -> Any:
    """numpy scalars / bytes from HDF5 -> plain Python values."""
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _py(x) for k, x in v.items()}
    return v


def graph_metadata(graph) -> Dict[str, Any]:
    """The graph's metadata as a plain dict (nir leaves the ``dict`` class there when empty)."""
    meta = getattr(graph, "metadata", None)
    if not isinstance(meta, dict):
        return {}
    return _py(meta)


@dataclass(frozen=True)
class Discretization:
    """How a NIR graph's continuous-time neurons become discrete-time ones."""

    dt: float
    scheme: str = "exact"
    input_convention: str = "current"
    reset: str = "value"
    v_init: str = "zero"
    node_conventions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self):
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise NirDeployError(f"dt must be a positive number of seconds, got {self.dt!r}")
        _check_choice("scheme", self.scheme, SCHEMES)
        _check_choice("input convention", self.input_convention, CONVENTIONS)
        _check_choice("reset", self.reset, RESETS)
        _check_choice("v_init", self.v_init, V_INITS)
        for node, conv in self.node_conventions.items():
            if "input_convention" in conv:
                _check_choice(f"input convention of node {node!r}", conv["input_convention"], CONVENTIONS)
            if "v_init" in conv:
                _check_choice(f"v_init of node {node!r}", conv["v_init"], V_INITS)

    def convention(self, node: str) -> str:
        return self.node_conventions.get(node, {}).get("input_convention", self.input_convention)

    def initial_v(self, node: str) -> str:
        return self.node_conventions.get(node, {}).get("v_init", self.v_init)

    def replace(self, **kw) -> "Discretization":
        d = dict(
            dt=self.dt,
            scheme=self.scheme,
            input_convention=self.input_convention,
            reset=self.reset,
            v_init=self.v_init,
            node_conventions=copy.deepcopy(dict(self.node_conventions)),
        )
        d.update(kw)
        return Discretization(**d)

    def to_metadata(self) -> Dict[str, Any]:
        return {
            "dt": float(self.dt),
            "scheme": self.scheme,
            "input_convention": self.input_convention,
            "reset": self.reset,
            "v_init": self.v_init,
            "node_conventions": {k: dict(v) for k, v in self.node_conventions.items()},
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> "Discretization":
        meta = _py(dict(meta))
        return cls(
            dt=float(meta["dt"]),
            scheme=str(meta.get("scheme", "exact")),
            input_convention=str(meta.get("input_convention", "current")),
            reset=str(meta.get("reset", "value")),
            v_init=str(meta.get("v_init", "zero")),
            node_conventions={k: dict(v) for k, v in (meta.get("node_conventions") or {}).items()},
        )


def _check_choice(what: str, value: str, choices: Iterable[str]) -> None:
    if value not in choices:
        raise NirDeployError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def discretization_of(
    graph,
    dt: Optional[float] = None,
    scheme: Optional[str] = None,
    input_convention: Optional[str] = None,
    reset: Optional[str] = None,
) -> Discretization:
    """The discretization to simulate ``graph`` with.

    Taken from the graph's metadata; options given here override it. A graph without a
    ``dt`` in its metadata (written by another tool) needs ``dt`` from the caller.
    """
    meta = graph_metadata(graph)
    if "dt" not in meta and dt is None:
        raise NirDeployError(
            "this graph carries no timestep in its metadata (it was not written by nirdeploy); "
            "pass --dt SECONDS (and --scheme / --input-convention if not exact / current)"
        )
    base = Discretization.from_metadata(meta) if "dt" in meta else Discretization(dt=float(dt))
    kw = {}
    if dt is not None:
        kw["dt"] = float(dt)
    if scheme is not None:
        kw["scheme"] = scheme
    if input_convention is not None:
        kw["input_convention"] = input_convention
        kw["node_conventions"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "input_convention"}
            for k, v in base.node_conventions.items()
        }
    if reset is not None:
        kw["reset"] = reset
    return base.replace(**kw) if kw else base


# --------------------------------------------------------------------------- file I/O
def load_graph(path: str | os.PathLike):
    """Read a ``.nir`` file with a clear error for anything that is not a readable NIR graph."""
    import h5py
    import nir

    path = os.fspath(path)
    if not os.path.exists(path):
        raise NirDeployError(f"cannot read {path}: no such file")
    if os.path.isdir(path):
        raise NirDeployError(f"cannot read {path}: it is a directory, not a .nir file")
    if not h5py.is_hdf5(path):
        raise NirDeployError(f"{path} is not a NIR file (NIR files are HDF5; this one is not)")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NirDeployError(f"{path} is an HDF5 file but not a NIR graph (no 'node' group)")
        graph = nir.read(path, type_check=False)
    except NirDeployError:
        raise
    except ValueError as e:
        msg = str(e)
        if "Unknown unit type" in msg:
            raise NirDeployError(
                f"{path} contains a node type that nir {nir.version} cannot read ({msg.split(':', 1)[-1].strip()})"
            ) from None
        raise NirDeployError(f"{path} is not a valid NIR graph: {msg}") from None
    except (KeyError, OSError, TypeError) as e:
        raise NirDeployError(f"{path} is not a valid NIR graph: {e}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NirDeployError(f"{path} holds a single {type(graph).__name__} node, not a NIR graph")
    return flatten_subgraphs(graph)


def save_graph(graph, path: str | os.PathLike) -> None:
    import nir

    graph = copy.copy(graph)
    graph.metadata = graph_metadata(graph)
    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    nir.write(os.fspath(path), graph)


def make_graph(nodes: Dict[str, Any], edges: List[Tuple[str, str]], metadata: Optional[dict] = None):
    """A NIRGraph without nir's own type check (nirdeploy infers shapes itself)."""
    import nir

    return nir.NIRGraph(nodes=dict(nodes), edges=list(edges), metadata=dict(metadata or {}), type_check=False)


def flatten_subgraphs(graph):
    """Inline nested NIRGraph nodes (e.g. a recurrent cell exported as a subgraph).

    Node ``k`` of subgraph ``s`` becomes ``s.k``; edges into ``s`` go to the nodes its Input
    feeds and edges out of ``s`` leave from the nodes that feed its Output.
    """
    import nir

    if not any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()):
        return graph
    nodes: Dict[str, Any] = {}
    edges: List[Tuple[str, str]] = []
    entry: Dict[str, List[str]] = {}
    exit_: Dict[str, List[str]] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub = flatten_subgraphs(node)
            ins = [k for k, n in sub.nodes.items() if isinstance(n, nir.Input)]
            outs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Output)]
            entry[name] = [f"{name}.{b}" for a, b in sub.edges if a in ins]
            exit_[name] = [f"{name}.{a}" for a, b in sub.edges if b in outs]
            for k, n in sub.nodes.items():
                if k not in ins and k not in outs:
                    nodes[f"{name}.{k}"] = n
            for a, b in sub.edges:
                if a not in ins and b not in outs:
                    edges.append((f"{name}.{a}", f"{name}.{b}"))
        else:
            nodes[name] = node
    for a, b in graph.edges:
        srcs = exit_.get(a, [a])
        dsts = entry.get(b, [b])
        edges.extend((s, d) for s in srcs for d in dsts)
    return make_graph(nodes, edges, graph_metadata(graph))


# --------------------------------------------------------------------------- topology
@dataclass
class Topology:
    """Execution order of a (possibly recurrent) graph.

    ``order`` is a topological order of the graph without its back edges. A back edge
    (closing a cycle, e.g. the recurrent Linear of a recurrent cell) delivers the value its
    source had at the previous time step.
    """

    order: List[str]
    preds: Dict[str, List[str]]
    back_preds: Dict[str, List[str]]
    succs: Dict[str, List[str]]
    inputs: List[str]
    outputs: List[str]


def topology(graph) -> Topology:
    import nir

    names = list(graph.nodes)
    for a, b in graph.edges:
        for n in (a, b):
            if n not in graph.nodes:
                raise NirDeployError(f"edge ({a!r} -> {b!r}) names node {n!r}, which is not in the graph")
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if not inputs:
        raise NirDeployError("the graph has no Input node")
    if not outputs:
        raise NirDeployError("the graph has no Output node")
    succs: Dict[str, List[str]] = {k: [] for k in names}
    for a, b in graph.edges:
        if b not in succs[a]:
            succs[a].append(b)

    # iterative DFS from the inputs; an edge to a node on the stack is a back edge
    state = {k: 0 for k in names}  # 0 new, 1 on stack, 2 done
    back = set()
    for root in inputs:
        if state[root]:
            continue
        stack = [(root, iter(succs[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state[nxt] == 1:
                back.add((node, nxt))
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(succs[nxt])))
    unreachable = [k for k in names if state[k] == 0]
    if unreachable:
        raise NirDeployError(f"node(s) {', '.join(map(repr, unreachable))} cannot be reached from the graph's input")

    preds: Dict[str, List[str]] = {k: [] for k in names}
    back_preds: Dict[str, List[str]] = {k: [] for k in names}
    for a in names:
        for b in succs[a]:
            (back_preds if (a, b) in back else preds)[b].append(a)
    # Kahn's algorithm on forward edges, stable in the graph's own node order
    indeg = {k: len(preds[k]) for k in names}
    ready = [k for k in names if indeg[k] == 0]
    order: List[str] = []
    while ready:
        k = ready.pop(0)
        order.append(k)
        for b in succs[k]:
            if (k, b) in back:
                continue
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
    if len(order) != len(names):  # pragma: no cover - DFS removed all cycles
        raise NirDeployError("the graph has a cycle that could not be ordered")
    return Topology(order=order, preds=preds, back_preds=back_preds, succs=succs, inputs=inputs, outputs=outputs)


def node_type(node) -> str:
    return type(node).__name__
