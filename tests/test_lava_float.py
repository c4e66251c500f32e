"""The CUBA mapping (toolchain/dynamics/cuba.py) and the Lava floating-point backend (simulators/lava_float.py).

Lava is imported at module level on purpose: without Lava these tests must fail, not skip.
The Lava runs are few and shared (module-scoped fixtures); each runs several samples at once.
"""

import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path

import nir
import numpy as np
import pytest

import lava.magma.core.run_configs  # noqa: F401  (a missing Lava fails here)
from lava.proc.lif.process import LIFReset  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
pytestmark = pytest.mark.lava

from toolchain.loihi.plan import plan_network
from simulators.lava_float import run_lava_float  # noqa: E402
from simulators.reference import simulate  # noqa: E402
from toolchain.dynamics.cuba import cuba_form, simulate_cuba, simulate_ssm, split_groups  # noqa: E402
from toolchain.errors import NirDeployError, UnsupportedNodeError  # noqa: E402
from toolchain.ir import Discretization, make_graph  # noqa: E402
from toolchain.program import lower  # noqa: E402


# --------------------------------------------------------------------------- graph builders
def _in(n):
    return nir.Input(input_type={"input": np.array([n])})


def _out(n):
    return nir.Output(output_type={"output": np.array([n])})


def _affine(rng, n_in, n_out, gain=1.0, bias=True):
    w = rng.normal(0, gain / np.sqrt(n_in), (n_out, n_in))
    b = rng.normal(0, 0.1, n_out) if bias else np.zeros(n_out)
    return nir.Affine(weight=w, bias=b)


def _linear(rng, n_in, n_out, gain=1.0):
    return nir.Linear(weight=rng.normal(0, gain / np.sqrt(n_in), (n_out, n_in)))


def _lif(rng, n, taus=(1e-2,)):
    return nir.LIF(
        tau=rng.choice(taus, n),
        r=rng.uniform(0.8, 1.2, n),
        v_leak=rng.uniform(-0.05, 0.1, n),
        v_threshold=rng.uniform(0.3, 0.6, n),  # per-neuron thresholds
        v_reset=rng.uniform(-0.2, 0.1, n),  # v_reset != 0
    )


def _cubalif(rng, n, tau_mem=(8e-3, 1.5e-2)):
    return nir.CubaLIF(
        tau_syn=np.full(n, 4e-3),
        tau_mem=rng.choice(tau_mem, n),
        r=rng.uniform(0.8, 1.5, n),
        v_leak=rng.uniform(-0.05, 0.1, n),
        v_threshold=rng.uniform(0.2, 0.4, n),
        v_reset=rng.uniform(-0.1, 0.1, n),
        w_in=rng.uniform(0.5, 2.0, n),
    )


EULER_IMPULSE = Discretization(dt=1e-3, scheme="euler", input_convention="impulse", v_init="v_reset")


def feedforward():
    """Affine -> LIF (three different taus, per-neuron thresholds, v_reset != 0) -> Affine -> LIF."""
    rng = np.random.default_rng(0)
    nodes = {
        "input": _in(5),
        "fc1": _affine(rng, 5, 8, 3),
        "lif1": _lif(rng, 8, taus=(5e-3, 1e-2, 2e-2)),
        "fc2": _affine(rng, 8, 6, 3),
        "lif2": _lif(rng, 6),
        "output": _out(6),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    g = make_graph(nodes, edges)
    return lower(g, Discretization(dt=1e-3, scheme="exact", input_convention="current", v_init="v_reset"))


def cuba_readout():
    """Linear -> CubaLIF (euler, impulse) -> Affine -> LI readout (non-spiking, v_leak != 0)."""
    rng = np.random.default_rng(1)
    nodes = {
        "input": _in(4),
        "fc1": _linear(rng, 4, 6, 2),
        "cuba": _cubalif(rng, 6),
        "fc2": _affine(rng, 6, 3, 2),
        "li": nir.LI(tau=np.array([1e-2, 2e-2, 1e-2]), r=np.ones(3), v_leak=np.array([0.0, 0.1, -0.1])),
        "output": _out(3),
    }
    edges = [("input", "fc1"), ("fc1", "cuba"), ("cuba", "fc2"), ("fc2", "li"), ("li", "output")]
    return lower(make_graph(nodes, edges), EULER_IMPULSE)


def residual():
    """Three LIF layers; lif3 sums lif2 (depth 2), a skip from lif1 (depth 1) and the input itself."""
    rng = np.random.default_rng(2)
    nodes = {
        "input": _in(4),
        "fc1": _affine(rng, 4, 7, 3),
        "lif1": _lif(rng, 7),
        "fc2": _affine(rng, 7, 7, 3),
        "lif2": _lif(rng, 7),
        "fc3": _affine(rng, 7, 5, 3),
        "skip": _linear(rng, 7, 5, 3),
        "inskip": _linear(rng, 4, 5, 2),
        "lif3": _lif(rng, 5),
        "head": _affine(rng, 5, 2),
        "output": _out(2),
    }
    edges = [
        ("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "fc3"), ("fc3", "lif3"),
        ("lif1", "skip"), ("skip", "lif3"), ("input", "inskip"), ("inskip", "lif3"), ("lif3", "head"),
        ("head", "output"),
    ]  # fmt: skip
    return lower(make_graph(nodes, edges), Discretization(dt=1e-3, v_init="v_reset"))


def recurrent():
    """Affine -> CubaLIF (euler, impulse) with a Linear back edge to itself."""
    rng = np.random.default_rng(3)
    nodes = {
        "input": _in(4),
        "fc": _affine(rng, 4, 6, 3, bias=False),
        "cuba": _cubalif(rng, 6),
        "rec": _linear(rng, 6, 6, 2),
        "output": _out(6),
    }
    edges = [("input", "fc"), ("fc", "cuba"), ("cuba", "rec"), ("rec", "cuba"), ("cuba", "output")]
    return lower(make_graph(nodes, edges), EULER_IMPULSE)


def convolutions():
    """Input 2x9x11 -> Conv2d (non-square kernel, stride, dilation, groups) -> IF -> Conv2d ('same') -> IF."""
    rng = np.random.default_rng(8)

    def conv(cin, cout, k, stride=1, padding=0, dilation=1, groups=1):
        w = rng.normal(0, 1.0, (cout, cin // groups) + k)
        return nir.Conv2d(input_shape=None, weight=w, stride=stride, padding=padding, dilation=dilation,
                          groups=groups, bias=rng.normal(0, 0.2, cout))  # fmt: skip

    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 9, 11])}),
        "c1": conv(2, 4, (3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2),
        "if1": nir.IF(r=np.ones(1), v_threshold=np.ones(1)),
        "c2": conv(4, 4, (3, 3), padding="same"),
        "if2": nir.IF(r=np.full(1, 1.5), v_threshold=np.ones(1)),  # r != 1: the kernel is scaled
        "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
        "output": _out(140),
    }
    edges = [("input", "c1"), ("c1", "if1"), ("if1", "c2"), ("c2", "if2"), ("if2", "flat"), ("flat", "output")]
    return lower(make_graph(nodes, edges), Discretization(dt=1e-3, input_convention="impulse"))


GRAPHS = {
    "feedforward": feedforward,
    "cuba_readout": cuba_readout,
    "residual": residual,
    "recurrent": recurrent,
    "convolutions": convolutions,
}


def _inputs(program, n=3, steps=30, seed=5):
    """Sample 0 strongly driven (busy until its last step), sample 1 silent, sample 2 random:
    any state or spike leaking from one sample into the next shows up in sample 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 1.0, (n, steps) + tuple(program.input_shape))
    if len(program.input_shape) == 3:  # event frames
        x = (x > 1.0).astype(np.float64)
    x[0] += 2.0
    x[1] = 0.0
    return x


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name, make in GRAPHS.items():
        prog = make()
        x = _inputs(prog)
        out[name] = (prog, x, simulate(prog, x, record_v=True), run_lava_float(prog, x, record_v=True, progress=False))
    return out


# --------------------------------------------------------------------------- Lava vs reference
@pytest.mark.parametrize("name", list(GRAPHS))
def test_spikes_equal_reference(runs, name):
    prog, x, ref, lava = runs[name]
    assert sorted(lava.spikes) == sorted(ref.spikes)
    for k in ref.spikes:
        assert ref.spikes[k].any(), f"{name}: layer {k} never spikes, the test would prove little"
        assert lava.spikes[k].shape == ref.spikes[k].shape
        mism = np.argwhere(lava.spikes[k] != ref.spikes[k])
        assert mism.size == 0, f"{name}: layer {k} differs at [sample, step, neuron] {mism[:5].tolist()}"


@pytest.mark.parametrize("name", list(GRAPHS))
def test_voltages_and_outputs_equal_reference(runs, name):
    prog, x, ref, lava = runs[name]
    assert sorted(lava.v) == sorted(ref.v) == sorted(op.name for op in prog.neurons())
    assert sorted(lava.outputs) == sorted(ref.outputs)
    for k in ref.v:
        np.testing.assert_allclose(lava.v[k], ref.v[k], rtol=0, atol=1e-9, err_msg=f"{name}: v of {k}")
    for k in ref.outputs:
        np.testing.assert_allclose(lava.outputs[k], ref.outputs[k], rtol=0, atol=1e-9, err_msg=f"{name}: output {k}")


def test_non_spiking_readout_comes_from_recorded_v(runs):
    prog, x, ref, lava = runs["cuba_readout"]
    assert "li" not in lava.spikes
    assert np.abs(ref.outputs["output"]).max() > 0.1  # the readout moves
    np.testing.assert_allclose(lava.outputs["output"], ref.v["li"], rtol=0, atol=1e-9)


def test_structure_of_the_lava_networks(runs):
    ff = runs["feedforward"][3].info
    assert ff["lava_depth"] == 2 and ff["padding"] == 0 and ff["window"] == 30
    assert ff["lif_processes"] == 4  # lif1: three taus -> three Lava processes; lif2: one
    res = runs["residual"][3].info
    assert res["lava_depth"] == 3 and res["relays"] == 1  # the skip from lif1 waits one step
    assert any(k.startswith("input@2") for k in res["conns"])  # the input reaches lif3 two steps late
    conv = runs["convolutions"][3].info
    assert conv["conns"] == {"input->if1": "conv", "if1->if2": "conv"}
    rec = runs["recurrent"][3].info
    assert rec["lava_depth"] == 1 and rec["padding"] == 1  # one gated step per window
    assert all(f == 0.0 for f in rec["cuba_error"].values())


def test_sample_alone_equals_the_same_sample_in_a_batch(runs):
    prog, x, ref, lava = runs["recurrent"]
    alone = run_lava_float(prog, x[2:3], record_v=True, progress=False)
    np.testing.assert_array_equal(alone.spikes["cuba"][0], lava.spikes["cuba"][2])
    # not bit-identical: the order in which a Lava InPort adds its incoming ports may differ between builds
    np.testing.assert_allclose(alone.v["cuba"][0], lava.v["cuba"][2], rtol=1e-12, atol=1e-12)
    assert lava.spikes["cuba"][1].sum() < lava.spikes["cuba"][0].sum()  # the silent sample stays quieter


def test_interrupted_run_stops_lava(capsys):
    prog = feedforward()
    x = _inputs(prog, n=4, steps=40)
    alive = []

    def interrupt(done, total):
        alive.append(len(multiprocessing.active_children()))
        if len(alive) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_lava_float(prog, x, progress=True, chunk=20, on_chunk=interrupt)
    assert len(alive) == 2 and alive[0] > 0  # Lava was running in child processes
    assert multiprocessing.active_children() == []  # ... and is stopped
    assert "lava-float" in capsys.readouterr().err  # the progress bar was shown


def test_ctrl_c_in_the_middle_of_a_chunk_stops_lava():
    """A real SIGINT while Lava is busy: Lava's children ignore it, the run stops cleanly."""
    prog = feedforward()
    # 200 x 100 steps: long enough that the signal, 0.3 s after the first chunk, always lands in
    # the run (with 30 samples a fast, idle machine sometimes finished first)
    x = _inputs(prog, n=200, steps=100)
    timers, chunks = [], []

    def sigint_soon(done, total):
        chunks.append((done, total))
        if not timers:  # the second chunk (1000 steps) is interrupted
            timers.append(threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)))
            timers[0].start()

    with pytest.raises(KeyboardInterrupt):
        run_lava_float(prog, x, progress=False, chunk=1000, on_chunk=sigint_soon)
    # the run stopped early: not every chunk was run
    assert chunks and chunks[-1][0] < chunks[-1][1], chunks
    assert multiprocessing.active_children() == []


def test_backend_registry_runs_lava_float(runs):
    from simulators.backends import run

    prog, x, ref, lava = runs["feedforward"]
    res = run("lava-float", prog, x[:1])
    assert res.backend == "lava-float"
    np.testing.assert_array_equal(res.spikes["lif2"], ref.spikes["lif2"][:1])


# --------------------------------------------------------------------------- refusals
def test_back_edge_that_lava_cannot_deliver_in_time():
    rng = np.random.default_rng(4)
    nodes = {
        "input": _in(3),
        "fc1": _affine(rng, 3, 4),
        "lif1": _lif(rng, 4),
        "fc2": _affine(rng, 4, 4),
        "lif2": _lif(rng, 4),
        "back": _linear(rng, 4, 4),
        "output": _out(4),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "back"), ("back", "lif1"),
             ("lif2", "output")]  # fmt: skip
    prog = lower(make_graph(nodes, edges), Discretization(dt=1e-3, v_init="v_reset"))
    with pytest.raises(UnsupportedNodeError, match="recurrent edge from 'lif2' into 'lif1'"):
        plan_network(prog, 1, 10)


def test_non_spiking_layer_feeding_a_neuron_is_refused():
    rng = np.random.default_rng(5)
    nodes = {
        "input": _in(3),
        "fc1": _affine(rng, 3, 4),
        "li": nir.LI(tau=np.full(4, 1e-2), r=np.ones(4), v_leak=np.zeros(4)),
        "fc2": _affine(rng, 4, 2),
        "lif": _lif(rng, 2),
        "output": _out(2),
    }
    edges = [("input", "fc1"), ("fc1", "li"), ("li", "fc2"), ("fc2", "lif"), ("lif", "output")]
    prog = lower(make_graph(nodes, edges), Discretization(dt=1e-3, v_init="v_reset"))
    with pytest.raises(UnsupportedNodeError, match="'li'.*non-spiking"):
        plan_network(prog, 1, 10)


def test_exact_cubalif_is_projected_and_the_error_reported():
    """The exact scheme breaks the CUBA tie: Lava runs the least-squares projection and the run
    record reports its error per layer (the reference keeps the exact matrices)."""
    from toolchain.analysis.records import run_record

    rng = np.random.default_rng(6)
    nodes = {"input": _in(3), "fc": _linear(rng, 3, 4), "cuba": _cubalif(rng, 4), "output": _out(4)}
    edges = [("input", "fc"), ("fc", "cuba"), ("cuba", "output")]
    prog = lower(make_graph(nodes, edges), Discretization(dt=1e-3, scheme="exact", v_init="v_reset"))
    res = run_lava_float(prog, np.zeros((1, 5, 3)), progress=False)
    err = res.info["cuba_error"]["cuba"]
    assert 0 < err < 0.5
    rec = run_record(res, prog, metrics=False)
    assert next(l for l in rec["layers"] if l["name"] == "cuba")["projection_error"] == pytest.approx(err)


# --------------------------------------------------------------------------- toolchain/dynamics/cuba.py
def _single(node, disc, n):
    g = make_graph({"input": _in(n), "x": node, "output": _out(n)}, [("input", "x"), ("x", "output")])
    return lower(g, disc).ops["x"].ssm


def _check_equivalent(ssm, input_bias=None, steps=300, seed=0, drive=3.0):
    rng = np.random.default_rng(seed)
    n = ssm.n
    u = rng.normal(0.2, drive, (steps, n))
    b = np.zeros(n) if input_bias is None else input_bias
    form = cuba_form(ssm, "x", input_bias=input_bias)
    assert form.exact and form.error == 0.0
    groups = split_groups(form)
    v_ref, z_ref = simulate_ssm(ssm, u + b)
    v_cuba, z_cuba = simulate_cuba(groups, n, u)
    np.testing.assert_allclose(v_cuba, v_ref, rtol=0, atol=1e-9)
    if z_ref is None:
        assert z_cuba is None
    else:
        assert z_ref.sum() > 10
        np.testing.assert_array_equal(z_cuba, z_ref)
    return form, groups


def test_cuba_one_state_lif_with_reset_offset_thresholds_and_input_bias():
    rng = np.random.default_rng(10)
    ssm = _single(_lif(rng, 6, taus=(5e-3, 2e-2)), Discretization(dt=1e-3, v_init="v_reset"), 6)
    form, groups = _check_equivalent(ssm, input_bias=rng.normal(0, 0.5, 6))
    assert np.all(form.du == 1.0)  # no current memory
    np.testing.assert_allclose(form.dv, 1 - ssm.A[:, 0, 0])
    assert len(groups) == 2 and all(np.isfinite(g.vth) for g in groups)


def test_cuba_if_and_li_with_nonzero_initial_v():
    n = 4
    if_node = nir.IF(r=np.ones(n), v_threshold=np.full(n, 1.0))
    ssm = _single(if_node, Discretization(dt=1e-3, input_convention="impulse"), n)
    _, groups = _check_equivalent(ssm)
    assert len(groups) == 1 and groups[0].dv == 0.0
    li = nir.LI(tau=np.full(n, 1e-2), r=np.ones(n), v_leak=np.array([0.3, -0.2, 0.0, 1.0]))
    ssm = _single(li, Discretization(dt=1e-3, v_init="v_leak"), n)
    assert np.any(ssm.x0 != 0)
    form, groups = _check_equivalent(ssm)
    assert not form.spiking and groups[0].vth == np.inf


@pytest.mark.parametrize("convention", ["impulse", "current"])
def test_cuba_two_state_euler_cubalif_is_exact(convention):
    rng = np.random.default_rng(11)
    node = nir.CubaLIF(
        tau_syn=rng.choice([3e-3, 6e-3], 8),
        tau_mem=rng.choice([8e-3, 1.5e-2], 8),
        r=rng.uniform(0.8, 1.5, 8),
        v_leak=rng.uniform(-0.05, 0.1, 8),
        v_threshold=rng.uniform(0.2, 0.4, 8),
        v_reset=rng.uniform(-0.1, 0.1, 8),
        w_in=rng.uniform(0.5, 2.0, 8),
    )
    disc = Discretization(dt=1e-3, scheme="euler", input_convention=convention, v_init="v_reset")
    ssm = _single(node, disc, 8)
    form, groups = _check_equivalent(ssm, drive=3.0 if convention == "impulse" else 300.0)
    np.testing.assert_allclose(form.du, 1 - ssm.A[:, 0, 0])
    np.testing.assert_allclose(form.dv, 1 - ssm.A[:, 1, 1])
    np.testing.assert_allclose(form.v_scale, 1.0)  # beta = 1: thresholds stay as they are
    assert 1 < len(groups) <= 4


def test_cuba_two_state_cubali_and_thresholds_that_cannot_be_normalized():
    n = 4
    li = nir.CubaLI(tau_syn=np.full(n, 5e-3), tau_mem=np.full(n, 1e-2), r=np.ones(n), v_leak=np.full(n, 0.2))
    ssm = _single(li, Discretization(dt=1e-3, scheme="euler", v_init="v_leak"), n)
    _check_equivalent(ssm)
    # v_threshold == v_reset for some neurons: a shifted threshold of 0 cannot be folded into a scale
    lif = nir.LIF(tau=np.full(n, 1e-2), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.array([0.0, 0.5, 0.5, 1.0]),
                  v_reset=np.zeros(n))  # fmt: skip
    ssm = _single(lif, Discretization(dt=1e-3), n)
    _, groups = _check_equivalent(ssm, drive=0.5)
    assert sorted(g.vth for g in groups) == [0.0, 0.5, 1.0]


def _refusal(node, disc, n, input_bias=None):
    ssm = _single(node, disc, n)
    with pytest.raises(NirDeployError) as info:
        cuba_form(ssm, "layer7", input_bias=input_bias)
    msg = str(info.value)
    assert "'layer7'" in msg and "\n" not in msg
    return info


def test_cuba_refusals_name_the_node():
    rng = np.random.default_rng(12)
    n = 3
    info = _refusal(_lif(rng, n), Discretization(dt=1e-3, v_init="zero"), n)  # starts at 0, resets to v_reset != 0
    assert "v_init" in str(info.value)
    ssm = _single(_cubalif(rng, n), Discretization(dt=1e-3, scheme="exact", v_init="v_reset"), n)
    with pytest.raises(UnsupportedNodeError, match="'layer7'.*CUBA tie"):
        cuba_form(ssm, "layer7", project=False)
    assert cuba_form(ssm, "layer7").error > 0  # projected by default
    # a bias into a remembered current is no longer refused: it goes to Lava's u through a bias unit
    ssm = _single(_cubalif(rng, n), EULER_IMPULSE, n)
    form = cuba_form(ssm, "layer7", input_bias=np.full(n, 0.1))
    assert form.u_bias is not None and np.all(form.u_bias != 0)
    _check_equivalent(ssm, input_bias=np.full(n, 0.1))
