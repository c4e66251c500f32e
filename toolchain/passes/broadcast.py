"""Expand neuron parameters to one value per neuron, and record shapes in the nodes.

Exporters know a layer's shape only after shape inference; NIR's convention is that neuron
parameters have the layer's shape and that Conv nodes know their input shape. This pass
makes an exported graph self-describing for other NIR tools.
"""

from __future__ import annotations

import copy

import numpy as np

from toolchain.graph import NEURON_TYPES, graph_metadata, make_graph, node_type

_PARAMS = ("tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")


def broadcast_params(graph, program):
    """A new graph whose neuron parameters have the shape of their layer (from ``program``)."""
    nodes = {}
    for name, node in graph.nodes.items():
        t = node_type(node)
        node = copy.copy(node)
        op = program.ops.get(name)
        if op is not None and t in NEURON_TYPES:
            shape = op.in_shape
            for p in _PARAMS:
                if hasattr(node, p) and getattr(node, p) is not None:
                    val = np.asarray(getattr(node, p))
                    setattr(node, p, np.broadcast_to(val, shape).astype(val.dtype if val.dtype.kind == "f" else np.float64).copy())
            node.input_type = {"input": np.array(shape)}
            node.output_type = {"output": np.array(shape)}
        elif op is not None and t in ("Conv1d", "Conv2d"):
            node.input_shape = tuple(int(d) for d in op.in_shape[1:])
            node.input_type = {"input": np.array(op.in_shape)}
            node.output_type = {"output": np.array(op.out_shape)}
        elif op is not None and t != "Input":
            node.input_type = {"input": np.array(op.in_shape)}
            node.output_type = {"output": np.array(op.out_shape)}
        nodes[name] = node
    return make_graph(nodes, graph.edges, graph_metadata(graph))
