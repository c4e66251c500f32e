"""torch/norse -> NIR: every supported layer, and the exported graph reproduces the model's spikes."""

import numpy as np
import pytest
import torch
import norse.torch as nt

from exporters.layers import SumPool2d
from exporters.torch_run import run_torch
from exporters.torch_to_nir import export_model
from simulators.reference import simulate
from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.ir import discretization_of, load_graph, save_graph
from toolchain.program import lower


def roundtrip(graph, tmp_path):
    p = tmp_path / "m.nir"
    save_graph(graph, p)
    return load_graph(p)


def assert_reproduces(model, x, tmp_path):
    """Export, write, read, simulate: spikes of every layer equal the torch model's (float64)."""
    graph = roundtrip(export_model(model), tmp_path)
    program = lower(graph, discretization_of(graph))
    out_t, rec = run_torch(model, x, graph.metadata["torch_modules"], dtype=torch.float64)
    res = simulate(program, x.numpy(), record_v=True)
    n_checked = 0
    for name, z in rec.items():
        if name in res.spikes:
            np.testing.assert_array_equal(z > 0, res.spikes[name], err_msg=name)
            n_checked += 1
            assert res.spikes[name].any(), f"{name} never spikes: the test would prove nothing"
        elif name in res.v:
            np.testing.assert_allclose(res.v[name], z, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(res.output(), out_t, atol=1e-6)
    assert n_checked >= 1
    return graph, res


def spikes(shape, p=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).double()


def test_metadata_records_discretization(tmp_path):
    torch.manual_seed(0)
    m = nt.SequentialState(torch.nn.Linear(3, 4), nt.LIFBoxCell(dt=2e-3), torch.nn.Linear(4, 2), nt.LIFCell(dt=2e-3))
    g = roundtrip(export_model(m, readout="sum"), tmp_path)
    meta = g.metadata
    assert meta["dt"] == pytest.approx(2e-3)
    assert meta["scheme"] == "euler"
    assert meta["reset"] == "value"
    assert meta["source_framework"] == "norse" and meta["source_framework_version"] == "1.1.0"
    assert meta["node_conventions"]["1"]["input_convention"] == "current"
    assert meta["node_conventions"]["3"]["input_convention"] == "impulse"
    # the norse bug (tau x dt) must not be here: tau is the physical time constant
    assert np.allclose(g.nodes["1"].tau, 1e-2)
    # parameters are per neuron, biases are the trained ones (not nirtorch's random default)
    assert g.nodes["1"].tau.shape == (4,)
    np.testing.assert_allclose(g.nodes["0"].bias, m[0].bias.detach().numpy())


def test_feedforward_lifbox_lif_li(tmp_path):
    torch.manual_seed(1)
    m = nt.SequentialState(
        torch.nn.Linear(16, 32),
        nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(50.0), v_th=torch.tensor(0.3)), dt=1e-3),
        torch.nn.Linear(32, 20),
        nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.tensor(200.0), tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.2)), dt=1e-3),
        torch.nn.Linear(20, 10),
        nt.LICell(dt=1e-3),
    )
    g, _ = assert_reproduces(m, spikes((6, 80, 16), 0.2) * 2, tmp_path)
    assert [type(g.nodes[k]).__name__ for k in ("1", "3", "5")] == ["LIF", "CubaLIF", "CubaLI"]


def test_libox_iaf_and_nonzero_leak_reset(tmp_path):
    torch.manual_seed(2)
    m = nt.SequentialState(
        torch.nn.Linear(8, 12, bias=False),
        nt.LIFBoxCell(nt.LIFBoxParameters(v_leak=torch.tensor(0.1), v_reset=torch.tensor(-0.2), v_th=torch.tensor(0.4)), dt=1e-3),
        torch.nn.Linear(12, 6),
        nt.IAFCell(nt.IAFParameters(v_th=torch.tensor(0.5), v_reset=torch.tensor(0.1))),
        torch.nn.Linear(6, 3),
        nt.LIBoxCell(dt=1e-3),
    )
    g, _ = assert_reproduces(m, spikes((5, 60, 8), 0.3) * 3, tmp_path)
    assert type(g.nodes["0"]).__name__ == "Linear"
    assert type(g.nodes["3"]).__name__ == "IF"


def test_reset_subtract_recorded(tmp_path):
    from norse.torch.functional.reset import reset_subtract

    torch.manual_seed(3)
    p = nt.LIFBoxParameters(v_th=torch.tensor(0.2), reset_method=reset_subtract)
    m = nt.SequentialState(torch.nn.Linear(4, 6), nt.LIFBoxCell(p, dt=1e-3))
    g, _ = assert_reproduces(m, spikes((3, 50, 4), 0.5) * 3, tmp_path)
    assert g.metadata["reset"] == "subtract"


def test_per_neuron_time_constants(tmp_path):
    torch.manual_seed(4)
    p = nt.LIFBoxParameters(tau_mem_inv=torch.linspace(20, 200, 10), v_th=torch.full((10,), 0.2))
    m = nt.SequentialState(torch.nn.Linear(5, 10), nt.LIFBoxCell(p, dt=1e-3))
    g, _ = assert_reproduces(m, spikes((4, 60, 5), 0.4) * 2, tmp_path)
    np.testing.assert_allclose(g.nodes["1"].tau, 1 / np.linspace(20, 200, 10), rtol=1e-6)


def test_recurrent_cell_is_a_back_edge(tmp_path):
    torch.manual_seed(5)
    m = nt.SequentialState(
        nt.LIFRecurrentCell(16, 24, p=nt.LIFParameters(v_th=torch.tensor(0.1)), dt=1e-3),
        torch.nn.Linear(24, 10),
        nt.LIBoxCell(dt=1e-3),
    )
    g, _ = assert_reproduces(m, spikes((5, 80, 16), 0.2) * 2, tmp_path)
    assert ("0.w_rec", "0.lif") in g.edges and ("0.lif", "0.w_rec") in g.edges
    program = lower(g, discretization_of(g))
    assert program.back_preds("0.lif") == ["0.w_rec"]


class ResidualNet(torch.nn.Module):
    """conv-BN-LIF, conv-BN + 1x1 shortcut into one LIF (two edges), pooling, flatten, IAF readout."""

    def __init__(self, pool="avg"):
        super().__init__()
        self.input_shape = (2, 8, 8)
        p = nt.LIFBoxParameters(v_th=torch.tensor(0.1))
        self.c1 = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.l1 = nt.LIFBoxCell(p, dt=1e-3)
        self.c2 = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(4)
        self.sc = torch.nn.Conv2d(2, 4, 1)
        self.l2 = nt.LIFBoxCell(p, dt=1e-3)
        self.pool = {"avg": torch.nn.AvgPool2d(2), "sum": SumPool2d(2), "lp": torch.nn.LPPool2d(1, 2)}[pool]
        self.flat = torch.nn.Flatten()
        self.fc = torch.nn.Linear(64, 5)
        self.bn3 = torch.nn.BatchNorm1d(5)
        self.l3 = nt.IAFCell(nt.IAFParameters(v_th=torch.tensor(0.1)))

    def forward(self, x, state=None):
        s = state if state is not None else [None] * 3
        z1, s1 = self.l1(self.bn1(self.c1(x)), s[0])
        z2, s2 = self.l2(self.bn2(self.c2(z1)) + self.sc(x), s[1])
        z3, s3 = self.l3(self.bn3(self.fc(self.flat(self.pool(z2)))), s[2])
        return z3, [s1, s2, s3]


@pytest.mark.parametrize("pool", ["avg", "sum", "lp"])
def test_residual_conv_batchnorm_pooling(tmp_path, pool):
    torch.manual_seed(6)
    m = ResidualNet(pool)
    for bn in (m.bn1, m.bn2, m.bn3):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.1, 0.1)
    g, _ = assert_reproduces(m, spikes((3, 40, 2, 8, 8), 0.3), tmp_path)
    assert not any(type(n).__name__ == "BatchNorm" for n in g.nodes.values())
    assert sorted(a for a, b in g.edges if b == "l2") == ["c2", "sc"]  # residual: two edges into l2
    assert type(g.nodes["pool"]).__name__ == ("AvgPool2d" if pool == "avg" else "SumPool2d")
    assert tuple(g.nodes["c1"].input_shape) == (8, 8)


def test_unsupported_module_named():
    m = nt.SequentialState(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2), nt.LIFBoxCell())
    with pytest.raises(UnsupportedNodeError, match=r"'1' \(ReLU\)"):
        export_model(m)


def test_non_cell_norse_module_refused():
    m = nt.SequentialState(torch.nn.Linear(3, 4), nt.LIF())
    with pytest.raises(UnsupportedNodeError, match="LIF.*Cell"):
        export_model(m)


def test_batchnorm_without_layer_refused():
    m = nt.SequentialState(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 4), nt.LIFBoxCell())
    with pytest.raises(NirDeployError, match="BatchNorm"):
        export_model(m)


def test_conflicting_dt_refused():
    m = nt.SequentialState(torch.nn.Linear(3, 4), nt.LIFBoxCell(dt=1e-3), torch.nn.Linear(4, 2), nt.LIFBoxCell(dt=2e-3))
    with pytest.raises(NirDeployError, match="different dt"):
        export_model(m)
