"""Shape inference: the input and output shape of every node of a NIR graph.

Linear nodes are run on zeros with their torch function (``toolchain.ir.nodes.linear_fns``);
neurons keep their input's shape. nir 1.0.8's own type inference gets non-square kernels wrong
(docs/stack.md), so nirdeploy uses this everywhere instead.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch

from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.ir.metadata import NEURON_TYPES
from toolchain.ir.nodes import LINEAR_TYPES, io_shape, linear_fns, node_type, unsupported_msg
from toolchain.ir.topology import Topology, topology

Shape = Tuple[int, ...]


def infer_shapes(graph, topo: Topology = None) -> Dict[str, Tuple[Shape, Shape]]:
    """``{node: (in_shape, out_shape)}`` for every node, in execution order.

    Raises :class:`NirDeployError` naming the node where shapes do not fit (edges into one node
    with different shapes, a layer that cannot take its input, a recurrent edge of the wrong
    shape, an Output declaring another size)."""
    topo = topo or topology(graph)
    shapes: Dict[str, Tuple[Shape, Shape]] = {}
    for name in topo.order:
        node = graph.nodes[name]
        t = node_type(node)
        if t == "Input":
            shape = io_shape(node, "input_type") or io_shape(node, "output_type")
            if not shape:
                raise NirDeployError(f"Input node {name!r} does not declare its shape")
            shapes[name] = (shape, shape)
            continue
        in_shapes = {p: shapes[p][1] for p in topo.preds[name]}
        if not in_shapes:
            raise NirDeployError(f"node {name!r} has no forward input")
        distinct = set(in_shapes.values())
        if len(distinct) > 1:
            desc = ", ".join(f"{s} from {p!r}" for p, s in in_shapes.items())
            raise NirDeployError(f"shape mismatch: the edges into {name!r} carry different shapes: {desc}")
        in_shape = distinct.pop()
        if t == "Output":
            declared = io_shape(node, "input_type")
            if declared and int(np.prod(declared)) != int(np.prod(in_shape)):
                raise NirDeployError(
                    f"shape mismatch: Output {name!r} declares shape {declared} but receives {in_shape}"
                )
            shapes[name] = (in_shape, in_shape)
        elif t in NEURON_TYPES:
            shapes[name] = (in_shape, in_shape)
        elif t in LINEAR_TYPES:
            fn, _ = linear_fns(node, name)
            try:
                with torch.no_grad():
                    out = fn(torch.zeros((1,) + in_shape, dtype=torch.float64))
            except (RuntimeError, ValueError, IndexError) as e:
                msg = str(e).splitlines()[0]
                raise NirDeployError(
                    f"shape mismatch: node {name!r} ({t}) cannot take an input of shape {in_shape}: {msg}"
                ) from None
            shapes[name] = (in_shape, tuple(out.shape[1:]))
        else:
            raise UnsupportedNodeError(unsupported_msg(name, t))
    for name in topo.order:
        for p in topo.back_preds[name]:
            if shapes[p][1] != shapes[name][0]:
                raise NirDeployError(
                    f"shape mismatch: recurrent edge {p!r} -> {name!r} carries {shapes[p][1]}, "
                    f"but {name!r} takes {shapes[name][0]}"
                )
    return shapes


def output_shapes(graph) -> Dict[str, Shape]:
    """``{node: out_shape}``."""
    return {k: v[1] for k, v in infer_shapes(graph).items()}
