"""Train the demo SNN on the default chirp task at a given timestep.

    python -m examples.zoo.temporal.train --dt 0.001 --seed 0 --epochs 60 -o toolchain/demo_model/checkpoint.pt

The train split is binned at ``--dt`` from its continuous timestamps, the model is built with
that ``dt`` (norse cells integrate over it), trained with surrogate gradients, evaluated on the
test split after every epoch, and saved as a checkpoint that ``torch.load(weights_only=True)``
reads: ``{"state_dict", "model_kwargs", "dt", "readout", "seed", "test_accuracy",
"train_seconds", ...}``. ``train()`` is the importable entry point.

How it trains (the deployed model is untouched by any of this):

* Speed: the Linear layers run on all time steps at once and each LIF layer runs as one
  autograd function over time (forward loop without a graph, hand-written backward loop), which
  is many times faster than autograd through norse's per-step cells. Its forward pass is the
  same arithmetic as ``norse``'s ``lif_box_feed_forward_step``; test accuracy is always measured
  with the norse model itself.
* Gradients: the spike's surrogate derivative is norse 1.1.0's SuperSpike, ``1 / (|v - v_th| + 1)^2``
  (norse ignores its ``alpha``), and the reset is left out of the gradient (a common choice; with
  it, training here did not converge). ``reset_keep`` = k > 0 trains with the partial reset
  ``v <- v_reset + k (v - v_th)`` that the reset-aware retiming methods write (the oracles of
  examples/zoo/retiming/evaluate.py); its gradient keeps the factor k of the spiking branch.
* Objective: cross-entropy on the maximum over time of each output neuron's membrane potential
  before reset. Cross-entropy on spike counts did not learn (counts are flat at initialization);
  a neuron whose membrane peaks highest is the one that crosses the threshold most, so the
  spike-count readout (``readout = "sum"``) follows, which the reported accuracies measure.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from examples.zoo.temporal.model import REFERENCE_DT, build_model, predict, readout, run_layerwise
from examples.zoo.training import factory_kwargs
from exporters.checkpoint import save_checkpoint

DEFAULTS = dict(epochs=60, batch_size=64, lr=2e-2, n_hidden=128)


class _BoxLayer(torch.autograd.Function):
    """A LIFBox / LIBox layer over a whole sequence: currents [B, T, N] -> (out, v_pre)."""

    @staticmethod
    def forward(ctx, cur, a, v_leak, v_th, v_reset, spiking: bool, keep: float = 0.0):
        B, T, N = cur.shape
        v = torch.zeros((B, N), dtype=cur.dtype) + v_leak
        v_pre = torch.empty_like(cur)
        z = torch.zeros_like(cur) if spiking else None
        for t in range(T):
            # same operations, in the same order, as norse's lif_box_feed_forward_step
            v = v + a * (cur[:, t] + v_leak - v)
            v_pre[:, t] = v
            if spiking:
                zt = (v - v_th > 0).to(cur.dtype)
                z[:, t] = zt
                if keep:  # partial reset: v <- v_reset + k (v - v_th)
                    v = (1 - zt) * v + zt * (v_reset + keep * (v - v_th))
                else:
                    v = (1 - zt) * v + zt * v_reset
        ctx.save_for_backward(v_pre, z if spiking else v_pre)
        ctx.a, ctx.v_th, ctx.spiking, ctx.keep = a, v_th, spiking, keep
        return (z if spiking else v_pre), v_pre

    @staticmethod
    def backward(ctx, g_out, g_vpre):
        v_pre, z = ctx.saved_tensors
        a, v_th, spiking = ctx.a, ctx.v_th, ctx.spiking
        g_out = torch.zeros_like(v_pre) if g_out is None else g_out
        g_vpre = torch.zeros_like(v_pre) if g_vpre is None else g_vpre
        if spiking:
            # dz/dv_pre: norse 1.1.0's SuperSpike surrogate 1 / (|x| + 1)^2
            g_direct = g_out / (torch.abs(v_pre - v_th) + 1.0).pow(2) + g_vpre
            # the spike decision is detached: the no-spike branch carries v forward, the partial
            # reset's spiking branch a factor k of it (0 for the reset to v_reset)
            keep = 1 - z * (1 - ctx.keep)
        else:
            g_direct = g_out + g_vpre
            keep = None
        g_cur = torch.empty_like(v_pre)
        gv = torch.zeros_like(v_pre[:, 0])  # dL/dv after step t (state carried to t + 1)
        for t in range(v_pre.shape[1] - 1, -1, -1):
            g = g_direct[:, t] + (gv * keep[:, t] if spiking else gv)  # dL/dv_pre[t]
            g_cur[:, t] = a * g
            gv = (1 - a) * g
        return g_cur, None, None, None, None, None, None


def _cell_constants(cell) -> Tuple[Any, Any, Any, Any, bool]:
    import norse.torch as nt

    p = cell.p
    if isinstance(cell, nt.LIFBoxCell):
        return cell.dt * p.tau_mem_inv, p.v_leak, p.v_th, p.v_reset, True
    if isinstance(cell, nt.LIBoxCell):
        return cell.dt * p.tau_mem_inv, p.v_leak, None, None, False
    raise TypeError(f"fast training supports LIFBoxCell and LIBoxCell, not {type(cell).__name__}")


def fast_forward(model, x: torch.Tensor, reset_keep: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """(outputs [B, T, n_out], output membrane before reset [B, T, n_out]) for a feed-forward
    SequentialState of Linear layers and box cells, with the training gradients described above."""
    h, v_pre = x, None
    for module, stateful in zip(model, model.stateful_layers):
        if not stateful:
            h = module(h)
            continue
        a, v_leak, v_th, v_reset, spiking = _cell_constants(module)
        h, v_pre = _BoxLayer.apply(h, a, v_leak, v_th, v_reset, spiking, float(reset_keep))
    return h, v_pre


def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 1000, reset_keep: float = 0.0) -> Tuple[float, float]:
    """(accuracy by the readout rule, output spikes per sample), running the norse model itself
    (norse has no partial reset: with ``reset_keep`` the training forward pass runs instead)."""
    correct, spikes = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = fast_forward(model, x[i : i + batch], reset_keep)[0] if reset_keep else run_layerwise(model, x[i : i + batch])
            correct += int((predict(out, readout) == y[i : i + batch]).sum())
            spikes += float(out.sum())
    return correct / max(len(x), 1), spikes / max(len(x), 1)


def load_data(data: str = "default"):
    """(train, test) EventDatasets: the shipped default task or a nirdeploy file with both splits."""
    from toolchain.data import load, load_default

    if data == "default":
        return load_default("train"), load_default("test")
    return load(data, split="train"), load(data, split="test")


def train(
    dt: float = 1e-3,
    seed: int = 0,
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    n_hidden: int = DEFAULTS["n_hidden"],
    data: str = "default",
    threads: Optional[int] = 2,
    log: Optional[Callable[[str], None]] = print,
    datasets=None,
    reset_keep: float = 0.0,
    **model_kwargs,
) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Train the demo model at timestep ``dt``; returns ``(model, info)``.

    ``info`` holds everything a checkpoint records except the weights: ``model_kwargs``, ``dt``,
    ``readout``, ``seed``, ``test_accuracy`` (after the last epoch), ``train_seconds`` (training
    only, data loading excluded), ``epochs`` and ``history`` (per-epoch loss and accuracies).
    Deterministic for a given seed on a given machine and thread count. ``datasets``
    (train, test) overrides ``data``.
    """
    if threads:
        torch.set_num_threads(int(threads))
    log = log or (lambda s: None)
    train_ds, test_ds = datasets if datasets is not None else load_data(data)
    x_tr = torch.from_numpy(train_ds.bin(dt))
    y_tr = torch.from_numpy(train_ds.labels)
    x_te = torch.from_numpy(test_ds.bin(dt))
    y_te = torch.from_numpy(test_ds.labels)
    x_tr, x_te = x_tr.reshape(x_tr.shape[0], x_tr.shape[1], -1), x_te.reshape(x_te.shape[0], x_te.shape[1], -1)
    # every argument of build_model, defaults included, so the checkpoint describes itself
    kwargs = factory_kwargs(
        build_model, dict(n_in=int(x_tr.shape[-1]), n_hidden=int(n_hidden), n_out=int(train_ds.n_classes), dt=float(dt)),
        model_kwargs,
    )
    torch.manual_seed(seed)
    model = build_model(**kwargs)
    gen = torch.Generator().manual_seed(seed)
    # weights act per input count (drive per spike ~ dt / tau * w): their scale, and so their
    # step size, goes with 1 / dt; biases are currents, independent of dt
    k = REFERENCE_DT / float(dt)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    others = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    opt = torch.optim.Adam([{"params": weights, "lr": lr * k}, {"params": others, "lr": lr}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    log(
        f"training at dt = {dt * 1e3:g} ms: {len(train_ds)} train / {len(test_ds)} test samples, "
        f"{x_tr.shape[1]} steps, {n_hidden} hidden, {epochs} epochs, seed {seed}"
    )
    history = []
    t_train = 0.0
    test_acc = float("nan")
    for ep in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        tot_loss, n_seen = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            _, v_pre = fast_forward(model, x_tr[idx], reset_keep)
            loss = torch.nn.functional.cross_entropy(v_pre.max(dim=1).values, y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot_loss += float(loss) * len(idx)
            n_seen += len(idx)
        sched.step()
        t_train += time.perf_counter() - t0
        model.eval()
        test_acc, spikes = evaluate(model, x_te, y_te, reset_keep=reset_keep)
        history.append({"epoch": ep + 1, "loss": tot_loss / n_seen, "test_accuracy": test_acc, "output_spikes_per_sample": spikes})
        log(f"epoch {ep + 1:3d}/{epochs}  loss {tot_loss / n_seen:.4f}  test accuracy {test_acc:.4f}  "
            f"output spikes/sample {spikes:.1f}  ({t_train:.0f} s)")
    train_acc, _ = evaluate(model.eval(), x_tr, y_tr, reset_keep=reset_keep)
    info = {
        "model_kwargs": {k: (float(v) if isinstance(v, float) else v) for k, v in kwargs.items()},
        "dt": float(dt),
        "readout": readout,
        "seed": int(seed),
        "test_accuracy": float(test_acc),
        "train_accuracy": float(train_acc),
        "train_seconds": float(t_train),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "data": str(data) if datasets is None else "given",
        "data_samples": {"train": len(train_ds), "test": len(test_ds)},
        "n_steps": int(x_tr.shape[1]),
        "torch_threads": int(torch.get_num_threads()),
        "history": history,
    }
    if reset_keep:
        info["reset_keep"] = float(reset_keep)
    return model, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dt", type=float, default=1e-3, help="timestep in seconds (default 0.001)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate (weights: scaled by 1 ms / dt)")
    ap.add_argument("--hidden", type=int, default=DEFAULTS["n_hidden"])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--data", default="default", help="'default' or a nirdeploy event file with train and test splits")
    ap.add_argument("-o", "--output", help="checkpoint to write (.pt)")
    args = ap.parse_args(argv)
    if not (math.isfinite(args.dt) and args.dt > 0):
        ap.error("--dt must be a positive number of seconds")
    model, info = train(
        dt=args.dt, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        n_hidden=args.hidden, data=args.data, threads=args.threads,
    )
    print(f"test accuracy {info['test_accuracy']:.4f} (train {info['train_accuracy']:.4f}) "
          f"after {info['train_seconds']:.0f} s of training")
    if args.output:
        save_checkpoint(model, info, args.output)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
