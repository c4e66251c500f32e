"""Chip resources: neurons, synapses, fan-in/fan-out per layer and the Loihi 2 cores and chips.

The per-core limits come from the ``[chip]`` section of an energy-model file (default:
``toolchain/analysis/energy_models/loihi2_pilotnet.toml``, :data:`DEFAULT_CHIP_MODEL`), where each
limit carries its source and whether it is confirmed. Every neuron layer gets its own cores. With
``allocation = "blocks"`` (loihi2_estimate.toml) neurons are split into contiguous blocks and a
layer needs

    cores = max(ceil(neurons / neurons_per_core),
                ceil(dense synapses in / dense_synapses_per_core))

(a convolution stores its kernel once per core, so only its neurons count). With
``allocation = "x-slices"`` (the default, fitted to Lava's compiler on lava-dl's PilotNet: it
reproduces the compiler's 74 cores layer by layer) a (C, H, W) layer is cut along W into slices
of b columns with all channels and rows, b the largest power of two with b x C x H <=
``slice_neurons_per_core`` (:func:`x_slices`); other layers as above. A layer whose cores
would each need more input axons (distinct presynaptic neurons) than ``axons_in_per_core`` does
not fit as is; we report it. Input layers (the network input) use no neurocore.

The per-source number of destination cores (how many spike messages one spike sends) is
computed exactly under this mapping and used by the energy models.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import torch

from toolchain.analysis.metrics import CONV_TYPES, _binary_fn, downstream_neuron, fanin_vector, fanout_vector, synaptic_ops_of
from toolchain.program import Program

#: the energy-model file whose ``[chip]`` section gives the default limits and allocation rules
DEFAULT_CHIP_MODEL = "loihi2-pilotnet"
#: above this many (source x target) pairs the destination cores are estimated, not enumerated
EXACT_PAIR_LIMIT = 50_000_000


def default_chip() -> Dict[str, object]:
    from toolchain.analysis.energy import load_model

    return dict(load_model(DEFAULT_CHIP_MODEL).get("chip", {}))


def _target_cores(op, n_target: int, per_core: int, core_of: Optional[np.ndarray] = None) -> np.ndarray:
    """For every input element of weight op ``op``: the number of target cores it reaches.
    ``core_of`` (the core of every target neuron) defaults to contiguous blocks of ``per_core``."""
    n_in = int(np.prod(op.in_shape))
    if core_of is None:
        core_of = np.arange(n_target) // max(1, per_core)
    n_cores = int(core_of.max()) + 1 if core_of.size else 1
    if n_cores == 1:
        return (fanout_vector(op, "nonzero") > 0).astype(np.float64)
    if op.type in ("Affine", "Linear"):
        W = np.asarray(op.node.weight) != 0  # [out, in]
        return sum(W[core_of == k].any(axis=0) for k in range(n_cores)).astype(np.float64)
    fn = _binary_fn(op)
    n_out = int(np.prod(op.out_shape))
    if n_in * n_out > EXACT_PAIR_LIMIT:  # estimate: a contiguous fan-out spans at most this many cores
        f = fanout_vector(op, "nonzero")
        return np.minimum(n_cores, np.ceil(f / per_core) + 1) * (f > 0)
    out = np.zeros(n_in)
    chunk = max(1, 2_000_000 // max(1, n_out))
    groups = [torch.from_numpy(np.flatnonzero(core_of == k)) for k in range(n_cores)]
    with torch.no_grad():
        for i0 in range(0, n_in, chunk):
            i1 = min(n_in, i0 + chunk)
            eye = torch.zeros((i1 - i0, n_in), dtype=torch.float64)
            eye[torch.arange(i1 - i0), torch.arange(i0, i1)] = 1.0
            y = fn(eye.reshape((i1 - i0,) + tuple(op.in_shape))).reshape(i1 - i0, -1) > 0
            out[i0:i1] = sum(y[:, g].any(dim=1).to(torch.float64) for g in groups).numpy()
    return out


def x_slices(shape, limit: int):
    """The compiler's split of a (C, H, W) neuron layer (fitted to Intel's PilotNet compile log, see
    ``allocation = "x-slices"`` in loihi2_pilotnet.toml): slices of b columns (all channels and rows),
    b the largest power of two with b x C x H <= limit (at most W). ``(cores, block, core_of)``, or
    None when even one column exceeds the limit."""
    C, H, W = (int(v) for v in shape)
    col = C * H
    if col > limit:
        return None
    b = 1
    while 2 * b * col <= limit and b < W:
        b *= 2
    b = min(b, W)
    cores = math.ceil(W / b)
    core_of = np.broadcast_to(np.arange(W) // b, (C, H, W)).reshape(-1)
    return cores, b * col, core_of


def chip_resources(program: Program, chip: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Neurons, synapses, fan-in/fan-out and Loihi 2 cores per layer; totals and chips."""
    chip = dict(chip or default_chip())
    npc = int(chip.get("neurons_per_core", 8192))
    spc = float(chip.get("dense_synapses_per_core", 35000))
    ax_in = int(chip.get("axons_in_per_core", 4096))
    ax_out = int(chip.get("axons_out_per_core", 4096))
    cpc = int(chip.get("cores_per_chip", 128))
    allocation = str(chip.get("allocation", "blocks"))
    slice_limit = int(chip.get("slice_neurons_per_core", npc))
    dense_count = str(chip.get("dense_synapses_count", "nonzero"))

    ops = {k: program.ops[k] for k in synaptic_ops_of(program)}
    target = {k: downstream_neuron(program, k) for k in ops}
    sources = {}
    for k in ops:
        from toolchain.analysis.metrics import upstream_sources

        sources[k] = upstream_sources(program, k)

    from toolchain.loihi.plan import bias_unit_needs

    needs = bias_unit_needs(program)  # bias units: their weights are dense synapses of the layer they feed
    layers = []
    cores_of: Dict[str, int] = {}
    core_map: Dict[str, Optional[np.ndarray]] = {}
    for op in program.neurons():
        name = op.name
        n = int(op.ssm.n)
        incoming = [k for k in ops if target[k] == name]
        dense_syn = conv_syn = conv_w = dense_mem = 0.0
        fanin = np.zeros(n)
        n_src = 0
        for k in incoming:
            fo = fanout_vector(ops[k], "nonzero")
            if ops[k].type in CONV_TYPES:
                conv_syn += float(fo.sum())
                conv_w += float(np.sum(np.asarray(ops[k].node.weight) != 0))
            else:
                dense_syn += float(fo.sum())
                # the synapse memory the allocation charges: nonzero weights, or (dense_synapses_count
                # = "all") the whole matrix, zeros included, as Lava's compiler stores a Dense
                dense_mem += float(np.asarray(ops[k].node.weight).size) if dense_count == "all" else float(fo.sum())
            fi = fanin_vector(ops[k], "nonzero")
            if fi.size == n:
                fanin += fi
            n_src += int(np.prod(ops[k].in_shape))
        bu = needs.get(name, {})
        dense_syn += float(bu.get("synapses", 0))
        dense_mem += float(bu.get("synapses", 0))
        syn_cores = math.ceil(dense_mem / spc) if dense_mem else 0
        sliced = x_slices(op.out_shape, slice_limit) if allocation == "x-slices" and len(op.out_shape) == 3 else None
        if sliced is not None and sliced[0] >= syn_cores:
            cores, per_core, core_of = sliced
        else:
            cores = max(math.ceil(n / npc), syn_cores, 1)
            per_core = math.ceil(n / cores)
            core_of = None
        core_map[name] = core_of
        # distinct presynaptic neurons one core needs: all sources of a dense projection; for a
        # convolution at most (max fan-in x neurons on the core); with the x-slices allocation a
        # convolution takes one axon per source core (Lava's conv axons: Intel's PilotNet table shows
        # 1-2 input axons per conv core), at most the source layer's cores
        axons_in = 0
        for k in incoming:
            n_in = int(np.prod(ops[k].in_shape))
            src_cores = [cores_of[s] for s in sources[k] if s in cores_of]
            if ops[k].type in CONV_TYPES and allocation == "x-slices" and src_cores:
                axons_in += int(sum(src_cores))
            elif ops[k].type in CONV_TYPES:
                axons_in += int(min(n_in, float(fanin_vector(ops[k], "nonzero").max()) * per_core))
            else:
                axons_in += int(np.sum(np.any(np.asarray(ops[k].node.weight) != 0, axis=0)))
        cores_of[name] = cores
        layers.append(
            {
                "name": name,
                "type": op.type,
                "neurons": n,
                "synapses_in": dense_syn + conv_syn,
                "dense_synapses_in": dense_syn,
                "conv_synapses_in": conv_syn,
                "stored_weights_in": dense_syn + conv_w,
                "fan_in_max": float(fanin.max()) if n else 0.0,
                "fan_in_mean": float(fanin.mean()) if n else 0.0,
                "presynaptic_neurons": n_src,
                "cores": cores,
                "neurons_per_core": per_core,
                "axons_in_per_core": axons_in + int(bu.get("units", 0)),
                "bias_units": int(bu.get("units", 0)),
                "bias_unit_synapses_in": int(bu.get("synapses", 0)),
                "fan_out_max": 0.0,
                "fan_out_mean": 0.0,
                "target_cores_per_spike_mean": 0.0,
                "axons_out_per_core": 0,
                "problems": [],
            }
        )

    by_name = {l["name"]: l for l in layers}
    target_cores: Dict[str, np.ndarray] = {}
    fanout_of: Dict[str, np.ndarray] = {}
    for k, op in ops.items():
        t = target[k]
        if t not in by_name:
            continue
        tc = _target_cores(op, by_name[t]["neurons"], by_name[t]["neurons_per_core"], core_map.get(t))
        fo = fanout_vector(op, "nonzero")
        for s in sources[k]:
            if program.ops[s].kind != "neuron":
                continue
            n_s = int(program.ops[s].ssm.n)
            if tc.size != n_s:  # e.g. several sources summed before the op: attribute by size only
                continue
            target_cores[s] = target_cores.get(s, np.zeros(n_s)) + tc
            fanout_of[s] = fanout_of.get(s, np.zeros(n_s)) + fo
    for l in layers:
        s = l["name"]
        if s in target_cores:
            l["fan_out_max"] = float(fanout_of[s].max())
            l["fan_out_mean"] = float(fanout_of[s].mean())
            l["target_cores_per_spike_mean"] = float(target_cores[s].mean())
            per = l["neurons_per_core"]
            tc = target_cores[s]
            pad = l["cores"] * per - tc.size
            tcp = np.concatenate([tc, np.zeros(max(0, pad))]).reshape(l["cores"], per)
            l["axons_out_per_core"] = int(tcp.sum(axis=1).max())
        if l["neurons_per_core"] > npc:
            l["problems"].append(f"{l['neurons_per_core']} neurons per core > {npc}")
        if l["axons_in_per_core"] > ax_in:
            l["problems"].append(
                f"a core needs {l['axons_in_per_core']} input axons > {ax_in} (limit unconfirmed for Loihi 2)"
            )
        if ax_out and l["axons_out_per_core"] > ax_out:  # 0: not checked
            l["problems"].append(
                f"a core sends to {l['axons_out_per_core']} destination axons > {ax_out} (limit unconfirmed for Loihi 2)"
            )

    total_cores = int(sum(l["cores"] for l in layers))
    chips = max(1, math.ceil(total_cores / cpc)) if total_cores else 0
    problems = [f"{l['name']}: {p}" for l in layers for p in l["problems"]]
    return {
        "chip": chip.get("name", "Loihi 2"),
        "limits": {
            k: chip[k]
            for k in chip
            if not k.endswith("_source") and not k.endswith("_status") and k != "name"
        },
        "limit_sources": {k: v for k, v in chip.items() if k.endswith("_source") or k.endswith("_status")},
        "mapping": ("one layer per core group; " + ("(C, H, W) layers in power-of-two column slices of at most "
                    f"{slice_limit} neurons (fitted to Lava's compiler on PilotNet), other layers in " if allocation == "x-slices" else "")
                    + "contiguous neuron blocks; input layers off-core; bias units count as neurons and their weights as dense synapses of the layer they feed"),
        "allocation": allocation,
        "layers": layers,
        "totals": {
            "neurons": int(sum(l["neurons"] + l["bias_units"] for l in layers)),
            "bias_units": int(sum(l["bias_units"] for l in layers)),
            "synapses": float(sum(l["synapses_in"] for l in layers)),
            "stored_weights": float(sum(l["stored_weights_in"] for l in layers)),
            "cores": total_cores,
            "chips": chips,
            "fits_one_chip": total_cores <= cpc and not problems,
        },
        "problems": problems,
        "_target_cores": target_cores,
    }


def compact(res: Dict[str, object]) -> Dict[str, object]:
    return {k: v for k, v in res.items() if not k.startswith("_")}


def messages_per_sample(metrics: Dict[str, object], res: Dict[str, object]) -> Dict[str, float]:
    """Spike messages per inference per layer: each spike goes once to every destination core."""
    out = {}
    tc = res.get("_target_cores", {})
    for l in metrics["layers"]:
        counts = l.get("spike_counts_per_neuron")
        if counts is None or l["name"] not in tc:
            out[l["name"]] = 0.0
            continue
        c = np.asarray(counts).reshape(-1)
        t = np.asarray(tc[l["name"]]).reshape(-1)
        out[l["name"]] = float(np.dot(c, t)) if c.size == t.size else float(c.sum() * t.mean())
    return out
