"""Reports: a run record or a sweep directory -> HTML (self-contained) and Markdown, with plots.

``build_report(path, "report.html")`` writes ``report.html`` (images embedded as PNG data) and
``report.md`` (images in ``report_files/``). ``summary_tables`` gives the same numbers as rows
for the terminal (``nirdeploy report`` prints them with rich).

Sections: summary, activity metrics per layer, synaptic operations (NeuroBench), energy per
model, the ANN comparison, chip resources, plots (spikes and energy per layer), a spike raster of
one sample, and for a sweep: accuracy, spikes and energy against the timestep per method.
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Dict, List, Optional, Sequence, Tuple

from toolchain.errors import NirDeployError
from toolchain.ir.atomic import atomic_write
from toolchain.analysis.schema import kind_of, parse

SECTION_TITLES = {
    "demo": "Demo: torch vs reference vs Lava",
    "summary": "Summary",
    "segmentation": "Segmentation (mean IoU)",
    "recommendation": "Recommendation: which method at each target timestep",
    "comparison": "Backend comparison",
    "sweep": "Timestep sweep",
    "metrics": "Activity per layer",
    "synops": "Synaptic operations (NeuroBench)",
    "energy": "Energy per inference",
    "ann": "ANN comparison",
    "resources": "Chip resources (Loihi 2)",
    "plots": "Spikes and energy per layer",
    "raster": "Spike raster",
    "caveats": "Sources and caveats",
}


# --------------------------------------------------------------------------- input
def load_input(path: str) -> Tuple[str, dict]:
    """("run", record) or ("sweep", sweep) from a run record, a sweep.json or a sweep directory."""
    from toolchain.analysis.records import read_json

    from toolchain.loihi.netx_read import is_netx

    p = path
    if not os.path.isdir(p) and is_netx(p):  # a report is of runs: say how to get one from a .net
        raise NirDeployError(
            f"{path} is a lava-dl netx network, not a run record: run it first (nirdeploy simulate {path} --data D "
            f"-o RUN.json, or nirdeploy sweep {path} --source-dt S --data D --dt ... --method ... -o DIR) and report that"
        )
    if os.path.isdir(p):
        p = os.path.join(p, "sweep.json")
        if not os.path.exists(p):
            raise NirDeployError(f"{path} is a directory without sweep.json (give a run record or a sweep directory)")
    data = read_json(p)
    kind = kind_of(data)
    if kind in ("run", "sweep"):
        parse(data)  # validates the schema (toolchain/analysis/schema.py)
        return kind, data
    if kind == "compare":
        parse(data)
        return kind, data
    raise NirDeployError(f"{path} is neither a run record, a compare record nor a sweep (sweep.json with 'rows')")


def with_energy_models(rec: dict, models: Optional[Sequence[str]]) -> dict:
    """Recompute the energy section of a record with other (or user) energy models."""
    if not models:
        return rec
    if "metrics" not in rec or "resources" not in rec:
        raise NirDeployError("this run record has no metrics/resources section (it was written without the program); cannot apply energy models")
    from toolchain.analysis.energy import energy_section

    out = dict(rec)
    out["energy"] = energy_section(rec["metrics"], rec["resources"], list(models))
    return out


def _pick_run(sweep: dict) -> Optional[dict]:
    rows = [r for r in sweep["rows"] if isinstance(r.get("record"), dict)]
    if not rows:
        return None
    src = [r for r in rows if r.get("rho") is not None and abs(float(r["rho"]) - 1.0) < 1e-9]
    pool = src or rows
    return max(pool, key=lambda r: (r.get("accuracy") is not None, r.get("accuracy") or 0.0))["record"]


def default_energy(rec: dict) -> Optional[dict]:
    e = rec.get("energy") or {}
    ms = e.get("models") or []
    if not ms:
        return None
    d = e.get("default")
    return next((m for m in ms if m["name"] == d), ms[0])


# --------------------------------------------------------------------------- tables
def _f(v, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if unit == "J":
            return _joules(v)
        if v == 0:
            return "0"
        if abs(v) >= 1e6 or abs(v) < 1e-3:
            return f"{v:.3g}"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    return str(v)


def _joules(v: float) -> str:
    if v is None:
        return "n/a"
    a = abs(v)
    for scale, u in ((1, "J"), (1e-3, "mJ"), (1e-6, "uJ"), (1e-9, "nJ"), (1e-12, "pJ")):
        if a >= scale:
            return f"{v / scale:.3g} {u}"
    return "0 J" if v == 0 else f"{v / 1e-12:.3g} pJ"


def run_tables(rec: dict) -> Dict[str, List[Tuple[str, List[str], List[List[str]]]]]:
    """section -> [(title, columns, rows)] of formatted strings."""
    t: Dict[str, List] = {}
    m = rec.get("metrics") or {}
    tot = m.get("totals", {})
    e = default_energy(rec)
    res = rec.get("resources") or {}
    summ = [
        ["backend", rec.get("backend")],
        ["model", rec.get("model")],
        ["dt", f"{float(rec['dt']) * 1e3:g} ms"],
        ["time steps", _f(rec.get("n_steps"))],
        ["samples", _f(rec.get("samples"))],
        ["accuracy", _f(rec.get("accuracy"))],
        ["spikes per inference", _f(rec.get("total_spikes_per_sample"))],
        ["synaptic ops per inference (Effective_ACs + Effective_MACs)", _f(_eff_total(tot))],
        ["energy per inference (" + (e["name"] if e else "n/a") + ")", _joules(e["total_j"]) if e else "n/a"],
        *([["energy model calibrated on", e["calibrated_on"]]] if e and e.get("calibrated_on") else []),
        ["Loihi 2 cores / chips", f"{res.get('totals', {}).get('cores', 'n/a')} / {res.get('totals', {}).get('chips', 'n/a')}" if res else "n/a"],
    ]
    for a in rec.get("approximations") or []:
        if a["kind"] in ("cuba_projection", "saturation", "calibration"):
            summ.append([a["kind"].replace("_", " "), a["message"]])
    lm = rec.get("loihi_mapping") or {}
    if lm.get("host_readout"):
        summ.append(["readout on the host (deploy)", ", ".join(lm["host_readout"]) +
                     " (non-spiking: computed from the chip's output spikes in Loihi's integers)"])  # fmt: skip
    if lm.get("bias_units"):
        bu = lm["bias_units"]
        summ.append(["bias units (Loihi)", ", ".join(f"{k}: {v['units']} unit, {v['synapses']} synapses" for k, v in bu.items()) +
                     " (always-on units carry the constants into the synaptic current)"])  # fmt: skip
    if lm.get("reset_subtract"):
        summ.append(["reset by subtraction", ", ".join(lm["reset_subtract"]) + " (runs on Lava and the emulator; a .net cannot express it)"])
    if lm.get("reset_partial"):
        summ.append(["partial reset", ", ".join(f"{k}: keeps {v:.3g} of the excess" for k, v in lm["reset_partial"].items()) +
                     " (a -carry retiming; runs on Lava and the emulator; a .net cannot express it)"])  # fmt: skip
    if rec.get("metrics_error"):
        summ.append(["metrics error", rec["metrics_error"]])
    t["summary"] = [("Run", ["quantity", "value"], [[a, str(b)] for a, b in summ])]
    sg = rec.get("segmentation")
    if sg:  # segmentation run (toolchain/analysis/segmentation.py): per-pixel output scored by IoU
        t["summary"][0][2].insert(6, ["mean IoU", _f(sg.get("mean_iou"))])
        rows = [
            ["mean IoU", _f(sg.get("mean_iou"))],
            ["pixel accuracy", _f(sg.get("pixel_accuracy"))],
            ["output resolution (chip)", " x ".join(str(d) for d in sg.get("output_resolution", []))],
            ["mask resolution", " x ".join(str(d) for d in sg.get("mask_resolution", []))],
            ["upsampling", f"{sg.get('upsampling')}: {sg.get('upsampling_note')}"],
        ]
        per = [[k, _f(v)] for k, v in (sg.get("iou_per_class") or {}).items()]
        t["segmentation"] = [("Segmentation", ["quantity", "value"], rows), ("IoU per class", ["class", "IoU"], per)]
    if m:
        rows = []
        for l in m["layers"]:
            rows.append([
                l["name"], l["type"], _f(l["neurons"]), _f(l["spikes_per_sample"]), _f(l["firing_rate"]),
                _f(l["firing_rate_hz"]), _f(l["activation_sparsity"]), _f(l["neuron_updates"]), _f(l.get("active_updates")),
            ])
        rows.append([
            "total", "", _f(tot.get("neurons")), _f(tot.get("spikes_per_sample")), "", "", _f(tot.get("activation_sparsity")),
            _f(tot.get("neuron_updates")), _f(tot.get("active_updates")),
        ])
        t["metrics"] = [(
            "Activity per inference",
            ["layer", "type", "neurons", "spikes", "rate/step", "rate (Hz)", "act. sparsity", "neuron updates", "active updates"],
            rows,
        )]
        crow = []
        for c in m["connections"]:
            crow.append([
                c["name"], c["type"], str(c.get("target")), ",".join(c.get("sources", [])), _f(c["Dense"]),
                _f(c["Effective_ACs"]), _f(c["Effective_MACs"]), _f(c["weights"]), _f(c["zero_weights"]),
            ])
        crow.append(["total", "", "", "", _f(tot.get("Dense")), _f(tot.get("Effective_ACs")), _f(tot.get("Effective_MACs")), _f(tot.get("weights")), ""])
        extra = [
            ["connection sparsity", _f(tot.get("connection_sparsity"))],
            ["activation sparsity", _f(tot.get("activation_sparsity"))],
            ["footprint (bytes, float32 weights + biases)", _f(tot.get("footprint_bytes"))],
            ["neuron parameters (bytes)", _f(tot.get("neuron_parameter_bytes"))],
            ["complete (input connections counted)", _f(m.get("complete"))],
        ]
        t["synops"] = [
            ("Synaptic operations per inference", ["connection", "type", "target", "sources", "Dense", "Effective_ACs", "Effective_MACs", "weights", "zero weights"], crow),
            ("Static metrics", ["metric", "value"], extra),
        ]
    en = rec.get("energy") or {}
    if en.get("models"):
        rows = []
        for mod in en["models"]:
            rows.append([
                mod["name"], _joules(mod["dynamic_j"]), _joules(mod["static_j"]), _joules(mod["total_j"]),
                _f(mod.get("time_per_step_s")), f"{len(mod.get('unconfirmed', []))} of {len(mod['by_kind_j'])}",
            ])
        tabs = [("Energy per inference by model", ["model", "dynamic", "static", "total", "time/step (s)", "costs not confirmed"], rows)]
        if e:
            kinds = list(e["by_kind_j"])
            lrows = [[pl["name"]] + [_joules(pl["by_kind_j"].get(k, 0.0)) for k in kinds] + [_joules(pl["dynamic_j"])] for pl in e["layers"]]
            tabs.append((f"Dynamic energy per layer ({e['name']})", ["layer"] + kinds + ["dynamic"], lrows))
        t["energy"] = tabs
        a = en.get("ann") or {}
        if a:
            arows = [
                ["ANN MACs (every connection every step = Dense)", _f(a.get("macs_per_step_convention"))],
                ["ANN MACs (every connection once per inference)", _f(a.get("macs_once_per_inference"))],
                ["ANN FP32 (per step)", _joules(a.get("ann_fp32_j"))],
                ["ANN INT8 (per step)", _joules(a.get("ann_int8_j"))],
                ["ANN FP32 (once per inference)", _joules(a.get("ann_fp32_once_j"))],
                ["SNN, same convention, FP32 (ACs x 0.9 pJ + MACs x 4.6 pJ)", _joules(a.get("snn_fp32_j"))],
                ["SNN, same convention, INT8", _joules(a.get("snn_int8_j"))],
            ]
            if e:
                arows.append([f"SNN on chip ({e['name']})", _joules(e["total_j"])])
            t["ann"] = [("ANN baseline (Horowitz 2014, 45 nm)", ["quantity", "value"], arows)]
    if res:
        rows = []
        for l in res["layers"]:
            rows.append([
                l["name"], _f(l["neurons"]), _f(l["synapses_in"]), _f(l["fan_in_max"]), _f(l["fan_out_max"]),
                _f(l["cores"]), _f(l["neurons_per_core"]), _f(l["axons_in_per_core"]), "; ".join(l["problems"]) or "ok",
            ])
        tt = res["totals"]
        rows.append(["total", _f(tt["neurons"]), _f(tt["synapses"]), "", "", _f(tt["cores"]), "", "", f"{tt['chips']} chip(s)" + ("" if tt["fits_one_chip"] else " - see problems")])
        lim = [[k, _f(v)] for k, v in res.get("limits", {}).items()]
        t["resources"] = [
            ("Resources per layer", ["layer", "neurons", "synapses in", "fan-in max", "fan-out max", "cores", "neurons/core", "axons in/core", "fits"], rows),
            ("Per-core limits used (sources in the energy-model file)", ["limit", "value"], lim),
        ]
    return t


def _eff_total(tot: dict):
    if not tot:
        return None
    if tot.get("Effective_ACs") is None:
        return None
    return float(tot["Effective_ACs"]) + float(tot["Effective_MACs"])


def sweep_table(sweep: dict):
    metric = sweep.get("metric", "accuracy")
    rows = []
    for r in sorted(sweep["rows"], key=lambda r: (str(r.get("method")), float(r.get("dt") or 0))):
        rec = r.get("record") or {}
        e = default_energy(rec) if rec else None
        rows.append([
            _f(float(r["dt"]) * 1e3) + " ms", _f(r.get("rho")), str(r.get("method")), _f(r.get(metric)),
            _f(r.get("spikes_per_sample")), _f(_eff_total((rec.get("metrics") or {}).get("totals", {}))),
            _joules(e["total_j"]) if e else "n/a", r.get("error", "") or "",
        ])
    return ("Sweep", ["dt", "rho", "method", metric.replace("_", " "), "spikes/inference", "synops/inference", "energy/inference", "error"], rows)


# --------------------------------------------------------------------------- plots
def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_layers(rec: dict) -> Dict[str, bytes]:
    plt = _plt()
    out = {}
    layers = rec.get("layers", [])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [l["name"] for l in layers]
    ax.bar(names, [l["spikes_per_sample"] for l in layers], color="#3b6ea8")
    ax.set_ylabel("spikes per inference")
    ax.set_xlabel("layer")
    ax.set_title("Spikes per layer")
    out["spikes_per_layer"] = _png(fig)
    e = default_energy(rec)
    if e:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        kinds = list(e["by_kind_j"])
        bottom = [0.0] * len(e["layers"])
        for k in kinds:
            vals = [pl["by_kind_j"].get(k, 0.0) * 1e9 for pl in e["layers"]]
            ax.bar([pl["name"] for pl in e["layers"]], vals, bottom=bottom, label=k)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_ylabel("dynamic energy per inference (nJ)")
        ax.set_xlabel("layer")
        ax.set_title(f"Energy per layer ({e['name']})")
        ax.legend(fontsize=7)
        out["energy_per_layer"] = _png(fig)
    return out


def plot_raster(rec: dict) -> Optional[bytes]:
    r = rec.get("raster")
    if not r or not r.get("layers"):
        return None
    plt = _plt()
    layers = list(r["layers"].items())
    fig, axes = plt.subplots(len(layers), 1, figsize=(7, 1.2 + 1.6 * len(layers)), sharex=True, squeeze=False)
    dt_ms = float(r.get("dt", rec.get("dt", 1e-3))) * 1e3
    for ax, (name, L) in zip(axes[:, 0], layers):
        ax.scatter([s * dt_ms for s in L["steps"]], L["neuron"], s=12, marker="|", linewidths=0.8, color="k")
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_ylim(-0.5, max(1, L["neurons"]) - 0.5)
        if L.get("truncated"):
            ax.set_title(f"first {len(L['steps'])} of {L['events']} events", fontsize=8)
    axes[-1, 0].set_xlabel("time (ms)")
    axes[-1, 0].set_xlim(0, r["n_steps"] * dt_ms)
    fig.suptitle(f"Spike raster, sample {r['sample']}")
    return _png(fig)


def compare_tables(cmp: dict) -> List[Tuple[str, List[str], List[List[str]]]]:
    """The tables of a compare record: agreement, metrics per backend, agreement per layer."""
    a, b = cmp["backends"][:2]
    rows = [
        ["backends", f"{a} vs {b}"],
        ["samples x steps", f"{cmp['samples']} x {cmp['n_steps']}"],
        ["spike agreement (all layers)", _f(cmp["spike_agreement"])],
        ["prediction agreement", _f(cmp["prediction_agreement"])],
        ["samples with identical spikes", f"{cmp['samples_with_identical_spikes']} of {cmp['samples']}"],
        ["output max |difference|", _f(cmp["output_max_abs_diff"])],
    ]
    for key in ("accuracy", "mean_iou"):
        for be, v in (cmp.get(key) or {}).items():
            rows.append([f"{key.replace('_', ' ')} ({be}, on these {cmp['samples']} samples)", _f(v)])
    layers = [[l["name"], _f(l["spike_agreement"]), _f(l["spikes_a"]), _f(l["spikes_b"]), _f(l["samples_identical"])]
              for l in cmp["layers"]]  # fmt: skip
    return [
        (f"{a} vs {b}", ["quantity", "value"], rows),
        ("Agreement per layer", ["layer", "spike agreement", f"spikes ({a})", f"spikes ({b})", "samples identical"], layers),
    ]


def recommendation_table(rec: dict):
    """(title, columns, rows) of a sweep's recommendation (toolchain/analysis/recommend.py)."""
    metric = rec.get("metric", "accuracy").replace("_", " ")
    rows = []
    lava = any(c.get("lava") for c in rec.get("per_dt", []))  # sweep --lava-check N
    for c in rec.get("per_dt", []):
        rows.append([
            f"{c['dt'] * 1e3:g} ms", f"{c['rho']:g}", c["method"], _f(c["metric"]),
            "n/a" if c.get("loss") is None else ("0" if abs(c["loss"]) < 5e-4 else f"{-c['loss']:+.3f}"),
            _joules(c["energy_per_inference_j"]) if c.get("energy_per_inference_j") is not None else "n/a",
            "n/a" if c.get("latency_per_inference_s") is None else f"{c['latency_per_inference_s'] * 1e3:.3g} ms",
            _f(c.get("spikes_per_inference")),
            ", ".join(f"{x['method']} {x['metric']:.3f}" for x in c.get("candidates", [])[1:]),
        ] + ([_lava_cell(c.get("lava"))] if lava else []))  # fmt: skip
    src = rec.get("source_dt")
    title = (f"Best zero-shot method per target dt (trained at {src * 1e3:g} ms; rule: {rec.get('rule', '')})"
             if src else "Best zero-shot method per target dt")  # fmt: skip
    cols = ["target dt", "rho", "method", metric, "change vs trained dt", "energy / inference",
            "latency / inference", "spikes / inference", "other methods"]  # fmt: skip
    if lava:
        cols.append("Lava agreement")
    return (title, cols, rows)


def _lava_cell(lava: Optional[dict]) -> str:
    """A per_dt entry's Lava agreement: predictions agreeing / samples and the spike agreement."""
    if not lava:
        return "not run"
    if lava.get("error"):
        return f"{lava['backend']}: could not run ({lava['error']})"
    n = lava["samples"]
    return (f"{lava['backend']} vs {lava['against']}: {round(lava['prediction_agreement'] * n)}/{n} predictions, "
            f"spikes {lava['spike_agreement']:.4f}")


def plot_front(sweep: dict) -> Optional[bytes]:
    """Accuracy against energy per inference for every cell, the recommendation's front marked."""
    rec = sweep.get("recommendation") or {}
    metric = rec.get("metric", "accuracy")
    pts = []
    for r in sweep["rows"]:
        e = default_energy(r.get("record") or {}) if isinstance(r.get("record"), dict) else None
        if e is None or r.get(metric) is None:
            continue
        pts.append((r["method"], float(r["dt"]), float(e["total_j"]), float(r[metric])))
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolchain.reports.plots import color_of, method_order

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for m in method_order(p[0] for p in pts):
        xs = [p[2] * 1e6 for p in pts if p[0] == m]
        ys = [p[3] for p in pts if p[0] == m]
        ax.scatter(xs, ys, label=m, color=color_of(m), s=28, alpha=0.8)
    front = sorted((c["energy_per_inference_j"] * 1e6, c["metric"]) for c in rec.get("pareto", []))
    if front:
        ax.plot([f[0] for f in front], [f[1] for f in front], "k--", lw=1, label="front")
    for c in rec.get("per_dt", []):
        if c.get("energy_per_inference_j") is not None:
            ax.annotate(f"{c['dt'] * 1e3:g} ms", (c["energy_per_inference_j"] * 1e6, c["metric"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (uJ, default model)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title("accuracy-energy front (labels: the recommended cell per target dt)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_sweep(sweep: dict) -> Dict[str, bytes]:
    """Metric, spikes and energy against the timestep (toolchain/reports/plots.py conventions)."""
    from toolchain.reports.plots import sweep_figures

    def energy_of(r):
        e = default_energy(r.get("record") or {})
        return None if e is None else e["total_j"] * 1e6

    def dyn_of(r):
        e = default_energy(r.get("record") or {})
        return None if e is None else e["dynamic_j"] * 1e6

    return sweep_figures(sweep, energy_of, dyn_of)


# --------------------------------------------------------------------------- writers
def _caveats(rec: Optional[dict]) -> List[str]:
    items = [
        "Synaptic operations use NeuroBench 2.3.0's definitions (Dense, Effective_ACs, Effective_MACs; summed over time steps, bias excluded, non-binary inputs count as MACs).",
        "Energy figures are estimates: counted events times published per-event costs; they are not measurements.",
        "Loihi 1 per-event costs (Davies et al. 2018; SANA-FE's fit) are applied to Loihi 2 only as an estimate: Intel publishes no Loihi 2 per-operation table.",
        "loihi2-pilotnet (the default) is calibrated on one measurement, lava-dl's PilotNet LIF on Loihi 2: measured static power (0.232 W), a time scale and a dynamic-energy scale fitted to its 152.9 us per step and 1.09 mJ per inference (loihi2_pilotnet.toml); it is not validated on a second network. loihi2-estimate is the uncalibrated model (0.25 W, Loihi 1 latencies), kept for reference.",
        "The ANN convention (Horowitz 2014, 45 nm) counts arithmetic only: memory traffic and static power are left out.",
        "Chip resources use the Loihi 2 limits and allocation rule in loihi2_pilotnet.toml [chip] (fitted to Lava's compiler on PilotNet: 74 cores, exact per layer); the axon limits are Loihi 1's (unconfirmed for Loihi 2).",
    ]
    if rec:
        e = rec.get("energy") or {}
        for m in e.get("models", []):
            if m.get("calibrated_on"):
                items.append(f"{m['name']}: calibrated on {m['calibrated_on']}.")
            if m.get("unconfirmed"):
                items.append(f"{m['name']}: costs not confirmed against their source: {', '.join(m['unconfirmed'])}.")
        if not (rec.get("metrics") or {}).get("complete", True):
            items.append("The input connections' effective operations are missing (the run record was written without the input); totals of effective operations are partial.")
    return items


def demo_table(summary: dict):
    """The demo's accuracy and agreement, each number with the samples it was computed on
    (``demo_summary.json`` of toolchain/demo.py)."""
    tv, rl, acc = summary["torch_vs_reference"], summary["reference_vs_lava_float"], summary["accuracy"]
    n, m = tv["samples"], rl["samples"]
    rows = [
        ["torch (norse, the trained model)", f"all {n} test samples", _f(acc["torch"]),
         f"spikes {_f(tv['spike_agreement'])}, predictions {_f(tv['prediction_agreement'])}"],
        ["reference (nirdeploy, float64)", f"all {n} test samples", _f(acc["reference"]), "-"],
        ["reference on Lava's samples", f"first {m} test samples", _f(acc["reference_on_lava_subset"]), "-"],
        ["lava-float (Lava's CPU simulator)", f"first {m} test samples", _f(acc["lava-float"]),
         f"spikes {_f(rl['spike_agreement'])}, predictions {_f(rl['prediction_agreement'])}, "
         f"identical spikes in {rl['samples_with_identical_spikes']}/{m} samples"],
    ]  # fmt: skip
    return ("accuracy and agreement with the reference", ["model / backend", "computed on", "accuracy",
                                                          "agreement with the reference"], rows)  # fmt: skip


def build_report(
    path: str,
    out_html: str,
    out_md: Optional[str] = None,
    energy_models: Optional[Sequence[str]] = None,
    demo: Optional[dict] = None,
) -> Dict[str, object]:
    """Write the HTML (and Markdown) report of a run record or sweep; returns paths and tables.
    ``demo``: the demo's summary, shown first (torch vs reference vs Lava, with the samples)."""
    kind, data = load_input(path)
    sweep = data if kind == "sweep" else None
    cmp = data if kind == "compare" else None
    if cmp is not None:  # per-run sections: the first backend's run (the compare record keeps every run)
        runs = cmp.get("runs") or {}
        rec = next((runs[b] for b in cmp["backends"] if b in runs), None)
    else:
        rec = _pick_run(sweep) if sweep else data
    if rec is not None:
        rec = with_energy_models(rec, energy_models)
    if sweep and energy_models:
        sweep = dict(sweep)
        sweep["rows"] = [dict(r, record=with_energy_models(r["record"], energy_models)) if isinstance(r.get("record"), dict) else r for r in sweep["rows"]]

    sections: List[Tuple[str, List, List[Tuple[str, bytes]]]] = []  # (id, tables, images)
    if demo is not None:
        sections.append(("demo", [demo_table(demo)], []))
    if cmp is not None:
        sections.append(("comparison", compare_tables(cmp), []))
    if sweep and sweep.get("recommendation"):  # the deployment answer first
        rtab = recommendation_table(sweep["recommendation"])
        front = plot_front(sweep)
        sections.append(("recommendation", [rtab], [("front", front)] if front else []))
    tabs = run_tables(rec) if rec else {}
    if "summary" in tabs:
        sections.append(("summary", tabs["summary"], []))
    if sweep:
        imgs = plot_sweep(sweep)
        sections.append(("sweep", [sweep_table(sweep)], list(imgs.items())))
    for sid in ("segmentation", "metrics", "synops", "energy", "ann", "resources"):
        if sid in tabs:
            sections.append((sid, tabs[sid], []))
    if rec:
        sections.append(("plots", [], list(plot_layers(rec).items())))
        ras = plot_raster(rec)
        if ras:
            sections.append(("raster", [], [("raster", ras)]))
    title = f"nirdeploy report: {os.path.basename(os.path.normpath(path))}"
    caveats = _caveats(rec)

    page = _html(title, sections, caveats, kind, sweep is not None and rec is not None)
    with atomic_write(out_html, "w") as f:  # every file goes to a temporary name and is renamed into place
        f.write(page)
    written = {"html": out_html}
    if out_md:
        stem = os.path.splitext(os.path.basename(out_md))[0]
        img_dir = os.path.join(os.path.dirname(os.path.abspath(out_md)), stem + "_files")
        os.makedirs(img_dir, exist_ok=True)
        text = _markdown(title, sections, caveats, img_dir, stem + "_files")
        with atomic_write(out_md, "w") as f:
            f.write(text)
        written["md"] = out_md
    return {"kind": kind, "paths": written, "record": rec, "sweep": sweep, "compare": cmp,
            "sections": [s[0] for s in sections]}


def _html(title, sections, caveats, kind, picked) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.6em 0 1.4em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}h2{border-bottom:2px solid #3b6ea8}"
        "img{max-width:100%;margin:.5em 0}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if kind == "sweep" and picked:
        parts.append("<p>Per-run sections show the sweep's run at the source timestep (or its most accurate run).</p>")
    for sid, tables, images in sections:
        parts.append(f"<section id='{sid}'><h2>{e(SECTION_TITLES[sid])}</h2>")
        for ttl, cols, rows in tables:
            parts.append(f"<h3>{e(ttl)}</h3><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
            for r in rows:
                parts.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>")
            parts.append("</table>")
        for name, png in images:
            b64 = base64.b64encode(png).decode()
            parts.append(f"<img id='img-{name}' alt='{e(name)}' src='data:image/png;base64,{b64}'>")
        parts.append("</section>")
    parts.append(f"<section id='caveats'><h2>{SECTION_TITLES['caveats']}</h2><ul>")
    parts += [f"<li>{e(c)}</li>" for c in caveats]
    parts.append("</ul><p>Definitions, formulas and sources: docs/metrics-and-energy.md.</p></section></body></html>\n")
    return "\n".join(parts)


_MD_SPECIAL = "\\`*_{}[]<>()#+!|"


def md_escape(v) -> str:
    """A table cell as literal Markdown text: node names like ``[foo]`` or ``a|b`` stay as written."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(v)).replace("\n", " ")


def _markdown(title, sections, caveats, img_dir, img_rel) -> str:
    lines = [f"# {title}", ""]
    for sid, tables, images in sections:
        lines += [f"## {SECTION_TITLES[sid]}", ""]
        for ttl, cols, rows in tables:
            lines += [f"### {ttl}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(md_escape(v) for v in r) + " |" for r in rows]
            lines.append("")
        for name, png in images:
            with atomic_write(os.path.join(img_dir, name + ".png"), "wb") as f:
                f.write(png)
            lines += [f"![{name}]({img_rel}/{name}.png)", ""]
    lines += [f"## {SECTION_TITLES['caveats']}", ""] + [f"- {c}" for c in caveats]
    lines += ["", "Definitions, formulas and sources: docs/metrics-and-energy.md.", ""]
    return "\n".join(lines)


def print_summary(result: Dict[str, object], console=None) -> None:
    """The report's tables in the terminal (rich)."""
    from toolchain.reports.console import table

    if console is None:
        from toolchain.reports.console import console as new_console

        console = new_console()

    def show(ttl, cols, rows):  # numbers kept whole at 80 columns (toolchain/reports/console.py)
        console.print(table(ttl, cols, [[str(v) for v in r] for r in rows]))

    if result.get("compare"):
        for t in compare_tables(result["compare"]):
            show(*t)
    if result.get("sweep"):
        if result["sweep"].get("recommendation"):
            show(*recommendation_table(result["sweep"]["recommendation"]))
        show(*sweep_table(result["sweep"]))
    rec = result.get("record")
    if rec:
        tabs = run_tables(rec)
        for sid in ("summary", "segmentation", "metrics", "synops", "energy", "ann", "resources"):
            for ttl, cols, rows in tabs.get(sid, []):
                if sid == "synops" and ttl == "Static metrics":
                    continue
                show(ttl, cols, rows)
