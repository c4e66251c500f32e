"""The quantization report: per neuron node, the rounding errors of weights, decays, thresholds
and biases, the scale chosen and what bounded it, and the states reached on calibration data."""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np

from toolchain.loihi.bits import ACT_SHIFT, DECAY_UNITY, STATE_BITS, STATE_MAX
from toolchain.loihi.fixed import FixedNetwork, dequantize_weights


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
