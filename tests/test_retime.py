"""The retime pass: numerics, properties, the analytic constant-drive test, equivalence with norse."""

import numpy as np
import nir
import pytest
import torch
import norse.torch as nt
from hypothesis import given, settings, strategies as st

from examples.zoo.retiming import constant_drive as cd
from exporters.torch_run import run_torch
from exporters.torch_to_nir import export_model
from simulators.reference import simulate
from toolchain.errors import NirDeployError
from toolchain.ir import Discretization, discretization_of, load_graph, make_graph, save_graph
from toolchain.program import lower
from toolchain.dynamics.retiming import METHODS, power_and_sum
from toolchain.passes.retime import retime


def one_layer(kind, params, scheme, convention, dt=1e-3, n=3):
    arr = lambda v: np.full(n, float(v))
    p = {k: arr(v) for k, v in params.items()}
    node = getattr(nir, kind)(**p)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n])}),
        "fc": nir.Affine(weight=np.eye(n), bias=np.full(n, 0.05)),
        "n": node,
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    meta = Discretization(dt=dt, scheme=scheme, input_convention=convention).to_metadata()
    return make_graph(nodes, [("input", "fc"), ("fc", "n"), ("n", "output")], meta)


def ssm(graph, name="n"):
    p = lower(graph, discretization_of(graph))
    s = p.ops[name].ssm
    return s.A, s.B, s.c


taus = st.floats(2e-4, 0.2)
neuron_params = st.one_of(
    st.builds(lambda t, r, vl: ("LIF", dict(tau=t, r=r, v_leak=vl, v_threshold=1.0, v_reset=0.0)), taus, st.floats(0.2, 3), st.floats(-1, 1)),
    st.builds(lambda t, r, vl: ("LI", dict(tau=t, r=r, v_leak=vl)), taus, st.floats(0.2, 3), st.floats(-1, 1)),
    st.builds(lambda r: ("IF", dict(r=r, v_threshold=1.0, v_reset=0.0)), st.floats(0.2, 3)),
    st.builds(lambda r: ("I", dict(r=r)), st.floats(0.2, 3)),
    st.builds(
        lambda ts, tm, r, vl, w: ("CubaLIF", dict(tau_syn=ts, tau_mem=tm, r=r, v_leak=vl, w_in=w, v_threshold=1.0, v_reset=0.0)),
        taus, taus, st.floats(0.2, 3), st.floats(-1, 1), st.floats(0.2, 3),
    ),
    st.builds(lambda ts, tm, r: ("CubaLI", dict(tau_syn=ts, tau_mem=tm, r=r, v_leak=0.0, w_in=1.0)), taus, taus, st.floats(0.2, 3)),
)
conventions = st.sampled_from([("exact", "current"), ("exact", "impulse"), ("euler", "current"), ("euler", "impulse")])


def stable_for_euler(kind, params, scheme, dt):
    """euler-scheme sources need dt < tau to be meaningful (a > 0)."""
    if scheme != "euler":
        return True
    return all(params.get(k, 1.0) > dt * 1.01 for k in ("tau", "tau_syn", "tau_mem"))


@settings(max_examples=60, deadline=None)
@given(neuron_params, conventions, st.sampled_from(METHODS + ("none",)))
def test_identity_at_rho_one(np_, conv, method):
    kind, params = np_
    scheme, convention = conv
    if not stable_for_euler(kind, params, scheme, 1e-3):
        return
    g = one_layer(kind, params, scheme, convention)
    g2 = retime(g, 1e-3, method)
    for a, b in zip(ssm(g), ssm(g2)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g2.nodes["fc"].bias, g.nodes["fc"].bias)


@settings(max_examples=60, deadline=None)
@given(neuron_params, conventions, st.floats(0.2, 5), st.floats(0.2, 5))
def test_integral_composes(np_, conv, rho1, rho2):
    kind, params = np_
    scheme, convention = conv
    if not stable_for_euler(kind, params, scheme, 1e-3):
        return
    g = one_layer(kind, params, scheme, convention)
    two = retime(retime(g, 1e-3 * rho1, "integral"), 1e-3 * rho1 * rho2, "integral")
    one = retime(g, 1e-3 * rho1 * rho2, "integral")
    for a, b in zip(ssm(two), ssm(one)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(two.nodes["fc"].bias, one.nodes["fc"].bias, rtol=1e-6)
    assert two.metadata["retime"]["trained_dt"] == pytest.approx(1e-3)


def test_integral_equals_two_substeps():
    """rho = 2: one target step with input u equals two source steps with u/2 each."""
    g = one_layer("CubaLIF", dict(tau_syn=5e-3, tau_mem=2e-2, r=1.3, v_leak=0.2, w_in=1.0, v_threshold=9.0, v_reset=0.0), "euler", "impulse")
    A, B, c = ssm(g)
    At, Bt, ct = ssm(retime(g, 2e-3, "integral"))
    x = np.array([0.3, -0.7])
    u = 0.9
    two = A[0] @ (A[0] @ x + B[0] * u / 2 + c[0]) + B[0] * u / 2 + c[0]
    np.testing.assert_allclose(At[0] @ x + Bt[0] * u + ct[0], two, rtol=1e-12)


def test_limits_no_leak_and_equal_time_constants():
    # IF: A = 1, (A^rho - I)(A - I)^-1 -> rho (no division by zero)
    Ap, S = power_and_sum(np.ones((1, 1, 1)), 2.5)
    assert Ap[0, 0, 0] == 1.0 and S[0, 0, 0] == pytest.approx(2.5)
    # equal time constants: a Jordan block; integer rho must equal the plain matrix power
    g = one_layer("CubaLIF", dict(tau_syn=1e-2, tau_mem=1e-2, r=1.0, v_leak=0.0, w_in=1.0, v_threshold=1.0, v_reset=0.0), "exact", "current")
    A, B, c = ssm(g)
    At, Bt, ct = ssm(retime(g, 3e-3, "integral"))
    np.testing.assert_allclose(At[0], np.linalg.matrix_power(A[0], 3), rtol=1e-10)
    np.testing.assert_allclose(Bt[0], (np.eye(2) + A[0] + A[0] @ A[0]) @ B[0] / 3, rtol=1e-10)
    # non-integer rho: A^1.5 A^1.5 = A^3
    Ah, _, _ = ssm(retime(g, 1.5e-3, "integral"))
    np.testing.assert_allclose(Ah[0] @ Ah[0], At[0], rtol=1e-10)
    for arr in ssm(retime(one_layer("IF", dict(r=1.0, v_threshold=1.0, v_reset=0.0), "euler", "impulse"), 2.5e-3, "integral")):
        assert np.all(np.isfinite(arr))


def test_euler_refused_when_unstable():
    # tau = 2 ms at dt = 1 ms: a = e^-0.5 = 0.6065
    g = one_layer("LIF", dict(tau=2e-3, r=1.0, v_leak=0.0, v_threshold=1.0, v_reset=0.0), "exact", "current")
    with pytest.raises(NirDeployError, match=r"euler retiming of node 'n' by rho=6 is unstable"):
        retime(g, 6e-3, "euler")  # 1 - 6 (1 - 0.6065) = -1.36
    with pytest.raises(NirDeployError, match=r"rho=4 turns a decay of 0.6065 per step into -0.5739"):
        retime(g, 4e-3, "euler")  # 1 - 4 (1 - 0.6065) = -0.57: stable but sign-flipping, refused
    At, _, _ = ssm(retime(g, 2e-3, "euler"))  # 1 - 2 (1 - 0.6065) = 0.21: allowed
    assert At[0, 0, 0] == pytest.approx(1 - 2 * (1 - np.exp(-0.5)))


def test_retimed_graph_roundtrip(tmp_path):
    g = one_layer("CubaLIF", dict(tau_syn=5e-3, tau_mem=2e-2, r=1.0, v_leak=0.0, w_in=1.0, v_threshold=1.0, v_reset=0.0), "euler", "impulse")
    g2 = retime(g, 2e-3, "integral")
    assert "n" in g2.metadata["ssm"]  # the CUBA tie breaks: exact matrices are kept
    save_graph(g2, tmp_path / "r.nir")
    g3 = load_graph(tmp_path / "r.nir")
    for a, b in zip(ssm(g2), ssm(g3)):
        np.testing.assert_array_equal(a, b)
    assert g3.metadata["retime"]["method"] == "integral" and g3.metadata["dt"] == pytest.approx(2e-3)


def test_lif_integral_fits_parameters_without_override():
    g = one_layer("LIF", dict(tau=2e-2, r=1.0, v_leak=0.1, v_threshold=1.0, v_reset=0.0), "euler", "current")
    g2 = retime(g, 3e-3, "integral")
    assert not g2.metadata.get("ssm")  # a one-state neuron is always expressible
    A, B, c = ssm(g)
    At, Bt, ct = ssm(g2)
    np.testing.assert_allclose(At, A ** 3, rtol=1e-12)


@pytest.mark.parametrize("method", ["integral", "exact"])
def test_constant_drive_matches_continuous_time(method):
    """Spike count over 1 s within one spike of the continuous neuron, dt from 0.1 ms to 4 ms."""
    for neuron, graph, truth, drive in (
        ("LIF bias", cd.lif_graph(), cd.truth_lif, "bias"),
        ("LIF input", cd.lif_graph(bias=False), cd.truth_lif, "lif-input"),
        ("CubaLIF", cd.cuba_graph(), cd.truth_cuba, "input"),
    ):
        for dt in cd.DTS:
            got, want = cd.simulated(graph, dt, method, drive), truth(dt)
            assert abs(got - want) <= 1, (neuron, dt, got, want)
            assert want > 10


def test_constant_drive_tau_reference_fails_for_counts():
    """The reference method keeps per-bin drive: off by about rho for count inputs (documented)."""
    g = cd.lif_graph(bias=False)
    assert cd.simulated(g, 4e-3, "tau", "lif-input") > 3 * cd.truth_lif(4e-3)
    assert cd.simulated(g, 0.25e-3, "tau", "lif-input") == 0


def _norse_lifbox(dt, w_scale=1.0):
    torch.manual_seed(0)
    m = nt.SequentialState(
        torch.nn.Linear(8, 16),
        nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(50.0), v_th=torch.tensor(0.2)), dt=dt),
        torch.nn.Linear(16, 4),
        nt.LIFCell(nt.LIFParameters(v_th=torch.tensor(0.1)), dt=dt),
    )
    with torch.no_grad():
        m[0].weight *= w_scale
    return m


@pytest.mark.parametrize("dt_t", [0.5e-3, 2e-3])
def test_tau_retime_equals_norse_built_at_target_dt(dt_t):
    """export at 1 ms -> retime(tau) to dt_T -> simulate == the same norse model built with dt_T."""
    g = retime(export_model(_norse_lifbox(1e-3)), dt_t, "tau")
    target = _norse_lifbox(dt_t)
    x = (torch.rand(4, 60, 8, generator=torch.Generator().manual_seed(1)) < 0.3).double() * 2
    _, rec = run_torch(target, x, g.metadata["torch_modules"], dtype=torch.float64)
    res = simulate(lower(g, discretization_of(g)), x.numpy())
    for name in ("1", "3"):
        assert res.spikes[name].any()
        np.testing.assert_array_equal(res.spikes[name], rec[name] > 0)


def test_exact_retime_equals_norse_with_rescaled_counts():
    """For norse's LIFBox (current convention) the exact method divides the drive per count by rho:
    the same as the norse model at dt_T whose input weights and biases are rescaled accordingly."""
    rho = 2.0
    src = _norse_lifbox(1e-3)
    g = retime(export_model(src), 2e-3, "exact")
    target = _norse_lifbox(2e-3)
    with torch.no_grad():  # w / rho for counts; bias b becomes rho b (count rate) then / rho: unchanged
        target[0].weight.copy_(src[0].weight / rho)
        target[0].bias.copy_(src[0].bias)
        target[2].bias.copy_(src[2].bias * rho)  # LIFCell (impulse): no 1/rho, bias scaled by rho
    x = (torch.rand(4, 60, 8, generator=torch.Generator().manual_seed(2)) < 0.3).double() * 2
    _, rec = run_torch(target, x, g.metadata["torch_modules"], dtype=torch.float64)
    res = simulate(lower(g, discretization_of(g)), x.numpy())
    for name in ("1", "3"):
        np.testing.assert_array_equal(res.spikes[name], rec[name] > 0)


def test_hardware_projection_of_retimed_cubalif():
    """Integral retiming breaks the CUBA tie; the projection keeps the voltage decay, fits the
    current decay and input scale, and its impulse-response error is reported (retiming.md s4)."""
    from toolchain.dynamics.cuba import cuba_form, impulse_response, project_cuba

    g = one_layer("CubaLIF", dict(tau_syn=5e-3, tau_mem=2e-2, r=1.0, v_leak=0.0, w_in=5e-3, v_threshold=1.0, v_reset=0.0), "euler", "impulse")
    program = lower(g, discretization_of(g))
    assert cuba_form(program.ops["n"].ssm, "n").error == 0.0  # the trained model is exactly CUBA
    for rho in (0.25, 0.5, 2.0, 4.0):
        g2 = retime(g, 1e-3 * rho, "integral")
        s = lower(g2, discretization_of(g2)).ops["n"].ssm
        form = cuba_form(s, "n")
        assert 0 < form.error < 0.1, (rho, form.error)
        np.testing.assert_allclose(form.dv, 1 - s.A[:, 1, 1])  # voltage decay kept exactly
        # the reported error is the relative L2 error of v's impulse response
        a = 1 - form.du[0]
        K = 400
        k = np.arange(K)
        f = form.scale[0] * (a ** (k + 1) - s.A[0, 1, 1] ** (k + 1)) / (a - s.A[0, 1, 1])
        h = impulse_response(s.A[:1, 0, 0], s.A[:1, 1, 0], s.A[:1, 1, 1], s.B[:1, 0], s.B[:1, 1], K)[0]
        assert np.linalg.norm(f - h) / np.linalg.norm(h) == pytest.approx(form.error, rel=1e-3)
    # the example of retiming.md section 4: a_s=0.8, a_m=0.95, g=0.5, b=1, rho=2 -> B_T = [0.9, 0.6875]
    from toolchain.dynamics.retiming import integral_matrices

    A = np.array([[[0.8, 0], [0.4, 0.95]]])
    At, Bt, _ = integral_matrices(A, np.array([[1.0, 0.5]]), np.zeros((1, 2)), 2.0)
    np.testing.assert_allclose(Bt[0], [0.9, 0.6875])
    du, scale, err = project_cuba(At[:, 0, 0], At[:, 1, 0], At[:, 1, 1], Bt[:, 0], Bt[:, 1])
    assert err[0] < 0.05
