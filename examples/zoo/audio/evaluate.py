"""Deploy the spoken-digit checkpoint, sweep the timestep with every retiming method, write results.json.

    python -m examples.zoo.audio.evaluate                         # export, backends, report, sweep
    python -m examples.zoo.audio.evaluate --lava-samples 10 --skip-sweep

The steps of examples/zoo/deploy.py (``evaluate_family``: export, torch, reference,
reference vs lava-float on a subset, fixed-point emulator, report), then

    nirdeploy sweep model.nir --data spoken-digits --dt 0.25x..4x of the training dt \\
        --method tau,integral,exact,euler,none --backend reference

on the whole test split (199 utterances of 18 held-out speakers) and its report. Artifacts in
``--work`` (default runs/audio); ``results.json`` next to this file holds the numbers and the
sweep table.
"""

from __future__ import annotations

import argparse
import os

import torch

from examples.zoo.deploy import REPO, evaluate_family

HERE = os.path.dirname(os.path.abspath(__file__))
RHOS = (0.25, 0.5, 1.0, 2.0, 4.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "checkpoint.pt"))
    ap.add_argument("--work", default=os.path.join(REPO, "runs", "audio"))
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--lava-samples", type=int, default=10)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--workers", type=int, default=2, help="sweep cells in parallel")
    ap.add_argument("--force", action="store_true", help="run every step again")
    args = ap.parse_args(argv)
    dt = float(torch.load(args.checkpoint, map_location="cpu", weights_only=True)["dt"])
    evaluate_family(
        "audio (SHD-style spoken digits, feed-forward LIFBox)",
        "accuracy",
        "examples.zoo.audio.model:build_model",
        args.checkpoint,
        "spoken-digits",
        args.work,
        args.out,
        lava_samples=args.lava_samples,
        sweep_dts=() if args.skip_sweep else tuple(round(r * dt, 9) for r in RHOS),
        sweep_methods=("tau", "integral", "exact", "euler", "none"),
        sweep_workers=args.workers,
        force=args.force,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
