"""The emulator (simulators/emulator.py) against Lava's bit-accurate models (simulators/lava_fixed.py).

Bit-exact, not close: every spike and every recorded membrane potential must be identical.
Lava is imported at module level on purpose: without Lava these tests must fail, not skip.
Lava runs are few and shared (module-scoped fixtures); each runs several samples at once, one
with no input at all so that state leaking from one sample into the next would show. The
property test joins several random networks at one input so one Lava run checks all of them.
"""

import sys
from pathlib import Path

import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here)
from lava.proc.lif.process import LIFReset  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
pytestmark = pytest.mark.lava

from simulators.emulator import calibrated_quantize, HAVE_NUMBA, emulate, run_emulator  # noqa: E402
from toolchain.loihi.plan import check_integer_inputs  # noqa: E402
from simulators.lava_fixed import run_lava_fixed  # noqa: E402
from simulators.reference import simulate  # noqa: E402
from toolchain.errors import NirDeployError  # noqa: E402
from toolchain.ir import Discretization, discretization_of, load_graph, make_graph  # noqa: E402
from toolchain.program import lower  # noqa: E402
from toolchain.loihi.bits import STATE_MAX  # noqa: E402
from toolchain.loihi.quantize import quantize  # noqa: E402


# --------------------------------------------------------------------------- graphs
def _in(n):
    return nir.Input(input_type={"input": np.array([n])})


def _out(n):
    return nir.Output(output_type={"output": np.array([n])})


def _w(rng, n_in, n_out, gain):
    return rng.normal(0, gain / np.sqrt(n_in), (n_out, n_in))


def _lif(rng, n, taus=(1e-2,)):
    return nir.LIF(
        tau=rng.choice(taus, n),
        r=rng.uniform(0.8, 1.2, n),
        v_leak=rng.uniform(-0.05, 0.1, n),
        v_threshold=rng.uniform(0.8, 1.5, n),
        v_reset=rng.uniform(-0.2, 0.1, n),
    )


def _cubalif(rng, n, tau_mem=(8e-3, 1.5e-2)):
    return nir.CubaLIF(
        tau_syn=np.full(n, 4e-3),
        tau_mem=rng.choice(tau_mem, n),
        r=rng.uniform(0.8, 1.5, n),
        v_leak=rng.uniform(-0.05, 0.1, n),
        v_threshold=rng.uniform(0.8, 1.2, n),
        v_reset=rng.uniform(-0.1, 0.1, n),
        w_in=rng.uniform(0.5, 2.0, n),
    )


EULER = Discretization(dt=1e-3, scheme="euler", input_convention="impulse", v_init="v_reset")


def feedforward():
    """Affine -> LIF (three taus: three Lava processes, per-neuron thresholds, v_reset != 0) -> Affine -> LIF."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": _in(5),
        "fc1": nir.Affine(weight=_w(rng, 5, 8, 2.5), bias=rng.normal(0, 0.1, 8)),
        "lif1": _lif(rng, 8, taus=(5e-3, 1e-2, 2e-2)),
        "fc2": nir.Affine(weight=_w(rng, 8, 6, 4), bias=rng.normal(0, 0.1, 6)),
        "lif2": _lif(rng, 6),
        "output": _out(6),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    return lower(make_graph(nodes, edges), Discretization(dt=1e-3, v_init="v_reset"))


def cuba_readout():
    """Linear -> CubaLIF (euler) -> Affine -> LI readout (non-spiking: its v is the output)."""
    rng = np.random.default_rng(1)
    nodes = {
        "input": _in(4),
        "fc1": nir.Linear(weight=_w(rng, 4, 6, 2)),
        "cuba": _cubalif(rng, 6),
        "fc2": nir.Affine(weight=_w(rng, 6, 3, 2), bias=rng.normal(0, 0.1, 3)),
        "li": nir.LI(tau=np.array([1e-2, 2e-2, 1e-2]), r=np.ones(3), v_leak=np.array([0.0, 0.1, -0.1])),
        "output": _out(3),
    }
    edges = [("input", "fc1"), ("fc1", "cuba"), ("cuba", "fc2"), ("fc2", "li"), ("li", "output")]
    return lower(make_graph(nodes, edges), EULER)


def residual():
    """lif3 sums lif2 (depth 2), a skip from lif1 (a relay in Lava) and the input (a delayed input buffer)."""
    rng = np.random.default_rng(2)
    nodes = {
        "input": _in(4),
        "fc1": nir.Affine(weight=_w(rng, 4, 7, 3), bias=rng.normal(0, 0.1, 7)),
        "lif1": _lif(rng, 7),
        "fc2": nir.Affine(weight=_w(rng, 7, 7, 3), bias=rng.normal(0, 0.1, 7)),
        "lif2": _lif(rng, 7),
        "fc3": nir.Affine(weight=_w(rng, 7, 5, 3), bias=rng.normal(0, 0.1, 5)),
        "skip": nir.Linear(weight=_w(rng, 7, 5, 3)),
        "inskip": nir.Linear(weight=_w(rng, 4, 5, 2)),
        "lif3": _lif(rng, 5),
        "head": nir.Affine(weight=_w(rng, 5, 2, 1), bias=np.zeros(2)),
        "output": _out(2),
    }
    edges = [
        ("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "fc3"), ("fc3", "lif3"),
        ("lif1", "skip"), ("skip", "lif3"), ("input", "inskip"), ("inskip", "lif3"), ("lif3", "head"),
        ("head", "output"),
    ]  # fmt: skip
    return lower(make_graph(nodes, edges), Discretization(dt=1e-3, v_init="v_reset"))


def recurrent():
    """Linear -> CubaLIF (two tau_mem: two processes feeding each other) with a Linear back edge (gated in Lava)."""
    rng = np.random.default_rng(3)
    nodes = {
        "input": _in(4),
        "fc": nir.Linear(weight=_w(rng, 4, 6, 3)),
        "cuba": _cubalif(rng, 6),
        "rec": nir.Linear(weight=_w(rng, 6, 6, 1.5)),
        "output": _out(6),
    }
    edges = [("input", "fc"), ("fc", "cuba"), ("cuba", "rec"), ("rec", "cuba"), ("cuba", "output")]
    return lower(make_graph(nodes, edges), EULER)


def convolutions():
    """Input 2x10x12 -> Conv2d (stride, dilation, groups) -> IF -> SumPool2d -> Conv2d -> IF (pool folded into the
    conv) -> 1x1 Conv2d (a ResNet shortcut's kernel: its flipped copy once kept negative strides) -> IF."""
    rng = np.random.default_rng(8)

    def conv(cin, cout, k, stride=1, padding=0, dilation=1, groups=1):
        w = rng.normal(0, 0.6, (cout, cin // groups) + k)
        return nir.Conv2d(input_shape=None, weight=w, stride=stride, padding=padding, dilation=dilation,
                          groups=groups, bias=rng.normal(0, 0.05, cout))  # fmt: skip

    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 10, 12])}),
        "c1": conv(2, 4, (3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2),
        "if1": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "c2": conv(4, 4, (3, 3), padding=1),
        "if2": nir.IF(r=np.full(1, 1.5), v_threshold=np.ones(1)),
        "c3": conv(4, 3, (1, 1)),
        "if3": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
        "output": _out(3 * 4 * 3),
    }
    edges = [("input", "c1"), ("c1", "if1"), ("if1", "pool"), ("pool", "c2"), ("c2", "if2"), ("if2", "c3"),
             ("c3", "if3"), ("if3", "flat"), ("flat", "output")]  # fmt: skip
    return lower(make_graph(nodes, edges), Discretization(dt=1e-3, input_convention="impulse"))


GRAPHS = {
    "feedforward": feedforward,
    "cuba_readout": cuba_readout,
    "residual": residual,
    "recurrent": recurrent,
    "convolutions": convolutions,
}


def _counts(program, n=3, steps=30, seed=5, rate=0.8):
    """Integer counts: sample 0 strongly driven, sample 1 silent (catches leaks between samples), sample 2 random."""
    rng = np.random.default_rng(seed)
    shape = (n, steps) + tuple(program.input_shape)
    if len(program.input_shape) == 3:
        x = (rng.random(shape) < 0.2).astype(np.float64)
    else:
        x = rng.poisson(rate, shape).astype(np.float64)
        x[0] += 2
    x[1] = 0
    return x


def _assert_identical(a, b, what=""):
    assert sorted(a.spikes) == sorted(b.spikes)
    for k in a.spikes:
        mism = np.argwhere(a.spikes[k] != b.spikes[k])
        assert mism.size == 0, f"{what}: layer {k} differs at [sample, step, neuron] {mism[:5].tolist()}"
    for k in set(a.v) & set(b.v):
        np.testing.assert_array_equal(a.v[k], b.v[k], err_msg=f"{what}: v of {k}")
    for k in a.outputs:
        np.testing.assert_array_equal(a.outputs[k], b.outputs[k], err_msg=f"{what}: output {k}")


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name, make in GRAPHS.items():
        prog = make()
        x = _counts(prog)
        profile = "loihi" if name in ("recurrent", "residual") else "netx"
        fx = (calibrated_quantize(prog, x, profile=profile) if profile == "loihi" else quantize(prog, profile=profile))
        lava = run_lava_fixed(prog, x, record_v=True, progress=False, quant=fx)
        emu = run_emulator(prog, x, record_v=True, quant=fx)
        out[name] = (prog, x, fx, lava, emu)
    return out


# --------------------------------------------------------------------------- Lava vs emulator
@pytest.mark.parametrize("name", list(GRAPHS))
def test_emulator_is_bit_exact_with_lava(runs, name):
    prog, x, fx, lava, emu = runs[name]
    assert lava.backend == "lava-fixed" and emu.backend == "emulator"
    for k, z in lava.spikes.items():
        assert z.any(), f"{name}: layer {k} never spikes, the test would prove little"
    _assert_identical(lava, emu, name)
    assert sorted(emu.v) == sorted(op.name for op in prog.neurons())


def test_profiles_and_structures_are_covered(runs):
    assert runs["recurrent"][2].profile == "loihi"
    assert any(c.weight_exp != 0 for c in runs["recurrent"][2].conns + runs["residual"][2].conns)
    assert runs["residual"][3].info["relays"] == 1 and runs["recurrent"][3].info["padding"] == 1
    conv = runs["convolutions"]
    assert "pool" not in conv[2].program.ops  # folded into c2: Lava runs two Conv processes
    assert sorted(conv[3].info["conns"].values()) == ["conv", "conv", "conv"]
    assert conv[4].spikes["if3"].any()  # the 1x1 conv's layer is active: its bit-exact comparison means something
    assert len(runs["feedforward"][2].node_groups["lif1"]) == 3


def test_non_spiking_readout_is_read_from_the_integer_v(runs):
    prog, x, fx, lava, emu = runs["cuba_readout"]
    assert "li" not in emu.spikes
    np.testing.assert_array_equal(emu.outputs["output"], emu.v["li"])
    ref = simulate(prog, x)
    assert np.max(np.abs(emu.outputs["output"] - ref.outputs["output"])) < 0.02 * np.max(np.abs(ref.outputs["output"]))


def test_fixed_point_stays_close_to_the_float_reference(runs):
    for name in ("feedforward", "cuba_readout", "convolutions"):
        prog, x, fx, lava, emu = runs[name]
        ref = simulate(prog, x)
        for k in ref.spikes:
            agree = float(np.mean(ref.spikes[k] == emu.spikes[k]))
            assert agree > 0.97, f"{name}: layer {k} agrees with the float reference on only {agree:.3f}"


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed")
@pytest.mark.parametrize("name", list(GRAPHS))
def test_numba_and_numpy_engines_agree(runs, name):
    prog, x, fx, lava, emu = runs[name]
    _assert_identical(emu, run_emulator(prog, x, record_v=True, quant=fx, engine="numpy"), name)


def test_compare_backends_reports_agreement_one(runs):
    from toolchain.api import compare

    prog, x, fx, lava, emu = runs["feedforward"]
    cmp, records = compare(prog, x, np.array([0, 1, 2]), ["lava-fixed", "emulator"], progress=False)
    assert cmp["spike_agreement"] == 1.0 and cmp["samples_with_identical_spikes"] == 3
    assert cmp["prediction_agreement"] == 1.0 and cmp["output_max_abs_diff"] == 0.0
    assert records["emulator"]["backend_info"]["quantization"] == "netx"


# --------------------------------------------------------------------------- overflow arithmetic
def _extreme(fx):
    """Push a quantized network into u wraps and v saturation (integers beyond anything a quantizer picks)."""
    for g in fx.groups.values():
        if g.role != "neuron":
            continue
        g.du = -1  # no current decay: u integrates until it wraps at 24 bits
        g.dv = 0
        g.vth = 131071  # 17-bit maximum: (vth << 6) sits just below saturation
        g.bias_mant = np.where(np.arange(g.n) % 2 == 0, -4095, 4095)
        g.bias_exp = 7
    for c in fx.conns:
        c.weights = np.where(c.weights >= 0, 254, -254) if c.kind == "dense" else c.weights
        c.weight_exp = 7 if c.kind == "dense" else 0
    return fx


@pytest.fixture(scope="module")
def extreme_runs():
    prog = feedforward()
    x = _counts(prog, steps=40, rate=2.0)
    fx = _extreme(quantize(prog))
    lava = run_lava_fixed(prog, x, record_v=True, progress=False, quant=fx)
    out = emulate(fx, check_integer_inputs(prog, x), record_v=True, stats=True)
    return prog, x, fx, lava, out


def test_wraps_and_saturation_are_bit_exact(extreme_runs):
    prog, x, fx, lava, out = extreme_runs
    st = out["stats"]
    assert sum(s["u_wraps"] for s in st.values()) > 0, "the extreme network must wrap u"
    assert sum(s["v_saturations"] for s in st.values()) > 0, "... and saturate v"
    assert max(s["max_abs_u"] for s in st.values()) > STATE_MAX
    emu = run_emulator(prog, x, record_v=True, quant=fx)
    _assert_identical(lava, emu, "extreme")
    _assert_identical(emu, run_emulator(prog, x, record_v=True, quant=fx, engine="numpy"), "extreme numpy")


# --------------------------------------------------------------------------- property test
NEURONS = ("LIF", "IF", "CubaLIF", "LI")
RANDOM_SETTINGS = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                           suppress_health_check=list(HealthCheck))


@st.composite
def network_specs(draw):
    n_in = draw(st.integers(1, 6))
    subnets = []
    for _ in range(draw(st.integers(2, 3))):
        layers = []
        for li in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(NEURONS[:3] if li < 2 else NEURONS))
            layers.append(
                {
                    "kind": kind,
                    "n": draw(st.integers(1, 9)),
                    "taus": draw(st.integers(1, 2)),
                    "gain": draw(st.floats(0.5, 4.0)),
                    "bias": kind != "CubaLIF" and draw(st.booleans()),
                    "recurrent": kind != "LI" and draw(st.integers(0, 4)) == 0,
                }
            )
        if layers[-1]["kind"] == "LI" and len(layers) == 1:
            layers[-1]["kind"] = "LIF"
        subnets.append(layers)
    return {
        "n_in": n_in,
        "subnets": subnets,
        "seed": draw(st.integers(0, 2**31 - 1)),
        "steps": draw(st.integers(8, 24)),
        "rate": draw(st.floats(0.2, 2.0)),
        "profile": draw(st.sampled_from(("netx", "loihi"))),
    }


def build_random(spec):
    """Several random networks joined at one input (one Output each)."""
    rng = np.random.default_rng(spec["seed"])
    n_in = spec["n_in"]
    nodes = {"input": _in(n_in)}
    edges = []
    for s, layers in enumerate(spec["subnets"]):
        prev, n_prev = "input", n_in
        for i, L in enumerate(layers):
            n, kind = L["n"], L["kind"]
            taus = rng.uniform(2e-3, 5e-2, L["taus"])
            fc, neu = f"s{s}fc{i}", f"s{s}{kind.lower()}{i}"
            W = _w(rng, n_prev, n, L["gain"]) + L["gain"] / np.sqrt(n_prev) / 2  # mostly excitatory: layers spike
            nodes[fc] = nir.Affine(weight=W, bias=rng.normal(0, 0.2, n)) if L["bias"] else nir.Linear(weight=W)
            th = rng.uniform(0.3, 2.0, n)
            if kind == "LIF":
                nodes[neu] = nir.LIF(tau=rng.choice(taus, n), r=rng.uniform(0.5, 2, n), v_leak=rng.normal(0, 0.1, n),
                                     v_threshold=th, v_reset=rng.uniform(-0.3, 0.2, n))  # fmt: skip
            elif kind == "IF":
                nodes[neu] = nir.IF(r=rng.uniform(0.5, 2, n), v_threshold=th, v_reset=np.zeros(n))
            elif kind == "CubaLIF":
                nodes[neu] = nir.CubaLIF(tau_syn=rng.choice(taus, n), tau_mem=np.full(n, taus.max() * 1.5),
                                         r=rng.uniform(0.5, 2, n), v_leak=rng.normal(0, 0.1, n), v_threshold=th,
                                         v_reset=rng.uniform(-0.3, 0.2, n), w_in=rng.uniform(0.5, 2, n))  # fmt: skip
            else:
                nodes[neu] = nir.LI(tau=rng.choice(taus, n), r=np.ones(n), v_leak=rng.normal(0, 0.1, n))
            edges += [(prev, fc), (fc, neu)]
            if L["recurrent"]:
                nodes[f"s{s}rec{i}"] = nir.Linear(weight=_w(rng, n, n, L["gain"] / 2))
                edges += [(neu, f"s{s}rec{i}"), (f"s{s}rec{i}", neu)]
            prev, n_prev = neu, n
        nodes[f"output{s}"] = _out(n_prev)
        edges.append((prev, f"output{s}"))
    return lower(make_graph(nodes, edges), EULER)


def random_case(spec):
    """(program, inputs, quantization) of one drawn spec; sample 1 gets no input at all."""
    prog = build_random(spec)
    rng = np.random.default_rng(spec["seed"] + 1)
    x = rng.poisson(spec["rate"], (3, spec["steps"], spec["n_in"])).astype(np.float64)
    x[1] = 0
    fx = (calibrated_quantize(prog, x, profile="loihi") if spec["profile"] == "loihi" else quantize(prog, profile=spec["profile"]))
    return prog, x, fx


@RANDOM_SETTINGS
@given(network_specs())
def test_random_networks_lava_equals_emulator(spec):
    prog, x, fx = random_case(spec)
    lava = run_lava_fixed(prog, x, record_v=True, progress=False, quant=fx)
    emu = run_emulator(prog, x, record_v=True, quant=fx)
    _assert_identical(lava, emu, f"random network {spec}")


def test_random_networks_were_active():
    """The random networks the property test draws must mostly spike, or comparing spikes proves little.

    Self-contained (passes alone and in any order): it draws networks from the same strategy
    with the same settings and runs them on the emulator only (bit-exact with Lava, above).
    """
    activity = []

    @RANDOM_SETTINGS
    @given(network_specs())
    def run(spec):
        prog, x, fx = random_case(spec)
        activity.append({k: int(z.sum()) for k, z in run_emulator(prog, x, quant=fx).spikes.items()})

    run()
    assert len(activity) >= 4
    counts = [c for one in activity for c in one.values()]
    assert np.mean([c > 0 for c in counts]) > 0.6, activity


# --------------------------------------------------------------------------- the Sinabs CNN from the NIR paper
@pytest.fixture(scope="module")
def cnn_runs(conformance_file):
    g = load_graph(conformance_file("cnn_sinabs.nir"))
    prog = lower(g, discretization_of(g, dt=1e-3, input_convention="impulse"))
    rng = np.random.default_rng(7)
    x = (rng.random((2, 25, 2, 34, 34)) < 0.1).astype(np.float64)
    x[1, 12:] = 0
    return prog, x, run_lava_fixed(prog, x, progress=False), run_emulator(prog, x)


def test_cnn_sinabs_lava_equals_emulator(cnn_runs):
    prog, x, lava, emu = cnn_runs
    _assert_identical(lava, emu, "cnn_sinabs")
    assert all(z.any() for z in emu.spikes.values())
    assert list(lava.info["conns"].values()).count("conv") == 3  # two pools folded: the third conv too


# --------------------------------------------------------------------------- input checks
def test_non_integer_inputs_are_refused():
    prog = feedforward()
    with pytest.raises(NirDeployError, match="integer inputs"):
        run_emulator(prog, np.full((1, 3, 5), 0.5))
