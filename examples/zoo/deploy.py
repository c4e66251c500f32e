"""Deploy one zoo model end to end and collect its numbers (shared by examples/zoo/*/evaluate.py).

Each step is a ``nirdeploy`` command, printed as it runs, so that every number in a family's
``results.json`` can be reproduced by hand; artifacts go to a work directory (``runs/<family>``,
not versioned); a step whose output exists is skipped unless ``force``:

1. ``nirdeploy export`` the checkpoint -> ``model.nir``;
2. the torch (norse) model, called once per step (the exported arithmetic), on the whole test
   split -> torch metric;
3. ``nirdeploy simulate --backend reference`` on the whole test split;
4. ``nirdeploy compare --backends reference,lava-float --samples N`` (Lava's CPU simulator runs
   ~100-1000 steps/s: a subset) -> spike agreement, and Lava's run record;
5. fixed point: ``nirdeploy simulate --backend emulator`` on the whole test split and
   ``nirdeploy compare --backends lava-fixed,emulator --samples M`` (bit-exact on this graph?);
   if the emulator refuses or fails on this graph, ``--backend lava-fixed --samples M`` instead
   (results.json says which, and why);
6. ``nirdeploy report`` of the reference run; ``nirdeploy sweep`` over timesteps x retiming
   methods (reference backend) and its report.

The metric is ``accuracy`` (classification) or ``mean_iou`` (segmentation: the run records'
``segmentation`` section, toolchain/analysis/segmentation.py).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _nirdeploy() -> List[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "nirdeploy")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "toolchain.cli.main"]


def run_cmd(args: Sequence[str], log: List[str], output: Optional[str] = None, force: bool = False, check: bool = True) -> int:
    """Run one nirdeploy command from the repository root unless ``output`` exists; returns its status."""
    shown = "nirdeploy " + " ".join(shlex.quote(os.path.relpath(a, REPO) if os.path.isabs(str(a)) else str(a)) for a in args)
    log.append(shown)
    if output and os.path.exists(output) and not force:
        print(f"[exists] {shown}", flush=True)
        return 0
    print(f"[run] {shown}", flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(_nirdeploy() + [str(a) for a in args], cwd=REPO)
    print(f"      {time.perf_counter() - t0:.0f} s (status {r.returncode})", flush=True)
    if check and r.returncode != 0:
        raise SystemExit(f"command failed: {shown}")
    return r.returncode


def read(path: str) -> Dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def energy_of(rec: Dict[str, Any]) -> Dict[str, Any]:
    """The default energy model's estimate per inference from a run record."""
    e = rec.get("energy") or {}
    default = e.get("default")
    for m in e.get("models", []):
        if m.get("name") == default:
            return {"model": default, "total_j": m.get("total_j"), "dynamic_j": m.get("dynamic_j"), "static_j": m.get("static_j")}
    return {"model": default}


def record_metric(rec: Dict[str, Any], metric: str) -> Optional[float]:
    if metric == "mean_iou":
        return (rec.get("segmentation") or {}).get("mean_iou")
    return rec.get("accuracy")


def torch_outputs(model_spec: str, checkpoint: str, data: str, batch: int = 50):
    """(outputs [N, T, ...] of the per-step torch model in float32, dataset, checkpoint extras)."""
    import torch

    from examples.zoo.resnet.fast import run_steps
    from exporters.checkpoint import build_model
    from toolchain.data import open_dataset

    model, extra = build_model(model_spec, checkpoint)
    ds = open_dataset(data)
    x = ds.bin(float(extra["dt"]))
    outs = [run_steps(model, torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(ds), batch)]
    return np.concatenate(outs), ds, extra


def torch_metric(model_spec: str, checkpoint: str, data: str, metric: str) -> Dict[str, Any]:
    out, ds, extra = torch_outputs(model_spec, checkpoint, data)
    readout = extra.get("readout", "sum")
    if metric == "mean_iou":
        from toolchain.analysis.segmentation import class_names_of, segmentation_section

        sec = segmentation_section(out, ds.targets, readout, extra.get("upsampling", "bilinear"),
                                   class_names=class_names_of(ds))
        return {"mean_iou": sec["mean_iou"], "pixel_accuracy": sec["pixel_accuracy"], "n_samples": len(ds),
                "iou_per_class": sec["iou_per_class"]}
    scores = out.reshape(out.shape[0], out.shape[1], -1)
    scores = scores.sum(1) if readout in ("sum", "mean") else scores.max(1) if readout == "max" else scores[:, -1]
    return {"accuracy": float(np.mean(scores.argmax(-1) == ds.labels)), "n_samples": len(ds)}


def evaluate_family(
    family: str,
    metric: str,
    model_spec: str,
    checkpoint: str,
    data: str,
    work: str,
    out: str,
    lava_samples: int = 50,
    fixed_samples: int = 20,
    sweep_dts: Sequence[float] = (),
    sweep_methods: Sequence[str] = ("none", "tau", "integral", "exact"),
    sweep_samples: Optional[int] = None,
    sweep_workers: int = 1,
    force: bool = False,
    extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Export, simulate on every backend, compare, report and sweep; write ``out`` (results.json)."""
    import torch

    torch.set_num_threads(1)
    os.makedirs(work, exist_ok=True)
    log: List[str] = []
    nir_path = os.path.join(work, "model.nir")
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    force = force or (os.path.exists(nir_path) and os.path.getmtime(nir_path) < os.path.getmtime(checkpoint))
    run_cmd(["export", "--model", model_spec, "--checkpoint", checkpoint, "-o", nir_path], log, nir_path, force)
    t = torch_metric(model_spec, checkpoint, data, metric)

    ref_path = os.path.join(work, "reference.json")
    run_cmd(["simulate", nir_path, "--data", data, "--backend", "reference", "-q", "-o", ref_path], log, ref_path, force)
    cmp_path = os.path.join(work, f"compare_lava_float_{lava_samples}.json")
    run_cmd(["compare", nir_path, "--data", data, "--backends", "reference,lava-float", "--samples", str(lava_samples),
             "-q", "-o", cmp_path], log, cmp_path, force)
    cmp = read(cmp_path)
    lava_path = os.path.join(work, "lava_float.json")  # Lava's run record, from the compare
    with open(lava_path, "w") as f:
        json.dump(cmp["runs"]["lava-float"], f, indent=1)

    # fixed point: the emulator on everything, else Lava's bit-accurate models on a subset
    fixed: Dict[str, Any] = {}
    emu_path = os.path.join(work, "emulator.json")
    status = run_cmd(["simulate", nir_path, "--data", data, "--backend", "emulator", "-q", "-o", emu_path], log, emu_path,
                     force, check=False)
    if status == 0 and os.path.exists(emu_path):
        fx = read(emu_path)
        fixed = {"backend": "emulator", "what": "bit-exact integer emulator of Lava's fixed-point (bit-accurate Loihi) models"}
        # the emulator's claim to be Lava's fixed point, checked on this family's graph
        fxc_path = os.path.join(work, f"compare_lava_fixed_emulator_{fixed_samples}.json")
        run_cmd(["compare", nir_path, "--data", data, "--backends", "lava-fixed,emulator", "--samples", str(fixed_samples),
                 "-q", "-o", fxc_path], log, fxc_path, force)
        fxc = read(fxc_path)
        fixed["lava_fixed_vs_emulator"] = {
            "spike_agreement": fxc["spike_agreement"], "samples_with_identical_spikes": fxc["samples_with_identical_spikes"],
            "n_samples": fxc["samples"], "output_max_abs_diff": fxc.get("output_max_abs_diff"),
            "lava_fixed": record_metric(fxc["runs"]["lava-fixed"], metric),
        }
    else:
        fx_path = os.path.join(work, f"lava_fixed_{fixed_samples}.json")
        run_cmd(["simulate", nir_path, "--data", data, "--backend", "lava-fixed", "--samples", str(fixed_samples), "-q",
                 "-o", fx_path], log, fx_path, force)
        fx = read(fx_path)
        fixed = {"backend": "lava-fixed", "what": "Lava's bit-accurate (Loihi fixed-point) process models on the CPU",
                 "why_not_emulator": f"`nirdeploy simulate --backend emulator` exited with status {status} on this graph "
                                     "(its message is in the evaluate log)"}
    fixed.update({metric: record_metric(fx, metric), "n_samples": fx["samples"]})
    ref = read(ref_path)
    fixed[f"reference_{metric}_same_samples"] = _metric_on_first(ref_path, metric, fx["samples"], data, nir_path) \
        if fx["samples"] < ref["samples"] else record_metric(ref, metric)

    report_path = os.path.join(work, "report.html")
    run_cmd(["report", ref_path, "-q", "-o", report_path], log, report_path, force)

    sweep: Dict[str, Any] = {}
    if sweep_dts:
        sweep_dir = os.path.join(work, "sweep")
        args = ["sweep", nir_path, "--data", data, "--dt", ",".join(f"{d:g}" for d in sweep_dts),
                "--method", ",".join(sweep_methods), "--backend", "reference", "--workers", str(sweep_workers), "-q", "-o", sweep_dir]
        if sweep_samples:
            args[-3:-3] = ["--samples", str(sweep_samples)]
        run_cmd(args, log, os.path.join(sweep_dir, "sweep.json"), force)
        run_cmd(["report", sweep_dir, "-q", "-o", os.path.join(work, "sweep_report.html")], log,
                os.path.join(work, "sweep_report.html"), force)
        rows = []
        for r in read(os.path.join(sweep_dir, "sweep.json"))["rows"]:
            rec = r.get("record") or {}
            rows.append({"dt": r["dt"], "rho": r["rho"], "method": r["method"], metric: r.get(metric),
                         "spikes_per_sample": r.get("spikes_per_sample"),
                         "energy_per_inference_j": energy_of(rec).get("total_j") if rec else None,
                         **({"error": r["error"]} if r.get("error") else {})})
        sweep = {"backend": "reference", "source_dt": float(ck["dt"]), "methods": list(sweep_methods),
                 "n_samples": min(sweep_samples or ref["samples"], ref["samples"]),
                 "rows": sorted(rows, key=lambda r: (r["dt"], r["method"]))}

    lava = cmp["runs"]["lava-float"]
    results: Dict[str, Any] = {
        "family": family,
        "metric": metric,
        "model": model_spec,
        "checkpoint": os.path.relpath(checkpoint, REPO),
        "data": data,
        "dt": float(ck["dt"]),
        "n_steps": ref["n_steps"],
        "readout": ref["readout"],
        "torch": t,
        "reference": {metric: record_metric(ref, metric), "n_samples": ref["samples"]},
        "lava_float": {metric: record_metric(lava, metric), "n_samples": lava["samples"],
                       f"reference_{metric}_same_samples": record_metric(cmp["runs"]["reference"], metric)},
        "fixed_point": fixed,
        "spikes_per_sample": ref["total_spikes_per_sample"],
        "spikes_per_layer": {l["name"]: l["spikes_per_sample"] for l in ref["layers"]},
        "neurons": int(sum(l["neurons"] for l in ref["layers"])),
        "energy_per_inference_j": energy_of(ref),
        "spike_agreement_reference_vs_lava_float": {
            "spike_agreement": cmp["spike_agreement"],
            "samples_with_identical_spikes": cmp["samples_with_identical_spikes"],
            "n_samples": cmp["samples"],
            "output_max_abs_diff": cmp.get("output_max_abs_diff"),
            "layers": {l["name"]: l["spike_agreement"] for l in cmp["layers"]},
        },
        "lava_backend_info": {k: lava.get("backend_info", {}).get(k) for k in ("lava_depth", "lava_processes", "relays", "conns")},
        "train_seconds": ck.get("train_seconds"),
        "checkpoint_info": {k: ck.get(k) for k in ("seed", "epochs", "lr", "batch_size", "torch_threads", "model_kwargs")},
        "commands": log,
    }
    if metric == "mean_iou":
        results["upsampling"] = (ref.get("segmentation") or {}).get("upsampling_note")
        results["reference"]["iou_per_class"] = (ref.get("segmentation") or {}).get("iou_per_class")
        results["reference"]["pixel_accuracy"] = (ref.get("segmentation") or {}).get("pixel_accuracy")
    if sweep:
        results["sweep"] = sweep
    if extra:
        results.update(extra)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in results.items() if k not in ("commands", "sweep")}, indent=1))
    if sweep:
        print(sweep_markdown(sweep["rows"], list(sweep_methods), metric))
    return results


def _metric_on_first(ref_path: str, metric: str, n: int, data: str, nir_path: str) -> Optional[float]:
    """The reference metric on the first ``n`` samples (for a fixed-point run on a subset)."""
    rec = read(ref_path)
    if metric == "accuracy" and rec.get("predictions") and rec.get("labels"):
        p, l = np.asarray(rec["predictions"][:n]), np.asarray(rec["labels"][:n])
        return float(np.mean(p == l))
    from simulators.reference import simulate
    from toolchain.data import open_dataset
    from toolchain.ir import discretization_of, load_graph
    from toolchain.program import lower
    from toolchain.analysis.segmentation import segmentation_section

    g = load_graph(nir_path)
    prog = lower(g, discretization_of(g))
    ds = open_dataset(data).subset(np.arange(n))
    res = simulate(prog, ds.bin(prog.disc.dt))
    return segmentation_section(res.output(), ds.targets, rec.get("readout", "sum"))["mean_iou"]


def sweep_markdown(rows: List[Dict[str, Any]], methods: Sequence[str], metric: str) -> str:
    dts = sorted({r["dt"] for r in rows})
    cell = {(r["dt"], r["method"]): r for r in rows}
    lines = ["| dt | rho | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for dt in dts:
        vals, rho = [], None
        for m in methods:
            r = cell.get((dt, m))
            if r is None or r.get(metric) is None:
                vals.append("refused" if r is not None and r.get("error") else "")
                continue
            rho = r["rho"]
            v = 100 * r[metric] if metric == "accuracy" else r[metric]
            vals.append((f"{v:.1f} %" if metric == "accuracy" else f"{v:.3f}") + f" ({r['spikes_per_sample']:.0f} sp)")
        lines.append(f"| {dt * 1e3:g} ms | {rho if rho is None else f'{rho:g}'} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
