"""Fold BatchNorm into the preceding Linear/Affine/Conv node.

NIR 1.0 has no BatchNorm node. The exporter maps ``nn.BatchNorm1d/2d`` (in eval mode, i.e.
with its running statistics) to a :class:`BatchNorm` placeholder; this pass removes every
placeholder by rescaling the weights and bias of the node right before it::

    y = s * (W x + b - mean) + beta,   s = gamma / sqrt(var + eps)
      = (s W) x + (s (b - mean) + beta)

The preceding node must be a Linear/Affine/Conv1d/Conv2d whose only consumer is the
BatchNorm; anything else is refused with a message naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import nir

from toolchain.errors import NirDeployError
from toolchain.ir import graph_metadata, make_graph, node_type
from toolchain.passes.registry import register_pass


@dataclass(eq=False)
class BatchNorm(nir.NIRNode):
    """Per-channel affine y = scale * x + shift (channel = first non-batch dim). Export-time only."""

    scale: np.ndarray
    shift: np.ndarray

    def __post_init__(self):
        self.input_type = {"input": None}
        self.output_type = {"output": None}


def batchnorm_node(module) -> BatchNorm:
    """Placeholder for an ``nn.BatchNorm1d/2d`` module (uses running statistics, as in eval mode)."""
    if module.running_mean is None or module.running_var is None:
        raise NirDeployError(
            f"{type(module).__name__} without running statistics (track_running_stats=False) cannot be folded"
        )
    mean = module.running_mean.detach().double().numpy()
    var = module.running_var.detach().double().numpy()
    gamma = module.weight.detach().double().numpy() if module.weight is not None else np.ones_like(mean)
    beta = module.bias.detach().double().numpy() if module.bias is not None else np.zeros_like(mean)
    s = gamma / np.sqrt(var + module.eps)
    return BatchNorm(scale=s, shift=beta - s * mean)


@register_pass("fold_batchnorm", ensures=("no_batchnorm",))
def fold_batchnorm(graph):
    """A new graph without BatchNorm placeholders (see module docstring)."""
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    for name in [k for k, n in graph.nodes.items() if isinstance(n, BatchNorm)]:
        bn = nodes[name]
        ins = [a for a, b in edges if b == name]
        if len(ins) != 1:
            raise NirDeployError(f"BatchNorm {name!r} has {len(ins)} inputs; it can only be folded after one layer")
        prev_name = ins[0]
        prev = nodes[prev_name]
        t = node_type(prev)
        if t not in ("Affine", "Linear", "Conv1d", "Conv2d"):
            raise NirDeployError(
                f"BatchNorm {name!r} follows {prev_name!r} ({t}); nirdeploy folds BatchNorm only into a "
                "directly preceding Linear or Conv layer"
            )
        consumers = [b for a, b in edges if a == prev_name]
        if consumers != [name]:
            raise NirDeployError(
                f"BatchNorm {name!r} cannot be folded: {prev_name!r} also feeds {', '.join(c for c in consumers if c != name)}"
            )
        W = np.asarray(prev.weight, dtype=np.float64)
        if W.shape[0] != bn.scale.shape[0]:
            raise NirDeployError(
                f"shape mismatch: BatchNorm {name!r} has {bn.scale.shape[0]} channels but {prev_name!r} "
                f"produces {W.shape[0]}"
            )
        bias = getattr(prev, "bias", None) if t != "Linear" else None
        b = np.asarray(0.0 if bias is None else bias, dtype=np.float64)
        b = np.broadcast_to(b, (W.shape[0],))
        s = bn.scale.reshape((-1,) + (1,) * (W.ndim - 1))
        W2 = (W * s).astype(np.asarray(prev.weight).dtype)
        b2 = (bn.scale * b + bn.shift).astype(np.float32 if W2.dtype == np.float32 else np.float64)
        if t in ("Affine", "Linear"):
            new = nir.Affine(weight=W2, bias=b2)
        else:
            cls = nir.Conv1d if t == "Conv1d" else nir.Conv2d
            new = cls(
                input_shape=prev.input_shape,
                weight=W2,
                stride=prev.stride,
                padding=prev.padding,
                dilation=prev.dilation,
                groups=prev.groups,
                bias=b2,
            )
        nodes[prev_name] = new
        outs = [b_ for a, b_ in edges if a == name]
        edges = [(a, b_) for a, b_ in edges if a != name and b_ != name]
        edges += [(prev_name, o) for o in outs]
        del nodes[name]
    return make_graph(nodes, edges, graph_metadata(graph))
