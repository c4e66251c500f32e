"""Deploy the spiking DeepLab checkpoint and write ``examples/zoo/segmentation/results.json``.

    python -m examples.zoo.segmentation.evaluate              # everything below (~30 min on 2 busy cores)
    python -m examples.zoo.segmentation.evaluate --skip-sweep --lava-samples 10

The steps of examples/zoo/deploy.py (``evaluate_family``), scored by mean IoU: export;
the torch model on the 200 test samples; ``nirdeploy simulate --backend reference`` (its run
record holds the ``segmentation`` section: mean IoU, per-class IoU, pixel accuracy, and the
note that the upsampling runs on the host after the chip's output); ``nirdeploy compare
--backends reference,lava-float --samples N``; fixed point (the emulator, else lava-fixed on a
subset); ``nirdeploy report``; and ``nirdeploy sweep`` on the first ``--sweep-samples`` test
samples (every cell's run record has the segmentation section; the sweep table and plot show
mean IoU per dt and method).
"""

from __future__ import annotations

import argparse
import os
import torch

from examples.zoo.deploy import REPO, evaluate_family

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "checkpoint.pt"))
    ap.add_argument("--work", default=os.path.join(REPO, "runs", "segmentation"))
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--lava-samples", type=int, default=20)
    ap.add_argument("--fixed-samples", type=int, default=10, help="samples for lava-fixed if the emulator cannot run")
    ap.add_argument("--sweep-samples", type=int, default=40)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--force", action="store_true", help="run every step again")
    args = ap.parse_args(argv)
    dt = float(torch.load(args.checkpoint, map_location="cpu", weights_only=True)["dt"])
    evaluate_family(
        "segmentation (spiking DeepLab: dilated convolutions, ASPP, per-pixel LI readout; segmentation digits)",
        "mean_iou",
        "examples.zoo.segmentation.model:build_model",
        args.checkpoint,
        "digits-seg",
        args.work,
        args.out,
        lava_samples=args.lava_samples,
        fixed_samples=args.fixed_samples,
        sweep_dts=() if args.skip_sweep else tuple(round(r * dt, 9) for r in (0.5, 1.0, 2.0)),
        sweep_samples=args.sweep_samples,
        force=args.force,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
