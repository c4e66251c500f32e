"""The IR layer: NIR graphs as nirdeploy reads, writes, checks and orders them.

``toolchain.ir.graph``     read / write / build graphs (``load_graph``, ``save_graph``, ``make_graph``)
``toolchain.ir.metadata``  the discretization a graph carries (``Discretization``, ``discretization_of``)
``toolchain.ir.topology``  execution order and recurrent back edges (``topology``)
``toolchain.ir.nodes``     what each node type means (``linear_fns``, padding, ``node_type``)
``toolchain.ir.shapes``    shape inference (``infer_shapes``)
"""

from toolchain.ir.graph import flatten_subgraphs, load_graph, make_graph, save_graph
from toolchain.ir.metadata import (
    CONVENTIONS,
    NEURON_TYPES,
    READOUTS,
    RESETS,
    SCHEMES,
    V_INITS,
    Discretization,
    discretization_of,
    graph_metadata,
)
from toolchain.ir.nodes import LINEAR_TYPES, POOL_TYPES, SUPPORTED_TYPES, linear_fns, node_kind, node_type
from toolchain.ir.shapes import infer_shapes
from toolchain.ir.topology import Topology, topology

__all__ = [
    "CONVENTIONS", "NEURON_TYPES", "READOUTS", "RESETS", "SCHEMES", "V_INITS", "LINEAR_TYPES", "POOL_TYPES",
    "SUPPORTED_TYPES", "Discretization", "Topology", "discretization_of", "flatten_subgraphs", "graph_metadata",
    "infer_shapes", "linear_fns", "load_graph", "make_graph", "node_kind", "node_type", "save_graph", "topology",
]
