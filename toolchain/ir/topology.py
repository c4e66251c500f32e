"""Execution order of a NIR graph: forward edges in topological order, recurrent back edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

from toolchain.errors import NirDeployError


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

