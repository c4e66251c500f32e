"""toolchain/cli: the ``nirdeploy`` command line, called as a module (``main(argv)``)."""

import json

import nir
import numpy as np
import pytest

from toolchain.cli.main import build_parser, main
from toolchain.ir import make_graph, save_graph


def _subcommands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sorted(sub.choices)


def small_graph(metadata=None):
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc_in": nir.Affine(weight=np.full((3, 4), 0.6), bias=np.zeros(3)),
        "lif_hidden": nir.LIF(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
                              v_reset=np.zeros(3)),  # fmt: skip
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    return make_graph(nodes, [("input", "fc_in"), ("fc_in", "lif_hidden"), ("lif_hidden", "output")], metadata)


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nirdeploy")
    for name in _subcommands():
        assert name in out


def test_every_subcommand_has_help(capsys):
    names = _subcommands()
    assert {"export", "inspect", "simulate", "compare", "demo", "deploy"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0, name
        assert capsys.readouterr().out.startswith(f"usage: nirdeploy {name}"), name


def test_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_inspect_prints_node_names(tmp_path, capsys):
    f = tmp_path / "small.nir"
    save_graph(small_graph({"dt": 1e-3}), f)
    assert main(["inspect", str(f)]) == 0
    out = capsys.readouterr().out
    for name in ("input", "fc_in", "lif_hidden", "output"):
        assert name in out
    assert main(["inspect", str(f), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [n["name"] for n in info["nodes"]] == ["input", "fc_in", "lif_hidden", "output"]


def test_error_is_one_line_with_exit_2(tmp_path, capsys):
    f = tmp_path / "m.nir"
    f.write_text("not nir")
    assert main(["inspect", str(f)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"nirdeploy: error: {f} is not a NIR file (NIR files are HDF5; this one is not)"]


@pytest.fixture
def foreign(tmp_path):
    """A graph written by another tool (nir.write, no metadata) and one input sample [T, 4]."""
    g = tmp_path / "foreign.nir"
    nir.write(str(g), small_graph())
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).poisson(1.0, (20, 4)).astype(np.float64))
    return g, x


def test_simulate_foreign_graph_asks_for_source_dt(foreign, capsys):
    g, x = foreign
    code = main(["simulate", str(g), "--input", str(x), "--dt", "0.002", "--method", "integral", "-q"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nirdeploy: error:") and "--source-dt" in lines[0]


def test_simulate_foreign_graph_with_source_dt_runs(foreign, tmp_path, capsys):
    g, x = foreign
    rec_path = tmp_path / "run.json"
    code = main(["simulate", str(g), "--input", str(x), "--dt", "0.002", "--method", "integral", "--source-dt", "0.001",
                 "-q", "-o", str(rec_path)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rec = json.loads(rec_path.read_text())
    assert rec["dt"] == pytest.approx(0.002) and rec["samples"] == 1
    assert [l["name"] for l in rec["layers"]] == ["lif_hidden"]
