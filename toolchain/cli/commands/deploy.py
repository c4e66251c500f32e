"""``nirdeploy deploy MODEL.nir -o MODEL.net``: quantize for Loihi and write a lava-dl netx network.

Steps (``toolchain.api.deploy``): read the graph (retimed to ``--dt`` with ``--method`` if asked)
and lower it, quantize it with the netx profile (``toolchain/loihi/quantize.py``, which folds
pooling into the following layer first; with ``--data`` the states reached on those samples are
checked and the scales lowered where they would saturate) and write the netx HDF5
(``exporters/nir_to_netx.py``). Prints the per-layer quantization report; ``--report`` writes it
as JSON. Non-spiking readout layers (LI, CubaLI) are not netx layers: the output says which
layers run on the chip and that the readout runs on the host (the file stores its integers;
``simulators/host_readout.py``), and the description (also in ``--report``) has ``host_readout``.
"""

from __future__ import annotations

from toolchain.ir.atomic import check_output_path



def cmd_deploy(args) -> int:
    from toolchain import api
    from toolchain.analysis.records import write_json
    from toolchain.cli.main import load_inputs, load_program
    from toolchain.loihi.report import REPORT_COLUMNS, report_rows
    from toolchain.reports.console import console as new_console, table

    check_output_path(args.output, "-o", inputs=[args.model, args.data])
    check_output_path(args.report, "--report", inputs=[args.model, args.data, args.output])
    _, program = load_program(args)  # retimed once, used for the calibration data and the network
    calib = info = None
    if args.data:
        inputs = load_inputs(args, program)
        calib, info = inputs["x"], inputs["data"]
    fx, desc = api.deploy_program(program, args.output, calib_inputs=calib, calib_info=info, model=args.model)
    if args.report:
        write_json({"netx": {k: v for k, v in desc.items() if k != "report"}, "quantization": fx.report}, args.report)
    from toolchain.cli.output import emit

    emit(args, {"output": args.output, "report": args.report, "netx": {k: v for k, v in desc.items() if k != "report"},
                "quantization": fx.report})  # fmt: skip
    if not args.quiet:
        console = new_console()
        console.print(
            table(f"Loihi fixed point ({fx.profile} profile; errors relative to the largest weight / the threshold)",
                  REPORT_COLUMNS, report_rows(fx.report))  # fmt: skip
        )
        layers = ", ".join(f"{l['type']}{tuple(l['shape'])}" for l in desc["layers"])
        console.print(f"wrote {args.output}: {layers}")
        ro = desc.get("host_readout")
        if ro:  # non-spiking readout layers: not netx layers, computed on the host from the chip's spikes
            chip = ", ".join(repr(l["node"]) for l in desc["layers"] if l["type"] in ("dense", "dense_rec", "conv"))
            heads = ", ".join(f"{r['node']!r} ({r['type']})" for r in ro["nodes"])
            console.print(f"on the chip: {chip}; on the host: readout {heads} from the chip's output spikes, in Loihi's "
                          f"integer arithmetic (as the emulator; stored in {ro['data']}, run by simulators.host_readout)")  # fmt: skip
        if desc.get("bias_input"):  # bias units (docs/fixed-point.md 3b)
            console.print(f"bias unit: {desc['bias_input']}")
        if desc.get("bias_units"):
            console.print(f"bias units: {desc['bias_units']}")
        console.print(f"run it with lava.lib.dl.netx.hdf5.{desc['run']}; input: {desc['input_order']}")
        console.print("  netx settings: reset_interval = the steps per sample (e.g. 100 for 100 bins), reset_offset = 1, "
                      "input_message_bits = 16 (graded event counts up to 32767)")  # fmt: skip
        console.print("  on a Loihi 2 system (lava-loihi, untested here): the same Network with "
                      "run_cfg=Loihi2HwCfg() from lava.magma.core.run_configs instead of Loihi2SimCfg")  # fmt: skip
        data = args.data or "DATA"
        console.print(f"  check the file itself (its integers{', as calibrated' if args.data else ''}): nirdeploy compare "
                      f"{args.output} --data {data} --samples 16 --backends emulator,lava-fixed", soft_wrap=True)  # fmt: skip
        if args.report:
            console.print(f"wrote {args.report}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("deploy", help="quantize a .nir graph for Loihi and write a lava-dl netx network (.net)")
    p.add_argument("model", help="the .nir graph")
    p.add_argument("-o", "--output", required=True, help="MODEL.net (lava-dl netx HDF5)")
    from toolchain.cli.main import add_disc_args

    add_disc_args(p)
    p.add_argument("--data", help="calibration data (.h5 or 'default'): check the states reached and avoid saturation")
    p.add_argument("--samples", type=int, help="use the first N samples of --data")
    p.add_argument("--report", help="write the quantization report (.json)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_deploy, input=None)

