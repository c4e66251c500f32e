"""Train the small spiking DeepLab on the segmentation digits.

    python -m examples.zoo.segmentation.train --dt 0.004 --seed 0 -o examples/zoo/segmentation/checkpoint.pt

Data: ``toolchain.data.digits.cached_segmentation_digits()`` (one or two of scikit-learn's 8x8
digits, upsampled to 12 px, on a 32 x 32 canvas moved along saccades and seen by a DVS model;
input [2, 32, 32], 100 ms per sample; targets [32, 32]: 0 background, 1 + class on a digit's
pixels), 1000 train / 200 test samples: the splits ``open_dataset("digits-seg:train")`` /
``open_dataset("digits-seg")`` give, binned at ``--dt``.

How it trains (none of it changes the deployed model):

* the fast sequence path of examples/zoo/resnet/fast.py (convolutions on all B x T frames at once,
  one autograd function per spiking layer over time, surrogate ``1 / (alpha |v - v_th| + 1)^2``);
* BatchNorm statistics over the B x T frames of a batch (running statistics are folded at export);
* objective: per-pixel cross-entropy of the readout membrane averaged over time, upsampled
  bilinearly to 32 x 32 -- the same host-side upsampling the evaluation applies -- with class
  weights ``(frequency)^-1/2`` (normalised to mean 1) against the 91 % of background pixels;
* Adam with a one-cycle schedule.

The reported test mean IoU is measured with the per-step model (``model(x_t, state)`` once per
step, eval mode), through ``toolchain.analysis.segmentation`` (bilinear upsampling, argmax, IoU).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from examples.zoo.resnet.fast import run_steps
from examples.zoo.segmentation.model import build_model, readout, upsampling
from examples.zoo.training import factory_kwargs, fit_one_cycle
from toolchain.analysis import segmentation as seg
from exporters.checkpoint import save_checkpoint

DEFAULTS = dict(dt=4e-3, epochs=15, batch_size=16, lr=1e-2, n_train=1000, n_test=200, alpha=2.0, data_seed=0)


def load_digits(n_train: int, n_test: int, seed: int = 0):
    """(train, test) segmentation digits through the per-user cache (defaults: ``open_dataset``'s splits)."""
    from toolchain.data.digits import cached_segmentation_digits

    return cached_segmentation_digits(n_train=n_train, n_test=n_test, seed=seed)


def evaluate(model, x: torch.Tensor, targets: np.ndarray, n_classes: int, batch: int = 50, per_step: bool = True):
    """(segmentation metrics dict, spikes per sample) in eval mode (spikes only without ``per_step``)."""
    model.eval()
    outs, spikes = [], 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            if per_step:
                v = run_steps(model, xb)
            else:
                v, zs = model.forward_sequence(xb)
                spikes += float(sum(z.sum() for z in zs))
            outs.append(seg.predict_masks(v.double().numpy(), targets.shape[1:], readout, upsampling))
    pred = np.concatenate(outs)
    return seg.segmentation_metrics(pred, targets, n_classes), spikes / max(len(x), 1)


def train(
    dt: float = DEFAULTS["dt"],
    seed: int = 0,
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    n_train: int = DEFAULTS["n_train"],
    n_test: int = DEFAULTS["n_test"],
    alpha: float = DEFAULTS["alpha"],
    data_seed: int = DEFAULTS["data_seed"],
    threads: Optional[int] = 1,
    log: Optional[Callable[[str], None]] = print,
    datasets=None,
    **model_kwargs,
) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Train at timestep ``dt``; returns ``(model, info)`` (info: everything the checkpoint records)."""
    if threads:
        torch.set_num_threads(int(threads))
    log = log or (lambda s: None)
    t_data = time.perf_counter()
    train_ds, test_ds = datasets if datasets is not None else load_digits(n_train, n_test, data_seed)
    x_tr = torch.from_numpy(train_ds.bin(dt))
    t_tr = torch.from_numpy(train_ds.targets)
    x_te = torch.from_numpy(test_ds.bin(dt))
    t_te = np.asarray(test_ds.targets)
    t_data = time.perf_counter() - t_data
    n_classes = 1 + len(train_ds.classes)  # background + one per digit class
    kwargs = factory_kwargs(
        build_model, dict(input_shape=tuple(int(d) for d in train_ds.input_shape), n_classes=n_classes, dt=float(dt)),
        model_kwargs,
    )
    freq = np.bincount(train_ds.targets.reshape(-1), minlength=n_classes).astype(np.float64)
    w = (freq / freq.sum()).clip(1e-6) ** -0.5
    weight = torch.tensor(w / w.mean(), dtype=torch.float32)
    H, W = train_ds.targets.shape[1:]
    torch.manual_seed(seed)
    model = build_model(**kwargs)
    log(
        f"training the spiking DeepLab at dt = {dt * 1e3:g} ms: {len(x_tr)} train / {len(x_te)} test samples, "
        f"{x_tr.shape[1]} steps, {n_classes} classes, {epochs} epochs, seed {seed} (data {t_data:.0f} s)"
    )
    history = []

    def batch_loss(idx):
        v, _ = model.forward_sequence(x_tr[idx], alpha)
        logits = F.interpolate(v.mean(1), size=(H, W), mode="bilinear", align_corners=False)
        return F.cross_entropy(logits, t_tr[idx], weight=weight), 0

    def end_epoch(ep, loss, _, t_train):
        m, spikes = evaluate(model, x_te, t_te, n_classes, per_step=False)
        history.append({"epoch": ep + 1, "loss": loss, "test_mean_iou": m["mean_iou"], "test_pixel_accuracy": m["pixel_accuracy"], "spikes_per_sample": spikes})
        log(f"epoch {ep + 1:2d}/{epochs}  loss {loss:.4f}  test mIoU {m['mean_iou']:.4f}  pixel acc {m['pixel_accuracy']:.4f}  "
            f"spikes/sample {spikes:.0f}  ({t_train:.0f} s)")

    t_train = fit_one_cycle(model, len(x_tr), epochs, batch_size, lr, seed, batch_loss, end_epoch)
    m, _ = evaluate(model, x_te, t_te, n_classes, per_step=True)
    _, spikes = evaluate(model, x_te, t_te, n_classes, per_step=False)
    log(f"test mean IoU (per-step model, eval mode) {m['mean_iou']:.4f}, pixel accuracy {m['pixel_accuracy']:.4f}, {spikes:.0f} spikes per sample")
    info = {
        "model_kwargs": kwargs,
        "dt": float(dt),
        "readout": readout,
        "upsampling": upsampling,
        "input_shape": [int(d) for d in train_ds.input_shape],
        "seed": int(seed),
        "test_mean_iou": float(m["mean_iou"]),
        "test_pixel_accuracy": float(m["pixel_accuracy"]),
        "test_iou_per_class": {k: (None if v is None else float(v)) for k, v in m["iou_per_class"].items()},
        "spikes_per_sample": float(spikes),
        "train_seconds": float(t_train),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "alpha": float(alpha),
        "class_weights": [float(v) for v in weight],
        "data": {"generator": "toolchain.data.digits.make_segmentation_digits", "n_train": len(x_tr), "n_test": len(x_te), "seed": int(data_seed)},
        "n_steps": int(x_tr.shape[1]),
        "torch_threads": int(torch.get_num_threads()),
        "history": history,
    }
    return model.eval(), info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dt", type=float, default=DEFAULTS["dt"], help="timestep in seconds (default 0.004)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    ap.add_argument("--alpha", type=float, default=DEFAULTS["alpha"], help="surrogate sharpness")
    ap.add_argument("--n-train", type=int, default=DEFAULTS["n_train"])
    ap.add_argument("--n-test", type=int, default=DEFAULTS["n_test"])
    ap.add_argument("--data-seed", type=int, default=DEFAULTS["data_seed"])
    ap.add_argument("--channels", help="channels of enc1 and of the rest, e.g. 16,32 (default: build_model's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("-o", "--output", help="checkpoint to write (.pt)")
    args = ap.parse_args(argv)
    extra = {"channels": [int(c) for c in args.channels.split(",")]} if args.channels else {}
    model, info = train(
        dt=args.dt, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, alpha=args.alpha,
        n_train=args.n_train, n_test=args.n_test, data_seed=args.data_seed, threads=args.threads, **extra,
    )
    print(f"test mean IoU {info['test_mean_iou']:.4f} after {info['train_seconds']:.0f} s of training")
    if args.output:
        save_checkpoint(model, info, args.output)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
