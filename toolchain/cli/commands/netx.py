"""``nirdeploy import-netx NET.net --dt SECONDS -o OUT.nir``: a lava-dl netx network as a NIR graph.

``toolchain.api.import_netx``: the float view of the file's integers (``toolchain/loihi/netx_read.py``)
at timestep ``--dt`` (the integers have no time; dt sets the time constants, tau = dt / decay),
with metadata recording the file (name, sha256), dt and the integers' scale. ``deploy`` of the
graph writes the same integers, the emulator gives the same spikes, and ``retime`` adapts it to
another dt like any graph (docs/interop.md, section lava-dl).
"""

from __future__ import annotations

from toolchain.cli.output import emit
from toolchain.ir.atomic import check_output_path


def cmd_import_netx(args) -> int:
    from toolchain import api
    from toolchain.ir import graph_metadata

    check_output_path(args.output, "-o", inputs=[args.model])
    graph = api.import_netx(args.model, args.dt, output=args.output)
    if not args.quiet:  # lines within 80 columns (but for long paths)
        meta = graph_metadata(graph)
        layers = meta["netx"]["layers"]
        src = meta["imported_from"]
        print(f"read {args.model}: {len(layers)} neuron layers")
        print(f"  written by {src['written_by']}; sha256 {src['sha256'][:16]}...")
        print(f"  integers (state scale {meta['netx']['state_scale']:g} per float unit):")
        for name, L in layers.items():
            print(f"  {name:12s} iDecay {L['iDecay']:4d}  vDecay {L['vDecay']:4d}  vThMant {L['vThMant']:6d}  "
                  f"weight_exp {L['weight_exp']:3d}")  # fmt: skip
        if meta["netx"].get("bias_input"):
            print(f"  {meta['netx']['bias_input']!r} is driven by its bias: the graph's input is that bias")
            print("  (integer bias_mant per neuron, the same at every step)")
        print(f"wrote {args.output}: euler CubaLIF at dt={args.dt:g} s (tau = dt / decay)")
        print("  deploy gives the file's integers back; retime adapts it to another dt")
    meta = graph_metadata(graph)
    emit(args, {"output": args.output, "dt": args.dt, "imported_from": meta["imported_from"], "netx": meta["netx"]})
    return 0


def register(sub) -> None:
    p = sub.add_parser("import-netx", help="read a lava-dl netx network (.net) as a NIR graph at a timestep")
    p.add_argument("model", help="the .net (lava-dl netx HDF5, from SLAYER's export_hdf5 or nirdeploy deploy)")
    p.add_argument("--dt", type=float, required=True, help="the timestep in seconds the network's decays belong to")
    p.add_argument("-o", "--output", required=True, help="OUT.nir")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_import_netx)
