"""Zero-shot re-discretization of a NIR graph for a new timestep (Karilanova et al. 2024).

``retime(graph, dt_target, method)`` is a pure graph pass: it returns a new graph whose neurons
realize the adapted discrete dynamics at ``dt_target``. With rho = dt_T / dt_S and the source
neuron's discrete SSM (A, B, c) (``toolchain.discretize``):

``tau``       the reference: keep the time constants and recompute the per-step update with the
              graph's own scheme and input convention at dt_T (what passing a new dt to norse or
              snnTorch does). Only the metadata's dt changes.
``exact``     re-discretize the graph's continuous-time ODE at dt_T with its own scheme and input
              convention, keeping the charge carried by one input count: under the ``current``
              convention a count held for a bin of dt_T carries rho times more charge than at
              dt_S, so r (LI/LIF/IF/I) or w_in (CubaLI/CubaLIF) is divided by rho. Under the
              ``impulse`` convention nothing changes (equal to ``tau``).
``integral``  A_T = A^rho,  B_T = S B / rho,  c_T = S c,  S = (A^rho - I)(A - I)^-1,
              exact when each source-rate input is spread evenly over the rho sub-steps. S is
              evaluated as rho phi1(rho L) phi1(L)^-1 with L = log A and phi1(X) = int_0^1 e^{sX} ds
              (Van Loan's block exponential), which has no singularity at A = I (IF/I neurons:
              S = rho I) and handles equal time constants (a Jordan block).
``euler``     A_T = I + rho (A - I),  B_T = B,  c_T = rho c (first order). Refused when a leaky
              mode would be unstable, |1 - rho (1 - a)| >= 1.
``none``      the no-adaptation baseline: the trained per-step update is kept unchanged.

Inputs are counts summed per bin, so a bias that a Linear/Conv layer adds every step is a
constant count per bin: integral, exact and euler scale such biases by rho (tau and none keep
them, as the framework would).

Every method is the identity at rho = 1. Weights, thresholds and resets are untouched.

Where NIR's neuron parameters can express the result under the graph's scheme and convention,
the node's parameters are rewritten; otherwise (e.g. an integral retime of a CubaLIF breaks the
tie between the two entries of B) the exact adapted matrices are stored in
``metadata["ssm"][node] = {"A", "B", "c"}`` and the node keeps its nearest NIR parameters.
Simulators use those matrices; the Lava backend projects them onto Loihi's CUBA form.
"""

from __future__ import annotations

import copy
from typing import Dict, Tuple

import numpy as np

from .discretize import N_STATES, continuous_ssm, discretize
from .errors import NirDeployError
from .graph import Discretization, discretization_of, graph_metadata, make_graph, node_type
from .program import lower

METHODS = ("tau", "integral", "euler", "exact")
#: "none" is the no-adaptation baseline: the trained per-step update is kept as it is while
#: the data arrive in bins of dt_T (what happens when nobody adapts the model).
BASELINES = ("none",)


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


def _with_params(node, params: Dict[str, np.ndarray], shape):
    new = copy.copy(node)
    for k, v in params.items():
        old = getattr(node, k, None)
        dtype = np.asarray(old).dtype if old is not None and np.asarray(old).dtype.kind == "f" else np.float64
        setattr(new, k, np.asarray(v, dtype=np.float64).reshape(shape).astype(dtype))
    return new


def _scale_biases(nodes, program, rho: float) -> None:
    """A bias added every step is a constant input *count* per bin: at dt_T it becomes rho b.

    The count-aware methods (integral, exact, euler) treat every input as counts summed per bin,
    so a linear layer's bias that drives neurons is scaled like a constant-rate input. The
    ``tau`` reference and the ``none`` baseline keep it (that is what the framework would do).
    """
    def drives_neuron(name, seen=()):
        for s in program.topo.succs[name]:
            op = program.ops[s]
            if op.kind == "neuron" or (op.kind == "linear" and s not in seen and drives_neuron(s, seen + (name,))):
                return True
        return False

    for name, op in program.ops.items():
        if op.kind == "linear" and op.type in ("Affine", "Conv1d", "Conv2d") and drives_neuron(name):
            node = copy.copy(nodes[name])
            if getattr(node, "bias", None) is not None:
                b = np.asarray(node.bias)
                node.bias = (b.astype(np.float64) * rho).astype(b.dtype)
                nodes[name] = node


# --------------------------------------------------------------------------- the pass
def retime(graph, dt_target: float, method: str, source: Discretization | None = None):
    """A new graph adapted from its discretization's dt to ``dt_target`` with ``method``."""
    if method not in METHODS + BASELINES:
        raise NirDeployError(f"unknown retiming method {method!r}; choose one of {', '.join(METHODS + BASELINES)}")
    if not np.isfinite(dt_target) or dt_target <= 0:
        raise NirDeployError(f"the target dt must be a positive number of seconds, got {dt_target!r}")
    meta = graph_metadata(graph)
    disc = source or discretization_of(graph)
    rho = float(dt_target) / disc.dt
    program = lower(graph, disc)
    overrides = dict(meta.get("ssm") or {})
    nodes = dict(graph.nodes)
    new_overrides: Dict[str, Dict[str, np.ndarray]] = {}
    target = disc.replace(dt=float(dt_target))
    for op in program.neurons():
        name, node, shape = op.name, op.node, op.in_shape
        ssm = op.ssm
        conv = disc.convention(name)
        if method in ("tau", "exact"):
            if name in overrides:
                raise NirDeployError(
                    f"node {name!r} carries adapted matrices from an earlier integral/euler retiming; "
                    f"the {method} method works on time constants: retime the original graph instead"
                )
            if method == "exact" and conv == "current" and rho != 1.0:
                key = "w_in" if node_type(node) in ("CubaLI", "CubaLIF") else "r"
                val = np.asarray(getattr(node, key) if getattr(node, key, None) is not None else 1.0, dtype=np.float64)
                nodes[name] = _with_params(node, {key: np.broadcast_to(val, shape) / rho}, shape)
            continue
        if rho == 1.0:
            if name in overrides:
                new_overrides[name] = overrides[name]
            continue
        if method == "integral":
            A, B, c = integral_matrices(ssm.A, ssm.B, ssm.c, rho)
        elif method == "none":
            A, B, c = ssm.A.copy(), ssm.B.copy(), ssm.c.copy()
        else:
            A, B, c = euler_matrices(ssm.A, ssm.B, ssm.c, rho, name)
        kind = node_type(node)
        params = fit_params(kind, A, B, c, target.dt, disc.scheme, conv)
        finite = all(np.all(np.isfinite(v)) for v in params.values())
        positive = all(np.all(params[k] > 0) for k in ("tau", "tau_syn", "tau_mem") if k in params)
        exact = False
        if finite and positive:
            fitted = _with_params(node, params, shape)
            Ac, Bc, cc = continuous_ssm(fitted, shape, name)
            A2, B2, c2 = discretize(Ac, Bc, cc, target.dt, disc.scheme, conv)
            scale = max(1.0, float(np.max(np.abs(A))), float(np.max(np.abs(B))), float(np.max(np.abs(c))))
            err = max(float(np.max(np.abs(A2 - A))), float(np.max(np.abs(B2 - B))), float(np.max(np.abs(c2 - c))))
            exact = err <= 1e-12 * scale  # else keep the exact matrices: fitted parameters would drift
            nodes[name] = fitted
        if not exact:
            new_overrides[name] = {"A": A, "B": B, "c": c}
    if method in ("integral", "exact", "euler") and rho != 1.0:
        _scale_biases(nodes, program, rho)
    new_meta = dict(meta)
    new_meta.update(target.to_metadata())
    history = dict(meta.get("retime") or {})
    new_meta["retime"] = {
        "method": method,
        "source_dt": disc.dt,
        "rho": rho,
        "trained_dt": float(history.get("trained_dt", disc.dt)),
    }
    if new_overrides:
        new_meta["ssm"] = new_overrides
    else:
        new_meta.pop("ssm", None)
    return make_graph(nodes, graph.edges, new_meta)
