"""nirdeploy's Loihi 2 estimates beside Intel's measurement of lava-dl's PilotNet LIF.

Runs ``pilotnet_lif.net`` (lava-dl's ``tutorials/lava/lib/dl/netx/pilotnet_snn/network.net``) on
road-like frames (``toolchain/data/road_frames.py``) for 16 steps per frame from a reset state
(lava-dl's benchmark: ``reset_interval=16``), with the emulator (bit-exact to lava-fixed; the
first frame also on lava-fixed with ``--lava``), and writes the table of
docs/metrics-and-energy.md section 6: cores per layer against the compiler's table, time per step,
static and dynamic energy per inference against the measurement, with the ratio of each, for
the calibrated model (``loihi2-pilotnet``) and the uncalibrated estimate (``loihi2-estimate``).

    python -m examples.energy.pilotnet                      # table to stdout (8 frames)
    python -m examples.energy.pilotnet -o table.md --json out.json --lava
    python -m examples.energy.pilotnet --fit                # the constants of loihi2_pilotnet.toml

``--fit`` prints the two fitted constants (time scale, dynamic scale) and the residuals over the
frames that loihi2_pilotnet.toml records; the fit uses the uncalibrated event sums, so running it
on the calibrated file gives the same values.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from toolchain.errors import NirDeployError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_NET = REPO.parent / "shared" / "conformance" / "lava-dl" / "pilotnet_lif.net"
CALIBRATED = "loihi2-pilotnet"
ESTIMATE = "loihi2-estimate"
STEPS = 16  # lava-dl's benchmark: reset_interval=16


def input_transform_of(net_path) -> Tuple[float, float]:
    """The (weight, bias) of a ``.net`` input layer (SLAYER's input transform, which netx does not
    apply: lava-dl's dataset.py applies it to the image)."""
    from toolchain.loihi.netx_read import read_netx

    inp = read_netx(str(net_path)).layers[0]
    if inp.type != "input" or "weight" not in inp.extra:
        raise NirDeployError(f"{net_path}: the input layer carries no input transform (weight / bias)")
    w = float(np.asarray(inp.extra["weight"]).reshape(-1)[0])
    b = float(np.asarray(inp.extra.get("bias", 0.0)).reshape(-1)[0])
    return w, b


def pilotnet_inputs(net_path, frames: int = 8, seed: int = 0, steps: int = STEPS) -> np.ndarray:
    """Road-like frames through the file's input transform: ``[frames, steps, 3, 66, 200]`` biases."""
    from toolchain.data.road_frames import bias_inputs, pilotnet_bias, road_frames

    w, b = input_transform_of(net_path)
    return bias_inputs(pilotnet_bias(road_frames(frames, seed=seed), w, b), steps)


def frame_records(net_path, x: np.ndarray, backend: str = "emulator") -> List[Dict[str, Any]]:
    """Per frame: the activity metrics, and for each of the two Loihi 2 models its own chip
    resources (its ``[chip]`` allocation) and its energy estimate: ``{"metrics", "resources":
    {model: ...}, "energy": {model: ...}}``. The calibrated model's part is what a run record holds."""
    from toolchain import api
    from toolchain.analysis import energy as E
    from toolchain.analysis import metrics as M
    from toolchain.analysis import resources as R

    _, prog = api.load_netx(str(net_path))
    models = {name: E.load_model(name) for name in (CALIBRATED, ESTIMATE)}
    chips = {name: R.chip_resources(prog, m["chip"]) for name, m in models.items()}
    recs = []
    for i in range(x.shape[0]):
        r = api.simulate(prog, x[i : i + 1], backend)
        m = M.activity_metrics(r, prog, inputs=x[i : i + 1])
        rec: Dict[str, Any] = {"spikes_per_sample": float(sum(l["spikes_per_sample"] for l in m["layers"])),
                               "resources": {}, "energy": {}}  # fmt: skip
        for name, model in models.items():
            res = chips[name]
            msgs = R.messages_per_sample(m, res)
            mm = M.compact(m)
            mm["layers"] = [dict(l, messages_per_sample=msgs.get(l["name"], 0.0)) for l in mm["layers"]]
            rec["resources"][name] = R.compact(res)
            rec["energy"][name] = E.model_energy(mm, rec["resources"][name], model)
        recs.append(rec)
    return recs


def _model(rec: Dict[str, Any], name: str) -> Dict[str, Any]:
    return rec["energy"][name]


def fit(recs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The two constants of the calibrated model from the frames' mean, and the residuals per frame.

    The calibrated file's own constants are divided out, so the fit does not depend on them:
    raw work = (t_step - overhead) / time_scale, raw dynamic = dynamic / dynamic_scale."""
    from toolchain.analysis.energy import load_model

    m = load_model(CALIBRATED)
    cal = m["calibration"]
    ts0 = float(m["timing"]["time_scale"])
    ds0 = float(m["dynamic"]["scale"])
    ovh = float(m["timing"]["step_overhead_s"])
    work = np.array([(_model(r, CALIBRATED)["time_per_step_s"] - ovh) / ts0 for r in recs])
    dyn = np.array([_model(r, CALIBRATED)["dynamic_j"] / ds0 for r in recs])
    ts = (float(cal["time_per_step_s"]) - ovh) / float(work.mean())
    ds = float(cal["dynamic_energy_j"]) / float(dyn.mean())
    t_fit = ovh + ts * work
    d_fit = ds * dyn
    st_fit = float(m["static"]["power_w"]) * t_fit * int(cal["steps_per_inference"])
    cores = [l["cores"] for l in recs[0]["resources"][CALIBRATED]["layers"]]
    ref = list(cal["compiler_cores"])

    def rng(model, meas):  # model / measurement - 1: min and max over the frames
        q = np.asarray(model) / meas - 1.0
        return [round(float(q.min()), 4), round(float(q.max()), 4)]

    return {
        "fitted_time_scale": round(ts, 4),
        "fitted_dynamic_scale": round(ds, 4),
        "frames": len(recs),
        "residual_time_per_step": rng(t_fit, float(cal["time_per_step_s"])),
        "residual_dynamic_energy": rng(d_fit, float(cal["dynamic_energy_j"])),
        "residual_static_energy": rng(st_fit, float(cal["static_energy_j"])),
        "residual_cores_per_layer": round(max(abs(c / r - 1) for c, r in zip(cores, ref)), 4),
        "residual_cores_total": round(sum(cores) / sum(ref) - 1, 4),
    }


def comparison(recs: Sequence[Dict[str, Any]], steps: int = STEPS) -> Dict[str, Any]:
    """Mean over the frames of every estimate beside the measurement, with ratios (estimate / measured)."""
    from toolchain.analysis.energy import load_model

    cal = load_model(CALIBRATED)["calibration"]
    res = recs[0]["resources"][CALIBRATED]
    est = recs[0]["resources"][ESTIMATE]
    layers = [
        {"layer": l["name"], "neurons": l["neurons"], "cores": l["cores"], "compiler_cores": int(c),
         "neurons_per_core": l["neurons_per_core"], "compiler_neurons_per_core": int(npc),
         "ratio": l["cores"] / c, "estimate_cores": le["cores"]}  # fmt: skip
        for l, le, c, npc in zip(res["layers"], est["layers"], cal["compiler_cores"], cal["compiler_neurons_per_core"])
    ]
    models = {}
    for name in (CALIBRATED, ESTIMATE):
        ms = [_model(r, name) for r in recs]
        t = float(np.mean([m["time_per_step_s"] for m in ms]))
        st = float(np.mean([m["static_j"] for m in ms]))
        dy = float(np.mean([m["dynamic_j"] for m in ms]))
        models[name] = {
            "time_per_step_s": t, "static_j": st, "dynamic_j": dy, "total_j": st + dy,
            "ratio_time_per_step": t / cal["time_per_step_s"], "ratio_static": st / cal["static_energy_j"],
            "ratio_dynamic": dy / cal["dynamic_energy_j"], "ratio_total": (st + dy) / cal["total_energy_j"],
        }  # fmt: skip
    spikes = float(np.mean([r["spikes_per_sample"] for r in recs]))
    return {
        "measurement": cal["measurement"],
        "inputs": f"{len(recs)} road-like frames (toolchain/data/road_frames.py), {steps} steps each from a reset state",
        "spikes_per_inference": spikes,
        "layers": layers,
        "cores_total": int(sum(l["cores"] for l in layers)),
        "estimate_cores_total": int(sum(l["estimate_cores"] for l in layers)),
        "compiler_cores_total": int(sum(cal["compiler_cores"])),
        "measured": {k: cal[k] for k in ("time_per_step_s", "static_energy_j", "dynamic_energy_j", "total_energy_j")},
        "models": models,
    }


def markdown(cmp: Dict[str, Any], agree: Optional[str] = None) -> str:
    """The tables of docs/metrics-and-energy.md section 6."""
    lines = [
        f"Inputs: {cmp['inputs']}; mean spikes per inference {cmp['spikes_per_inference']:,.0f}."
        + (f" {agree}" if agree else ""),
        "",
        "| layer | neurons | cores (loihi2-pilotnet) | cores (Lava compiler) | ratio | neurons per core (nirdeploy / compiler) | cores (loihi2-estimate) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for l in cmp["layers"]:
        lines.append(f"| {l['layer']} | {l['neurons']:,} | {l['cores']} | {l['compiler_cores']} | {l['ratio']:.2f} "
                     f"| {l['neurons_per_core']} / {l['compiler_neurons_per_core']} | {l['estimate_cores']} |")  # fmt: skip
    lines.append(f"| **total** | | **{cmp['cores_total']}** | **{cmp['compiler_cores_total']}** "
                 f"| **{cmp['cores_total'] / cmp['compiler_cores_total']:.2f}** | | {cmp['estimate_cores_total']} |")  # fmt: skip
    ms = cmp["measured"]
    lines += [
        "",
        "| quantity | measured (Intel) | loihi2-pilotnet (calibrated) | ratio | loihi2-estimate (uncalibrated) | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [("time per step", "time_per_step_s", 1e6, "us", "ratio_time_per_step"),
            ("static energy per inference", "static_energy_j", 1e3, "mJ", "ratio_static"),
            ("dynamic energy per inference", "dynamic_energy_j", 1e3, "mJ", "ratio_dynamic"),
            ("total energy per inference", "total_energy_j", 1e3, "mJ", "ratio_total")]  # fmt: skip
    key = {"time_per_step_s": "time_per_step_s", "static_energy_j": "static_j", "dynamic_energy_j": "dynamic_j",
           "total_energy_j": "total_j"}  # fmt: skip
    for label, k, f, unit, rk in rows:
        c, e = cmp["models"][CALIBRATED], cmp["models"][ESTIMATE]
        lines.append(f"| {label} | {ms[k] * f:.4g} {unit} | {c[key[k]] * f:.4g} {unit} | {c[rk]:.2f} "
                     f"| {e[key[k]] * f:.4g} {unit} | {e[rk]:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def lava_agreement(net_path, x: np.ndarray) -> str:
    """Spikes of the first frame on lava-fixed (lava-dl netx on Lava's fixed_pt models) vs the emulator."""
    from toolchain import api

    _, prog = api.load_netx(str(net_path))
    a = api.simulate(prog, x[:1], "emulator")
    b = api.simulate(prog, x[:1], "lava-fixed")
    same = all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes)
    n = int(sum(a.spikes[k].sum() for k in a.spikes))
    return (f"Frame 0 on lava-fixed (Lava {x.shape[1]} steps): {'identical' if same else 'DIFFERENT'} spikes "
            f"in every layer ({n:,} spikes).")  # fmt: skip


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m examples.energy.pilotnet", description=__doc__.split("\n")[0])
    ap.add_argument("--net", default=str(DEFAULT_NET), help="pilotnet_lif.net (default: the shared conformance copy)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--lava", action="store_true", help="also run frame 0 on lava-fixed and compare the spikes")
    ap.add_argument("--fit", action="store_true", help="print the fitted constants and residuals")
    ap.add_argument("-o", "--output", help="write the Markdown tables here")
    ap.add_argument("--json", help="write the comparison (and fit) as JSON here")
    a = ap.parse_args(argv)
    try:
        if not Path(a.net).exists():
            raise NirDeployError(f"{a.net} not found (the shared conformance files: shared/conformance/lava-dl/)")
        x = pilotnet_inputs(a.net, a.frames, a.seed, a.steps)
        recs = frame_records(a.net, x)
        cmp = comparison(recs, a.steps)
        agree = lava_agreement(a.net, x) if a.lava else None
        md = markdown(cmp, agree)
        out: Dict[str, Any] = {"comparison": cmp}
        if a.fit:
            out["fit"] = fit(recs)
            print(json.dumps(out["fit"], indent=1))
        if a.output:
            Path(a.output).write_text(md)
        print(md)
        if a.json:
            Path(a.json).write_text(json.dumps(out, indent=1))
    except NirDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
