"""The ``nirdeploy`` command line.

Every command is a thin wrapper around a Python function from artifact to artifact; errors the
user can fix are printed as one line (``nirdeploy: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from toolchain.errors import NirDeployError


DATA_HELP = (
    "event dataset: a .h5 file (nirdeploy or SHD layout; FILE:split for one split), default, digits, "
    "digits-seg, spoken-digits (add :train for the training split) or tonic:NAME:ROOT"
)


# --------------------------------------------------------------------------- helpers
def _console():
    """The terminal's width on a terminal; 120 columns into a file or pipe (logs, CI), where rich
    would otherwise fall back to 80 and truncate the wider tables."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def _table(title: str, columns: List[str], rows: List[List[Any]]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    return t


def _fmt(v) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _parse_float(s: str, what: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise NirDeployError(f"{what} must be a number, got {s!r}") from None


def load_program(path: str, dt=None, scheme=None, input_convention=None, method=None):
    """Read a .nir file and lower it at the discretization from its metadata or the options."""
    from toolchain.graph import discretization_of, graph_metadata, load_graph
    from toolchain.program import lower

    graph = load_graph(path)
    meta = graph_metadata(graph)
    if method is not None:
        if dt is None:
            raise NirDeployError("--method needs --dt (the target timestep to retime to)")
        from toolchain.retime import retime

        graph = retime(graph, dt, method)
        dt = None
    elif dt is not None and "dt" in meta and not np.isclose(float(meta["dt"]), dt, rtol=1e-9, atol=0):
        raise NirDeployError(
            f"the graph was trained at dt={float(meta['dt']):g} s; to run it at dt={dt:g} s choose how to "
            "adapt it with --method (tau, integral, euler or exact)"
        )
    disc = discretization_of(graph, dt=dt, scheme=scheme, input_convention=input_convention)
    return graph, lower(graph, disc)


def load_inputs(args, program) -> Dict[str, Any]:
    """Inputs binned at the program's dt from --data or --input; returns x, labels and data info."""
    dt = program.disc.dt
    if getattr(args, "input", None):
        try:
            x = np.load(args.input)
        except Exception as e:
            raise NirDeployError(f"cannot read --input {args.input}: {str(e).splitlines()[0]}") from None
        want = tuple(program.input_shape)
        if x.ndim < 1 or tuple(x.shape[1:]) != want and int(np.prod(x.shape[1:])) != int(np.prod(want)):
            raise NirDeployError(
                f"shape mismatch: --input has shape {x.shape}; expected [T, {', '.join(map(str, want))}] "
                f"(one sample binned at dt={dt:g} s)"
            )
        if not np.all(np.isfinite(x)):
            raise NirDeployError("--input contains NaN or infinity")
        return {"x": x[None].astype(np.float64), "labels": None, "data": {"input": args.input, "binned_at_dt": dt}}
    from toolchain.data import open_dataset

    ds = open_dataset(args.data)
    if args.samples is not None:
        if args.samples < 1:
            raise NirDeployError("--samples must be at least 1")
        ds = ds.subset(np.arange(min(args.samples, len(ds))))
    want = tuple(program.input_shape)
    if int(np.prod(ds.input_shape)) != int(np.prod(want)):
        raise NirDeployError(
            f"shape mismatch: dataset {ds.name!r} has input shape {tuple(ds.input_shape)}, the graph takes {want}"
        )
    x, info = ds.bin_with_info(dt)
    out = {
        "x": x.reshape((x.shape[0], x.shape[1]) + want),
        "labels": ds.labels,
        "data": {"dataset": ds.name, "source": args.data, **info},
    }
    # segmentation data: per-pixel masks (0 = background, 1 + class), scored by mean IoU
    targets = getattr(ds, "targets", None)
    if targets is not None:
        out["targets"] = targets
        from toolchain.segmentation import class_names_of

        out["class_names"] = class_names_of(ds)
    return out


def _readout(program, args=None) -> str:
    r = getattr(args, "readout", None) if args is not None else None
    return r or str(program.metadata.get("readout", "sum"))


def _layer_rows(rec):
    return [[l["name"], l["type"], l["neurons"], l["spikes_per_sample"], l["firing_rate"]] for l in rec["layers"]]


def _print_record(rec, console):
    head = f"backend {rec['backend']}  dt {rec['dt']:g} s  samples {rec['samples']}  steps {rec['n_steps']}"
    if rec.get("accuracy") is not None:
        head += f"  accuracy {rec['accuracy']:.4f}"
    if (rec.get("segmentation") or {}).get("mean_iou") is not None:
        head += f"  mean IoU {rec['segmentation']['mean_iou']:.4f} (host-side {rec['segmentation']['upsampling']} upsampling)"
    console.print(head)
    console.print(
        _table("spikes per layer", ["layer", "type", "neurons", "spikes/sample", "rate/step"], _layer_rows(rec))
    )
    tot = (rec.get("metrics") or {}).get("totals") or {}
    if tot.get("Effective_ACs") is not None:
        console.print(
            f"synaptic operations per sample: Effective_ACs {tot['Effective_ACs']:.4g}, "
            f"Effective_MACs {tot.get('Effective_MACs', 0):.4g}, Dense {tot.get('Dense', 0):.4g}"
        )
    energy = rec.get("energy") or {}
    for m in energy.get("models", [])[:1]:
        console.print(
            f"energy per inference ({m['name']}, an estimate: see docs/metrics-and-energy.md): "
            f"{m['total_j'] * 1e6:.4g} uJ (dynamic {m['dynamic_j'] * 1e6:.3g}, static {m['static_j'] * 1e6:.3g}); "
            "`nirdeploy report` shows every model and layer"
        )


# --------------------------------------------------------------------------- commands
def cmd_export(args) -> int:
    from exporters.checkpoint import build_model
    from exporters.torch_to_nir import export_model
    from toolchain.graph import save_graph

    model, extra = build_model(args.model, args.checkpoint)
    input_shape = None
    if args.input_shape:
        input_shape = tuple(int(s) for s in args.input_shape.split(","))
    elif extra.get("input_shape") is not None:
        input_shape = tuple(int(s) for s in extra["input_shape"])
    graph = export_model(
        model,
        input_shape=input_shape,
        dt=args.dt if args.dt is not None else extra.get("dt"),
        readout=args.readout or extra.get("readout"),
        extra_metadata={"checkpoint": os.path.basename(args.checkpoint), "model_factory": args.model},
    )
    save_graph(graph, args.output)
    n_neurons = sum(1 for n in graph.nodes.values() if type(n).__name__ in ("LIF", "LI", "CubaLIF", "CubaLI", "IF", "I"))
    print(f"wrote {args.output}: {len(graph.nodes)} nodes ({n_neurons} neuron layers), dt={graph.metadata['dt']:g} s")
    return 0


def inspect_graph(path: str) -> Dict[str, Any]:
    from toolchain.graph import discretization_of, graph_metadata, load_graph
    from toolchain.program import lower

    graph = load_graph(path)
    meta = graph_metadata(graph)
    info: Dict[str, Any] = {"file": path, "metadata": meta, "nodes": [], "edges": [list(e) for e in graph.edges]}
    program = None
    try:
        program = lower(graph, discretization_of(graph, dt=None if "dt" in meta else 1e-3))
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
                params[p] = float(a.reshape(-1)[0]) if np.all(a == a.reshape(-1)[0]) else {"min": float(a.min()), "max": float(a.max())}
        for p in ("weight",):
            v = getattr(node, p, None)
            if v is not None:
                params["weight_shape"] = list(np.asarray(v).shape)
        if params:
            entry["params"] = params
        if program and program.back_preds(name):
            entry["recurrent_inputs"] = program.back_preds(name)
        info["nodes"].append(entry)
    return info


def cmd_inspect(args) -> int:
    info = inspect_graph(args.model)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    console = _console()
    meta = info["metadata"]
    keys = ("dt", "scheme", "input_convention", "reset", "v_init", "source_framework", "source_framework_version", "readout", "retime")
    shown = {k: meta[k] for k in keys if k in meta}
    console.print(f"[bold]{args.model}[/bold]")
    console.print("metadata: " + (", ".join(f"{k}={v}" for k, v in shown.items()) if shown else "none (graph written by another tool: simulate it with --dt)"))
    rows = []
    for n in info["nodes"]:
        p = n.get("params", {})
        desc = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items() if k != "weight_shape"
        )
        if "weight_shape" in p:
            desc = f"weight {tuple(p['weight_shape'])}" + (", " + desc if desc else "")
        if n.get("recurrent_inputs"):
            desc += f" recurrent from {', '.join(n['recurrent_inputs'])}"
        rows.append([n["name"], n["type"], str(tuple(n.get("in_shape", ()))), str(tuple(n.get("out_shape", ()))), n.get("neurons", ""), desc])
    console.print(_table("nodes (execution order)", ["node", "type", "in", "out", "neurons", "parameters"], rows))
    if info.get("problem"):
        console.print(f"[red]problem:[/red] {info['problem']}")
    return 0


def _add_profile_arg(p) -> None:
    from simulators.backends import PROFILES

    p.add_argument("--profile", choices=PROFILES, default="netx",
                   help="fixed-point parameter set for lava-fixed and emulator (docs/fixed-point.md): netx, what "
                        "`nirdeploy deploy` writes for lava-dl netx (default), or loihi, Loihi's own ranges")


def _simulate(args, backend: str, program, inputs, record_v=False):
    from simulators.backends import run

    return run(backend, program, inputs["x"], record_v=record_v, progress=not args.quiet, profile=args.profile)


def cmd_simulate(args) -> int:
    from toolchain.records import run_record, write_json

    graph, program = load_program(args.model, args.dt, args.scheme, args.input_convention, getattr(args, "method", None))
    inputs = load_inputs(args, program)
    res = _simulate(args, args.backend, program, inputs, record_v=bool(args.trace))
    readout = _readout(program, args)
    rec = run_record(
        res, program, labels=inputs["labels"], readout=readout, model=args.model, data=inputs["data"], inputs=inputs["x"],
        targets=inputs.get("targets"), class_names=inputs.get("class_names"),
    )
    if args.trace:
        arrays = {}
        for name in res.layer_types:
            if name in res.spikes:
                arrays[f"{name}.spikes"] = res.spikes[name][0].astype(np.uint8)
            if name in res.v:
                arrays[f"{name}.v"] = res.v[name][0]
        np.savez_compressed(args.trace, **arrays)
        rec["trace"] = args.trace
    if args.output:
        write_json(rec, args.output)
    if not args.quiet:
        _print_record(rec, _console())
        if args.output:
            print(f"wrote {args.output}")
    return 0


def compare_backends(program, x, labels, backends, readout="sum", progress=True, model=None, data=None, targets=None,
                     class_names=None, profile=None):
    from simulators.backends import run
    from toolchain.records import compare_results, run_record

    results = [run(b, program, x, progress=progress, profile=profile) for b in backends]
    cmp = compare_results(results[0], results[1], readout)
    records = {
        r.backend: run_record(
            r, program, labels=labels, readout=readout, model=model, data=data, inputs=x, targets=targets, class_names=class_names
        )
        for r in results
    }
    if labels is not None and targets is None:
        cmp["accuracy"] = {b: records[b]["accuracy"] for b in backends}
    if targets is not None:  # segmentation
        cmp["mean_iou"] = {b: records[b]["segmentation"]["mean_iou"] for b in backends}
    return cmp, records


def cmd_compare(args) -> int:
    from toolchain.records import write_json

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if len(backends) != 2:
        raise NirDeployError(f"--backends takes two backends separated by a comma, got {args.backends!r}")
    graph, program = load_program(args.model, args.dt, args.scheme, args.input_convention, getattr(args, "method", None))
    inputs = load_inputs(args, program)
    cmp, records = compare_backends(
        program, inputs["x"], inputs["labels"], backends, _readout(program, args), not args.quiet, args.model, inputs["data"],
        targets=inputs.get("targets"), class_names=inputs.get("class_names"), profile=args.profile,
    )
    cmp["model"] = args.model
    cmp["dt"] = program.disc.dt
    console = _console()
    console.print(
        f"{backends[0]} vs {backends[1]} on {cmp['samples']} samples x {cmp['n_steps']} steps: "
        f"spike_agreement {cmp['spike_agreement']:.6f}  prediction_agreement {cmp['prediction_agreement']:.4f}  "
        f"samples with identical spikes {cmp['samples_with_identical_spikes']}/{cmp['samples']}"
    )
    if cmp.get("mean_iou"):
        console.print("mean IoU: " + ", ".join(f"{b} {v:.4f}" for b, v in cmp["mean_iou"].items()))
    rows = [[l["name"], l["spike_agreement"], l["spikes_a"], l["spikes_b"]] for l in cmp["layers"]]
    console.print(_table("per layer", ["layer", "agreement", f"spikes {backends[0]}", f"spikes {backends[1]}"], rows))
    if args.output:
        write_json({**cmp, "runs": records}, args.output)
        print(f"wrote {args.output}")
    return 0


def cmd_demo(args) -> int:
    from toolchain.demo import run_demo

    run_demo(args.out, lava_samples=args.lava_samples, quiet=args.quiet)
    return 0


# --------------------------------------------------------------------------- parser
def _add_disc_args(p, method=True):
    p.add_argument("--dt", type=float, help="timestep in seconds (required for graphs written by other tools)")
    p.add_argument("--scheme", choices=("exact", "euler"), help="discretization scheme for graphs without metadata")
    p.add_argument(
        "--input-convention", choices=("current", "impulse"), help="how an input count enters (graphs without metadata)"
    )
    if method:
        p.add_argument(
            "--method", choices=("tau", "integral", "euler", "exact", "none"), help="retime the graph to --dt with this method first (none: keep the trained update)"
        )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="nirdeploy",
        description="Deploy spiking neural networks from PyTorch to Loihi through NIR.",
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("export", help="trained torch/norse checkpoint -> .nir (with dt and discretization)")
    p.add_argument("--model", required=True, help="package.module:factory that builds the model")
    p.add_argument("--checkpoint", required=True, help="state dict (.pt, loaded with weights_only=True) or .safetensors")
    p.add_argument("-o", "--output", required=True, help="output .nir file")
    p.add_argument("--input-shape", help="input shape per step, e.g. 2,34,34 (default: from the model)")
    p.add_argument("--dt", type=float, help="timestep, if the model's cells do not carry one")
    p.add_argument("--readout", choices=("sum", "max", "mean", "last"), help="how the output becomes a class")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="show a .nir graph: nodes, shapes, parameters, metadata")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("simulate", help="run a .nir graph on a backend and write a run record")
    p.add_argument("model")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--data", help=DATA_HELP)
    g.add_argument("--input", help="one sample as .npy, shape [T, *input_shape], binned at dt")
    _add_disc_args(p)
    p.add_argument("--backend", choices=("reference", "lava-float", "lava-fixed", "emulator"), default="reference")
    _add_profile_arg(p)
    p.add_argument("--samples", type=int, help="use the first N samples")
    p.add_argument("--trace", help="write spikes and v of every neuron layer for the first sample (.npz)")
    p.add_argument("--readout", choices=("sum", "max", "mean", "last"))
    p.add_argument("-o", "--output", help="run record (.json)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("compare", help="run two backends on the same data and measure their agreement")
    p.add_argument("model")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--backends", default="reference,lava-float", help="two backends, e.g. reference,lava-float")
    _add_disc_args(p)
    _add_profile_arg(p)
    p.add_argument("--samples", type=int)
    p.add_argument("--readout", choices=("sum", "max", "mean", "last"))
    p.add_argument("-o", "--output", help="compare record (.json)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_compare, input=None)

    p = sub.add_parser("demo", help="export the shipped model, simulate it on the reference and Lava, compare")
    p.add_argument("--out", default="demo_out", help="output directory")
    p.add_argument("--lava-samples", type=int, default=32, help="test samples to run on Lava")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    # further commands live in toolchain/commands/<name>.py, each with register(subparsers)
    import importlib

    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return ap


#: modules that add subcommands (each defines ``register(subparsers)``)
COMMAND_MODULES: List[str] = ["toolchain.commands.retime", "toolchain.commands.report", "toolchain.commands.deploy"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NirDeployError as e:
        print(f"nirdeploy: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nirdeploy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
