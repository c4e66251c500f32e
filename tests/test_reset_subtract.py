"""Reset by subtraction on every backend (issue 10, point 3).

A graph written with nir's own API (no metadata) runs with ``reset="subtract"`` on the reference,
Lava float, Lava fixed point and the emulator; the reference is checked against a small numpy
simulation written here from NIR's equations, snnTorch's own Leaky / Synaptic are reproduced
through the threshold/beta rule (``reset_delay``), and the CLI passes ``--reset`` through.
Lava runs are few samples x few steps (each Lava process is an operating-system process).
"""

import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here, it never skips)

from simulators.emulator import run_emulator
from simulators.lava_fixed import run_lava_fixed
from simulators.lava_float import run_lava_float
from simulators.reference import simulate
from toolchain.dynamics.cuba import cuba_form
from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.ir import Discretization, discretization_of
from toolchain.loihi.quantize import quantize
from toolchain.program import lower

pytestmark = pytest.mark.lava

REPO = Path(__file__).resolve().parents[1]
DT = 1e-3
N_IN, N1, N2, N3 = 6, 10, 8, 5
TAU1 = (5e-3, 1.5e-2)  # two time constants: the LIF layer becomes two Lava processes
TS, TM = 5e-3, 1e-2


# --------------------------------------------------------------------------- the graph
def nir_graph(seed: int = 3) -> nir.NIRGraph:
    """input -> fc1 -> lif (+ recurrent rec) -> fc2 -> cuba (+ skip from the input) -> fc3 -> lif2 -> output.

    Written with nir's API only, no metadata. The recurrent LIF layer with two time constants is a
    strongly connected pair of groups (the emulator's _scan_component), cuba has two external
    inputs (_scan_numba / _scan_numpy), lif2 one (_fused_numba)."""
    rng = np.random.default_rng(seed)
    tau = np.where(np.arange(N1) % 2 == 0, TAU1[0], TAU1[1])
    nodes = {
        "input": nir.Input(input_type={"input": np.array([N_IN])}),
        "fc1": nir.Affine(weight=rng.normal(0.6, 0.6, (N1, N_IN)), bias=rng.uniform(0.0, 0.3, N1)),
        "lif": nir.LIF(tau=tau, r=np.full(N1, 2.0), v_leak=np.zeros(N1), v_threshold=rng.uniform(0.5, 1.0, N1),
                       v_reset=np.zeros(N1)),  # fmt: skip
        "rec": nir.Affine(weight=rng.normal(0.0, 0.3, (N1, N1)), bias=np.zeros(N1)),
        "fc2": nir.Affine(weight=rng.normal(0.3, 0.6, (N2, N1)), bias=np.zeros(N2)),
        "skip": nir.Affine(weight=rng.normal(0.3, 0.3, (N2, N_IN)), bias=np.zeros(N2)),
        "cuba": nir.CubaLIF(tau_syn=np.full(N2, TS), tau_mem=np.full(N2, TM), r=np.full(N2, 1.0), v_leak=np.zeros(N2),
                            v_threshold=np.full(N2, 0.8), v_reset=np.zeros(N2), w_in=np.full(N2, 2.0)),  # fmt: skip
        "fc3": nir.Affine(weight=rng.normal(0.6, 0.6, (N3, N2)), bias=rng.uniform(0.0, 0.1, N3)),
        "lif2": nir.LIF(tau=np.full(N3, 1e-2), r=np.full(N3, 1.0), v_leak=np.zeros(N3), v_threshold=np.full(N3, 0.6),
                        v_reset=np.zeros(N3)),  # fmt: skip
        "output": nir.Output(output_type={"output": np.array([N3])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "fc2"), ("fc2", "cuba"),
             ("input", "skip"), ("skip", "cuba"), ("cuba", "fc3"), ("fc3", "lif2"), ("lif2", "output")]  # fmt: skip
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def numpy_from_nir(graph: nir.NIRGraph, x: np.ndarray, subtract: bool = True):
    """Independent simulation from NIR's equations (not the project's code), forward Euler with
    the current updated first (the 'euler' scheme), an input count held over the bin:

        LIF      tau dv/dt = (v_leak - v) + r I
        CubaLIF  tau_syn di/dt = -i + w_in I,   tau_mem dv/dt = (v_leak - v) + r i
        spike    v > v_threshold, then v -= v_threshold (reset by subtraction)

    A recurrent edge delivers the previous step's spikes. Returns {layer: (spikes, v)}."""
    n = graph.nodes
    N, T, _ = x.shape
    v1, v2, i2, v3 = np.zeros((N, N1)), np.zeros((N, N2)), np.zeros((N, N2)), np.zeros((N, N3))
    z1 = np.zeros((N, N1))
    out = {k: (np.zeros((N, T, m), bool), np.zeros((N, T, m))) for k, m in (("lif", N1), ("cuba", N2), ("lif2", N3))}

    def aff(node, s):
        return s @ node.weight.T + node.bias

    def fire(v, th, k, t):
        z = v > th
        out[k][0][:, t] = z
        v = np.where(z, v - th, v) if subtract else np.where(z, 0.0, v)
        out[k][1][:, t] = v
        return v, z

    for t in range(T):
        I1 = aff(n["fc1"], x[:, t]) + aff(n["rec"], z1)
        L = n["lif"]
        v1 = v1 + DT / L.tau * ((L.v_leak - v1) + L.r * I1)
        v1, z1b = fire(v1, L.v_threshold, "lif", t)
        z1 = z1b.astype(float)
        C = n["cuba"]
        I2 = aff(n["fc2"], z1) + aff(n["skip"], x[:, t])
        i2 = i2 + DT / C.tau_syn * (-i2 + C.w_in * I2)
        v2 = v2 + DT / C.tau_mem * ((C.v_leak - v2) + C.r * i2)
        v2, z2 = fire(v2, C.v_threshold, "cuba", t)
        L2 = n["lif2"]
        v3 = v3 + DT / L2.tau * ((L2.v_leak - v3) + L2.r * aff(n["fc3"], z2.astype(float)))
        v3, _ = fire(v3, L2.v_threshold, "lif2", t)
    return out


def inputs(n_samples=3, steps=25, seed=5):
    return np.random.default_rng(seed).poisson(0.4, (n_samples, steps, N_IN)).astype(np.float64)


@pytest.fixture(scope="module")
def runs():
    g = nir_graph()
    disc = discretization_of(g, dt=DT, scheme="euler", reset="subtract")  # the graph has no metadata
    prog = lower(g, disc)
    x = inputs()
    fx = quantize(prog)
    return {
        "graph": g,
        "prog": prog,
        "x": x,
        "fx": fx,
        "ref": simulate(prog, x, record_v=True),
        "lava-float": run_lava_float(prog, x, record_v=True, progress=False),
        "lava-fixed": run_lava_fixed(prog, x, record_v=True, progress=False, quant=fx),
        "emulator": run_emulator(prog, x, record_v=True, quant=fx),
        "emulator-numpy": run_emulator(prog, x, record_v=True, quant=fx, engine="numpy"),
    }


def agreement(a, b) -> float:
    return float(np.mean(np.concatenate([(a.spikes[k] == b.spikes[k]).reshape(-1) for k in sorted(a.spikes)])))


LAYERS = ("lif", "cuba", "lif2")


# --------------------------------------------------------------------------- (a) nir graph, every backend
def test_every_layer_spikes_and_subtractions_leave_v_above_zero(runs):
    ref = runs["ref"]
    assert sorted(ref.spikes) == sorted(LAYERS)
    for k in LAYERS:
        z, v = ref.spikes[k], ref.v[k]
        assert 0.05 < z.mean() < 0.9, (k, z.mean())
        # reset to zero would leave v == 0 after each of these spikes
        assert np.count_nonzero(z & (v > 0.05)) > 10, k


def test_reference_equals_numpy_from_nir_equations(runs):
    ind = numpy_from_nir(runs["graph"], runs["x"])
    for k in LAYERS:
        np.testing.assert_array_equal(runs["ref"].spikes[k], ind[k][0], err_msg=k)
        np.testing.assert_allclose(runs["ref"].v[k], ind[k][1], rtol=0, atol=1e-9, err_msg=k)
    # the same simulation with reset to zero does not match: the comparison can fail
    zero = numpy_from_nir(runs["graph"], runs["x"], subtract=False)
    assert not all(np.array_equal(runs["ref"].spikes[k], zero[k][0]) for k in LAYERS)


def test_lava_float_equals_reference_spike_for_spike(runs):
    ref, lf = runs["ref"], runs["lava-float"]
    assert agreement(ref, lf) == 1.0
    for k in LAYERS:
        np.testing.assert_array_equal(lf.spikes[k], ref.spikes[k], err_msg=k)
        np.testing.assert_allclose(lf.v[k], ref.v[k], rtol=0, atol=1e-9, err_msg=k)
    assert len(lf.info["cuba_error"]) == 3 and all(e == 0.0 for e in lf.info["cuba_error"].values())


def test_lava_fixed_equals_emulator_bit_for_bit(runs):
    lx, em, en = runs["lava-fixed"], runs["emulator"], runs["emulator-numpy"]
    for k in LAYERS:
        np.testing.assert_array_equal(lx.spikes[k], em.spikes[k], err_msg=k)
        np.testing.assert_array_equal(lx.v[k], em.v[k], err_msg=k)
        np.testing.assert_array_equal(en.spikes[k], em.spikes[k], err_msg=k)  # numpy and numba kernels
        np.testing.assert_array_equal(en.v[k], em.v[k], err_msg=k)
    assert agreement(lx, em) == 1.0
    assert agreement(em, runs["ref"]) > 0.95  # fixed point stays close to the float model


def test_plan_and_fixed_point_carry_the_subtraction(runs):
    fx = runs["fx"]
    groups = [g for g in fx.groups.values() if g.role == "neuron"]
    assert len(fx.node_groups["lif"]) == 2 and len(groups) == 4
    for g in groups:
        assert g.v_sub is not None and g.v_sub.dtype == np.int64
        assert np.all(g.v_sub == int(g.vth) << 6)  # subtracting the threshold is exact in integers
        assert np.all(np.abs(g.v_sub) < 2**23)
    form = runs["fx"].plan.forms["lif"]
    np.testing.assert_allclose(form.v_sub, runs["prog"].ops["lif"].ssm.v_threshold)
    # the float plan scales the subtraction with the threshold normalization
    for key in fx.node_groups["lif"]:
        pg = fx.plan.groups[key]
        np.testing.assert_allclose(pg.v_sub, np.full(pg.n, pg.vth), rtol=1e-12)


def test_reset_value_gives_other_spikes(runs):
    """The subtraction is what the backends run: the same graph with reset 'value' differs."""
    prog_v = lower(runs["graph"], Discretization(dt=DT, scheme="euler", reset="value"))
    assert prog_v.ops["lif"].ssm.v_subtract is None
    ref_v = simulate(prog_v, runs["x"])
    assert agreement(ref_v, runs["ref"]) < 0.99
    em_v = run_emulator(prog_v, runs["x"])
    assert agreement(em_v, runs["emulator"]) < 0.99


def test_quantized_subtraction_other_than_the_threshold():
    """reset_delay subtracts threshold/a22: rounded to the integer scale, kept below 2^23."""
    g = nir_graph()
    prog = lower(g, Discretization(dt=DT, scheme="euler", reset="subtract", reset_delay=True))
    fx = quantize(prog)
    for g_ in fx.groups.values():
        if g_.role != "neuron":
            continue
        pg = fx.plan.groups[g_.key]
        np.testing.assert_array_equal(g_.v_sub, np.rint(g_.scale * pg.v_sub).astype(np.int64))
        assert np.all(g_.v_sub > int(g_.vth) << 6) and np.all(g_.v_sub < 2**23)
    x = inputs(4, 30, seed=9)
    em = run_emulator(prog, x)
    assert agreement(em, simulate(prog, x)) > 0.85  # 8-bit weights: a few spikes move in the recurrent layer
    assert agreement(em, run_emulator(prog, x, engine="numpy")) == 1.0
    assert agreement(em, run_emulator(lower(g, Discretization(dt=DT, scheme="euler", reset="subtract")), x)) < 0.99


# --------------------------------------------------------------------------- semantics and metadata
def test_reset_delay_metadata_roundtrip_and_errors(tmp_path):
    from toolchain.ir import load_graph, save_graph

    disc = Discretization(dt=DT, scheme="euler", reset="subtract", reset_delay=True)
    meta = disc.to_metadata()
    assert meta["reset"] == "subtract" and meta["reset_delay"] is True
    g = nir_graph()
    g.metadata = meta
    save_graph(g, tmp_path / "g.nir")
    assert discretization_of(load_graph(tmp_path / "g.nir")) == disc
    assert Discretization.from_metadata({"dt": DT}).reset_delay is False
    with pytest.raises(NirDeployError, match="reset_delay must be true or false") as e:
        Discretization.from_metadata({"dt": DT, "reset_delay": "yes"})
    assert "\n" not in str(e.value)
    assert discretization_of(g, reset_delay=False).reset_delay is False  # the override


def test_reset_delay_refuses_a_memoryless_voltage():
    n = 3
    lif = nir.LIF(tau=np.full(n, DT), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n])}), "lif": lif,
                            "output": nir.Output(output_type={"output": np.array([n])})},
                     edges=[("input", "lif"), ("lif", "output")], type_check=False)  # fmt: skip
    with pytest.raises(NirDeployError, match=r"'lif'.*a22 = 0") as e:
        lower(g, Discretization(dt=DT, scheme="euler", reset="subtract", reset_delay=True))
    assert "\n" not in str(e.value)
    lower(g, Discretization(dt=DT, scheme="euler", reset="subtract"))  # without the delay it runs


def test_cuba_form_shifts_to_the_initial_v_and_keeps_the_amount():
    from toolchain.dynamics.discretize import neuron_ssm

    n = 4
    lif = nir.LIF(tau=np.full(n, 1e-2), r=np.ones(n), v_leak=np.full(n, 0.2), v_threshold=np.full(n, 1.0),
                  v_reset=np.full(n, -0.5))  # fmt: skip
    ssm = neuron_ssm(lif, (n,), "lif", Discretization(dt=DT, reset="subtract", v_init="v_leak"))
    form = cuba_form(ssm, "lif")  # reset to value would refuse v_init != v_reset
    np.testing.assert_allclose(form.v_offset, 0.2)
    np.testing.assert_allclose(form.vth, 0.8)
    np.testing.assert_allclose(form.v_sub, 1.0)  # a difference of voltages: the shift leaves it
    with pytest.raises(UnsupportedNodeError, match="v_init"):
        cuba_form(neuron_ssm(lif, (n,), "lif", Discretization(dt=DT, v_init="v_leak")), "lif")


# --------------------------------------------------------------------------- (b) snnTorch
def _snn_graph(W, b, kind, beta, thr, alpha=None):
    """The NIR graph of snnTorch's Linear -> Leaky/Synaptic under the euler scheme: per step
    v <- beta v + I (tau = dt/(1-beta), r = tau/dt), for Synaptic i <- alpha i + I first
    (tau_syn = dt/(1-alpha), w_in = tau_syn/dt) and v <- beta v + i (tau_mem = dt/(1-beta), r = tau_mem/dt)."""
    n_out, n_in = W.shape
    one = np.ones(n_out)
    if kind == "leaky":
        tau = DT / (1 - beta)
        neuron = nir.LIF(tau=tau * one, r=tau / DT * one, v_leak=0 * one, v_threshold=thr * one, v_reset=0 * one)
    else:
        ts, tm = DT / (1 - alpha), DT / (1 - beta)
        neuron = nir.CubaLIF(tau_syn=ts * one, tau_mem=tm * one, r=tm / DT * one, v_leak=0 * one,
                             v_threshold=thr * one, v_reset=0 * one, w_in=ts / DT * one)  # fmt: skip
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}), "fc": nir.Affine(weight=W, bias=b),
             "lif": neuron, "output": nir.Output(output_type={"output": np.array([n_out])})}  # fmt: skip
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)


def _snntorch_spikes(kind, W, b, x, beta, thr, alpha=None, **kw):
    import snntorch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # snnTorch's buffers (beta, threshold) in float64 too
    try:
        fc = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            fc.weight.copy_(torch.as_tensor(W))
            fc.bias.copy_(torch.as_tensor(b))
        if kind == "leaky":
            cell = snntorch.Leaky(beta=beta, threshold=thr, reset_mechanism="subtract", **kw)
            mem = cell.init_leaky()
        else:
            cell = snntorch.Synaptic(alpha=alpha, beta=beta, threshold=thr, reset_mechanism="subtract", **kw)
            syn, mem = cell.init_synaptic()
        xt = torch.as_tensor(x)
        out = []
        with torch.no_grad():
            for t in range(x.shape[1]):
                cur = fc(xt[:, t])
                if kind == "leaky":
                    spk, mem = cell(cur, mem)
                else:
                    spk, syn, mem = cell(cur, syn, mem)
                out.append(spk.numpy() > 0)
    finally:
        torch.set_default_dtype(old)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("kind", ["leaky", "synaptic"])
def test_snntorch_subtract_with_delay_is_reproduced(kind):
    rng = np.random.default_rng(21)
    n_in, n_out, N, T = 7, 9, 4, 40
    beta, alpha, thr = 0.85, 0.6, 0.7
    W = rng.normal(0.3 if kind == "leaky" else 0.1, 0.4, (n_out, n_in))
    b = rng.uniform(-0.05, 0.1, n_out)
    x = rng.uniform(0, 1.0, (N, T, n_in)) * (rng.uniform(size=(N, T, n_in)) < 0.5)
    want = _snntorch_spikes(kind, W, b, x, beta, thr, alpha)  # reset_delay=True: snnTorch's default
    assert 0.05 < want.mean() < 0.8
    g = _snn_graph(W, b, kind, beta, thr, alpha)
    prog = lower(g, discretization_of(g, dt=DT, scheme="euler", reset="subtract", reset_delay=True))
    np.testing.assert_allclose(prog.ops["lif"].ssm.A[:, -1, -1], beta, rtol=1e-12)  # a22 is snnTorch's beta
    np.testing.assert_allclose(prog.ops["lif"].ssm.v_subtract, thr / beta, rtol=1e-12)
    got = simulate(prog, x).spikes["lif"]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # an immediate subtraction of the threshold is a different model: the test can fail
    prog0 = lower(g, discretization_of(g, dt=DT, scheme="euler", reset="subtract", reset_delay=False))
    assert not np.array_equal(simulate(prog0, x).spikes["lif"], want)


# --------------------------------------------------------------------------- (c) the CLI
def _cli(*args, cwd):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "toolchain.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_cli_simulate_with_reset_subtract_equals_the_api(tmp_path):
    g = nir_graph()
    f = tmp_path / "g.nir"
    nir.write(str(f), g)  # nir's own writer: no metadata
    x = inputs(1, 30, seed=11)[0]
    np.save(tmp_path / "x.npy", x)
    common = ["simulate", str(f), "--input", str(tmp_path / "x.npy"), "--dt", str(DT), "--scheme", "euler", "-q"]
    r = _cli(*common, "--reset", "subtract", "--trace", str(tmp_path / "t.npz"), "-o", str(tmp_path / "r.json"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ref = simulate(lower(g, Discretization(dt=DT, scheme="euler", reset="subtract")), x[None])
    with np.load(tmp_path / "t.npz") as tr:
        for k in LAYERS:
            np.testing.assert_array_equal(tr[f"{k}.spikes"].astype(bool), ref.spikes[k][0], err_msg=k)
    rec = json.loads((tmp_path / "r.json").read_text())
    assert sum(l["spikes_per_sample"] for l in rec["layers"]) == sum(int(ref.spikes[k].sum()) for k in LAYERS)
    # without --reset the graph resets to v_reset (NIR's rule): other spikes
    r = _cli(*common, "--trace", str(tmp_path / "t0.npz"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "t0.npz") as tr:
        assert not all(np.array_equal(tr[f"{k}.spikes"].astype(bool), ref.spikes[k][0]) for k in LAYERS)


def test_cli_deploy_of_a_subtract_graph_is_refused_in_one_line(tmp_path):
    f = tmp_path / "g.nir"
    nir.write(str(f), nir_graph())
    out = tmp_path / "g.net"
    r = _cli("deploy", str(f), "--dt", str(DT), "--scheme", "euler", "--reset", "subtract", "-o", str(out), "-q",
             cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    msg = lines[0]
    assert msg.startswith("nirdeploy: error: ") and "'lif'" in msg and "subtraction" in msg
    assert "resets v to zero" in msg and "lava-fixed" in msg and "emulator" in msg
    assert not out.exists()
