"""Reading, writing and checking NIR graphs, and the discretization they carry.

NIR stores continuous-time parameters and no timestep. A graph written by nirdeploy carries in
``graph.metadata`` everything needed to recover the trained discrete model exactly::

    dt                        seconds per time step the model was trained at
    scheme                    "exact" (A = expm(Ac dt)) or "euler" (semi-implicit, current first)
    input_convention          "current" (a count is a current held for the bin) or
                              "impulse" (a count is a Dirac impulse: B = Bc)
    reset                     "value" (v <- v_reset, NIR's rule), "subtract" (v <- v - v_th) or
                              "none" (spikes are emitted, v is never reset: snnTorch's
                              reset_mechanism="none"); "partial" (v <- v_reset + reset_keep (v - v_th),
                              written by the reset-aware retiming methods, docs/retiming.md)
    reset_keep                with "partial": the fraction of the excess over the threshold that a
                              spike keeps, in (0, 1]
    recurrent_step0           what a recurrent (back) edge delivers at a sample's first step:
                              "bias" (the literal reading of the graph, the default: the linear
                              ops on the edge see zero spikes and output their bias, as snnTorch's
                              RLeaky / RSynaptic compute) or "none" (nothing arrives; nirdeploy's
                              reading before this key existed)
    reset_delay               with "subtract": true for snnTorch's one-step-late subtraction
                              (v <- v - v_th / a22, docs/discretization.md); with "value": true
                              for snnTorch's delayed reset to zero of Synaptic / RLeaky /
                              RSynaptic / Lapicque (v is held at v_reset through the step after
                              a spike, that step's input included: a one-step refractory
                              period); default false
    reset_guard               with "subtract" and no reset_delay: true for snnTorch's
                              reset_delay=False rule (a neuron whose v is still above v_th after
                              its subtraction decides the next step against v_th + v_subtract);
                              default false, written only when true
    v_init                    initial membrane potential: "zero", "v_leak" or "v_reset"
    node_conventions          per-node overrides of input_convention / v_init
    source_framework(_version) who trained it
    readout                   how outputs become a class: "sum", "max", "mean" or "last" over time

Graphs written elsewhere have none of this; the user must supply at least ``dt``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional

import numpy as np

from toolchain.errors import NirDeployError

SCHEMES = ("exact", "euler")
CONVENTIONS = ("current", "impulse")
RESETS = ("value", "subtract", "none", "partial")
#: the rules a user can choose for a graph (partial comes from retiming, with its reset_keep)
USER_RESETS = ("value", "subtract", "none")
V_INITS = ("zero", "v_leak", "v_reset")
READOUTS = ("sum", "max", "mean", "last")
RECURRENT_STEP0 = ("bias", "none")

NEURON_TYPES = ("LI", "LIF", "CubaLI", "CubaLIF", "IF", "I")


# --------------------------------------------------------------------------- metadata
def _py(v: Any) -> Any:
    """numpy scalars / bytes from HDF5 -> plain Python values."""
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _py(x) for k, x in v.items()}
    return v


def graph_metadata(graph) -> Dict[str, Any]:
    """The graph's metadata as a plain dict (nir leaves the ``dict`` class there when empty)."""
    meta = getattr(graph, "metadata", None)
    if not isinstance(meta, dict):
        return {}
    return _py(meta)


@dataclass(frozen=True)
class Discretization:
    """How a NIR graph's continuous-time neurons become discrete-time ones."""

    dt: float
    scheme: str = "exact"
    input_convention: str = "current"
    reset: str = "value"
    v_init: str = "zero"
    node_conventions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    recurrent_step0: str = "bias"
    reset_delay: bool = False
    reset_keep: float = 0.0
    reset_guard: bool = False

    def __post_init__(self):
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise NirDeployError(f"dt must be a positive number of seconds, got {self.dt!r}")
        _check_choice("scheme", self.scheme, SCHEMES)
        _check_choice("input convention", self.input_convention, CONVENTIONS)
        _check_choice("reset", self.reset, RESETS)
        if not isinstance(self.reset_delay, (bool, np.bool_)):
            raise NirDeployError(f"reset_delay must be true or false, got {self.reset_delay!r}")
        keep = self.reset_keep
        if isinstance(keep, bool) or not isinstance(keep, (int, float, np.floating)) or not np.isfinite(keep):
            raise NirDeployError(f"reset_keep must be a number in (0, 1], got {keep!r}")
        if self.reset == "partial":
            if not 0.0 < float(keep) <= 1.0:
                raise NirDeployError(f"a partial reset keeps a fraction in (0, 1] of the excess over the threshold, got reset_keep={keep!r}")
            if self.reset_delay:
                raise NirDeployError("a partial reset has no one-step-late (reset_delay) form")
        elif keep != 0.0:
            raise NirDeployError(f"reset_keep applies to the partial reset only (reset is {self.reset!r})")
        if not isinstance(self.reset_guard, (bool, np.bool_)):
            raise NirDeployError(f"reset_guard must be true or false, got {self.reset_guard!r}")
        if self.reset_guard and (self.reset != "subtract" or self.reset_delay):
            raise NirDeployError(f"reset_guard needs reset 'subtract' without reset_delay, got reset {self.reset!r}"
                                 f"{' with reset_delay' if self.reset_delay else ''}")  # fmt: skip
        _check_choice("v_init", self.v_init, V_INITS)
        _check_choice("recurrent_step0", self.recurrent_step0, RECURRENT_STEP0)
        for node, conv in self.node_conventions.items():
            if "input_convention" in conv:
                _check_choice(f"input convention of node {node!r}", conv["input_convention"], CONVENTIONS)
            if "v_init" in conv:
                _check_choice(f"v_init of node {node!r}", conv["v_init"], V_INITS)

    def convention(self, node: str) -> str:
        return self.node_conventions.get(node, {}).get("input_convention", self.input_convention)

    def initial_v(self, node: str) -> str:
        return self.node_conventions.get(node, {}).get("v_init", self.v_init)

    def replace(self, **kw) -> "Discretization":
        d = dict(
            dt=self.dt,
            scheme=self.scheme,
            input_convention=self.input_convention,
            reset=self.reset,
            v_init=self.v_init,
            node_conventions=copy.deepcopy(dict(self.node_conventions)),
            recurrent_step0=self.recurrent_step0,
            reset_delay=self.reset_delay,
            reset_keep=self.reset_keep,
            reset_guard=self.reset_guard,
        )
        d.update(kw)
        return Discretization(**d)

    def to_metadata(self) -> Dict[str, Any]:
        meta = {
            "dt": float(self.dt),
            "scheme": self.scheme,
            "input_convention": self.input_convention,
            "reset": self.reset,
            "reset_delay": bool(self.reset_delay),
            "v_init": self.v_init,
            "node_conventions": {k: dict(v) for k, v in self.node_conventions.items()},
            "recurrent_step0": self.recurrent_step0,
            **({"reset_keep": float(self.reset_keep)} if self.reset == "partial" else {}),
        }
        if self.reset_guard:
            meta["reset_guard"] = True
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> "Discretization":
        """The discretization a graph's metadata records; a one-line error for wrong-typed values."""
        meta = _py(dict(meta))
        dt = meta["dt"]
        if isinstance(dt, bool) or not isinstance(dt, (int, float)):
            raise NirDeployError(f"metadata dt must be a number of seconds, got {dt!r}")
        conv = meta.get("node_conventions") or {}
        if not isinstance(conv, Mapping) or not all(isinstance(v, Mapping) for v in conv.values()):
            raise NirDeployError("metadata node_conventions must map node names to {input_convention, v_init}")
        delay = meta.get("reset_delay", False)
        if not isinstance(delay, bool):
            raise NirDeployError(f"metadata reset_delay must be true or false, got {delay!r}")
        guard = meta.get("reset_guard", False)
        if not isinstance(guard, bool):
            raise NirDeployError(f"metadata reset_guard must be true or false, got {guard!r}")
        return cls(
            dt=float(dt),
            scheme=str(meta.get("scheme", "exact")),
            input_convention=str(meta.get("input_convention", "current")),
            reset=str(meta.get("reset", "value")),
            v_init=str(meta.get("v_init", "zero")),
            node_conventions={k: dict(v) for k, v in conv.items()},
            recurrent_step0=str(meta.get("recurrent_step0", "bias")),
            reset_delay=delay,
            reset_keep=meta.get("reset_keep", 0.0),
            reset_guard=guard,
        )


def _check_choice(what: str, value: str, choices: Iterable[str]) -> None:
    if value not in choices:
        raise NirDeployError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def discretization_of(
    graph,
    dt: Optional[float] = None,
    scheme: Optional[str] = None,
    input_convention: Optional[str] = None,
    reset: Optional[str] = None,
    recurrent_step0: Optional[str] = None,
    reset_delay: Optional[bool] = None,
) -> Discretization:
    """The discretization to simulate ``graph`` with.

    Taken from the graph's metadata; options given here override it. A graph without a
    ``dt`` in its metadata (written by another tool) needs ``dt`` from the caller.
    """
    meta = graph_metadata(graph)
    if "dt" not in meta and dt is None:
        from toolchain.ir.conventions import guidance

        raise NirDeployError(
            "this graph carries no timestep in its metadata (it was not written by nirdeploy); "
            "pass --dt SECONDS (and --scheme / --input-convention / --reset if not exact / current / value); "
            + guidance(graph)
        )
    base = Discretization.from_metadata(meta) if "dt" in meta else Discretization(dt=float(dt))
    kw = {}
    if dt is not None:
        kw["dt"] = float(dt)
    if scheme is not None:
        kw["scheme"] = scheme
    if input_convention is not None:
        kw["input_convention"] = input_convention
        kw["node_conventions"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "input_convention"}
            for k, v in base.node_conventions.items()
        }
    if reset is not None:
        kw["reset"] = reset
        if reset != "partial":
            kw["reset_keep"] = 0.0
    if recurrent_step0 is not None:
        kw["recurrent_step0"] = recurrent_step0
    if reset_delay is not None:
        kw["reset_delay"] = bool(reset_delay)
    if base.reset_guard and (kw.get("reset", base.reset) != "subtract" or kw.get("reset_delay", base.reset_delay)):
        kw["reset_guard"] = False  # an overridden reset rule replaces snnTorch's guard
    return base.replace(**kw) if kw else base




# --------------------------------------------------------------------------- exact parameters
#: Two-state neurons whose input rule nirdeploy writes into the node's parameters for other readers.
CUBA_TYPES = ("CubaLI", "CubaLIF")


def portable_cuba_params(tau_syn, tau_mem, r, w_in, dt: float) -> Dict[str, np.ndarray]:
    """(r, w_in) of a CubaLI/CubaLIF that under NIR's reading with the input held over the bin
    (euler or exact, ``current``) at ``dt`` is the same model as ``(r, w_in)`` read with the
    ``impulse`` convention: the input-output map depends on the product ``r w_in`` only, so
    ``r w_in`` is divided by dt, and ``r = tau_mem / dt`` (snnTorch's form: ``v += i`` per step)
    carries it, ``w_in = r_impulse w_in_impulse / tau_mem``. norse's and snnTorch's importers read it."""
    ts, tm = np.asarray(tau_syn, dtype=np.float64), np.asarray(tau_mem, dtype=np.float64)
    prod = np.asarray(r, dtype=np.float64) * np.asarray(w_in, dtype=np.float64)
    return {"r": tm / dt + 0.0 * ts, "w_in": prod / tm}


def exact_node(meta: Mapping[str, Any], name: str, node):
    """The node as nirdeploy reads it: with ``metadata["exact_params"][name]`` where present.

    nirdeploy writes a CubaLI/CubaLIF's parameters in NIR's own reading (an input held over the
    bin, :func:`portable_cuba_params`) so that other tools read the model right, and records the
    parameters of the trained discrete model (read with the node's recorded input convention) in
    ``exact_params``, so that its own reading stays bit for bit the trained model. Both must
    describe the same model (``r w_in`` of the node = ``r w_in`` of exact_params / dt); a node
    edited after nirdeploy wrote it is refused in one line.
    """
    exact = (meta.get("exact_params") or {}).get(name)
    if not exact:
        return node
    import copy as _copy

    dt = float(meta["dt"])
    new = _copy.copy(node)
    for k, v in exact.items():
        old = np.asarray(getattr(node, k))
        setattr(new, k, np.broadcast_to(np.asarray(v, dtype=np.float64), old.shape).copy())
    want = np.asarray(new.r, dtype=np.float64) * np.asarray(new.w_in, dtype=np.float64) / dt
    got = np.asarray(node.r, dtype=np.float64) * np.asarray(node.w_in, dtype=np.float64)
    if not np.allclose(got, want, rtol=1e-9, atol=0):
        raise NirDeployError(
            f"node {name!r}: its r x w_in disagrees with metadata['exact_params'] at dt={dt:g} (was the node edited "
            "after nirdeploy wrote it?); delete metadata['exact_params'] to read the node's own parameters "
            "(with --input-convention current)"
        )
    return new
