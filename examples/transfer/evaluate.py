"""Deploy the transfer-trained checkpoint like every zoo model and write ``results.json``.

    python -m examples.transfer.evaluate                      # everything below
    python -m examples.transfer.evaluate --lava-samples 20 --skip-sweep

Steps (each one a ``nirdeploy`` command, printed as it runs; artifacts in ``--work``, default
``runs/transfer``; a step whose output exists is not run again unless ``--force``):

1. ``nirdeploy export`` the checkpoint -> ``model.nir``;
2. the torch (norse) model on the whole test split -> accuracy;
3. ``nirdeploy simulate --backend reference`` on the whole test split;
4. ``nirdeploy compare --backends reference,lava-float --samples N`` (Lava runs ~100-1000
   steps/s: a subset), spike agreement and both accuracies;
5. ``nirdeploy simulate --backend emulator`` (fixed point, bit-exact with Lava's fixed-point
   LIF, see docs/fixed-point.md) on the whole test split;
6. ``nirdeploy report`` of the reference run; ``nirdeploy sweep`` over timesteps x retiming
   methods (reference backend) and its report.

``results.json`` (next to this file unless ``--out``) collects the numbers. The generic part,
:func:`evaluate_family`, is shared with examples/audio/evaluate.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _nirdeploy() -> List[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "nirdeploy")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "toolchain.cli"]


def _rel(a) -> str:
    """Paths inside the repository are shown (and passed, cwd = repository) relative to it."""
    a = str(a)
    return os.path.relpath(a, REPO) if os.path.isabs(a) and a.startswith(REPO + os.sep) else a


def run_cmd(args: Sequence[str], log: List[str], output: Optional[str] = None, force: bool = False) -> None:
    """Run one nirdeploy command (from the repository root) unless its output exists."""
    args = [_rel(a) for a in args]
    shown = "nirdeploy " + " ".join(shlex.quote(str(a)) for a in args)
    log.append(shown)
    if output and os.path.exists(output) and not force:
        print(f"[exists] {shown}", flush=True)
        return
    print(f"[run] {shown}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(_nirdeploy() + [str(a) for a in args], check=True, cwd=REPO)
    print(f"      {time.perf_counter() - t0:.0f} s", flush=True)


def torch_accuracy(model_spec: str, checkpoint: str, data: str) -> Dict[str, Any]:
    """Accuracy of the checkpoint's torch/norse model (float32, per-step calls) on ``data``."""
    import numpy as np
    import torch

    from exporters.checkpoint import build_model
    from toolchain.data import open_dataset

    model, extra = build_model(model_spec, checkpoint)
    ds = open_dataset(data)
    x = ds.bin(float(extra["dt"]))
    readout = extra.get("readout", "sum")
    correct = 0
    with torch.no_grad():
        for i in range(0, len(ds), 100):
            xb = torch.from_numpy(x[i : i + 100])
            state, outs = None, []
            for t in range(xb.shape[1]):
                o, state = model(xb[:, t], state)
                outs.append(o)
            out = torch.stack(outs, 1)
            if readout in ("sum", "mean"):
                pred = out.sum(1).argmax(-1)
            elif readout == "max":
                pred = out.max(1).values.argmax(-1)
            else:
                pred = out[:, -1].argmax(-1)
            correct += int((pred.numpy() == ds.labels[i : i + 100]).sum())
    return {"accuracy": correct / len(ds), "n_samples": len(ds), "readout": readout, "dt": float(extra["dt"]),
            "checkpoint_test_accuracy": extra.get("test_accuracy"), "train_seconds": extra.get("train_seconds"),
            "np_version": np.__version__}


def _energy(rec: Dict[str, Any]) -> Dict[str, Any]:
    e = rec.get("energy") or {}
    default = e.get("default")
    for m in e.get("models", []):
        if m.get("name") == default:
            return {"model": default, "total_j": m.get("total_j"), "dynamic_j": m.get("dynamic_j"), "static_j": m.get("static_j")}
    return {"model": default}


def sweep_table(sweep_dir: str) -> List[Dict[str, Any]]:
    """Rows (dt, rho, method, accuracy, spikes_per_sample) of a sweep directory."""
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        sw = json.load(f)
    rows = sw.get("rows", sw) if isinstance(sw, dict) else sw
    out = []
    for r in rows:
        out.append({k: r.get(k) for k in ("dt", "rho", "method", "accuracy", "spikes_per_sample", "error") if k in r})
    return sorted(out, key=lambda r: (r["dt"], r["method"]))


def sweep_markdown(rows: List[Dict[str, Any]], methods: Sequence[str]) -> str:
    dts = sorted({r["dt"] for r in rows})
    cell = {(r["dt"], r["method"]): r for r in rows}
    lines = ["| dt_T | rho | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for dt in dts:
        vals = []
        rho = None
        for m in methods:
            r = cell.get((dt, m))
            if r is None:
                vals.append("")
                continue
            rho = r.get("rho", rho)
            if r.get("accuracy") is None:
                vals.append("refused" if r.get("error") else "")
            else:
                vals.append(f"{100 * r['accuracy']:.1f} % ({r['spikes_per_sample']:.0f} sp)")
        lines.append(f"| {dt * 1e3:g} ms | {rho:g} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def evaluate_family(
    family: str,
    model_spec: str,
    checkpoint: str,
    data: str,
    work: str,
    out: str,
    lava_samples: int = 20,
    fixed_samples: Optional[int] = None,
    sweep_dts: Sequence[float] = (),
    sweep_methods: Sequence[str] = ("tau", "integral", "exact", "euler", "none"),
    sweep_samples: Optional[int] = None,
    sweep_workers: int = 2,
    force: bool = False,
    extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Export, simulate on every backend, compare, report and sweep; write ``out`` (results.json)."""
    import torch

    torch.set_num_threads(2)
    os.makedirs(work, exist_ok=True)
    log: List[str] = []
    nir_path = os.path.join(work, "model.nir")
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    stale = os.path.exists(nir_path) and os.path.getmtime(nir_path) < os.path.getmtime(checkpoint)
    force = force or stale
    run_cmd(["export", "--model", model_spec, "--checkpoint", checkpoint, "-o", nir_path], log, nir_path, force)
    t = torch_accuracy(model_spec, checkpoint, data)

    ref_path = os.path.join(work, "reference.json")
    run_cmd(["simulate", nir_path, "--data", data, "--backend", "reference", "-q", "-o", ref_path], log, ref_path, force)
    cmp_path = os.path.join(work, f"compare_lava_float_{lava_samples}.json")
    run_cmd(["compare", nir_path, "--data", data, "--backends", "reference,lava-float", "--samples", str(lava_samples),
             "-q", "-o", cmp_path], log, cmp_path, force)
    fx_path = os.path.join(work, "emulator.json")
    fx_args = ["simulate", nir_path, "--data", data, "--backend", "emulator", "-q", "-o", fx_path]
    if fixed_samples:
        fx_args[-3:-3] = ["--samples", str(fixed_samples)]
    run_cmd(fx_args, log, fx_path, force)
    report_path = os.path.join(work, "report.html")
    run_cmd(["report", ref_path, "-q", "-o", report_path], log, report_path, force)

    sweep_dir = os.path.join(work, "sweep")
    rows: List[Dict[str, Any]] = []
    if sweep_dts:
        args = ["sweep", nir_path, "--data", data, "--dt", ",".join(f"{d:g}" for d in sweep_dts),
                "--method", ",".join(sweep_methods), "--backend", "reference", "--workers", str(sweep_workers), "-q",
                "-o", sweep_dir]
        if sweep_samples:
            args[-3:-3] = ["--samples", str(sweep_samples)]
        run_cmd(args, log, os.path.join(sweep_dir, "sweep.json"), force)
        run_cmd(["report", sweep_dir, "-q", "-o", os.path.join(work, "sweep_report.html")], log,
                os.path.join(work, "sweep_report.html"), force)
        rows = sweep_table(sweep_dir)

    with open(ref_path) as f:
        ref = json.load(f)
    with open(cmp_path) as f:
        cmp = json.load(f)
    with open(fx_path) as f:
        fx = json.load(f)
    lava_acc = (cmp.get("accuracy") or {}).get("lava-float")
    ref_sub = (cmp.get("accuracy") or {}).get("reference")
    results: Dict[str, Any] = {
        "family": family,
        "metric": "accuracy",
        "model": model_spec,
        "checkpoint": os.path.relpath(checkpoint, REPO),
        "data": data,
        "dt": t["dt"],
        "readout": t["readout"],
        "torch": {"accuracy": t["accuracy"], "n_samples": t["n_samples"]},
        "reference": {"accuracy": ref["accuracy"], "n_samples": ref["samples"], "n_steps": ref["n_steps"]},
        "lava_float": {"accuracy": lava_acc, "n_samples": cmp["samples"], "reference_accuracy_same_samples": ref_sub},
        "emulator": {
            "accuracy": fx["accuracy"],
            "n_samples": fx["samples"],
            "what": "fixed point: the bit-exact integer emulator of Lava's fixed-point (bit-accurate Loihi) LIF, "
                    "quantized by toolchain/quantize.py",
        },
        "spikes_per_sample": ref["total_spikes_per_sample"],
        "spikes_per_layer": {l["name"]: l["spikes_per_sample"] for l in ref["layers"]},
        "energy_per_inference_j": _energy(ref),
        "spike_agreement_reference_vs_lava_float": {
            "spike_agreement": cmp["spike_agreement"],
            "samples_with_identical_spikes": cmp["samples_with_identical_spikes"],
            "n_samples": cmp["samples"],
            "prediction_agreement": cmp["prediction_agreement"],
            "output_max_abs_diff": cmp.get("output_max_abs_diff"),
        },
        "train_seconds": ck.get("train_seconds"),
        "checkpoint_test_accuracy": ck.get("test_accuracy"),
        "commands": log,
    }
    if rows:
        results["sweep"] = {"backend": "reference", "source_dt": t["dt"], "methods": list(sweep_methods), "rows": rows,
                            "n_samples": ref["samples"] if not sweep_samples else min(sweep_samples, ref["samples"])}
    if extra:
        results.update(extra)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in results.items() if k not in ("commands", "sweep")}, indent=1))
    if rows:
        print(sweep_markdown(rows, list(sweep_methods)))
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "checkpoint.pt"))
    ap.add_argument("--work", default=os.path.join(REPO, "runs", "transfer"))
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--lava-samples", type=int, default=20)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--force", action="store_true", help="run every step again")
    args = ap.parse_args(argv)
    extra = {}
    table = os.path.join(HERE, "compare_static", "runs.json")
    if os.path.exists(table):
        extra["with_without_static"] = "examples/transfer/compare_static/table.md"
    evaluate_family(
        "transfer (static-to-event knowledge transfer, event digits)",
        "examples.transfer.model:build_model",
        args.checkpoint,
        "digits",
        args.work,
        args.out,
        lava_samples=args.lava_samples,
        sweep_dts=() if args.skip_sweep else (0.0025, 0.005, 0.01, 0.02, 0.04),
        force=args.force,
        extra=extra,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
