"""An SHD-style spiking network for the spoken digits (64 cochlea channels, 10 words).

``build_model`` returns a :class:`norse.torch.SequentialState` called once per time step
(``out, state = model(x_t, state)``, ``x_t``: spike counts of one bin, ``[batch, n_in]``)::

    Linear(n_in, n_hidden)      -> LIFBoxCell (tau_hidden = 50 ms)   hidden 1   node "1"
    Linear(n_hidden, n_hidden)  -> LIFBoxCell (tau_hidden)           hidden 2   node "3"
    Linear(n_hidden, n_out)     -> LIBoxCell  (tau_out = 200 ms)     readout    node "5"

The class is the output neuron whose membrane potential peaks highest over the utterance
(:data:`readout` = ``"max"``, the usual SHD readout, e.g. Cramer et al. 2020); the output
layer is a non-spiking leaky integrator, the last layer of the network (Lava runs it: a
non-spiking layer may not feed another neuron layer, but it may be the output).
``output="spiking"`` gives a LIFBox output read out by spike counts (``"sum"``) instead;
``n_layers`` sets the number of hidden layers.

Why box cells (norse ``LIFBoxCell``: ``v += dt / tau * (v_leak - v + input)``): they take an
input count as a current held for the bin (the *current* convention of
docs/discretization.md), the form of most SHD models and the one for which the zero-shot
retiming methods differ: with norse's own rule at a new dt ("tau": keep the time constants)
the drive of one input spike becomes ``dt_T / tau * w``, rho times the trained one, while the
integral/exact methods keep the drive per second. A current-based ``LIFCell`` or
``LIFRecurrentCell`` adds a count straight into its synaptic current (the impulse convention,
independent of dt), for which "tau" already keeps the drive per spike -- it would not show
the collapse Karilanova et al. report for their reference method. Feed-forward layers keep
the Lava network small (one process per layer).
"""

from __future__ import annotations

import norse.torch as nt
import torch

#: how the output over time becomes a class: argmax of the output's peak membrane potential
readout = "max"


def build_model(
    n_in: int = 64,
    n_hidden: int = 128,
    n_out: int = 10,
    n_layers: int = 2,
    dt: float = 4e-3,
    tau_hidden: float = 0.05,
    tau_out: float = 0.2,
    v_th: float = 1.0,
    output: str = "li",
) -> nt.SequentialState:
    """The per-step SNN; ``dt`` (seconds) is the bin width its cells integrate over.

    Weights start at torch's defaults (training rescales them on the data, see ``train.py``);
    biases start at 0.
    """

    def box(tau):
        return nt.LIFBoxCell(
            nt.LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau), v_th=torch.tensor(float(v_th))), dt=float(dt)
        )

    layers = []
    width = n_in
    for _ in range(int(n_layers)):
        fc = torch.nn.Linear(width, n_hidden)
        layers += [fc, box(tau_hidden)]
        width = n_hidden
    if output == "spiking":
        out = box(tau_out)
    elif output == "li":  # non-spiking leaky integrator, read out by its maximum (readout "max")
        out = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau_out)), dt=float(dt))
    else:
        raise ValueError(f"output must be 'spiking' or 'li', not {output!r}")
    layers += [torch.nn.Linear(width, n_out), out]
    with torch.no_grad():
        for m in layers:
            if isinstance(m, torch.nn.Linear):
                m.bias.zero_()
    return nt.SequentialState(*layers)


def run_over_time(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: ``[batch, time, n_in]`` -> outputs ``[batch, time, n_out]``, one call per step."""
    outs, state = [], None
    for t in range(x.shape[1]):
        o, state = model(x[:, t], state)
        outs.append(o)
    return torch.stack(outs, dim=1)


def predict(outputs: torch.Tensor, how: str = readout) -> torch.Tensor:
    """Class per sample from outputs ``[batch, time, n_out]`` by the readout rule."""
    if how in ("sum", "mean"):
        return outputs.sum(1).argmax(-1)
    if how == "max":
        return outputs.max(1).values.argmax(-1)
    raise ValueError(f"unknown readout {how!r}")
