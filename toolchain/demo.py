"""``nirdeploy demo``: the whole pipeline on the shipped model and the embedded default data.

checkpoint -> model.nir -> reference run (whole test set) + Lava run (a subset) -> compare,
plus the torch model itself on the same inputs, so that the three agree visibly.
"""

from __future__ import annotations

import os
import time

import numpy as np

from toolchain.demo_model import CHECKPOINT as DEMO_CHECKPOINT, MODEL as DEMO_MODEL
from toolchain.errors import NirDeployError


def run_demo(out: str, lava_samples: int = 32, quiet: bool = False, verbose: bool = False, workers: int = 1) -> dict:
    if isinstance(lava_samples, bool) or not isinstance(lava_samples, int) or lava_samples < 1:
        raise NirDeployError(f"--lava-samples must be at least 1, got {lava_samples!r}")
    from exporters.checkpoint import build_model
    from exporters.torch_run import run_torch
    from exporters.torch_to_nir import export_model
    from simulators.backends import run
    from toolchain.reports.console import console as new_console, table
    from toolchain.data import open_dataset
    from toolchain.ir import discretization_of, load_graph, save_graph
    from toolchain.program import lower
    from toolchain.analysis.records import compare_results, run_record, write_json

    if not DEMO_CHECKPOINT.exists():
        raise NirDeployError(f"the demo checkpoint {DEMO_CHECKPOINT} is missing (a broken nirdeploy install: it is package data)")
    console = new_console()
    os.makedirs(out, exist_ok=True)
    t_start = time.perf_counter()

    model, extra = build_model(DEMO_MODEL, str(DEMO_CHECKPOINT))
    graph = export_model(
        model, dt=extra.get("dt"), readout=extra.get("readout"), extra_metadata={"checkpoint": DEMO_CHECKPOINT.name}
    )
    nir_path = os.path.join(out, "model.nir")
    save_graph(graph, nir_path)
    graph = load_graph(nir_path)
    program = lower(graph, discretization_of(graph))
    readout = str(graph.metadata.get("readout", "sum"))
    console.print(f"exported the shipped demo checkpoint ({DEMO_CHECKPOINT.name}) -> {nir_path} (dt = {program.disc.dt * 1e3:g} ms)")

    ds = open_dataset("default")
    x, info = ds.bin_with_info(program.disc.dt)
    labels = np.asarray(ds.labels)
    data = {"dataset": ds.name, "source": "default", **info}

    # torch model itself (float32, as trained)
    t0 = time.perf_counter()
    out_t, rec_t = run_torch(model, x, graph.metadata.get("torch_modules"))
    torch_seconds = time.perf_counter() - t0

    ref = run("reference", program, x, progress=not quiet)
    rec_ref = run_record(ref, program, labels=labels, readout=readout, model=nir_path, data=data, inputs=x)
    write_json(rec_ref, os.path.join(out, "run_reference.json"))

    # agreement torch vs reference over the whole test set
    eq = tot = 0
    for name, z in rec_t.items():
        if name in ref.spikes:
            eq += int(((z > 0) == ref.spikes[name]).sum())
            tot += z.size
    torch_scores = _scores(out_t, readout)
    torch_pred = torch_scores.argmax(1)
    torch_vs_ref = {
        "spike_agreement": eq / tot if tot else 1.0,
        "prediction_agreement": float(np.mean(torch_pred == ref.predictions(readout))),
        "torch_accuracy": float(np.mean(torch_pred == labels)),
        "samples": int(len(labels)),
        "torch_seconds": torch_seconds,
    }

    n_lava = min(lava_samples, len(labels))
    sub = np.arange(n_lava)
    from simulators.shards import run_with_workers  # Lava's samples in shards side by side

    lava = run_with_workers("lava-float", program, x[sub], workers, progress=not quiet)
    rec_lava = run_record(lava, program, labels=labels[sub], readout=readout, model=nir_path, data=data, inputs=x[sub])
    write_json(rec_lava, os.path.join(out, "run_lava-float.json"))
    ref_sub = _subset(ref, sub)
    cmp = compare_results(ref_sub, lava, readout)
    cmp.update({"model": nir_path, "dt": program.disc.dt})
    write_json(cmp, os.path.join(out, "compare_reference_lava-float.json"))
    summary = {
        "model": nir_path,
        "dt": program.disc.dt,
        "torch_vs_reference": torch_vs_ref,
        "reference_vs_lava_float": {k: cmp[k] for k in ("samples", "spike_agreement", "prediction_agreement", "samples_with_identical_spikes")},
        "accuracy": {
            "torch": torch_vs_ref["torch_accuracy"],
            "reference": rec_ref["accuracy"],
            "reference_on_lava_subset": float(np.mean(ref_sub.predictions(readout) == labels[sub])),
            "lava-float": rec_lava["accuracy"],
        },
        "seconds": time.perf_counter() - t_start,
    }
    write_json(summary, os.path.join(out, "demo_summary.json"))

    rows = []
    for l_ref in rec_ref["layers"]:
        l_lava = next((l for l in rec_lava["layers"] if l["name"] == l_ref["name"]), None)
        ag = next((l["spike_agreement"] for l in cmp["layers"] if l["name"] == l_ref["name"]), None)
        rows.append([
            l_ref["name"], l_ref["type"], l_ref["neurons"], l_ref["spikes_per_sample"],
            l_lava["spikes_per_sample"] if l_lava else "", ag if ag is not None else "",
        ])
    console.print(table(
        "spikes per layer (reference: whole test set; Lava: first %d samples)" % n_lava,
        ["layer", "type", "neurons", "ref spikes/sample", "lava spikes/sample", "ref=lava"],
        rows,
    ))
    console.print(table(
        "accuracy and agreement",
        ["run", "samples", "accuracy", "spike agreement", "prediction agreement"],
        [
            ["torch (norse, float32)", len(labels), torch_vs_ref["torch_accuracy"], "", ""],
            ["reference (float64)", len(labels), rec_ref["accuracy"], torch_vs_ref["spike_agreement"], torch_vs_ref["prediction_agreement"]],
            ["reference on the Lava samples", n_lava, summary["accuracy"]["reference_on_lava_subset"], "", ""],
            ["lava-float (Loihi2SimCfg)", n_lava, rec_lava["accuracy"], cmp["spike_agreement"], cmp["prediction_agreement"]],
        ],
    ))
    console.print(f"agreement: reference vs torch on all {len(labels)} test samples; lava-float vs reference on the "
                  f"first {n_lava} (Lava runs about 1,000 steps/s)")  # fmt: skip
    e = (rec_ref.get("energy") or {}).get("models") or []
    res = (rec_ref.get("resources") or {}).get("totals") or {}
    if e:
        console.print(f"per inference on Loihi 2 ({e[0]['name']}, an estimate): {rec_ref['total_spikes_per_sample']:.0f} spikes, "
                      f"{e[0]['total_j'] * 1e6:.3g} uJ; {res.get('cores', '?')} cores")  # fmt: skip
    console.print(f"wrote {out}/: model.nir, run_reference.json, run_lava-float.json, compare_reference_lava-float.json, demo_summary.json")
    _demo_report(out, console, verbose, summary)
    console.print(f"demo took {summary['seconds']:.1f} s")
    return summary


# --------------------------------------------------------------------------- metrics, energy, report
def _demo_report(out: str, console, verbose: bool = False, summary: dict = None) -> None:
    """DIR/report.html + DIR/report.md: the demo's accuracy and agreement (torch, reference, Lava,
    each with its samples), then the reference run; its tables in the terminal with ``verbose``."""
    from toolchain.reports.report import build_report, print_summary

    res = build_report(os.path.join(out, "run_reference.json"), os.path.join(out, "report.html"), os.path.join(out, "report.md"),
                       demo=summary)  # fmt: skip
    if verbose:
        print_summary(res, console)
    console.print(f"wrote {out}/report.html and {out}/report.md (metrics, energy, chip resources, plots)")


def _scores(out: np.ndarray, readout: str) -> np.ndarray:
    out = out.reshape(out.shape[0], out.shape[1], -1).astype(np.float64)
    return {"sum": out.sum(1), "max": out.max(1), "mean": out.mean(1), "last": out[:, -1]}[readout]


def _subset(res, idx):
    from simulators.result import SimResult

    return SimResult(
        backend=res.backend,
        dt=res.dt,
        n_steps=res.n_steps,
        outputs={k: v[idx] for k, v in res.outputs.items()},
        spikes={k: v[idx] for k, v in res.spikes.items()},
        v={k: v[idx] for k, v in res.v.items()},
        layer_types=dict(res.layer_types),
        layer_sizes=dict(res.layer_sizes),
        info=dict(res.info),
    )
