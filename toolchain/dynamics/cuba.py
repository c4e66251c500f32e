"""The hardware (CUBA) form of a discrete neuron layer: what Lava's / Loihi's LIF can run.

Lava's LIF process (``lava/proc/lif/process.py``) computes, per neuron and step::

    u[k] = (1 - du) u[k-1] + a_in[k]          a_in: the summed synaptic input
    v[k] = (1 - dv) v[k-1] + u[k] + bias
    spike where v[k] > vth;  v <- 0 where it spiked

with ``du``, ``dv`` and ``vth`` scalars per Lava process and ``bias`` per neuron. A layer of
:class:`~toolchain.dynamics.discretize.NeuronSSM` neurons maps onto it as follows (per neuron).

One-state neurons (LI, LIF, IF, I): ``v[k] = a v[k-1] + B u[k] + c``. With ``du = 1`` the
current holds only this step's input, so ``dv = 1 - a``, the incoming weights are scaled by
``B`` and ``bias = c + B b_in`` (``b_in``: the constant part of the input, e.g. the bias of
an Affine or Conv layer in front).

Two-state neurons (CubaLI, CubaLIF) with ``A = [[a11, 0], [a21, a22]]`` and ``B = [b1, b2]``::

    i[k] = a11 i[k-1] + b1 u[k] + c1
    v[k] = a21 i[k-1] + a22 v[k-1] + b2 u[k] + c2

Lava's current is a scaled copy of ``i``: ``U = gamma i``, ``V = beta v``. Matching
``V[k] = a22 V[k-1] + a11 U[k-1] + s u[k] + bias`` term by term needs
``gamma a11 = beta a21`` and ``s = gamma b1 = beta b2``; both hold (with ``beta = 1``,
``gamma = a21 / a11``, ``s = b2``) iff ``a21 b1 == a11 b2`` -- the *CUBA tie*. It holds for the
euler scheme (norse's LIFCell: ``A = [[a_s, 0], [g a_s, a_m]]``, ``B = [1, g]`` up to dt) and
fails for the exact scheme (the input then reaches ``v`` within the step with a gain that is
not the current's). ``beta`` is a common factor of every (gamma, beta) solution, so thresholds
never need to move: ``beta = 1`` whenever an exact mapping exists. When ``a11 = 0`` the current
is memoryless (``du = 1``) and exact iff the ``i[k-1]`` term vanishes.

Constants. Lava's LIF has a bias only on ``v``. A constant drive of a remembered current
(``c1 + b1 b_in``: the bias of a Linear or a folded BatchNorm in front of a CubaLIF) enters Lava's
current as ``U += u_bias = gamma (c1 + b1 b_in)`` every step; ``u_bias`` is delivered by a *bias
unit* (``toolchain/loihi/plan.py``: an always-on neuron whose outgoing weights are ``u_bias``).
Then ``V[k] = a22 V[k-1] + U[k] + bias`` receives ``gamma c1`` through ``U[k]`` within the same
step, whereas the model's ``v[k]`` receives the current's own constant ``c1_own = c[0]`` only
through ``i[k-1]``; so ``bias = c2_own - gamma c1_own`` (``c2_own = c[1]``) makes every term
equal. One-state neurons and memoryless currents keep the constant on the voltage bias.

``v_reset != 0`` (and, for non-spiking layers, a nonzero initial ``v``) is expressed by shifting
``v' = v - v_off``: ``bias' = bias - (1 - a22) v_off``, ``vth' = vth - v_off``; Lava's reset to 0
is then a reset to ``v_off``. One Lava process has one ``vth``: :func:`split_groups` gives one
group per distinct ``(du, dv)`` and folds per-neuron thresholds into the input scale and bias.

Reset by subtraction (``ssm.v_subtract``): Lava's LIF has none, so the form carries ``v_sub``
(the amount in Lava units; a subtraction is a difference of voltages, so the ``v_offset`` shift
leaves it unchanged, and :func:`split_groups` scales it with the threshold normalization like
``scale`` and ``bias``) and the backends run ``simulators/lava_subtract.py``'s
``LIFSubtractReset``. Such a layer has no reset value, so ``v_offset`` is its initial v (where
Lava's window reset puts it) and ``vth`` is measured from there.

Refused (:class:`UnsupportedNodeError`, naming the node): an initial ``v`` other than
``v_reset`` on a spiking layer that resets to a value, a nonzero initial synaptic current, and a
constant into a memoryless current that reaches ``v`` a step later. Two-state matrices that
break the CUBA tie are projected (:func:`project_cuba`; :class:`CubaForm` carries the ``error``,
0.0 for exact mappings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from toolchain.dynamics.discretize import NeuronSSM
from toolchain.errors import NirDeployError, UnsupportedNodeError

#: relative tolerance under which two floating-point coefficients count as equal
TOL = 1e-9


@dataclass
class CubaForm:
    """Per-neuron parameters of Lava's LIF realizing one neuron layer (flat NIR order)."""

    node: str
    kind: str
    du: np.ndarray  # [N] current decay, 1 - a11 (1 for one-state neurons: no current memory)
    dv: np.ndarray  # [N] voltage decay, 1 - a22
    scale: np.ndarray  # [N] multiplies the incoming weights row-wise
    bias: np.ndarray  # [N] added to v every step (Lava units)
    vth: Optional[np.ndarray]  # [N] threshold in Lava units; None: non-spiking layer
    v_offset: np.ndarray  # [N] v_nir = v_lava / v_scale + v_offset
    v_scale: np.ndarray  # [N] beta
    u_scale: np.ndarray  # [N] gamma: u_lava = gamma i (two-state); 0 for one-state neurons
    u_bias: Optional[np.ndarray] = None  # [N] constant added to Lava's u every step (a bias unit); None: none
    exact: bool = True
    error: float = 0.0  # relative error of the projection onto the CUBA form (0.0 when exact)
    notes: List[str] = field(default_factory=list)
    #: [N] reset by subtraction: v_lava -= v_sub on a spike (Lava units, unaffected by the v_offset
    #: shift); None: Lava's reset to 0 (v_reset)
    v_sub: Optional[np.ndarray] = None
    #: [N] partial reset: v_lava <- v_keep v_lava - v_sub on a spike; None: 1 (pure subtraction)
    v_keep: Optional[np.ndarray] = None
    refractory: int = 0  # steps v is held at its reset value after a spike (NeuronSSM.refractory)
    reset_guard: bool = False  # snnTorch's reset_delay=False decision (NeuronSSM.reset_guard)

    @property
    def n(self) -> int:
        return int(self.du.size)

    @property
    def spiking(self) -> bool:
        return self.vth is not None


@dataclass
class CubaGroup:
    """Neurons of one layer that share (du, dv, vth): one Lava LIF process."""

    idx: np.ndarray  # NIR flat indices of the neurons, in the process's order
    du: float
    dv: float
    vth: float  # +inf for non-spiking layers
    scale: np.ndarray  # [n] incoming weight scale (threshold normalization folded in)
    bias: np.ndarray  # [n]
    v_scale: np.ndarray  # [n] v_nir = v_lava / v_scale + v_offset
    v_offset: np.ndarray  # [n]
    u_bias: Optional[np.ndarray] = None  # [n] constant into u every step (a bias unit), scale folded in
    v_sub: Optional[np.ndarray] = None  # [n] reset by subtraction (Lava units, normalization folded in)
    v_keep: Optional[np.ndarray] = None  # [n] partial reset: v <- v_keep v - v_sub; None: 1
    refractory: int = 0  # steps v is held at 0 (its reset value) after a spike
    reset_guard: bool = False  # v > vth after the subtraction: the next decision is against vth + v_sub

    @property
    def n(self) -> int:
        return int(self.idx.size)

    @property
    def spiking(self) -> bool:
        return bool(np.isfinite(self.vth))


def _close(a, b, tol=TOL) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) <= tol * np.maximum(np.abs(a), np.abs(b)) + 1e-300


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(~mask)[0])


def impulse_response(a11, a21, a22, b1, b2, K: int) -> np.ndarray:
    """v's response [N, K] of the two-state SSM to a unit input at step 0 (zero state)."""
    k = np.arange(K)[None, :]
    a11, a21, a22, b1, b2 = (np.asarray(x, dtype=np.float64)[:, None] for x in (a11, a21, a22, b1, b2))
    same = np.isclose(a11, a22, rtol=1e-12, atol=0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dd = np.where(same, k * np.power(a22, np.maximum(k - 1, 0)), (a11 ** k - a22 ** k) / np.where(same, 1.0, a11 - a22))
    return a22 ** k * b2 + a21 * b1 * dd


def _cuba_response(a, m, K: int) -> np.ndarray:
    """Lava's CUBA v-response to a unit a_in at step 0: sum_j m^(k-j) a^j = (a^(k+1) - m^(k+1))/(a - m)."""
    k = np.arange(K, dtype=np.float64)
    if abs(a - m) < 1e-12:
        return (k + 1) * m ** k
    return (a ** (k + 1) - m ** (k + 1)) / (a - m)


def project_cuba(a11, a21, a22, b1, b2):
    """Least-squares projection of two-state dynamics onto Lava's CUBA form, per neuron.

    The voltage decay is kept (dv = 1 - a22, so the free and reset dynamics are unchanged);
    the current decay ``a = 1 - du`` and the input scale ``s`` minimize the squared error
    between the impulse responses of v, ``sum_k (s f_a[k] - h[k])^2`` over a horizon in which
    both modes decay below 1e-6 (``s`` in closed form, ``a`` by a bounded 1-D search).
    Returns (du, scale, relative L2 error of the impulse response) per neuron.
    """
    from scipy.optimize import minimize_scalar

    a11, a21, a22, b1, b2 = (np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in (a11, a21, a22, b1, b2))
    rows = np.stack([a11, a21, a22, b1, b2], axis=1)
    uniq, inv = np.unique(rows, axis=0, return_inverse=True)
    du_u, s_u, err_u = np.zeros(len(uniq)), np.zeros(len(uniq)), np.zeros(len(uniq))
    for r, (p11, p21, p22, q1, q2) in enumerate(uniq):
        slow = max(p11, p22, 1e-12)
        K = int(np.clip(np.ceil(np.log(1e-6) / np.log(slow)) if slow < 1 else 5000, 16, 5000))
        h = impulse_response([p11], [p21], [p22], [q1], [q2], K)[0]
        hh = float(h @ h)
        if hh == 0:
            du_u[r], s_u[r], err_u[r] = 1.0 - p11, 0.0, 0.0
            continue

        def fit(a):
            f = _cuba_response(a, p22, K)
            s_ = float(f @ h) / float(f @ f)
            res = s_ * f - h
            return float(res @ res), s_

        best = minimize_scalar(lambda a: fit(a)[0], bounds=(0.0, 1.0 - 1e-9), method="bounded", options={"xatol": 1e-10})
        cands = [best.x, p11, 0.0]
        errs = [fit(a)[0] for a in cands]
        a_best = cands[int(np.argmin(errs))]
        e, s_ = fit(a_best)
        du_u[r], s_u[r], err_u[r] = 1.0 - a_best, s_, np.sqrt(e / hh)
    inv = inv.reshape(-1)
    return du_u[inv], s_u[inv], err_u[inv]


def cuba_form(
    ssm: NeuronSSM,
    node: str,
    input_bias: Optional[np.ndarray] = None,
    tol: float = TOL,
    project: bool = True,
) -> CubaForm:
    """Map neuron layer ``ssm`` (NIR node ``node``) onto Lava's LIF; see the module docstring.

    ``input_bias`` [N] is the constant part of the layer's input u (the bias of the Affine /
    Conv path in front, per neuron), or None. Two-state dynamics that break the CUBA tie (the
    exact scheme, or a retimed CubaLIF) are projected onto the CUBA form with
    :func:`project_cuba` when ``project`` is true (the result's ``error`` is the relative L2
    error of v's impulse response, worst neuron); otherwise, and for anything else that cannot
    be expressed, :class:`UnsupportedNodeError` is raised.
    """
    n = ssm.n
    kind = ssm.kind
    what = f"node {node!r} ({kind})"
    A = np.asarray(ssm.A, dtype=np.float64).reshape(n, ssm.n_states, ssm.n_states)
    B = np.asarray(ssm.B, dtype=np.float64).reshape(n, ssm.n_states)
    c = np.asarray(ssm.c, dtype=np.float64).reshape(n, ssm.n_states)
    x0 = np.asarray(ssm.x0, dtype=np.float64).reshape(n, ssm.n_states)
    b_in = np.zeros(n) if input_bias is None else np.broadcast_to(np.asarray(input_bias, dtype=np.float64), (n,))
    for nm, arr in (("A", A), ("B", B), ("c", c), ("initial state", x0), ("input bias", b_in)):
        if not np.all(np.isfinite(arr)):
            raise NirDeployError(f"{what}: its {nm} contains NaN or infinity")

    spiking = ssm.v_threshold is not None
    subtract = spiking and ssm.v_subtract is not None

    proj_error = 0.0
    u_bias = None
    if ssm.n_states == 1:
        a = A[:, 0, 0]
        du = np.ones(n)
        dv = 1.0 - a
        scale = B[:, 0].copy()
        bias = c[:, 0] + B[:, 0] * b_in
        a22 = a
        u_scale = np.zeros(n)
    elif ssm.n_states == 2:
        proj_error = 0.0
        a11, a12, a21, a22 = A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1]
        b1, b2 = B[:, 0], B[:, 1]
        if np.any(a12 != 0):
            raise UnsupportedNodeError(
                f"{what}: its state matrix is not lower triangular (the voltage feeds the current)"
            )
        c1 = c[:, 0] + b1 * b_in  # constant drive of the current
        c2 = c[:, 1] + b2 * b_in  # constant drive of the voltage
        i0 = x0[:, 0]
        leaky = a11 != 0
        gamma = np.where(leaky, a21 / np.where(leaky, a11, 1.0), 0.0)
        # CUBA tie: the input reaches v only through the current
        tie = np.where(leaky, _close(a21 * b1, a11 * b2, tol), _close(a21 * b1, 0.0, tol))
        projected = None
        if not np.all(tie) and project:
            projected = project_cuba(a11, a21, a22, b1, b2)
        elif not np.all(tie):
            k = _first_bad(tie)
            raise UnsupportedNodeError(
                f"{what}: its discrete form feeds the input to the voltage with gain b2={b2[k]:.6g}, but Lava's CUBA "
                f"neuron needs a21*b1/a11={a21[k] * b1[k] / a11[k] if a11[k] else 0.0:.6g} (the CUBA tie a21*b1 == "
                f"a11*b2 fails, e.g. for the exact scheme or a retimed CubaLIF); use the euler scheme"
            )
        # a memoryless current (a11 = 0) reaches v one step later through a21 i[k-1]: a constant
        # or an initial value there has no Lava counterpart
        pass_c1 = np.where(leaky, True, a21 * c1 == 0)
        if not np.all(pass_c1):
            k = _first_bad(pass_c1)
            raise UnsupportedNodeError(
                f"{what}: its synaptic current has no memory (a11 = 0) but a constant input of {c1[k]:.6g} that "
                f"reaches the voltage one step later, which Lava's LIF cannot delay; re-export the layer with a "
                f"nonzero synaptic time constant or without the bias in front"
            )
        pass_i0 = np.where(leaky, gamma * i0 == 0, a21 * i0 == 0)
        if not np.all(pass_i0):
            raise UnsupportedNodeError(
                f"{what}: it starts with a nonzero synaptic current, but Lava's LIF starts every sample at u = 0; "
                f"set the initial current to zero (nir CubaLIF: no initial state)"
            )
        du = 1.0 - a11
        dv = 1.0 - a22
        scale = b2.copy()
        u_scale = np.where(leaky, gamma, 0.0)
        # constants: into a remembered current through a bias unit (see the module docstring)
        bias = np.where(leaky, c[:, 1] - gamma * c[:, 0], c2)
        ub = np.where(leaky, gamma * c1, 0.0)
        proj_error = 0.0
        if projected is not None:
            p_du, p_scale, p_err = projected
            du = np.where(tie, du, p_du)
            scale = np.where(tie, scale, p_scale)
            a_p = 1.0 - du
            u_scale = np.where(tie, u_scale, np.where(a_p != 0, 1.0, 0.0))
            proj_error = float(np.max(np.where(tie, 0.0, p_err)))
            # the projection approximates the response to the input u, so a constant in u goes
            # through the same path (scaled like the input); the neuron's own constants stay on v
            ub = np.where(tie, ub, np.where(a_p != 0, p_scale * b_in, 0.0))
            bias = np.where(tie, bias, np.where(a_p != 0, c[:, 1], c[:, 1] + p_scale * b_in))
        if np.any(ub != 0):
            u_bias = ub
    else:  # pragma: no cover - no neuron type has more states
        raise UnsupportedNodeError(f"{what}: {ssm.n_states}-state neurons have no CUBA form")

    v0 = x0[:, -1]
    v_sub = None
    v_keep = None
    if subtract:  # no reset value: shift v so that it starts at 0 (where the window reset puts it)
        v_sub = np.broadcast_to(np.asarray(ssm.v_subtract, dtype=np.float64), (n,)).copy()
        v_off = v0.copy()
        if getattr(ssm, "v_keep", None) is not None:
            # v <- k v - s in NIR units is v' <- k v' - (s + (1 - k) v_off) for v' = v - v_off
            v_keep = np.broadcast_to(np.asarray(ssm.v_keep, dtype=np.float64), (n,)).copy()
            v_sub = v_sub + (1.0 - v_keep) * v_off
        vth = np.asarray(ssm.v_threshold, dtype=np.float64).reshape(n) - v_off
    elif spiking:
        v_reset = np.broadcast_to(np.asarray(ssm.v_reset, dtype=np.float64), (n,))
        if not np.all(v0 == v_reset):
            k = int(np.flatnonzero(v0 != v_reset)[0])
            raise UnsupportedNodeError(
                f"{what} starts at v={v0[k]:g} but resets to v_reset={v_reset[k]:g}; Lava's LIF starts every sample "
                f"where it resets (v_init 'v_reset' in the graph's metadata expresses that); the reference runs the graph "
                f"as it is"
            )
        v_off = v_reset.astype(np.float64).copy()
        vth = np.asarray(ssm.v_threshold, dtype=np.float64).reshape(n) - v_off
    else:
        v_off = v0.copy()  # a non-spiking layer never resets: shift v so that it starts at 0
        vth = None
    bias = bias - (1.0 - a22) * v_off
    return CubaForm(
        node=node,
        kind=kind,
        du=np.asarray(du, dtype=np.float64),
        dv=np.asarray(dv, dtype=np.float64),
        scale=np.asarray(scale, dtype=np.float64),
        bias=np.asarray(bias, dtype=np.float64),
        vth=vth,
        v_offset=v_off,
        v_scale=np.ones(n),
        v_sub=v_sub,
        v_keep=v_keep,
        refractory=int(getattr(ssm, "refractory", 0)) if spiking else 0,
        reset_guard=bool(getattr(ssm, "reset_guard", False)) and subtract,
        u_scale=np.asarray(u_scale, dtype=np.float64),
        u_bias=None if u_bias is None else np.asarray(u_bias, dtype=np.float64),
        exact=proj_error == 0.0,
        error=proj_error,
        notes=[] if proj_error == 0.0 else [
            f"projected onto the CUBA form: relative impulse-response error {proj_error:.3g} (worst neuron)"
        ],
    )


def split_groups(form: CubaForm) -> List[CubaGroup]:
    """Neurons with equal (du, dv) share one Lava process (Lava's decays are scalar).

    Within a spiking group differing thresholds are folded into the neuron's scale: ``v`` is
    multiplied by ``vth_ref / vth_n`` (the input scale and bias with it), which keeps every
    decision when all thresholds are positive; the most common threshold is kept as it is so
    that most neurons are not rescaled at all. Groups whose thresholds cannot be normalized
    (some <= 0) are split by threshold instead.
    """
    key = np.stack([form.du, form.dv], axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    groups: List[CubaGroup] = []
    for gi in range(uniq.shape[0]):
        idx = np.flatnonzero(inv == gi)
        du, dv = float(uniq[gi, 0]), float(uniq[gi, 1])
        if not form.spiking:
            groups.append(_group(form, idx, du, dv, np.inf, np.ones(idx.size)))
            continue
        th = form.vth[idx]
        vals, counts = np.unique(th, return_counts=True)
        if vals.size == 1:
            groups.append(_group(form, idx, du, dv, float(vals[0]), np.ones(idx.size)))
        elif np.all(th > 0):
            ref = float(vals[np.argmax(counts)])
            lam = np.where(th == ref, 1.0, ref / th)
            groups.append(_group(form, idx, du, dv, ref, lam))
        else:
            for v in vals:
                sub = idx[th == v]
                groups.append(_group(form, sub, du, dv, float(v), np.ones(sub.size)))
    return groups


def _group(form: CubaForm, idx, du, dv, vth, lam) -> CubaGroup:
    return CubaGroup(
        idx=idx,
        du=du,
        dv=dv,
        vth=vth,
        scale=form.scale[idx] * lam,
        bias=form.bias[idx] * lam,
        v_scale=form.v_scale[idx] * lam,
        v_offset=form.v_offset[idx].copy(),
        u_bias=None if form.u_bias is None else form.u_bias[idx] * lam,
        v_sub=None if form.v_sub is None else form.v_sub[idx] * lam,
        v_keep=None if form.v_keep is None else form.v_keep[idx].copy(),
        refractory=form.refractory,
        reset_guard=form.reset_guard,
    )


# --------------------------------------------------------------------------- numpy models
def simulate_cuba(groups: List[CubaGroup], n: int, u: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Lava's float LIF on input ``u`` [steps, n] (NIR order, before the input scale).

    Returns (v in the NIR model's units [steps, n], spikes [steps, n] or None).
    """
    u = np.asarray(u, dtype=np.float64)
    T = u.shape[0]
    v_out = np.zeros((T, n))
    z_out = np.zeros((T, n), dtype=bool)
    spiking = any(g.spiking for g in groups)
    for g in groups:
        U = np.zeros(g.n)
        V = np.zeros(g.n)
        ub = 0.0 if g.u_bias is None else g.u_bias
        held = np.zeros(g.n, dtype=bool)
        for k in range(T):
            U = U * (1 - g.du) + g.scale * u[k, g.idx] + ub
            V_old = V
            V = V * (1 - g.dv) + U + g.bias
            if g.refractory:
                V = np.where(held, 0.0, V)
            z = V > (g.vth + np.where(V_old > g.vth, g.v_sub, 0.0) if g.reset_guard else g.vth)
            held = z
            kept = V if g.v_keep is None else g.v_keep * V
            V = np.where(z, 0.0 if g.v_sub is None else kept - g.v_sub, V)
            v_out[k, g.idx] = V / g.v_scale + g.v_offset
            z_out[k, g.idx] = z
    return v_out, (z_out if spiking else None)


def simulate_ssm(ssm: NeuronSSM, u: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """The SSM itself on input ``u`` [steps, n] (the semantics of simulators/reference.py)."""
    u = np.asarray(u, dtype=np.float64)
    T, n = u.shape
    s = ssm.n_states
    x = np.array(ssm.x0, dtype=np.float64).reshape(n, s)
    v_out = np.zeros((T, n))
    z_out = np.zeros((T, n), dtype=bool)
    held = np.zeros(n, dtype=bool)
    for k in range(T):
        v_old = x[:, -1].copy()
        x = np.einsum("nij,nj->ni", ssm.A, x) + ssm.B * u[k][:, None] + ssm.c
        if ssm.v_threshold is not None:
            if getattr(ssm, "refractory", 0):
                x[:, -1] = np.where(held, ssm.v_reset, x[:, -1])
            th = ssm.v_threshold
            if getattr(ssm, "reset_guard", False):
                th = th + np.where(v_old > ssm.v_threshold, ssm.v_subtract, 0.0)
            z = x[:, -1] > th
            held = z
            if ssm.v_subtract is not None:
                kept = x[:, -1] if getattr(ssm, "v_keep", None) is None else ssm.v_keep * x[:, -1]
                x[:, -1] = np.where(z, kept - ssm.v_subtract, x[:, -1])
            else:
                x[:, -1] = np.where(z, ssm.v_reset, x[:, -1])
            z_out[k] = z
        v_out[k] = x[:, -1]
    return v_out, (z_out if ssm.v_threshold is not None else None)
