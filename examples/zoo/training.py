"""Pieces the example trainers share (none of them changes what is exported).

* :func:`factory_kwargs`: the keyword arguments a model factory is called with, recorded in the
  checkpoint as ``model_kwargs`` so that ``nirdeploy export --model pkg.mod:factory`` rebuilds
  the same network;
* :func:`fit_one_cycle`: the epoch loop of the sequence trainers (Adam, one-cycle learning rate,
  shuffled mini-batches from a seeded generator), with the loss and the per-epoch report left to
  the caller.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Dict, Optional, Tuple

import torch


def factory_kwargs(factory: Callable, values: Dict[str, Any], overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The factory's defaults, updated with ``values`` (what the data decide: shapes, dt), then with
    ``overrides`` (the caller's model settings); tuples become lists (plain checkpoint values)."""
    kwargs = {k: p.default for k, p in inspect.signature(factory).parameters.items()}
    kwargs.update(values)
    kwargs.update(overrides or {})
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}


def fit_one_cycle(
    model: torch.nn.Module,
    n_samples: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    batch_loss: Callable[[torch.Tensor], Tuple[torch.Tensor, int]],
    end_epoch: Callable[[int, float, float, float], None],
    pct_start: float = 0.15,
) -> float:
    """Train ``model`` for ``epochs`` over ``n_samples`` samples; returns the training seconds.

    ``batch_loss(idx)`` -> ``(loss, correct)`` for the samples ``idx`` (``correct``: how many the
    model classified right, 0 when it does not apply); ``end_epoch(epoch, mean loss, fraction
    correct, training seconds so far)`` runs after each epoch (evaluation, logging) and is not timed.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = (n_samples + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=pct_start
    )
    t_train = 0.0
    for ep in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n_samples, generator=gen)
        tot, seen, correct = 0.0, 0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss, c = batch_loss(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(idx)
            seen += len(idx)
            correct += int(c)
        t_train += time.perf_counter() - t0
        end_epoch(ep, tot / seen, correct / seen, t_train)
    return t_train
