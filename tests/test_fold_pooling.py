"""toolchain/passes/fold_pooling.py: pooling merged into the following Conv2d or Flatten+Affine.

A pure graph pass: the folded graph must compute exactly what the original computes (float64,
up to rounding), and pools that cannot be folded exactly must stay where they are.
"""

import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.reference import simulate  # noqa: E402
from toolchain.ir import Discretization, discretization_of, load_graph, make_graph  # noqa: E402
from toolchain.ir.shapes import output_shapes as infer_shapes
from toolchain.passes.fold_pooling import fold_pool_into_conv, fold_pooling  # noqa: E402
from toolchain.ir import linear_fns
from toolchain.program import lower  # noqa: E402

DISC = Discretization(dt=1e-3, input_convention="impulse")


def _pool(kind, k, s, p=0):
    cls = nir.SumPool2d if kind == "sum" else nir.AvgPool2d
    return cls(kernel_size=np.array([k, k]) if np.isscalar(k) else np.array(k), stride=np.array([s, s]) if np.isscalar(s) else np.array(s),
               padding=np.array([p, p]) if np.isscalar(p) else np.array(p))  # fmt: skip


def _conv(rng, cin, cout, k, stride=1, padding=0, dilation=1, groups=1):
    return nir.Conv2d(input_shape=None, weight=rng.normal(0, 0.5, (cout, cin // groups) + k), stride=stride,
                      padding=padding, dilation=dilation, groups=groups, bias=rng.normal(0, 0.1, cout))  # fmt: skip


def _apply(node, x):
    with torch.no_grad():
        return linear_fns(node, "n")[0](x)


CASES = [
    # (pool kind, kernel, stride, padding, conv kernel, conv stride, conv padding, dilation, groups, input H, W)
    ("sum", 2, 2, 0, (3, 3), 1, 1, 1, 1, 16, 16),
    ("avg", 2, 2, 0, (3, 3), 1, 1, 1, 1, 16, 12),
    ("sum", 3, 3, 0, (3, 2), (2, 1), (1, 0), 1, 2, 18, 15),
    ("sum", 2, 2, 1, (3, 3), 1, 0, (2, 1), 1, 14, 14),
    ("avg", (2, 1), (2, 1), 0, (1, 3), 1, "same", 1, 1, 8, 9),
    ("sum", 2, 3, 0, (2, 2), 2, 0, 1, 1, 17, 17),  # kernel < stride: gaps between windows
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}{c[1]}s{c[2]}p{c[3]}" for c in CASES])
def test_pool_then_conv_becomes_one_exact_conv(case):
    kind, k, s, p, kc, sc, pc, dc, groups, H, W = case
    rng = np.random.default_rng(0)
    pool, conv = _pool(kind, k, s, p), _conv(rng, 4, 6, kc, sc, pc, dc, groups)
    new = fold_pool_into_conv(pool, conv, (4, H, W))
    assert new is not None
    x = torch.as_tensor(rng.normal(size=(3, 4, H, W)))
    want = _apply(conv, _apply(pool, x))
    got = _apply(new, x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_overlapping_pool_before_a_padded_conv_is_not_folded():
    rng = np.random.default_rng(1)
    # kernel 3 > stride 2: the conv's zero padding would be a window over real input
    assert fold_pool_into_conv(_pool("sum", 3, 2), _conv(rng, 2, 2, (3, 3), padding=1), (2, 9, 9)) is None
    # leftover rows on the padded right side (9 = 4 x 2 + 1)
    assert fold_pool_into_conv(_pool("sum", 2, 2), _conv(rng, 2, 2, (3, 3), padding=1), (2, 9, 9)) is None
    # ... but without padding both fold
    assert fold_pool_into_conv(_pool("sum", 3, 2), _conv(rng, 2, 2, (3, 3)), (2, 9, 9)) is not None


def _cnn(rng, pool_to="conv"):
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 12, 12])}),
        "c1": _conv(rng, 2, 4, (3, 3), padding=1),
        "if1": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "p1": _pool("sum", 2, 2),
        "c2": _conv(rng, 4, 4, (3, 3), padding=1),
        "if2": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "p2": _pool("avg", 2, 2),
        "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(0, 0.5, (5, 36)), bias=rng.normal(0, 0.1, 5)),
        "if3": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "output": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [("input", "c1"), ("c1", "if1"), ("if1", "p1"), ("p1", "c2"), ("c2", "if2"), ("if2", "p2"),
             ("p2", "flat"), ("flat", "fc"), ("fc", "if3"), ("if3", "output")]  # fmt: skip
    return make_graph(nodes, edges)


def test_graph_pass_folds_pool_conv_and_pool_flatten_affine():
    rng = np.random.default_rng(2)
    g = _cnn(rng)
    f = fold_pooling(g)
    assert "p1" not in f.nodes and "p2" not in f.nodes
    assert ("if1", "c2") in f.edges and ("if2", "flat") in f.edges
    assert np.asarray(f.nodes["fc"].weight).shape == (5, 4 * 6 * 6)
    assert infer_shapes(f)["c2"] == (4, 6, 6) and infer_shapes(f)["flat"] == (144,)
    assert g.nodes["p1"] is not None  # the input graph is untouched
    p0, p1 = lower(g, DISC), lower(f, DISC)
    x = (rng.random((3, 20, 2, 12, 12)) < 0.3).astype(np.float64)
    r0, r1 = simulate(p0, x, record_v=True), simulate(p1, x, record_v=True)
    for k in r0.v:
        np.testing.assert_allclose(r1.v[k], r0.v[k], rtol=0, atol=1e-9)
    for k in r0.spikes:
        assert r0.spikes[k].any()
        np.testing.assert_array_equal(r1.spikes[k], r0.spikes[k])


def test_pools_that_do_not_precede_a_linear_layer_stay():
    rng = np.random.default_rng(3)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
        "c1": _conv(rng, 1, 2, (3, 3), padding=1),
        "if1": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "pool": _pool("sum", 2, 2),
        "if2": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),  # a pool straight into a neuron
        "output": nir.Output(output_type={"output": np.array([2, 4, 4])}),
    }
    edges = [("input", "c1"), ("c1", "if1"), ("if1", "pool"), ("pool", "if2"), ("if2", "output")]
    g = make_graph(nodes, edges)
    assert fold_pooling(g) is g


def test_chained_pools_fold_one_after_the_other():
    rng = np.random.default_rng(4)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 16, 16])}),
        "pa": _pool("sum", 2, 2),
        "pb": _pool("avg", 2, 2),
        "c": _conv(rng, 2, 3, (3, 3)),
        "if": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "output": nir.Output(output_type={"output": np.array([3, 2, 2])}),
    }
    edges = [("input", "pa"), ("pa", "pb"), ("pb", "c"), ("c", "if"), ("if", "output")]
    g = make_graph(nodes, edges)
    f = fold_pooling(g)
    assert sorted(f.nodes) == ["c", "if", "input", "output"]
    x = torch.as_tensor(rng.normal(size=(2, 2, 16, 16)))
    want = _apply(g.nodes["c"], _apply(g.nodes["pb"], _apply(g.nodes["pa"], x)))
    torch.testing.assert_close(_apply(f.nodes["c"], x), want, rtol=1e-10, atol=1e-10)


def test_cnn_sinabs_has_no_pool_left_and_spikes_the_same(conformance_file):
    g = load_graph(conformance_file("cnn_sinabs.nir"))
    f = fold_pooling(g)
    assert not any(type(n).__name__ in ("SumPool2d", "AvgPool2d") for n in f.nodes.values())
    d = discretization_of(g, dt=1e-3, input_convention="impulse")
    p0, p1 = lower(g, d), lower(f, d)
    x = (np.random.default_rng(5).random((2, 15, 2, 34, 34)) < 0.1).astype(np.float64)
    r0, r1 = simulate(p0, x), simulate(p1, x)
    for k in r0.spikes:
        np.testing.assert_array_equal(r1.spikes[k], r0.spikes[k])
