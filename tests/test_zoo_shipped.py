"""The shipped zoo checkpoints (examples/zoo/<family>/checkpoint.pt): each loads with
``torch.load(weights_only=True)``, exports through the CLI, and the exported graph reproduces the
trained torch model's spikes exactly (float64, every spiking layer, the non-spiking readout's
membrane) on real test samples of its own dataset, binned at its training dt.

The smaller random instances of tests/test_zoo_vision.py and tests/test_zoo_temporal.py check
the structures; this checks the artifacts users get.
"""

import os

import numpy as np
import pytest
import torch

from exporters.checkpoint import build_model
from exporters.torch_run import run_torch
from simulators.reference import simulate
from toolchain.cli.main import main
from toolchain.data import open_dataset
from toolchain.ir import discretization_of, load_graph
from toolchain.program import lower

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: family -> (dataset spec, test samples used, minimum metric recorded in the checkpoint)
SHIPPED = {
    "resnet": ("digits", 3, 0.85),
    "segmentation": ("digits-seg", 2, 0.4),  # mean IoU
    "transfer": ("digits", 3, 0.75),
    "audio": ("spoken-digits", 3, 0.85),
}


@pytest.mark.parametrize("family", list(SHIPPED))
def test_shipped_checkpoint_exports_and_reproduces(family, tmp_path):
    data, n, floor = SHIPPED[family]
    ck = os.path.join(REPO, "examples", "zoo", family, "checkpoint.pt")
    spec = f"examples.zoo.{family}.model:build_model"
    model, extra = build_model(spec, ck)
    metric = extra.get("test_accuracy", extra.get("test_mean_iou"))
    assert metric is not None and metric >= floor, f"{family}: recorded test metric {metric}"

    nir_path = tmp_path / f"{family}.nir"
    assert main(["export", "--model", spec, "--checkpoint", ck, "-o", str(nir_path)]) == 0
    graph = load_graph(nir_path)
    assert graph.metadata["dt"] == pytest.approx(extra["dt"])
    program = lower(graph, discretization_of(graph))

    ds = open_dataset(data).subset(np.arange(n))
    x = torch.from_numpy(ds.bin(float(extra["dt"]))).double()
    out_t, rec = run_torch(model, x, graph.metadata["torch_modules"], dtype=torch.float64)
    res = simulate(program, x.numpy(), record_v=True)
    spiking = [k for k in rec if k in res.spikes]
    assert spiking, f"{family}: no spiking layer compared"
    for k in spiking:
        np.testing.assert_array_equal(rec[k] > 0, res.spikes[k], err_msg=f"{family}: layer {k}")
        assert res.spikes[k].any(), f"{family}: layer {k} never spikes on these samples"
    np.testing.assert_allclose(res.output(), out_t, atol=1e-6, err_msg=f"{family}: output")
