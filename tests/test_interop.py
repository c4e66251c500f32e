"""Interop: foreign graphs are recognised (toolchain/ir/conventions.py), and nirdeploy's exports read
the same in norse 1.1.0's from_nir and snnTorch 1.0.0's import_from_nir (docs/interop.md).

Where a reader is wrong, the test asserts the known wrong behaviour, so it fails when the
reader is fixed (then the row of docs/interop.md changes)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.interop.models import build, inputs
from examples.interop.readers import agreement, run_norse, run_reference, run_snntorch
from exporters.torch_to_nir import export_model
from toolchain.errors import NirDeployError
from toolchain.ir import discretization_of, load_graph, save_graph
from toolchain.ir.conventions import detect, guidance, only_dt_warning
from toolchain.passes.retime import retime

ROOT = Path(__file__).resolve().parents[1]


def roundtrip(g, tmp_path, name="m.nir"):
    save_graph(g, tmp_path / name)
    return load_graph(tmp_path / name)


# --------------------------------------------------------------------------- detection
def test_conformance_graphs_are_recognised(conformance_file):
    c = detect(load_graph(conformance_file("lif_rockpool.nir")))
    assert c.framework == "rockpool" and c.options["dt"] == pytest.approx(1e-4)
    assert c.options["reset"] == "subtract" and not c.exact
    c = detect(load_graph(conformance_file("cnn_sinabs.nir")))
    assert c.framework == "sinabs" and c.options["input_convention"] == "impulse"
    c = detect(load_graph(conformance_file("lif_norse.nir")))
    assert c.framework == "generic" and c.options["dt"] is None and c.options["scheme"] == "exact"
    assert "--dt DT" in c.cli()


def test_norse_to_nir_is_recognised():
    import norse.torch as nt

    torch.manual_seed(0)
    m = nt.SequentialState(torch.nn.Linear(3, 4), nt.LIFBoxCell())
    with torch.no_grad():
        g = nt.to_nir(m, torch.zeros(1, 3))
    c = detect(g)
    assert c.framework == "norse" and c.exact and c.options["dt"] == pytest.approx(1e-6)
    m = nt.SequentialState(torch.nn.Linear(3, 4), nt.LIFCell())
    with torch.no_grad():
        g = nt.to_nir(m, torch.zeros(1, 3))
    c = detect(g)
    assert c.framework == "norse" and not c.exact and "re-export" in c.note


def test_norse_to_nir_lif_runs_exactly_with_the_printed_options():
    """norse's tau x dt bug: --dt 1e-6 (dt squared) reproduces norse's own LIFBoxCell at dt = 1e-3."""
    import norse.torch as nt
    from exporters.torch_run import run_torch

    m = build("lif", 1e-3)
    with torch.no_grad():
        g = nt.to_nir(m, torch.zeros(1, 8))
    c = detect(g)
    x = inputs(steps=100)
    ours = run_reference(export_model(m), x)
    assert ours.sum() > 0
    theirs = run_reference(g, x, dt=c.options["dt"], scheme=c.options["scheme"],
                           input_convention=c.options["input_convention"], reset=c.options["reset"])
    assert agreement(theirs, ours)["agreement"] == 1.0


def _snntorch_export(recurrent=False):
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    n = 4
    if recurrent:
        net = torch.nn.Sequential(torch.nn.Linear(3, n), snn.RSynaptic(alpha=torch.full((n,), 0.8), beta=torch.full((n,), 0.9), threshold=torch.ones(n),
                                  linear_features=n, init_hidden=True, output=True))  # fmt: skip
    else:
        net = torch.nn.Sequential(torch.nn.Linear(3, n), snn.Leaky(beta=torch.full((n,), 0.9), threshold=torch.ones(n), init_hidden=True),
                                  torch.nn.Linear(n, 2), snn.Synaptic(alpha=torch.full((2,), 0.7), beta=torch.full((2,), 0.8), threshold=torch.ones(2),
                                  init_hidden=True, output=True))  # fmt: skip
    return export_to_nir(net, torch.zeros(1, 3), ignore_dims=[0])


@pytest.mark.parametrize("recurrent", [False, True])
def test_snntorch_export_is_recognised(recurrent):
    g = _snntorch_export(recurrent)
    c = detect(g)
    assert c.framework == "snntorch" and c.confidence == "high"
    assert c.cli() == "--dt 0.0001 --scheme euler --input-convention current --reset subtract --reset-delay"
    assert "snntorch" in guidance(g)
    w = only_dt_warning(g)
    assert w and "--reset-delay" in w and "scheme=exact" in w
    assert only_dt_warning(g, scheme="euler", input_convention="current", reset="subtract", reset_delay=True) is None


def test_error_without_metadata_names_the_options(conformance_file):
    g = load_graph(conformance_file("lif_rockpool.nir"))
    with pytest.raises(NirDeployError, match="looks like rockpool.*--dt 0.0001 --scheme exact"):
        discretization_of(g)
    from toolchain import api

    with pytest.raises(NirDeployError, match="rockpool"):
        api.lower(g)


def test_our_exports_need_no_guidance(tmp_path):
    g = roundtrip(export_model(build("cubalif")), tmp_path)
    assert detect(g).framework == "nirdeploy" and guidance(g) == "" and only_dt_warning(g) is None


def test_cli_inspect_prints_options_and_simulate_warns(tmp_path, conformance_file):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "toolchain.cli.main"]
    out = subprocess.run(cmd + ["inspect", str(conformance_file("cnn_sinabs.nir"))], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "convention: sinabs" in out.stdout and "--input-convention impulse --reset subtract" in out.stdout
    save_graph(_snntorch_export(), tmp_path / "snn.nir")
    x = np.zeros((2, 5, 3))
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run(cmd + ["simulate", str(tmp_path / "snn.nir"), "--dt", "1e-4", "--input", str(tmp_path / "x.npy"),
                                "-o", str(tmp_path / "r.json")], capture_output=True, text=True, env=env)  # fmt: skip
    warn = [l for l in out.stderr.splitlines() if "warning" in l]
    assert len(warn) == 1 and "snntorch" in warn[0] and "--reset-delay" in warn[0], out.stderr + out.stdout


# --------------------------------------------------------------------------- our exports in other readers
@pytest.mark.parametrize("kind", ["lif", "cubalif", "recurrent"])
def test_norse_reads_our_exports(kind, tmp_path):
    g = roundtrip(export_model(build(kind, 1e-3)), tmp_path)
    x = inputs(steps=200)
    ref = run_reference(g, x)
    assert ref.sum() > 50
    a = agreement(run_norse(g, x, dt=1e-3), ref)
    assert a["agreement"] == 1.0, a


@pytest.mark.parametrize("kind", ["lif", "cubalif"])
def test_snntorch_reads_our_exports_at_its_dt(kind, tmp_path):
    g = roundtrip(export_model(build(kind, 1e-4)), tmp_path)
    x = inputs(steps=1000)
    ref = run_reference(g, x)
    assert ref.sum() > 50
    a = agreement(run_snntorch(g, x), ref)
    assert a["agreement"] == 1.0, a


def test_snntorch_reader_bug_hard_coded_dt(tmp_path):
    """snnTorch's import_from_nir runs at dt = 1e-4 whatever the graph: a LIF at dt = 1e-3 decays
    ten times too slowly and its input scale (r dt / tau) goes into the threshold: no spikes."""
    g = roundtrip(export_model(build("lif", 1e-3)), tmp_path)
    x = inputs(steps=200)
    ref = run_reference(g, x)
    a = agreement(run_snntorch(g, x), ref)
    assert ref.sum() > 50 and a["spikes_reader"] == 0, a
    # a CubaLIF at dt = 1e-3 is refused (its r = tau_mem / dt is not tau_mem / 1e-4)
    gc = export_model(build("cubalif", 1e-3))
    with pytest.raises(AssertionError, match="r not supported in CubaLIF"):
        run_snntorch(gc, x)


def test_snntorch_reader_bug_recurrent(tmp_path):
    """snnTorch's import_from_nir on a recurrent graph read from a file: nirtorch 2.6's interpreter
    fails while building the recurrent subgraph's state (AttributeError 'items'). On the graph
    object before writing, it runs, but RSynaptic(reset_delay=False), what it builds, resets one
    step late (stack notes): the spikes disagree."""
    g = export_model(build("recurrent", 1e-4))
    x = inputs(steps=1000)
    ref = run_reference(g, x)
    a = agreement(run_snntorch(g, x), ref)
    assert ref.sum() > 50 and a["spikes_reader"] > 0 and a["agreement"] < 0.9, a
    with pytest.raises(AttributeError, match="items"):
        run_snntorch(roundtrip(g, tmp_path), x)


def test_our_reading_is_unchanged_by_the_portable_parameters(tmp_path):
    """exact_params carry the trained (impulse) parameters; the node carries r w_in = tau_syn / dt."""
    g = roundtrip(export_model(build("cubalif", 1e-3)), tmp_path)
    ex = g.metadata["exact_params"]["1"]
    n = g.nodes["1"]
    np.testing.assert_array_equal(np.asarray(ex["r"]).reshape(-1), 1.0)
    np.testing.assert_array_equal(np.asarray(ex["w_in"]).reshape(-1), np.asarray(n.tau_syn).reshape(-1))
    np.testing.assert_allclose(n.r * n.w_in, n.tau_syn / 1e-3, rtol=1e-12)
    # the node alone, read as NIR (input held over the bin), is the same model
    plain = roundtrip(export_model(build("cubalif", 1e-3)), tmp_path, "p.nir")
    for k in ("exact_params", "node_conventions"):
        plain.metadata.pop(k)
    x = inputs(steps=200)
    assert agreement(run_reference(plain, x, input_convention="current"), run_reference(g, x))["agreement"] == 1.0
    # an edited node is refused, not silently read
    g.nodes["1"].w_in = g.nodes["1"].w_in * 2
    with pytest.raises(NirDeployError, match="exact_params"):
        run_reference(g, x)


@pytest.mark.parametrize("method", ["tau", "exact"])
@pytest.mark.parametrize("kind", ["lif", "cubalif"])
def test_norse_reads_retimed_graphs(kind, method, tmp_path):
    g = roundtrip(retime(export_model(build(kind, 1e-3)), 2e-3, method), tmp_path)
    x = inputs(steps=200)[:, ::2]
    ref = run_reference(g, x)
    assert ref.sum() > 20
    a = agreement(run_norse(g, x, dt=2e-3), ref)
    assert a["agreement"] == 1.0, a


def test_norse_reader_bug_ignores_r_on_integral_retime(tmp_path):
    """norse's from_nir ignores a LIF's r (it warns). Integral retiming at rho = 2 gives r = 0.5, which
    nirdeploy folds into the weights (norse then agrees); at rho = 3, r = 1/3 is no power of two and
    stays (folding it would change nirdeploy's own reading by rounding): norse reads it wrong."""
    g2 = roundtrip(retime(export_model(build("lif", 1e-3)), 2e-3, "integral"), tmp_path, "r2.nir")
    np.testing.assert_array_equal(g2.nodes["1"].r, 1.0)
    x = inputs(steps=300)
    ref = run_reference(g2, x[:, ::2])
    assert ref.sum() > 20 and agreement(run_norse(g2, x[:, ::2], dt=2e-3), ref)["agreement"] == 1.0
    g = roundtrip(retime(export_model(build("lif", 1e-3)), 3e-3, "integral"), tmp_path)
    r = np.unique(g.nodes["1"].r)
    assert r.size == 1 and abs(r[0] - 1 / 3) < 1e-9
    ref = run_reference(g, x[:, ::3])
    a = agreement(run_norse(g, x[:, ::3], dt=3e-3), ref)
    assert a["spikes_reader"] > 2 * a["spikes_reference"], a


# --------------------------------------------------------------------------- the zoo graphs in the readers
def _graph(nodes, edges, dt=1e-3):
    import nir

    from toolchain.ir import Discretization

    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    g.metadata = Discretization(dt=dt, scheme="euler").to_metadata()  # NIR read as norse and snnTorch step it
    return g


def _lif(n, tau=0.01):
    import nir

    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


@pytest.fixture(scope="module")
def zoo_graphs():
    from examples.interop.models import zoo

    return {f: zoo(f, samples=2) for f in ("resnet", "segmentation", "transfer", "audio")}


@pytest.mark.parametrize("family", ["segmentation", "audio"])
def test_norse_reads_the_zoo_spiking_layers_but_drops_the_li_readout(zoo_graphs, family):
    """norse's from_nir on the shipped zoo checkpoints that load: every spiking layer gives the
    reference's spikes; the LI readout is left out (bug: norse 1.1.0 maps no LI node)."""
    from examples.interop.readers import layer_agreement

    g, x, dt = zoo_graphs[family]
    r = layer_agreement(g, x, dt)
    assert len(r["layers"]) == {"segmentation": 5, "audio": 2}[family]
    for k, (a, theirs, ours) in r["layers"].items():
        assert ours > 0 and a == 1.0, (k, a, theirs, ours)
    assert [type(g.nodes[k]).__name__ for k in r["missing"]] == ["LI"]


def test_norse_on_the_zoo_resnet_and_transfer_documented_bugs(zoo_graphs):
    """resnet: the Flatten bug fails on two samples; on one the chain layers agree and the block
    fed by a sibling shortcut branch does not (the DFS-order bug; which branch arrives late was not
    the same in every run, so the identity-skip block 0 is not asserted). transfer: its AvgPool2d
    has no norse module, and nirtorch fails on the dangling edge (KeyError)."""
    from examples.interop.readers import layer_agreement

    g, x, dt = zoo_graphs["resnet"]
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        run_norse(g, x, dt)
    lay = layer_agreement(g, x[:1], dt)["layers"]
    for k in ("lif_stem", "blocks.0.lif1"):
        assert lay[k][0] == 1.0 and lay[k][2] > 0, (k, lay[k])
    assert lay["blocks.1.lif2"][0] < 1.0, lay["blocks.1.lif2"]
    g, x, dt = zoo_graphs["transfer"]
    with pytest.raises(KeyError, match="'2'"):
        run_norse(g, x, dt)
    assert type(g.nodes["2"]).__name__ == "AvgPool2d"


@pytest.mark.parametrize("family", ["resnet", "segmentation", "transfer", "audio"])
def test_snntorch_reader_bug_no_li_on_the_zoo(zoo_graphs, family):
    g, x, dt = zoo_graphs[family]
    with pytest.raises(ValueError, match="Unknown node type <class 'nir.ir.neuron.LI'>"):
        run_snntorch(g, x)


def test_reader_bug_li_minimal():
    """Input -> Affine -> LI -> Output: norse returns the Affine's output (the LI node is dropped
    without a word); snnTorch refuses the LI."""
    import nir

    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=3)
    g = _graph({"input": nir.Input(input_type={"input": np.array([4])}), "fc": nir.Affine(weight=W, bias=b),
                "li": nir.LI(tau=np.full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3)),
                "output": nir.Output(output_type={"output": np.array([3])})},
               [("input", "fc"), ("fc", "li"), ("li", "output")])  # fmt: skip
    x = rng.random((2, 5, 4))
    out = run_norse(g, x, 1e-3)
    np.testing.assert_allclose(out, x @ W.T + b, atol=1e-5)
    assert np.abs(out - run_reference(g, x)).max() > 1.0
    with pytest.raises(ValueError, match="Unknown node type <class 'nir.ir.neuron.LI'>"):
        run_snntorch(g, x)


def test_reader_bug_flatten_includes_the_batch():
    """NIR's Flatten start_dim counts from the first non-batch axis (nir computes the output type
    from the batch-free input type: start_dim 0 flattens [2, 2, 2] to [8]); both readers build
    torch.nn.Flatten(start_dim) on batched tensors, which flattens the batch too."""
    import nir

    rng = np.random.default_rng(1)
    flat = nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1)
    assert list(flat.output_type["output"]) == [8]
    g = _graph({"input": nir.Input(input_type={"input": np.array([2, 2, 2])}), "flat": flat,
                "fc": nir.Affine(weight=rng.normal(size=(3, 8)), bias=np.zeros(3)), "lif": _lif(3),
                "output": nir.Output(output_type={"output": np.array([3])})},
               [("input", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")])  # fmt: skip
    x = rng.random((2, 5, 2, 2, 2))
    run_reference(g, x)
    for reader in (lambda: run_norse(g, x, 1e-3), lambda: run_snntorch(g, x)):
        with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(1x16 and 8x3\)"):
            reader()


def test_reader_bug_norse_avgpool2d():
    """Input -> AvgPool2d -> Output: norse maps no AvgPool2d (nothing is left of the graph);
    snnTorch reads it right."""
    import nir

    g = _graph({"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
                "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
                "output": nir.Output(output_type={"output": np.array([1, 2, 2])})}, [("input", "pool"), ("pool", "output")])  # fmt: skip
    x = np.random.default_rng(2).random((2, 5, 1, 4, 4))
    with pytest.raises(ValueError, match="Cannot find the input of an empty graph"):
        run_norse(g, x, 1e-3)
    ref = run_reference(g, x)
    np.testing.assert_allclose(run_snntorch(g, x).reshape(ref.shape), ref, atol=1e-6)


def test_norse_reader_bug_two_branches_into_one_node():
    """nirtorch's GraphExecutor (norse's from_nir) runs nodes in depth-first pre-order, not in
    topological order: a node fed by two sibling branches runs before the second one is
    computed, whose input then arrives a step late. Each branch alone reads right."""
    import nir

    rng = np.random.default_rng(3)

    def branch_graph(which):
        nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
                 "a": nir.Affine(weight=np.abs(rng.normal(size=(6, 4))) * 2, bias=np.zeros(6)), "lif_a": _lif(6),
                 "b": nir.Affine(weight=np.abs(rng.normal(size=(3, 6))), bias=np.zeros(3)),
                 "c": nir.Affine(weight=np.abs(rng.normal(size=(3, 4))) * 2, bias=np.zeros(3)), "out": _lif(3),
                 "output": nir.Output(output_type={"output": np.array([3])})}  # fmt: skip
        long = [("input", "a"), ("a", "lif_a"), ("lif_a", "b"), ("b", "out")]
        short = [("input", "c"), ("c", "out")]
        edges = {"both": long + short, "long": long, "short": short}[which] + [("out", "output")]
        used = {n for e in edges for n in e}
        return _graph({k: v for k, v in nodes.items() if k in used}, edges)

    x = (rng.random((2, 60, 4)) < 0.4).astype(np.float64)
    for which in ("long", "short"):
        rng = np.random.default_rng(3)
        g = branch_graph(which)
        ref = run_reference(g, x)
        assert ref.sum() > 10 and agreement(run_norse(g, x, 1e-3), ref)["agreement"] == 1.0, which
    rng = np.random.default_rng(3)
    g = branch_graph("both")
    ref = run_reference(g, x)
    a = agreement(run_norse(g, x, 1e-3), ref)
    assert ref.sum() > 10 and a["agreement"] < 1.0, a
