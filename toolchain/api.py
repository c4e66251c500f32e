"""nirdeploy's public Python API: ``from toolchain import api`` (or ``import toolchain.api as nd``).

Every CLI command is one of these functions; each takes and returns the artifacts of the
pipeline (docs/api.md has a worked example):

    export          a torch/norse model (in memory, or factory + checkpoint) -> NIR graph
    load, inspect   read a ``.nir`` file; describe its nodes, shapes and metadata
    retime          a graph -> the same model re-discretized for another timestep
    lower           a graph (or ``.nir`` path) -> an executable Program at one timestep
    load_inputs     a dataset or one ``.npy`` sample, binned at the program's timestep
    simulate        a Program on a backend -> SimResult (``run_record`` makes it a run record)
    compare         two backends on the same inputs -> agreement and both run records
    sweep           target timesteps x retiming methods -> accuracy / spikes table and plots
    quantize        a Program -> Loihi fixed point (``FixedNetwork``), calibrated on data if given
    deploy          a ``.nir`` file -> a lava-dl netx ``.net`` file
    import_netx     a lava-dl netx ``.net`` -> a float NIR graph at one timestep (deploy gives its integers back)
    report          a run record or sweep -> HTML and Markdown report

One meaning of ``dt`` everywhere: the timestep the model runs at (or is retimed to). The
timestep a graph was trained at comes from its metadata, or from ``source_dt`` for graphs written
by other tools.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from toolchain.errors import NirDeployError

__all__ = [
    "export", "export_checkpoint", "load", "inspect", "retime", "lower", "load_inputs", "simulate", "run_record",
    "compare", "sweep", "quantize", "deploy", "deploy_program", "report", "import_netx",
]


# --------------------------------------------------------------------------- export / load
def export(model, input_shape: Optional[Sequence[int]] = None, dt: Optional[float] = None, readout: Optional[str] = None,
           output: Optional[str] = None, metadata: Optional[Dict[str, Any]] = None):  # fmt: skip
    """Export an in-memory per-step model (``out, state = model(x_t, state)``) to a NIR graph.

    ``dt``: the training timestep, needed only where the model's cells carry none (plain torch);
    norse cells carry theirs; snnTorch models (docs/snntorch.md) need it. ``readout``: how outputs
    become a class (sum, max, mean, last).
    Writes ``output`` (.nir) when given; returns the graph either way."""
    from exporters.snntorch_to_nir import export_snntorch, is_snntorch_model
    from exporters.torch_to_nir import export_model
    from toolchain.ir import save_graph

    # snnTorch neurons cannot be fx-traced: they have their own frontend (docs/snntorch.md)
    export = export_snntorch if is_snntorch_model(model) else export_model
    graph = export(model, input_shape=input_shape, dt=dt, readout=readout, extra_metadata=metadata)
    if output:
        save_graph(graph, output)
    return graph


def export_checkpoint(factory: str, checkpoint: str, output: Optional[str] = None, input_shape=None,
                      dt: Optional[float] = None, readout: Optional[str] = None):  # fmt: skip
    """Export ``factory`` (``package.module:function``) with the weights of ``checkpoint``.

    The checkpoint contract (docs/api.md): a state dict, or a dict with ``state_dict`` and
    optionally ``model_kwargs`` (passed to the factory), ``dt``, ``readout`` and ``input_shape``.
    Arguments given here override the checkpoint's values."""
    from exporters.checkpoint import build_model

    model, extra = build_model(factory, checkpoint, readout=readout)
    if input_shape is None and extra.get("input_shape") is not None:
        input_shape = tuple(int(s) for s in extra["input_shape"])
    return export(
        model,
        input_shape=input_shape,
        dt=dt if dt is not None else extra.get("dt"),
        readout=readout or extra.get("readout"),
        output=output,
        metadata={"checkpoint": os.path.basename(checkpoint), "model_factory": factory},
    )


def load(path: str):
    """Read a ``.nir`` file (one-line :class:`NirDeployError` for anything unreadable); a lava-dl netx
    ``.net`` is read as its float NIR view (``toolchain.loihi.netx_read.netx_graph``, at its dt)."""
    from toolchain.ir import load_graph

    if is_netx(path):
        return load_netx(path)[0]
    return load_graph(path)


def is_netx(model) -> bool:
    """True when ``model`` is a path to a lava-dl netx ``.net`` (an HDF5 file with /layer)."""
    if not isinstance(model, (str, os.PathLike)):
        return False
    from toolchain.loihi.netx_read import is_netx as _is

    return _is(model)


def load_netx(path, dt: Optional[float] = None):
    """``(graph, program)`` of a netx ``.net``: its float NIR view at ``dt`` (default: the dt the file
    records, else 1 ms; the integers have no time, dt labels rates and energy) lowered, with the
    network's own integers attached as ``program.netx_fixed`` (a FixedNetwork): the emulator runs
    those bit-exactly and lava-fixed runs the file in lava-dl netx (docs/interop.md)."""
    from toolchain.ir import discretization_of
    from toolchain.loihi.netx_read import netx_fixed, netx_graph, read_netx
    from toolchain.program import lower as lower_graph

    net = read_netx(path)
    dt = float(dt) if dt is not None else float(net.dt) if net.dt else 1e-3
    graph = netx_graph(net, dt)
    program = lower_graph(graph, discretization_of(graph))
    program.netx_fixed = netx_fixed(net, program)
    return graph, program


def import_netx(path, dt: float, output: Optional[str] = None):
    """A lava-dl netx ``.net`` as a float NIR graph at timestep ``dt`` (seconds; the integers have no
    time: dt fixes the time constants, tau = dt / decay). The graph is the file's float view
    (``toolchain.loihi.netx_read.netx_graph``: weights, thresholds and biases in SLAYER's units with
    the weight exponents applied, CubaLIF time constants from iDecay / vDecay) with metadata
    ``imported_from`` (file name, sha256, dt), ``netx`` (the per-layer integers and their scale) and
    ``quantization_hint``, so that ``deploy`` of it writes the file's integers back and the emulator
    gives the file's spikes; ``retime`` works on it like on any graph. Writes ``output`` when given."""
    from toolchain.ir import save_graph
    from toolchain.loihi.netx_read import import_graph

    graph = import_graph(path, dt)
    if output:
        save_graph(graph, output)
    return graph


def _graph(model):
    return load(model) if isinstance(model, (str, os.PathLike)) else model


def inspect(model) -> Dict[str, Any]:
    """Nodes in execution order with shapes, parameters and recurrent inputs, plus the metadata."""
    from toolchain.ir import discretization_of, graph_metadata
    from toolchain.program import lower as lower_graph

    graph = _graph(model)
    meta = graph_metadata(graph)
    info: Dict[str, Any] = {"file": str(model) if isinstance(model, (str, os.PathLike)) else None, "metadata": meta,
                            "nodes": [], "edges": [list(e) for e in graph.edges]}  # fmt: skip
    if "dt" not in meta:
        from toolchain.ir.conventions import detect

        c = detect(graph)
        info["convention"] = {"framework": c.framework, "confidence": c.confidence, "evidence": c.evidence,
                              "options": c.options, "cli": c.cli(), "exact": c.exact, "note": c.note}  # fmt: skip
    program = None
    try:
        program = lower_graph(graph, discretization_of(graph, dt=None if "dt" in meta else 1e-3))
    except NirDeployError as e:
        info["problem"] = str(e)
    for name in program.order if program else graph.nodes:
        node = graph.nodes[name]
        entry: Dict[str, Any] = {"name": name, "type": type(node).__name__}
        if program:
            op = program.ops[name]
            entry["in_shape"] = list(op.in_shape)
            entry["out_shape"] = list(op.out_shape)
            if op.kind == "neuron":
                entry["neurons"] = op.ssm.n
        params = {}
        for p in ("tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
            v = getattr(node, p, None)
            if v is not None:
                a = np.asarray(v, dtype=np.float64)
                flat = a.reshape(-1)
                params[p] = float(flat[0]) if np.all(a == flat[0]) else {"min": float(a.min()), "max": float(a.max())}
        if getattr(node, "weight", None) is not None:
            params["weight_shape"] = list(np.asarray(node.weight).shape)
        if params:
            entry["params"] = params
        if program and program.back_preds(name):
            entry["recurrent_inputs"] = program.back_preds(name)
        info["nodes"].append(entry)
    if is_netx(model):
        info["netx"] = netx_summary(model)
    return info


def netx_summary(path) -> List[Dict[str, Any]]:
    """Per layer of a netx ``.net``: the integers netx runs (toolchain/loihi/netx_read.py)."""
    from toolchain.loihi.netx_read import bias_order, node_name, read_netx

    net = read_netx(path)
    rows = []
    for L in net.layers:
        r: Dict[str, Any] = {"layer": L.index, "type": L.type, "shape": list(L.shape)}
        if L.has_neuron:
            r.update(node=node_name(L), **L.neuron)
        if L.type in ("dense", "dense_rec"):
            r.update(weight_exp=L.weight_exp, num_weight_bits=L.num_weight_bits)
        if L.weight is not None:
            r["weight_range"] = [int(L.weight.min()), int(L.weight.max())]
        if L.bias is not None:
            r["bias_range"] = [int(L.bias.min()), int(L.bias.max())]
        if L.has_neuron and L.type != "input":
            r["graded_input"] = bool(L.graded_in)
        if L.type == "input" and L.has_neuron:
            r["driven_by"] = f"its bias (bias_mant): --input sets it, one value per neuron, {bias_order(L.shape)}"
        if L.extra:
            r["ignored_by_netx"] = dict(L.extra)
        if L.index < 0:
            r["note"] = "not in the file: netx takes the input size from the first dense layer's weights"
        rows.append(r)
    return rows


# --------------------------------------------------------------------------- timesteps
def source_discretization(graph, source_dt: Optional[float] = None, scheme: Optional[str] = None,
                          input_convention: Optional[str] = None, reset: Optional[str] = None,
                          reset_delay: Optional[bool] = None, recurrent_step0: Optional[str] = None):  # fmt: skip
    """The discretization ``graph`` was trained at: its metadata, or ``source_dt`` (which also
    overrides the metadata); None for a graph without metadata when no ``source_dt`` is given.
    ``reset`` ("value" | "subtract") and ``reset_delay`` override the metadata's reset rule,
    ``recurrent_step0`` ("bias" | "none") what a recurrent edge delivers at a sample's first step."""
    from toolchain.ir import discretization_of, graph_metadata

    if source_dt is None and "dt" not in graph_metadata(graph):
        return None
    return discretization_of(graph, dt=source_dt, scheme=scheme, input_convention=input_convention, reset=reset,
                             reset_delay=reset_delay, recurrent_step0=recurrent_step0)  # fmt: skip


def _retime(graph, dt, method, source):
    from toolchain.passes.pipelines import run_pipeline

    return run_pipeline(graph, "retime", {"retime": {"dt_target": dt, "method": method, "source": source}})


def retime(model, dt: float, method: str, source_dt: Optional[float] = None, scheme: Optional[str] = None,
           input_convention: Optional[str] = None, output: Optional[str] = None, reset: Optional[str] = None,
           reset_delay: Optional[bool] = None, recurrent_step0: Optional[str] = None):  # fmt: skip
    """Re-discretize a graph (or ``.nir`` path) for timestep ``dt`` with ``method`` (tau, integral,
    euler, exact, none), zero-shot. Writes ``output`` when given; returns the new graph."""
    from toolchain.ir import save_graph

    graph = _graph(model)
    source = source_discretization(graph, source_dt, scheme, input_convention, reset, reset_delay, recurrent_step0)
    if source is None:
        raise NirDeployError(
            "this graph carries no training timestep in its metadata (it was written by another tool); "
            "pass --source-dt SECONDS, the timestep it was trained at, to retime it"
        )
    out = _retime(graph, dt, method, source)
    if output:
        save_graph(out, output)
    return out


def lower(model, dt: Optional[float] = None, method: Optional[str] = None, source_dt: Optional[float] = None,
          scheme: Optional[str] = None, input_convention: Optional[str] = None, reset: Optional[str] = None,
          reset_delay: Optional[bool] = None, recurrent_step0: Optional[str] = None):  # fmt: skip
    """``(graph, program)``: a graph (or ``.nir`` path) lowered to run at timestep ``dt``.

    * ``method`` given: the graph is first retimed from its training timestep (metadata or
      ``source_dt``) to ``dt``;
    * no ``method``: a graph with a training timestep runs at it (``dt``, if given, must equal it:
      choose a method to run it at another); a graph without one runs as it is at ``dt``.

    ``scheme``, ``input_convention``, ``reset``, ``reset_delay`` and ``recurrent_step0`` override the
    graph's metadata (graphs written elsewhere have none: defaults exact, current, value, no delay,
    bias: the literal reading of a recurrent edge).
    """
    from toolchain.ir import discretization_of
    from toolchain.program import lower as lower_graph

    if is_netx(model):
        if method is not None or source_dt is not None:
            raise NirDeployError(
                f"{model} is a lava-dl netx network: it runs as its integers are; to retime it, import it first "
                f"(nirdeploy import-netx {model} --dt SECONDS -o MODEL.nir) and retime the graph"
            )
        return load_netx(model, dt)
    graph = _graph(model)
    source = source_discretization(graph, source_dt, scheme, input_convention, reset, reset_delay, recurrent_step0)
    if method is not None:
        if dt is None:
            raise NirDeployError("--method needs --dt (the timestep to retime the graph to)")
        if source is None:
            raise NirDeployError(
                "this graph carries no training timestep in its metadata (it was written by another tool); "
                "pass --source-dt SECONDS to retime it to --dt, or drop --method to run it as it is at --dt"
            )
        graph = _retime(graph, dt, method, source)
        disc = discretization_of(graph)
    elif source is None:
        from toolchain.ir.conventions import guidance, only_dt_warning

        if dt is None:
            raise NirDeployError(
                "this graph carries no timestep in its metadata (it was not written by nirdeploy); "
                "pass --dt SECONDS to run it at that timestep (and --scheme / --input-convention / --reset if not "
                "exact / current / value); " + guidance(graph)
            )
        warning = only_dt_warning(graph, scheme, input_convention, reset, reset_delay)
        if warning:
            print(f"nirdeploy: {warning}", file=sys.stderr)
        disc = discretization_of(graph, dt=dt, scheme=scheme, input_convention=input_convention, reset=reset,
                                 reset_delay=reset_delay, recurrent_step0=recurrent_step0)  # fmt: skip
    else:
        if dt is not None and not np.isclose(source.dt, dt, rtol=1e-9, atol=0):
            raise NirDeployError(
                f"the graph's timestep is dt={source.dt:g} s (its metadata); to run it at dt={dt:g} s choose how "
                "to adapt it with --method (tau, integral, euler, exact or none)"
            )
        disc = source
    return graph, lower_graph(graph, disc)


# --------------------------------------------------------------------------- inputs
def load_inputs(program, data: Optional[str] = None, input: Optional[str] = None,
                samples: Optional[int] = None) -> Dict[str, Any]:  # fmt: skip
    """Inputs binned at the program's dt: ``{"x": [N, T, *shape], "labels", "data": {...}}`` (plus
    ``targets`` and ``class_names`` for segmentation data), from a dataset spec or a ``.npy``."""
    dt = program.disc.dt
    want = tuple(program.input_shape)
    if input:
        try:
            x = np.load(input, allow_pickle=False)
        except Exception as e:
            raise NirDeployError(f"cannot read --input {input}: {str(e).splitlines()[0]}") from None
        if not isinstance(x, np.ndarray):
            x.close()
            raise NirDeployError(f"--input {input} is an .npz archive; give one sample as an .npy array [T, *shape]")
        if x.dtype.kind not in "biuf":
            raise NirDeployError(f"--input {input} holds {x.dtype} values; it must hold numbers (event counts per bin)")
        if x.ndim < 1 or x.shape[0] < 1:
            raise NirDeployError(f"--input {input} has no time steps (shape {x.shape})")
        if x.ndim < 1 or tuple(x.shape[1:]) != want and int(np.prod(x.shape[1:])) != int(np.prod(want)):
            raise NirDeployError(
                f"shape mismatch: --input has shape {x.shape}; expected [T, {', '.join(map(str, want))}] "
                f"(one sample binned at dt={dt:g} s)"
            )
        if not np.all(np.isfinite(x)):
            raise NirDeployError("--input contains NaN or infinity")
        return {"x": x[None].astype(np.float64), "labels": None, "data": {"input": input, "binned_at_dt": dt}}
    if data is None:
        raise NirDeployError("give --data DATASET or --input FILE.npy")
    from toolchain.data import open_dataset

    ds = open_dataset(data)
    if samples is not None:
        if samples < 1:
            raise NirDeployError("--samples must be at least 1")
        ds = ds.subset(np.arange(min(samples, len(ds))))
    if int(np.prod(ds.input_shape)) != int(np.prod(want)):
        raise NirDeployError(
            f"shape mismatch: dataset {ds.name!r} has input shape {tuple(ds.input_shape)}, the graph takes {want}"
        )
    x, info = ds.bin_with_info(dt)
    out = {
        "x": x.reshape((x.shape[0], x.shape[1]) + want),
        "labels": ds.labels,
        "data": {"dataset": ds.name, "source": data, **info},
    }
    targets = getattr(ds, "targets", None)  # segmentation: per-pixel masks, scored by mean IoU
    if targets is not None:
        from toolchain.analysis.segmentation import class_names_of

        out["targets"] = targets
        out["class_names"] = class_names_of(ds)
    return out


# --------------------------------------------------------------------------- running
def simulate(program, x, backend: str = "reference", profile: Optional[str] = None, record_v: bool = False,
             progress: bool = False, workers: Optional[int] = None, executor: str = "local",
             ray_address: Optional[str] = None, **kw):  # fmt: skip
    """Run ``x`` [samples, steps, *input_shape] on ``backend`` (reference, lava-float, lava-fixed,
    emulator; ``profile`` netx/loihi for the fixed-point ones) -> ``SimResult``.

    ``workers`` > 1 splits the samples of a Lava backend into that many shards run side by side
    (simulators/shards.py; the merged result equals one run); the other backends ignore it.
    ``executor="ray"`` runs the shards as Ray tasks instead, on the cluster at ``ray_address`` (or
    ``$RAY_ADDRESS``) or on a local Ray started for the run; ``workers`` then defaults to the
    cluster's CPUs (simulators/ray_executor.py, docs/scale.md)."""
    from simulators.shards import run_with_workers

    return run_with_workers(backend, program, x, workers, record_v=record_v, progress=progress, profile=profile,
                            executor=executor, ray_address=ray_address, **kw)  # fmt: skip


def run_record(result, program, labels=None, readout: Optional[str] = None, **kw) -> Dict[str, Any]:
    """A run record (docs/data-format.md) of a ``SimResult``: accuracy, spikes per layer, synaptic
    operations, energy, chip resources. ``readout`` defaults to the graph's metadata."""
    from toolchain.analysis.records import run_record as make_record

    return make_record(result, program, labels=labels, readout=readout or readout_of(program), **kw)


def readout_of(program) -> str:
    """The graph's readout rule (metadata ``readout``, default ``sum``)."""
    return str(program.metadata.get("readout", "sum"))


def compare(program, x, labels=None, backends: Sequence[str] = ("reference", "lava-float"), readout: Optional[str] = None,
            progress: bool = False, model=None, data=None, targets=None, class_names=None,
            profile: Optional[str] = None, workers: Optional[int] = None, executor: str = "local",
            ray_address: Optional[str] = None) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:  # fmt: skip
    """Run two backends on the same inputs: ``(agreement, {backend: run record})`` (``workers``,
    ``executor``, ``ray_address``: how Lava backends are sharded, see :func:`simulate`)."""
    from toolchain.analysis.records import compare_backends

    return compare_backends(program, x, labels, backends, readout or readout_of(program), progress, model, data,
                            targets=targets, class_names=class_names, profile=profile, workers=workers,
                            executor=executor, ray_address=ray_address)  # fmt: skip


def sweep(model: str, data: str, dts: Sequence[float], methods: Sequence[str], backend: str = "reference",
          output: str = "sweep_out", source_dt: Optional[float] = None, scheme: Optional[str] = None,
          input_convention: Optional[str] = None, reset: Optional[str] = None, reset_delay: Optional[bool] = None,
          recurrent_step0: Optional[str] = None, **kw) -> Dict[str, Any]:  # fmt: skip
    """Accuracy and spikes over target timesteps x retiming methods; writes ``output``/sweep.json,
    sweep.csv and plots. ``kw``: samples, workers, progress, profile, lava_check (N samples: the
    recommended cell of each dt also on ``lava_backend``, default lava-fixed; docs/retiming.md),
    executor (``"ray"``: the cells run as Ray tasks) and ray_address."""
    from toolchain.reports.sweep import sweep as run_sweep

    source = None
    if source_dt is not None or scheme is not None or input_convention is not None or reset is not None \
            or reset_delay is not None or recurrent_step0 is not None:
        disc = source_discretization(load(model), source_dt, scheme, input_convention, reset, reset_delay,
                                     recurrent_step0)
        if disc is None:
            raise NirDeployError("this graph carries no training timestep in its metadata; pass --source-dt SECONDS")
        source = disc.to_metadata()
    return run_sweep(model, data, list(dts), list(methods), backend, output, source=source, **kw)


# --------------------------------------------------------------------------- Loihi
def quantize(program, profile: str = "netx", calib_inputs=None):
    """Loihi fixed point for ``program`` (docs/fixed-point.md); with ``calib_inputs`` (integer
    counts) the emulator checks the states reached and lowers scales that would saturate."""
    if calib_inputs is not None:
        from simulators.emulator import calibrated_quantize

        return calibrated_quantize(program, calib_inputs, profile=profile)
    from toolchain.loihi.quantize import quantize as quantize_program

    return quantize_program(program, profile=profile)


def deploy(model, output: str, dt: Optional[float] = None, method: Optional[str] = None,
           source_dt: Optional[float] = None, scheme: Optional[str] = None, input_convention: Optional[str] = None,
           calib_inputs=None, calib_info=None, reset: Optional[str] = None, reset_delay: Optional[bool] = None,
           recurrent_step0: Optional[str] = None):  # fmt: skip
    """Quantize ``model`` (.nir path or graph; retimed to ``dt`` with ``method`` if given) and write
    ``output`` (.net, lava-dl netx). Returns ``(FixedNetwork, description of the file)``.

    Pooling is folded into the following layer by the quantizer (netx has no pool layer)."""
    _, program = lower(model, dt, method, source_dt, scheme, input_convention, reset, reset_delay, recurrent_step0)
    name = str(model) if isinstance(model, (str, os.PathLike)) else "<in memory>"
    return deploy_program(program, output, calib_inputs=calib_inputs, calib_info=calib_info, model=name)


def deploy_program(program, output: str, calib_inputs=None, calib_info=None, model: Optional[str] = None):
    """:func:`deploy` of an already lowered program.

    Non-spiking readout layers (LI, CubaLI) after the last spiking layer are not written as netx
    layers: the file stores their integers for the host (``exporters.nir_to_netx.host_readout``;
    computed by ``simulators.host_readout.run_host_readout`` from the chip's output spikes, bit for
    bit as the emulator) and the description's ``host_readout`` names them."""
    from exporters.nir_to_netx import write_netx

    fx = quantize(program, profile="netx", calib_inputs=calib_inputs)
    extra = {"model": model, "report": fx.report}
    if calib_info:
        extra["calibration_data"] = calib_info
    desc = write_netx(fx, output, extra=extra)
    return fx, desc


def report(path: str, html: str, markdown: Optional[str] = None, energy_models=None) -> Dict[str, Any]:
    """Render a run record (.json) or a sweep (its directory or sweep.json) to HTML (and Markdown)."""
    from toolchain.reports.report import build_report

    return build_report(path, html, markdown, energy_models=energy_models)
