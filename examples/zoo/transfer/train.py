"""Train the event-digit conv SNN with (or without) static-to-event knowledge transfer.

    python -m examples.zoo.transfer.train --event-fraction 0.1 --with-static --seed 0 -o examples/zoo/transfer/checkpoint.pt
    python -m examples.zoo.transfer.train --event-fraction 0.1 --no-static   --seed 0

The recipe follows He et al. 2023 (arXiv 2303.13077) / Zhao, He et al., AAAI 2024 ("An Efficient
Knowledge Transfer Strategy for Spiking Neural Networks from Static to Event Domain", code:
github.com/Brain-Cog-Lab/Transfer-for-DVS, ``main_transfer.py`` and ``CKA.py``), scaled down:

* Data: ``toolchain.data.digits.make_event_digits`` -- ON/OFF event streams of scikit-learn's
  digits moved along saccades, each with its static image (``.images``). A fraction
  (``--event-fraction``, stratified by class, chosen by ``--seed``) of the event training split
  is used; the static images of the *whole* training split are the abundant source domain (as
  CIFAR-10 is for CIFAR10-DVS in the paper).
* Both domains run through the same spiking conv layers. Events enter as binned counts; a
  static image enters as a constant input on both channels at every step ("direct" encoding,
  the paper repeats the image's V channel on both channels; ``--static-encoding poisson`` draws
  Bernoulli spikes instead), scaled so that its values have the standard deviation of the
  event counts per pixel and bin.
  Each event sample in a batch is paired with a random static image *of the same class* (the
  paper samples the source image by label too).
* Sliding training: every static input of the batch is replaced, independently, by its event
  sample with probability ``p = (step / n_full) ** 3`` (cubic in training progress, ``p(0) = 0``,
  1 from step ``n_full`` on; ``n_full`` is half of the optimizer steps, ``--full-replacement-at
  0.5``, as ``set_MaxReplacement_epoch = 0.5 * epochs`` in the authors' code; ``--power``).
* Knowledge-transfer loss: domain alignment ``1 - |CKA(f_static[t], f_event[t])|`` (linear
  CKA over the batch, Kornblith et al. 2019) on the membrane potential of the last conv layer
  at every time step t, weighted per step by learnable coefficients ``c_t`` (the
  spatio-temporal regularization, :func:`transfer_loss`): ``w = T softmax(c)`` (mean 1; the
  weights move the alignment between steps, they cannot switch it off). Total:
  ``mean_t CE_event[t] + lambda * mean_t w_t L_domain[t]`` (``--domain-weight``, default 1 as in
  the paper's CIFAR10-DVS runs). As in the authors' code (``loss = 0 * loss_rgb + loss_dvs +
  coefficient * domain_loss``) the static head's own cross-entropy is not trained
  (``--static-ce-weight 0``); the static domain acts only through the shared layers' alignment.
  The deployed model is the event branch.
* ``--coef-mode complement --static-ce-weight 1 --full-replacement-at 1``: our first reading of
  the paper (event CE weighted by ``1 - sigmoid(c_t)``, domain loss by ``sigmoid(c_t)``, static
  CE trained, replacement complete at the end). The optimizer then drives ``sigmoid(c_t)`` to
  ~0.95, switching the event loss off, and the result is worse than training on events alone
  (docs/zoo.md has both comparisons).
* Without static data (``--no-static``): the same network, batches, steps and optimizer, with
  the plain per-step cross-entropy on the event outputs only.

Training speed: conv/pool/linear layers run on all steps at once and each LIF layer is one
autograd function over time (``examples/zoo/temporal/train.py``: same arithmetic as norse's box cell,
SuperSpike surrogate, reset detached). Reported accuracies are measured with the norse model.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from examples.zoo.temporal.train import _BoxLayer, _cell_constants
from examples.zoo.transfer.model import build_model, predict, readout, run_layerwise
from examples.zoo.training import factory_kwargs
from exporters.checkpoint import save_checkpoint

DEFAULTS = dict(
    dt=1e-2, epochs=120, batch_size=32, lr=1e-2, event_fraction=0.1, domain_weight=1.0, power=3.0,
    coef_mode="normalized", static_ce_weight=0.0, full_replacement_at=0.5,
)


# --------------------------------------------------------------------------- the two ingredients
def linear_cka(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Linear CKA between two feature matrices ``[n_samples, p]`` and ``[n_samples, q]``.

    ``<HKH, HLH> / (||HKH|| ||HLH||)`` with ``K = X X^T``, ``L = Y Y^T`` and ``H`` the centering
    matrix (Kornblith et al. 2019); equal to 1 for identical features, invariant to orthogonal
    transforms and isotropic scaling of either side. Differentiable.
    """
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    k = x @ x.T  # centered features -> centered Gram matrices
    l = y @ y.T
    return (k * l).sum() / (torch.linalg.norm(k) * torch.linalg.norm(l) + eps)


def replacement_probability(step: int, n_steps: int, power: float = 3.0) -> float:
    """Sliding schedule: probability of replacing a static input by its event sample at
    optimizer step ``step`` of ``n_steps`` (0-based): ``(step / (n_steps - 1)) ** power``,
    clipped to [0, 1]; 0 at the first step, 1 at the last."""
    if n_steps <= 1:
        return 1.0
    return float(min(1.0, max(0.0, step / (n_steps - 1))) ** power)


# --------------------------------------------------------------------------- data
def load_digits_data():
    """(train, test) of the default event digits (``toolchain.data.digits``: 1500 / 300 samples,
    16 x 16, 100 ms; the test split is what ``--data digits`` evaluates), through its cache."""
    from toolchain.data.digits import cached_event_digits

    return cached_event_digits()


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of ``fraction`` of the samples of every class (at least one each), chosen by seed."""
    rng = np.random.default_rng(seed)
    idx = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, int(round(fraction * len(members))))
        idx.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(idx))


# --------------------------------------------------------------------------- fast forward
def fast_features(model, x: torch.Tensor, feature_layer: int = 4):
    """Run the conv part: x [B, T, C, H, W] -> (flattened input of the classifier [B, T, F],
    membrane potential before reset of ``model[feature_layer]`` [B, T, ...])."""
    B, T = x.shape[:2]
    h, feat = x, None
    for i, (module, stateful) in enumerate(zip(model, model.stateful_layers)):
        if i >= len(model) - 2:  # Linear + output cell: the heads
            break
        if not stateful:
            y = module(h.reshape((B * T,) + h.shape[2:]))
            h = y.reshape((B, T) + y.shape[1:])
            continue
        a, v_leak, v_th, v_reset, spiking = _cell_constants(module)
        shape = h.shape
        z, v_pre = _BoxLayer.apply(h.reshape(B, T, -1), a, v_leak, v_th, v_reset, spiking)
        h = z.reshape(shape)
        if i == feature_layer:
            feat = v_pre
    return h, feat


def fast_head(fc: torch.nn.Linear, cell, h: torch.Tensor) -> torch.Tensor:
    """Classifier head: Linear + LIBox over time -> output membrane [B, T, n_out]."""
    a, v_leak, v_th, v_reset, spiking = _cell_constants(cell)
    out, _ = _BoxLayer.apply(fc(h), a, v_leak, v_th, v_reset, spiking)
    return out


@torch.no_grad()
def calibrate(model, x: torch.Tensor, target_std: float = 1.0) -> None:
    """Data-driven initial scale (LSUV-like): layer by layer, rescale the weights in front of
    each cell so that its input current over ``x`` has standard deviation ``target_std`` times
    the threshold (1 for the non-spiking output). Biases start at 0."""
    B, T = x.shape[:2]
    h, prev = x, None
    for module, stateful in zip(model, model.stateful_layers):
        if not stateful:
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                prev = module
            y = module(h.reshape((B * T,) + h.shape[2:]))
            h = y.reshape((B, T) + y.shape[1:])
            continue
        a, v_leak, v_th, v_reset, spiking = _cell_constants(module)
        std = float(h.std())
        if prev is not None and std > 0:
            s = target_std * (float(v_th) if spiking else 1.0) / std
            prev.weight.mul_(s)
            h = h * s
        shape = h.shape
        z, _ = _BoxLayer.apply(h.reshape(B, T, -1), a, v_leak, v_th, v_reset, spiking)
        h = z.reshape(shape)


def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> float:
    """Accuracy of the norse model itself by the readout rule."""
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = run_layerwise(model, x[i : i + batch])
            correct += int((predict(out, readout) == y[i : i + batch]).sum())
    return correct / max(len(x), 1)


def static_inputs(images: torch.Tensor, n_steps: int, gain: float, encoding: str, gen: torch.Generator) -> torch.Tensor:
    """Static images [B, H, W] -> input sequence [B, T, 2, H, W] (both channels)."""
    img = (images * gain).unsqueeze(1).unsqueeze(1).expand(-1, n_steps, 2, -1, -1)
    if encoding == "constant":
        return img.contiguous()
    if encoding == "poisson":
        return (torch.rand(img.shape, generator=gen) < img.clamp(0, 1)).to(img.dtype)
    raise ValueError(f"unknown static encoding {encoding!r}")


COEF_MODES = ("normalized", "complement")


def step_weights(coef: torch.Tensor, coef_mode: str) -> torch.Tensor:
    """Per-step weights of the domain loss from the learnable coefficients ``c_t``."""
    if coef_mode == "normalized":
        return coef.numel() * torch.softmax(coef, 0)
    if coef_mode == "complement":
        return torch.sigmoid(coef)
    raise ValueError(f"coef_mode must be one of {COEF_MODES}, got {coef_mode!r}")


def transfer_loss(ce_s_t, ce_e_t, dom_t, coef, coef_mode: str, static_ce_weight: float, domain_weight: float):
    """``(loss, ce_static, ce_event, domain)`` from per-step losses ``[T]``.

    * ``normalized`` (default): ``static_ce_weight * mean_t CE_s + mean_t CE_e + domain_weight *
      mean_t w_t (1 - |CKA_t|)`` with ``w = T softmax(c)``: the learnable weights only move the
      alignment between time steps (their mean is 1), they cannot switch a loss off.
    * ``complement`` (the first reading of the paper's spatio-temporal regularization): domain loss
      weighted by ``sigmoid(c_t)``, event CE by ``1 - sigmoid(c_t)``. Here the optimizer lowers the
      loss by raising ``sigmoid(c_t)`` towards 1, which switches the event CE off (measured:
      ``sigmoid(c_t)`` -> 0.95 and event accuracy below the event-only baseline; docs/zoo.md).
    """
    w = step_weights(coef, coef_mode)
    ce_s = ce_s_t.mean()
    ce_e = (ce_e_t * (1 - w)).mean() if coef_mode == "complement" else ce_e_t.mean()
    l_dom = (w * dom_t).mean()
    return static_ce_weight * ce_s + ce_e + domain_weight * l_dom, ce_s, ce_e, l_dom


# --------------------------------------------------------------------------- training
def train(
    with_static: bool = True,
    event_fraction: float = DEFAULTS["event_fraction"],
    seed: int = 0,
    dt: float = DEFAULTS["dt"],
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    domain_weight: float = DEFAULTS["domain_weight"],
    power: float = DEFAULTS["power"],
    static_encoding: str = "constant",
    learn_coefficients: bool = True,
    coef_init: float = 1.0,
    coef_mode: str = DEFAULTS["coef_mode"],
    static_ce_weight: float = DEFAULTS["static_ce_weight"],
    full_replacement_at: float = DEFAULTS["full_replacement_at"],
    calib_std: float = 1.0,
    threads: Optional[int] = 2,
    log: Optional[Callable[[str], None]] = print,
    datasets=None,
    eval_every: int = 10,
    **model_kwargs,
) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Train; returns ``(deployable norse model, info)``. ``datasets``: (train, test) EventDatasets
    with ``.images`` (default: :func:`load_digits_data`)."""
    if threads:
        torch.set_num_threads(int(threads))
    log = log or (lambda s: None)
    train_ds, test_ds = datasets if datasets is not None else load_digits_data()
    sub = stratified_subset(train_ds.labels, event_fraction, seed)
    x_all = torch.from_numpy(train_ds.bin(dt))
    x_ev, y_ev = x_all[sub], torch.from_numpy(train_ds.labels[sub]).long()
    x_te, y_te = torch.from_numpy(test_ds.bin(dt)), torch.from_numpy(test_ds.labels).long()
    images = torch.from_numpy(np.asarray(train_ds.images, dtype=np.float32))
    y_img = torch.from_numpy(train_ds.labels).long()
    T = x_ev.shape[1]
    # static input scaled so that its values have the standard deviation of the event counts per
    # pixel and bin (over the whole event training split): both domains then drive the first
    # layer about equally (matching the means instead left the static branch nearly silent)
    gain = float(x_all.std() / images.std())
    by_class = [torch.nonzero(y_img == c).flatten() for c in range(int(train_ds.n_classes))]

    kwargs = factory_kwargs(
        build_model, dict(channels=int(x_ev.shape[2]), size=int(x_ev.shape[-1]), n_out=int(train_ds.n_classes), dt=float(dt)),
        model_kwargs,
    )
    torch.manual_seed(seed)
    model = build_model(**kwargs)
    calib = torch.randperm(len(x_ev), generator=torch.Generator().manual_seed(seed))[:64]
    calibrate(model, x_ev[calib], calib_std)
    fc, out_cell = model[len(model) - 2], model[len(model) - 1]
    static_fc = torch.nn.Linear(fc.in_features, fc.out_features)
    with torch.no_grad():
        static_fc.weight.copy_(fc.weight)
        static_fc.bias.zero_()
    coef = torch.nn.Parameter(torch.full((T,), float(coef_init)))  # c_t; paper: 1 (sigmoid 0.73)
    gen = torch.Generator().manual_seed(seed)

    params = list(model.named_parameters()) + [("static_fc." + n, p) for n, p in static_fc.named_parameters()]
    weights = [p for n, p in params if n.endswith("weight")]
    others = [p for n, p in params if not n.endswith("weight")]
    # the initial weights are calibrated on the data (their scale already reflects dt): one step size
    groups = [{"params": weights, "lr": lr}, {"params": others, "lr": lr}]
    if with_static and learn_coefficients:
        groups.append({"params": [coef], "lr": lr})
    opt = torch.optim.Adam(groups)
    n_batches = math.ceil(len(x_ev) / batch_size)
    total_steps = n_batches * epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total_steps)
    log(
        f"{'with' if with_static else 'without'} static images: {len(x_ev)} event train samples "
        f"({event_fraction:g} of {len(train_ds)}), {len(images) if with_static else 0} static images, "
        f"{len(x_te)} test, {T} steps of {dt * 1e3:g} ms, {epochs} epochs x {n_batches} batches, seed {seed}"
    )
    history = []
    step = 0
    t_train = 0.0
    for ep in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x_ev), generator=gen)
        tot = {"loss": 0.0, "ce_event": 0.0, "ce_static": 0.0, "domain": 0.0, "p": 0.0}
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            xe, y = x_ev[idx], y_ev[idx]
            B = len(idx)
            if not with_static:
                h, _ = fast_features(model, xe)
                v = fast_head(fc, out_cell, h.reshape(B, T, -1))
                ce_t = torch.stack([F.cross_entropy(v[:, t], y) for t in range(T)])
                loss = ce_t.mean()
                parts = {"ce_event": float(loss), "ce_static": 0.0, "domain": 0.0, "p": 1.0}
            else:
                p = replacement_probability(step, max(1, int(round(full_replacement_at * total_steps))), power)
                pick = torch.stack([by_class[int(c)][torch.randint(len(by_class[int(c)]), (1,), generator=gen)] for c in y]).flatten()
                xs = static_inputs(images[pick], T, gain, static_encoding, gen)
                replace = torch.rand(B, generator=gen) < p
                xs[replace] = xe[replace]
                h, feat = fast_features(model, torch.cat([xs, xe]))
                h = h.reshape(2 * B, T, -1)
                v_s = fast_head(static_fc, out_cell, h[:B])
                v_e = fast_head(fc, out_cell, h[B:])
                dom = torch.stack([1 - torch.abs(linear_cka(feat[:B, t], feat[B:, t])) for t in range(T)])
                ce_s_t = torch.stack([F.cross_entropy(v_s[:, t], y) for t in range(T)])
                ce_e_t = torch.stack([F.cross_entropy(v_e[:, t], y) for t in range(T)])
                loss, ce_s, ce_e, l_dom = transfer_loss(ce_s_t, ce_e_t, dom, coef, coef_mode, static_ce_weight, domain_weight)
                parts = {"ce_event": float(ce_e), "ce_static": float(ce_s), "domain": float(l_dom), "p": p}
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot["loss"] += float(loss) * B
            for kk, vv in parts.items():
                tot[kk] += vv * B
        t_train += time.perf_counter() - t0
        row = {"epoch": ep + 1, **{kk: vv / len(x_ev) for kk, vv in tot.items()}}
        if (ep + 1) % eval_every == 0 or ep + 1 == epochs:
            model.eval()
            row["test_accuracy"] = evaluate(model, x_te, y_te)
            log(
                f"epoch {ep + 1:3d}/{epochs}  loss {row['loss']:.3f} (event {row['ce_event']:.3f}, static "
                f"{row['ce_static']:.3f}, domain {row['domain']:.3f}, p {row['p']:.2f})  "
                f"test accuracy {row['test_accuracy']:.4f}  ({t_train:.0f} s)"
            )
        history.append(row)
    model.eval()
    test_acc = history[-1]["test_accuracy"]
    train_acc = evaluate(model, x_ev, y_ev)
    info = {
        "model_kwargs": {kk: (float(vv) if isinstance(vv, float) else vv) for kk, vv in kwargs.items()},
        "dt": float(dt),
        "readout": readout,
        "input_shape": [int(d) for d in x_ev.shape[2:]],
        "seed": int(seed),
        "with_static": bool(with_static),
        "event_fraction": float(event_fraction),
        "event_train_samples": int(len(x_ev)),
        "static_images": int(len(images)) if with_static else 0,
        "static_encoding": static_encoding,
        "static_gain": gain,
        "domain_weight": float(domain_weight),
        "power": float(power),
        "coefficients_sigmoid": [float(v) for v in torch.sigmoid(coef.detach())],
        "coef_mode": coef_mode,
        "domain_step_weights": [float(v) for v in step_weights(coef.detach(), coef_mode)],
        "static_ce_weight": float(static_ce_weight),
        "full_replacement_at": float(full_replacement_at),
        "test_accuracy": float(test_acc),
        "train_accuracy": float(train_acc),
        "train_seconds": float(t_train),
        "epochs": int(epochs),
        "optimizer_steps": int(step),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "data": "digits (toolchain.data.digits.make_event_digits)" if datasets is None else "given",
        "data_samples": {"train": len(train_ds), "test": len(test_ds)},
        "n_steps": int(T),
        "torch_threads": int(torch.get_num_threads()),
        "history": history,
    }
    return model, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--with-static", dest="with_static", action="store_true", default=True,
                   help="knowledge transfer from the static images (default)")
    g.add_argument("--no-static", dest="with_static", action="store_false", help="event data only (baseline)")
    ap.add_argument("--event-fraction", type=float, default=DEFAULTS["event_fraction"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dt", type=float, default=DEFAULTS["dt"], help="timestep in seconds (default 0.01)")
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    ap.add_argument("--domain-weight", type=float, default=DEFAULTS["domain_weight"])
    ap.add_argument("--power", type=float, default=DEFAULTS["power"], help="exponent of the sliding schedule")
    ap.add_argument("--static-encoding", choices=("constant", "poisson"), default="constant")
    ap.add_argument("--coef-mode", choices=COEF_MODES, default=DEFAULTS["coef_mode"],
                    help="how the learnable per-step coefficients enter the loss (transfer_loss)")
    ap.add_argument("--static-ce-weight", type=float, default=DEFAULTS["static_ce_weight"],
                    help="weight of the static head's cross-entropy (the authors' code: 0)")
    ap.add_argument("--full-replacement-at", type=float, default=DEFAULTS["full_replacement_at"],
                    help="fraction of training after which every static input is replaced by events")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", help="checkpoint to write (.pt)")
    args = ap.parse_args(argv)
    if not 0 < args.event_fraction <= 1:
        ap.error("--event-fraction must be in (0, 1]")
    model, info = train(
        with_static=args.with_static, event_fraction=args.event_fraction, seed=args.seed, dt=args.dt,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, domain_weight=args.domain_weight,
        power=args.power, static_encoding=args.static_encoding, threads=args.threads, coef_mode=args.coef_mode,
        static_ce_weight=args.static_ce_weight, full_replacement_at=args.full_replacement_at,
    )
    print(f"test accuracy {info['test_accuracy']:.4f} (train {info['train_accuracy']:.4f}) "
          f"after {info['train_seconds']:.0f} s of training")
    if args.output:
        save_checkpoint(model, info, args.output)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
