"""Deploy the spiking ResNet checkpoint and write ``examples/zoo/resnet/results.json``.

    python -m examples.zoo.resnet.evaluate                    # everything below (~10 min on 2 busy cores)
    python -m examples.zoo.resnet.evaluate --skip-sweep --lava-samples 20

Each step is a ``nirdeploy`` command, printed as it runs; artifacts go to ``--work`` (default
``runs/resnet``, not versioned); a step whose output exists is skipped unless ``--force``:

1. ``nirdeploy export`` the checkpoint -> ``model.nir``;
2. the torch (norse) model, called once per step, on the whole test split -> torch metric;
3. ``nirdeploy simulate --backend reference`` on the whole test split;
4. ``nirdeploy compare --backends reference,lava-float --samples N`` (Lava's CPU simulator
   runs ~100-1000 steps/s: a subset) -> spike agreement, and Lava's run record;
5. fixed point: ``nirdeploy simulate --backend emulator`` on the whole test split; if the
   emulator refuses or fails on this graph, ``--backend lava-fixed --samples M`` instead
   (results.json says which, and why);
6. ``nirdeploy report`` of the reference run; ``nirdeploy sweep`` over timesteps x retiming
   methods (reference backend) and its report.

The steps live in examples/zoo/deploy.py (``evaluate_family``), shared by every zoo family.
"""

from __future__ import annotations

import argparse
import os

from examples.zoo.deploy import REPO, evaluate_family

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "checkpoint.pt"))
    ap.add_argument("--work", default=os.path.join(REPO, "runs", "resnet"))
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--lava-samples", type=int, default=50)
    ap.add_argument("--fixed-samples", type=int, default=20, help="samples for lava-fixed if the emulator cannot run")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--force", action="store_true", help="run every step again")
    args = ap.parse_args(argv)
    evaluate_family(
        "resnet (spiking ResNet, residual blocks, event digits)",
        "accuracy",
        "examples.zoo.resnet.model:build_model",
        args.checkpoint,
        "digits",
        args.work,
        args.out,
        lava_samples=args.lava_samples,
        fixed_samples=args.fixed_samples,
        sweep_dts=() if args.skip_sweep else (0.0005, 0.001, 0.002, 0.004),
        force=args.force,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
