"""The public Python API (toolchain/api.py, docs/api.md) and the tutorial that uses it."""

import json

import h5py
import numpy as np
import nir
import pytest

import lava.magma.core.run_configs  # noqa: F401  (the tutorial runs Lava: a missing Lava fails here)
from toolchain import api
from toolchain.errors import NirDeployError
from toolchain.ir import make_graph


def _foreign_graph():
    """A graph as another tool writes it: no metadata."""
    return make_graph(
        {"input": nir.Input(input_type={"input": np.array([2])}),
         "fc": nir.Linear(weight=np.eye(2)),
         "lif": nir.LIF(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2),
                        v_reset=np.zeros(2)),
         "output": nir.Output(output_type={"output": np.array([2])})},
        [("input", "fc"), ("fc", "lif"), ("lif", "output")],
    )  # fmt: skip


def test_dt_is_the_timestep_to_run_at():
    g = _foreign_graph()
    _, p = api.lower(g, dt=2e-3)  # no metadata, no method: runs as it is at dt
    assert p.disc.dt == 2e-3
    with pytest.raises(NirDeployError, match="--source-dt"):
        api.lower(g, dt=2e-3, method="integral")  # asks for what is missing, not for --dt
    g2, p2 = api.lower(g, dt=2e-3, method="integral", source_dt=1e-3)
    assert p2.disc.dt == 2e-3 and g2.metadata["retime"]["rho"] == 2.0
    with pytest.raises(NirDeployError, match="timestep is dt=0.002 s.*--method"):
        api.lower(g2, dt=1e-3)  # a graph with a timestep refuses another without a method


def test_tutorial_runs_end_to_end(tmp_path):
    from examples import tutorial

    s = tutorial.main(str(tmp_path), seconds=2.0, lava_samples=4, test_samples=40)
    assert s["lava_float_spike_agreement"] == 1.0  # Lava float reproduces the reference's spikes
    assert 0.0 <= s["accuracy_4ms_trained"] <= 1.0 and s["netx_layers"][0] == "input"
    meta = api.load(str(tmp_path / "model_2ms.nir")).metadata
    assert meta["dt"] == 2e-3 and meta["retime"]["method"] == "integral"
    with h5py.File(tmp_path / "model.net", "r") as f:  # what lava-dl netx reads
        assert "layer" in f
    rec = json.loads((tmp_path / "run_reference.json").read_text())
    assert rec["schema"] == "nirdeploy.run" and (tmp_path / "report.html").stat().st_size > 10_000
