"""The pass registry: graph passes by name, with the conditions they need and ensure, (the
pipelines that run them are in ``toolchain/passes/pipelines.py``).

A pass is a pure function ``graph, **options -> new graph``. ``requires`` names conditions the
input graph must meet and ``ensures`` conditions the result meets (torch.fx's pass-infra
``requires`` / ``ensures``); ``run_pass`` checks both around every pass, so a pipeline that lists
its passes in the wrong order fails with the pass and the condition named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from toolchain.errors import NirDeployError
from toolchain.ir.metadata import NEURON_TYPES, graph_metadata
from toolchain.ir.nodes import POOL_TYPES, node_type


# --------------------------------------------------------------------------- conditions
def _no_batchnorm(graph) -> bool:
    return not any(node_type(n) == "BatchNorm" for n in graph.nodes.values())


def _has_timestep(graph) -> bool:
    return "dt" in graph_metadata(graph)


def _params_per_neuron(graph) -> bool:
    for n in graph.nodes.values():
        if node_type(n) in NEURON_TYPES:
            shape = tuple(np.asarray((n.input_type or {}).get("input", ())).reshape(-1).astype(int))
            if not shape:
                return False
    return True


def _pools_folded(graph) -> bool:
    """No pooling left that the pass could fold (a pool feeding a Conv2d or a Flatten)."""
    succs = {k: [b for a, b in graph.edges if a == k] for k in graph.nodes}
    for k, n in graph.nodes.items():
        if node_type(n) in POOL_TYPES and len(succs[k]) == 1:
            if node_type(graph.nodes[succs[k][0]]) in ("Conv2d", "Flatten"):
                return False
    return True


#: condition name -> check(graph) -> bool
CONDITIONS: Dict[str, Callable[[object], bool]] = {
    "no_batchnorm": _no_batchnorm,
    "has_timestep": _has_timestep,
    "params_per_neuron": _params_per_neuron,
    "pools_folded": _pools_folded,
}


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable
    requires: Tuple[str, ...] = ()
    ensures: Tuple[str, ...] = ()
    #: False for passes that may leave what they target where it cannot be done exactly
    #: (fold_pooling keeps a pool it cannot fold exactly): their ``ensures`` are not checked
    strict: bool = True


PASSES: Dict[str, Pass] = {}


def register_pass(name: str, requires: Sequence[str] = (), ensures: Sequence[str] = (), strict: bool = True):
    """Decorator: register ``fn`` as the pass ``name``."""
    for c in tuple(requires) + tuple(ensures):
        if c not in CONDITIONS:
            raise ValueError(f"pass {name!r}: unknown condition {c!r}")

    def deco(fn):
        if name in PASSES:
            raise ValueError(f"pass {name!r} is registered twice")
        PASSES[name] = Pass(name, fn, tuple(requires), tuple(ensures), strict)
        return fn

    return deco


def check_conditions(graph, p: Pass, conditions, when: str) -> None:
    """Raise naming the pass and the first condition ``graph`` does not meet."""
    for c in conditions:
        if not CONDITIONS[c](graph):
            raise NirDeployError(f"pass {p.name!r}: the graph {when} does not meet {c!r}")
