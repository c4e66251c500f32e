"""Model zoo, temporal families: static-to-event transfer (examples/zoo/transfer) and SHD-style audio
(examples/zoo/audio).

* each family's exported graph reproduces the torch model's spikes exactly on the reference
  simulator (float64, every neuron layer; small untrained instances with calibrated weights);
* the knowledge-transfer ingredients: linear CKA and the sliding (cubic) replacement schedule;
* one tiny Lava floating-point run per family: Lava's spikes equal the reference's.
"""

import numpy as np
import pytest
import torch

from examples.zoo.audio.model import build_model as build_audio
from examples.zoo.transfer.model import build_model as build_transfer
from examples.zoo.transfer.train import calibrate, linear_cka, replacement_probability, step_weights, transfer_loss
from exporters.torch_run import run_torch
from exporters.torch_to_nir import export_model
from simulators.reference import simulate
from toolchain.ir import discretization_of, load_graph, save_graph
from toolchain.program import lower


def _counts(shape, p, seed, max_count=3):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(*shape, generator=g) < p).float()
    return x * torch.randint(1, max_count + 1, shape, generator=g).float()


def _transfer_model(dt=1e-2):
    torch.manual_seed(0)
    m = build_transfer(c1=4, c2=4, dt=dt, size=8)
    calibrate(m, _counts((8, 12, 2, 8, 8), 0.2, 1), target_std=1.5)
    with torch.no_grad():  # biases: the exporter must carry the trained ones
        for mod in m:
            if hasattr(mod, "bias") and mod.bias is not None:
                mod.bias.uniform_(-0.1, 0.1)
    return m


def _audio_model(dt=4e-3):
    torch.manual_seed(0)
    m = build_audio(n_in=12, n_hidden=16, n_out=5, dt=dt)
    calibrate(m, _counts((8, 40, 12), 0.15, 2), target_std=1.5)
    return m


def _exported(model, readout, tmp_path):
    p = tmp_path / "m.nir"
    save_graph(export_model(model, readout=readout), p)
    return load_graph(p)


def _assert_reproduces(model, x, graph):
    program = lower(graph, discretization_of(graph))
    out_t, rec = run_torch(model, x, graph.metadata["torch_modules"], dtype=torch.float64)
    res = simulate(program, x.numpy(), record_v=True)
    spiking = [name for name in rec if name in res.spikes]
    for name in spiking:
        np.testing.assert_array_equal(rec[name] > 0, res.spikes[name], err_msg=name)
        assert res.spikes[name].any(), f"{name} never spikes: the test would prove nothing"
    membrane = [name for name in rec if name not in res.spikes and name in res.v]
    for name in membrane:  # non-spiking readout: its membrane potential
        np.testing.assert_allclose(res.v[name], rec[name], atol=1e-9, err_msg=name)
    np.testing.assert_allclose(res.output(), out_t, atol=1e-9)
    return program, res, spiking + membrane


# --------------------------------------------------------------------------- export == torch
def test_transfer_export_reproduces_torch(tmp_path):
    m = _transfer_model()
    g = _exported(m, "mean", tmp_path)
    types = {k: type(n).__name__ for k, n in g.nodes.items()}
    assert [types[k] for k in ("1", "4", "8")] == ["LIF", "LIF", "LI"]
    assert g.metadata["readout"] == "mean" and g.metadata["dt"] == pytest.approx(1e-2)
    _, _, spiking = _assert_reproduces(m, _counts((4, 15, 2, 8, 8), 0.2, 3).double(), g)
    assert spiking == ["1", "4", "8"]


def test_audio_export_reproduces_torch(tmp_path):
    m = _audio_model()
    g = _exported(m, "max", tmp_path)
    assert [type(g.nodes[k]).__name__ for k in ("1", "3", "5")] == ["LIF", "LIF", "LI"]
    # box cells: the current convention, for which the "tau" retiming changes the drive per spike
    assert {c["input_convention"] for c in g.metadata["node_conventions"].values()} == {"current"}
    _, _, spiking = _assert_reproduces(m, _counts((4, 60, 12), 0.15, 4).double(), g)
    assert spiking == ["1", "3", "5"]  # two spiking layers, then the LI readout's membrane


# --------------------------------------------------------------------------- CKA
def _features(n=40, p=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, generator=g, dtype=torch.float64)


def test_cka_identical_features_is_one():
    x = _features()
    assert float(linear_cka(x, x)) == pytest.approx(1.0, abs=1e-12)
    # spatial features of a conv layer are flattened per sample
    assert float(linear_cka(x.reshape(40, 2, 3, 4), x.reshape(40, 24))) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    x, y = _features(seed=0), _features(p=16, seed=1) + 0.5 * _features(p=16, seed=0)[:, :16]
    ref = float(linear_cka(x, y))
    assert 0.05 < ref < 0.95  # a value strictly between the extremes, so invariance means something
    q, _ = torch.linalg.qr(_features(n=24, p=24, seed=2))
    assert float(linear_cka(x @ q, y)) == pytest.approx(ref, rel=1e-10)
    assert float(linear_cka(x, 7.5 * y)) == pytest.approx(ref, rel=1e-10)
    assert float(linear_cka(0.01 * (x @ q), 3 * y)) == pytest.approx(ref, rel=1e-10)
    # symmetric, and a translation of the features (centering) does not matter either
    assert float(linear_cka(y, x)) == pytest.approx(ref, rel=1e-10)
    assert float(linear_cka(x + 4.0, y)) == pytest.approx(ref, rel=1e-10)
    # not invariant to an anisotropic scaling
    d = torch.ones(24, dtype=torch.float64)
    d[:4] = 20.0
    assert abs(float(linear_cka(x * d, y)) - ref) > 1e-3


def test_cka_is_differentiable():
    x = _features().requires_grad_(True)
    y = _features(seed=3)
    (1 - linear_cka(x, y)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --------------------------------------------------------------------------- sliding schedule
def test_replacement_schedule_is_cubic_from_0_to_1():
    n = 101
    p = np.array([replacement_probability(k, n) for k in range(n)])
    assert p[0] == 0.0 and p[-1] == 1.0
    assert p[50] == pytest.approx(0.125)  # (1/2)^3
    np.testing.assert_allclose(p, (np.arange(n) / (n - 1)) ** 3, rtol=1e-12)
    assert np.all(np.diff(p) > 0)
    # slow start: a quarter of the way through, fewer than 2 % of the inputs are events
    assert p[25] == pytest.approx(1 / 64)
    assert replacement_probability(10, 11, power=1.0) == 1.0
    assert replacement_probability(5, 11, power=1.0) == pytest.approx(0.5)
    assert replacement_probability(0, 1) == 1.0


# --------------------------------------------------------------------------- transfer loss
def _per_step(T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ce_s, ce_e, dom = (torch.rand(T, generator=g, dtype=torch.float64) + 0.1 for _ in range(3))
    coef = torch.randn(T, generator=g, dtype=torch.float64).requires_grad_(True)
    return ce_s, ce_e.requires_grad_(True), dom, coef


def test_normalized_step_weights_keep_the_event_loss_and_mean_one():
    ce_s, ce_e, dom, coef = _per_step()
    w = step_weights(coef, "normalized")
    assert float(w.mean()) == pytest.approx(1.0, abs=1e-12) and bool((w > 0).all())
    loss, _, l_ce, l_dom = transfer_loss(ce_s, ce_e, dom, coef, "normalized", 0.0, 0.7)
    assert float(loss) == pytest.approx(float(ce_e.mean() + 0.7 * (w * dom).mean()), rel=1e-12)
    loss.backward()
    # every step's event loss counts fully, whatever the coefficients are
    np.testing.assert_allclose(ce_e.grad.numpy(), np.full(6, 1 / 6), rtol=1e-12)
    # with equal domain losses the coefficients have nothing to gain: no gradient
    ce_s, ce_e, _, coef = _per_step(seed=1)
    loss, *_ = transfer_loss(ce_s, ce_e, torch.full((6,), 0.4, dtype=torch.float64), coef, "normalized", 0.0, 1.0)
    loss.backward()
    assert float(coef.grad.abs().max()) < 1e-12


def test_complement_weights_can_switch_the_event_loss_off():
    """The failure mode of the first reading: raising sigmoid(c_t) lowers the loss by shrinking the
    event cross-entropy's weight 1 - sigmoid(c_t) whenever that loss exceeds the domain loss."""
    ce_s, ce_e, dom, coef = _per_step()
    ce_e = ce_e.detach() + 2.0  # an untrained classifier: CE ~ ln(10) > domain loss <= 1
    loss, *_ = transfer_loss(ce_s, ce_e, dom, coef, "complement", 1.0, 1.0)
    loss.backward()
    assert bool((coef.grad < 0).all())  # gradient descent raises every c_t
    with pytest.raises(ValueError, match="coef_mode"):
        step_weights(coef, "bogus")


# --------------------------------------------------------------------------- Lava float
@pytest.mark.lava
@pytest.mark.parametrize("family", ["transfer", "audio"])
def test_lava_float_equals_reference(family, tmp_path):
    from simulators.lava_float import run_lava_float

    if family == "transfer":
        m, readout, x = _transfer_model(), "mean", _counts((2, 8, 2, 8, 8), 0.2, 5)
    else:
        m, readout, x = _audio_model(), "max", _counts((2, 60, 12), 0.2, 6)
    g = _exported(m, readout, tmp_path)
    program = lower(g, discretization_of(g))
    ref = simulate(program, x.numpy())
    lava = run_lava_float(program, x.numpy(), progress=False)
    assert set(lava.spikes) == set(ref.spikes)
    for name in ref.spikes:
        assert ref.spikes[name].any(), name
        np.testing.assert_array_equal(lava.spikes[name], ref.spikes[name], err_msg=name)
    np.testing.assert_allclose(lava.output(), ref.output(), atol=1e-9)
