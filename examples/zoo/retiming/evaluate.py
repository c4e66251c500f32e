"""Zero-shot retiming on the demo's temporal task (or the audio family): every method against an oracle, 3+ seeds.

For each seed this trains the demo model (examples/zoo/temporal/train.py) at every timestep in
``--dts`` (0.25, 0.5, 1, 2, 4 ms by default). Each trained model is a *source*: it is exported,
retimed with every method (tau = the reference, integral, exact, euler, and none = no
adaptation) to every other timestep, and evaluated on the test split re-binned from the raw
event timestamps at the target dt (reference simulator, via ``toolchain.reports.sweep``). The model
trained directly at the target dt is the *oracle*. The reset-aware methods (``exact-carry``,
``integral-carry``) change the reset to a partial one at coarser targets (keep k = 1 - dt_S / dt_T
of the excess over the threshold); for a fair comparison each coarser target of the main source
dt also gets an *oracle with the same reset rule*: the model trained at dt_T with that partial
reset (``train(reset_keep=k)``), evaluated at its own dt.

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

METHODS = ["none", "tau", "euler", "exact", "integral", "exact-carry", "integral-carry"]

#: the task families: trainer, model factory, dataset, default timesteps and main source dt
FAMILIES = {
    "temporal": dict(train="examples.zoo.temporal.train", model="examples.zoo.temporal.model:build_model",
                     data="default", dts="0.00025,0.0005,0.001,0.002,0.004", source_dt=1e-3, threads=1),
    "audio": dict(train="examples.zoo.audio.train", model="examples.zoo.audio.model:build_model",
                  data="spoken-digits", dts="0.001,0.002,0.004,0.008,0.016", source_dt=4e-3, threads=1),
}  # fmt: skip


def _ckpt_path(work: str, dt: float, seed: int, keep: float = 0.0) -> str:
    tag = f"_keep{keep:g}" if keep else ""
    return os.path.join(work, "ckpt", f"dt{dt * 1e3:g}ms{tag}_seed{seed}.pt")


def _train_one(dt: float, seed: int, path: str, epochs: int, keep: float = 0.0, family: str = "temporal") -> Dict:
    import importlib

    from exporters.checkpoint import save_checkpoint

    fam = FAMILIES[family]
    train = importlib.import_module(fam["train"]).train
    t0 = time.perf_counter()
    model, info = train(dt=dt, seed=seed, epochs=epochs, threads=fam["threads"], log=None, reset_keep=keep)
    info = dict(info)
    info.setdefault("train_seconds", time.perf_counter() - t0)
    save_checkpoint(model, info, path)
    return {"dt": dt, "seed": seed, "keep": keep, "path": path, "train_seconds": info["train_seconds"],
            "test_accuracy": info.get("test_accuracy")}  # fmt: skip


def _export(ckpt: str, out: str, keep: float = 0.0, family: str = "temporal") -> str:
    from exporters.checkpoint import build_model
    from exporters.torch_to_nir import export_model
    from toolchain.ir import Discretization, save_graph

    if not os.path.exists(out):
        model, extra = build_model(FAMILIES[family]["model"], ckpt)
        g = export_model(model, dt=extra.get("dt"), readout=extra.get("readout"))
        if keep:  # trained with the partial reset: the graph says so
            g.metadata.update({"reset": "partial", "reset_keep": float(keep)})
            Discretization.from_metadata(g.metadata)  # checked
        save_graph(g, out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", choices=sorted(FAMILIES), default="temporal",
                    help="temporal (the demo's chirp task, default) or audio (the SHD-style spoken digits)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--dts", default=None, help="timesteps (default: the family's, 0.25x..4x of its source dt)")
    ap.add_argument("--source-dt", type=float, default=None, help="the main table's source timestep (default: the family's)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the training script's)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", default="runs/retiming")
    ap.add_argument("--out", default="docs/results/retiming")
    ap.add_argument("--no-carry-oracles", action="store_true", help="skip the oracles trained with the partial reset")
    args = ap.parse_args(argv)
    fam = FAMILIES[args.family]
    if args.dts is None:
        args.dts = fam["dts"]
    if args.source_dt is None:
        args.source_dt = fam["source_dt"]
    seeds = [int(s) for s in args.seeds.split(",")]
    dts = [float(s) for s in args.dts.split(",")]
    os.makedirs(os.path.join(args.work, "ckpt"), exist_ok=True)
    os.makedirs(args.out, exist_ok=True)

    # 1. train (cached)
    import importlib

    DEFAULTS = importlib.import_module(fam["train"]).DEFAULTS

    epochs = args.epochs or DEFAULTS["epochs"]
    trained: Dict[tuple, Dict] = {}  # (dt, seed) and, for the same-reset oracles, (dt, seed, keep)
    info_path = os.path.join(args.work, "trained.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            for r in json.load(f):
                if os.path.exists(r["path"]):
                    trained[_key(r)] = r
    carry = [(dt, 1.0 - args.source_dt / dt) for dt in dts if dt > args.source_dt * (1 + 1e-9)] if not args.no_carry_oracles else []
    todo = [(dt, s, 0.0) for s in seeds for dt in dts if (dt, s) not in trained]
    todo += [(dt, s, k) for s in seeds for dt, k in carry if (dt, s, k) not in trained]
    todo.sort(key=lambda t: -t[0])  # coarse (cheap) first: the rho >= 1 cells are complete soonest
    if todo:
        print(f"training {len(todo)} models ({args.jobs} in parallel)", flush=True)
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            futs = [ex.submit(_train_one, dt, s, _ckpt_path(args.work, dt, s, k), epochs, k, args.family) for dt, s, k in todo]
            for fut in as_completed(futs):
                r = fut.result()
                trained[_key(r)] = r
                what = f" with a partial reset (keep {r['keep']:g})" if r.get("keep") else ""
                print(f"  trained dt={r['dt'] * 1e3:g} ms seed {r['seed']}{what}: accuracy {r['test_accuracy']:.3f} in "
                      f"{r['train_seconds']:.0f} s", flush=True)  # fmt: skip
                with open(info_path, "w") as f:
                    json.dump(list(trained.values()), f, indent=1)

    # 2. every trained model as a source, retimed to every dt with every method (cached cells)
    from toolchain.reports.sweep import sweep

    cells: List[Dict] = []
    for s in seeds:
        for dt_s in dts:
            nir_path = _export(trained[(dt_s, s)]["path"], os.path.join(args.work, f"dt{dt_s * 1e3:g}ms_seed{s}.nir"),
                               family=args.family)  # fmt: skip
            res = sweep(
                nir_path, fam["data"], dts, METHODS, "reference",
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
    # 3. the oracles trained with the partial reset a -carry method gives that target
    oracle_carry = []
    for s in seeds:
        for dt, k in carry:
            nir_path = _export(trained[(dt, s, k)]["path"], os.path.join(args.work, f"dt{dt * 1e3:g}ms_keep{k:g}_seed{s}.nir"),
                               k, args.family)  # fmt: skip
            res = sweep(nir_path, fam["data"], [dt], ["none"], "reference",
                        os.path.join(args.work, "sweeps", f"dt{dt * 1e3:g}ms_keep{k:g}_seed{s}"), workers=1, progress=False)  # fmt: skip
            oracle_carry.append({"dt": dt, "seed": s, "keep": k, "accuracy": res["rows"][0].get("accuracy")})
            print(f"  evaluated the partial-reset oracle at {dt * 1e3:g} ms seed {s}", flush=True)
    results = {
        "family": args.family,
        "seeds": seeds,
        "dts": dts,
        "methods": METHODS,
        "epochs": epochs,
        "trained": sorted(trained.values(), key=lambda r: (r["dt"], r["seed"])),
        "cells": cells,
        "oracle": [{"dt": k[0], "seed": k[1], "accuracy": v} for k, v in sorted(oracle.items())],
        "oracle_same_reset": oracle_carry,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = tables(results, args.source_dt)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(md)
    plot(results, args.source_dt, os.path.join(args.out, "accuracy_vs_rho.png"))
    print(md)
    return 0


def _key(r: Dict) -> tuple:
    return (r["dt"], r["seed"], r["keep"]) if r.get("keep") else (r["dt"], r["seed"])


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
    same = {(o["dt"], o["seed"]): o["accuracy"] for o in results.get("oracle_same_reset") or []}
    if same:
        out.append("| oracle with the -carry methods' partial reset (trained at dt_T, keep 1 - dt_S/dt_T) | " + " | ".join(
            _stat([same.get((dt, s)) for s in seeds]) if any((dt, s) in same for s in seeds) else "= oracle (value reset)"
            for dt in dts) + " |")  # fmt: skip
    out.append("")
    out.append("### Every source and target timestep: best adaptation method vs reference vs oracle (accuracy %, mean over seeds)\n")
    out.append("| source dt | target dt | rho | tau (reference) | integral | exact | euler | none | exact-carry | integral-carry | oracle |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for ds in dts:
        for dtt in dts:
            if ds == dtt:
                continue
            def m_(m):
                return _stat([c["accuracy"] for c in cells if c["source_dt"] == ds and c["target_dt"] == dtt and c["method"] == m])
            out.append(f"| {ds * 1e3:g} ms | {dtt * 1e3:g} ms | {dtt / ds:g} | {m_('tau')} | {m_('integral')} | {m_('exact')} | "
                       f"{m_('euler')} | {m_('none')} | {m_('exact-carry')} | {m_('integral-carry')} | "
                       f"{_stat([oracle.get((dtt, s)) for s in seeds])} |")
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
        style = {"euler": dict(ls=":", marker="x", ms=9), "exact": dict(ls="-", marker="o"),
                 "exact-carry": dict(ls="-", marker="^"), "integral-carry": dict(ls="-.", marker="v")}.get(m, dict(marker="o"))  # fmt: skip
        label = {"tau": "tau (reference)", "none": "none (no adaptation)", "euler": "euler (= exact here)"}.get(m, m)
        ax.errorbar(rhos, means, yerr=stds, capsize=3, label=label, **style)
    om = [100 * np.mean([oracle[(dt, s)] for s in seeds]) for dt in dts]
    ax.plot(rhos, om, "k--", marker="s", label="oracle (trained at dt_T)")
    same = {(o["dt"], o["seed"]): o["accuracy"] for o in results.get("oracle_same_reset") or []}
    sd = [dt for dt in dts if all((dt, s) in same for s in seeds)]
    if sd:
        ax.plot(np.array(sd) / source_dt, [100 * np.mean([same[(dt, s)] for s in seeds]) for dt in sd], "k:", marker="D",
                label="oracle, partial reset (same rule as -carry)")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(rhos)
    ax.set_xticklabels([f"{r:g}" for r in rhos])
    ax.set_xlabel(f"rho = dt_T / dt_S (dt_S = {source_dt * 1e3:g} ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Zero-shot retiming on the {results.get('family', 'temporal')} task (reference simulator)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
