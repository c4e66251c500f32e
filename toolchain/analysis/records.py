"""Run records (JSON): what a simulation produced, in a form people and scripts can read.

A run record holds at least ``backend``, ``dt``, ``samples``, ``accuracy`` (when labels exist)
and ``layers``: one entry per neuron layer with ``name``, ``type``, ``neurons``, ``spikes``
(total over all samples), ``spikes_per_sample`` and ``firing_rate`` (spikes per neuron per time
step; ``firing_rate_hz`` divides by dt). The fields are the dataclasses of
``toolchain/analysis/schema.py``, documented in docs/records.md.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from toolchain import __version__
from simulators.result import SimResult
from toolchain.analysis.schema import CompareRecord, RunRecord
from toolchain.errors import NirDeployError


def layer_stats(result: SimResult) -> list:
    rows = []
    n_s, T = result.n_samples, result.n_steps
    for name, typ in result.layer_types.items():
        n = int(result.layer_sizes.get(name, 0))
        spikes = int(result.spikes[name].sum()) if name in result.spikes else 0
        rate = spikes / max(1, n * T * n_s)
        rows.append(
            {
                "name": name,
                "type": typ,
                "neurons": n,
                "spikes": spikes,
                "spikes_per_sample": spikes / max(1, n_s),
                "firing_rate": rate,
                "firing_rate_hz": rate / result.dt,
            }
        )
    return rows


def run_record(
    result: SimResult,
    program=None,
    labels: Optional[Sequence[int]] = None,
    readout: str = "sum",
    model: Optional[str] = None,
    data: Optional[Dict[str, Any]] = None,
    extra: Optional[Dict[str, Any]] = None,
    inputs=None,
    metrics: bool = True,
    energy_models=None,
    raster_events: int = 5000,
    targets=None,
    class_names: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """The run record of ``result``.

    With ``program`` (and ``metrics=True``) the record also gets ``metrics`` (NeuroBench-style
    activity metrics, see toolchain/analysis/metrics.py), ``resources`` (Loihi 2 cores and chips),
    ``energy`` (the default energy models, or ``energy_models``: names or TOML files) and
    ``raster`` (spike events of sample 0). ``inputs`` (the simulated input
    [samples, steps, ...]) lets the connections that read the input count their operations.

    ``targets`` (per-pixel masks ``[samples, H, W]``) make it a segmentation record: a
    ``segmentation`` section (mean IoU, per-class IoU, pixel accuracy; toolchain/analysis/segmentation.py)
    instead of the image-level ``accuracy`` and ``predictions``.
    """
    seg = None
    if targets is not None:  # segmentation: the output is a per-pixel score map
        from toolchain.analysis.segmentation import segmentation_section

        seg = segmentation_section(result.output(), targets, readout, class_names=class_names)
        labels = None  # an image-level label is not what a per-pixel output predicts
    preds = result.predictions(readout) if seg is None else None
    rec: Dict[str, Any] = {
        "nirdeploy": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "backend": result.backend,
        "dt": float(result.dt),
        "samples": int(result.n_samples),
        "n_steps": int(result.n_steps),
        "readout": readout,
    }
    rec = {k: v for k, v in rec.items() if v is not None}
    if preds is not None:
        rec["predictions"] = [int(p) for p in preds]
    if seg is not None:
        rec["metric"] = "mean_iou"
        rec["segmentation"] = seg
    if labels is not None:
        labels = np.asarray(labels)
        n_out = int(np.prod(result.output().shape[2:]))
        if labels.size and (labels.min() < 0 or labels.max() >= n_out):
            raise NirDeployError(
                f"labels lie in [{int(labels.min())}, {int(labels.max())}] but the model has {n_out} outputs "
                f"(classes 0..{n_out - 1}): the data do not belong to this model"
            )
        if labels.shape[0] != result.n_samples:
            raise NirDeployError(f"{labels.shape[0]} labels for {result.n_samples} samples")
        rec["labels"] = [int(x) for x in labels]
        rec["accuracy"] = float(np.mean(preds == labels))
    layers = layer_stats(result)
    proj = result.info.get("cuba_error") or {}
    for row in layers:  # hardware backends: error of the projection onto Loihi's CUBA neuron
        if row["name"] in proj:
            row["projection_error"] = float(proj[row["name"]])
    rec["layers"] = layers
    rec["total_spikes_per_sample"] = float(sum(r["spikes_per_sample"] for r in layers))
    if program is not None:
        rec["discretization"] = program.disc.to_metadata()
        from toolchain.loihi.plan import loihi_mapping

        rec["loihi_mapping"] = _jsonable(loihi_mapping(program))
        if metrics:
            rec.update(activity_sections(result, program, inputs, energy_models, raster_events))
    if data:
        rec["data"] = data
    seconds = result.info.get("seconds")
    if seconds is not None:
        rec["timing"] = {
            "seconds": float(seconds),
            "samples_per_second": result.n_samples / seconds if seconds else None,
            "steps_per_second": result.n_samples * result.n_steps / seconds if seconds else None,
        }
    info = {k: v for k, v in result.info.items() if k != "seconds"}
    if info:
        rec["backend_info"] = _jsonable(info)
    notes = approximations(rec)
    if notes:
        rec["approximations"] = notes
    if extra:
        rec.update(_jsonable(extra))
    return RunRecord.from_dict(rec).to_dict()  # the schema (docs/records.md): checked, versioned


#: backends that run the Loihi mapping (CUBA form, bias units, fixed point)
LOIHI_BACKENDS = ("lava-float", "lava-fixed", "emulator")


def approximations(rec: Dict[str, Any]) -> List[Dict[str, Any]]:
    """What changed between the graph and what ran, each with its number (a run record's top level,
    printed by ``simulate`` and shown in the report): the projection onto Loihi's CUBA neuron
    (relative impulse-response error), fixed-point saturation (u wraps, v saturations), bias units
    and host readouts (exact, but the network that runs differs from the graph), calibration."""
    out: List[Dict[str, Any]] = []
    info = rec.get("backend_info") or {}
    if rec.get("backend") in LOIHI_BACKENDS:
        for node, err in sorted((info.get("cuba_error") or {}).items()):
            if err and float(err) > 0:
                out.append({"kind": "cuba_projection", "node": node, "value": float(err),
                            "message": f"{node}: projected onto Loihi's CUBA neuron, relative impulse-response "
                                       f"error {float(err):.3g} (the exact scheme's input reaches v within the step)"})  # fmt: skip
        for node, st in sorted((info.get("saturation") or {}).items()):
            w, v = int(st.get("u_wraps", 0)), int(st.get("v_saturations", 0))
            if w or v:
                out.append({"kind": "saturation", "node": node, "value": w + v,
                            "message": f"{node}: {w} u wraps and {v} v saturations in fixed point (24-bit state); "
                                       f"quantize with calibration data (deploy --data) to avoid them"})  # fmt: skip
        for node, u in sorted(((rec.get("loihi_mapping") or {}).get("bias_units") or {}).items()):
            out.append({"kind": "bias_unit", "node": node, "value": int(u["units"]),
                        "message": f"{node}: its constant input enters the synaptic current through {u['units']} "
                                   f"bias unit(s) with {u['synapses']} synapses (exact; counted in resources and energy)"})  # fmt: skip
        if rec.get("backend") in ("lava-fixed", "emulator"):
            from toolchain.loihi.quantize import KEEP_BITS, quantize_keep

            for node, k in sorted(((rec.get("loihi_mapping") or {}).get("reset_partial") or {}).items()):
                kq = int(quantize_keep(float(k)))
                q = kq / 2**KEEP_BITS
                out.append({"kind": "partial_reset", "node": node, "value": abs(q - float(k)),
                            "message": f"{node}: the partial reset keeps {float(k):.6g} of the excess; in fixed point "
                                       f"{kq}/{2**KEEP_BITS} = {q:.6g}, rounded down to the state's integer"})  # fmt: skip
    for node in (rec.get("loihi_mapping") or {}).get("host_readout") or []:
        out.append({"kind": "host_readout", "node": node, "value": None,
                    "message": f"{node}: non-spiking, so a .net runs it on the host from the chip's output spikes "
                               f"(in Loihi's integers, exact)"})  # fmt: skip
    calib = info.get("calibration") or rec.get("calibration")
    if calib:
        out.append({"kind": "calibration", "node": None, "value": None,
                    "message": f"fixed-point scales calibrated on {calib if isinstance(calib, str) else 'calibration data'}"})
    return out


def activity_sections(result: SimResult, program, inputs=None, energy_models=None, raster_events: int = 5000):
    """``metrics``, ``resources``, ``energy`` and ``raster`` for a run record.

    A failure here must not cost the user the run it follows: it is recorded as
    ``metrics_error`` instead (and the tests make sure it does not happen for supported graphs).
    """
    from toolchain.analysis import energy as _energy
    from toolchain.analysis import metrics as _metrics
    from toolchain.analysis import resources as _resources

    out: Dict[str, Any] = {}
    try:
        m = _metrics.activity_metrics(result, program, inputs=inputs)
        res = _resources.chip_resources(program)
        msgs = _resources.messages_per_sample(m, res)
        for layer in m["layers"]:
            layer["messages_per_sample"] = msgs.get(layer["name"], 0.0)
        m["totals"]["messages_per_sample"] = float(sum(msgs.values()))
        out["metrics"] = _metrics.compact(m)
        out["resources"] = _resources.compact(res)
        out["energy"] = _energy.energy_section(out["metrics"], out["resources"], energy_models)
    except Exception as e:  # pragma: no cover - reported, never silent
        if isinstance(e, NirDeployError):
            raise
        out["metrics_error"] = f"{type(e).__name__}: {e}"
    out["raster"] = _metrics.raster(result, max_events=raster_events)
    return out


def compare_results(a: SimResult, b: SimResult, readout: str = "sum") -> Dict[str, Any]:
    """Agreement between two backends that ran the same inputs."""
    if a.n_samples != b.n_samples or a.n_steps != b.n_steps:
        raise ValueError("results cover different samples or steps")
    per_layer = []
    equal = total = 0
    for name in a.spikes:
        if name not in b.spikes:
            continue
        sa, sb = a.spikes[name].astype(bool), b.spikes[name].astype(bool)
        eq = int((sa == sb).sum())
        per_layer.append(
            {
                "name": name,
                "spike_agreement": eq / sa.size,
                "spikes_a": int(sa.sum()),
                "spikes_b": int(sb.sum()),
                "samples_identical": int(np.all((sa == sb).reshape(sa.shape[0], -1), axis=1).sum()),
            }
        )
        equal += eq
        total += sa.size
    pa, pb = a.predictions(readout), b.predictions(readout)
    out_a, out_b = a.output().astype(np.float64), b.output().astype(np.float64)
    per_sample = np.ones(a.n_samples, dtype=bool)
    for name in a.spikes:
        if name in b.spikes:
            per_sample &= np.all((a.spikes[name] == b.spikes[name]).reshape(a.n_samples, -1), axis=1)
    return CompareRecord.from_dict({
        "backends": [a.backend, b.backend],
        "samples": int(a.n_samples),
        "n_steps": int(a.n_steps),
        "spike_agreement": equal / total if total else 1.0,
        "prediction_agreement": float(np.mean(pa == pb)),
        "samples_with_identical_spikes": int(per_sample.sum()),
        "output_max_abs_diff": float(np.max(np.abs(out_a - out_b))) if out_a.size else 0.0,
        "layers": per_layer,
    }).to_dict()


def compare_backends(program, x, labels=None, backends: Sequence[str] = ("reference", "lava-float"),
                     readout: str = "sum", progress: bool = False, model=None, data=None, targets=None,
                     class_names=None, profile: Optional[str] = None, workers: Optional[int] = None,
                     executor: Optional[str] = None, ray_address: Optional[str] = None):  # fmt: skip
    """Run two backends on the same inputs: ``(compare record, {backend: run record})``; the
    machinery of ``toolchain.api.compare`` (and of ``sweep --lava-check``). ``workers`` > 1: Lava
    backends run their samples in that many shards (simulators/shards.py)."""
    from simulators.shards import run_with_workers

    if len(backends) != 2:
        raise NirDeployError(f"compare takes two backends, got {len(backends)}")
    results = [run_with_workers(b, program, x, workers, progress=progress, profile=profile, executor=executor,
                                ray_address=ray_address) for b in backends]  # fmt: skip
    cmp = compare_results(results[0], results[1], readout)
    records = {
        r.backend: run_record(r, program, labels=labels, readout=readout, model=model, data=data, inputs=x,
                              targets=targets, class_names=class_names)  # fmt: skip
        for r in results
    }
    if labels is not None and targets is None:
        cmp["accuracy"] = {b: records[b]["accuracy"] for b in backends}
    if targets is not None:  # segmentation
        cmp["mean_iou"] = {b: records[b]["segmentation"]["mean_iou"] for b in backends}
    return cmp, records


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def write_json(obj: Dict[str, Any], path: str) -> None:
    from toolchain.ir.atomic import atomic_write

    text = json.dumps(_jsonable(obj), indent=1)  # fails before any file is touched
    with atomic_write(path, "w") as f:
        f.write(text + "\n")
        f.write("\n")


def read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise NirDeployError(f"cannot read {path}: no such file") from None
    except json.JSONDecodeError as e:
        raise NirDeployError(f"{path} is not a JSON run record: {e}") from None
    except UnicodeDecodeError as e:
        raise NirDeployError(f"{path} is not a JSON run record: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except IsADirectoryError:
        raise NirDeployError(f"cannot read {path}: it is a directory") from None
