"""What each NIR node type means to nirdeploy: its kind, its linear map and its conv geometry.

The one place where NIR's linear nodes (Affine, Linear, Conv, pooling, Flatten, Scale) are turned
into torch functions on a batch and where padding, stride and dilation are parsed; shape
inference (``toolchain.ir.shapes``), lowering, passes and the Loihi layer plan all use it.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.ir.metadata import NEURON_TYPES

LINEAR_TYPES = ("Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale")
POOL_TYPES = ("SumPool2d", "AvgPool2d")
SUPPORTED_TYPES = ("Input", "Output") + LINEAR_TYPES + NEURON_TYPES


def node_type(node) -> str:
    """The NIR type name of a node (``"Affine"``, ``"CubaLIF"``, ...)."""
    return type(node).__name__


def node_kind(node) -> str:
    """``"input"``, ``"output"``, ``"linear"`` or ``"neuron"``; unsupported types raise."""
    t = node_type(node)
    if t == "Input":
        return "input"
    if t == "Output":
        return "output"
    if t in LINEAR_TYPES:
        return "linear"
    if t in NEURON_TYPES:
        return "neuron"
    raise UnsupportedNodeError(unsupported_msg("?", t))


def unsupported_msg(name: str, t: str) -> str:
    return (
        f"node {name!r} has type {t}, which nirdeploy does not support "
        f"(supported: {', '.join(SUPPORTED_TYPES)})"
    )


def scalar_int(v) -> int:
    """A NIR integer parameter stored as a scalar or a 1-element array."""
    return int(np.asarray(v).reshape(-1)[0])


def pair(v, n: int = 2) -> Tuple[int, ...]:
    """A NIR size parameter (scalar or per-axis) as an ``n``-tuple of ints."""
    a = np.asarray(v).reshape(-1).astype(int).tolist()
    if len(a) == 1:
        a = a * n
    return tuple(a)


def conv_padding(node, name: str = "?"):
    """A conv node's padding: ``"same"``, ``"valid"`` or an explicit per-axis tuple."""
    nd = 1 if node_type(node) == "Conv1d" else 2
    pad = node.padding
    if isinstance(pad, (bytes, str)):
        pad = pad.decode() if isinstance(pad, bytes) else pad
        if pad not in ("same", "valid"):
            raise NirDeployError(f"node {name!r} ({node_type(node)}): padding {pad!r} is neither 'same' nor 'valid'")
        return pad
    return pair(pad, nd)


def explicit_padding(node) -> Optional[Tuple[int, ...]]:
    """A conv node's zero padding per axis, with ``"same"`` resolved; None where "same" would be
    asymmetric (an even effective kernel), which an explicit symmetric padding cannot express."""
    nd = 1 if node_type(node) == "Conv1d" else 2
    pad = conv_padding(node)
    if pad == "valid":
        return (0,) * nd
    if pad == "same":
        dil = pair(node.dilation, nd)
        k = np.asarray(node.weight).shape[2:]
        eff = [dil[i] * (int(k[i]) - 1) for i in range(nd)]
        if any(e % 2 for e in eff):
            return None
        return tuple(e // 2 for e in eff)
    return pad


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def linear_fns(node, name: str):
    """(fn, fn_without_bias) for a linear NIR node; both map [batch, *in] -> [batch, *out]."""
    t = node_type(node)
    if t == "Affine" or t == "Linear":
        W = _tensor(node.weight)
        if W.ndim != 2:
            raise NirDeployError(f"node {name!r} ({t}) has a weight of {W.ndim} dimensions; expected 2")
        b = _tensor(node.bias) if t == "Affine" else None

        def fn(x, W=W, b=b):
            return F.linear(x, W.to(x.dtype), None if b is None else b.to(x.dtype))

        def fn0(x, W=W):
            return F.linear(x, W.to(x.dtype))

        return fn, fn0
    if t in ("Conv1d", "Conv2d"):
        nd = 1 if t == "Conv1d" else 2
        W = _tensor(node.weight)
        b = _tensor(node.bias) if node.bias is not None else None
        if b is not None and b.ndim == 0:
            b = b.expand(W.shape[0]).clone()
        stride = pair(node.stride, nd)
        dilation = pair(node.dilation, nd)
        groups = scalar_int(node.groups)
        pad = conv_padding(node, name)
        conv = F.conv1d if nd == 1 else F.conv2d

        def fn(x, W=W, b=b):
            return conv(x, W.to(x.dtype), None if b is None else b.to(x.dtype), stride, pad, dilation, groups)

        def fn0(x, W=W):
            return conv(x, W.to(x.dtype), None, stride, pad, dilation, groups)

        return fn, fn0
    if t in POOL_TYPES:
        k = pair(node.kernel_size)
        s = pair(node.stride)
        p = pair(node.padding)
        if t == "SumPool2d":

            def fn(x):
                return F.avg_pool2d(x, k, s, p, divisor_override=1)

        else:

            def fn(x):
                return F.avg_pool2d(x, k, s, p, count_include_pad=True)

        return fn, fn
    if t == "Flatten":
        start = scalar_int(node.start_dim)
        end = scalar_int(node.end_dim)

        def fn(x):
            # NIR's dims exclude the batch dimension
            return torch.flatten(x, start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)

        return fn, fn
    if t == "Scale":
        sc = _tensor(node.scale)

        def fn(x, sc=sc):
            return x * sc.to(x.dtype)

        return fn, fn
    raise UnsupportedNodeError(unsupported_msg(name, t))


def io_shape(node, key: str) -> Tuple[int, ...]:
    """The shape an Input/Output node declares in ``input_type`` / ``output_type`` (or ())."""
    types = getattr(node, key, None) or {}
    for v in types.values():
        if v is not None:
            return tuple(int(d) for d in np.asarray(v).reshape(-1))
    return ()
