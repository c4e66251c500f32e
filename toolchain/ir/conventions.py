"""Which tool wrote a NIR graph without nirdeploy metadata, and the options that run it.

NIR records no timestep and no discretization; every exporter encodes its own in the neuron
parameters. Where the parameters reveal the convention, :func:`detect` names the framework,
the evidence and the exact command-line options (docs/interop.md, docs/discretization.md,
"Graphs written by other tools"). Pure functions on a ``nir.NIRGraph``; nothing is guessed
silently: a graph that matches no rule gets ``framework = "unknown"`` and the generic reading.

Rules (checked on every neuron node of the graph):

* **snnTorch** ``export_to_nir`` (1.0): dt is hard-coded to 1e-4, ``tau = dt / (1 - beta)``,
  ``r = tau_mem / dt``, ``w_in = tau_syn / dt``, ``v_reset = 0``; so ``r dt / tau = 1`` and
  ``w_in dt / tau_syn = 1`` at dt = 1e-4. Its neurons default to reset by subtraction one step
  late (``reset_delay=True``), which the export does not record.
* **Rockpool** ``to_nir`` (3.x): ``r = tau exp(-dt / tau) / dt`` (LI, CubaLIF; the NIR paper's
  ``lif_rockpool.nir`` as LIF), so ``r dt / tau = exp(-dt / tau)`` for one dt shared by all
  neurons, solved here. Rockpool resets by subtraction; its update is not exactly any NIR reading.
* **norse** ``to_nir`` (1.1.0, norse#411): time constants multiplied by dt (tau < 1e-4 s with
  ``r = 1``), no ``w_in`` (1), no ``v_reset``.
* **Sinabs** ``to_nir``: integrate-and-fire only (``IF`` with ``r = 1``, ``v_reset = 0``), a
  discrete-time model: a count enters as an impulse (``v += r u``); Sinabs resets by subtraction.
* **generic** (e.g. the NIR paper's ``lif_norse.nir``): physical time constants with ``r = 1``:
  NIR's continuous-time reading, exact scheme, input held over the bin; dt is the data's bin width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np


SNNTORCH_DT = 1e-4
#: the options nirdeploy assumes for a graph without metadata (discretization_of's defaults)
DEFAULTS = {"scheme": "exact", "input_convention": "current", "reset": "value", "reset_delay": False}


@dataclass(frozen=True)
class Convention:
    """What the parameters of a foreign graph reveal."""

    framework: str  # snntorch, rockpool, norse, sinabs, generic, unknown, nirdeploy
    confidence: str  # high, medium, low
    evidence: List[str] = field(default_factory=list)
    #: dt (None: not revealed), scheme, input_convention, reset, reset_delay
    options: Dict[str, Any] = field(default_factory=dict)
    exact: bool = True  # the options reproduce the source framework's forward pass
    note: str = ""

    def cli(self) -> str:
        """The options as a command line fragment (``--dt DT`` where dt is not revealed)."""
        o = self.options
        parts = [f"--dt {_fmt(o['dt'])}" if o.get("dt") is not None else "--dt DT"]
        parts += [f"--scheme {o['scheme']}", f"--input-convention {o['input_convention']}", f"--reset {o['reset']}"]
        if o.get("reset_delay"):
            parts.append("--reset-delay")
        return " ".join(parts)

    def differs_from_defaults(self) -> List[str]:
        """The options (other than dt) that a run with only ``--dt`` would get wrong."""
        return [k for k, v in DEFAULTS.items() if self.options.get(k, v) != v]

    def summary(self) -> str:
        s = f"{self.framework} ({self.confidence} confidence: {'; '.join(self.evidence)})"
        return s + (f"; {self.note}" if self.note else "")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _arr(node, name, default=None) -> Optional[np.ndarray]:
    v = getattr(node, name, None)
    if v is None:
        return None if default is None else np.asarray(default, dtype=np.float64)
    return np.asarray(v, dtype=np.float64).reshape(-1)


def _neurons(graph) -> Dict[str, Any]:
    out = {}

    def walk(g, prefix=""):
        for k, n in g.nodes.items():
            if type(n).__name__ == "NIRGraph":
                walk(n, f"{prefix}{k}.")
            elif type(n).__name__ in ("LI", "LIF", "CubaLI", "CubaLIF", "IF", "I"):
                out[prefix + k] = n

    walk(graph)
    return out


def _close(a, b, rtol=1e-4) -> bool:
    return a is not None and bool(np.allclose(a, b, rtol=rtol, atol=0))


def _snntorch(neurons) -> Optional[List[str]]:
    ev = []
    for name, n in neurons.items():
        kind = type(n).__name__
        if kind in ("LIF", "LI"):
            if not _close(_arr(n, "r") * SNNTORCH_DT / _arr(n, "tau"), 1.0):
                return None
        elif kind in ("CubaLIF", "CubaLI"):
            r, w = _arr(n, "r"), _arr(n, "w_in", 1.0)
            if not (_close(r * SNNTORCH_DT / _arr(n, "tau_mem"), 1.0) and _close(w * SNNTORCH_DT / _arr(n, "tau_syn"), 1.0)):
                return None
        else:
            return None
        ev.append(name)
    return ev


def rockpool_dt(node) -> Optional[float]:
    """The dt solving ``r dt / tau = exp(-dt / tau)`` (Rockpool's ``r = tau exp(-dt/tau) / dt``)."""
    kind = type(node).__name__
    tau = _arr(node, "tau_mem" if kind in ("CubaLIF", "CubaLI") else "tau")
    r = _arr(node, "r")
    if tau is None or r is None or np.any(tau <= 0) or np.any(r <= 0):
        return None
    t, rr = float(tau.reshape(-1)[0]), float(r.reshape(-1)[0])
    if rr <= 2.0:  # a root exists for any r > 0; r <= 2 means dt > 0.35 tau: no exporter does that
        return None
    # f(x) = rr x - exp(-x), x = dt / tau: increasing, one root in (0, 1/rr)
    lo, hi = 0.0, 1.0 / rr
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if rr * mid - math.exp(-mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi) * t


def _round_dt(dt: float) -> float:
    """A solved dt to 4 significant digits (exporters use round bin widths such as 1e-4)."""
    return float(f"{dt:.4g}")


def detect(graph) -> Convention:
    """The convention of ``graph`` (a ``nir.NIRGraph``) as its parameters reveal it."""
    meta = getattr(graph, "metadata", None)  # (toolchain.ir.metadata imports this module: no import back)
    if isinstance(meta, dict) and "dt" in meta:
        return Convention("nirdeploy", "high", ["the metadata records dt and the discretization"], {}, True)
    neurons = _neurons(graph)
    if not neurons:
        return Convention("unknown", "low", ["no neuron nodes"], {"dt": None, **DEFAULTS}, False)
    kinds = sorted({type(n).__name__ for n in neurons.values()})
    ev = _snntorch(neurons)
    if ev is not None and any(k != "IF" for k in kinds):
        return Convention(
            "snntorch", "high",
            [f"r dt / tau_mem = 1{' and w_in dt / tau_syn = 1' if any(k.startswith('Cuba') for k in kinds) else ''} "
             f"at dt = 1e-4 on every neuron ({', '.join(kinds)}): snnTorch's export_to_nir"],
            {"dt": SNNTORCH_DT, "scheme": "euler", "input_convention": "current", "reset": "subtract", "reset_delay": True},
            True,
            "snnTorch's default reset (subtract, one step late); export_to_nir records no reset rule: a model "
            "trained with reset_mechanism='zero' runs with --reset value (Leaky, or reset_delay=False) or --reset value "
            "--reset-delay (Synaptic/RSynaptic with the delay), 'none' with --reset none; reset_delay=False "
            "subtraction needs metadata reset_guard (nirdeploy export of the snnTorch model writes it)",
        )
    leaky = {k: n for k, n in neurons.items() if type(n).__name__ not in ("IF", "I")}
    if leaky:
        dts = [rockpool_dt(n) for n in leaky.values()]
        if all(d is not None for d in dts) and np.allclose(dts, dts[0], rtol=1e-3):
            dt = _round_dt(float(np.median(dts)))
            return Convention(
                "rockpool", "medium",
                [f"r dt / tau = exp(-dt / tau) at dt = {_fmt(dt)} on every leaky neuron: Rockpool's to_nir"],
                {"dt": dt, "scheme": "exact", "input_convention": "current", "reset": "subtract", "reset_delay": False},
                False,
                "Rockpool's update (v <- beta v + i, several spikes per step) has no exact NIR reading: expect "
                "spikes close to, not equal to, Rockpool's",
            )
        taus = np.concatenate([_arr(n, "tau_mem" if type(n).__name__.startswith("Cuba") else "tau") for n in leaky.values()])
        ones = all(_close(_arr(n, "r"), 1.0, 1e-6) for n in leaky.values())
        if ones and float(taus.max()) < 1e-4:
            cuba = any(type(n).__name__.startswith("Cuba") for n in leaky.values())
            note = ("norse's to_nir 1.1.0 writes tau x dt (norse#411): a LIF/LI graph exported at norse's default "
                    "dt = 1e-3 runs exactly at --dt 1e-6 (dt squared: the per-step decay dt/tau is then right)")
            if cuba:
                note += "; its CubaLIF lacks w_in (an input enters with weight dt/tau_syn, not 1): no options " \
                        "reproduce norse's LIFCell: re-export the model with `nirdeploy export`"
            return Convention(
                "norse", "medium",
                [f"r = 1 and time constants below 1e-4 s (max {float(taus.max()):.3g} s): tau x dt, norse's to_nir 1.1.0"],
                {"dt": 1e-6, "scheme": "euler", "input_convention": "current", "reset": "value", "reset_delay": False},
                not cuba,
                note,
            )
        if ones:
            return Convention(
                "generic", "low",
                ["physical time constants with r = 1 (e.g. the NIR paper's lif_norse.nir)"],
                {"dt": None, **DEFAULTS},
                True,
                "NIR's continuous-time reading: dt is the bin width of the data the model was trained on "
                "(lif_norse.nir: 1e-4)",
            )
        return Convention("unknown", "low", ["no known exporter's parameter pattern"], {"dt": None, **DEFAULTS}, False)
    # IF / I only: no time constant, dt only scales rates
    if all(type(n).__name__ == "IF" and _close(_arr(n, "r"), 1.0, 1e-6) and _close(_arr(n, "v_reset", 0.0), 0.0)
           for n in neurons.values()):
        return Convention(
            "sinabs", "medium",
            ["integrate-and-fire neurons only, r = 1, v_reset = 0: Sinabs's to_nir (a discrete-time model)"],
            {"dt": 1e-3, "scheme": "exact", "input_convention": "impulse", "reset": "subtract", "reset_delay": False},
            False,
            "IF has no time constant: dt only scales rates (the NIR paper's N-MNIST bins: 1e-3); Sinabs allows several "
            "spikes per step and floors v at -threshold, which NIR cannot express",
        )
    return Convention("unknown", "low", ["no known exporter's parameter pattern"], {"dt": None, **DEFAULTS}, False)


def guidance(graph) -> str:
    """One line for a graph without metadata: who wrote it and the options to run it."""
    c = detect(graph)
    if c.framework == "nirdeploy":
        return ""
    if c.framework == "unknown":
        return f"parameters match no known exporter: run it with {c.cli()} and check --scheme / --input-convention / --reset"
    return f"looks like {c.summary()}; run it with {c.cli()}"


def only_dt_warning(graph, scheme=None, input_convention=None, reset=None, reset_delay=None) -> Optional[str]:
    """A one-line warning when a foreign graph runs with only ``--dt`` but its convention needs more."""
    if scheme is not None or input_convention is not None or reset is not None or reset_delay is not None:
        return None
    c = detect(graph)
    if c.framework in ("nirdeploy", "unknown", "generic"):
        return None
    wrong = c.differs_from_defaults()
    if not wrong:
        return None
    return (f"warning: this graph looks like a {c.framework} export and runs with only --dt as "
            f"{', '.join(f'{k}={DEFAULTS[k]}' for k in wrong)}; its convention is {c.cli()}")
