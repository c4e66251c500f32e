"""Lowering a NIR graph to an executable program: an ordered list of ops with known shapes.

Every backend starts here: linear nodes (Affine, Linear, Conv, pooling, Flatten, Scale) become
torch functions on a batch, neuron nodes become discrete SSMs (``toolchain.discretize``) at the
chosen discretization, and shapes are inferred by running the torch functions on zeros
(nir 1.0.8's own type inference gets non-square kernels wrong, see docs/stack.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .discretize import NeuronSSM, neuron_ssm
from .errors import NirDeployError, UnsupportedNodeError
from .graph import NEURON_TYPES, Discretization, Topology, graph_metadata, node_type, topology

LINEAR_TYPES = ("Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale")
SUPPORTED_TYPES = ("Input", "Output") + LINEAR_TYPES + NEURON_TYPES


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


# --------------------------------------------------------------------------- linear nodes
def _pair(v, n=2):
    a = np.asarray(v).reshape(-1).astype(int).tolist()
    if len(a) == 1:
        a = a * n
    return tuple(a)


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
        stride = _pair(node.stride, nd)
        dilation = _pair(node.dilation, nd)
        groups = int(np.asarray(node.groups).reshape(-1)[0])
        pad = node.padding
        if isinstance(pad, (bytes, str)):
            pad = pad.decode() if isinstance(pad, bytes) else pad
            if pad not in ("same", "valid"):
                raise NirDeployError(f"node {name!r} ({t}): padding {pad!r} is neither 'same' nor 'valid'")
        else:
            pad = _pair(pad, nd)
        conv = F.conv1d if nd == 1 else F.conv2d

        def fn(x, W=W, b=b):
            return conv(x, W.to(x.dtype), None if b is None else b.to(x.dtype), stride, pad, dilation, groups)

        def fn0(x, W=W):
            return conv(x, W.to(x.dtype), None, stride, pad, dilation, groups)

        return fn, fn0
    if t in ("SumPool2d", "AvgPool2d"):
        k = _pair(node.kernel_size)
        s = _pair(node.stride)
        p = _pair(node.padding)
        if t == "SumPool2d":

            def fn(x):
                return F.avg_pool2d(x, k, s, p, divisor_override=1)

        else:

            def fn(x):
                return F.avg_pool2d(x, k, s, p, count_include_pad=True)

        return fn, fn
    if t == "Flatten":
        start = int(np.asarray(node.start_dim).reshape(-1)[0])
        end = int(np.asarray(node.end_dim).reshape(-1)[0])

        def fn(x):
            # NIR's dims exclude the batch dimension
            return torch.flatten(x, start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)

        return fn, fn
    if t == "Scale":
        sc = _tensor(node.scale)

        def fn(x, sc=sc):
            return x * sc.to(x.dtype)

        return fn, fn
    raise UnsupportedNodeError(_unsupported_msg(name, t))


def _unsupported_msg(name, t):
    return (
        f"node {name!r} has type {t}, which nirdeploy does not support "
        f"(supported: {', '.join(SUPPORTED_TYPES)})"
    )


def _io_shape(node, key: str) -> Tuple[int, ...]:
    types = getattr(node, key, None) or {}
    for v in types.values():
        if v is not None:
            return tuple(int(d) for d in np.asarray(v).reshape(-1))
    return ()


# --------------------------------------------------------------------------- lowering
def lower(graph, disc: Discretization) -> Program:
    """Check ``graph`` and lower it to a :class:`Program` at discretization ``disc``."""
    topo = topology(graph)
    if len(topo.inputs) != 1:
        raise NirDeployError(f"the graph has {len(topo.inputs)} Input nodes; nirdeploy supports one")
    ops: Dict[str, Op] = {}
    overrides = graph_metadata(graph).get("ssm") or {}
    for name in topo.order:
        node = graph.nodes[name]
        t = node_type(node)
        if t == "Input":
            shape = _io_shape(node, "input_type") or _io_shape(node, "output_type")
            if not shape:
                raise NirDeployError(f"Input node {name!r} does not declare its shape")
            ops[name] = Op(name, "input", t, node, shape, shape)
            continue
        in_shapes = {p: ops[p].out_shape for p in topo.preds[name]}
        if not in_shapes:
            raise NirDeployError(f"node {name!r} has no forward input")
        shapes = set(in_shapes.values())
        if len(shapes) > 1:
            desc = ", ".join(f"{s} from {p!r}" for p, s in in_shapes.items())
            raise NirDeployError(f"shape mismatch: the edges into {name!r} carry different shapes: {desc}")
        in_shape = shapes.pop()
        if t == "Output":
            ops[name] = Op(name, "output", t, node, in_shape, in_shape)
            declared = _io_shape(node, "input_type")
            if declared and int(np.prod(declared)) != int(np.prod(in_shape)):
                raise NirDeployError(
                    f"shape mismatch: Output {name!r} declares shape {declared} but receives {in_shape}"
                )
        elif t in NEURON_TYPES:
            ssm = neuron_ssm(node, in_shape, name, disc, override=overrides.get(name))
            ops[name] = Op(name, "neuron", t, node, in_shape, in_shape, ssm=ssm)
        elif t in LINEAR_TYPES:
            fn, fn0 = linear_fns(node, name)
            try:
                with torch.no_grad():
                    out = fn(torch.zeros((1,) + in_shape, dtype=torch.float64))
            except (RuntimeError, ValueError, IndexError) as e:
                msg = str(e).splitlines()[0]
                raise NirDeployError(
                    f"shape mismatch: node {name!r} ({t}) cannot take an input of shape {in_shape}: {msg}"
                ) from None
            ops[name] = Op(name, "linear", t, node, in_shape, tuple(out.shape[1:]), fn=fn, fn_nobias=fn0)
        else:
            raise UnsupportedNodeError(_unsupported_msg(name, t))
    for name in topo.order:
        for p in topo.back_preds[name]:
            if ops[p].out_shape != ops[name].in_shape:
                raise NirDeployError(
                    f"shape mismatch: recurrent edge {p!r} -> {name!r} carries {ops[p].out_shape}, "
                    f"but {name!r} takes {ops[name].in_shape}"
                )
    return Program(
        graph=graph,
        disc=disc,
        topo=topo,
        ops=ops,
        input_name=topo.inputs[0],
        output_names=topo.outputs,
        metadata=graph_metadata(graph),
    )
