"""``nirdeploy retime`` and ``nirdeploy sweep``."""

from __future__ import annotations

from toolchain.dynamics.retiming import BASELINES, METHODS
from toolchain.cli.output import emit
from toolchain.errors import NirDeployError
from toolchain.ir.atomic import check_output_dir, check_output_path
from toolchain.ir.metadata import CONVENTIONS, SCHEMES

METHOD_HELP = ("tau (reference), integral, euler, exact; exact-carry / integral-carry also adapt the reset to the "
               "new bin (a reset to a value keeps 1 - 1/rho of the excess over the threshold); 'none' keeps the "
               "trained update (no adaptation)")


def _floats(s: str, what: str):
    out = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise NirDeployError(f"{what} must be comma-separated numbers, got {part!r}") from None
    if not out:
        raise NirDeployError(f"{what} is empty")
    return out


def cmd_retime(args) -> int:
    from toolchain import api

    check_output_path(args.output, "-o", inputs=[args.model])
    out = api.retime(args.model, args.dt, args.method, source_dt=args.source_dt, scheme=args.scheme,
                     input_convention=args.input_convention, output=args.output, reset=args.reset,
                     reset_delay=args.reset_delay, recurrent_step0=args.recurrent_step0)  # fmt: skip
    r = out.metadata["retime"]
    adapted = list((out.metadata.get("ssm") or {}).keys())
    note = f"; exact adapted matrices kept for {', '.join(adapted)}" if adapted else ""
    if out.metadata.get("reset") == "partial":
        note += (f"; partial reset: a spike keeps {out.metadata['reset_keep']:.4g} of the excess over the threshold "
                 f"(runs on every backend but a .net)")
    print(f"wrote {args.output}: {args.method} retiming from dt={r['source_dt']:g} s to {args.dt:g} s (rho={r['rho']:g}){note}")
    emit(args, {"output": args.output, "method": args.method, "source_dt": r["source_dt"], "dt": args.dt, "rho": r["rho"],
                "exact_adapted": adapted, "retime": dict(r)})  # fmt: skip
    return 0


def _source_of(args, graph):
    """The training discretization the command line overrides (metadata dict), or None: keep the graph's."""
    from toolchain.ir import discretization_of

    if args.source_dt is None and args.reset is None and args.reset_delay is None and args.recurrent_step0 is None:
        return None
    return discretization_of(
        graph, dt=args.source_dt, scheme=args.scheme, input_convention=args.input_convention,
        reset=args.reset, reset_delay=args.reset_delay, recurrent_step0=args.recurrent_step0,
    ).to_metadata()


def _cells_kw(args):
    """--workers, --executor and --ray-address of sweep and recommend (checked before anything runs)."""
    from toolchain.cli.main import executor_kw

    if args.workers is not None and args.workers < 1:
        raise NirDeployError(f"--workers must be at least 1, got {args.workers}")
    return {"workers": args.workers, **executor_kw(args)}


def cmd_sweep(args) -> int:
    from toolchain.reports.console import console as new_console, table
    from toolchain.ir import load_graph
    from toolchain.api import is_netx, load
    from toolchain.reports.sweep import sweep

    check_output_dir(args.output, "-o")
    dts = _floats(args.dt, "--dt")
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    source = _source_of(args, load_graph(args.model) if not is_netx(args.model) else load(args.model))
    res = sweep(
        args.model, args.data, dts, methods, args.backend, args.output,
        samples=args.samples, progress=not args.quiet, source=source, profile=args.profile,
        lava_check=args.lava_check, lava_backend=args.lava_backend, **_cells_kw(args),
    )
    rows = []
    metric = res.get("metric", "accuracy")
    for r in res["rows"]:
        rows.append([f"{r['dt'] * 1e3:g} ms", f"{r['rho']:g}", r["method"],
                     "" if r.get(metric) is None else r[metric],
                     "" if r.get("spikes_per_sample") is None else r["spikes_per_sample"],
                     r.get("error", "")[:60]])
    imp = res.get("imported_from")
    if imp:  # a .net: what was swept (sweep.json has the same under imported_from)
        print(f"{args.model} is a lava-dl netx network: swept as its float NIR view at dt={imp['dt']:g} s")
        print(f"  (as nirdeploy import-netx writes it: {imp['graph']}; each cell retimes that graph)")
    print_recommendation(res)
    if not args.quiet:
        new_console().print(table(f"sweep on {args.backend} (trained at dt={res['source_dt'] * 1e3:g} ms)",
                                ["dt", "rho", "method", metric.replace("_", " "), "spikes/sample", "note"], rows))
    ex = res.get("executor")
    if ex:  # the cells that ran this time ran as Ray tasks
        print(f"cells on Ray at {ex['address']}: {ex['nodes']} nodes, {ex['cpus']} CPUs, {ex['nodes_used']} used")
    print(f"wrote {args.output}/sweep.json, sweep.csv, {metric}_vs_dt.png, spikes_vs_dt.png")
    emit(args, sweep_result(res, args.output))
    return 0


def sweep_result(res, out_dir: str):
    """``--json`` of sweep and recommend: sweep.json without the cells' run records (in DIR/cells/)."""
    rows = [{k: v for k, v in r.items() if k not in ("record", "cache_key")} for r in res["rows"]]
    return {"output": out_dir, "sweep_json": f"{out_dir}/sweep.json", **{k: v for k, v in res.items() if k != "rows"},
            "rows": rows}  # fmt: skip


def print_recommendation(res) -> None:
    """The sweep's recommendation first, in a few lines (toolchain/analysis/recommend.py)."""
    from toolchain.analysis.recommend import summary_lines

    rec = res.get("recommendation")
    if not rec:
        return
    print(f"recommendation (best zero-shot method per target dt, trained at {rec['source_dt'] * 1e3:g} ms; "
          f"rule: docs/retiming.md):")  # fmt: skip
    for line in summary_lines(rec):
        print("  " + line)
    if rec.get("pareto"):
        front = ", ".join(f"{c['dt'] * 1e3:g} ms/{'='.join(c.get('methods') or [c['method']])}" for c in rec["pareto"])
        print(f"  accuracy-energy-latency front: {front}")
    if rec.get("note"):
        print(f"  note: {rec['note']}")


def cmd_recommend(args) -> int:
    """``nirdeploy recommend MODEL --data D --dt LIST``: the sweep a deployment needs (every zero-shot
    method at every target dt, plus the training dt for the loss), its recommendation first."""
    from toolchain.ir import discretization_of, load_graph
    from toolchain.dynamics.retiming import METHODS as ZERO_SHOT
    from toolchain.reports.sweep import sweep

    check_output_dir(args.output, "-o")
    dts = _floats(args.dt, "--dt")
    graph = load_graph(args.model)
    source = _source_of(args, graph)
    src_dt = float(source["dt"]) if source else float(discretization_of(graph).dt)
    if not any(abs(d - src_dt) <= 1e-12 * src_dt for d in dts):
        dts = sorted(dts + [src_dt])  # the loss is measured against the model at its own dt
    methods = list(ZERO_SHOT)
    res = sweep(
        args.model, args.data, dts, methods, args.backend, args.output,
        samples=args.samples, progress=not args.quiet, source=source, profile=args.profile,
        lava_check=args.lava_check, lava_backend=args.lava_backend, **_cells_kw(args),
    )
    print_recommendation(res)
    print(f"wrote {args.output}/sweep.json (recommendation, rows), sweep.csv and plots; "
          f"nirdeploy report {args.output} renders it")  # fmt: skip
    emit(args, sweep_result(res, args.output))
    return 0


def register(sub) -> None:
    p = sub.add_parser("retime", help="re-discretize a .nir graph for another timestep (zero-shot)")
    p.add_argument("model")
    p.add_argument("--dt", type=float, required=True, help="target timestep in seconds")
    p.add_argument("--method", required=True, choices=METHODS + BASELINES, help=METHOD_HELP)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--source-dt", type=float, help="the timestep the graph was trained at, for graphs written by other tools (default: its metadata)")
    p.add_argument("--scheme", choices=SCHEMES)
    p.add_argument("--input-convention", choices=CONVENTIONS)
    from toolchain.cli.main import add_reset_args

    add_reset_args(p)
    p.set_defaults(func=cmd_retime)

    p = sub.add_parser("sweep", help="accuracy and spikes over target timesteps x retiming methods")
    _sweep_options(p, "comma-separated target timesteps in seconds")
    p.add_argument("--method", default="tau,integral,euler,exact", help="comma-separated: " + METHOD_HELP)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("recommend", help="which retiming method at each target timestep, at what accuracy, "
                                         "energy and latency (runs the sweep it needs)")  # fmt: skip
    _sweep_options(p, "comma-separated target timesteps in seconds (the training dt is added)")
    p.set_defaults(func=cmd_recommend)


def _sweep_options(p, dt_help: str) -> None:
    """The options ``sweep`` and ``recommend`` share."""
    from simulators.backends import names
    from toolchain.cli.main import BACKEND_HELP, DATA_HELP, add_executor_args, add_profile_arg, add_reset_args

    p.add_argument("model")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--dt", required=True, help=dt_help)
    p.add_argument("--backend", default="reference", choices=names(), help=BACKEND_HELP)
    add_profile_arg(p)
    p.add_argument("--samples", type=int)
    p.add_argument("--workers", type=int, help="parallel cells (default: number of cores; on Ray, the cluster's CPUs)")
    add_executor_args(p)
    p.add_argument("--source-dt", type=float, help="the timestep the graph was trained at, for graphs written by other tools (default: its metadata)")
    p.add_argument("--scheme", choices=SCHEMES)
    p.add_argument("--input-convention", choices=CONVENTIONS)
    add_reset_args(p)
    p.add_argument("--lava-check", type=int, default=0, metavar="N",
                   help="also run the recommended method of each target dt on --lava-backend on the first N samples "
                        "and record its agreement (predictions, spikes per layer) with --backend in the recommendation "
                        "(default 0: off; Lava runs about 1,000 steps/s, plus a few seconds to start per dt)")  # fmt: skip
    p.add_argument("--lava-backend", default="lava-fixed", choices=("lava-fixed", "lava-float"),
                   help="the Lava backend of --lava-check (default lava-fixed: Loihi's fixed point, as deployed)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("-q", "--quiet", action="store_true")
