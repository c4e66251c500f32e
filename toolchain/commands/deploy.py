"""``nirdeploy deploy MODEL.nir -o MODEL.net``: quantize for Loihi and write a lava-dl netx network.

Steps: read the graph (retimed to ``--dt`` with ``--method`` if asked), fold pooling into the
following layer (``toolchain/passes/fold_pooling.py``), lower it, quantize it with the netx
profile (``toolchain/quantize.py``; with ``--data`` the states reached on those samples are
checked and the scales lowered where they would saturate) and write the netx HDF5
(``exporters/nir_to_netx.py``). Prints the per-layer quantization report; ``--report`` writes it
as JSON.
"""

from __future__ import annotations



def deploy(model: str, output: str, dt=None, method=None, scheme=None, input_convention=None, calib_inputs=None,
           calib_info=None):  # fmt: skip
    """Quantize ``model`` (.nir) and write ``output`` (.net); returns (FixedNetwork, description)."""
    from exporters.nir_to_netx import write_netx
    from toolchain.cli import load_program
    from toolchain.passes.fold_pooling import fold_pooling
    from toolchain.program import lower
    from toolchain.quantize import quantize

    graph, program = load_program(model, dt, scheme, input_convention, method)
    folded = fold_pooling(graph)
    if folded is not graph:
        program = lower(folded, program.disc)
    fx = quantize(program, calib_inputs=calib_inputs, profile="netx")
    extra = {"model": model, "report": fx.report}
    if calib_info:
        extra["calibration_data"] = calib_info
    desc = write_netx(fx, output, extra=extra)
    return fx, desc


def cmd_deploy(args) -> int:
    from toolchain.cli import _console, _table, load_inputs, load_program
    from toolchain.quantize import REPORT_COLUMNS, report_rows
    from toolchain.records import write_json

    calib = info = None
    if args.data:
        _, program = load_program(args.model, args.dt, args.scheme, args.input_convention, args.method)
        inputs = load_inputs(args, program)
        calib, info = inputs["x"], inputs["data"]
    fx, desc = deploy(args.model, args.output, args.dt, args.method, args.scheme, args.input_convention, calib, info)
    if args.report:
        write_json({"netx": {k: v for k, v in desc.items() if k != "report"}, "quantization": fx.report}, args.report)
    if not args.quiet:
        console = _console()
        console.print(
            _table(f"Loihi fixed point ({fx.profile} profile; errors relative to the largest weight / the threshold)",
                   REPORT_COLUMNS, report_rows(fx.report))  # fmt: skip
        )
        layers = ", ".join(f"{l['type']}{tuple(l['shape'])}" for l in desc["layers"])
        console.print(f"wrote {args.output}: {layers}")
        console.print(f"run it with lava.lib.dl.netx.hdf5.{desc['run']}; input: {desc['input_order']}")
        if args.report:
            console.print(f"wrote {args.report}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("deploy", help="quantize a .nir graph for Loihi and write a lava-dl netx network (.net)")
    p.add_argument("model", help="the .nir graph")
    p.add_argument("-o", "--output", required=True, help="MODEL.net (lava-dl netx HDF5)")
    p.add_argument("--dt", type=float, help="target timestep in seconds (with --method: retime to it first)")
    p.add_argument(
        "--method", choices=("tau", "integral", "euler", "exact", "none"), help="retime the graph to --dt with this method first"
    )
    p.add_argument("--scheme", choices=("exact", "euler"), help="discretization scheme for graphs without metadata")
    p.add_argument("--input-convention", choices=("current", "impulse"))
    p.add_argument("--data", help="calibration data (.h5 or 'default'): check the states reached and avoid saturation")
    p.add_argument("--samples", type=int, help="use the first N samples of --data")
    p.add_argument("--report", help="write the quantization report (.json)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_deploy, input=None)

