"""Fold sum/average pooling into the linear layer that follows it.

lava-dl netx rejects pool layers (``lava/lib/dl/netx/hdf5.py``: ``create_pool`` raises
NotImplementedError), and a pooling layer is linear, so it can be merged into the next linear
layer. Two patterns are folded:

``pool -> Conv2d``
    One Conv2d on the pool's input. Per spatial axis, with pool kernel ``kp``, stride ``sp``,
    padding ``pp`` and conv kernel ``kc``, stride ``sc``, padding ``pc``, dilation ``dc``::

        stride  sp sc           kernel  dc sp (kc - 1) + kp          padding  pp + pc sp
        W'[o, i, dc sp a + u, dc sp b + v] += W[o, i, a, b] / d     (0 <= u, v < kp)

    with ``d`` = 1 (SumPool2d) or kp_y kp_x (AvgPool2d, zeros counted as in NIR). Exact when the
    conv's zero padding corresponds to pool windows that hold only padding (``kp <= sp`` and no
    leftover input rows or columns on a padded side); the pass checks the result numerically on a
    random input and leaves the pool in place when the fold is not exact.
``pool -> Flatten -> Affine/Linear``
    ``Flatten -> Affine'`` with ``W' = W P`` (``P``: the pool as a matrix, applied exactly with
    one backward pass of the pool).

Anything else (a pool feeding a neuron, a pool with several consumers, a conv with several
inputs) stays as it is; the Lava backends compose it into their Dense matrices anyway, and the
netx exporter names it when it refuses it.
"""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch

from toolchain.ir.graph import make_graph
from toolchain.ir.metadata import graph_metadata
from toolchain.ir.nodes import POOL_TYPES, explicit_padding, linear_fns, node_type, pair
from toolchain.ir.shapes import output_shapes
from toolchain.passes.registry import register_pass


def fold_pool_into_conv(pool, conv, in_shape) -> Optional[object]:
    """The single Conv2d equal to ``conv(pool(x))`` for inputs of shape ``in_shape`` (C, H, W), or None."""
    import nir

    W = np.asarray(conv.weight, dtype=np.float64)
    if W.ndim != 4:
        return None
    kp, sp, pp = pair(pool.kernel_size), pair(pool.stride), pair(pool.padding)
    sc, dc = pair(conv.stride), pair(conv.dilation)
    pc = explicit_padding(conv)
    if pc is None:
        return None
    d = 1.0 if node_type(pool) == "SumPool2d" else float(kp[0] * kp[1])
    co, ci, kh, kw = W.shape
    K = [dc[i] * sp[i] * ((kh, kw)[i] - 1) + kp[i] for i in range(2)]
    Wc = np.zeros((co, ci, K[0], K[1]))
    for a in range(kh):
        for b in range(kw):
            y0, x0 = dc[0] * sp[0] * a, dc[1] * sp[1] * b
            Wc[:, :, y0 : y0 + kp[0], x0 : x0 + kp[1]] += W[:, :, a : a + 1, b : b + 1] / d
    stride = (sp[0] * sc[0], sp[1] * sc[1])
    padding = (pp[0] + pc[0] * sp[0], pp[1] + pc[1] * sp[1])
    groups = int(np.asarray(conv.groups).reshape(-1)[0])
    bias = conv.bias
    new = nir.Conv2d(
        input_shape=tuple(int(s) for s in in_shape[1:]),
        weight=Wc,
        stride=np.array(stride),
        padding=np.array(padding),
        dilation=np.array([1, 1]),
        groups=groups,
        bias=np.asarray(bias, dtype=np.float64) if bias is not None else np.zeros(co),
    )
    # check on a random input: the fold must be exact (it is not when padding meets leftover rows)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(2,) + tuple(in_shape)))
    with torch.no_grad():
        try:
            want = linear_fns(conv, "conv")[0](linear_fns(pool, "pool")[0](x))
            got = linear_fns(new, "conv")[0](x)
        except RuntimeError:
            return None
    if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-9, atol=1e-9 * float(want.abs().max() + 1)):
        return None
    return new


def fold_pool_into_affine(pool, affine, in_shape):
    """``Affine(Flatten(pool(x)))`` as an Affine on the flattened pool input (C, H, W)."""
    import nir

    Wt = torch.as_tensor(np.asarray(affine.weight, dtype=np.float64))
    n_out = Wt.shape[0]
    x = torch.zeros((n_out,) + tuple(in_shape), dtype=torch.float64, requires_grad=True)
    y = linear_fns(pool, "pool")[0](x).reshape(n_out, -1)
    if y.shape[1] != Wt.shape[1]:
        return None
    (y * Wt).sum().backward()
    W2 = x.grad.reshape(n_out, -1).numpy().copy()
    if node_type(affine) == "Linear":
        return nir.Linear(weight=W2)
    return nir.Affine(weight=W2, bias=np.asarray(affine.bias, dtype=np.float64).copy())


@register_pass("fold_pooling", ensures=("pools_folded",), strict=False)
def fold_pooling(graph):
    """A new graph with every foldable pooling node merged into the linear node after it."""
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    changed = True
    while changed:
        changed = False
        g = make_graph(nodes, edges, graph_metadata(graph))
        shapes = output_shapes(g)
        preds = {k: [a for a, b in edges if b == k] for k in nodes}
        succs = {k: [b for a, b in edges if a == k] for k in nodes}
        for name, node in list(nodes.items()):
            if node_type(node) not in POOL_TYPES or len(preds[name]) != 1 or len(succs[name]) != 1:
                continue
            src = preds[name][0]
            in_shape = shapes[src]
            if len(in_shape) != 3:
                continue
            nxt = succs[name][0]
            t = node_type(nodes[nxt])
            if t == "Conv2d" and preds[nxt] == [name]:
                new = fold_pool_into_conv(node, nodes[nxt], in_shape)
                if new is None:
                    continue
                nodes[nxt] = new
                edges = [e for e in edges if e != (src, name) and e != (name, nxt)] + [(src, nxt)]
            elif t == "Flatten" and preds[nxt] == [name] and len(succs[nxt]) == 1:
                aff = succs[nxt][0]
                if node_type(nodes[aff]) not in ("Affine", "Linear") or preds[aff] != [nxt]:
                    continue
                start = int(np.asarray(nodes[nxt].start_dim).reshape(-1)[0])
                end = int(np.asarray(nodes[nxt].end_dim).reshape(-1)[0])
                if (start, end) not in ((0, -1), (0, 2)):
                    continue
                new = fold_pool_into_affine(node, nodes[aff], in_shape)
                if new is None:
                    continue
                nodes[aff] = new
                flat = copy.copy(nodes[nxt])
                flat.input_type = {"input": np.array(in_shape)}
                flat.output_type = {"output": np.array([int(np.prod(in_shape))])}
                nodes[nxt] = flat
                edges = [e for e in edges if e != (src, name) and e != (name, nxt)] + [(src, nxt)]
            else:
                continue
            del nodes[name]
            changed = True
            break
    if nodes.keys() == graph.nodes.keys() and all(nodes[k] is graph.nodes[k] for k in nodes):
        return graph
    return make_graph(nodes, edges, graph_metadata(graph))
