"""examples/slayer (quick mode): a SLAYER CUBA network trained for one epoch, exported with lava-dl's
own export_hdf5 (blocks from /layer/0 on, no input layer), imported, retimed, deployed, swept and
reported; the artifacts exist and say what they should."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
pytestmark = pytest.mark.lava


def test_slayer_example_quick(tmp_path):
    from examples.slayer.train_export import run
    from toolchain import api
    from toolchain.ir import graph_metadata
    from toolchain.loihi.netx_read import read_netx

    out = tmp_path / "out"
    s = run(str(out), quick=True, log=lambda *a: None)
    for f in ("model.net", "model.nir", "model_1ms.nir", "model_1ms.net", "sweep/sweep.json", "report.html", "report.md"):
        assert (out / f).stat().st_size > 0, f
    assert s["imported_graph_same_spikes"] and s["deploy_gives_the_files_integers"]
    net = read_netx(str(out / "model.net"))
    assert [L.type for L in net.layers] == ["input", "dense", "dense"] and net.layers[0].index == -1  # none in the file
    meta = graph_metadata(api.load(str(out / "model.nir")))
    assert meta["imported_from"]["file"] == "model.net" and meta["dt"] == pytest.approx(2e-3)
    # exact retime to half the dt: per-step decays halve (iDecay 0.25 * 4096 / 2, vDecay 0.1 * 4096 / 2)
    r = read_netx(str(out / "model_1ms.net"))
    assert [(L.neuron["iDecay"], L.neuron["vDecay"]) for L in r.neuron_layers] == [(512, 205), (512, 205)]
    sw = json.loads((out / "sweep" / "sweep.json").read_text())
    assert len(sw["rows"]) == 12 and not any(row.get("error") for row in sw["rows"])
    assert "sweep" in (out / "report.md").read_text().lower()
