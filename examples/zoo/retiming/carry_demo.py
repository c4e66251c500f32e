"""The reset-aware methods on the shipped demo checkpoint: accuracy per method and target dt.

    python -m examples.zoo.retiming.carry_demo [--samples N] [--backend reference]

Exports ``toolchain/demo_model/checkpoint.pt`` (trained at 1 ms, reset to a value), retimes it
with every method to 0.25, 0.5, 1, 2 and 4 ms and runs the test split of the embedded default
data re-binned at each dt; prints a Markdown table (docs/retiming.md). No labels are used by any
method. Seconds on the reference backend.
"""

from __future__ import annotations

import argparse
import os

METHODS = ("tau", "exact", "exact-carry", "integral", "integral-carry", "none")
DTS = (0.25e-3, 0.5e-3, 1e-3, 2e-3, 4e-3)


def main(argv=None) -> int:
    from toolchain import api
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=None, help="first N test samples (default: all)")
    ap.add_argument("--backend", default="reference")
    args = ap.parse_args(argv)
    g = api.export_checkpoint(DEMO_MODEL, DEMO_CHECKPOINT)
    data = os.path.join(os.path.dirname(api.__file__), "data", "temporal_default.h5") + ":test"
    acc = {}
    n = None
    for dt in DTS:
        for m in METHODS:
            graph, prog = api.lower(g, dt=dt, method=m)
            inp = api.load_inputs(prog, data=data, samples=args.samples)
            rec = api.run_record(api.simulate(prog, inp["x"], backend=args.backend), prog, labels=inp["labels"])
            acc[(dt, m)] = (rec["accuracy"], graph.metadata.get("reset_keep"))
            n = rec["samples"]
    print(f"| method | " + " | ".join(f"{dt * 1e3:g} ms (rho = {dt / 1e-3:g})" for dt in DTS) + " |")
    print("|---|" + "---|" * len(DTS))
    for m in METHODS:
        print(f"| `{m}` | " + " | ".join(f"{100 * acc[(dt, m)][0]:.1f}" for dt in DTS) + " |")
    print(f"| kept fraction k (`-carry`) | " + " | ".join(
        "0 (value reset)" if acc[(dt, 'exact-carry')][1] is None else f"{acc[(dt, 'exact-carry')][1]:g}" for dt in DTS) + " |")
    print(f"\n({n} test samples, {args.backend} backend; accuracy in %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
