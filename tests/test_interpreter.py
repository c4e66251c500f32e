"""The one graph interpreter (toolchain/program/interpreter.py): the edge rule, both drivers,
against an independent numpy simulation written from the equations."""

import nir
import numpy as np
import torch

from simulators.reference import simulate
from toolchain.ir import Discretization, make_graph
from toolchain.loihi.plan import host_outputs
from toolchain.program import lower
from toolchain.program.interpreter import BACK_EDGE_LAG, Edge, incoming, outgoing, shift_steps, sources_through_linear

DT = 1e-3


def _recurrent_graph(rng):
    """input -> fc -> lif <-> rec (a recurrent Linear), lif -> readout (Affine) -> output."""
    n_in, n = 3, 4
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc": nir.Linear(weight=rng.normal(8, 6, (n, n_in))),
        "lif": nir.LIF(tau=np.full(n, 0.02), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                       v_reset=np.zeros(n)),
        "rec": nir.Linear(weight=rng.normal(0, 8, (n, n))),
        "readout": nir.Affine(weight=rng.normal(0, 1, (2, n)), bias=np.array([0.1, -0.2])),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }  # fmt: skip
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "readout"), ("readout", "output")]
    return make_graph(nodes, edges, Discretization(dt=DT, scheme="exact").to_metadata())


def _numpy_lif(g, x):
    """LIF, exact scheme, current convention, reset to zero; the recurrent input is the previous
    step's spikes (zeros at step 0), written from the equations without nirdeploy."""
    W, R = g.nodes["fc"].weight, g.nodes["rec"].weight
    Wo, bo = g.nodes["readout"].weight, g.nodes["readout"].bias
    a = np.exp(-DT / 0.02)
    N, T, _ = x.shape
    v = np.zeros((N, W.shape[0]))
    z_prev = np.zeros_like(v)
    Z, Y = np.zeros((N, T, W.shape[0]), bool), np.zeros((N, T, 2))
    for t in range(T):
        u = x[:, t] @ W.T + z_prev @ R.T
        v = a * v + (1 - a) * u
        z = v > 1.0
        v = np.where(z, 0.0, v)
        Z[:, t], Y[:, t] = z, z @ Wo.T + bo
        z_prev = z.astype(float)
    return Z, Y


def test_edge_rule_and_walks():
    g = _recurrent_graph(np.random.default_rng(0))
    prog = lower(g, Discretization(dt=DT, scheme="exact"))
    back = [e for e in incoming(prog, "lif") if e.recurrent]
    assert back == [Edge("rec", BACK_EDGE_LAG)] and incoming(prog, "lif")[0] == Edge("fc", 0)
    assert ("lif", Edge("rec", 1)) in outgoing(prog, "rec")
    assert set(sources_through_linear(prog, "lif")) == {("input", 0), ("lif", 1)}
    x = torch.arange(6.0).reshape(1, 3, 2)
    assert torch.equal(shift_steps(x, 1)[0, 0], torch.zeros(2)) and torch.equal(shift_steps(x, 1)[0, 1:], x[0, :2])


def test_step_driver_matches_an_independent_numpy_simulation():
    rng = np.random.default_rng(1)
    g = _recurrent_graph(rng)
    prog = lower(g, Discretization(dt=DT, scheme="exact"))
    x = rng.poisson(0.4, (5, 60, 3)).astype(float)
    res = simulate(prog, x)
    Z, Y = _numpy_lif(g, x)
    assert Z.sum() > 20  # the network is active
    np.testing.assert_array_equal(res.spikes["lif"], Z)
    np.testing.assert_allclose(res.outputs["output"], Y, atol=1e-12)


def test_sequence_driver_gives_the_step_drivers_outputs():
    """The host-side outputs (sequence driver, from recorded spikes) equal the reference's."""
    rng = np.random.default_rng(2)
    prog = lower(_recurrent_graph(rng), Discretization(dt=DT, scheme="exact"))
    x = rng.poisson(0.4, (3, 40, 3)).astype(float)
    res = simulate(prog, x)
    out = host_outputs(prog, {"lif": res.spikes["lif"].astype(float), "input": x})
    np.testing.assert_allclose(out["output"], res.outputs["output"], atol=1e-12)
