"""toolchain/program/lower.py: a checked NIR graph becomes a Program of typed, shaped ops."""

import nir
import numpy as np
import pytest
import torch

from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.ir import Discretization, make_graph
from toolchain.program import lower

DISC = Discretization(dt=1e-3, scheme="euler", input_convention="impulse")


def _lif(n):
    return nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


def conv_net():
    """input 2x8x8 -> conv (4 ch, 3x3, pad 1) -> IF -> flatten -> affine(10) -> LIF -> output."""
    rng = np.random.default_rng(0)
    n_conv = 4 * 8 * 8
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 8, 8])}),
        "conv": nir.Conv2d(input_shape=None, weight=rng.normal(size=(4, 2, 3, 3)), stride=1, padding=1, dilation=1,
                           groups=1, bias=np.zeros(4)),  # fmt: skip
        "if": nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.ones((4, 8, 8)), v_reset=np.zeros((4, 8, 8))),
        "flat": nir.Flatten(input_type={"input": np.array([4, 8, 8])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(size=(10, n_conv)), bias=np.zeros(10)),
        "lif": _lif(10),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    edges = [("input", "conv"), ("conv", "if"), ("if", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")]
    return make_graph(nodes, edges)


def test_lower_gives_op_kinds_and_shapes():
    prog = lower(conv_net(), DISC)
    kinds = {k: op.kind for k, op in prog.ops.items()}
    assert kinds == {"input": "input", "conv": "linear", "if": "neuron", "flat": "linear", "fc": "linear",
                     "lif": "neuron", "output": "output"}  # fmt: skip
    shapes = {k: (op.in_shape, op.out_shape) for k, op in prog.ops.items()}
    assert shapes["conv"] == ((2, 8, 8), (4, 8, 8))
    assert shapes["if"] == ((4, 8, 8), (4, 8, 8))
    assert shapes["flat"] == ((4, 8, 8), (256,))
    assert shapes["fc"] == ((256,), (10,))
    assert prog.input_name == "input" and prog.output_names == ["output"]
    assert prog.ops["if"].ssm.n == 256 and prog.ops["lif"].ssm.n == 10
    assert prog.disc == DISC


def test_linear_op_computes_what_torch_computes():
    g = conv_net()
    prog = lower(g, DISC)
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(3, 2, 8, 8)))
    want = torch.nn.functional.conv2d(x, torch.as_tensor(g.nodes["conv"].weight), padding=1)
    torch.testing.assert_close(prog.ops["conv"].fn(x), want)


def test_unsupported_node_type_error_names_the_node():
    g = make_graph(
        {"input": nir.Input(input_type={"input": np.array([3])}), "thr": nir.Threshold(threshold=np.ones(3)),
         "output": nir.Output(output_type={"output": np.array([3])})},
        [("input", "thr"), ("thr", "output")],
    )  # fmt: skip
    with pytest.raises(UnsupportedNodeError, match=r"node 'thr' has type Threshold"):
        lower(g, DISC)


def test_shape_mismatch_error_names_the_node():
    # two edges into "lif" carry 3 and 4 values
    g = make_graph(
        {"input": nir.Input(input_type={"input": np.array([4])}), "a": nir.Linear(weight=np.ones((3, 4))),
         "b": nir.Linear(weight=np.ones((4, 4))), "lif": _lif(3),
         "output": nir.Output(output_type={"output": np.array([3])})},
        [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "output")],
    )  # fmt: skip
    with pytest.raises(NirDeployError, match=r"shape mismatch: the edges into 'lif'"):
        lower(g, DISC)


def test_output_declaring_another_size_is_refused():
    g = make_graph(
        {"input": nir.Input(input_type={"input": np.array([4])}), "fc": nir.Linear(weight=np.ones((3, 4))),
         "lif": _lif(3), "output": nir.Output(output_type={"output": np.array([5])})},
        [("input", "fc"), ("fc", "lif"), ("lif", "output")],
    )  # fmt: skip
    with pytest.raises(NirDeployError, match=r"Output 'output' declares shape \(5,\)"):
        lower(g, DISC)
