"""Energy per inference from counted events and published per-event costs (models as data).

An energy model is a small TOML file (``toolchain/analysis/energy_models/*.toml`` or the user's own)
with a cost per event kind, each with its source and status (confirmed / unconfirmed /
assumption / derived), optionally a static power and the per-event latencies that give the time
per step. Event kinds, all per inference (per sample), counted by :mod:`toolchain.analysis.metrics`:

``synop_dense`` / ``synop_conv``  synaptic operations (NeuroBench Effective_ACs + Effective_MACs)
                                  of dense (Affine/Linear) and convolutional connections
``neuron_update``                 every neuron at every time step
``neuron_update_active``          neuron updates with input, a spike or a constant drive
``neuron_update_inactive``        the other neuron updates
``spike``                         spikes emitted
``message``                       spike messages: one per spike and destination core

    dynamic = dynamic_scale x sum_kind events_kind x cost_kind
    time per step = step_overhead + max over layers of
                    sum_kind (events_kind x time_kind) x time_scale / (steps x cores of the layer)
    static  = static power x chips x time per step x steps

``dynamic_scale`` (``[dynamic] scale``, default 1) and ``time_scale`` are the two constants a
calibrated model fits to a measurement (``loihi2_pilotnet.toml``: lava-dl's PilotNet LIF on
Loihi 2); its ``[calibration]`` table names the measurement, and every estimate of such a model
carries it as ``calibrated_on``.

The ANN baseline (``kind = "ann"``) charges the network's MACs as if it ran as an ANN.
See docs/metrics-and-energy.md.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import numpy as np

from toolchain.errors import NirDeployError

MODEL_DIR = Path(__file__).resolve().parent / "energy_models"
EVENT_KINDS = (
    "synop_dense",
    "synop_conv",
    "neuron_update",
    "neuron_update_active",
    "neuron_update_inactive",
    "spike",
    "message",
)
ANN_KINDS = ("mac_fp32", "ac_fp32", "mac_int8", "ac_int8")
#: the event models written into every run record, in this order; the first is the headline
DEFAULT_MODELS = ("loihi2-pilotnet", "loihi2-estimate", "loihi1-sanafe", "loihi1-davies2018")
ANN_MODEL = "ann-horowitz2014"


def _toml_load(path) -> dict:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def available_models() -> Dict[str, Path]:
    """name -> shipped file."""
    out = {}
    for p in sorted(MODEL_DIR.glob("*.toml")):
        try:
            out[_toml_load(p).get("name", p.stem)] = p
        except Exception as e:
            raise NirDeployError(f"shipped energy model {p.name} is not valid TOML: {str(e).splitlines()[0]}") from None
    return out


def load_model(name_or_path: Union[str, os.PathLike]) -> dict:
    """A shipped model by name (e.g. ``loihi1-sanafe``) or a TOML file; checked."""
    s = str(name_or_path)
    shipped = available_models()
    if s in shipped:
        path = shipped[s]
    elif os.path.exists(s):
        path = Path(s)
    else:
        raise NirDeployError(
            f"energy model {s!r} is neither a file nor a shipped model ({', '.join(sorted(shipped))})"
        )
    try:
        m = _toml_load(path)
    except Exception as e:
        raise NirDeployError(f"cannot read energy model {path}: {str(e).splitlines()[0]}") from None
    m.setdefault("name", path.stem)
    m.setdefault("kind", "events")
    m["file"] = str(path)
    _check_model(m, path)
    return m


def _check_model(m: dict, path) -> None:
    kinds = ANN_KINDS if m["kind"] == "ann" else EVENT_KINDS
    if m["kind"] not in ("events", "ann"):
        raise NirDeployError(f"energy model {path}: kind must be 'events' or 'ann', not {m['kind']!r}")
    costs = m.get("costs")
    if not isinstance(costs, dict) or not costs:
        raise NirDeployError(f"energy model {path} has no [costs.<event>] tables")
    for k, c in costs.items():
        if k not in kinds:
            raise NirDeployError(f"energy model {path}: unknown event kind {k!r} (known: {', '.join(kinds)})")
        v = c.get("value") if isinstance(c, dict) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise NirDeployError(
                f"energy model {path}: [costs.{k}] needs a finite non-negative number 'value' (joules), got {v!r}"
            )
        if not c.get("source"):
            raise NirDeployError(f"energy model {path}: [costs.{k}] needs a 'source'")
    dyn = m.get("dynamic")
    if dyn is not None:
        sc = dyn.get("scale") if isinstance(dyn, dict) else None
        if isinstance(sc, bool) or not isinstance(sc, (int, float)) or not math.isfinite(sc) or sc <= 0:
            raise NirDeployError(f"energy model {path}: [dynamic] needs a finite positive number 'scale', got {sc!r}")
    st = m.get("static")
    if st is not None:
        pw = st.get("power_w") if isinstance(st, dict) else None
        if isinstance(pw, bool) or not isinstance(pw, (int, float)) or not math.isfinite(pw) or pw < 0:
            raise NirDeployError(f"energy model {path}: [static] needs a finite non-negative number 'power_w', got {pw!r}")


# --------------------------------------------------------------------------- events
def _synops(block: dict) -> (float, bool):
    if block.get("Effective_ACs") is not None:
        return float(block["Effective_ACs"]) + float(block["Effective_MACs"]), True
    return float(block.get("Effective_ACs_known", 0.0)) + float(block.get("Effective_MACs_known", 0.0)), False


def layer_events(layer: dict) -> Dict[str, float]:
    """Events per inference of one metrics layer entry."""
    sd, ok_d = _synops(layer["synops_by_kind"]["dense"])
    sc, ok_c = _synops(layer["synops_by_kind"]["conv"])
    upd = float(layer["neuron_updates"])
    act = layer.get("active_updates")
    act = upd if act is None else float(act)
    bu = layer.get("bias_unit") or {}  # Loihi's bias units: one spike per step each, one synop per weight
    sd += float(bu.get("synops_per_sample", 0.0))
    return {
        "synop_dense": sd,
        "synop_conv": sc,
        "neuron_update": upd,
        "neuron_update_active": act,
        "neuron_update_inactive": upd - act,
        "spike": (float(layer["spikes_per_sample"]) if layer.get("spiking") else 0.0) + float(bu.get("spikes_per_sample", 0.0)),
        "message": float(layer.get("messages_per_sample") or 0.0),
        "_complete": ok_d and ok_c and layer.get("active_updates") is not None,
    }


def model_energy(metrics: dict, resources: Optional[dict], model: dict) -> dict:
    """Energy per inference of one event model: total, dynamic, static, per layer, per event kind."""
    if model["kind"] != "events":
        raise NirDeployError(f"{model['name']} is an ANN model; use ann_baseline")
    T = int(metrics["n_steps"])
    costs = model["costs"]
    timing = model.get("timing", {})
    scale = float(timing.get("time_scale", 1.0))
    dscale = float((model.get("dynamic") or {}).get("scale", 1.0))
    cores = {l["name"]: l["cores"] for l in (resources or {}).get("layers", [])}
    per_layer, by_kind = [], {k: 0.0 for k in costs}
    work = []
    complete = True
    for l in metrics["layers"]:
        ev = layer_events(l)
        complete &= ev.pop("_complete")
        e_kind = {k: ev[k] * c["value"] * dscale for k, c in costs.items()}
        for k, v in e_kind.items():
            by_kind[k] += v
        per_layer.append({"name": l["name"], "dynamic_j": sum(e_kind.values()), "by_kind_j": e_kind})
        t = sum(ev[k] * float(c.get("time_s", 0.0)) for k, c in costs.items()) * scale
        work.append(t / max(1, T) / max(1, cores.get(l["name"], 1)))
        per_layer[-1]["core_time_per_step_s"] = work[-1]  # the work of one of its cores per step
    dynamic = float(sum(by_kind.values()))
    out = {
        "name": model["name"],
        "title": model.get("title", model["name"]),
        "hardware": model.get("hardware"),
        "dynamic_j": dynamic,
        "static_j": 0.0,
        "total_j": dynamic,
        "by_kind_j": by_kind,
        "layers": per_layer,
        "complete": complete,
        "unconfirmed": sorted(k for k, c in costs.items() if c.get("status") not in ("confirmed",)),
        "file": os.path.basename(model.get("file", "")),
    }
    cal = model.get("calibration")
    if isinstance(cal, dict) and cal.get("measurement"):
        out["calibrated_on"] = str(cal["measurement"])
    st = model.get("static")
    if st is not None or timing:
        t_step = float(timing.get("step_overhead_s", 0.0)) + (max(work) if work else 0.0)
        out["time_per_step_s"] = t_step
        out["bottleneck_layer"] = per_layer[int(np.argmax(work))]["name"] if work else None
        out["time_per_inference_s"] = t_step * T
    if st is not None:
        chips = int((resources or {}).get("totals", {}).get("chips", 1) or 1)
        static = float(st["power_w"]) * chips * out["time_per_step_s"] * T
        out.update({"static_j": static, "total_j": dynamic + static, "static_power_w": float(st["power_w"]), "chips": chips})
        for pl in per_layer:  # static energy is not attributed to layers
            pl["static_j"] = None
    return out


def ann_baseline(metrics: dict, model: Optional[dict] = None) -> dict:
    """The same network as an ANN (Horowitz costs) vs the SNN under the same arithmetic convention."""
    model = model or load_model(ANN_MODEL)
    c = {k: v["value"] for k, v in model["costs"].items()}
    tot = metrics["totals"]
    T = int(metrics["n_steps"])
    dense = float(tot["Dense"])
    acs = tot["Effective_ACs"] if tot.get("Effective_ACs") is not None else tot.get("Effective_ACs_known", 0.0)
    macs = tot["Effective_MACs"] if tot.get("Effective_MACs") is not None else tot.get("Effective_MACs_known", 0.0)
    out = {
        "name": model["name"],
        "title": model.get("title"),
        "convention": "per_step",
        "convention_note": (
            "per_step: the ANN evaluates every connection at every time step (MACs = NeuroBench Dense), as a "
            "recurrent/streaming ANN must for inputs that change over time; once_per_inference: every connection "
            "once (Dense / steps), the convention of SNN papers on static images (Kim et al. 2021). Memory "
            "traffic and static power are left out by this convention."
        ),
        "macs_per_step_convention": dense,
        "macs_once_per_inference": dense / max(1, T),
        "snn_effective_acs": float(acs),
        "snn_effective_macs": float(macs),
        "complete": tot.get("Effective_ACs") is not None,
        "unconfirmed": sorted(k for k, v in model["costs"].items() if v.get("status") != "confirmed"),
    }
    for prec in ("fp32", "int8"):
        mac, ac = c.get(f"mac_{prec}"), c.get(f"ac_{prec}")
        if mac is None:
            continue
        out[f"ann_{prec}_j"] = dense * mac
        out[f"ann_{prec}_once_j"] = dense / max(1, T) * mac
        out[f"snn_{prec}_j"] = float(acs) * (ac or 0.0) + float(macs) * mac
    return out


def energy_section(
    metrics: dict,
    resources: Optional[dict],
    models: Optional[Iterable[Union[str, dict]]] = None,
    ann_model: Optional[Union[str, dict]] = None,
) -> dict:
    """The ``energy`` section of a run record."""
    names = list(models) if models is not None else list(DEFAULT_MODELS)
    loaded = [m if isinstance(m, dict) else load_model(m) for m in names]
    results = [model_energy(metrics, resources, m) for m in loaded if m["kind"] == "events"]
    ann = ann_model if isinstance(ann_model, dict) else load_model(ann_model or ANN_MODEL)
    return {
        "unit": "joules per inference (one sample)",
        "default": results[0]["name"] if results else None,
        "models": results,
        "ann": ann_baseline(metrics, ann),
        "caveats": [
            "Estimates from counted events and published per-event costs, not measurements.",
            "Loihi 1 figures applied to Loihi 2 only as an estimate (no public Loihi 2 per-event table).",
            "Network hops between tiles are not modelled (no placement).",
            "ANN convention: arithmetic only; memory traffic and static power left out.",
        ],
    }
