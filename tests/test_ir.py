"""toolchain/ir: reading and writing graphs, their metadata, topology and shape inference."""

import h5py
import nir
import numpy as np
import pytest
import torch

from toolchain.errors import NirDeployError
from toolchain.ir import (
    Discretization,
    discretization_of,
    graph_metadata,
    infer_shapes,
    load_graph,
    make_graph,
    save_graph,
    topology,
)


def _in(*shape):
    return nir.Input(input_type={"input": np.array(shape)})


def _out(*shape):
    return nir.Output(output_type={"output": np.array(shape)})


def _lif(n):
    return nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


def recurrent_graph(metadata=None):
    """input(4) -> fc -> lif(3) -> output, with lif -> rec -> lif closing a cycle."""
    nodes = {
        "input": _in(4),
        "fc": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
        "lif": _lif(3),
        "rec": nir.Linear(weight=np.eye(3) * 0.5),
        "output": _out(3),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    return make_graph(nodes, edges, metadata)


# --------------------------------------------------------------------------- load_graph errors
def test_load_graph_missing_file(tmp_path):
    with pytest.raises(NirDeployError, match="no such file"):
        load_graph(tmp_path / "nope.nir")


def test_load_graph_directory(tmp_path):
    with pytest.raises(NirDeployError, match="is a directory"):
        load_graph(tmp_path)


def test_load_graph_not_hdf5(tmp_path):
    f = tmp_path / "m.nir"
    f.write_text("not nir")
    with pytest.raises(NirDeployError, match="not a NIR file"):
        load_graph(f)


def test_load_graph_hdf5_without_nodes(tmp_path):
    f = tmp_path / "m.nir"
    with h5py.File(f, "w") as h:
        h["x"] = np.arange(3)
    with pytest.raises(NirDeployError, match="no 'node' group"):
        load_graph(f)


# --------------------------------------------------------------------------- save / load
def test_save_load_roundtrip_keeps_metadata_and_parameters(tmp_path):
    disc = Discretization(dt=2e-3, scheme="euler", input_convention="impulse", reset="subtract", v_init="v_reset",
                          node_conventions={"lif": {"input_convention": "current"}})  # fmt: skip
    meta = {**disc.to_metadata(), "readout": "max"}
    g = recurrent_graph(meta)
    save_graph(g, tmp_path / "sub" / "g.nir")  # creates the folder
    back = load_graph(tmp_path / "sub" / "g.nir")
    assert graph_metadata(back) == meta
    assert discretization_of(back) == disc
    assert sorted(back.nodes) == sorted(g.nodes)
    assert sorted(map(tuple, back.edges)) == sorted(g.edges)
    np.testing.assert_array_equal(back.nodes["rec"].weight, g.nodes["rec"].weight)


# --------------------------------------------------------------------------- topology
def test_topology_of_a_recurrent_graph():
    topo = topology(recurrent_graph())
    order = topo.order
    assert sorted(order) == ["fc", "input", "lif", "output", "rec"]
    assert order.index("input") < order.index("fc") < order.index("lif") < order.index("rec")
    assert order.index("lif") < order.index("output")
    assert topo.back_preds["lif"] == ["rec"]  # the edge that closes the cycle
    assert topo.preds["lif"] == ["fc"]
    assert topo.inputs == ["input"] and topo.outputs == ["output"]


def test_topology_refuses_an_edge_to_an_unknown_node():
    g = make_graph({"input": _in(2), "output": _out(2)}, [("input", "output"), ("input", "ghost")])
    with pytest.raises(NirDeployError, match="ghost"):
        topology(g)


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "kernel, stride, padding, dilation",
    [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 5), (2, 1), (1, 2), (1, 1)), ((2, 4), (1, 3), (0, 1), (2, 1))],
)
def test_infer_shapes_of_a_conv_graph_matches_torch(kernel, stride, padding, dilation):
    c_in, c_out, h, w = 2, 4, 11, 13
    weight = np.random.default_rng(0).normal(size=(c_out, c_in) + kernel)
    conv = nir.Conv2d(input_shape=None, weight=weight, stride=stride, padding=padding, dilation=dilation, groups=1,
                      bias=np.zeros(c_out))  # fmt: skip
    # torch's own convolution decides the expected shape
    want = tuple(torch.nn.functional.conv2d(torch.zeros(1, c_in, h, w), torch.zeros(c_out, c_in, *kernel),
                                            stride=stride, padding=padding, dilation=dilation).shape[1:])  # fmt: skip
    n = int(np.prod(want))
    g = make_graph({"input": _in(c_in, h, w), "conv": conv, "lif": _lif(n), "output": _out(*want)},
                   [("input", "conv"), ("conv", "lif"), ("lif", "output")])  # fmt: skip
    shapes = infer_shapes(g)
    assert shapes["input"] == ((c_in, h, w), (c_in, h, w))
    assert shapes["conv"] == ((c_in, h, w), want)
    assert shapes["lif"] == (want, want)


def test_infer_shapes_names_the_node_that_cannot_take_its_input():
    g = make_graph({"input": _in(4), "fc": nir.Linear(weight=np.ones((3, 5))), "output": _out(3)},
                   [("input", "fc"), ("fc", "output")])  # fmt: skip
    with pytest.raises(NirDeployError, match="shape mismatch: node 'fc'"):
        infer_shapes(g)


# --------------------------------------------------------------------------- Discretization
@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"dt": 0.0}, "dt must be a positive"),
        ({"dt": -1e-3}, "dt must be a positive"),
        ({"dt": float("nan")}, "dt must be a positive"),
        ({"dt": 1e-3, "scheme": "rk4"}, "unknown scheme 'rk4'"),
        ({"dt": 1e-3, "input_convention": "voltage"}, "unknown input convention 'voltage'"),
        ({"dt": 1e-3, "reset": "zero"}, "unknown reset 'zero'"),
        ({"dt": 1e-3, "v_init": "random"}, "unknown v_init 'random'"),
        ({"dt": 1e-3, "node_conventions": {"lif": {"input_convention": "x"}}}, "input convention of node 'lif'"),
    ],
)
def test_discretization_validation(kw, msg):
    with pytest.raises(NirDeployError, match=msg):
        Discretization(**kw)


def test_discretization_of_a_foreign_graph_needs_dt():
    g = recurrent_graph()  # no metadata
    with pytest.raises(NirDeployError, match="no timestep"):
        discretization_of(g)
    assert discretization_of(g, dt=1e-3, scheme="euler") == Discretization(dt=1e-3, scheme="euler")
