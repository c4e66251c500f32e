"""Activity metrics: NeuroBench's synaptic operations reproduced from recorded spikes.

The cross-checks run the ``neurobench`` package (2.3.0) itself on the torch/norse model and
compare with our numbers computed from the reference simulator's spikes of the exported graph.
NeuroBench hooks nn.Linear / nn.Conv* (all our weight ops) but does not recognise norse cells as
activation layers, and a norse cell returns (z, state), which its activation hook cannot count;
we therefore insert an identity "tap" after every spiking cell (same model, same weights) and
register the tap class as an activation module.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import norse.torch as nt

from exporters.torch_to_nir import export_model
from simulators.reference import simulate
from simulators.result import SimResult
from toolchain.ir import discretization_of
from toolchain.analysis.metrics import activity_metrics, fanout_vector, raster
from toolchain.program import lower

REPO = Path(__file__).resolve().parents[1]
SPIKING = (nt.LIFBoxCell, nt.LIFCell, nt.IAFCell)


class Tap(torch.nn.Identity):
    """Marks a spiking cell's output for NeuroBench's activation hooks."""


class Stepper(torch.nn.Module):
    """[batch, time, ...] -> [batch, time, ...]: the per-step norse model run over time."""

    def __init__(self, seq):
        super().__init__()
        self.seq = seq

    def forward(self, x):
        state, outs = None, []
        for t in range(x.shape[1]):
            out, state = self.seq(x[:, t], state)
            outs.append(out)
        return torch.stack(outs, 1)


def neurobench_metrics(model, x, batch_size, dtype=torch.float64):
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import TorchModel

    mods = []
    for m in model:
        mods.append(m)
        if isinstance(m, SPIKING):
            mods.append(Tap())
    net = Stepper(nt.SequentialState(*mods)).to(dtype)
    nb = TorchModel(net)
    nb.add_activation_module(Tap)
    ds = torch.utils.data.TensorDataset(torch.as_tensor(x, dtype=dtype), torch.zeros(len(x)))
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    bench = Benchmark(nb, dl, [], [], [[Footprint, ConnectionSparsity], [SynapticOperations, ActivationSparsity]])
    return bench.run(quiet=True)


def ours(model, x, input_shape=None, **kw):
    graph = export_model(model, input_shape=input_shape)
    program = lower(graph, discretization_of(graph))
    res = simulate(program, np.asarray(x))
    return program, res, activity_metrics(res, program, inputs=np.asarray(x), **kw)


def assert_same(nb, m, dtype_bytes=8):
    syn = nb["SynapticOperations"]
    tot = m["totals"]
    assert tot["Dense"] == pytest.approx(syn["Dense"], rel=0, abs=1e-6)
    assert tot["Effective_ACs"] == pytest.approx(syn["Effective_ACs"], rel=0, abs=1e-6)
    assert tot["Effective_MACs"] == pytest.approx(syn["Effective_MACs"], rel=0, abs=1e-6)
    assert tot["activation_sparsity"] == pytest.approx(nb["ActivationSparsity"], abs=1e-12)
    assert round(tot["connection_sparsity"], 4) == nb["ConnectionSparsity"]
    assert (tot["weights"] + tot["biases"]) * dtype_bytes == nb["Footprint"]


def spikes(shape, p, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(*shape, generator=g) < p).double() * scale).numpy()


def demo_like(n_in=40, n_hidden=128, n_out=10, seed=0, readout="lif"):
    """The demo's structure (toolchain/demo_model/model.py): Linear(40, 128) -> LIFBox -> Linear(128, 10) -> LIFBox."""
    torch.manual_seed(seed)
    p = nt.LIFBoxParameters(v_th=torch.tensor(0.1))
    last = nt.LIFBoxCell(p, dt=1e-3) if readout == "lif" else nt.LICell(dt=1e-3)
    m = nt.SequentialState(torch.nn.Linear(n_in, n_hidden), nt.LIFBoxCell(p, dt=1e-3), torch.nn.Linear(n_hidden, n_out), last)
    with torch.no_grad():  # some exact zeros, so that nonzero-weight counting matters
        m[0].weight[m[0].weight.abs() < 0.02] = 0.0
    return m


def test_neurobench_crosscheck_binary_input():
    m = demo_like()
    x = spikes((12, 60, 40), 0.15, 1)
    _, res, ours_m = ours(m, x)
    assert ours_m["totals"]["Effective_ACs"] > 0 and ours_m["totals"]["Effective_MACs"] == 0
    assert all(res.spikes[k].any() for k in res.spikes)
    assert ours_m["totals"]["connection_sparsity"] > 0
    assert_same(neurobench_metrics(m, x, batch_size=4), ours_m)


def test_neurobench_crosscheck_counts_as_macs():
    """Non-binary input (event counts of 2): the first layer's operations are MACs."""
    m = demo_like(readout="li", seed=3)
    x = spikes((6, 50, 40), 0.2, 2, scale=2.0)
    _, _, per_sample = ours(m, x)
    assert per_sample["totals"]["Effective_MACs"] > 0
    assert per_sample["connections"][0]["Effective_ACs"] == 0
    assert_same(neurobench_metrics(m, x, batch_size=1), per_sample)


def test_neurobench_crosscheck_batched_granularity():
    """NeuroBench decides AC vs MAC per forward call; granularity='batch' reproduces a batched run."""
    m = demo_like(seed=4)
    x = spikes((8, 40, 40), 0.2, 5)
    x[1, ::3] *= 2  # sample 1 is non-binary on every third step: its batch-mates' ops become MACs
    _, _, batched = ours(m, x, granularity="batch", batch_size=4)
    _, _, per_sample = ours(m, x)
    assert batched["totals"]["Effective_MACs"] > per_sample["totals"]["Effective_MACs"]
    assert_same(neurobench_metrics(m, x, batch_size=4), batched)


def test_neurobench_crosscheck_conv_padding():
    """Conv2d with padding: edge pixels have fewer synapses; counted exactly as NeuroBench does."""
    torch.manual_seed(7)
    p = nt.LIFBoxParameters(v_th=torch.tensor(0.1))
    m = nt.SequentialState(
        torch.nn.Conv2d(2, 4, 3, padding=1), nt.LIFBoxCell(p, dt=1e-3),
        torch.nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False), nt.LIFBoxCell(p, dt=1e-3),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5), nt.LIFBoxCell(p, dt=1e-3),
    )
    with torch.no_grad():
        for mod in m:
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                mod.weight *= 4
    x = spikes((4, 30, 2, 8, 8), 0.3, 8)
    program, res, m_ours = ours(m, x, input_shape=(2, 8, 8))
    f = fanout_vector(program.ops[m_ours["connections"][0]["name"]], "ones").reshape(2, 8, 8)
    assert f[0, 0, 0] == 4 * 4 and f[0, 4, 4] == 4 * 9  # corner vs interior pixel
    assert all(res.spikes[k].any() for k in res.spikes)
    assert_same(neurobench_metrics(m, x, batch_size=2), m_ours)


def test_demo_checkpoint_crosscheck():
    """The real demo model (toolchain/demo_model: its definition and shipped checkpoint)."""
    from exporters.checkpoint import build_model
    from toolchain.demo_model import CHECKPOINT, MODEL

    model, extra = build_model(MODEL, str(CHECKPOINT))
    model = model.double()
    shape = tuple(extra.get("input_shape") or (model[0].in_features,))
    x = spikes((4, 80) + shape, 0.05, 9)
    _, _, m = ours(model, x)
    assert_same(neurobench_metrics(model, x, batch_size=1), m)


def test_recurrent_connection_counts_previous_step():
    torch.manual_seed(5)
    m = nt.SequentialState(
        nt.LIFRecurrentCell(6, 12, p=nt.LIFParameters(v_th=torch.tensor(0.1)), dt=1e-3),
        torch.nn.Linear(12, 3),
        nt.LIBoxCell(dt=1e-3),
    )
    x = spikes((3, 40, 6), 0.3, 6, scale=2.0)
    program, res, met = ours(m, x)
    rec = next(c for c in met["connections"] if c["name"] == "0.w_rec")
    z = res.spikes["0.lif"].reshape(3, 40, -1).astype(float)
    W = np.asarray(program.ops["0.w_rec"].node.weight)
    fan = (W != 0).sum(axis=0)
    expected = (z[:, :-1] @ fan).sum() / 3  # spikes of steps 0..T-2 are delivered at steps 1..T-1
    assert z.sum() > 0
    assert rec["Effective_ACs"] == pytest.approx(expected)
    assert rec["Dense"] == W.size * 40


def test_same_spikes_same_metrics_any_backend():
    """Metrics depend on the recorded spikes only: a hand-made result equals the reference's."""
    m = demo_like(seed=2)
    x = spikes((5, 30, 40), 0.2, 3)
    program, ref, a = ours(m, x)
    other = SimResult(
        backend="lava-float",
        dt=ref.dt,
        n_steps=ref.n_steps,
        outputs={k: np.zeros_like(v) for k, v in ref.outputs.items()},
        spikes={k: v.copy() for k, v in ref.spikes.items()},
        layer_types=dict(ref.layer_types),
        layer_sizes=dict(ref.layer_sizes),
    )
    b = activity_metrics(other, program, inputs=x)
    for key in ("Dense", "Effective_ACs", "Effective_MACs", "spikes_per_sample", "active_updates", "activation_sparsity"):
        assert a["totals"][key] == b["totals"][key]
    assert [l["synops"] for l in a["layers"]] == [l["synops"] for l in b["layers"]]


def test_without_inputs_input_connections_are_unknown():
    m = demo_like(seed=1)
    x = spikes((3, 20, 40), 0.2, 4)
    graph = export_model(m)
    program = lower(graph, discretization_of(graph))
    res = simulate(program, x)
    met = activity_metrics(res, program)
    assert not met["complete"] and met["missing_effective_ops"] == ["0"]
    assert met["connections"][0]["Effective_ACs"] is None
    assert met["connections"][0]["Dense"] == 40 * 128 * 20
    assert met["connections"][1]["Effective_ACs"] is not None
    assert met["totals"]["Effective_ACs"] is None and met["totals"]["Effective_ACs_known"] > 0


def test_layer_metrics_and_raster():
    m = demo_like(seed=6)
    x = spikes((4, 25, 40), 0.2, 5)
    _, res, met = ours(m, x)
    l1 = met["layers"][0]
    assert l1["neurons"] == 128 and l1["neuron_updates"] == 128 * 25
    assert l1["spikes_per_sample"] == pytest.approx(res.spikes["1"].sum() / 4)
    assert l1["firing_rate_hz"] == pytest.approx(l1["firing_rate"] / 1e-3)
    assert l1["active_updates"] == l1["neuron_updates"]  # affine biases drive every neuron
    r = raster(res, max_events=5)
    L = r["layers"]["1"]
    assert L["events"] == int(res.spikes["1"][0].sum()) and len(L["steps"]) == min(5, L["events"])
    assert L["truncated"] == (L["events"] > 5)
    t, n = np.nonzero(res.spikes["1"][0].reshape(25, -1))
    assert L["steps"] == t[:5].tolist() and L["neuron"] == n[:5].tolist()
