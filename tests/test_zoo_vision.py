"""Vision model zoo (issue 6): the spiking ResNet and the spiking DeepLab (segmentation).

* each family's exported graph reproduces the torch model's spikes exactly on the reference
  simulator (float64, every neuron layer), on random and on event inputs;
* structure: residual edges (two edges into one neuron node), dilation kept, BatchNorm folded;
* the training path (examples/zoo/resnet/fast.py) is the per-step arithmetic;
* the segmentation metric on hand-made cases with known IoU, and its wiring into run records,
  the CLI (``simulate --data`` with targets) and the report;
* one small Lava floating-point run per family: Lava's spikes equal the reference's.
"""

import json
import os

import numpy as np
import pytest
import torch

from examples.zoo.resnet.model import build_model as build_resnet
from examples.zoo.segmentation.model import build_model as build_deeplab
from exporters.torch_run import run_torch
from exporters.torch_to_nir import export_model
from simulators.reference import simulate
from toolchain.analysis import segmentation as seg
from toolchain.ir import discretization_of, load_graph, save_graph
from toolchain.program import lower

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples", "zoo")


def _randomize_bn(model, seed=0, shape=None):
    """Trained-looking BatchNorm: statistics measured on a random input (so that the folding
    matters and every layer spikes), random affine parameters."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration pass
        n = m.num_features
        m.weight.data.copy_(torch.rand(n, generator=g) * 1.5 + 1.5)
        m.bias.data.copy_(torch.rand(n, generator=g) * 0.5)
    shape = tuple(shape or model.input_shape)
    x = (torch.rand((4, 16) + shape, generator=g) < 0.15).float()
    model.train()
    with torch.no_grad():
        model.forward_sequence(x)
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def _roundtrip(graph, tmp_path):
    p = tmp_path / "m.nir"
    save_graph(graph, p)
    return load_graph(p)


def _reproduces(model, x, tmp_path, readout="sum"):
    """Export -> file -> reference simulator: every neuron layer's spikes equal torch's (float64)."""
    graph = _roundtrip(export_model(model, readout=readout), tmp_path)
    program = lower(graph, discretization_of(graph))
    out_t, rec = run_torch(model, x, graph.metadata["torch_modules"], dtype=torch.float64)
    res = simulate(program, np.asarray(x, dtype=np.float64))
    checked = 0
    for name, z in rec.items():
        if name in res.spikes:
            np.testing.assert_array_equal(z > 0, res.spikes[name], err_msg=name)
            assert res.spikes[name].any(), f"{name} never spikes: the comparison would prove nothing"
            checked += 1
    assert checked == len(res.spikes), "a spiking layer of the graph has no torch counterpart"
    np.testing.assert_allclose(res.output(), out_t, atol=1e-6)
    return graph, program, res


def _events(kind, n=2, seed=0):
    from toolchain.data.digits import make_event_digits, make_segmentation_digits

    if kind == "digits":
        _, te = make_event_digits(0, n, seed=seed, size=16, duration=0.04)
    else:
        _, te = make_segmentation_digits(0, n, seed=seed, canvas=32, digit_size=12, duration=0.04)
    return te


def _incoming(graph, node):
    return sorted(a for a, b in graph.edges if b == node)


# --------------------------------------------------------------------------- ResNet
def test_resnet_structure_and_exact_reproduction(tmp_path):
    torch.manual_seed(0)
    m = _randomize_bn(build_resnet(channels=(4, 8, 8)))
    g = torch.Generator().manual_seed(1)
    x_rand = (torch.rand(2, 25, 2, 16, 16, generator=g) < 0.15).double() * 2
    graph, program, _ = _reproduces(m, x_rand, tmp_path)
    x_ev = torch.from_numpy(_events("digits").bin(2e-3)).double()
    _reproduces(m, x_ev, tmp_path)
    # residual connections: the skip path is a second edge into the block's second neuron layer
    assert _incoming(graph, "blocks.0.lif2") == ["blocks.0.conv2", "lif_stem"]  # identity shortcut
    assert _incoming(graph, "blocks.1.lif2") == ["blocks.1.conv2", "blocks.1.short"]  # 1x1 conv shortcut
    assert tuple(graph.nodes["blocks.1.short"].weight.shape[2:]) == (1, 1)
    assert tuple(np.asarray(graph.nodes["blocks.1.short"].stride).reshape(-1)) == (2, 2)
    # BatchNorm folded into the convolutions: no BN node, and the conv carries BN's affine map
    assert not any(type(n).__name__ == "BatchNorm" for n in graph.nodes.values())
    bn, conv = m.blocks[1].bn_short, m.blocks[1].short
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    np.testing.assert_allclose(graph.nodes["blocks.1.short"].weight, conv.weight.detach().numpy() * scale[:, None, None, None], rtol=1e-5)
    np.testing.assert_allclose(graph.nodes["blocks.1.short"].bias, (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy(), rtol=1e-5, atol=1e-7)
    assert graph.metadata["readout"] == "sum"
    assert [type(graph.nodes[k]).__name__ for k in ("lif_stem", "out")] == ["LIF", "LI"]


def test_training_path_is_the_per_step_arithmetic():
    from examples.zoo.resnet.fast import run_steps

    torch.manual_seed(2)
    for m, shape in ((_randomize_bn(build_resnet(channels=(4, 8))), (2, 16, 16)), (_randomize_bn(build_deeplab(channels=(4, 8))), (2, 32, 32))):
        m = m.double()
        x = (torch.rand((2, 12) + shape) < 0.2).double()
        with torch.no_grad():
            v_seq, zs = m.forward_sequence(x)
        assert torch.equal(v_seq, run_steps(m, x))
        assert all(z.any() for z in zs)


# --------------------------------------------------------------------------- segmentation
def test_deeplab_structure_and_exact_reproduction(tmp_path):
    torch.manual_seed(3)
    m = _randomize_bn(build_deeplab(channels=(4, 8)))
    g = torch.Generator().manual_seed(4)
    x_rand = (torch.rand(2, 20, 2, 32, 32, generator=g) < 0.1).double() * 2
    graph, program, res = _reproduces(m, x_rand, tmp_path)
    ds = _events("seg")
    _reproduces(m, torch.from_numpy(ds.bin(2e-3)).double(), tmp_path)
    # dilation preserved
    dil = lambda k: tuple(int(v) for v in np.asarray(graph.nodes[k].dilation).reshape(-1))
    assert dil("enc2.0") == (2, 2) and dil("aspp1.0") == (2, 2) and dil("aspp2.0") == (4, 4) and dil("aspp0.0") == (1, 1)
    assert tuple(program.ops["aspp2.0"].out_shape) == (8, 16, 16)  # padding = dilation keeps the size
    # ASPP: three branches, each with a 1x1 classifier, summed into the readout node
    assert _incoming(graph, "out") == ["cls0", "cls1", "cls2"]
    assert not any(type(n).__name__ == "BatchNorm" for n in graph.nodes.values())
    # per-pixel output at 1/2 resolution, upsampled on the host
    assert res.output().shape == (2, 20, 11, 16, 16)
    sec = seg.segmentation_section(res.output()[:, :, :, :, :], np.zeros((2, 32, 32), np.int64))
    assert sec["output_resolution"] == [16, 16] and sec["mask_resolution"] == [32, 32]
    assert "host" in sec["upsampling_note"]


def test_iou_hand_made():
    # 2 x 3 masks, 3 classes
    target = np.array([[[0, 0, 1], [1, 2, 2]]])
    pred = np.array([[[0, 1, 1], [1, 2, 0]]])
    cm = seg.confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # class 0: tp 1, union 1 + 2 + 1 - 1 = 3 -> 1/3; class 1: tp 2, union 2 + 3 - 2 = 3 -> 2/3;
    # class 2: tp 1, union 2 + 1 - 1 = 2 -> 1/2
    np.testing.assert_allclose(seg.iou_per_class(cm), [1 / 3, 2 / 3, 1 / 2])
    assert seg.mean_iou(pred, target, 3) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    m = seg.segmentation_metrics(pred, target, 3, ["bg", "a", "b"])
    assert m["pixel_accuracy"] == pytest.approx(4 / 6)
    assert m["iou_per_class"] == pytest.approx({"bg": 1 / 3, "a": 2 / 3, "b": 1 / 2})
    # a class that neither occurs nor is predicted is left out of the mean, not counted as 0
    m4 = seg.segmentation_metrics(pred, target, 4)
    assert m4["iou_per_class"]["3"] is None and m4["mean_iou"] == pytest.approx(m["mean_iou"])
    assert seg.mean_iou(target, target, 3) == 1.0


def test_predictions_from_output_over_time():
    # output [N=1, T=2, K=2, h=2, w=2]: class 1 wins at the top-left cell only (summed over time)
    out = np.zeros((1, 2, 2, 2, 2))
    out[0, :, 0] = 1.0
    out[0, 0, 1, 0, 0] = 3.0
    p = seg.predict_masks(out, (4, 4), "sum", "nearest")
    expect = np.zeros((4, 4), np.int64)
    expect[:2, :2] = 1
    np.testing.assert_array_equal(p[0], expect)
    # "last" readout: at the last step class 0 wins everywhere
    assert seg.predict_masks(out, (4, 4), "last", "nearest").sum() == 0
    # bilinear: the scores are interpolated first, argmax after
    pb = seg.predict_masks(out, (4, 4), "sum", "bilinear")
    assert pb[0, 0, 0] == 1 and pb[0, 3, 3] == 0
    target = expect[None]
    sec = seg.segmentation_section(out, target, "sum", "nearest", class_names=["background", "x"])
    assert sec["mean_iou"] == 1.0 and sec["upsampling"] == "nearest"
    with pytest.raises(Exception, match="per-pixel"):
        seg.class_scores(np.zeros((1, 2, 3)))


def test_segmentation_record_cli_and_report(tmp_path):
    """``nirdeploy simulate --data`` with a dataset that has targets -> mean IoU in the record and
    the report; the image-level accuracy is not reported for a per-pixel output."""
    from toolchain.cli.main import main
    from toolchain.data.digits import make_segmentation_digits

    torch.manual_seed(5)
    m = _randomize_bn(build_deeplab(input_shape=(2, 16, 16), channels=(4, 8), dt=2e-3))
    nir_path = tmp_path / "seg.nir"
    save_graph(export_model(m, readout="sum"), nir_path)
    _, te = make_segmentation_digits(0, 3, seed=1, canvas=16, digit_size=8, duration=0.02)
    h5 = tmp_path / "seg.h5"
    te.save(h5)
    rec_path = tmp_path / "run.json"
    assert main(["simulate", str(nir_path), "--data", str(h5), "--backend", "reference", "-o", str(rec_path), "-q"]) == 0
    rec = json.loads(rec_path.read_text())
    s = rec["segmentation"]
    assert rec["metric"] == "mean_iou" and "accuracy" not in rec and "predictions" not in rec
    assert 0.0 <= s["mean_iou"] <= 1.0 and s["mask_resolution"] == [16, 16] and s["output_resolution"] == [8, 8]
    assert list(s["iou_per_class"])[0] == "background" and len(s["iou_per_class"]) == 11
    assert "host after the chip" in s["upsampling_note"]
    # the same numbers from the Python API
    graph = load_graph(nir_path)
    res = simulate(lower(graph, discretization_of(graph)), te.bin(2e-3))
    assert seg.segmentation_section(res.output(), te.targets)["mean_iou"] == pytest.approx(s["mean_iou"])
    from toolchain.reports.report import build_report

    out = build_report(str(rec_path), str(tmp_path / "report.html"))
    assert "segmentation" in out["sections"]
    html = (tmp_path / "report.html").read_text()
    assert "mean IoU" in html and "runs on the host after the chip" in html
    # a sweep on segmentation data scores every cell by mean IoU (its csv, plot and report too)
    sw = tmp_path / "sweep"
    assert main(["sweep", str(nir_path), "--data", str(h5), "--dt", "2e-3,4e-3", "--method", "integral",
                 "--backend", "reference", "--workers", "1", "-q", "-o", str(sw)]) == 0
    res = json.loads((sw / "sweep.json").read_text())
    assert res["metric"] == "mean_iou"
    at_source = [r for r in res["rows"] if r["dt"] == 2e-3][0]
    assert at_source["mean_iou"] == pytest.approx(s["mean_iou"])  # rho = 1 is the identity
    assert all(0.0 <= r["mean_iou"] <= 1.0 and r["accuracy"] is None for r in res["rows"])
    assert (sw / "sweep.csv").read_text().splitlines()[0].split(",")[3] == "mean_iou"
    assert (sw / "mean_iou_vs_dt.png").exists()
    build_report(str(sw), str(tmp_path / "sweep.html"))
    assert "mean IoU" in (tmp_path / "sweep.html").read_text()


# --------------------------------------------------------------------------- Lava
def _lava_equals_reference(model, x):
    from simulators.backends import run
    from toolchain.analysis.records import compare_results

    graph = export_model(model, readout="sum")
    program = lower(graph, discretization_of(graph))
    ref = simulate(program, x)
    lava = run("lava-float", program, x)
    cmp = compare_results(ref, lava)
    assert cmp["spike_agreement"] == 1.0, cmp["layers"]
    assert cmp["samples_with_identical_spikes"] == x.shape[0]
    assert all(ref.spikes[k].any() for k in ref.spikes)
    np.testing.assert_allclose(lava.output(), ref.output(), atol=1e-9)
    return lava


@pytest.mark.lava
def test_lava_float_resnet_tiny():
    torch.manual_seed(6)
    m = _randomize_bn(build_resnet(input_shape=(2, 8, 8), channels=(4, 8)))
    x = (np.random.default_rng(0).random((2, 10, 2, 8, 8)) < 0.2).astype(np.float64)
    lava = _lava_equals_reference(m, x)
    conns = lava.info.get("conns") or {}
    assert any(v == "conv" for v in conns.values())


@pytest.mark.lava
def test_lava_float_deeplab_tiny():
    torch.manual_seed(7)
    m = _randomize_bn(build_deeplab(input_shape=(2, 8, 8), channels=(4, 4)))
    x = (np.random.default_rng(1).random((2, 10, 2, 8, 8)) < 0.2).astype(np.float64)
    _lava_equals_reference(m, x)
