"""toolchain/loihi/quantize.py: Loihi fixed-point parameters, their rounding errors and the state-range report.

No Lava run here (tests/test_emulator.py compares the integers' arithmetic with Lava).
"""

import math
import sys
from pathlib import Path

import nir
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.emulator import calibrated_quantize, emulate, run_emulator  # noqa: E402
from toolchain.loihi.plan import check_integer_inputs  # noqa: E402
from simulators.reference import simulate  # noqa: E402
from toolchain.errors import NirDeployError, UnsupportedNodeError  # noqa: E402
from toolchain.ir import Discretization, make_graph  # noqa: E402
from toolchain.program import lower  # noqa: E402
from toolchain.loihi.bits import (  # noqa: E402
    BIAS_MANT_MAX,
    NETX_BIAS_EXP,
    STATE_MAX,
    VTH_MANT_LIMIT,
    VTH_MANT_LIMIT_GATED,
    WEIGHT_MANT_MAX,
)
from toolchain.loihi.fixed import dequantize_weights  # noqa: E402
from toolchain.loihi.quantize import quantize  # noqa: E402
from toolchain.loihi.report import REPORT_COLUMNS, report_rows  # noqa: E402


def _chain(W1, neuron1, W2=None, neuron2=None, disc=None, bias1=None, rec=None):
    n_in = W1.shape[1]
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    nodes["fc1"] = nir.Affine(weight=W1, bias=bias1) if bias1 is not None else nir.Linear(weight=W1)
    nodes["n1"] = neuron1
    edges = [("input", "fc1"), ("fc1", "n1")]
    last, n_last = "n1", W1.shape[0]
    if rec is not None:
        nodes["rec"] = nir.Linear(weight=rec)
        edges += [("n1", "rec"), ("rec", "n1")]
    if W2 is not None:
        nodes["fc2"] = nir.Linear(weight=W2)
        nodes["n2"] = neuron2
        edges += [("n1", "fc2"), ("fc2", "n2")]
        last, n_last = "n2", W2.shape[0]
    nodes["output"] = nir.Output(output_type={"output": np.array([n_last])})
    edges.append((last, "output"))
    return lower(make_graph(nodes, edges), disc or Discretization(dt=1e-3, v_init="v_reset"))


def _lif(n, tau=1e-2, th=1.0, v_leak=0.0, v_reset=0.0):
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.full(n, v_leak), v_threshold=np.full(n, th),
                   v_reset=np.full(n, v_reset))  # fmt: skip


def _if(n, th=1.0):
    return nir.IF(r=np.ones(n), v_threshold=np.full(n, th), v_reset=np.zeros(n))


@pytest.fixture(scope="module")
def lif_prog():
    rng = np.random.default_rng(0)
    return _chain(rng.normal(0, 0.5, (8, 5)), _lif(8), rng.normal(0, 0.3, (3, 8)), _lif(3, tau=2e-2, th=0.7),
                  bias1=rng.normal(0, 0.05, 8))  # fmt: skip


# --------------------------------------------------------------------------- parameters
def test_decays_use_4096_and_lavas_du_plus_one(lif_prog):
    fx = quantize(lif_prog)
    g1, g2 = fx.groups["n1"], fx.groups["n2"]
    # exact scheme: voltage factor exp(-dt/tau); one-state neurons forget their current every step
    assert g1.dv == round((1 - math.exp(-0.1)) * 4096) == 390
    assert g2.dv == round((1 - math.exp(-0.05)) * 4096)
    assert g1.du == g2.du == 4095  # Lava adds 1: (4095 + 1) / 4096 = full decay


def test_cubalif_current_decay_subtracts_the_offset():
    rng = np.random.default_rng(1)
    node = nir.CubaLIF(tau_syn=np.full(4, 4e-3), tau_mem=np.full(4, 1e-2), r=np.ones(4), v_leak=np.zeros(4),
                       v_threshold=np.ones(4), v_reset=np.zeros(4), w_in=np.ones(4))  # fmt: skip
    prog = _chain(rng.normal(0, 1, (4, 3)), node, disc=Discretization(dt=1e-3, scheme="euler", input_convention="impulse",
                                                                        v_init="v_reset"))  # fmt: skip
    g = quantize(prog).groups["n1"]
    assert g.du == round(0.25 * 4096) - 1 == 1023  # euler: current factor 1 - dt/tau_syn = 0.75
    assert g.dv == round(0.1 * 4096) == 410


def test_weights_are_even_8_bit_mantissas_filling_the_range(lif_prog):
    fx = quantize(lif_prog)
    for c in fx.conns:
        w = c.weights
        assert np.all(w % 2 == 0) and WEIGHT_MANT_MAX - 8 <= np.abs(w).max() <= WEIGHT_MANT_MAX and c.weight_exp == 0
        K = fx.groups[c.dst].scale
        err = np.abs(dequantize_weights(w, K, 0) - c.w_float).max() / np.abs(c.w_float).max()
        assert err <= 1.0 / WEIGHT_MANT_MAX + 1e-12
    for row in fx.report["layers"]:
        assert row["weight_max_rel_error"] <= 1.0 / WEIGHT_MANT_MAX + 1e-12
        assert 0 < row["weight_rms_rel_error"] < row["weight_max_rel_error"]


def test_threshold_and_bias_mantissas(lif_prog):
    fx = quantize(lif_prog)
    for key in ("n1", "n2"):
        g, p = fx.groups[key], fx.plan.groups[key]
        assert g.vth == round(g.scale * p.vth / 64)
        assert abs(g.vth * 64 / g.scale - p.vth) < 1e-12  # K is chosen to make the threshold exact
        assert g.bias_exp == NETX_BIAS_EXP
        np.testing.assert_array_equal(g.bias_mant, np.rint(g.scale * p.bias / 64).astype(np.int64))
        assert np.all(np.abs(g.bias_mant) <= BIAS_MANT_MAX)
    assert fx.report["layers"][0]["threshold_rel_error"] < 1e-3
    assert np.any(fx.groups["n1"].bias_mant != 0)


def test_tiny_weights_keep_the_threshold_within_its_limit_and_loihi_restores_mantissa_bits():
    rng = np.random.default_rng(2)
    W = rng.normal(0, 1e-4, (6, 40))  # threshold / largest weight ~ 3000
    prog = _chain(W, _lif(6))
    fx = quantize(prog)
    g = fx.groups["n1"]
    assert g.limit == "threshold" and g.vth == VTH_MANT_LIMIT
    assert np.abs(fx.conns[0].weights).max() < WEIGHT_MANT_MAX  # netx: fewer weight bits
    fl = quantize(prog, profile="loihi")
    c = fl.conns[0]
    assert c.weight_exp < 0 and np.abs(c.weights).max() > 127  # a right shift instead
    assert fl.report["layers"][0]["weight_max_rel_error"] < fx.report["layers"][0]["weight_max_rel_error"]


def test_loihi_profile_uses_positive_exponents_when_weights_dwarf_the_threshold():
    rng = np.random.default_rng(3)
    W = rng.normal(0, 1.0, (6, 20))
    prog = _chain(W, _if(6, th=0.25), disc=Discretization(dt=1e-3, input_convention="impulse", v_init="v_reset"))
    x = rng.poisson(0.5, (4, 20, 20)).astype(float)
    fx = quantize(prog)
    assert fx.groups["n1"].vth < 64  # netx: the threshold gets only a few dozen levels
    fl = calibrated_quantize(prog, x, profile="loihi")
    assert fl.conns[0].weight_exp > 0
    assert fl.groups["n1"].vth >= 4 * fx.groups["n1"].vth  # limited by the largest possible input step
    assert fl.groups["n1"].scale > 4 * fx.groups["n1"].scale  # a finer state
    assert not fl.report["layers"][0]["saturates"]
    ref = simulate(prog, x)
    assert np.mean(run_emulator(prog, x, quant=fl).spikes["n1"] == ref.spikes["n1"]) > 0.99


def test_calibration_lowers_the_scale_where_states_would_saturate():
    rng = np.random.default_rng(4)
    W = -np.abs(rng.normal(0, 1.0, (5, 10)))  # inhibition into leak-free IF neurons: v sinks without bound
    W[:, 0] = 1.0
    prog = _chain(W, _if(5))
    x = np.zeros((3, 60, 10))
    x[:, :, 1:] = 30  # large counts
    plain = quantize(prog)
    out = emulate(plain, check_integer_inputs(prog, x), stats=True)
    assert out["stats"]["n1"]["v_saturations"] > 0  # the state range is exceeded ...
    fx = calibrated_quantize(prog, x)
    row = fx.report["layers"][0]
    assert "state" in row["scale_limited_by"] and fx.groups["n1"].scale < plain.groups["n1"].scale
    assert not row["saturates"] and row["seen_v_saturations"] == 0 and row["state_fill"] <= 0.5
    assert fx.report["calibration"]["samples"] == 3


def test_relays_and_gates_get_their_fixed_point_form():
    rng = np.random.default_rng(5)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc1": nir.Linear(weight=rng.normal(0, 1, (4, 3))),
        "l1": _lif(4),
        "fc2": nir.Linear(weight=rng.normal(0, 1, (4, 4))),
        "l2": _lif(4),
        "skip": nir.Linear(weight=rng.normal(0, 1, (4, 4))),
        "fc3": nir.Linear(weight=rng.normal(0, 1, (4, 4))),
        "l3": _lif(4),
        "rec": nir.Linear(weight=rng.normal(0, 1, (4, 4))),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "fc1"), ("fc1", "l1"), ("l1", "fc2"), ("fc2", "l2"), ("l2", "fc3"), ("fc3", "l3"),
             ("l1", "skip"), ("skip", "l3"), ("l3", "rec"), ("rec", "l3"), ("l3", "output")]  # fmt: skip
    fx = quantize(lower(make_graph(nodes, edges), Discretization(dt=1e-3, v_init="v_reset")))
    relays = [g for g in fx.groups.values() if g.role == "relay"]
    assert len(relays) == 1
    r = relays[0]
    assert (r.du, r.dv, r.vth) == (4095, 4096, 1)  # memoryless; a spike (weight 2 -> 128) beats 1 << 6
    relay_conn = next(c for c in fx.conns if c.dst == r.key)
    np.testing.assert_array_equal(relay_conn.weights, 2 * np.eye(4, dtype=np.int64))
    assert fx.plan.groups["l3"].gate == 1 and fx.groups["l3"].vth <= VTH_MANT_LIMIT_GATED
    assert fx.lag(next(c for c in fx.conns if c.src == r.key)) == 0  # the relay makes up for lif1's lower depth


def test_quantization_is_deterministic(lif_prog):
    a, b = quantize(lif_prog), quantize(lif_prog)
    for k in a.groups:
        assert a.groups[k].scale == b.groups[k].scale and a.groups[k].vth == b.groups[k].vth
    for ca, cb in zip(a.conns, b.conns):
        np.testing.assert_array_equal(ca.weights, cb.weights)


def test_report_table(lif_prog):
    fx = calibrated_quantize(lif_prog, np.random.default_rng(6).poisson(1.0, (2, 30, 5)).astype(float))
    rows = report_rows(fx.report)
    assert len(rows) == 2 and all(len(r) == len(REPORT_COLUMNS) for r in rows)
    assert rows[0][0] == "n1" and rows[0][3] == "weights" and rows[0][-1].endswith("%")
    layer = fx.report["layers"][0]
    for key in ("decays", "weights", "vth_mant", "worst_case_abs_u", "seen_max_abs_u", "seen_max_abs_v", "state_fill"):
        assert key in layer
    assert layer["seen_max_abs_v"] < STATE_MAX and not layer["saturates"]
    plain = report_rows(quantize(lif_prog).report)
    assert plain[0][-1] == "unchecked" and plain[1][-1] in ("cannot wrap", "may wrap")  # graded input: unknown range


# --------------------------------------------------------------------------- refusals
def test_decay_outside_the_12_bit_range_is_refused_naming_the_node():
    prog = _chain(np.ones((2, 2)), _lif(2, tau=5e-4), disc=Discretization(dt=1e-3, scheme="euler", v_init="v_reset"))
    with pytest.raises(UnsupportedNodeError, match="node 'n1' \\(LIF\\).*voltage decay"):
        quantize(prog)


def test_threshold_below_reset_is_refused_naming_the_node():
    prog = _chain(np.ones((2, 2)), _lif(2, th=-0.5, v_reset=0.0))
    with pytest.raises(UnsupportedNodeError, match="node 'n1' \\(LIF\\).*threshold"):
        quantize(prog)


def test_unknown_profile_is_refused(lif_prog):
    with pytest.raises(NirDeployError, match="profile"):
        quantize(lif_prog, profile="loihi3")
