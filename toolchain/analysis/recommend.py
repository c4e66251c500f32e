"""The deployment answer of a sweep: per target timestep, which zero-shot method, at what cost.

A sweep (``toolchain/reports/sweep.py``) runs a trained graph at several target timesteps with
several retiming methods. :func:`recommendation` turns its rows into what a person deploying the
model asks for ("my sensor delivers X ms bins: which adaptation, what accuracy, how many spikes,
how much energy and latency per inference"):

``per_dt``
    one entry per target dt: ``dt``, ``rho`` (dt / the training dt), ``method``, ``metric`` (its
    value), ``loss`` (the source metric at its own dt minus this one; None when the sweep has no
    row at the training dt), ``energy_per_inference_j`` and ``latency_per_inference_s`` (the run
    record's default energy model), ``spikes_per_inference``, ``backend`` and ``candidates`` (the
    methods compared, best first); with ``--lava-check N`` also ``lava``: the winner run on a
    Lava backend on the first N samples and compared with the sweep's backend (prediction and
    spike agreement, per layer; ``toolchain.reports.sweep.lava_agreement``).
``pareto``
    the cells (dt, method) on the accuracy-energy-latency front: no other cell is at least as
    accurate, as cheap and as fast, and better in one of them.

The rule, chosen before looking at any result and stated in docs/retiming.md:

1. at each target dt, the method with the highest metric wins;
2. methods within one sample of the best (``1 / samples``: a difference the test set cannot
   resolve) tie, and a tie goes to the lowest energy per inference, then to the fewest spikes,
   then to the order of ``PREFERENCE`` (the methods that keep the model's dynamics first);
3. rows that failed (an ``error``) never win.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

#: tie-break order after energy and spikes: the dynamics-preserving mappings first
#: (a -carry method after its base: where they tie, e.g. at rho <= 1, the reset a .net can express wins)
PREFERENCE = ("exact", "integral", "exact-carry", "integral-carry", "euler", "tau", "none")


def _energy(row: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """Energy and latency per inference of a sweep row (its record's default energy model)."""
    rec = row.get("record") or {}
    e = rec.get("energy") or {}
    models = e.get("models") or []
    m = next((x for x in models if x.get("name") == e.get("default")), models[0] if models else None)
    if m is None:
        return {"energy_per_inference_j": None, "latency_per_inference_s": None, "energy_model": None,
                "energy_model_calibrated_on": None}
    return {
        "energy_per_inference_j": m.get("total_j"),
        "latency_per_inference_s": m.get("time_per_inference_s"),
        "energy_model": m.get("name"),
        "energy_model_calibrated_on": m.get("calibrated_on"),
    }


def _samples(result: Dict[str, Any], rows: Sequence[Dict[str, Any]]) -> Optional[int]:
    for r in rows:
        n = (r.get("record") or {}).get("samples")
        if n:
            return int(n)
    return result.get("samples")


def _key(tie: float, best: float):
    def key(r):
        pref = PREFERENCE.index(r["method"]) if r["method"] in PREFERENCE else len(PREFERENCE)
        if r["metric"] >= best - tie - 1e-12:  # a tie with the best: the cheapest wins
            e, s = r["energy_per_inference_j"], r.get("spikes_per_inference")
            return (0, float("inf") if e is None else e, float("inf") if s is None else s, pref)
        return (1, -r["metric"], pref)

    return key


def recommendation(result: Dict[str, Any]) -> Dict[str, Any]:
    """The ``recommendation`` object of a sweep result (``{"metric", "rows", "source_dt", ...}``)."""
    metric = result.get("metric", "accuracy")
    src_dt = float(result["source_dt"])
    cells: List[Dict[str, Any]] = []
    for r in result["rows"]:
        if r.get("error") or r.get(metric) is None:
            continue
        cells.append({
            "dt": float(r["dt"]),
            "rho": float(r.get("rho", float(r["dt"]) / src_dt)),
            "method": r["method"],
            "metric": float(r[metric]),
            "spikes_per_inference": r.get("spikes_per_sample"),
            "backend": r.get("backend", result.get("backend")),
            **_energy(r),
        })  # fmt: skip
    n = _samples(result, result["rows"])
    tie = 1.0 / n if n else 0.0
    at_source = [c["metric"] for c in cells if abs(c["rho"] - 1.0) < 1e-9]
    source_metric = max(at_source) if at_source else None
    per_dt = []
    for dt in sorted({c["dt"] for c in cells}):
        cand = [c for c in cells if c["dt"] == dt]
        best = max(c["metric"] for c in cand)
        ranked = sorted(cand, key=_key(tie, best))
        win = dict(ranked[0])
        win["loss"] = None if source_metric is None else source_metric - win["metric"]
        win["candidates"] = [{"method": c["method"], "metric": c["metric"], "energy_per_inference_j": c["energy_per_inference_j"]}
                             for c in ranked]  # fmt: skip
        per_dt.append(win)
    pareto = []
    for c in cells:
        e, t = c["energy_per_inference_j"], c["latency_per_inference_s"]
        if e is None or t is None:
            continue
        dominated = any(
            o is not c and o["energy_per_inference_j"] is not None and o["latency_per_inference_s"] is not None
            and o["metric"] >= c["metric"] and o["energy_per_inference_j"] <= e and o["latency_per_inference_s"] <= t
            and (o["metric"] > c["metric"] or o["energy_per_inference_j"] < e or o["latency_per_inference_s"] < t)
            for o in cells
        )  # fmt: skip
        if not dominated:
            same = next((p for p in pareto if p["dt"] == c["dt"] and p["metric"] == c["metric"]
                         and p["energy_per_inference_j"] == e and p["latency_per_inference_s"] == t), None)  # fmt: skip
            if same is not None:  # methods that give the same cell (e.g. all of them at rho = 1)
                same["methods"].append(c["method"])
                continue
            pareto.append({**{k: c[k] for k in ("dt", "rho", "method", "metric", "energy_per_inference_j",
                                                "latency_per_inference_s", "spikes_per_inference")},
                           "methods": [c["method"]]})  # fmt: skip
    pareto.sort(key=lambda c: (c["energy_per_inference_j"], -c["metric"]))
    return {
        "metric": metric,
        "source_dt": src_dt,
        "source_metric": source_metric,
        "rule": "highest metric per target dt; methods within one sample (1/samples) of the best tie, and a tie "
        "goes to the lowest energy per inference, then the fewest spikes, then " + " > ".join(PREFERENCE),
        "tie": tie,
        "per_dt": per_dt,
        "pareto": pareto,
        "note": None if source_metric is not None else "the sweep has no row at the training dt: add it to --dt to get the loss",
    }


def summary_lines(rec: Dict[str, Any], unit_ms: bool = True) -> List[str]:
    """A few lines for the terminal and the top of the report."""
    metric = rec["metric"].replace("_", " ")
    src = rec["source_dt"] * 1e3
    out = []
    for c in rec["per_dt"]:
        if c.get("loss") is None:
            loss = ""
        elif abs(c["loss"]) < 5e-4:
            loss = f" (as at {src:g} ms)"
        else:
            loss = f" ({'-' if c['loss'] > 0 else '+'}{abs(c['loss']):.3f} vs {src:g} ms)"
        e = c.get("energy_per_inference_j")
        t = c.get("latency_per_inference_s")
        cost = []
        if e is not None:
            cost.append(f"{e * 1e6:.3g} uJ")
        if t is not None:
            cost.append(f"{t * 1e3:.3g} ms")
        if c.get("spikes_per_inference") is not None:
            cost.append(f"{c['spikes_per_inference']:.0f} spikes")
        partial = " (its partial reset runs on Lava and the emulator; a .net cannot express it)" \
            if c["method"].endswith("-carry") and c["rho"] > 1 else ""  # fmt: skip
        out.append(f"dt {c['dt'] * 1e3:g} ms (rho {c['rho']:g}): {c['method']}, {metric} {c['metric']:.3f}{loss}; "
                   + ", ".join(cost) + " per inference" + partial)  # fmt: skip
        if c.get("lava"):  # --lava-check: its own indented line under the dt
            out.append("  " + lava_text(c["lava"]))
    return out


def lava_text(lava: Dict[str, Any]) -> str:
    """The Lava agreement of a ``per_dt`` entry in a few words (``--lava-check``)."""
    if lava.get("error"):
        return f"{lava['backend']} could not run it: {lava['error']}"
    n = lava["samples"]
    same = round(lava["prediction_agreement"] * n)
    return (f"{lava['backend']} vs {lava['against']} on {n} samples: predictions {same}/{n} agree, "
            f"spikes {lava['spike_agreement']:.4f}")
