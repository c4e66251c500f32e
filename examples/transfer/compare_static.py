"""With vs without the static images, over seeds: does static-to-event transfer help here?

    python -m examples.transfer.compare_static --seeds 0,1,2,3,4 --event-fraction 0.1 --jobs 2

For every seed both arms train the same network (``model.py``) on the same ``event-fraction``
of the event training split (stratified, chosen by the seed), from the same initial weights,
for the same number of epochs and optimizer steps (the batches run over the event samples):

* ``with static``: the knowledge-transfer recipe of ``train.py`` (CKA domain loss weighted per
  step by learnable coefficients, cubic sliding replacement of static inputs by events, the
  static images of the whole training split as the source domain);
* ``without static``: per-step cross-entropy on the event samples only.

Test accuracy is measured on the event test split (300 samples) with the norse model. Output
(``--out``, default examples/transfer/compare_static): ``runs.json`` (every run, cached: an
interrupted comparison resumes), ``table.md`` (per seed, mean +- std, paired difference; other
settings: ``table_f<fraction>_dw<domain weight>.md``). ``--domain-weight 0`` is the ablation
with the static images and the sliding schedule but without the CKA domain loss.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Dict

import numpy as np


def _key(with_static: bool, seed: int, fraction: float, epochs: int, domain_weight: float = 1.0) -> str:
    dw = f"_dw{domain_weight:g}" if with_static and domain_weight != 1.0 else ""  # the default keeps its old key
    return f"{'static' if with_static else 'events'}_f{fraction:g}_e{epochs}_s{seed}{dw}"


def _run(with_static: bool, seed: int, fraction: float, epochs: int, threads: int, domain_weight: float = 1.0) -> Dict:
    from examples.transfer.train import train

    t0 = time.perf_counter()
    _, info = train(with_static=with_static, event_fraction=fraction, seed=seed, epochs=epochs, threads=threads, log=None,
                    domain_weight=domain_weight)
    keep = ("test_accuracy", "train_accuracy", "train_seconds", "optimizer_steps", "event_train_samples",
            "static_images", "coefficients_sigmoid", "epochs", "dt")
    row = {k: info[k] for k in keep}
    row.update(with_static=with_static, seed=seed, event_fraction=fraction, wall_seconds=time.perf_counter() - t0,
               domain_weight=domain_weight if with_static else None)
    return row


def table(rows, fraction: float, epochs: int, domain_weight: float = 1.0) -> str:
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["with_static"], r["seed"]): r for r in rows}
    lines = [
        f"Event digits, {fraction:g} of the event training split, {epochs} epochs, domain-loss weight "
        f"{domain_weight:g}{' (no CKA loss: static data and the sliding schedule only)' if domain_weight == 0 else ''}; "
        "test accuracy (300 event samples)",
        "",
        "| seed | event samples | without static | with static | difference |",
        "|---|---|---|---|---|",
    ]
    diffs, a_no, a_with = [], [], []
    for s in seeds:
        if (False, s) not in by or (True, s) not in by:
            continue
        n, w = by[(False, s)]["test_accuracy"], by[(True, s)]["test_accuracy"]
        diffs.append(w - n)
        a_no.append(n)
        a_with.append(w)
        lines.append(f"| {s} | {by[(True, s)]['event_train_samples']} | {100 * n:.1f} % | {100 * w:.1f} % | {100 * (w - n):+.1f} |")
    if diffs:
        d = np.array(diffs)
        sem = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
        lines.append(
            f"| **mean +- std** ({len(d)} seeds) | | **{100 * np.mean(a_no):.1f} +- {100 * np.std(a_no, ddof=1):.1f} %** "
            f"| **{100 * np.mean(a_with):.1f} +- {100 * np.std(a_with, ddof=1):.1f} %** "
            f"| **{100 * d.mean():+.1f} +- {100 * d.std(ddof=1):.1f}** (s.e.m. {100 * sem:.1f}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--event-fraction", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=None, help="default: train.py's")
    ap.add_argument("--domain-weight", type=float, default=1.0,
                    help="weight of the CKA domain loss in the with-static arm (0: ablation without it)")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (each uses one thread)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare_static"))
    args = ap.parse_args(argv)
    from examples.transfer.train import DEFAULTS

    epochs = args.epochs or DEFAULTS["epochs"]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "runs.json")
    runs = json.load(open(path)) if os.path.exists(path) else {}
    dw = args.domain_weight
    todo = [(w, s) for s in seeds for w in (False, True) if _key(w, s, args.event_fraction, epochs, dw) not in runs]
    with ProcessPoolExecutor(max(1, args.jobs)) as ex:
        futs = {ex.submit(_run, w, s, args.event_fraction, epochs, 1, dw): (w, s) for w, s in todo}
        for f in as_completed(futs):
            w, s = futs[f]
            row = f.result()
            runs[_key(w, s, args.event_fraction, epochs, dw)] = row
            with open(path, "w") as fh:
                json.dump(runs, fh, indent=1)
            print(f"seed {s} {'with' if w else 'without'} static: test accuracy {row['test_accuracy']:.4f} "
                  f"({row['train_seconds']:.0f} s)", flush=True)
    rows = [r for r in runs.values() if r["seed"] in seeds and r["event_fraction"] == args.event_fraction and r["epochs"] == epochs
            and (not r["with_static"] or r.get("domain_weight", 1.0) == dw)]
    text = table(rows, args.event_fraction, epochs, dw)
    name = "table.md" if (args.event_fraction, dw) == (0.1, 1.0) else f"table_f{args.event_fraction:g}_dw{dw:g}.md"
    with open(os.path.join(args.out, name), "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
