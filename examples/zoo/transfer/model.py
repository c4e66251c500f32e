"""A small convolutional SNN for event digits, trained with static-to-event knowledge transfer.

``build_model`` returns the *deployed* network, a :class:`norse.torch.SequentialState` called
once per time step (``out, state = model(x_t, state)``, ``x_t``: ON/OFF event counts of one
bin, shape ``[batch, 2, 16, 16]``)::

    Conv2d(2, c1, 3, pad 1)  -> LIFBoxCell (tau_hidden)        16 x 16 x c1   "1"
    AvgPool2d(2)
    Conv2d(c1, c2, 3, pad 1) -> LIFBoxCell (tau_hidden)         8 x 8 x c2    "4"  features
    AvgPool2d(2) -> Flatten
    Linear(c2 * 16, n_out)   -> LIBoxCell (tau_out)            n_out         "9"  readout

The class is the output neuron with the highest mean membrane potential over the sample
(:data:`readout` = ``"mean"``): the deployed counterpart of the papers' averaged per-step
outputs (TET). Training (``train.py``) shares the two spiking conv layers between the static
and the event domain; the static domain's own classifier head exists only during training and
is not part of the deployed model.

All cells are norse box cells (``v += dt / tau * (v_leak - v + input)``): current convention,
Euler scheme, so a bias in front of them is fine on Lava. Weights are initialised per input
count at dt = 1 ms and scaled by ``1 ms / dt`` (the drive of one count is ``dt / tau * w``).
"""

from __future__ import annotations

import norse.torch as nt
import torch

from exporters.layers import SumPool2d  # noqa: F401  (documented alternative to AvgPool2d)

#: how the output over time becomes a class: argmax of the mean output membrane potential
readout = "mean"

#: timestep (seconds) at which the initial weight scales are given
REFERENCE_DT = 1e-3

#: index of the feature layer (its membrane potential is aligned across domains)
FEATURE_LAYER = 4


def build_model(
    channels: int = 2,
    size: int = 16,
    c1: int = 8,
    c2: int = 16,
    n_out: int = 10,
    dt: float = 1e-2,
    tau_hidden: float = 0.02,
    tau_out: float = 0.02,
    v_th: float = 1.0,
    init_gain: float = 1.0,
) -> nt.SequentialState:
    """The per-step conv SNN; ``dt`` (seconds) is the bin width its cells integrate over.

    ``init_gain`` multiplies the default (Kaiming-uniform) initial weights, which are then
    scaled by ``1 ms / dt`` x ``tau / 10 ms``; only used when training from scratch.
    """
    conv1 = torch.nn.Conv2d(channels, c1, 3, padding=1)
    conv2 = torch.nn.Conv2d(c1, c2, 3, padding=1)
    fc = torch.nn.Linear(c2 * (size // 4) ** 2, n_out)
    k = REFERENCE_DT / float(dt)
    with torch.no_grad():
        for m, tau in ((conv1, tau_hidden), (conv2, tau_hidden), (fc, tau_out)):
            m.weight.mul_(init_gain * k * tau / 0.01 * 4.0)
            m.bias.zero_()

    def box(tau):
        return nt.LIFBoxCell(
            nt.LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau), v_th=torch.tensor(float(v_th))), dt=float(dt)
        )

    out = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau_out)), dt=float(dt))
    model = nt.SequentialState(
        conv1, box(tau_hidden), torch.nn.AvgPool2d(2),
        conv2, box(tau_hidden), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), fc, out,
    )
    model.input_shape = (channels, size, size)
    return model


def run_over_time(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: ``[batch, time, C, H, W]`` -> outputs ``[batch, time, n_out]``, one call per step."""
    outs, state = [], None
    for t in range(x.shape[1]):
        o, state = model(x[:, t], state)
        outs.append(o)
    return torch.stack(outs, dim=1)


def run_layerwise(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Same result as :func:`run_over_time` (feed-forward), faster: stateless layers run on all
    steps at once, each cell loops over time."""
    B, T = x.shape[:2]
    h = x
    for module, stateful in zip(model, model.stateful_layers):
        if not stateful:
            h = module(h.reshape((B * T,) + h.shape[2:]))
            h = h.reshape((B, T) + h.shape[1:])
            continue
        state, outs = None, []
        for t in range(T):
            o, state = module(h[:, t], state)
            outs.append(o)
        h = torch.stack(outs, dim=1)
    return h


def predict(outputs: torch.Tensor, how: str = readout) -> torch.Tensor:
    """Class per sample from outputs ``[batch, time, n_out]`` by the readout rule."""
    if how in ("mean", "sum"):
        return outputs.sum(1).argmax(-1)
    if how == "max":
        return outputs.max(1).values.argmax(-1)
    if how == "last":
        return outputs[:, -1].argmax(-1)
    raise ValueError(f"unknown readout {how!r}")
