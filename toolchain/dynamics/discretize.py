"""NIR neuron nodes as discrete-time state-space models (SSMs).

Per neuron and time step k (bin k of width dt)::

    x[k] = A x[k-1] + B u[k] + c        u[k]: the weighted input arriving in bin k (counts summed)
    z[k] = v[k] > v_threshold           strict '>' as in NIR and Lava; v is the last state entry
    v[k] <- v_reset where z[k]          ("value" reset; "subtract": v - v_subtract, below)

One-state neurons (LI, LIF, IF, I) have x = v. Two-state neurons (CubaLI, CubaLIF) have
x = [i, v] with a lower-triangular A. See docs/discretization.md and
../shared/notes/retiming.md (section 1 and 2) for the derivation.

Reset by subtraction (``reset = "subtract"``): a spiking neuron's v loses ``v_subtract`` on a
spike, immediately (the decision at step k uses the unsubtracted v[k]). Without ``reset_delay``
``v_subtract = v_threshold``. With ``reset_delay`` it reproduces snnTorch's Leaky / Synaptic
(``reset_delay=True``, its default), which compute

    mem[t] = beta mem[t-1] + I[t] - H(mem[t-1] - thr) thr,    spk[t] = H(mem[t] - thr)

i.e. the subtraction of a spike at t-1 lands at t, after the decay. Write a22 for the per-step
coefficient of v[k-1] in v[k] (beta). Subtracting ``thr / a22`` right after the spike gives the
same next state, ``a22 (v - thr / a22) + ... = a22 v - thr + ...``, while the spike decision of
the spiking step still sees the unsubtracted value. Both readings agree at every step except the
spiking step's own recorded v (snnTorch's still holds the unsubtracted value; here it is already
reduced), so the spikes are identical. Hence ``v_subtract = v_threshold / a22``; a22 = 0 (no
voltage memory) cannot carry a late subtraction and is refused.

Partial reset (``reset = "partial"``, written by the reset-aware retiming methods): a spike keeps
the fraction ``reset_keep`` = k of the excess over the threshold, ``v <- v_reset + k (v - v_th)``;
k = 0 is the reset to v_reset, k = 1 with v_reset = 0 the reset by subtraction. Expressed as
``v <- v_keep v - v_subtract`` with ``v_keep = k`` and ``v_subtract = k v_th - v_reset``, the
form every backend that resets by subtraction runs (``v_keep`` None means 1).

snnTorch 1.0.0's two other rules (exporters/snntorch_to_nir.py, docs/snntorch.md):

* ``reset = "value"`` with ``reset_delay`` (``NeuronSSM.refractory = 1``): Synaptic / RLeaky /
  RSynaptic / Lapicque with ``reset_mechanism="zero"`` and the delay compute
  ``mem[t] = (1 - H(mem[t-1] - thr)) (beta mem[t-1] + syn[t])``: after a spike v is reset to
  v_reset and *held* there through the next step (that step's input does not reach v, and it
  cannot spike; a two-state neuron's current integrates as usual).
* ``reset = "subtract"`` with ``reset_guard`` (``NeuronSSM.reset_guard``; no delay): snnTorch's
  ``reset_delay=False`` subtracts immediately but decides the spike on
  ``beta mem[t-1] + I[t] - H(mem[t-1] - thr) thr``: a neuron whose v after the subtraction is
  still above the threshold decides the next step against ``v_threshold + v_subtract``.

No reset (``reset = "none"``, snnTorch's ``reset_mechanism="none"``): spikes are emitted where
v > v_threshold and v is left as it is; expressed as a subtraction of nothing (``v_subtract = 0``),
so every backend that resets by subtraction runs it unchanged.

Continuous-time form, dx/dt = Ac x + Bc s(t) + cc, from NIR's parameters:

    LI/LIF     Ac = -1/tau                 Bc = r/tau          cc = v_leak/tau
    IF/I       Ac = 0                      Bc = r              cc = 0
    CubaLI/LIF Ac = [[-1/ts, 0],           Bc = [w_in/ts, 0]   cc = [0, v_leak/tm]
                     [r/tm, -1/tm]]

Schemes:
    exact   A = expm(Ac dt); c = int_0^dt expm(Ac s) ds cc
    euler   semi-implicit forward Euler in the "current first" order of norse, snnTorch and
            Lava: the current is updated first and the voltage uses the updated current.
            One-state: A = 1 + dt Ac, c = dt cc.
            Two-state: A = P (I + dt diag Ac), c = P dt cc with P = I + dt strictlower(Ac).
Input conventions (how a count u[k] enters):
    current the count is a current held for the whole bin:
            B = int_0^dt expm(Ac s) ds Bc (exact) or P dt Bc (euler)
    impulse the count is a Dirac impulse: B = Bc (exact) or P Bc (euler)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.ir import Discretization, NEURON_TYPES, node_type

SPIKING = {"LIF": True, "CubaLIF": True, "IF": True, "LI": False, "CubaLI": False, "I": False}
N_STATES = {"LI": 1, "LIF": 1, "IF": 1, "I": 1, "CubaLI": 2, "CubaLIF": 2}


@dataclass
class NeuronSSM:
    """A layer of discrete-time neurons: per-neuron matrices flattened over the layer's shape."""

    kind: str
    shape: Tuple[int, ...]
    A: np.ndarray  # [N, s, s]
    B: np.ndarray  # [N, s]
    c: np.ndarray  # [N, s]
    x0: np.ndarray  # [N, s] initial state
    v_threshold: Optional[np.ndarray]  # [N] or None (non-spiking)
    v_reset: np.ndarray  # [N]
    reset: str = "value"
    dt: float = 0.0
    extra: Dict[str, object] = field(default_factory=dict)
    #: [N] the amount v loses on a spike ("subtract" reset); None for reset to v_reset
    v_subtract: Optional[np.ndarray] = None
    #: [N] the factor v is multiplied by on a spike before the subtraction (partial reset); None: 1
    v_keep: Optional[np.ndarray] = None
    #: steps v is held at v_reset after a spike ("value" reset with reset_delay): 0 or 1
    refractory: int = 0
    #: "subtract" without delay: a neuron whose v is still above v_threshold after its subtraction
    #: decides the next step against v_threshold + v_subtract (snnTorch's reset_delay=False)
    reset_guard: bool = False

    @property
    def spiking(self) -> bool:
        return self.v_threshold is not None

    @property
    def n(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def n_states(self) -> int:
        return self.A.shape[-1]


# --------------------------------------------------------------------------- parameters
def _param(node, name: str, shape, node_name: str, positive: bool = False, default=None) -> np.ndarray:
    val = getattr(node, name, None)
    if val is None:
        if default is None:
            raise NirDeployError(f"node {node_name!r} ({node_type(node)}) has no parameter {name}")
        val = default
    arr = np.asarray(val, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise NirDeployError(f"node {node_name!r} ({node_type(node)}): parameter {name} contains NaN or infinity")
    if positive and np.any(arr <= 0):
        raise NirDeployError(
            f"node {node_name!r} ({node_type(node)}): time constant {name} must be positive, got min {arr.min():g}"
        )
    try:
        return np.broadcast_to(arr, shape).reshape(-1).copy()
    except ValueError:
        raise NirDeployError(
            f"shape mismatch: node {node_name!r} ({node_type(node)}) has {name} of shape {arr.shape}, "
            f"but its input has shape {tuple(shape)}"
        ) from None


def continuous_ssm(node, shape, node_name: str = "?"):
    """(Ac [N,s,s], Bc [N,s], cc [N,s]) of a NIR neuron node whose input has ``shape``."""
    kind = node_type(node)
    if kind in ("LI", "LIF"):
        tau = _param(node, "tau", shape, node_name, positive=True)
        r = _param(node, "r", shape, node_name)
        v_leak = _param(node, "v_leak", shape, node_name)
        Ac = (-1.0 / tau)[:, None, None]
        Bc = (r / tau)[:, None]
        cc = (v_leak / tau)[:, None]
    elif kind in ("IF", "I"):
        r = _param(node, "r", shape, node_name)
        Ac = np.zeros((r.size, 1, 1))
        Bc = r[:, None]
        cc = np.zeros((r.size, 1))
    elif kind in ("CubaLI", "CubaLIF"):
        ts = _param(node, "tau_syn", shape, node_name, positive=True)
        tm = _param(node, "tau_mem", shape, node_name, positive=True)
        r = _param(node, "r", shape, node_name)
        v_leak = _param(node, "v_leak", shape, node_name)
        w_in = _param(node, "w_in", shape, node_name, default=1.0)
        n = ts.size
        Ac = np.zeros((n, 2, 2))
        Ac[:, 0, 0] = -1.0 / ts
        Ac[:, 1, 0] = r / tm
        Ac[:, 1, 1] = -1.0 / tm
        Bc = np.stack([w_in / ts, np.zeros(n)], axis=1)
        cc = np.stack([np.zeros(n), v_leak / tm], axis=1)
    else:
        raise UnsupportedNodeError(f"node {node_name!r} has type {kind}, which is not a neuron type nirdeploy supports")
    return Ac, Bc, cc


# --------------------------------------------------------------------------- discretization
def _unique_rows(*arrays):
    """Neurons of a layer usually share parameters: discretize each distinct one once."""
    flat = np.concatenate([a.reshape(a.shape[0], -1) for a in arrays], axis=1)
    uniq, inverse = np.unique(flat, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)


def discretize(Ac, Bc, cc, dt: float, scheme: str, convention: str):
    """Discrete (A, B, c) for per-neuron continuous (Ac, Bc, cc); see the module docstring."""
    n, s, _ = Ac.shape
    uniq, inv = _unique_rows(Ac, Bc, cc)
    uAc = uniq[:, : s * s].reshape(-1, s, s)
    uBc = uniq[:, s * s : s * s + s]
    ucc = uniq[:, s * s + s :]
    A, B, c = _discretize_unique(uAc, uBc, ucc, float(dt), scheme, convention)
    return A[inv], B[inv], c[inv]


def _discretize_unique(Ac, Bc, cc, dt, scheme, convention):
    m, s, _ = Ac.shape
    eye = np.eye(s)
    if scheme == "exact":
        if s == 1:
            x = Ac[:, 0, 0] * dt
            A = np.exp(x)[:, None, None]
            # phi1 = int_0^dt exp(Ac t) dt, with the limit dt for Ac = 0 (no leak)
            with np.errstate(divide="ignore", invalid="ignore"):
                phi1 = np.where(x == 0, dt, dt * np.expm1(x) / np.where(x == 0, 1.0, x))
            Bcur = Bc * phi1[:, None]
            c = cc * phi1[:, None]
        else:
            from scipy.linalg import expm

            # Van Loan: expm([[Ac, Bc, cc], [0, 0, 0], [0, 0, 0]] dt) holds A and the integrals
            M = np.zeros((m, s + 2, s + 2))
            M[:, :s, :s] = Ac
            M[:, :s, s] = Bc
            M[:, :s, s + 1] = cc
            E = expm(M * dt)
            A = E[:, :s, :s]
            Bcur = E[:, :s, s]
            c = E[:, :s, s + 1]
        B = Bcur if convention == "current" else Bc.copy()
    elif scheme == "euler":
        D = eye[None] + dt * Ac * eye[None]  # I + dt diag(Ac)
        L = dt * np.tril(Ac, -1)
        P = eye[None] + L  # (I - L)^-1 for a strictly lower 2x2 (L nilpotent)
        if s > 2:  # pragma: no cover - no neuron has more than two states
            P = np.linalg.inv(eye[None] - L)
        A = P @ D
        Bd = dt * Bc if convention == "current" else Bc
        B = np.einsum("nij,nj->ni", P, Bd)
        c = np.einsum("nij,nj->ni", P, dt * cc)
    else:
        raise NirDeployError(f"unknown scheme {scheme!r}")
    return A, B, c


def neuron_ssm(node, shape, node_name: str, disc: Discretization, override=None) -> NeuronSSM:
    """The discrete neuron layer of NIR node ``node`` (input shape ``shape``) under ``disc``.

    ``override`` ({"A", "B", "c"}, from ``metadata["ssm"][node]`` of a retimed graph) replaces
    the matrices computed from the node's continuous-time parameters.
    """
    kind = node_type(node)
    if kind not in NEURON_TYPES:
        raise UnsupportedNodeError(f"node {node_name!r} has type {kind}, which is not a neuron type")
    shape = tuple(int(d) for d in shape)
    Ac, Bc, cc = continuous_ssm(node, shape, node_name)
    n = Ac.shape[0]
    s = Ac.shape[-1]
    if override is not None:
        try:
            A = np.asarray(override["A"], dtype=np.float64).reshape(n, s, s)
            B = np.asarray(override["B"], dtype=np.float64).reshape(n, s)
            c = np.asarray(override["c"], dtype=np.float64).reshape(n, s)
        except (KeyError, ValueError):
            raise NirDeployError(
                f"node {node_name!r}: the adapted matrices in metadata['ssm'] do not fit a {kind} layer of shape {shape}"
            ) from None
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B)) and np.all(np.isfinite(c))):
            raise NirDeployError(f"node {node_name!r}: the adapted matrices in metadata['ssm'] contain NaN")
    else:
        A, B, c = discretize(Ac, Bc, cc, disc.dt, disc.scheme, disc.convention(node_name))
    if SPIKING[kind]:
        v_th = _param(node, "v_threshold", shape, node_name)
        v_reset = _param(node, "v_reset", shape, node_name, default=0.0)
    else:
        v_th = None
        v_reset = np.zeros(n)
    v_sub = _subtract_amount(A, v_th, disc, node_name, kind) if v_th is not None and disc.reset == "subtract" else None
    if v_th is not None and disc.reset == "none":  # no reset: every backend's subtraction of nothing
        v_sub = np.zeros(n)
    v_keep = None
    if v_th is not None and disc.reset == "partial":  # v <- v_reset + k (v - v_th) = k v - v_sub
        k = float(disc.reset_keep)
        v_keep = np.full(n, k)
        v_sub = k * np.asarray(v_th, dtype=np.float64) - np.asarray(v_reset, dtype=np.float64)
    init = disc.initial_v(node_name)
    x0 = np.zeros((n, s))
    if init == "v_leak" and hasattr(node, "v_leak"):
        x0[:, -1] = _param(node, "v_leak", shape, node_name)
    elif init == "v_reset":
        x0[:, -1] = v_reset
    return NeuronSSM(
        kind=kind,
        shape=shape,
        A=A,
        B=B,
        c=c,
        x0=x0,
        v_threshold=v_th,
        v_reset=v_reset,
        reset=disc.reset,
        dt=disc.dt,
        v_subtract=v_sub,
        v_keep=v_keep,
        refractory=int(v_th is not None and disc.reset == "value" and bool(disc.reset_delay)),
        reset_guard=bool(v_th is not None and disc.reset == "subtract" and disc.reset_guard),
    )


def _subtract_amount(A, v_th, disc: Discretization, node_name: str, kind: str) -> np.ndarray:
    """v_subtract [N] of a spiking layer that resets by subtraction (see the module docstring)."""
    if not disc.reset_delay:
        return np.asarray(v_th, dtype=np.float64).copy()
    a22 = np.asarray(A, dtype=np.float64)[:, -1, -1]
    if np.any(a22 == 0):
        raise NirDeployError(
            f"node {node_name!r} ({kind}): reset_delay needs a voltage that persists from step to step, but its "
            f"voltage decays fully in one step (a22 = 0); reset without the delay"
        )
    return np.asarray(v_th, dtype=np.float64) / a22
