"""Quantization pass: a lowered program -> Loihi fixed-point parameters for every Lava process.

The network is first planned exactly as for the Lava floating-point backend
(:func:`simulators.lava_common.plan_network`: CUBA forms from ``toolchain/cuba.py``, one LIF
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
bias mantissa within 13 bits. With calibration inputs the pass also runs the emulator on them and
lowers ``K`` of every group whose u or v came within a factor 2 of the 24-bit range.

Profiles: ``"netx"`` (default; what ``nirdeploy deploy`` writes) uses weight exponent 0 and bias
exponent 6 everywhere. ``"loihi"`` additionally gives Dense connections a negative weight exponent
where the layer's ``K`` is below what their weights could use (more mantissa bits, the sum is
shifted right instead) and picks the smallest bias exponent that fits the biases.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import NirDeployError, UnsupportedNodeError

# --------------------------------------------------------------------------- Loihi / Lava bit widths
STATE_BITS = 24  # u, v (precision=24 in AbstractPyLifModelFixed)
STATE_MAX = 1 << (STATE_BITS - 1)  # u wraps beyond, v saturates at +-(STATE_MAX - 1)
DECAY_BITS = 12
DECAY_UNITY = 1 << DECAY_BITS  # 4096
ACT_SHIFT = 6  # a_in << 6
VTH_SHIFT = 6  # vth << 6
VTH_MANT_MAX = (1 << 17) - 1  # 17-bit unsigned threshold mantissa
BIAS_MANT_MAX = (1 << 12) - 1  # 13-bit signed bias mantissa (-4096 .. 4095; used symmetrically)
BIAS_EXP_MAX = 7  # 3-bit bias exponent
NETX_BIAS_EXP = 6  # lava/lib/dl/netx/hdf5.py: 'bias_exp': 6
WEIGHT_MANT_MAX = 254  # mixed sign: 8-bit signed mantissa times 2 (even), used symmetrically
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
#: threshold mantissa limit: a quarter of the state range keeps room for u and v above threshold
VTH_MANT_LIMIT = 1 << 15
#: K is lowered to make the threshold mantissa exact when it has at least this many levels
EXACT_VTH_MIN = 16
#: "loihi" profile: threshold mantissa aimed at when the weights would leave it coarser
VTH_MANT_TARGET = 1 << 10
#: back-edge sources are gated (see GATE_A_IN): their threshold stays at an eighth of the range
VTH_MANT_LIMIT_GATED = 1 << 14
#: a_in driving a gated group in the padding steps of each window: -(3 2^21 - 64) after << 6,
#: which cannot wrap u while |decayed u + input| < 2^21 and pushes v far below any threshold
GATE_A_IN = -((3 << 15) - 1)
#: calibration: the largest |u| or |v| seen may use at most this fraction of the state range
CALIB_FILL = 0.5

PROFILES = ("netx", "loihi")


# --------------------------------------------------------------------------- data
@dataclass
class FixedGroup:
    """One Lava LIF process in integers (neurons in the process's order, NIR indices ``idx``)."""

    key: str
    node: str
    role: str  # "neuron" | "relay"
    idx: np.ndarray
    depth: int
    spiking: bool
    du: int  # Lava's du: the current decays by (du + 1) / 4096 per step
    dv: int  # the voltage decays by dv / 4096 per step
    vth: int  # threshold mantissa (spike where v > vth << 6)
    bias_mant: np.ndarray  # [n] int64
    bias_exp: int
    scale: float  # K: integer state units per Lava float unit
    v_scale: np.ndarray  # v_nir = v_int / (K v_scale) + v_offset
    v_offset: np.ndarray
    shape3: Optional[Tuple[int, int, int]] = None
    gate: int = 0
    limit: str = ""  # what bounded K

    @property
    def n(self) -> int:
        return int(self.idx.size)

    @property
    def bias_eff(self) -> np.ndarray:
        """bias_mant << bias_exp as Lava computes it (int32)."""
        return _shift(self.bias_mant.astype(np.int64), self.bias_exp)

    def v_to_nir(self, v_int: np.ndarray) -> np.ndarray:
        return np.asarray(v_int, dtype=np.float64) / (self.scale * self.v_scale) + self.v_offset


@dataclass
class FixedConn:
    """One Dense or Conv process in integers."""

    key: str
    src: str  # group or input key
    dst: str
    kind: str  # "dense" | "conv"
    graded: bool  # graded input (num_message_bits = 24) or binary spikes
    weights: np.ndarray  # int64; dense [n_dst, n_src] (process orders), conv: Lava kernel (C_out, kX, kY, C_in/g)
    weight_exp: int = 0
    conv: Dict[str, object] = field(default_factory=dict)  # input_shape, padding, stride, dilation, groups, output_shape
    w_float: Optional[np.ndarray] = None  # the float weights it quantizes (Lava float units)


@dataclass
class FixedNetwork:
    """A program in Loihi fixed point: what the lava-fixed backend, the emulator and netx run."""

    program: object
    plan: object  # simulators.lava_common.LavaPlan (structure; n_samples / n_steps are placeholders)
    groups: Dict[str, FixedGroup]
    conns: List[FixedConn]
    profile: str = "netx"
    report: Dict[str, object] = field(default_factory=dict)

    @property
    def inputs(self):
        return self.plan.inputs

    @property
    def node_groups(self) -> Dict[str, List[str]]:
        return self.plan.node_groups

    def conns_into(self, key: str) -> List[FixedConn]:
        return [c for c in self.conns if c.dst == key]

    def base_of(self, key: str) -> Tuple[str, int]:
        """(group or input key without relays, relays in between) of a connection source."""
        if "~relay" in key:
            base, r = key.rsplit("~relay", 1)
            return base, int(r)
        return key, 0

    def lag(self, conn: FixedConn) -> int:
        """j: the connection delivers its source's value of reference step k - j at step k."""
        base, r = self.base_of(conn.src)
        if base in self.plan.inputs:
            return int(self.plan.inputs[base].lag)
        return r + self.groups[base].depth + 1 - self.groups[conn.dst].depth

    def with_window(self, n_samples: int, n_steps: int):
        """The plan for a Lava run of ``n_samples`` samples of ``n_steps`` steps."""
        return dataclasses.replace(self.plan, n_samples=int(n_samples), n_steps=int(n_steps))


# --------------------------------------------------------------------------- helpers
def _shift(a: np.ndarray, e: int) -> np.ndarray:
    return np.left_shift(a, e) if e >= 0 else np.right_shift(a, -e)


def _round(x) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64)).astype(np.int64)


def quantize_weights(W: np.ndarray, K: float, e: int) -> np.ndarray:
    """Even integer mantissas 2 round(K W / (128 2^e)), clipped to +-254."""
    m = _round(np.asarray(W, dtype=np.float64) * (K / (128.0 * 2.0**e)))
    return 2 * np.clip(m, -(WEIGHT_MANT_MAX // 2), WEIGHT_MANT_MAX // 2)


def dequantize_weights(w: np.ndarray, K: float, e: int) -> np.ndarray:
    return np.asarray(w, dtype=np.float64) * (64.0 * 2.0**e / K)


def decay_int(d: float, what: str, current: bool) -> int:
    """Float decay (1 - factor) -> Lava's integer (du: iDecay - 1, dv: dv)."""
    if not np.isfinite(d) or d < -1e-12 or d > 1 + 1e-12:
        raise UnsupportedNodeError(
            f"{what}: its {'current' if current else 'voltage'} decay per step is {d:.6g}, outside [0, 1]; "
            f"Loihi's 12-bit decays express only factors between 0 and 1"
        )
    q = int(np.clip(np.rint(d * DECAY_UNITY), 0, DECAY_UNITY))
    return q - 1 if current else q


# --------------------------------------------------------------------------- the pass
def fold_pooling_program(program):
    """``program`` with pooling folded into the following linear layer where that is exact.

    Pooling is linear and netx has no pool layer (``toolchain/passes/fold_pooling.py``); folding
    it here makes the fixed-point backends compute what ``nirdeploy deploy`` writes, and lets a
    pool -> conv pair run as one Lava Conv instead of a dense matrix.
    """
    from toolchain.passes.fold_pooling import POOL_TYPES, fold_pooling
    from toolchain.program import lower

    if not any(op.type in POOL_TYPES for op in program.ops.values()):
        return program
    folded = fold_pooling(program.graph)
    if folded is program.graph:
        return program
    return lower(folded, program.disc)


def quantize(
    program,
    calib_inputs=None,
    profile: str = "netx",
    max_calib_rounds: int = 4,
    calib_batch: int = 256,
) -> FixedNetwork:
    """Loihi fixed-point parameters for ``program`` (see the module docstring).

    ``calib_inputs`` [samples, steps, *input_shape] (integer counts): run the emulator on them,
    lower ``K`` where states come close to the 24-bit range and report what they reached.
    """
    from simulators.lava_common import plan_network

    if profile not in PROFILES:
        raise NirDeployError(f"unknown quantization profile {profile!r}; choose one of {', '.join(PROFILES)}")
    program = fold_pooling_program(program)
    plan = plan_network(program, 1, 1)
    state_limit: Dict[str, float] = {}
    x = None
    if calib_inputs is not None:
        from simulators.emulator import check_integer_inputs, emulate

        x = check_integer_inputs(program, calib_inputs)
    x_max = max(1.0, float(np.max(np.abs(x)))) if x is not None and x.size else 1.0
    fx = _quantize_plan(program, plan, profile, state_limit, x_max, x is not None)
    if x is not None:
        for _ in range(max_calib_rounds):
            stats = emulate(fx, x, stats=True, batch_size=calib_batch)["stats"]
            changed = False
            for key, st in stats.items():
                g = fx.groups[key]
                peak = max(st["max_abs_u"], st["max_abs_v"])
                if g.role == "neuron" and peak > CALIB_FILL * STATE_MAX:
                    state_limit[key] = g.scale * CALIB_FILL * STATE_MAX / peak * 0.95
                    changed = True
            if not changed:
                break
            fx = _quantize_plan(program, plan, profile, state_limit, x_max, x is not None)
        fx.report = build_report(fx, stats=emulate(fx, x, stats=True, batch_size=calib_batch)["stats"], x=x)
    else:
        fx.report = build_report(fx)
    return fx


def _quantize_plan(
    program, plan, profile: str, state_limit: Dict[str, float], x_max: float = 1.0, calibrated: bool = False
) -> FixedNetwork:
    groups: Dict[str, FixedGroup] = {}
    conns: List[FixedConn] = []
    by_dst: Dict[str, list] = {}
    for c in plan.conns:
        by_dst.setdefault(c.dst, []).append(c)
    for key, g in plan.groups.items():
        what = f"node {g.node!r} ({program.ops[g.node].type})"
        incoming = by_dst.get(key, [])
        if g.role == "relay":
            K, limit = 128.0, "relay"  # identity weight 2, threshold 1: repeats a binary spike exactly
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
                        f"mantissa is unsigned"
                    )
                if g.vth > 0:
                    lim = VTH_MANT_LIMIT_GATED if g.gate else VTH_MANT_LIMIT
                    limits["threshold"] = 64.0 * lim / g.vth
            bmax = float(np.max(np.abs(g.bias))) if g.bias.size else 0.0
            if bmax > 0:
                bexp = NETX_BIAS_EXP if profile == "netx" else BIAS_EXP_MAX
                limits["bias"] = BIAS_MANT_MAX * 2.0**bexp / bmax
            if key in state_limit:
                limits["state"] = state_limit[key]
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
        if g.role == "neuron" and g.spiking and g.vth > 0 and K * g.vth / 64.0 >= EXACT_VTH_MIN:
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
                weights=quantize_weights(W, K, e),
                weight_exp=e,
                conv=dict(c.conv),
                w_float=W,
            )
        )
    return FixedNetwork(program=program, plan=plan, groups=groups, conns=conns, profile=profile)


# --------------------------------------------------------------------------- report
def worst_case_u(fx: FixedNetwork, key: str, x_max: Optional[float] = None) -> float:
    """Largest |u| any input could drive group ``key`` to (binary spikes; graded inputs up to ``x_max``)."""
    g = fx.groups[key]
    per_step = np.zeros(g.n)
    for c in fx.conns_into(key):
        w = np.abs(c.weights).astype(np.float64)
        if c.kind == "dense":
            row = w.sum(axis=1) * 2.0**c.weight_exp
        else:  # a conv neuron sums at most the whole kernel of its output channel
            ch = w.reshape(w.shape[0], -1).sum(axis=1)
            if g.shape3 is None:
                row = np.full(g.n, float(ch.max()))
            else:  # process order (W, H, C): the channel is the last axis
                C, H, Wd = g.shape3
                row = np.broadcast_to(ch[None, None, :], (Wd, H, C)).reshape(-1)
        if c.graded:
            if x_max is None:
                return float("inf")
            row = row * float(x_max)
        per_step += row
    a = float(per_step.max(initial=0.0)) * (1 << ACT_SHIFT)
    keep = (DECAY_UNITY - (g.du + 1)) / DECAY_UNITY
    if keep >= 1.0:
        return float("inf") if a > 0 else 0.0
    return a / (1.0 - keep)


def build_report(fx: FixedNetwork, stats: Optional[Dict[str, dict]] = None, x=None) -> Dict[str, object]:
    """Per neuron node: weight, decay, threshold and bias rounding errors, scales and state ranges."""
    prog = fx.program
    x_max = float(np.max(np.abs(x))) if x is not None and np.size(x) else None
    layers = []
    for node, keys in fx.node_groups.items():
        row: Dict[str, object] = {"node": node, "type": prog.ops[node].type, "groups": len(keys)}
        gs = [fx.groups[k] for k in keys]
        row["scale"] = [float(g.scale) for g in gs]
        row["scale_limited_by"] = sorted({g.limit for g in gs})
        # weights
        wrows = []
        for k in keys:
            for c in fx.conns_into(k):
                W = c.w_float
                if W is None or not W.size:
                    continue
                wq = dequantize_weights(c.weights, fx.groups[k].scale, c.weight_exp)
                wm = float(np.max(np.abs(W)))
                err = np.abs(wq - W)
                nz = W != 0
                wrows.append(
                    {
                        "conn": c.key,
                        "kind": c.kind,
                        "weight_exp": int(c.weight_exp),
                        "max_mantissa": int(np.max(np.abs(c.weights))),
                        "max_rel_error": float(err.max() / wm) if wm > 0 else 0.0,
                        "rms_rel_error": float(np.sqrt(np.mean(err**2)) / wm) if wm > 0 else 0.0,
                        "zeroed": int(np.sum(nz & (c.weights == 0))),
                    }
                )
        row["weights"] = wrows
        # decays (as per-step factors and as time constants)
        pg = [fx.plan.groups[k] for k in keys]
        dec = []
        for g, p in zip(gs, pg):
            a_u, a_v = 1.0 - p.du, 1.0 - p.dv
            q_u = (DECAY_UNITY - (g.du + 1)) / DECAY_UNITY
            q_v = (DECAY_UNITY - g.dv) / DECAY_UNITY
            dec.append(
                {
                    "du": int(g.du),
                    "dv": int(g.dv),
                    "current_factor": a_u,
                    "current_factor_fixed": q_u,
                    "voltage_factor": a_v,
                    "voltage_factor_fixed": q_v,
                    "current_tau_rel_error": _tau_err(a_u, q_u),
                    "voltage_tau_rel_error": _tau_err(a_v, q_v),
                }
            )
        row["decays"] = dec
        row["decay_max_abs_error"] = float(
            max(max(abs(d["current_factor"] - d["current_factor_fixed"]), abs(d["voltage_factor"] - d["voltage_factor_fixed"])) for d in dec)
        )
        # threshold and bias
        th = []
        berr = 0.0
        for g, p in zip(gs, pg):
            if g.spiking and p.vth > 0:
                th.append(abs(g.vth * 64.0 / g.scale - p.vth) / p.vth)
            bq = g.bias_eff.astype(np.float64) / g.scale
            ref = p.vth if (g.spiking and p.vth > 0) else max(1e-300, float(np.max(np.abs(p.bias), initial=0.0)))
            if p.bias.size and np.any(p.bias != 0):
                berr = max(berr, float(np.max(np.abs(bq - p.bias))) / ref)
        row["vth_mant"] = [int(g.vth) for g in gs]
        row["threshold_rel_error"] = float(max(th, default=0.0))
        row["bias_exp"] = sorted({int(g.bias_exp) for g in gs})
        row["bias_error_rel_threshold"] = berr
        row["weight_max_rel_error"] = float(max((w["max_rel_error"] for w in wrows), default=0.0))
        row["weight_rms_rel_error"] = float(max((w["rms_rel_error"] for w in wrows), default=0.0))
        # state ranges
        wc = [worst_case_u(fx, k, x_max) for k in keys]
        row["worst_case_abs_u"] = float(max(wc))
        row["u_can_wrap_worst_case"] = bool(max(wc) >= STATE_MAX)
        if stats is not None:
            st = [stats[k] for k in keys if k in stats]
            row["seen_max_abs_u"] = int(max(s["max_abs_u"] for s in st))
            row["seen_max_abs_v"] = int(max(s["max_abs_v"] for s in st))
            row["seen_u_wraps"] = int(sum(s["u_wraps"] for s in st))
            row["seen_v_saturations"] = int(sum(s["v_saturations"] for s in st))
            row["state_fill"] = max(row["seen_max_abs_u"], row["seen_max_abs_v"]) / STATE_MAX
            row["saturates"] = bool(row["seen_u_wraps"] or row["seen_v_saturations"])
        layers.append(row)
    rep: Dict[str, object] = {"profile": fx.profile, "state_bits": STATE_BITS, "layers": layers}
    if stats is not None:
        rep["calibration"] = {"samples": int(np.shape(x)[0]), "steps": int(np.shape(x)[1]), "input_max": x_max}
    return rep


def _tau_err(a: float, q: float) -> float:
    """Relative error of the time constant -1/ln(a) when the factor a becomes q."""
    if a <= 0 or a >= 1 or q <= 0 or q >= 1:
        return 0.0 if a == q else float("inf") if (a in (0.0, 1.0)) != (q in (0.0, 1.0)) else 0.0
    return abs(math.log(a) / math.log(q) - 1.0)


def report_rows(report: Dict[str, object]) -> List[List[object]]:
    """Table rows: layer, type, K, what limited K, weight error (max, rms), bias, decay and threshold error, state."""
    rows = []
    for l in report["layers"]:
        if "state_fill" in l:
            state = f"{100 * l['state_fill']:.1f}%" + (" SATURATED" if l["saturates"] else "")
        elif np.isinf(l["worst_case_abs_u"]):
            state = "unchecked"
        else:
            state = "may wrap" if l["u_can_wrap_worst_case"] else "cannot wrap"
        fk = lambda v: f"{v:.0f}" if v >= 10 else f"{v:.3g}"
        k = fk(min(l["scale"])) + ("" if len(l["scale"]) == 1 else f"-{fk(max(l['scale']))}")
        rows.append(
            [
                l["node"],
                l["type"],
                k,
                ",".join(l["scale_limited_by"]),
                f"{100 * l['weight_max_rel_error']:.2f}%",
                f"{100 * l['weight_rms_rel_error']:.2f}%",
                f"{100 * l['bias_error_rel_threshold']:.2f}%",
                f"{l['decay_max_abs_error']:.1e}" if l["decay_max_abs_error"] else "0",
                f"{100 * l['threshold_rel_error']:.3f}%",
                state,
            ]
        )
    return rows


#: columns of :func:`report_rows`; weight errors relative to the largest weight of the connection,
#: bias error: largest rounding error of the bias per step relative to the threshold,
#: decay error: absolute error of the per-step factor, threshold error: relative,
#: state: largest |u| or |v| seen as a fraction of the 24-bit range (with calibration data),
#: otherwise whether the worst-case input could wrap u
REPORT_COLUMNS = ["layer", "type", "K", "K set by", "w err max", "w err rms", "bias err", "decay err", "vth err", "state"]
