"""Registries of passes, pipelines and backends: what the CLI offers comes from them."""

import numpy as np
import nir
import pytest

from simulators import backends
from toolchain.cli.main import build_parser
from toolchain.errors import NirDeployError
from toolchain.ir import Discretization, make_graph
from toolchain.passes.fold_batchnorm import BatchNorm
from toolchain.passes.pipelines import PIPELINES, get_pass, run_pass, run_pipeline
from toolchain.passes.registry import CONDITIONS, PASSES


def _graph(with_bn=False):
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "fc": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
        "lif": nir.LIF(tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(1.0),
                       v_reset=np.array(0.0)),  # fmt: skip
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    if with_bn:
        nodes["bn"] = BatchNorm(scale=np.full(3, 2.0), shift=np.ones(3))
        edges = [("input", "fc"), ("fc", "bn"), ("bn", "lif"), ("lif", "output")]
    return make_graph(nodes, edges, Discretization(dt=1e-3).to_metadata())


def test_every_pipeline_names_registered_passes_with_known_conditions():
    for names in PIPELINES.values():
        for n in names:
            p = get_pass(n)
            assert set(p.requires + p.ensures) <= set(CONDITIONS)
    assert set(PASSES) >= {"fold_batchnorm", "broadcast_params", "fold_pooling", "retime"}


def test_a_pass_refuses_a_graph_that_misses_its_condition():
    with pytest.raises(NirDeployError, match="broadcast_params.*no_batchnorm"):
        run_pass(_graph(with_bn=True), "broadcast_params")


def test_export_pipeline_folds_batchnorm_and_broadcasts():
    g = run_pipeline(_graph(with_bn=True), "export")
    assert "bn" not in g.nodes
    np.testing.assert_allclose(g.nodes["fc"].weight, 2.0 * np.eye(3))
    np.testing.assert_allclose(g.nodes["fc"].bias, np.ones(3))
    assert np.asarray(g.nodes["lif"].tau).shape == (3,)


def test_retime_pipeline_records_the_new_timestep():
    g = run_pipeline(_graph(), "retime", {"retime": {"dt_target": 2e-3, "method": "integral"}})
    assert g.metadata["dt"] == 2e-3 and g.metadata["retime"]["rho"] == 2.0


def test_unknown_pass_and_pipeline_are_one_line_errors():
    with pytest.raises(NirDeployError, match="unknown pass"):
        get_pass("nope")
    with pytest.raises(NirDeployError, match="unknown pipeline"):
        run_pipeline(_graph(), "nope")


def _choices(parser, command, option):
    sub = next(a for a in parser._actions if a.dest == "command")
    p = sub.choices[command]
    return tuple(next(a for a in p._actions if option in a.option_strings).choices)


def test_cli_backend_and_profile_choices_come_from_the_registry():
    ap = build_parser()
    for cmd in ("simulate", "sweep"):
        assert _choices(ap, cmd, "--backend") == backends.names()
    fixed = [b for b in backends.BACKENDS.values() if b.fixed_point]
    assert {p for b in fixed for p in b.profiles} == set(_choices(ap, "simulate", "--profile"))


def test_unknown_backend_is_refused_with_the_registered_names():
    with pytest.raises(NirDeployError, match="reference, lava-float, lava-fixed, emulator"):
        backends.get("loihi3")


def test_floating_point_backends_take_no_profile():
    assert backends.profile_for("reference", "loihi") is None
    assert backends.profile_for("emulator", None) == "netx"
