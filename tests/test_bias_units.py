"""Constants into the synaptic current (bias units) and biased recurrent edges on every backend.

The patterns people train -- a biased Linear or a BatchNorm in front of norse's LIFCell / LICell /
LIFRecurrentCell -- must run on Lava float spike for spike with the reference, and Lava fixed
point bit for bit with the emulator. A biased recurrent edge is checked against an independent
numpy simulation written here from NIR's CubaLIF equations, under both step-0 readings.

Lava is imported at module level on purpose: without Lava these tests must fail, not skip.
"""

import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
pytestmark = pytest.mark.lava

import norse.torch as nt  # noqa: E402

from exporters.nir_to_netx import write_netx  # noqa: E402
from exporters.torch_to_nir import export_model  # noqa: E402
from simulators.backends import run  # noqa: E402
from simulators.emulator import emulate  # noqa: E402
from simulators.lava_netx import run_netx  # noqa: E402
from toolchain.data import open_dataset  # noqa: E402
from toolchain.ir import discretization_of  # noqa: E402
from toolchain.loihi.plan import check_integer_inputs, constant_inputs, plan_network  # noqa: E402
from toolchain.loihi.quantize import quantize  # noqa: E402
from toolchain.program import lower  # noqa: E402

N_SAMPLES, N_STEPS = 4, 40


def _default_data(shape=None):
    x, _ = open_dataset("default").bin_with_info(1e-3)
    x = np.asarray(x[:N_SAMPLES, :N_STEPS])
    return x if shape is None else x.reshape(x.shape[:2] + tuple(shape))


def _lif(th=0.3):
    return nt.LIFCell(nt.LIFParameters(v_th=torch.tensor(th)), dt=1e-3)


def _bn(mod):
    mod.eval()
    with torch.no_grad():
        mod.running_mean.uniform_(-0.2, 0.2)
        mod.running_var.uniform_(0.5, 2.0)
        mod.weight.uniform_(0.5, 1.5)
        mod.bias.uniform_(-0.5, 1.0)  # a bias that matters: some neurons are driven by it alone
    return mod


def _norse_model(kind):
    torch.manual_seed(0)
    if kind == "linear-bn":
        m = nt.SequentialState(torch.nn.Linear(40, 32), _bn(torch.nn.BatchNorm1d(32)), _lif(), torch.nn.Linear(32, 10), _lif())
        shape = None
    elif kind == "conv-bn":
        m = nt.SequentialState(
            torch.nn.Conv2d(1, 4, 3, padding=1), _bn(torch.nn.BatchNorm2d(4)), _lif(),
            torch.nn.Flatten(), torch.nn.Linear(160, 10), _lif(),
        )  # fmt: skip
        shape = (1, 5, 8)
    else:  # "recurrent-li"
        m = nt.SequentialState(
            torch.nn.Linear(40, 32), nt.LIFRecurrentCell(32, 32, nt.LIFParameters(v_th=torch.tensor(0.3)), dt=1e-3),
            torch.nn.Linear(32, 10), nt.LICell(dt=1e-3),
        )  # fmt: skip
        shape = None
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim > 1:
                p.mul_(3.0)  # every layer spikes on the default data
    return m, shape


def _agreement(a, b):
    eq = tot = 0
    for k in a.spikes:
        eq += int((a.spikes[k] == b.spikes[k]).sum())
        tot += a.spikes[k].size
    return eq / tot


@pytest.fixture(scope="module", params=["linear-bn", "conv-bn", "recurrent-li"])
def norse_runs(request, tmp_path_factory):
    m, shape = _norse_model(request.param)
    g = export_model(m, input_shape=shape)
    prog = lower(g, discretization_of(g))
    x = _default_data(shape)
    res = {b: run(b, prog, x) for b in ("reference", "lava-float", "emulator", "lava-fixed")}
    # the .net: what `nirdeploy deploy` writes, run in lava-dl netx
    fx = quantize(prog)
    path = tmp_path_factory.mktemp("bias") / f"{request.param}.net"
    desc = write_netx(fx, str(path))
    res["netx"] = (fx, desc, run_netx(str(path), x), emulate(fx, check_integer_inputs(prog, x), record_v=True))
    return request.param, prog, x, res


def test_norse_biased_patterns_use_bias_units(norse_runs):
    kind, prog, x, res = norse_runs
    plan = plan_network(prog, 1, 1)
    units = plan.bias_units()
    assert units, "the biased layers in front of two-state neurons must be fed by a bias unit"
    fed = {n for u in units.values() for n in u}
    two_state = {op.name for op in prog.neurons() if op.ssm.n_states == 2 and np.any(constant_inputs(prog, op.name)[0])}
    assert fed == two_state
    for name, z in res["reference"].spikes.items():  # the test is worth something only if every layer spikes
        assert 0.01 < z.mean() < 0.9, (kind, name, z.mean())


def test_norse_biased_patterns_lava_float_equals_reference(norse_runs):
    kind, prog, x, res = norse_runs
    assert _agreement(res["reference"], res["lava-float"]) == 1.0
    for o, v in res["reference"].outputs.items():
        np.testing.assert_allclose(res["lava-float"].outputs[o], v, rtol=1e-9, atol=1e-9)


def test_norse_biased_patterns_lava_fixed_equals_emulator(norse_runs):
    kind, prog, x, res = norse_runs
    assert _agreement(res["emulator"], res["lava-fixed"]) == 1.0
    for o, v in res["emulator"].outputs.items():
        assert np.array_equal(res["lava-fixed"].outputs[o], v)
    assert _agreement(res["reference"], res["emulator"]) > 0.9  # quantization moves few spikes


def test_norse_biased_patterns_netx_equals_emulator(norse_runs):
    """The .net carries the bias unit as an always-on input element/channel (first layer) or an extra
    neuron/channel of the layer in front; lava-dl netx computes the emulator's spikes."""
    kind, prog, x, res = norse_runs
    fx, desc, got, emu = res["netx"]
    layers = [l for l in desc["layers"] if l["type"] not in ("input", "flatten")]
    assert desc.get("bias_input"), "the first layer's constant needs the always-on input"
    if kind != "recurrent-li":
        assert [l["node"] for l in layers if "bias_host" in l], "the second layer's constant needs a host neuron"
    for i, l in enumerate(layers):
        g = fx.groups[fx.node_groups[l["node"]][0]]
        z = emu["spikes"][g.key]  # NIR order; netx conv layers are in Lava's (W, H, C) order
        z = z[:, :, g.idx] if l["type"] == "conv" else z
        assert z.any() and np.array_equal(got["spikes"][i], z), (kind, l["node"])
    if kind == "recurrent-li":  # the LICell readout (with its bias unit) runs on the host
        assert desc.get("host_readout") and got["runs"] == N_SAMPLES  # dense_rec driven by a bias: one run per sample
        for k, v in got["host_readout"]["v_int"].items():
            assert np.array_equal(v, emu["v"][k])
        for o, v in got["host_readout"]["outputs"].items():
            assert np.array_equal(v, res["emulator"].outputs[o])


# --------------------------------------------------------------------------- biased recurrent edges
def _recurrent_graph(rng, n_in=6, n=8, shared_taus=False):
    """nir's own API, no metadata: Input -> Affine -> CubaLIF, CubaLIF -> Affine(bias) -> CubaLIF."""
    w_in = rng.normal(0, 1.2, (n, n_in))
    b_in = rng.normal(0.1, 0.2, n)
    w_rec = rng.normal(0, 0.4, (n, n))
    b_rec = rng.uniform(0.6, 1.5, n)  # a large recurrent bias: the step-0 reading changes spikes
    tau_syn = rng.uniform(4e-3, 8e-3, n)
    tau_mem = rng.uniform(8e-3, 2e-2, n)
    if shared_taus:  # one time constant per layer: one netx layer
        tau_syn, tau_mem = np.full(n, tau_syn[0]), np.full(n, tau_mem[0])
    lif = nir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, 0.25),
        w_in=tau_syn.copy(), v_reset=np.zeros(n),
    )  # fmt: skip
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc": nir.Affine(weight=w_in, bias=b_in),
        "lif": lif,
        "rec": nir.Affine(weight=w_rec, bias=b_rec),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    params = dict(w_in=w_in, b_in=b_in, w_rec=w_rec, b_rec=b_rec, tau_syn=tau_syn, tau_mem=tau_mem, th=0.25,
                  w_in_neuron=tau_syn.copy())  # fmt: skip
    return nir.NIRGraph(nodes=nodes, edges=edges), params


def _numpy_cubalif(p, x, dt, step0):
    """NIR's CubaLIF (tau_syn di/dt = -i + w_in u, tau_mem dv/dt = v_leak - v + r i), semi-implicit
    Euler with the current first, an input count as an impulse, reset to zero; the recurrent
    Affine sees the previous step's spikes (zero before the first step) and, with step0 "none",
    delivers nothing at the first step."""
    N, T, _ = x.shape
    n = p["b_in"].size
    z_all = np.zeros((N, T, n), dtype=bool)
    for s in range(N):
        i = np.zeros(n)
        v = np.zeros(n)
        z = np.zeros(n)
        for k in range(T):
            u = p["w_in"] @ x[s, k] + p["b_in"]
            if k > 0 or step0 == "bias":
                u = u + p["w_rec"] @ z + p["b_rec"]
            i = (1 - dt / p["tau_syn"]) * i + p["w_in_neuron"] / p["tau_syn"] * u
            v = (1 - dt / p["tau_mem"]) * v + dt / p["tau_mem"] * i  # r = 1, v_leak = 0, the new current

            z = (v > p["th"]).astype(float)
            v = np.where(z > 0, 0.0, v)
            z_all[s, k] = z > 0
    return z_all


@pytest.fixture(scope="module")
def recurrent_case():
    rng = np.random.default_rng(7)
    graph, params = _recurrent_graph(rng)
    x = rng.poisson(0.4, (3, 30, 6)).astype(np.float64)
    return graph, params, x


@pytest.mark.parametrize("step0", ["bias", "none"])
def test_biased_recurrent_edge_on_every_backend(recurrent_case, step0):
    graph, params, x = recurrent_case
    dt = 1e-3
    disc = discretization_of(graph, dt=dt, scheme="euler", input_convention="impulse", recurrent_step0=step0)
    prog = lower(graph, disc)
    want = _numpy_cubalif(params, x, dt, step0)
    other = _numpy_cubalif(params, x, dt, "none" if step0 == "bias" else "bias")
    assert not np.array_equal(want, other), "the two readings must differ on this graph"
    assert 0.02 < want.mean() < 0.9
    ref = run("reference", prog, x)
    assert np.array_equal(ref.spikes["lif"], want)
    lf = run("lava-float", prog, x)
    assert np.array_equal(lf.spikes["lif"], want)
    em = run("emulator", prog, x)
    lx = run("lava-fixed", prog, x)
    assert np.array_equal(em.spikes["lif"], lx.spikes["lif"])
    assert (em.spikes["lif"] == want).mean() > 0.9
    plan = plan_network(prog, 1, 1)
    lags = sorted(k for k, g in plan.groups.items() if g.role == "bias")
    assert lags == (["bias@0"] if step0 == "bias" else ["bias@0", "bias@1-1"])


def test_step0_reading_from_metadata_and_constant_inputs(recurrent_case):
    graph, params, _ = recurrent_case
    graph.metadata = {"dt": 1e-3, "scheme": "euler", "input_convention": "impulse", "recurrent_step0": "none"}
    try:
        prog = lower(graph, discretization_of(graph))
        assert prog.disc.recurrent_step0 == "none"
        c = constant_inputs(prog, "lif")
        np.testing.assert_allclose(c[0], params["b_in"])
        np.testing.assert_allclose(c[1], params["b_rec"])
        prog = lower(graph, discretization_of(graph, recurrent_step0="bias"))
        c = constant_inputs(prog, "lif")
        assert set(c) == {0}
        np.testing.assert_allclose(c[0], params["b_in"] + params["b_rec"])
        assert prog.disc.to_metadata()["recurrent_step0"] == "bias"
    finally:
        graph.metadata = {}
    # graphs without the key get the literal reading
    prog = lower(graph, discretization_of(graph, dt=1e-3))
    assert prog.disc.recurrent_step0 == "bias"


def test_bias_unit_quantization_and_count():
    m, shape = _norse_model("linear-bn")
    g = export_model(m, input_shape=shape)
    prog = lower(g, discretization_of(g))
    fx = quantize(prog)
    units = [gg for gg in fx.groups.values() if gg.role == "bias"]
    assert len(units) == 2  # one in front of each LIFCell (depth 0 and 1)
    for u in units:  # one spike every step: v = bias_mant << bias_exp > vth << 6 from the zero state
        assert u.n == 1 and int(u.bias_eff[0]) > (u.vth << 6)
        assert u.du == 4095 and u.dv == 4096


# --------------------------------------------------------------------------- the CLI
def _cli(*args, cwd):
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "toolchain.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_cli_recurrent_step0_simulate_and_deploy(tmp_path, recurrent_case):
    graph, params, x = recurrent_case
    f = tmp_path / "rec.nir"
    nir.write(str(f), graph)  # nir's own writer: no metadata
    np.save(tmp_path / "x.npy", x[0])
    common = ["--dt", "1e-3", "--scheme", "euler", "--input-convention", "impulse"]
    for step0 in ("bias", "none"):
        r = _cli("simulate", str(f), "--input", str(tmp_path / "x.npy"), *common, "--recurrent-step0", step0, "-q",
                 "--trace", str(tmp_path / f"{step0}.npz"), cwd=tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr
        with np.load(tmp_path / f"{step0}.npz") as tr:
            assert np.array_equal(tr["lif.spikes"].astype(bool), _numpy_cubalif(params, x[:1], 1e-3, step0)[0])
    # the literal reading deploys (the recurrent bias joins the input's in one bias unit) ...
    graph, _ = _recurrent_graph(np.random.default_rng(7), shared_taus=True)
    nir.write(str(f), graph)
    r = _cli("deploy", str(f), *common, "-o", str(tmp_path / "a.net"), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # ... the late start of "none" cannot be expressed in a .net: one line that says why and what to do
    r = _cli("deploy", str(f), *common, "--recurrent-step0", "none", "-o", str(tmp_path / "b.net"), "-q", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'lif'" in lines[0] and "dense_rec" in lines[0] and "--recurrent-step0 bias" in lines[0]
    assert not (tmp_path / "b.net").exists()


def test_run_record_and_report_say_how_the_model_maps(norse_runs):
    """The run record's loihi_mapping (bias units, host readout) and the report's summary lines."""
    from toolchain.analysis.records import run_record
    from toolchain.reports.report import run_tables

    kind, prog, x, res = norse_runs
    rec = run_record(res["emulator"], prog, inputs=x)
    lm = rec["loihi_mapping"]
    assert set(lm["bias_units"]) == {n for u in plan_network(prog, 1, 1).bias_units().values() for n in u}
    readouts = [op.name for op in prog.neurons() if not op.ssm.spiking]
    assert lm["host_readout"] == readouts and (readouts != []) == (kind == "recurrent-li")
    summary = dict(run_tables(rec)["summary"][0][2])
    assert "bias units (Loihi)" in summary
    assert ("readout on the host (deploy)" in summary) == (kind == "recurrent-li")
    # the units' events are in the energy estimate: one spike per unit and step, one synop per weight
    layers = {l["name"]: l for l in rec["metrics"]["layers"]}
    for node, u in lm["bias_units"].items():
        assert layers[node]["bias_unit"]["synops_per_sample"] == u["synapses"] * x.shape[1]
    assert rec["resources"]["totals"]["bias_units"] == sum(u["units"] for u in lm["bias_units"].values())


def test_approximations_are_said_with_their_numbers(norse_runs, tmp_path):
    """Run records list what changed between the graph and what ran (issue 12, point 4)."""
    from toolchain.analysis.records import run_record
    from toolchain.reports.report import run_tables

    kind, prog, x, res = norse_runs
    rec = run_record(res["emulator"], prog, inputs=x)
    kinds = {a["kind"] for a in rec["approximations"]}
    assert "bias_unit" in kinds
    assert ("host_readout" in kinds) == (kind == "recurrent-li")
    for a in rec["approximations"]:
        assert a["message"].startswith(str(a["node"])) or a["node"] is None
    ref = run_record(res["reference"], prog, inputs=x)  # the reference runs the graph itself
    assert "bias_unit" not in {a["kind"] for a in ref.get("approximations", [])}
    # a projected (exact-scheme) CubaLIF: the error is in the record and the report's summary
    from toolchain.ir import discretization_of
    from toolchain.program import lower

    g = prog.graph
    exact = lower(g, discretization_of(g).replace(scheme="exact"))
    em = run("emulator", exact, x)
    rec = run_record(em, exact, inputs=x)
    proj = [a for a in rec["approximations"] if a["kind"] == "cuba_projection"]
    assert proj and all(0 < a["value"] < 1 for a in proj) and f"{proj[0]['value']:.3g}" in proj[0]["message"]
    summary = dict(run_tables(rec)["summary"][0][2])
    assert "cuba projection" in summary
