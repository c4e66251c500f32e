"""Evidence for Loihi fixed point (issue 4): Lava bit-accurate vs the emulator, float vs fixed accuracy.

Run from the repository root (takes a few minutes, most of it Lava)::

    .venv/bin/python examples/zoo/fixed_point_evidence.py [--lava-samples 300] [--out examples/zoo/fixed_point_evidence.json]

1. Demo network (``examples/zoo/temporal``, trained at dt = 1 ms) on the first ``--lava-samples``
   samples of the demo test split: ``lava-fixed`` (Lava's bit-accurate models, one Lava run) vs
   ``emulator``, both with the quantization ``nirdeploy compare --backends lava-fixed,emulator``
   uses (netx profile, no calibration). Spike agreement per layer and samples with identical spikes.
2. ``cnn_sinabs.nir`` (the NIR paper's N-MNIST CNN, pooling folded into the following layers) on
   random event frames: ``lava-fixed`` vs ``emulator``; and the demo's netx artifact (written by
   ``nirdeploy deploy``) run by lava-dl netx against the emulator, layer by layer.
3. Float vs fixed: accuracy of ``reference`` (float64) and ``emulator`` (netx and loihi profiles)
   on the whole demo test split, and per time step: the demo retimed (methods tau, integral,
   exact) to several dt, reference vs emulator, each through ``toolchain.reports.sweep.sweep`` (what
   ``nirdeploy sweep --backend ...`` runs).

Writes everything to ``--out`` (cited by docs/fixed-point.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _cmp(a, b, readout="sum"):
    from toolchain.analysis.records import compare_results

    c = compare_results(a, b, readout)
    return {k: c[k] for k in ("backends", "samples", "n_steps", "spike_agreement", "samples_with_identical_spikes",
                              "prediction_agreement", "output_max_abs_diff", "layers")}  # fmt: skip


def demo_lava_vs_emulator(program, x, n):
    from simulators.backends import run

    xs = x[:n]
    t0 = time.perf_counter()
    lava = run("lava-fixed", program, xs, progress=True)
    t1 = time.perf_counter()
    emu = run("emulator", program, xs)
    t2 = time.perf_counter()
    out = _cmp(lava, emu, str(program.metadata.get("readout", "sum")))
    out.update(lava_seconds=t1 - t0, emulator_seconds=t2 - t1)
    return out


def cnn_lava_vs_emulator(n, steps, rate=0.05, seed=0):
    from simulators.backends import run
    from toolchain.ir import discretization_of, load_graph
    from toolchain.program import lower

    path = REPO.parent / "shared/conformance/nir-paper/cnn_sinabs.nir"
    g = load_graph(path)
    program = lower(g, discretization_of(g, dt=1e-3, input_convention="impulse"))
    rng = np.random.default_rng(seed)
    x = (rng.random((n, steps, 2, 34, 34)) < rate).astype(np.float64)
    t0 = time.perf_counter()
    lava = run("lava-fixed", program, x, progress=True)
    t1 = time.perf_counter()
    emu = run("emulator", program, x)
    out = _cmp(lava, emu)
    out.update(model=str(path.relative_to(REPO.parent)), input=f"random binary events, p={rate} per pixel and step",
               lava_seconds=t1 - t0, lava_conns=lava.info["conns"],
               spikes_per_sample={k: float(v.sum() / n) for k, v in emu.spikes.items()})  # fmt: skip
    return out


def demo_netx_vs_emulator(info, x, n, workdir):
    """``nirdeploy deploy`` of the demo, run with lava-dl netx, against the emulator, layer by layer."""
    from simulators.lava_netx import run_netx
    from simulators.emulator import emulate
    from toolchain.loihi.plan import check_integer_inputs
    from toolchain.api import deploy

    path = os.path.join(workdir, "demo.net")
    fx, desc = deploy(info["nir"], path)
    xs = x[:n]
    t0 = time.perf_counter()
    net = run_netx(path, xs)
    t1 = time.perf_counter()
    emu = emulate(fx, check_integer_inputs(fx.program, xs))
    layers = []
    for i, l in enumerate(l for l in desc["layers"] if l["type"] not in ("input", "flatten")):
        z = emu["spikes"][fx.node_groups[l["node"]][0]]  # dense layers: NIR order in both
        a = net["spikes"][i]
        layers.append({"node": l["node"], "type": l["type"], "spikes_netx": int(a.sum()), "spikes_emulator": int(z.sum()),
                       "mismatches": int((a != z).sum())})  # fmt: skip
    return {"samples": int(xs.shape[0]), "steps": int(xs.shape[1]), "layers": layers, "netx_seconds": t1 - t0,
            "network": net["network"], "identical": all(l["mismatches"] == 0 for l in layers)}  # fmt: skip


def float_vs_fixed(program, x, labels, profile="netx"):
    from simulators.backends import run
    from toolchain.analysis.records import compare_results

    readout = str(program.metadata.get("readout", "sum"))
    ref = run("reference", program, x)
    emu = run("emulator", program, x, profile=profile)
    c = compare_results(ref, emu, readout)
    acc_ref = float(np.mean(ref.predictions(readout) == labels))
    acc_emu = float(np.mean(emu.predictions(readout) == labels))
    return {
        "profile": profile,
        "samples": int(x.shape[0]),
        "steps": int(x.shape[1]),
        "accuracy_reference": acc_ref,
        "accuracy_emulator": acc_emu,
        "drop_points": 100 * (acc_ref - acc_emu),
        "prediction_agreement": c["prediction_agreement"],
        "spike_agreement": c["spike_agreement"],
        "samples_with_identical_spikes": c["samples_with_identical_spikes"],
        "saturation": emu.info.get("saturation"),
        "fixed_point": emu.info.get("fixed_point"),
        "emulator_seconds": emu.info["seconds"],
        "reference_seconds": ref.info["seconds"],
    }


def per_timestep(info, dts, methods, workdir):
    """Reference and emulator accuracy per (dt, retiming method), each through toolchain.reports.sweep.sweep."""
    from toolchain.reports.sweep import sweep

    acc = {}
    for backend in ("reference", "emulator"):
        res = sweep(info["nir"], info["data_spec"], dts, methods, backend, os.path.join(workdir, backend), progress=False)
        for r in res["rows"]:
            acc.setdefault((r["dt"], r["method"]), {})[backend] = r.get("accuracy")
    rows = []
    for (dt, method) in sorted(acc):
        a, b = acc[(dt, method)].get("reference"), acc[(dt, method)].get("emulator")
        rows.append({"dt": dt, "method": method, "accuracy_reference": a, "accuracy_emulator": b,
                     "drop_points": None if a is None or b is None else 100 * (a - b)})  # fmt: skip
    return {"methods": list(methods), "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lava-samples", type=int, default=300)
    ap.add_argument("--cnn-samples", type=int, default=20)
    ap.add_argument("--netx-samples", type=int, default=50)
    ap.add_argument("--cnn-steps", type=int, default=100)
    ap.add_argument("--dts", default="0.0005,0.001,0.002,0.004")
    ap.add_argument("--methods", default="tau,integral,exact", help="retiming methods for the per-dt table")
    ap.add_argument("--out", default=str(REPO / "examples" / "zoo" / "fixed_point_evidence.json"))
    args = ap.parse_args(argv)

    from benchmarks import demo_setup, machine

    workdir = tempfile.mkdtemp(prefix="nirdeploy-evidence-")
    program, x, labels, info = demo_setup(workdir=workdir)
    print(f"demo: {info['model']}; {info['data']}; {x.shape[0]} samples x {x.shape[1]} steps at dt={info['dt']:g} s")
    result = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "demo": {k: v for k, v in info.items() if k != "nir"}}
    result["machine"] = machine()

    print(f"1/4 demo: lava-fixed vs emulator on {args.lava_samples} samples ...")
    result["demo_lava_vs_emulator"] = demo_lava_vs_emulator(program, x, args.lava_samples)
    d = result["demo_lava_vs_emulator"]
    print(f"    spike_agreement {d['spike_agreement']}  identical samples {d['samples_with_identical_spikes']}/{d['samples']}")

    print(f"2/4 cnn_sinabs: lava-fixed vs emulator on {args.cnn_samples} samples x {args.cnn_steps} steps ...")
    result["cnn_lava_vs_emulator"] = cnn_lava_vs_emulator(args.cnn_samples, args.cnn_steps)
    d = result["cnn_lava_vs_emulator"]
    print(f"    spike_agreement {d['spike_agreement']}  identical samples {d['samples_with_identical_spikes']}/{d['samples']}")

    print(f"2b  the demo's netx artifact (nirdeploy deploy) in lava-dl netx vs the emulator on {args.netx_samples} samples ...")
    result["demo_netx_vs_emulator"] = demo_netx_vs_emulator(info, x, args.netx_samples, workdir)
    print(f"    identical: {result['demo_netx_vs_emulator']['identical']}  {result['demo_netx_vs_emulator']['layers']}")

    print("3/4 float vs fixed on the whole test split ...")
    result["float_vs_fixed"] = float_vs_fixed(program, x, labels)
    result["float_vs_fixed_loihi_profile"] = float_vs_fixed(program, x, labels, profile="loihi")
    for key in ("float_vs_fixed", "float_vs_fixed_loihi_profile"):
        d = result[key]
        print(f"    [{d['profile']}] accuracy reference {d['accuracy_reference']:.4f}  emulator {d['accuracy_emulator']:.4f}  "
              f"drop {d['drop_points']:.2f} points  prediction agreement {d['prediction_agreement']:.4f}")  # fmt: skip

    dts = [float(s) for s in args.dts.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    print(f"4/4 per time step (retimed with {', '.join(methods)}): reference vs emulator at dt = {dts} ...")
    result["per_timestep"] = per_timestep(info, dts, methods, workdir)
    for r in result["per_timestep"]["rows"]:
        print(f"    dt {r['dt'] * 1e3:g} ms {r['method']:9s} reference {r['accuracy_reference']}  emulator {r['accuracy_emulator']}")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, default=float)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
