"""Expand neuron parameters to one value per neuron, and record shapes in the nodes.

Exporters know a layer's shape only after shape inference; NIR's convention is that neuron
parameters have the layer's shape and that Conv nodes know their input shape. This pass
makes an exported graph self-describing for other NIR tools.
"""

from __future__ import annotations

import copy

import numpy as np

from toolchain.ir.graph import make_graph
from toolchain.ir.metadata import NEURON_TYPES, graph_metadata
from toolchain.ir.nodes import node_type
from toolchain.ir.shapes import infer_shapes
from toolchain.passes.registry import register_pass

_PARAMS = ("tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")


@register_pass("broadcast_params", requires=("no_batchnorm",), ensures=("params_per_neuron",))
def broadcast_params(graph):
    """A new graph whose neuron parameters have the shape of their layer and whose nodes (Output
    included) declare the shapes that reach them (``toolchain.ir.shapes``)."""
    import nir

    shapes = infer_shapes(graph)
    nodes = {}
    for name, node in graph.nodes.items():
        t = node_type(node)
        in_shape, out_shape = shapes[name]
        node = nir.Output(output_type={"output": np.array(in_shape)}) if t == "Output" else copy.copy(node)
        if t in NEURON_TYPES:
            for p in _PARAMS:
                if hasattr(node, p) and getattr(node, p) is not None:
                    val = np.asarray(getattr(node, p))
                    dtype = val.dtype if val.dtype.kind == "f" else np.float64
                    setattr(node, p, np.broadcast_to(val, in_shape).astype(dtype).copy())
        elif t in ("Conv1d", "Conv2d"):
            node.input_shape = tuple(int(d) for d in in_shape[1:])
        if t != "Input":
            node.input_type = {"input": np.array(in_shape)}
            node.output_type = {"output": np.array(out_shape)}
        nodes[name] = node
    return make_graph(nodes, graph.edges, graph_metadata(graph))
