"""The demo model (``nirdeploy demo``): a two-layer spiking network of norse cells, one time step per call.

``build_model`` returns a :class:`norse.torch.SequentialState`::

    Linear(n_in, n_hidden) -> LIFBoxCell (hidden, tau_hidden)
      -> Linear(n_hidden, n_out) -> LIFBoxCell (output, tau_out)

called as ``out, state = model(x_t, state)`` with ``x_t`` the input counts of one bin. The class
is the output neuron that spikes most over the sample (:data:`readout` = ``"sum"``). This exact
structure (torch layers and norse cells, no custom logic in forward) is what
``nirdeploy export`` traces.

A norse ``LIFBoxCell`` at step ``dt`` computes ``v += dt / tau * (v_leak - v + input)``, then
spikes where ``v > v_th`` and resets those neurons to ``v_reset`` (0).
"""

from __future__ import annotations

import norse.torch as nt
import torch

#: how the output over time becomes a class: argmax of the summed output spikes
readout = "sum"

#: timestep (seconds) at which the initial weight scales and learning rates are given
REFERENCE_DT = 1e-3


def build_model(
    n_in: int = 40,
    n_hidden: int = 128,
    n_out: int = 10,
    dt: float = 1e-3,
    tau_hidden: float = 0.01,
    tau_out: float = 0.02,
    v_th: float = 1.0,
    init_std_hidden: float = 2.0,
    init_std_out: float = 4.0,
) -> nt.SequentialState:
    """The per-step SNN; ``dt`` (seconds) is the bin width its cells integrate over.

    Time constants are physical (seconds). ``init_std_*`` are the standard deviations of the
    initial weights at dt = 1 ms (biases start at 0); they only matter when training from
    scratch. They are scaled by ``1 ms / dt`` because a box cell turns one input count into a
    jump of ``dt / tau * w``: the same initial drive per input spike at every ``dt``.
    """
    fc1 = torch.nn.Linear(n_in, n_hidden)
    fc2 = torch.nn.Linear(n_hidden, n_out)
    k = REFERENCE_DT / float(dt)
    with torch.no_grad():
        fc1.weight.normal_(0.0, init_std_hidden * k)
        fc2.weight.normal_(0.0, init_std_out * k)
        fc1.bias.zero_()
        fc2.bias.zero_()
    hidden = nt.LIFBoxCell(
        nt.LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau_hidden), v_th=torch.tensor(float(v_th))), dt=float(dt)
    )
    output = nt.LIFBoxCell(
        nt.LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau_out), v_th=torch.tensor(float(v_th))), dt=float(dt)
    )
    return nt.SequentialState(fc1, hidden, fc2, output)


def run_over_time(model: torch.nn.Module, x: torch.Tensor, state=None, return_state: bool = False):
    """x: ``[batch, time, channels]`` -> outputs ``[batch, time, n_out]`` (spikes for this model).

    Calls the per-step model once per time step, exactly as a deployment would.
    """
    outs = []
    for t in range(x.shape[1]):
        o, state = model(x[:, t], state)
        outs.append(o)
    y = torch.stack(outs, dim=1)
    return (y, state) if return_state else y


def run_layerwise(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Same result as :func:`run_over_time` for a feed-forward ``SequentialState``, faster.

    Stateless layers (Linear) are applied to all time steps at once; each cell then runs its
    own loop over time. Valid because no layer feeds back into an earlier one.
    """
    h = x
    for module, stateful in zip(model, model.stateful_layers):
        if not stateful:
            h = module(h)
            continue
        state, outs = None, []
        for t in range(h.shape[1]):
            o, state = module(h[:, t], state)
            outs.append(o)
        h = torch.stack(outs, dim=1)
    return h


def predict(outputs: torch.Tensor, how: str = readout) -> torch.Tensor:
    """Class per sample from outputs ``[batch, time, n_out]`` by the readout rule."""
    if how == "sum":
        return outputs.sum(1).argmax(-1)
    if how == "max":
        return outputs.max(1).values.argmax(-1)
    raise ValueError(f"unknown readout {how!r}")
