"""Deploy the transfer-trained checkpoint like every zoo model and write ``results.json``.

    python -m examples.zoo.transfer.evaluate                      # everything below
    python -m examples.zoo.transfer.evaluate --lava-samples 20 --skip-sweep

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
``evaluate_family`` in examples/zoo/deploy.py, shared by every zoo family.
"""

from __future__ import annotations

import argparse
import os

from examples.zoo.deploy import REPO, evaluate_family

HERE = os.path.dirname(os.path.abspath(__file__))


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
        extra["with_without_static"] = "examples/zoo/transfer/compare_static/table.md"
    evaluate_family(
        "transfer (static-to-event knowledge transfer, event digits)",
        "accuracy",
        "examples.zoo.transfer.model:build_model",
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
