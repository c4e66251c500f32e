"""Lowering a NIR graph to an executable program: an ordered list of ops with known shapes.

Every backend starts here: linear nodes (Affine, Linear, Conv, pooling, Flatten, Scale) become
torch functions on a batch, neuron nodes become discrete SSMs (``toolchain.dynamics.discretize``) at the
chosen discretization, and shapes are inferred by running the torch functions on zeros
(``toolchain.ir.shapes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from toolchain.dynamics.discretize import NeuronSSM, neuron_ssm
from toolchain.errors import NirDeployError
from toolchain.ir.checker import check_graph
from toolchain.ir.metadata import Discretization, exact_node, graph_metadata
from toolchain.ir.nodes import linear_fns, node_kind, node_type
from toolchain.ir.shapes import infer_shapes
from toolchain.ir.topology import Topology, topology


@dataclass
class Op:
    name: str
    kind: str  # "input" | "output" | "linear" | "neuron"
    type: str  # NIR node type
    node: object
    in_shape: Tuple[int, ...] = ()
    out_shape: Tuple[int, ...] = ()
    fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None  # linear ops, with bias
    fn_nobias: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    ssm: Optional[NeuronSSM] = None


@dataclass
class Program:
    graph: object
    disc: Discretization
    topo: Topology
    ops: Dict[str, Op]
    input_name: str
    output_names: List[str]
    metadata: Dict[str, object] = field(default_factory=dict)

    @property
    def order(self) -> List[str]:
        return self.topo.order

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return self.ops[self.input_name].out_shape

    def neurons(self) -> List[Op]:
        return [self.ops[k] for k in self.order if self.ops[k].kind == "neuron"]

    def preds(self, name: str) -> List[str]:
        return self.topo.preds[name]

    def back_preds(self, name: str) -> List[str]:
        return self.topo.back_preds[name]


# --------------------------------------------------------------------------- lowering
def lower(graph, disc: Discretization) -> Program:
    """Check ``graph`` and lower it to a :class:`Program` at discretization ``disc``."""
    check_graph(graph)
    topo = topology(graph)
    if len(topo.inputs) != 1:
        raise NirDeployError(f"the graph has {len(topo.inputs)} Input nodes; nirdeploy supports one")
    shapes = infer_shapes(graph, topo)
    ops: Dict[str, Op] = {}
    meta = graph_metadata(graph)
    overrides = meta.get("ssm") or {}
    for name in topo.order:
        node = graph.nodes[name]
        t = node_type(node)
        kind = node_kind(node)
        in_shape, out_shape = shapes[name]
        op = Op(name, kind, t, node, in_shape, out_shape)
        if kind == "neuron":
            op.ssm = neuron_ssm(exact_node(meta, name, node), in_shape, name, disc, override=overrides.get(name))
        elif kind == "linear":
            op.fn, op.fn_nobias = linear_fns(node, name)
        ops[name] = op
    return Program(
        graph=graph,
        disc=disc,
        topo=topo,
        ops=ops,
        input_name=topo.inputs[0],
        output_names=topo.outputs,
        metadata=graph_metadata(graph),
    )
