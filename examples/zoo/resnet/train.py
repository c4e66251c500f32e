"""Train the small spiking ResNet on the event digits.

    python -m examples.zoo.resnet.train --dt 0.002 --seed 0 -o examples/zoo/resnet/checkpoint.pt

Data: ``toolchain.data.digits.make_event_digits(n_train, n_test, seed=data_seed)`` (ON/OFF
events of scikit-learn's 8x8 digits moved along saccades, input [2, 16, 16], 100 ms per
sample), binned at ``--dt`` from the event timestamps. The test split is the one
``nirdeploy simulate --data digits`` uses when the sizes are the defaults of ``open_dataset``.

How it trains (none of it changes the deployed model):

* Speed: every convolution / BatchNorm / Linear runs on all ``B x T`` frames at once, every
  spiking layer as one autograd function over time (examples/zoo/resnet/fast.py).
* BatchNorm in training mode uses the statistics of the ``B x T`` frames of the batch; the
  running statistics are what the exporter folds into the convolutions.
* Surrogate gradient ``1 / (alpha |v - v_th| + 1)^2`` (``--alpha``), reset detached.
* Objective: cross-entropy on the readout layer's membrane potential averaged over time, the
  same quantity (up to the factor T) as the deployed readout ``sum``.
* Adam with cosine decay; weights need no ``1 ms / dt`` scaling here because BatchNorm sets the
  scale of every input current, and a box cell's response to a held current does not depend on dt.

The reported test accuracy is measured with the per-step model (``model(x_t, state)`` once per
step, eval mode), i.e. the arithmetic that is exported.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from examples.zoo.resnet.fast import run_steps
from examples.zoo.resnet.model import build_model, readout
from examples.zoo.training import factory_kwargs, fit_one_cycle
from exporters.checkpoint import save_checkpoint

DEFAULTS = dict(dt=2e-3, epochs=15, batch_size=32, lr=5e-3, n_train=1500, n_test=300, alpha=2.0, data_seed=0)


def load_digits(n_train: int, n_test: int, seed: int = 0):
    """(train, test): the event digits, through the per-user cache (the defaults are the splits
    ``open_dataset("digits:train")`` / ``open_dataset("digits")`` give)."""
    from toolchain.data.digits import cached_event_digits

    return cached_event_digits(n_train=n_train, n_test=n_test, seed=seed)


def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 250, per_step: bool = True) -> Tuple[float, float]:
    """(accuracy, spikes per sample of all spiking layers) in eval mode.

    ``per_step``: run the per-step module (the exported arithmetic; spikes are not counted);
    else the training path (same arithmetic, all steps of a layer at once)."""
    model.eval()
    correct, spikes = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            if per_step:
                v = run_steps(model, xb)
            else:
                v, zs = model.forward_sequence(xb)
                spikes += float(sum(z.sum() for z in zs))
            correct += int((v.sum(1).argmax(-1) == y[i : i + batch]).sum())
    return correct / max(len(x), 1), spikes / max(len(x), 1)


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
    y_tr = torch.from_numpy(np.asarray(train_ds.labels))
    x_te = torch.from_numpy(test_ds.bin(dt))
    y_te = torch.from_numpy(np.asarray(test_ds.labels))
    t_data = time.perf_counter() - t_data
    kwargs = factory_kwargs(
        build_model,
        dict(input_shape=tuple(int(d) for d in train_ds.input_shape), n_classes=int(train_ds.n_classes), dt=float(dt)),
        model_kwargs,
    )
    torch.manual_seed(seed)
    model = build_model(**kwargs)
    log(
        f"training the spiking ResNet at dt = {dt * 1e3:g} ms: {len(x_tr)} train / {len(x_te)} test samples, "
        f"{x_tr.shape[1]} steps, {epochs} epochs, seed {seed} (data {t_data:.0f} s)"
    )
    history = []

    def batch_loss(idx):
        v, _ = model.forward_sequence(x_tr[idx], alpha)
        logits = v.mean(1)
        return torch.nn.functional.cross_entropy(logits, y_tr[idx]), int((logits.argmax(-1) == y_tr[idx]).sum())

    def end_epoch(ep, loss, train_acc, t_train):
        acc, spikes = evaluate(model, x_te, y_te, per_step=False)
        history.append({"epoch": ep + 1, "loss": loss, "train_accuracy": train_acc, "test_accuracy": acc, "spikes_per_sample": spikes})
        log(f"epoch {ep + 1:2d}/{epochs}  loss {loss:.4f}  train {train_acc:.4f}  test {acc:.4f}  "
            f"spikes/sample {spikes:.0f}  ({t_train:.0f} s)")

    t_train = fit_one_cycle(model, len(x_tr), epochs, batch_size, lr, seed, batch_loss, end_epoch)
    test_acc, _ = evaluate(model, x_te, y_te, per_step=True)
    _, spikes = evaluate(model, x_te, y_te, per_step=False)
    log(f"test accuracy (per-step model, eval mode) {test_acc:.4f}, {spikes:.0f} spikes per sample")
    info = {
        "model_kwargs": kwargs,
        "dt": float(dt),
        "readout": readout,
        "input_shape": [int(d) for d in train_ds.input_shape],
        "seed": int(seed),
        "test_accuracy": float(test_acc),
        "spikes_per_sample": float(spikes),
        "train_seconds": float(t_train),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "alpha": float(alpha),
        "data": {"generator": "toolchain.data.digits.make_event_digits", "n_train": len(x_tr), "n_test": len(x_te), "seed": int(data_seed)},
        "n_steps": int(x_tr.shape[1]),
        "torch_threads": int(torch.get_num_threads()),
        "history": history,
    }
    return model.eval(), info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dt", type=float, default=DEFAULTS["dt"], help="timestep in seconds (default 0.002)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    ap.add_argument("--alpha", type=float, default=DEFAULTS["alpha"], help="surrogate sharpness")
    ap.add_argument("--n-train", type=int, default=DEFAULTS["n_train"])
    ap.add_argument("--n-test", type=int, default=DEFAULTS["n_test"])
    ap.add_argument("--data-seed", type=int, default=DEFAULTS["data_seed"])
    ap.add_argument("--channels", default="8,16,32", help="channels of the stem/block1, block2, block3")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a busy machine more threads slow the small element-wise ops down)")
    ap.add_argument("-o", "--output", help="checkpoint to write (.pt)")
    args = ap.parse_args(argv)
    model, info = train(
        dt=args.dt, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, alpha=args.alpha,
        n_train=args.n_train, n_test=args.n_test, data_seed=args.data_seed, threads=args.threads,
        channels=[int(c) for c in args.channels.split(",")],
    )
    print(f"test accuracy {info['test_accuracy']:.4f} after {info['train_seconds']:.0f} s of training")
    if args.output:
        save_checkpoint(model, info, args.output)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
