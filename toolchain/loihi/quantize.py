"""Quantization pass: a lowered program -> Loihi fixed-point parameters for every Lava process.

The network is first planned exactly as for the Lava floating-point backend
(:func:`toolchain.loihi.plan.plan_network`: CUBA forms from ``toolchain/dynamics/cuba.py``, one LIF
process per distinct (du, dv), thresholds folded into the incoming weights, one Dense/Conv per
neuron-to-neuron connection, relays, gates). This pass turns every float process parameter into
the integers Lava's bit-accurate models (tags ``fixed_pt`` / ``bit_accurate_loihi``) compute with.

Arithmetic being targeted (lava-nc 0.10.0; file names relative to ``site-packages/lava``)::

    Dense  (proc/dense/models.py, utils/weightutils.py)
        weights: 8-bit; mixed-sign matrices are clipped to [-256, 255] and their last bit is
        truncated (even values), i.e. an 8-bit signed mantissa m in [-128, 127] times 2
        a = (sum_j w_ij s_j) << weight_exp   (>> -weight_exp for negative exponents: floor)
        sent as int32; graded inputs (num_message_bits > 0) accumulate in int32
    Conv   (proc/conv/models.py: PyConvModelFixed)
        a = sum of w * s, wrapped to 24 bits (signed_clamp); weight_exp is ignored
    LIF    (proc/lif/models.py: AbstractPyLifModelFixed, PyLifModelBitAcc)
        u = sign(P) (|P| >> 12) + (a_in << 6),  P = u (4096 - (du + 1))    u wraps at 24 bits
        v = sign(Q) (|Q| >> 12) + u + (bias_mant << bias_exp),  Q = v (4096 - dv)
                                                   v saturates at +-(2^23 - 1)
        spike where v > (vth << 6); v <- 0 where it spiked
        du, dv: 12-bit decays (du + 1 up to 4096; du = -1 gives no current decay),
        bias_mant: 13-bit signed, bias_exp: 3-bit (0..7), vth: 17-bit unsigned
    netx   (lib/dl/netx/hdf5.py, lib/dl/netx/utils.py)
        du = iDecay - 1, dv = vDecay, vth = vThMant, bias_exp = 6 for every layer, integer
        weights in [-256, 254] with no exponent (optimize_weight_bits shifts them and undoes the
        shift with weight_exp, so the effective exponent is 0)

Per Lava LIF process (a *group*) the pass picks one scale ``K``: Lava float units -> integer
state units, ``u_int ~ K U``, ``v_int ~ K V``. Then

    weight   w = 2 round(K W / (128 2^e))     (even, |w| <= 254; e: the connection's exponent)
    vth      vth_mant = round(K vth / 64)
    bias     bias_mant = round(K b / 2^bias_exp)
    decays   iDecay = round(du 4096)  (Lava du = iDecay - 1),  dv = round(dv 4096)

``K`` is the largest value that keeps every incoming weight mantissa within 254 with exponent 0
(the netx convention: the largest weight of a layer uses the whole 8-bit range), the threshold
mantissa at most 2^15 (a quarter of the 24-bit range; 2^14 for gated recurrent sources), and the
bias mantissa within 13 bits. With calibration inputs (and a ``measure``: the emulator) the pass also runs them and
lowers ``K`` of every group whose u or v came within a factor 2 of the 24-bit range.

Scale hints: a graph whose metadata has ``quantization_hint = {"source": ..., "scales": {node: K}}``
(``nirdeploy import-netx`` writes one: the scale of the integers the graph was read from) gets that
``K`` for the node's group instead of the one chosen above, and its weights are rounded to the
nearest integer (not to even values) within netx's [-256, 254], so that quantizing the imported
graph gives back the file's integers. A hint is used only where it gives exact integers (weights,
threshold, bias within 1e-6 of an integer: the file's, or a retime that kept them integers) that
fit (weights within [-256, 254], threshold mantissa within 17 bits, bias mantissa within 13 bits);
a group where they do not (e.g. after a retime that scaled the weights by a factor they do not
divide by) gets the usual ``K``, which keeps the most precision, and its report says why
(``limit``). The hint also overrides the headroom limits (threshold at a quarter of the range,
calibration), which the original integers did not follow either.

Profiles: ``"netx"`` (default; what ``nirdeploy deploy`` writes) uses weight exponent 0 and bias
exponent 6 everywhere. ``"loihi"`` additionally gives Dense connections a negative weight exponent
where the layer's ``K`` is below what their weights could use (more mantissa bits, the sum is
shifted right instead) and picks the smallest bias exponent that fits the biases.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional

import numpy as np

from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.loihi.bits import (
    BIAS_EXP_MAX,
    BIAS_MANT_MAX,
    CALIB_FILL,
    EXACT_VTH_MIN,
    NETX_BIAS_EXP,
    PROFILES,
    STATE_MAX,
    VTH_MANT_LIMIT,
    VTH_MANT_LIMIT_GATED,
    VTH_MANT_MAX,
    VTH_MANT_TARGET,
    WEIGHT_EXP_MAX,
    WEIGHT_EXP_MIN,
    WEIGHT_MANT_MAX,
)
from toolchain.loihi.fixed import FixedConn, FixedGroup, FixedNetwork, _round, decay_int, quantize_weights
from toolchain.loihi.plan import check_integer_inputs, plan_network
from toolchain.loihi.report import build_report

#: ``measure(fx, x) -> {group key: {"max_abs_u", "max_abs_v", ...}}``: runs a fixed network on
#: integer inputs and reports the states each group reached (``simulators.emulator.state_stats``)
Measure = Callable[[FixedNetwork, np.ndarray], Dict[str, dict]]


# --------------------------------------------------------------------------- the pass
def fold_pooling_program(program):
    """``program`` with pooling folded into the following linear layer where that is exact.

    Pooling is linear and netx has no pool layer (``toolchain/passes/fold_pooling.py``); folding
    it here makes the fixed-point backends compute what ``nirdeploy deploy`` writes, and lets a
    pool -> conv pair run as one Lava Conv instead of a dense matrix.
    """
    from toolchain.ir.nodes import POOL_TYPES
    from toolchain.passes.pipelines import run_pipeline
    from toolchain.program import lower

    if not any(op.type in POOL_TYPES for op in program.ops.values()):
        return program
    folded = run_pipeline(program.graph, "deploy")
    if folded is program.graph:
        return program
    return lower(folded, program.disc)


def quantize(
    program,
    calib_inputs=None,
    profile: str = "netx",
    measure: Optional[Measure] = None,
    max_calib_rounds: int = 4,
) -> FixedNetwork:
    """Loihi fixed-point parameters for ``program`` (see the module docstring).

    ``calib_inputs`` [samples, steps, *input_shape] (integer counts) with ``measure`` (a function
    that runs a fixed network and reports the states reached, e.g.
    ``simulators.emulator.state_stats``; ``simulators.emulator.calibrated_quantize`` passes it):
    lower ``K`` where states come close to the 24-bit range and report what they reached.
    """
    if profile not in PROFILES:
        raise NirDeployError(f"unknown quantization profile {profile!r}; choose one of {', '.join(PROFILES)}")
    program = fold_pooling_program(program)
    plan = plan_network(program, 1, 1)
    state_limit: Dict[str, float] = {}
    x = None
    if calib_inputs is not None:
        if measure is None:
            raise NirDeployError("calibration inputs need a measure (simulators.emulator.calibrated_quantize)")
        x = check_integer_inputs(program, calib_inputs)
    x_max = max(1.0, float(np.max(np.abs(x)))) if x is not None and x.size else 1.0
    fx = _quantize_plan(program, plan, profile, state_limit, x_max, x is not None)
    if x is not None:
        for _ in range(max_calib_rounds):
            stats = measure(fx, x)
            changed = False
            for key, st in stats.items():
                g = fx.groups[key]
                peak = max(st["max_abs_u"], st["max_abs_v"])
                if g.role == "neuron" and g.limit != "scale hint" and peak > CALIB_FILL * STATE_MAX:
                    state_limit[key] = g.scale * CALIB_FILL * STATE_MAX / peak * 0.95
                    changed = True
            if not changed:
                break
            fx = _quantize_plan(program, plan, profile, state_limit, x_max, x is not None)
        fx.report = build_report(fx, stats=measure(fx, x), x=x)
    else:
        fx.report = build_report(fx)
    return fx


def scale_hints(program) -> Dict[str, float]:
    """``{node: K}`` from the graph's metadata ``quantization_hint`` (see the module docstring)."""
    hint = (getattr(program, "metadata", None) or {}).get("quantization_hint") or {}
    scales = hint.get("scales") if isinstance(hint, dict) else None
    if not isinstance(scales, dict):
        return {}
    out = {}
    for node, K in scales.items():
        try:
            K = float(K)
        except (TypeError, ValueError):
            raise NirDeployError(f"metadata quantization_hint: the scale of node {node!r} is not a number ({K!r})") from None
        if not np.isfinite(K) or K <= 0:
            raise NirDeployError(f"metadata quantization_hint: the scale of node {node!r} must be positive, got {K!r}")
        out[str(node)] = K
    return out


def _off_integer(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a - np.rint(a)))) if a.size else 0.0


def _hint_fits(g, incoming, K: float, profile: str) -> str:
    """'' when scale ``K`` gives group ``g`` exact integers (weights, threshold, bias: the integers the
    hint was recorded from, or a retime that kept them integers) within the hard limits, else what
    does not fit. Inexact values fall back to the usual K, which keeps the most precision (a weight
    of 0.5 units at the hinted scale would round to 0)."""
    if profile != "netx":
        return "the hint is for the netx profile"
    for c in incoming:
        if c.weights.size:
            w = np.asarray(c.weights, dtype=np.float64) * (K / 64.0)
            if _off_integer(w) > 1e-6:
                return f"weights of {c.key!r} are not integers at the hinted scale"
            if np.rint(w).max() > WEIGHT_MANT_MAX or np.rint(w).min() < -(WEIGHT_MANT_MAX + 2):
                return f"weights of {c.key!r} beyond [-256, 254] at the hinted scale"
    if g.spiking and g.vth > 0:
        if _off_integer(K * g.vth / 64.0) > 1e-6:
            return "threshold not an integer at the hinted scale"
        if np.rint(K * g.vth / 64.0) > VTH_MANT_MAX:
            return "threshold beyond 17 bits at the hinted scale"
    if g.bias.size:
        b = np.asarray(g.bias, dtype=np.float64) * K / 2.0**NETX_BIAS_EXP
        if _off_integer(b) > 1e-6:
            return "bias not an integer at the hinted scale"
        if np.max(np.abs(np.rint(b))) > BIAS_MANT_MAX:
            return "bias beyond 13 bits at the hinted scale"
    return ""


def _quantize_plan(
    program, plan, profile: str, state_limit: Dict[str, float], x_max: float = 1.0, calibrated: bool = False
) -> FixedNetwork:
    hints = scale_hints(program)
    hinted = set()  # groups quantized at their hinted scale
    groups: Dict[str, FixedGroup] = {}
    conns: List[FixedConn] = []
    by_dst: Dict[str, list] = {}
    for c in plan.conns:
        by_dst.setdefault(c.dst, []).append(c)
    # a .net has no separate bias unit: it becomes an extra neuron of the layer one step in front
    # (exporters/nir_to_netx.py), which spikes every step only if bias_mant > vth_mant there
    unit_depths = {
        plan.groups[c.src].depth
        for c in plan.conns
        if plan.groups.get(c.src) is not None and plan.groups[c.src].role == "bias"
        and not plan.groups[c.src].gate and plan.groups[c.dst].spiking  # a readout's constant is added on the host
    }
    hosts = set()
    if profile == "netx":
        hosts = {k for k, g in plan.groups.items() if g.role == "neuron" and g.spiking and g.depth in unit_depths}
    for key, g in plan.groups.items():
        what = f"node {g.node!r} ({program.ops[g.node].type})"
        incoming = by_dst.get(key, [])
        if g.role == "relay":
            K, limit = 128.0, "relay"  # identity weight 2, threshold 1: repeats a binary spike exactly
        elif g.role == "bias":
            K, limit = 128.0, "bias unit"  # bias 128 > threshold 64: one spike every step
        else:
            limits: Dict[str, float] = {}
            wmax = [float(np.max(np.abs(c.weights))) if c.weights.size else 0.0 for c in incoming]
            w_all = max(wmax, default=0.0)
            if w_all > 0:
                limits["weights"] = 64.0 * WEIGHT_MANT_MAX / w_all
            if g.spiking:
                if g.vth < 0:
                    raise UnsupportedNodeError(
                        f"{what}: its threshold lies {-g.vth:.6g} below its reset value; Loihi's threshold "
                        f"mantissa is unsigned; lava-float and the reference run the graph as it is"
                    )
                if g.vth > 0:
                    lim = VTH_MANT_LIMIT_GATED if g.gate else VTH_MANT_LIMIT
                    limits["threshold"] = 64.0 * lim / g.vth
                    if key in hosts:
                        limits["bias unit host"] = 64.0 * (BIAS_MANT_MAX - 1) / g.vth
            bmax = float(np.max(np.abs(g.bias))) if g.bias.size else 0.0
            if bmax > 0:
                bexp = NETX_BIAS_EXP if profile == "netx" else BIAS_EXP_MAX
                limits["bias"] = BIAS_MANT_MAX * 2.0**bexp / bmax
            if key in state_limit:
                limits["state"] = state_limit[key]
            smax = float(np.max(np.abs(g.v_sub))) if g.v_sub is not None and g.v_sub.size else 0.0
            if smax > 0:  # the subtracted amount must fit the 24-bit state (v - v_sub stays above -2^23)
                limits["subtract"] = (STATE_MAX - 1) / smax
            if limits:
                limit = min(limits, key=limits.get)
                K = float(limits[limit])
            else:
                K, limit = 64.0 * WEIGHT_MANT_MAX, "none"
            if profile == "loihi" and g.spiking and g.vth > 0 and K * g.vth / 64.0 < VTH_MANT_TARGET:
                # weights much larger than the threshold: give the Dense inputs positive exponents
                # so that the threshold mantissa gets VTH_MANT_TARGET levels (netx cannot do this)
                up = {k: v for k, v in limits.items() if k != "weights"}
                up["threshold_target"] = 64.0 * VTH_MANT_TARGET / g.vth
                convs = [w for w, c in zip(wmax, incoming) if c.kind == "conv"]
                if max(convs, default=0.0) > 0:  # Lava's fixed-point Conv has no weight exponent
                    up["weights"] = 64.0 * WEIGHT_MANT_MAX / max(convs)
                if w_all > 0:
                    up["weight_exp"] = 64.0 * WEIGHT_MANT_MAX * 2.0**WEIGHT_EXP_MAX / w_all
                if not calibrated and any(c.graded for c in incoming):  # input magnitudes unknown
                    up["weights"] = min(up.get("weights", np.inf), limits.get("weights", np.inf))
                step = 0.0  # largest per-step input (Lava float units): every source active, inputs at x_max
                for c in incoming:
                    rs = np.abs(c.weights).reshape(c.weights.shape[0], -1).sum(axis=1).max(initial=0.0)
                    step += float(rs) * (x_max if c.graded else 1.0)
                if step > 0:  # every input spiking at once must not take u beyond a quarter of the range
                    up["input_step"] = STATE_MAX / 4 / step
                K2_limit = min(up, key=up.get)
                if up[K2_limit] > K:
                    K, limit = float(up[K2_limit]), K2_limit
        if g.role == "neuron" and g.node in hints:
            why = _hint_fits(g, incoming, hints[g.node], profile)
            if why:
                limit = f"{limit} (scale hint not used: {why})"
            else:
                K, limit = hints[g.node], "scale hint"
                hinted.add(key)
        if key not in hinted and g.role == "neuron" and g.spiking and g.vth > 0 and K * g.vth / 64.0 >= EXACT_VTH_MIN:
            # lower K a little so that the threshold is an exact mantissa: v and the threshold then
            # share one scale exactly, and the weights lose at most 1/EXACT_VTH_MIN of their range
            K = 64.0 * math.floor(K * g.vth / 64.0 + 1e-9) / g.vth
        du = decay_int(g.du, what, current=True)
        dv = decay_int(g.dv, what, current=False)
        if g.spiking:
            vth = int(np.clip(np.rint(K * g.vth / 64.0), 0, VTH_MANT_MAX))
        else:
            vth = VTH_MANT_MAX
        b = np.asarray(g.bias, dtype=np.float64) * K
        if profile == "netx":
            bexp = NETX_BIAS_EXP
        else:
            bm = float(np.max(np.abs(b))) if b.size else 0.0
            bexp = 0
            while bexp < BIAS_EXP_MAX and bm / 2.0**bexp > BIAS_MANT_MAX:
                bexp += 1
        bias_mant = np.clip(_round(b / 2.0**bexp), -BIAS_MANT_MAX, BIAS_MANT_MAX)
        v_sub = None if g.v_sub is None else _quantize_subtract(g, K, vth)
        v_keep = None if getattr(g, "v_keep", None) is None else quantize_keep(g.v_keep)
        groups[key] = FixedGroup(
            key=key,
            node=g.node,
            role=g.role,
            idx=np.asarray(g.idx),
            depth=int(g.depth),
            spiking=bool(g.spiking),
            du=du,
            dv=dv,
            vth=vth,
            bias_mant=bias_mant,
            bias_exp=int(bexp),
            scale=K,
            v_scale=np.asarray(g.v_scale, dtype=np.float64),
            v_offset=np.asarray(g.v_offset, dtype=np.float64),
            shape3=g.shape3,
            gate=int(g.gate),
            limit=limit,
            v_sub=v_sub,
            v_keep=v_keep,
            refractory=int(getattr(g, "refractory", 0)),
            reset_guard=bool(getattr(g, "reset_guard", False)),
        )
    for c in plan.conns:
        K = groups[c.dst].scale
        W = np.asarray(c.weights, dtype=np.float64)
        e = 0
        if profile == "loihi" and c.kind == "dense" and groups[c.dst].role == "neuron" and W.size:
            wm = float(np.max(np.abs(W)))
            if wm > 0:
                need = K * wm / (64.0 * WEIGHT_MANT_MAX)  # 2^e that fills the mantissa range
                e = int(np.clip(math.ceil(math.log2(need) - 1e-12), WEIGHT_EXP_MIN, WEIGHT_EXP_MAX))
        conns.append(
            FixedConn(
                key=c.key,
                src=c.src,
                dst=c.dst,
                kind=c.kind,
                graded=bool(c.graded),
                weights=_hinted_weights(W, K) if c.dst in hinted else quantize_weights(W, K, e),
                weight_exp=e,
                conv=dict(c.conv),
                w_float=W,
            )
        )
    return FixedNetwork(program=program, plan=plan, groups=groups, conns=conns, profile=profile)


#: a partial reset's kept fraction in integers: v <- ((keep v) >> KEEP_BITS) - v_sub
KEEP_BITS = 12


def quantize_keep(keep) -> np.ndarray:
    """The kept fractions of a partial reset as integers of 1 / 2^12 (round to nearest, in [0, 4096])."""
    k = np.asarray(keep, dtype=np.float64)
    return np.clip(_round(k * 2.0**KEEP_BITS), 0, 2**KEEP_BITS).astype(np.int64)


def _hinted_weights(W: np.ndarray, K: float) -> np.ndarray:
    """Integer weights round(K W / 64) in netx's range [-256, 254] (a hinted group, exponent 0)."""
    return np.clip(_round(np.asarray(W, dtype=np.float64) * (K / 64.0)), -(WEIGHT_MANT_MAX + 2), WEIGHT_MANT_MAX)


def _quantize_subtract(g, K: float, vth_mant: int) -> np.ndarray:
    """Integer subtraction amounts (24-bit state units) of plan group ``g`` at scale ``K``:
    round(K v_sub), and exactly ``vth_mant << 6`` where the amount is the group's threshold (the
    default subtraction), so that v and the subtraction share the threshold's exact scale."""
    from toolchain.dynamics.cuba import _close
    from toolchain.loihi.bits import VTH_SHIFT

    amt = np.asarray(g.v_sub, dtype=np.float64)
    q = _round(K * amt)
    if g.spiking and np.isfinite(g.vth):
        q = np.where(_close(amt, g.vth), np.int64(vth_mant) << VTH_SHIFT, q)
    return np.clip(q, -(STATE_MAX - 1), STATE_MAX - 1).astype(np.int64)
