"""The interop matrix of docs/interop.md, measured: ``python -m examples.interop.matrix [--lava]``.

Rows: framework x direction. "their export -> nirdeploy": the framework writes NIR, nirdeploy runs
it on the reference (and with --lava on lava-float) with the options toolchain/ir/conventions.py
prints; agreement with the framework's own forward pass (output spikes, every sample and step).
"nirdeploy -> their import": our export of a small norse model read by the framework's importer;
agreement with nirdeploy's reference. Each cell: fraction of equal (sample, step, neuron) entries.
"""

from __future__ import annotations

import argparse
import copy
import sys

import numpy as np
import torch

from examples.interop.models import build, inputs
from examples.interop.readers import agreement, run_norse, run_reference, run_snntorch


def _cell(fn) -> str:
    try:
        a = fn()
    except Exception as e:  # a reader's failure is a measured result
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        return f"fails: {type(e).__name__} {msg[:70]}"
    if isinstance(a, str):
        return a
    return f"{a['agreement']:.4f} ({a['spikes_reader']}/{a['spikes_reference']} spikes)"


def _lava(graph, x, **opts):
    from simulators.lava_float import run_lava_float
    from toolchain.ir import discretization_of
    from toolchain.program import lower

    prog = lower(graph, discretization_of(graph, **opts))
    res = run_lava_float(prog, x, progress=False)
    return np.asarray(res.output(), dtype=np.float64).reshape(x.shape[0], x.shape[1], -1)


def _roundtrip(g):
    import tempfile
    from pathlib import Path

    from toolchain.ir import load_graph, save_graph

    with tempfile.TemporaryDirectory() as d:
        save_graph(g, Path(d) / "m.nir")
        return load_graph(Path(d) / "m.nir")


def their_export_rows(lava: bool):
    """norse to_nir (LIFBoxCell; LIFCell), snnTorch export_to_nir (Leaky -> Synaptic)."""
    import norse.torch as nt
    from exporters.torch_run import run_torch
    from toolchain.ir.conventions import detect

    rows = []
    x = inputs(steps=100, samples=2)
    for kind in ("lif", "cubalif"):
        m = build(kind, 1e-3)
        with torch.no_grad():
            g = nt.to_nir(m, torch.zeros(1, 8))
        c = detect(g)
        out, _ = run_torch(m, torch.as_tensor(x), dtype=torch.float64)
        own = np.asarray(out).reshape(x.shape[0], x.shape[1], -1)
        opts = {k: v for k, v in c.options.items() if k != "reset_delay"}
        ref = _cell(lambda: agreement(run_reference(g, x, **opts), own))
        lv = _cell(lambda: agreement(_lava(g, x, **opts), own)) if lava else "not run (--lava)"
        rows.append((f"norse to_nir ({'LIFBoxCell' if kind == 'lif' else 'LIFCell'})", "export -> nirdeploy", ref, lv, c.cli()))
    # snnTorch: Leaky(subtract, delay) -> Synaptic, its own forward in float64 vs ours
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), snn.Leaky(beta=torch.full((16,), 0.9), threshold=torch.ones(16), init_hidden=True),
        torch.nn.Linear(16, 4), snn.Synaptic(alpha=torch.full((4,), 0.7), beta=torch.full((4,), 0.8),
                                             threshold=torch.ones(4), init_hidden=True, output=True),
    )
    with torch.no_grad():
        for mod in net:
            if isinstance(mod, torch.nn.Linear):
                mod.weight.mul_(3.0).add_(0.3)
                mod.bias.zero_()
    g = export_to_nir(copy.deepcopy(net), torch.zeros(1, 8), ignore_dims=[0])
    c = detect(g)
    xs = inputs(steps=100, samples=2)
    netd = net.double()
    for mod in netd:
        if hasattr(mod, "reset_hidden"):
            mod.reset_hidden()
    def step(h):  # snnTorch's spike functions return float32: cast between layers
        for mod in netd:
            h = mod(h.double())
            h = h[0] if isinstance(h, tuple) else h
        return h.double().numpy()

    with torch.no_grad():
        own = np.stack([step(torch.as_tensor(xs[:, t])) for t in range(xs.shape[1])], axis=1)
    opts = dict(c.options)
    ref = _cell(lambda: agreement(run_reference(g, xs, **opts), own))
    lv = _cell(lambda: agreement(_lava(g, xs, **opts), own)) if lava else "not run (--lava)"
    rows.append(("snnTorch export_to_nir (Leaky -> Synaptic)", "export -> nirdeploy", ref, lv, c.cli()))
    return rows


def our_export_rows():
    from exporters.torch_to_nir import export_model
    from toolchain.passes.retime import retime

    rows = []
    for dt in (1e-3, 1e-4):
        x = inputs(steps=200 if dt == 1e-3 else 1000)
        for kind in ("lif", "cubalif", "recurrent"):
            g = _roundtrip(export_model(build(kind, dt)))
            ref = run_reference(g, x)
            rows.append((f"norse from_nir <- our {kind} (dt={dt:g})", "nirdeploy -> import",
                         _cell(lambda: agreement(run_norse(g, x, dt), ref)), "", f"from_nir(g, dt={dt:g})"))
            rows.append((f"snnTorch import_from_nir <- our {kind} (dt={dt:g})", "nirdeploy -> import",
                         _cell(lambda: agreement(run_snntorch(g, x), ref)), "", "import_from_nir(g)"))
    for kind, method, rho in [(k, m, 2) for k in ("lif", "cubalif") for m in ("tau", "exact", "integral")] + [
            ("lif", "integral", 3)]:
        x = inputs(steps=300)[:, ::rho]
        g = _roundtrip(retime(export_model(build(kind, 1e-3)), rho * 1e-3, method))
        ref = run_reference(g, x)
        rows.append((f"norse from_nir <- our {kind} retimed {method} rho={rho}", "nirdeploy -> import",
                     _cell(lambda: agreement(run_norse(g, x, rho * 1e-3), ref)), "", f"from_nir(g, dt={rho * 1e-3:g})"))
    # the demo model and the shipped checkpoint
    from toolchain import api

    g = api.export_checkpoint("toolchain.demo_model.model:build_model", "toolchain/demo_model/checkpoint.pt")
    g = g[0] if isinstance(g, tuple) else g
    x = (np.random.default_rng(0).random((8, 100, 40)) < 0.2).astype(np.float64)
    ref = run_reference(g, x)
    rows.append(("norse from_nir <- demo model (LIFBox, dt=1e-3)", "nirdeploy -> import",
                 _cell(lambda: agreement(run_norse(g, x, 1e-3), ref)), "", "from_nir(g, dt=0.001)"))
    rows.append(("snnTorch import_from_nir <- demo model", "nirdeploy -> import",
                 _cell(lambda: agreement(run_snntorch(g, x), ref)), "", "import_from_nir(g)"))
    return rows


def zoo_rows():
    """The shipped zoo checkpoints (examples/zoo, docs/zoo.md) exported by nirdeploy, 2 test samples
    each: norse's spikes on every spiking layer vs the reference, and what each reader does."""
    from examples.interop.models import ZOO, zoo
    from examples.interop.readers import layer_agreement

    rows = []
    for family in ZOO:
        g, x, dt = zoo(family, samples=2)
        kinds = sorted({type(n).__name__ for n in g.nodes.values()} - {"Input", "Output"})

        def norse_cell(g=g, x=x, dt=dt):
            try:
                r = layer_agreement(g, x, dt)
                note = ""
            except Exception as e:  # the one-sample run shows the layers the batch bug hides
                err = f"{type(e).__name__} {str(e).strip().splitlines()[-1][:60]}"
                try:
                    r = layer_agreement(g, x[:1], dt)
                except Exception:
                    return f"fails: {err}"
                note = f"fails on 2 samples ({err}); on 1 sample: "
            lay = r["layers"]
            worst = min(a for a, _, _ in lay.values())
            sp = sum(s for _, s, _ in lay.values()), sum(s for _, _, s in lay.values())
            drop = f"; drops {', '.join(type(g.nodes[k]).__name__ + ' ' + repr(k) for k in r['missing'])}" if r["missing"] else ""
            return f"{note}{len(lay)} spiking layers, worst {worst:.4f} ({sp[0]}/{sp[1]} spikes){drop}"

        rows.append((f"norse from_nir <- zoo {family} ({', '.join(kinds)}; dt={dt:g})", "nirdeploy -> import",
                     norse_cell(), "", f"from_nir(g, dt={dt:g})"))
        rows.append((f"snnTorch import_from_nir <- zoo {family}", "nirdeploy -> import",
                     _cell(lambda g=g, x=x: run_snntorch(g, x)), "", "import_from_nir(g)"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lava", action="store_true", help="also run the foreign exports on lava-float (slow)")
    args = ap.parse_args(argv)
    rows = their_export_rows(args.lava) + our_export_rows() + zoo_rows()
    print("| case | direction | reference (or reader) | lava-float | options |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
