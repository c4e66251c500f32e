"""The matrix functions of zero-shot retiming (Karilanova et al. 2024; docs/retiming.md).

Given a neuron's discrete SSM (A, B, c) at the source dt and rho = dt_T / dt_S:
``integral_matrices`` (A^rho, S B / rho, S c with S = (A^rho - I)(A - I)^-1), ``euler_matrices``
(I + rho (A - I), B, rho c), and ``fit_params``, the NIR parameters that realize a discrete SSM
under a scheme and input convention (where they exist). The graph pass that applies them is
``toolchain/passes/retime.py``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from toolchain.dynamics.discretize import N_STATES
from toolchain.errors import NirDeployError

#: the reset-aware methods: integral / exact plus a reset adapted to rho (``carry_reset``)
CARRY = "-carry"
RESET_AWARE = ("integral" + CARRY, "exact" + CARRY)
METHODS = ("tau", "integral", "euler", "exact") + RESET_AWARE
#: "none" is the no-adaptation baseline: the trained per-step update is kept as it is while
#: the data arrive in bins of dt_T (what happens when nobody adapts the model).
BASELINES = ("none",)


def base_method(method: str) -> str:
    """The matrix method of ``method``: ``exact-carry`` -> ``exact``."""
    return method[: -len(CARRY)] if method.endswith(CARRY) else method


def carry_reset(reset: str, keep: float, rho: float, trained_rho: Optional[float] = None) -> Tuple[str, float]:
    """The (reset, reset_keep) a reset-aware method gives a layer that resets with ``reset`` /
    ``keep`` at the source when the target bin is rho source steps (docs/retiming.md).

    A reset to a value at the training dt is a partial reset at a target rho_T times coarser
    that keeps the fraction ``k = 1 - 1/rho_T`` of the excess over the threshold (rho_T > 1; a finer
    target keeps the reset to the value). ``trained_rho`` is dt_T over the training dt (a graph
    retimed before records it), so that any chain of retimings gives what one retiming from the
    trained model gives; without it a partial reset with keep k0 counts as a value reset at a
    source 1 / (1 - k0) times finer. Reset by subtraction already carries the whole excess and no
    reset keeps everything: both unchanged.
    """
    if reset not in ("value", "partial"):
        return reset, 0.0
    if trained_rho is not None:
        rho_total = float(trained_rho)
    else:
        rho_total = rho / (1.0 - float(keep)) if reset == "partial" else rho
    if rho_total <= 1.0 + 1e-12:
        return "value", 0.0
    return "partial", 1.0 - 1.0 / rho_total


# --------------------------------------------------------------------------- matrix functions
def _phi1(X: np.ndarray) -> np.ndarray:
    """int_0^1 expm(s X) ds for a batch of small matrices, via Van Loan's block exponential."""
    from scipy.linalg import expm

    m, s, _ = X.shape
    M = np.zeros((m, 2 * s, 2 * s))
    M[:, :s, :s] = X
    M[:, :s, s:] = np.eye(s)
    return expm(M)[:, :s, s:]


def _logm(A: np.ndarray) -> np.ndarray:
    from scipy.linalg import logm

    out = np.empty_like(A)
    for k in range(A.shape[0]):
        L = logm(A[k])
        if np.iscomplexobj(L):
            if np.max(np.abs(L.imag)) > 1e-9 * max(1.0, np.max(np.abs(L.real))):
                raise NirDeployError("integral retiming needs a real matrix logarithm (positive decays)")
            L = L.real
        out[k] = L
    return out


def power_and_sum(A: np.ndarray, rho: float) -> Tuple[np.ndarray, np.ndarray]:
    """(A^rho, S) with S = (A^rho - I)(A - I)^-1 for a batch [m, s, s] of lower-triangular A."""
    m, s, _ = A.shape
    diag = np.diagonal(A, axis1=1, axis2=2)
    if np.any(diag <= 0):
        bad = float(diag.min())
        raise NirDeployError(
            f"integral retiming needs decays in (0, 1], found {bad:g} (a neuron that flips sign every step)"
        )
    if s == 1:
        L = np.log(A[:, 0, 0])
        Ap = np.exp(rho * L)
        with np.errstate(divide="ignore", invalid="ignore"):
            S = np.where(L == 0, rho, np.expm1(rho * L) / np.where(L == 0, 1.0, np.expm1(L)))
        return Ap[:, None, None], S[:, None, None]
    if np.any(A[:, 0, 1] != 0):  # pragma: no cover - neurons are lower triangular
        from scipy.linalg import expm

        L = _logm(A)
        return expm(rho * L), rho * _phi1(rho * L) @ np.linalg.inv(_phi1(L))
    # Lower-triangular 2x2 A = [[a, 0], [g, b]] in closed form (exact for a == b, a Jordan block):
    #   A^rho = [[a^rho, 0], [g P, b^rho]],  P = (a^rho - b^rho)/(a - b) = b^(rho-1) expm1(rho d)/expm1(d)
    #   S = [[F(a), 0], [s21, F(b)]],  F(x) = (x^rho - 1)/(x - 1) = expm1(rho ln x)/expm1(ln x)
    # and S commutes with A: (A - I) S = A^rho - I gives s21 = g (P - F(a))/(b - 1), or with
    # S (A - I) the same with a and b swapped; the larger of |a - 1|, |b - 1| is used.
    a, g, b = A[:, 0, 0], A[:, 1, 0], A[:, 1, 1]
    la, lb = np.log(a), np.log(b)
    d = la - lb

    def ratio(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x == 0, rho, np.expm1(rho * x) / np.where(x == 0, 1.0, np.expm1(x)))

    P = np.exp((rho - 1) * lb) * ratio(d)
    Fa, Fb = ratio(la), ratio(lb)
    use_b = np.abs(b - 1) >= np.abs(a - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s21 = np.where(
            use_b,
            g * (P - Fa) / np.where(use_b, b - 1, 1.0),
            g * (P - Fb) / np.where(use_b, 1.0, a - 1),
        )
    s21 = np.where((a == 1) & (b == 1), g * rho * (rho - 1) / 2, s21)  # no leak at all: sum of j A^j
    s21 = np.where(g == 0, 0.0, s21)
    Ap = np.zeros_like(A)
    Ap[:, 0, 0], Ap[:, 1, 0], Ap[:, 1, 1] = np.exp(rho * la), g * P, np.exp(rho * lb)
    S = np.zeros_like(A)
    S[:, 0, 0], S[:, 1, 0], S[:, 1, 1] = Fa, s21, Fb
    return Ap, S


def _unique_apply(fn, A, B, c):
    """Apply fn(A, B, c) once per distinct neuron (layers usually share their parameters)."""
    n, s, _ = A.shape
    flat = np.concatenate([A.reshape(n, -1), B.reshape(n, -1), c.reshape(n, -1)], axis=1)
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    uA = uniq[:, : s * s].reshape(-1, s, s)
    uB = uniq[:, s * s : s * s + s]
    uc = uniq[:, s * s + s :]
    rA, rB, rc = fn(uA, uB, uc)
    inv = inv.reshape(-1)
    return rA[inv], rB[inv], rc[inv]


def integral_matrices(A, B, c, rho: float):
    def fn(A, B, c):
        Ap, S = power_and_sum(A, rho)
        return Ap, np.einsum("nij,nj->ni", S, B) / rho, np.einsum("nij,nj->ni", S, c)

    return _unique_apply(fn, A, B, c)


def euler_matrices(A, B, c, rho: float, node: str = "?"):
    eye = np.eye(A.shape[-1])
    diag = np.diagonal(A, axis1=1, axis2=2)
    new_diag = 1.0 - rho * (1.0 - diag)
    leaky = diag < 1.0
    unstable = leaky & (np.abs(new_diag) >= 1.0)
    if np.any(unstable):
        a = float(diag[unstable].min())
        raise NirDeployError(
            f"euler retiming of node {node!r} by rho={rho:g} is unstable: a decay of {a:.4g} becomes "
            f"{1 - rho * (1 - a):.4g} (|1 - rho (1 - a)| >= 1); use the integral or exact method"
        )
    flipping = leaky & (new_diag < 0.0)
    if np.any(flipping):  # stable but sign-alternating: no leaky neuron decays like that
        a = float(diag[flipping].min())
        raise NirDeployError(
            f"euler retiming of node {node!r} by rho={rho:g} turns a decay of {a:.4g} per step into "
            f"{1 - rho * (1 - a):.4g}: a negative factor flips the state's sign every step, which no leaky "
            f"neuron (and no Loihi decay) does; use the integral or exact method"
        )
    return eye[None] + rho * (A - eye[None]), B.copy(), rho * c


# --------------------------------------------------------------------------- parameters from SSMs
def fit_params(kind: str, A, B, c, dt: float, scheme: str, convention: str) -> Dict[str, np.ndarray]:
    """NIR parameters whose discretization (scheme, convention, dt) gives (A, B, c) as closely as
    the node type allows. Thresholds and resets are not part of the SSM and are not returned."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if N_STATES[kind] == 1:
            a, b, cc = A[:, 0, 0], B[:, 0], c[:, 0]
            if kind in ("IF", "I"):
                return {"r": b / dt if convention == "current" else b.copy()}
            if scheme == "euler":
                tau = dt / (1 - a)
                r = b * tau / dt if convention == "current" else b * tau
                v_leak = cc * tau / dt
            else:
                tau = -dt / np.log(a)
                r = b / (1 - a) if convention == "current" else b * tau
                v_leak = cc / (1 - a)
            return {"tau": tau, "r": r, "v_leak": v_leak}
        a1, a21, a2 = A[:, 0, 0], A[:, 1, 0], A[:, 1, 1]
        b1, c2 = B[:, 0], c[:, 1]
        if scheme == "euler":
            ts, tm = dt / (1 - a1), dt / (1 - a2)
            g = a21 / a1
            r = g * tm / dt
            w_in = b1 * ts / dt if convention == "current" else b1 * ts
            v_leak = c2 * tm / dt
        else:
            ts, tm = -dt / np.log(a1), -dt / np.log(a2)
            alpha, gamma = 1 / ts, 1 / tm
            same = np.isclose(a1, a2, rtol=1e-12, atol=0)
            beta = np.where(same, a21 / (dt * a1), a21 * (gamma - alpha) / np.where(same, 1.0, a1 - a2))
            r = beta * tm
            w_in = b1 / (1 - a1) if convention == "current" else b1 * ts
            v_leak = c2 / (1 - a2)
        return {"tau_syn": ts, "tau_mem": tm, "r": r, "v_leak": v_leak, "w_in": w_in}


