"""Zero-shot retiming on the demo's temporal task: every method against an oracle, 3+ seeds.

For each seed this trains the demo model (examples/zoo/temporal/train.py) at every timestep in
``--dts`` (0.25, 0.5, 1, 2, 4 ms by default). Each trained model is a *source*: it is exported,
retimed with every method (tau = the reference, integral, exact, euler, and none = no
adaptation) to every other timestep, and evaluated on the test split re-binned from the raw
event timestamps at the target dt (reference simulator, via ``toolchain.reports.sweep``). The model
trained directly at the target dt is the *oracle*.

Outputs in ``--out`` (default docs/results/retiming): ``results.json`` (every cell),
``table.md`` (accuracy per method and rho for the main source dt, mean +- std over seeds; the
full source x target grid; the coarse-training claim), ``accuracy_vs_rho.png``.

    python -m examples.zoo.retiming.evaluate --seeds 0,1,2 --jobs 2

Checkpoints and sweep cells are cached under ``--work`` (default runs/retiming): an interrupted
run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Dict, List

import numpy as np

METHODS = ["none", "tau", "euler", "exact", "integral"]


def _ckpt_path(work: str, dt: float, seed: int) -> str:
    return os.path.join(work, "ckpt", f"dt{dt * 1e3:g}ms_seed{seed}.pt")


def _train_one(dt: float, seed: int, path: str, epochs: int) -> Dict:
    from examples.zoo.temporal.train import train
    from exporters.checkpoint import save_checkpoint

    t0 = time.perf_counter()
    model, info = train(dt=dt, seed=seed, epochs=epochs, threads=1, log=None)
    info = dict(info)
    info.setdefault("train_seconds", time.perf_counter() - t0)
    save_checkpoint(model, info, path)
    return {"dt": dt, "seed": seed, "path": path, "train_seconds": info["train_seconds"], "test_accuracy": info.get("test_accuracy")}


def _export(ckpt: str, out: str) -> str:
    from exporters.checkpoint import build_model
    from exporters.torch_to_nir import export_model
    from toolchain.ir import save_graph

    if not os.path.exists(out):
        model, extra = build_model("examples.zoo.temporal.model:build_model", ckpt)
        save_graph(export_model(model, dt=extra.get("dt"), readout=extra.get("readout")), out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--dts", default="0.00025,0.0005,0.001,0.002,0.004")
    ap.add_argument("--source-dt", type=float, default=1e-3, help="the main table's source timestep")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the training script's)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", default="runs/retiming")
    ap.add_argument("--out", default="docs/results/retiming")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    dts = [float(s) for s in args.dts.split(",")]
    os.makedirs(os.path.join(args.work, "ckpt"), exist_ok=True)
    os.makedirs(args.out, exist_ok=True)

    # 1. train (cached)
    from examples.zoo.temporal.train import DEFAULTS

    epochs = args.epochs or DEFAULTS["epochs"]
    trained: Dict[tuple, Dict] = {}
    info_path = os.path.join(args.work, "trained.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            for r in json.load(f):
                if os.path.exists(r["path"]):
                    trained[(r["dt"], r["seed"])] = r
    todo = [(dt, s) for s in seeds for dt in dts if (dt, s) not in trained]
    if todo:
        print(f"training {len(todo)} models ({args.jobs} in parallel)", flush=True)
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            futs = [ex.submit(_train_one, dt, s, _ckpt_path(args.work, dt, s), epochs) for dt, s in todo]
            for fut in as_completed(futs):
                r = fut.result()
                trained[(r["dt"], r["seed"])] = r
                print(f"  trained dt={r['dt'] * 1e3:g} ms seed {r['seed']}: accuracy {r['test_accuracy']:.3f} in {r['train_seconds']:.0f} s", flush=True)
                with open(info_path, "w") as f:
                    json.dump(list(trained.values()), f, indent=1)

    # 2. every trained model as a source, retimed to every dt with every method (cached cells)
    from toolchain.reports.sweep import sweep

    cells: List[Dict] = []
    for s in seeds:
        for dt_s in dts:
            nir_path = _export(trained[(dt_s, s)]["path"], os.path.join(args.work, f"dt{dt_s * 1e3:g}ms_seed{s}.nir"))
            res = sweep(
                nir_path, "default", dts, METHODS, "reference",
                os.path.join(args.work, "sweeps", f"dt{dt_s * 1e3:g}ms_seed{s}"),
                workers=args.jobs, progress=False,
            )
            for row in res["rows"]:
                cells.append({
                    "seed": s, "source_dt": dt_s, "target_dt": row["dt"], "rho": row["rho"], "method": row["method"],
                    "accuracy": row.get("accuracy"), "spikes_per_sample": row.get("spikes_per_sample"),
                    "error": row.get("error"),
                })
            print(f"  evaluated source dt={dt_s * 1e3:g} ms seed {s}", flush=True)
    oracle = {(c["target_dt"], c["seed"]): c["accuracy"] for c in cells if c["rho"] == 1.0 and c["method"] == "none"}
    results = {
        "seeds": seeds,
        "dts": dts,
        "methods": METHODS,
        "epochs": epochs,
        "trained": sorted(trained.values(), key=lambda r: (r["dt"], r["seed"])),
        "cells": cells,
        "oracle": [{"dt": k[0], "seed": k[1], "accuracy": v} for k, v in sorted(oracle.items())],
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = tables(results, args.source_dt)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(md)
    plot(results, args.source_dt, os.path.join(args.out, "accuracy_vs_rho.png"))
    print(md)
    return 0


def _stat(vals) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "refused"
    return f"{100 * np.mean(vals):.1f} ± {100 * np.std(vals):.1f}"


def tables(results: Dict, source_dt: float) -> str:
    cells, seeds, dts = results["cells"], results["seeds"], results["dts"]
    oracle = {(o["dt"], o["seed"]): o["accuracy"] for o in results["oracle"]}
    out = []
    rhos = [dt / source_dt for dt in dts]
    out.append(f"### Source dt = {source_dt * 1e3:g} ms: test accuracy (%) per method and rho = dt_T / dt_S "
               f"(mean ± std over seeds {', '.join(map(str, seeds))})\n")
    out.append("| method | " + " | ".join(f"rho = {r:g} ({source_dt * r * 1e3:g} ms)" for r in rhos) + " |")
    out.append("|---|" + "---|" * len(rhos))
    for m in results["methods"]:
        row = []
        for dt in dts:
            vals = [c["accuracy"] for c in cells if c["source_dt"] == source_dt and c["target_dt"] == dt and c["method"] == m]
            row.append(_stat(vals))
        label = {"none": "none (no adaptation)", "tau": "tau (reference)"}.get(m, m)
        out.append(f"| {label} | " + " | ".join(row) + " |")
    out.append("| oracle (trained at dt_T) | " + " | ".join(_stat([oracle.get((dt, s)) for s in seeds]) for dt in dts) + " |")
    out.append("")
    out.append("### Every source and target timestep: best adaptation method vs reference vs oracle (accuracy %, mean over seeds)\n")
    out.append("| source dt | target dt | rho | tau (reference) | integral | exact | euler | none | oracle |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for ds in dts:
        for dtt in dts:
            if ds == dtt:
                continue
            def m_(m):
                return _stat([c["accuracy"] for c in cells if c["source_dt"] == ds and c["target_dt"] == dtt and c["method"] == m])
            out.append(f"| {ds * 1e3:g} ms | {dtt * 1e3:g} ms | {dtt / ds:g} | {m_('tau')} | {m_('integral')} | {m_('exact')} | "
                       f"{m_('euler')} | {m_('none')} | {_stat([oracle.get((dtt, s)) for s in seeds])} |")
    out.append("")
    out.append("### Training at a coarse dt, then adapting, vs training at the fine dt\n")
    out.append("| fine dt | trained at | training time (s) | accuracy at the fine dt (%) |")
    out.append("|---|---|---|---|")
    tr = {(r["dt"], r["seed"]): r for r in results["trained"]}
    for fine in dts[:2]:
        t_fine = np.mean([tr[(fine, s)]["train_seconds"] for s in seeds])
        out.append(f"| {fine * 1e3:g} ms | {fine * 1e3:g} ms (oracle) | {t_fine:.0f} | {_stat([oracle.get((fine, s)) for s in seeds])} |")
        for coarse in dts[2:]:
            t_c = np.mean([tr[(coarse, s)]["train_seconds"] for s in seeds])
            for m in ("integral", "tau"):
                acc = _stat([c["accuracy"] for c in cells if c["source_dt"] == coarse and c["target_dt"] == fine and c["method"] == m])
                out.append(f"| {fine * 1e3:g} ms | {coarse * 1e3:g} ms + {m} | {t_c:.0f} | {acc} |")
    return "\n".join(out) + "\n"


def plot(results: Dict, source_dt: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells, seeds, dts = results["cells"], results["seeds"], results["dts"]
    oracle = {(o["dt"], o["seed"]): o["accuracy"] for o in results["oracle"]}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rhos = np.array(dts) / source_dt
    for m in results["methods"]:
        means, stds = [], []
        for dt in dts:
            v = [c["accuracy"] for c in cells if c["source_dt"] == source_dt and c["target_dt"] == dt and c["method"] == m and c["accuracy"] is not None]
            means.append(100 * np.mean(v) if v else np.nan)
            stds.append(100 * np.std(v) if v else np.nan)
        style = {"euler": dict(ls=":", marker="x", ms=9), "exact": dict(ls="-", marker="o")}.get(m, dict(marker="o"))
        label = {"tau": "tau (reference)", "none": "none (no adaptation)", "euler": "euler (= exact here)"}.get(m, m)
        ax.errorbar(rhos, means, yerr=stds, capsize=3, label=label, **style)
    om = [100 * np.mean([oracle[(dt, s)] for s in seeds]) for dt in dts]
    ax.plot(rhos, om, "k--", marker="s", label="oracle (trained at dt_T)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(rhos)
    ax.set_xticklabels([f"{r:g}" for r in rhos])
    ax.set_xlabel(f"rho = dt_T / dt_S (dt_S = {source_dt * 1e3:g} ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Zero-shot retiming on the temporal task (reference simulator)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
