"""The ``nirdeploy`` command line.

Every command is a thin wrapper around a Python function from artifact to artifact; errors the
user can fix are printed as one line (``nirdeploy: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from toolchain.errors import NirDeployError
from toolchain.signals import Terminated, exit_code_of, raise_on_termination
from toolchain.dynamics.retiming import BASELINES, METHODS
from toolchain.ir.atomic import check_output_dir, check_output_path
from toolchain.ir.metadata import CONVENTIONS, READOUTS, RECURRENT_STEP0, SCHEMES, USER_RESETS
from toolchain.loihi.bits import PROFILES
from toolchain.reports.console import console as new_console, table
from toolchain.cli.output import add_json_option, emit, json_mode, parse_args
from simulators import backends as backend_registry

BACKEND_HELP = "; ".join(f"{b.name}: {b.description}" for b in backend_registry.BACKENDS.values())


DATA_HELP = (
    "event dataset: a .h5 file (nirdeploy or SHD layout; FILE:split for one split), default, digits, "
    "digits-seg, spoken-digits (add :train for the training split) or tonic:NAME:ROOT"
)


# --------------------------------------------------------------------------- helpers
def load_program(args):
    """(graph, program) for a command's MODEL and its --dt / --method / --source-dt options."""
    from toolchain import api

    return api.lower(args.model, args.dt, getattr(args, "method", None), getattr(args, "source_dt", None),
                     args.scheme, args.input_convention, args.reset, args.reset_delay,
                     getattr(args, "recurrent_step0", None))  # fmt: skip


def load_inputs(args, program):
    from toolchain import api

    return api.load_inputs(program, data=getattr(args, "data", None), input=getattr(args, "input", None),
                           samples=getattr(args, "samples", None))  # fmt: skip


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
        table("spikes per layer", ["layer", "type", "neurons", "spikes/sample", "rate/step"], _layer_rows(rec))
    )
    tot = (rec.get("metrics") or {}).get("totals") or {}
    if tot.get("Effective_ACs") is not None:
        console.print(
            f"synaptic operations per sample: Effective_ACs {tot['Effective_ACs']:.4g}, "
            f"Effective_MACs {tot.get('Effective_MACs', 0):.4g}, Dense {tot.get('Dense', 0):.4g}"
        )
    for a in rec.get("approximations") or []:  # what runs differs from the graph: say it, with the number
        console.print(f"note: {a['message']}")
    energy = rec.get("energy") or {}
    for m in energy.get("models", [])[:1]:
        console.print(
            f"energy per inference ({m['name']}, an estimate: see docs/metrics-and-energy.md): "
            f"{m['total_j'] * 1e6:.4g} uJ (dynamic {m['dynamic_j'] * 1e6:.3g}, static {m['static_j'] * 1e6:.3g}); "
            "`nirdeploy report` shows every model and layer"
        )


# --------------------------------------------------------------------------- commands
def cmd_export(args) -> int:
    from toolchain import api

    input_shape = None
    if args.input_shape:
        try:
            input_shape = tuple(int(s) for s in args.input_shape.split(","))
        except ValueError:
            raise NirDeployError(f"--input-shape must be comma-separated integers, got {args.input_shape!r}") from None
    check_output_path(args.output, "-o", inputs=[args.checkpoint])
    graph = api.export_checkpoint(args.model, args.checkpoint, output=args.output, input_shape=input_shape,
                                  dt=args.dt, readout=args.readout)  # fmt: skip
    n_neurons = sum(1 for n in graph.nodes.values() if type(n).__name__ in ("LIF", "LI", "CubaLIF", "CubaLI", "IF", "I"))
    print(f"wrote {args.output}: {len(graph.nodes)} nodes ({n_neurons} neuron layers), dt={graph.metadata['dt']:g} s")
    emit(args, {"output": args.output, "nodes": len(graph.nodes), "neuron_layers": n_neurons, "dt": graph.metadata["dt"],
                "metadata": dict(graph.metadata)})  # fmt: skip
    return 0


def cmd_inspect(args) -> int:
    from toolchain import api

    info = api.inspect(args.model)
    emit(args, info)
    if args.json:  # the nodes, metadata and any problem are in the object
        return 0
    console = new_console()
    meta = info["metadata"]
    keys = ("dt", "scheme", "input_convention", "reset", "reset_delay", "reset_guard", "recurrent_step0", "v_init", "source_framework", "source_framework_version", "readout", "retime")
    shown = {k: meta[k] for k in keys if k in meta}
    console.print(f"[bold]{args.model}[/bold]")
    console.print("metadata: " + (", ".join(f"{k}={v}" for k, v in shown.items()) if shown else "none (graph written by another tool: run it with --dt; retime it with --source-dt and --method)"))
    src = meta.get("imported_from")
    if isinstance(src, dict):  # nirdeploy import-netx: the float view of a .net's integers
        hint = "; deploy quantizes it at the file's scales (metadata quantization_hint)" if meta.get("quantization_hint") else ""
        console.print(f"imported from {src.get('file')} ({src.get('format')}, sha256 {str(src.get('sha256'))[:16]}..., "
                      f"written by {src.get('written_by')}) at dt={src.get('dt')}{hint}")  # fmt: skip
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
    console.print(table("nodes (execution order)", ["node", "type", "in", "out", "neurons", "parameters"], rows))
    print_convention(console, info)
    if info.get("netx"):  # a lava-dl netx .net: the integers it runs (the nodes above are its float view)
        cols = ["layer", "type", "shape", "node", "iDecay", "vDecay", "vThMant", "weight_exp", "weight_range", "bias_range"]
        console.print(table("netx layers (integers as lava-dl netx runs them)", cols,
                            [[str(r.get(c, "")) for c in cols] for r in info["netx"]]))  # fmt: skip
        for r in info["netx"]:
            if r.get("driven_by"):
                console.print(f"input layer {r['layer']}: driven by {r['driven_by']}")
            if r.get("note"):
                console.print(f"input layer: {r['note']}")
    if info.get("problem"):  # the nodes are shown above; the graph cannot run as it is
        raise NirDeployError(info["problem"])
    return 0


def print_convention(console, info) -> None:
    """inspect: for a graph without metadata, who wrote it and the options that run it."""
    c = info.get("convention")
    if not c or c["framework"] == "nirdeploy":
        return
    console.print(f"convention: {c['framework']} ({c['confidence']} confidence): {'; '.join(c['evidence'])}",
                  soft_wrap=True)  # fmt: skip
    console.print(f"run it with: {c['cli']}" + ("" if c["exact"] else "  (approximate: see the note)"), soft_wrap=True)
    if c.get("note"):
        console.print(f"note: {c['note']}", soft_wrap=True)


def add_profile_arg(p) -> None:
    p.add_argument("--profile", choices=PROFILES, default="netx",
                   help="fixed-point parameter set for lava-fixed and emulator (docs/fixed-point.md): netx, what "
                        "`nirdeploy deploy` writes for lava-dl netx (default), or loihi, Loihi's own ranges")


def cmd_simulate(args) -> int:
    from toolchain import api
    from toolchain.analysis.records import write_json

    check_output_path(args.output, "-o", inputs=[args.model, args.input])
    check_output_path(args.trace, "--trace", inputs=[args.model, args.input, args.output])
    ex = executor_kw(args)
    graph, program = load_program(args)
    inputs = load_inputs(args, program)
    res = api.simulate(program, inputs["x"], args.backend, profile=args.profile, record_v=bool(args.trace),
                       progress=not args.quiet, workers=workers_of(args), **ex)  # fmt: skip
    readout = _readout(program, args)
    rec = api.run_record(
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
        from toolchain.ir.atomic import atomic_path

        with atomic_path(args.trace) as tmp:
            np.savez_compressed(tmp, **arrays)
        rec["trace"] = args.trace
    if args.output:
        write_json(rec, args.output)
    emit(args, {"output": args.output, **rec})
    if not args.quiet:
        _print_record(rec, new_console())
        if args.output:
            print(f"wrote {args.output}")
    else:  # -q: the result in one line, and where it went
        print(one_line(rec) + (f"; wrote {args.output}" if args.output else "; nothing written (-o RUN.json writes the record)"))
    return 0


def one_line(rec) -> str:
    """``simulate -q``: backend, dt, samples, the metric, spikes per sample, energy."""
    out = f"{rec['backend']} dt {rec['dt']:g} s, {rec['samples']} samples x {rec['n_steps']} steps"
    if rec.get("accuracy") is not None:
        out += f": accuracy {rec['accuracy']:.4f}"
    if (rec.get("segmentation") or {}).get("mean_iou") is not None:
        out += f": mean IoU {rec['segmentation']['mean_iou']:.4f}"
    out += f", {rec['total_spikes_per_sample']:.6g} spikes/sample"
    m = ((rec.get("energy") or {}).get("models") or [None])[0]
    if m:
        out += f", {m['total_j'] * 1e6:.4g} uJ/inference ({m['name']})"
    return out


def cmd_compare(args) -> int:
    from toolchain import api
    from toolchain.analysis.records import write_json

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if len(backends) != 2:
        raise NirDeployError(f"--backends takes two backends separated by a comma, got {args.backends!r}")
    check_output_path(args.output, "-o", inputs=[args.model, args.data])
    ex = executor_kw(args)
    graph, program = load_program(args)
    inputs = load_inputs(args, program)
    cmp, records = api.compare(
        program, inputs["x"], inputs["labels"], backends, _readout(program, args), not args.quiet, args.model, inputs["data"],
        targets=inputs.get("targets"), class_names=inputs.get("class_names"), profile=args.profile,
        workers=workers_of(args), **ex,
    )
    cmp["model"] = args.model
    cmp["dt"] = program.disc.dt
    console = new_console()
    console.print(
        f"{backends[0]} vs {backends[1]} on {cmp['samples']} samples x {cmp['n_steps']} steps: "
        f"spike_agreement {cmp['spike_agreement']:.6f}  prediction_agreement {cmp['prediction_agreement']:.4f}  "
        f"samples with identical spikes {cmp['samples_with_identical_spikes']}/{cmp['samples']}"
    )
    if cmp.get("mean_iou"):
        console.print("mean IoU: " + ", ".join(f"{b} {v:.4f}" for b, v in cmp["mean_iou"].items()))
    rows = [[l["name"], l["spike_agreement"], l["spikes_a"], l["spikes_b"]] for l in cmp["layers"]]
    console.print(table("per layer", ["layer", "agreement", f"spikes {backends[0]}", f"spikes {backends[1]}"], rows))
    if args.output:
        write_json({**cmp, "runs": records}, args.output)
        print(f"wrote {args.output}")
    emit(args, {"output": args.output, **cmp})  # the runs are in -o
    return 0


def cmd_demo(args) -> int:
    from toolchain.demo import run_demo

    check_output_dir(args.output, "-o")
    summary = run_demo(args.output, lava_samples=args.lava_samples, quiet=args.quiet, verbose=args.verbose,
                       workers=workers_of(args))  # fmt: skip
    emit(args, {"output": args.output, **summary})
    return 0


# --------------------------------------------------------------------------- parser
def add_workers_arg(p, executor: bool = True) -> None:
    """--workers: Lava runs split their samples over that many processes (simulators/shards.py);
    with ``executor``, also --executor and --ray-address (simulators/ray_executor.py)."""
    from simulators.shards import default_workers

    p.add_argument("--workers", type=int, default=None,
                   help="Lava backends: split the samples into this many shards run side by side, merged into one "
                        f"result equal to a single run (default: the cores available, {default_workers()} here"
                        + ("; with --executor ray, the cluster's CPUs)" if executor else ")"))  # fmt: skip
    if executor:
        add_executor_args(p)


def add_executor_args(p) -> None:
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the shards (and a sweep's cells) run: local worker processes (default), or Ray "
                        "tasks, on the cluster at --ray-address / $RAY_ADDRESS or on a local Ray started for the "
                        "run (pip install 'nirdeploy[ray]'; docs/scale.md)")  # fmt: skip
    p.add_argument("--ray-address", metavar="HOST:PORT",
                   help="the Ray cluster to run on (with --executor ray; default $RAY_ADDRESS, else a local Ray)")


def workers_of(args) -> Optional[int]:
    """--workers, default: the cores available locally, the cluster's CPUs on Ray (None)."""
    from simulators.shards import default_workers

    w = getattr(args, "workers", None)
    if w is not None:
        if w < 1:
            raise NirDeployError(f"--workers must be at least 1, got {w}")
        return w
    return None if getattr(args, "executor", "local") == "ray" else default_workers()


def executor_kw(args) -> Dict[str, Any]:
    """``executor`` and ``ray_address`` of the command line; refuses --ray-address without
    --executor ray, and --executor ray without Ray installed, before anything runs."""
    ex = getattr(args, "executor", "local") or "local"
    addr = getattr(args, "ray_address", None)
    if addr and ex != "ray":
        raise NirDeployError("--ray-address is for --executor ray (add --executor ray)")
    if ex == "ray":
        from simulators.ray_executor import import_ray

        import_ray()
    return {"executor": ex, "ray_address": addr}


def add_reset_args(p) -> None:
    """--reset and --reset-delay: the reset rule of a graph without metadata (overrides the metadata)."""
    p.add_argument("--reset", choices=USER_RESETS,
                   help="reset rule for graphs without metadata: value (v <- v_reset, NIR's), subtract "
                        "(v <- v - v_threshold; snnTorch's and Sinabs' default) or none (spikes, v never reset)")  # fmt: skip
    p.add_argument("--reset-delay", action="store_true", default=None,
                   help="with --reset subtract: snnTorch's one-step-late subtraction (its reset_delay=True default), "
                        "i.e. v <- v - v_threshold/beta at once; with --reset value: v is held at v_reset through "
                        "the step after a spike (snnTorch's delayed zero reset; docs/discretization.md)")  # fmt: skip
    p.add_argument("--recurrent-step0", choices=RECURRENT_STEP0,
                   help="what a recurrent edge delivers at a sample's first step: bias (default: the literal reading, "
                        "a recurrent Affine sees zero spikes and outputs its bias, as snnTorch computes) or none")  # fmt: skip


def add_disc_args(p, method=True):
    """--dt (the timestep to run at), --source-dt, --scheme, --input-convention, --reset(-delay) and --method."""
    p.add_argument("--dt", type=float, help="the timestep to run at, in seconds (with --method: retime the graph to it)")
    p.add_argument("--source-dt", type=float,
                   help="the timestep the graph was trained at, for graphs written by other tools (default: its metadata)")
    p.add_argument("--scheme", choices=SCHEMES, help="discretization scheme for graphs without metadata")
    p.add_argument("--input-convention", choices=CONVENTIONS,
                   help="how an input count enters (graphs without metadata)")  # fmt: skip
    add_reset_args(p)
    if method:
        p.add_argument("--method", choices=METHODS + BASELINES,
                       help="retime the graph from its training timestep to --dt with this method first (none: keep the trained update)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="nirdeploy",
        description="Deploy spiking neural networks from PyTorch to Loihi through NIR.",
    )
    ap.add_argument("--max-memory", metavar="SIZE",
                    help="refuse loads, binnings and runs that need more memory than SIZE (e.g. 8G; default: 80%% "
                         "of this machine's memory)")  # fmt: skip
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("export", help="trained torch/norse checkpoint -> .nir (with dt and discretization)")
    p.add_argument("--model", required=True, help="package.module:factory that builds the model")
    p.add_argument("--checkpoint", required=True, help="state dict (.pt, loaded with weights_only=True) or .safetensors")
    p.add_argument("-o", "--output", required=True, help="output .nir file")
    p.add_argument("--input-shape", help="input shape per step, e.g. 2,34,34 (default: from the model)")
    p.add_argument("--dt", type=float, help="timestep, if the model's cells do not carry one")
    p.add_argument("--readout", choices=READOUTS, help="how the output becomes a class")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="show a .nir graph: nodes, shapes, parameters, metadata")
    p.add_argument("model")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("simulate", help="run a .nir graph on a backend and write a run record")
    p.add_argument("model")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--data", help=DATA_HELP)
    g.add_argument("--input", help="one sample as .npy, shape [T, *input_shape], binned at dt")
    add_disc_args(p)
    p.add_argument("--backend", choices=backend_registry.names(), default="reference", help=BACKEND_HELP)
    add_profile_arg(p)
    p.add_argument("--samples", type=int, help="use the first N samples")
    p.add_argument("--trace", help="write spikes and v of every neuron layer for the first sample (.npz)")
    add_workers_arg(p)
    p.add_argument("--readout", choices=READOUTS)
    p.add_argument("-o", "--output", help="run record (.json)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("compare", help="run two backends on the same data and measure their agreement")
    p.add_argument("model")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--backends", default="reference,lava-float", help="two backends, e.g. reference,lava-float")
    add_workers_arg(p)
    add_disc_args(p)
    add_profile_arg(p)
    p.add_argument("--samples", type=int)
    p.add_argument("--readout", choices=READOUTS)
    p.add_argument("-o", "--output", help="compare record (.json)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_compare, input=None)

    p = sub.add_parser("demo", help="export the shipped model, simulate it on the reference and Lava, compare")
    p.add_argument("-o", "--output", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument("--out", dest="output", help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--lava-samples", type=int, default=32, help="test samples to run on Lava")
    add_workers_arg(p, executor=False)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the report's tables (metrics, energy, resources)")
    p.set_defaults(func=cmd_demo)

    # further commands live in toolchain/cli/commands/<name>.py, each with register(subparsers)
    import importlib

    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    add_json_option(sub)  # --json on every command, also those registered above (toolchain/cli/output.py)
    return ap


#: modules that add subcommands (each defines ``register(subparsers)``)
COMMAND_MODULES: List[str] = ["toolchain.cli.commands.retime", "toolchain.cli.commands.report", "toolchain.cli.commands.deploy",
                                 "toolchain.cli.commands.netx"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)  # with --json, a usage error is a JSON object too
    try:
        if args.max_memory is not None:
            from toolchain.limits import ENV, parse_size

            os.environ[ENV] = str(parse_size(args.max_memory))  # inherited by worker processes
        with raise_on_termination():  # SIGTERM, SIGHUP: Terminated, cleaned up like Ctrl-C
            return run_command(args)
    except NirDeployError as e:
        print(f"nirdeploy: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"nirdeploy: terminated ({e.signal_name})" if isinstance(e, Terminated) else "nirdeploy: interrupted",
              file=sys.stderr)
        return exit_code_of(e)
    except BrokenPipeError:  # output piped into `head` and the like
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


def run_command(args) -> int:
    """``args.func(args)``; with ``--json`` inside :func:`toolchain.cli.output.json_mode` (one JSON
    object on stdout, also for an error)."""
    if not getattr(args, "json", False):
        return int(args.func(args) or 0)
    with json_mode(args) as state:
        try:
            state["exit_status"] = int(args.func(args) or 0)
        except NirDeployError as e:
            state.update(exit_status=2, error=str(e))
            raise
        except KeyboardInterrupt as e:
            state.update(exit_status=exit_code_of(e), error="terminated" if isinstance(e, Terminated) else "interrupted")
            raise
    return state["exit_status"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
