"""snnTorch models exported to NIR (exporters/snntorch_to_nir.py, docs/snntorch.md; issue 11 point 1).

snnTorch 1.0.0's own forward pass in float64 is the ground truth: every mapped neuron type and
reset rule is run on random weights with biases and inputs that make every layer spike, and
nirdeploy's reference must give the same spikes on every layer; chains of all neuron types per
reset rule, a conv net and the recurrent nets run on Lava float (few samples x few steps, shared
module-scoped runs), and one export on Lava fixed point vs the emulator bit for bit. Lava is
imported at module level: without it these tests fail, they never skip.
"""

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import snntorch.utils
import torch
from torch import nn

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here, it never skips)

from exporters.snntorch_to_nir import time_constant
from simulators import backends
from simulators.reference import simulate
from toolchain import api
from toolchain.errors import NirDeployError
from toolchain.ir import discretization_of, graph_metadata, load_graph
from toolchain.program import lower

REPO = Path(__file__).resolve().parents[1]
DT = 1e-3
N_IN, N1, N2 = 6, 12, 7


# --------------------------------------------------------------------------- models
def neuron(kind, n, reset="subtract", delay=True, per_neuron=False, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    beta = torch.rand(n, generator=g) * 0.5 + 0.45 if per_neuron else 0.85
    thr = torch.rand(n, generator=g) * 0.6 + 0.5 if per_neuron else 1.0
    common = dict(threshold=thr, reset_mechanism=reset, **kw)
    if kind == "Leaky":
        return snn.Leaky(beta=beta, reset_delay=delay, **common)
    if kind == "Synaptic":
        alpha = torch.rand(n, generator=g) * 0.5 + 0.3 if per_neuron else 0.6
        return snn.Synaptic(alpha=alpha, beta=beta, reset_delay=delay, **common)
    if kind == "RLeaky":
        return snn.RLeaky(beta=beta, linear_features=n, reset_delay=delay, **common)
    if kind == "RLeakyV":
        return snn.RLeaky(beta=beta, all_to_all=False, V=torch.rand(n, generator=g) - 0.3, reset_delay=delay, **common)
    if kind == "RSynaptic":
        alpha = torch.rand(n, generator=g) * 0.5 + 0.3 if per_neuron else 0.6
        return snn.RSynaptic(alpha=alpha, beta=beta, linear_features=n, reset_delay=delay, **common)
    if kind == "Lapicque":
        return snn.Lapicque(R=5.0, C=4e-3, time_step=1e-3, **common)
    raise AssertionError(kind)


class Chain(nn.Module):
    """Torch layers and snnTorch neurons applied in order, explicit states, one step per call:
    ``out, state = model(x_t, state)``."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x, state=None):
        state = list(state) if state is not None else [None] * len(self.layers)
        for i, m in enumerate(self.layers):
            if not isinstance(m, snn.SpikingNeuron):
                x = m(x.to(m.weight.dtype) if hasattr(m, "weight") else x)  # snnTorch's spikes are float32
                continue
            kind = type(m).__name__
            if state[i] is None and kind == "RSynaptic" and not m.reset_delay:  # it fails on init_rsynaptic()'s
                state[i] = tuple(torch.zeros_like(x) for _ in range(3))  # empty states: zeros of the layer's shape
            elif state[i] is None:
                s = getattr(m, f"init_{kind.lower()}")()
                state[i] = s if isinstance(s, tuple) else (s,)
            out = m(x, *state[i])
            x = out[0]
            state[i] = out if kind in ("RLeaky", "RSynaptic") else out[1:]
        return x, state


def linear(n_in, n_out, seed, mean=0.5, std=0.4):
    lin = nn.Linear(n_in, n_out)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n_out, n_in, generator=g) * std + mean)
        lin.bias.copy_(torch.rand(n_out, generator=g) * 0.3)
    return lin


def with_biased_recurrence(m, seed):
    rec = getattr(m, "recurrent", None)
    if isinstance(rec, nn.Linear):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            rec.weight.copy_(torch.randn(rec.weight.shape, generator=g) * 0.3)
            rec.bias.copy_(torch.rand(rec.bias.shape, generator=g) * 0.2 + 0.05)
    return m


def two_layer(kind, reset, delay, explicit=True):
    """Linear -> neuron (per-neuron beta/threshold) -> Linear -> neuron (scalar parameters)."""
    kw = {} if explicit else {"init_hidden": True}
    m1, m2 = (0.2, 0.1) if reset != "none" else (0.05, -0.03)  # without a reset v only decays: less drive
    layers = [linear(N_IN, N1, 1, mean=m1), with_biased_recurrence(neuron(kind, N1, reset, delay, per_neuron=True, seed=2, **kw), 3),
              linear(N1, N2, 4, mean=m2), with_biased_recurrence(neuron(kind, N2, reset, delay, seed=5, **kw), 6)]  # fmt: skip
    return Chain(layers) if explicit else nn.Sequential(*layers)


def run_snntorch(model, x):
    """snnTorch's own forward in float64: {module path: spikes [samples, steps, ...]}."""
    m = copy.deepcopy(model).double().eval()
    for mod in m.modules():  # a 0-dim factor leaves snnTorch's float32 spikes float32 (RLeaky then fails in float64)
        if isinstance(mod, snn.SpikingNeuron):
            mod.graded_spikes_factor = torch.ones(1, dtype=torch.float64)
    snntorch.utils.reset(m)
    rec = {}
    hooks = [mod.register_forward_hook(lambda mod, i, o, n=name: rec.setdefault(n, []).append(
        (o[0] if isinstance(o, tuple) else o).detach().clone())) for name, mod in m.named_modules()
        if isinstance(mod, snn.SpikingNeuron)]  # fmt: skip
    xt = torch.as_tensor(x, dtype=torch.float64)
    state = None
    with torch.no_grad():
        for t in range(xt.shape[1]):
            if isinstance(m, nn.Sequential):  # its layers one by one: snnTorch's spikes are float32
                out = xt[:, t]
                for layer in m:
                    out = layer(out.to(torch.float64))
                    out = out[0] if isinstance(out, tuple) else out
            else:
                out, state = m(xt[:, t], state)
    for h in hooks:
        h.remove()
    return {k: torch.stack(v, 1).numpy() > 0.5 for k, v in rec.items()}


def inputs(samples=3, steps=30, shape=(N_IN,), rate=0.6, seed=7):
    return np.random.default_rng(seed).poisson(rate, (samples, steps) + tuple(shape)).astype(np.float64)


def export_and_lower(model, input_shape=None):
    graph = api.export(model, input_shape=input_shape, dt=DT)
    return graph, lower(graph, discretization_of(graph))


def check_same_spikes(graph, res, want, min_rate=0.02):
    """Every neuron layer spikes and nirdeploy's spikes are snnTorch's, layer by layer."""
    tm = graph.metadata["torch_modules"]
    layers = [k for k in res.spikes]
    assert sorted(tm[k] for k in layers) == sorted(want), (layers, sorted(want))
    for k in layers:
        ours, theirs = np.asarray(res.spikes[k]).astype(bool), want[tm[k]]
        theirs = theirs.reshape(ours.shape)
        assert theirs.mean() > min_rate, (k, theirs.mean())  # the layer spikes
        assert theirs.mean() < 0.95, (k, theirs.mean())
        assert np.array_equal(ours, theirs), (k, float(np.mean(ours == theirs)))


# --------------------------------------------------------------------------- every type x reset rule, reference
MAPPED = [
    ("Leaky", "subtract", True), ("Leaky", "zero", True), ("Leaky", "zero", False), ("Leaky", "none", True),
    ("Leaky", "none", False),
    ("Synaptic", "subtract", True), ("Synaptic", "zero", False), ("Synaptic", "none", True), ("Synaptic", "none", False),
    ("RLeaky", "subtract", True), ("RLeaky", "zero", False), ("RLeaky", "none", True), ("RLeaky", "none", False),
    ("RLeakyV", "subtract", True),
    ("RSynaptic", "subtract", True), ("RSynaptic", "none", True),
    ("Lapicque", "subtract", True), ("Lapicque", "none", True),
    # snnTorch's reset_delay=False subtraction (reset_guard), the delayed zero reset (held for a step)
    ("Leaky", "subtract", False), ("Synaptic", "subtract", False), ("RLeaky", "subtract", False),
    ("RLeakyV", "subtract", False),
    ("Synaptic", "zero", True), ("RLeaky", "zero", True), ("RSynaptic", "zero", True), ("Lapicque", "zero", True),
    # RSynaptic's reset_delay=False has no effect in snnTorch 1.0.0: the delayed rules
    ("RSynaptic", "subtract", False), ("RSynaptic", "zero", False), ("RSynaptic", "none", False),
]  # fmt: skip


@pytest.mark.parametrize("kind,reset,delay", MAPPED)
def test_reference_reproduces_snntorch_spike_for_spike(kind, reset, delay):
    model = two_layer(kind, reset, delay)
    x = inputs()
    graph, prog = export_and_lower(model)
    check_same_spikes(graph, simulate(prog, x), run_snntorch(model, x))
    expect = {"subtract": "subtract", "zero": "value", "none": "none"}[reset]
    assert graph.metadata["reset"] == expect and graph.metadata["source_framework"] == "snntorch"
    held = reset == "zero" and kind != "Leaky" and (delay or kind == "RSynaptic")
    late = reset == "subtract" and (delay or kind == "RSynaptic")
    assert graph.metadata["reset_delay"] == (held or late), graph.metadata
    assert graph.metadata.get("reset_guard", False) == (reset == "subtract" and not late)


@pytest.mark.parametrize("kind", ["Leaky", "Synaptic"])
def test_init_hidden_sequential_is_the_same_model(kind):
    seq, chain = two_layer(kind, "subtract", True, explicit=False), two_layer(kind, "subtract", True)
    x = inputs(seed=11)
    graph, prog = export_and_lower(seq)
    check_same_spikes(graph, simulate(prog, x), run_snntorch(seq, x))
    g2 = api.export(chain, dt=DT)
    assert [type(n).__name__ for n in graph.nodes.values()] == [type(n).__name__ for n in g2.nodes.values()]


def test_a_reset_rule_that_differs_would_be_caught():
    """The comparison can fail: the same weights exported as reset by subtraction without the delay
    (the rule nirdeploy would use if it ignored snnTorch's delay) give other spikes."""
    model = two_layer("Leaky", "subtract", True)
    x = inputs()
    graph, prog = export_and_lower(model)
    wrong = lower(graph, discretization_of(graph, reset_delay=False))
    want = run_snntorch(model, x)
    res = simulate(wrong, x)
    tm = graph.metadata["torch_modules"]
    assert any(not np.array_equal(np.asarray(res.spikes[k]).astype(bool), want[tm[k]]) for k in res.spikes)


def test_beta_becomes_a_time_constant_whose_euler_coefficient_is_beta():
    beta = np.random.default_rng(0).uniform(0.3, 0.999, 2000).astype(np.float32).astype(np.float64)
    tau = time_constant(beta, DT)
    a = 1.0 + DT * (-1.0 / tau)
    assert np.all(np.abs(a - beta) <= np.spacing(beta))
    assert np.mean(a == beta) > 0.9  # bit for bit where a float64 tau exists
    assert np.all(np.abs(tau - DT / (1 - beta)) <= 1e-9 * tau)
    # and the lowered layer carries exactly these coefficients: A = beta, B = 1
    model = two_layer("Leaky", "subtract", True)
    graph, prog = export_and_lower(model)
    op = prog.ops["layers.1"]
    b = model.layers[1].beta.double().numpy()
    assert np.max(np.abs(op.ssm.A[:, 0, 0] - b)) <= np.max(np.spacing(b)) and np.all(op.ssm.B == 1.0)


def test_synaptic_coefficients():
    model = two_layer("Synaptic", "subtract", True)
    graph, prog = export_and_lower(model)
    op = prog.ops["layers.1"]
    m = model.layers[1]
    al, be = m.alpha.double().numpy(), m.beta.double().numpy()
    A, B = op.ssm.A, op.ssm.B
    eps = 2.3e-16
    assert np.max(np.abs(A[:, 0, 0] - al)) <= eps and np.max(np.abs(A[:, 1, 1] - be)) <= eps
    assert np.max(np.abs(A[:, 1, 0] - al)) <= eps and np.all(A[:, 0, 1] == 0)
    assert np.all(B[:, 0] == 1.0) and np.max(np.abs(B[:, 1] - 1)) <= eps


def test_time_loop_forward_with_explicit_states():
    """The snnTorch tutorials' form: forward loops over x[step] and returns stacked records."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.lif1 = linear(N_IN, N1, 1, mean=0.2), snn.Leaky(beta=0.9)
            self.fc2, self.lif2 = linear(N1, N2, 4, mean=0.1), snn.Leaky(beta=0.8)

        def forward(self, x):
            mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            rec = []
            for step in range(x.shape[0]):
                spk1, mem1 = self.lif1(self.fc1(x[step]), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1.to(x.dtype)), mem2)
                rec.append(spk2)
            return torch.stack(rec)

    net = Net()
    x = inputs()
    graph, prog = export_and_lower(net)
    assert list(graph.metadata["torch_modules"].values()) == ["fc1", "lif1", "fc2", "lif2"]
    ref = simulate(prog, x)
    with torch.no_grad():
        out = net.double()(torch.as_tensor(x).transpose(0, 1)).transpose(0, 1).numpy() > 0.5
    assert 0.02 < out.mean() < 0.95 and np.array_equal(np.asarray(ref.spikes["lif2"]).astype(bool), out)


def conv_net():
    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3 + 0.08)
        conv.bias.copy_(torch.rand(4, generator=g) * 0.2)
        bn.running_mean.copy_(torch.rand(4, generator=g) * 0.2)
        bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(4, generator=g) + 0.5)
        bn.bias.copy_(torch.rand(4, generator=g) * 0.2)
    beta = (torch.rand(4, 1, 1, generator=g) * 0.3 + 0.6)  # per channel
    return nn.Sequential(conv, bn, snn.Leaky(beta=beta, init_hidden=True), nn.AvgPool2d(2), nn.Flatten(),
                         linear(4 * 3 * 3, 5, 9, mean=0.0, std=0.3), snn.Leaky(beta=0.8, init_hidden=True, output=True)).eval()  # fmt: skip


def test_conv_net_reference():
    net = conv_net()
    x = inputs(shape=(2, 6, 6), rate=0.5)
    graph, prog = export_and_lower(net, input_shape=(2, 6, 6))
    assert "1" not in graph.nodes  # the BatchNorm is folded into the conv
    check_same_spikes(graph, simulate(prog, x), run_snntorch(net, x))


# --------------------------------------------------------------------------- refusals, one line naming the module
REFUSED = [
    (lambda: Chain([linear(N_IN, N1, 1), snn.Leaky(beta=0.9, inhibition=True)]), "'layers.1' \\(Leaky\\).*inhibition"),
    (lambda: Chain([linear(N_IN, N1, 1), snn.Leaky(beta=0.9, state_quant=lambda v: v)]), "'layers.1'.*state_quant"),
    (lambda: Chain([linear(N_IN, N1, 1), snn.Leaky(beta=0.9, graded_spikes_factor=2.0)]), "'layers.1'.*graded"),
    (lambda: Chain([linear(N_IN, N1, 1), snn.Leaky(beta=0.9), linear(N1, N2, 2), snn.Leaky(beta=0.9, reset_mechanism="zero")]),
     "mixes reset rules"),
    (lambda: Chain([linear(N_IN, N1, 1), snn.Alpha(alpha=0.9, beta=0.8)]), "'layers.1' is an snnTorch Alpha"),
    (lambda: nn.Sequential(linear(N_IN, N1, 1), snn.RSynaptic(alpha=0.5, beta=0.5, linear_features=N1, reset_delay=False,
                                                             init_hidden=True)),
     "'1' \\(RSynaptic\\) has reset_delay=False with init_hidden=True.*use reset_delay=True"),
    (lambda: Chain([linear(N_IN, N1, 1), nn.ReLU(), snn.Leaky(beta=0.9)]), "'layers.1' \\(ReLU\\) is not supported"),
]  # fmt: skip


@pytest.mark.parametrize("build,match", REFUSED)
def test_unmappable_models_are_refused_in_one_line(build, match):
    with pytest.raises(NirDeployError, match=match) as e:
        api.export(build(), dt=DT)
    assert "\n" not in str(e.value)


def test_dt_is_required():
    with pytest.raises(NirDeployError, match="snnTorch models carry no timestep.*--dt") as e:
        api.export(two_layer("Leaky", "subtract", True))
    assert "\n" not in str(e.value)


def _single(neuron_, xs):
    m = neuron_.double()
    out = [m(torch.tensor([v], dtype=torch.float64)) for v in xs]
    return [int(o[0].item()) for o in out]


def test_snntorch_subtract_without_delay_decides_against_twice_the_threshold():
    """snnTorch's reset_delay=False: after 2.5 (spike, v -> 1.5 > thr) an input of 0.6 gives
    v = 1.35 > thr but no spike (the stored v above the threshold subtracts it once more from the
    decision); an immediate subtraction would spike. reset_guard reproduces it."""
    assert _single(snn.Leaky(beta=0.5, reset_delay=False, init_hidden=True), [2.5, 0.6]) == [1, 0]


def test_snntorch_delayed_zero_reset_of_synaptic_holds_v_for_a_step():
    """Synaptic(reset_mechanism='zero') with the delay zeroes v for the step after a spike even
    when that step's current is above the threshold; reset_delay=False spikes there."""
    assert _single(snn.Synaptic(alpha=0.5, beta=0.5, reset_mechanism="zero", init_hidden=True), [1.5, 0.8]) == [1, 0]
    assert _single(snn.Synaptic(alpha=0.5, beta=0.5, reset_mechanism="zero", reset_delay=False, init_hidden=True),
                   [1.5, 0.8]) == [1, 1]  # fmt: skip


@pytest.mark.parametrize("kind,reset,delay", [("Leaky", "subtract", False), ("RLeaky", "subtract", False),
                                              ("Synaptic", "zero", True), ("Lapicque", "zero", True)])  # fmt: skip
def test_the_guard_and_the_held_reset_change_spikes(kind, reset, delay):
    """The comparison can fail: the same exports read without the guard (a plain immediate
    subtraction) or without the hold (a plain reset to 0) give other spikes than snnTorch."""
    model = two_layer(kind, reset, delay)
    x = inputs()
    graph, prog = export_and_lower(model)
    d = discretization_of(graph)
    plain = d.replace(reset_guard=False) if reset == "subtract" else d.replace(reset_delay=False)
    want = run_snntorch(model, x)
    res = simulate(lower(graph, plain), x)
    tm = graph.metadata["torch_modules"]
    assert any(not np.array_equal(np.asarray(res.spikes[k]).astype(bool), want[tm[k]]) for k in res.spikes)


def test_reset_guard_in_the_metadata():
    """reset_guard is written only when true, read back, refused with another rule, and dropped when
    a caller overrides the reset rule."""
    from toolchain.ir import Discretization

    d = Discretization(dt=DT, reset="subtract", reset_guard=True)
    assert Discretization.from_metadata(d.to_metadata()) == d and d.to_metadata()["reset_guard"] is True
    assert "reset_guard" not in Discretization(dt=DT, reset="subtract").to_metadata()
    for bad in (dict(reset="value"), dict(reset="subtract", reset_delay=True)):
        with pytest.raises(NirDeployError, match="reset_guard needs reset 'subtract' without reset_delay"):
            Discretization(dt=DT, reset_guard=True, **bad)
    with pytest.raises(NirDeployError, match="reset_guard must be true or false"):
        Discretization.from_metadata({"dt": DT, "reset": "subtract", "reset_guard": "yes"})
    graph = api.export(two_layer("Leaky", "subtract", False), dt=DT)
    assert discretization_of(graph).reset_guard
    assert not discretization_of(graph, reset="value").reset_guard
    assert not discretization_of(graph, reset_delay=True).reset_guard


# --------------------------------------------------------------------------- Lava: chains of all types per reset rule
MEANS = {"subtract": (0.25, 0.1), "zero": (0.25, 0.1), "none": (0.05, -0.02), "guard": (0.35, 0.15),
         "held": (0.25, 0.1)}  # weight means: first, others  # fmt: skip


def chain(reset):
    """All neuron types in one chain with one reset rule (subtract: the delayed one; zero: reset to
    zero; none; guard: snnTorch's subtraction without the delay; held: its delayed zero reset),
    each behind a biased Linear; the recurrent ones with a biased recurrent Linear."""
    if reset == "guard":  # RSynaptic ignores reset_delay=False and Lapicque has no such option
        kinds = [("Leaky", False), ("Synaptic", False), ("RLeaky", False), ("RLeakyV", False)]
    elif reset == "held":  # Leaky's delayed zero reset is the immediate one
        kinds = [("Synaptic", True), ("RLeaky", True), ("RSynaptic", True), ("Lapicque", True)]
    elif reset == "subtract":
        kinds = [("Leaky", True), ("Synaptic", True), ("RLeaky", True), ("RSynaptic", True), ("Lapicque", True)]
    elif reset == "zero":
        kinds = [("Leaky", True), ("Synaptic", False), ("Leaky", False), ("RLeaky", False)]
    else:
        kinds = [("Leaky", False), ("Synaptic", True), ("RLeaky", False), ("RSynaptic", True), ("Lapicque", True)]
    layers, n_prev = [], N_IN
    for i, (kind, delay) in enumerate(kinds):
        n = 8
        m0, m = MEANS[reset]
        layers.append(linear(n_prev, n, 10 + i, mean=m0 if i == 0 else m))
        rule = {"guard": "subtract", "held": "zero"}.get(reset, reset)
        layers.append(with_biased_recurrence(neuron(kind, n, rule, delay, per_neuron=i % 2 == 0, seed=20 + i), 30 + i))
        n_prev = n
    return Chain(layers)


@pytest.fixture(scope="module")
def lava_runs():
    runs = {}
    for name, model, x, shape in (
        ("subtract", chain("subtract"), inputs(samples=2, steps=20, rate=0.8, seed=1), None),
        ("zero", chain("zero"), inputs(samples=2, steps=20, rate=0.8, seed=2), None),
        ("none", chain("none"), inputs(samples=2, steps=20, rate=0.5, seed=3), None),
        ("conv", conv_net(), inputs(samples=2, steps=12, shape=(2, 6, 6), rate=0.5, seed=4), (2, 6, 6)),
        ("guard", chain("guard"), inputs(samples=2, steps=20, rate=0.8, seed=5), None),
        ("held", chain("held"), inputs(samples=2, steps=20, rate=0.8, seed=6), None),
    ):
        graph, prog = export_and_lower(model, input_shape=shape)
        runs[name] = {"graph": graph, "prog": prog, "x": x, "want": run_snntorch(model, x), "ref": simulate(prog, x),
                      "lava-float": backends.run("lava-float", prog, x)}  # fmt: skip
    return runs


@pytest.mark.parametrize("name", ["subtract", "zero", "none", "conv", "guard", "held"])
def test_reference_and_lava_float_reproduce_snntorch(lava_runs, name):
    r = lava_runs[name]
    meta = r["graph"].metadata
    assert (meta["reset"], meta["reset_delay"], meta.get("reset_guard", False)) == {
        "subtract": ("subtract", True, False), "zero": ("value", False, False), "none": ("none", False, False),
        "conv": ("subtract", True, False), "guard": ("subtract", False, True), "held": ("value", True, False)}[name]  # fmt: skip
    rec = [n for k, n in r["graph"].nodes.items() if k.endswith(".recurrent") and hasattr(n, "bias")]
    if name not in ("conv", "guard"):  # chains with an RSynaptic / RLeaky: biased recurrent Linears, on Lava too
        assert rec and all(np.all(np.asarray(n.bias) > 0) for n in rec)
    check_same_spikes(r["graph"], r["ref"], r["want"], min_rate=0.01)
    check_same_spikes(r["graph"], r["lava-float"], r["want"], min_rate=0.01)


@pytest.mark.parametrize("name,layers", [("subtract", 5), ("guard", 4), ("held", 4)])
def test_emulator_and_lava_fixed_agree_bit_for_bit_on_an_snntorch_export(lava_runs, name, layers):
    from toolchain.loihi.quantize import quantize

    r = lava_runs[name]
    fx = quantize(r["prog"])
    emu = backends.run("emulator", r["prog"], r["x"], quant=fx)
    fixed = backends.run("lava-fixed", r["prog"], r["x"], quant=fx)
    assert sorted(emu.spikes) == sorted(fixed.spikes) and len(emu.spikes) == layers
    for k in emu.spikes:
        assert np.asarray(emu.spikes[k]).mean() > 0.01, k
        assert np.array_equal(np.asarray(emu.spikes[k]), np.asarray(fixed.spikes[k])), k


# --------------------------------------------------------------------------- the CLI
FACTORY = '''
import torch
import snntorch as snn

readout = "sum"

def build(n_hidden=12):
    return torch.nn.Sequential(torch.nn.Linear(6, n_hidden), snn.Leaky(beta=0.9, init_hidden=True),
                               torch.nn.Linear(n_hidden, 4), snn.Synaptic(alpha=0.7, beta=0.8, init_hidden=True))
'''


def test_cli_export_round_trip(tmp_path):
    from exporters.checkpoint import save_checkpoint

    (tmp_path / "snn_factory.py").write_text(textwrap.dedent(FACTORY))
    sys.path.insert(0, str(tmp_path))
    try:
        import snn_factory

        torch.manual_seed(0)
        model = snn_factory.build(n_hidden=10)
        with torch.no_grad():
            model[0].weight.add_(0.1)
            model[2].weight.add_(0.3)
        save_checkpoint(model, {"model_kwargs": {"n_hidden": 10}}, str(tmp_path / "ck.pt"))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("snn_factory", None)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}")
    cmd = [sys.executable, "-m", "toolchain.cli.main", "export", "--model", "snn_factory:build", "--checkpoint", "ck.pt"]
    r = subprocess.run(cmd + ["-o", "m.nir"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--dt" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run(cmd + ["--dt", "1e-3", "-o", "m.nir"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    graph = load_graph(str(tmp_path / "m.nir"))
    meta = graph_metadata(graph)
    assert meta["dt"] == 1e-3 and meta["source_framework"] == "snntorch" and meta["reset_delay"] is True
    assert meta["model_factory"] == "snn_factory:build" and meta["readout"] == "sum", meta
    x = inputs(seed=5, rate=0.5)
    res = simulate(lower(graph, discretization_of(graph)), x)
    check_same_spikes(graph, res, run_snntorch(model, x), min_rate=0.01)


@pytest.mark.parametrize("name", ["guard", "held"])
def test_the_new_rules_matter_on_the_lava_chains_and_a_net_refuses_them(lava_runs, name):
    """The chains reach the cases where snnTorch's rules differ from the plain ones (so Lava's
    agreement above tests LIFSnnTorchReset), and the netx writer refuses them by name."""
    from exporters.nir_to_netx import netx_layers
    from toolchain.errors import UnsupportedNodeError
    from toolchain.loihi.quantize import quantize

    r = lava_runs[name]
    d = discretization_of(r["graph"])
    plain = simulate(lower(r["graph"], d.replace(reset_guard=False) if name == "guard" else d.replace(reset_delay=False)),
                     r["x"])  # fmt: skip
    tm = r["graph"].metadata["torch_modules"]
    assert any(not np.array_equal(np.asarray(plain.spikes[k]).astype(bool), r["want"][tm[k]]) for k in plain.spikes)
    how = "resets by subtraction" if name == "guard" else "holds v at its reset value.*refractory"
    with pytest.raises(UnsupportedNodeError, match=f"'layers.1' \\(.*\\) {how}.*lava-float, lava-fixed or the emulator") as e:
        netx_layers(quantize(r["prog"], profile="netx"))
    assert "\n" not in str(e.value)


def test_snntorch_itself_cannot_run_rsynaptic_without_delay_and_init_hidden():
    """The refusal above names snnTorch's own failure: its forward divides the None spike argument."""
    m = snn.RSynaptic(alpha=0.5, beta=0.5, linear_features=3, reset_delay=False, init_hidden=True)
    with pytest.raises(TypeError, match="NoneType"):
        m(torch.zeros(2, 3))


def test_cli_inspect_and_simulate_a_guarded_export(tmp_path, capsys):
    """The guard travels in the file: inspect shows it, and the file read back gives snnTorch's spikes."""
    from toolchain.cli.main import main
    from toolchain.ir import save_graph

    model = two_layer("Synaptic", "subtract", False)
    save_graph(api.export(model, dt=DT), tmp_path / "g.nir")
    assert main(["inspect", str(tmp_path / "g.nir")]) == 0
    assert "reset_guard=True" in capsys.readouterr().out
    graph = load_graph(str(tmp_path / "g.nir"))
    x = inputs(seed=3)
    check_same_spikes(graph, simulate(lower(graph, discretization_of(graph)), x), run_snntorch(model, x))
