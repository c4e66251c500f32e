"""Bad input gives one clear error line and exit status 2, never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from toolchain.cli.main import main
from toolchain.errors import NirDeployError
from toolchain.ir import make_graph, save_graph


def lif_graph(**over):
    p = dict(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3))
    p.update(over)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
        "lif": nir.LIF(**p),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    return make_graph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")], {"dt": 1e-3})


@pytest.fixture
def sample(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.ones((10, 4)))
    return str(p)


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def expect_error(capsys, argv, pattern):
    code, err = run_cli(capsys, *argv)
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("nirdeploy: error: ")
    assert pattern in err[0], err[0]
    return err[0]


def test_missing_file(capsys, sample):
    expect_error(capsys, ["simulate", "/nonexistent/m.nir", "--input", sample], "no such file")


def test_not_hdf5(capsys, tmp_path, sample):
    f = tmp_path / "m.nir"
    f.write_text("hello")
    expect_error(capsys, ["simulate", str(f), "--input", sample], "not a NIR file")


def test_hdf5_but_not_nir(capsys, tmp_path, sample):
    f = tmp_path / "m.nir"
    with h5py.File(f, "w") as h:
        h["x"] = 1
    expect_error(capsys, ["inspect", str(f)], "not a NIR graph")


def test_unsupported_node_named(capsys, tmp_path, sample):
    g = lif_graph()
    g.nodes["delay"] = nir.Delay(delay=np.full(3, 0.002))
    g.edges = [("input", "fc"), ("fc", "delay"), ("delay", "lif"), ("lif", "output")]
    save_graph(g, tmp_path / "m.nir")
    line = expect_error(capsys, ["simulate", str(tmp_path / "m.nir"), "--input", sample], "'delay'")
    assert "Delay" in line


def test_shape_mismatch(capsys, tmp_path, sample):
    g = lif_graph()
    g.nodes["fc"] = nir.Affine(weight=np.ones((3, 5)), bias=np.zeros(3))
    save_graph(g, tmp_path / "m.nir")
    line = expect_error(capsys, ["simulate", str(tmp_path / "m.nir"), "--input", sample], "shape mismatch")
    assert "'fc'" in line


def test_input_shape_mismatch(capsys, tmp_path):
    save_graph(lif_graph(), tmp_path / "m.nir")
    np.save(tmp_path / "x.npy", np.ones((10, 7)))
    expect_error(capsys, ["simulate", str(tmp_path / "m.nir"), "--input", str(tmp_path / "x.npy")], "shape mismatch")


@pytest.mark.parametrize("tau,word", [(np.array([0.01, np.nan, 0.01]), "NaN"), (np.array([0.01, 0.0, 0.01]), "positive"), (np.array([-1.0, 0.01, 0.01]), "positive")])
def test_bad_time_constant(capsys, tmp_path, sample, tau, word):
    import nir

    g = lif_graph(tau=tau)
    g.metadata = dict(g.metadata)
    nir.write(str(tmp_path / "m.nir"), g)  # written as another tool would: nirdeploy's checker refuses NaN
    line = expect_error(capsys, ["simulate", str(tmp_path / "m.nir"), "--input", sample], word)
    assert "'lif'" in line and "tau" in line


def test_foreign_graph_needs_dt(capsys, tmp_path, sample):
    g = lif_graph()
    g.metadata = {}
    save_graph(g, tmp_path / "m.nir")
    expect_error(capsys, ["simulate", str(tmp_path / "m.nir"), "--input", sample], "--dt")
    # with --dt it runs
    assert main(["simulate", str(tmp_path / "m.nir"), "--input", sample, "--dt", "1e-3", "-q"]) == 0


def test_unsafe_pickle_refused(capsys, tmp_path):
    import argparse

    import torch

    path = tmp_path / "evil.pt"  # a pickle whose loading would construct an arbitrary class
    torch.save({"state_dict": {}, "obj": argparse.Namespace(a=1)}, path)
    line = expect_error(
        capsys, ["export", "--model", "examples.zoo.temporal.model:build_model", "--checkpoint", str(path), "-o", str(tmp_path / "m.nir")],
        "refusing to load",
    )
    assert "weights_only" in line and "argparse" in line


def test_bad_factory(capsys, tmp_path):
    import torch

    torch.save({"w": torch.zeros(1)}, tmp_path / "c.pt")
    expect_error(capsys, ["export", "--model", "no_such_pkg.mod:f", "--checkpoint", str(tmp_path / "c.pt"), "-o", "x.nir"], "cannot import")
    expect_error(capsys, ["export", "--model", "nofactory", "--checkpoint", str(tmp_path / "c.pt"), "-o", "x.nir"], "package.module:factory")


def test_console_script_prints_no_traceback(tmp_path):
    f = tmp_path / "m.nir"
    f.write_text("not nir")
    # the child must import this checkout, not whichever copy the virtualenv has installed
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    p = subprocess.run(
        [sys.executable, "-m", "toolchain.cli.main", "inspect", str(f)], capture_output=True, text=True, cwd=str(tmp_path),
        env=env,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [f"nirdeploy: error: {f} is not a NIR file (NIR files are HDF5; this one is not)"]


# --------------------------------------------------------------------------- silent wrong numbers, tracebacks
@pytest.mark.parametrize("array,pattern", [
    (np.zeros((0, 4)), "no time steps"),
    (np.array([["a"] * 4] * 3), "must hold numbers"),
    ("npz", ".npz archive"),
])  # fmt: skip
def test_bad_input_arrays(capsys, tmp_path, array, pattern):
    save_graph(lif_graph(), tmp_path / "m.nir")
    if isinstance(array, str):
        path = tmp_path / "x.npz"
        np.savez(path, a=np.zeros((3, 4)))
    else:
        path = tmp_path / "x.npy"
        np.save(path, array)
    expect_error(capsys, ["simulate", str(tmp_path / "m.nir"), "--input", str(path)], pattern)


@pytest.mark.parametrize("n", ["0", "-3"])
def test_demo_needs_lava_samples(capsys, tmp_path, n):
    expect_error(capsys, ["demo", "-o", str(tmp_path / "d"), "--lava-samples", n, "-q"], "--lava-samples must be at least 1")
    assert not (tmp_path / "d" / "model.nir").exists()


def _run_record(tmp_path):
    from simulators.reference import simulate
    from toolchain.analysis.records import run_record, write_json
    from toolchain.ir import discretization_of
    from toolchain.program import lower

    g = lif_graph()
    prog = lower(g, discretization_of(g))
    rec = run_record(simulate(prog, np.ones((2, 5, 4))), prog, labels=[0, 1])
    write_json(rec, tmp_path / "run.json")
    return rec


def test_report_of_a_record_with_a_string_dt(capsys, tmp_path):
    rec = _run_record(tmp_path)
    rec["dt"] = "fast"
    (tmp_path / "bad.json").write_text(json.dumps(rec))
    expect_error(capsys, ["report", str(tmp_path / "bad.json"), "-o", str(tmp_path / "r.html")], "dt is str")


def test_report_of_non_utf8_json(capsys, tmp_path):
    (tmp_path / "bad.json").write_bytes(b'{"a": "\xff\xfe"}')
    expect_error(capsys, ["report", str(tmp_path / "bad.json"), "-o", str(tmp_path / "r.html")], "not UTF-8")


def test_labels_outside_the_models_outputs_are_refused(tmp_path):
    from simulators.reference import simulate
    from toolchain.analysis.records import run_record
    from toolchain.ir import discretization_of
    from toolchain.program import lower

    g = lif_graph()
    prog = lower(g, discretization_of(g))
    res = simulate(prog, np.ones((2, 5, 4)))
    n_out = res.output().shape[-1]
    with pytest.raises(NirDeployError, match=f"model has {n_out} outputs"):
        run_record(res, prog, labels=[0, n_out])
    with pytest.raises(NirDeployError, match="model has"):
        run_record(res, prog, labels=[-1, 0])


def test_sign_flipping_euler_retime_is_refused(capsys, tmp_path):
    save_graph(lif_graph(), tmp_path / "m.nir")  # exact scheme, tau 10 ms at 1 ms: decay 0.9048, at rho 19.9: -0.894
    expect_error(capsys, ["retime", str(tmp_path / "m.nir"), "--dt", "0.0199", "--method", "euler", "-o",
                          str(tmp_path / "e.nir")], "into -0.8937")  # fmt: skip
    assert not (tmp_path / "e.nir").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1.0", "true"])
def test_energy_model_with_a_bad_value_is_refused(tmp_path, value):
    from toolchain.analysis.energy import load_model

    p = tmp_path / "m.toml"
    p.write_text(f'name = "x"\nkind = "events"\n[costs.synop_dense]\nvalue = {value}\nsource = "test"\n')
    with pytest.raises(NirDeployError, match="finite non-negative number"):
        load_model(p)
