"""Sharded Lava runs: one worker vs N on the same samples (docs/scale.md).

    python -m benchmarks.shards [--samples 64] [--workers 2] [--backend lava-float] [--repeat 2]

Runs the demo network's first ``--samples`` test samples on a Lava backend with one worker and
with ``--workers`` (simulators/shards.py), best of ``--repeat`` wall times each, checks that the
results are identical (spikes of every layer, predictions) and prints the ratio. Wall time
includes everything a user waits for: forking the workers, building and compiling each shard's
Lava network, running it and merging.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main(argv=None) -> int:
    import numpy as np

    from simulators.shards import default_workers
    from toolchain import api
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--workers", type=int, default=max(2, default_workers()))
    ap.add_argument("--backend", default="lava-float", choices=("lava-float", "lava-fixed"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    g = api.export_checkpoint(DEMO_MODEL, DEMO_CHECKPOINT)
    _, prog = api.lower(g)
    x = api.load_inputs(prog, data="default", samples=args.samples)["x"]
    times, results = {}, {}
    for w in (1, args.workers):
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = api.simulate(prog, x, args.backend, workers=w)
            t = time.perf_counter() - t0
            best = t if best is None else min(best, t)
        times[w], results[w] = best, res
    a, b = results[1], results[args.workers]
    same = all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes) and np.array_equal(a.predictions(), b.predictions())
    out = {
        "backend": args.backend, "samples": args.samples, "steps": int(x.shape[1]), "cores": os.cpu_count(),
        "seconds_1_worker": times[1], f"seconds_{args.workers}_workers": times[args.workers],
        "ratio": times[args.workers] / times[1], "identical": bool(same),
        "steps_per_second_1_worker": args.samples * x.shape[1] / times[1],
        f"steps_per_second_{args.workers}_workers": args.samples * x.shape[1] / times[args.workers],
    }  # fmt: skip
    print(f"| {args.backend}, {args.samples} samples x {x.shape[1]} steps | 1 worker | {args.workers} workers | ratio |")
    print("|---|---|---|---|")
    print(f"| wall time (best of {args.repeat}) | {times[1]:.1f} s | {times[args.workers]:.1f} s | {out['ratio']:.2f} |")
    print(f"| time steps per second | {out['steps_per_second_1_worker']:.0f} | "
          f"{out[f'steps_per_second_{args.workers}_workers']:.0f} | |")  # fmt: skip
    print(f"\nresults identical (spikes of every layer, predictions): {same}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
