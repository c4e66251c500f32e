"""NIR -> lava-dl netx HDF5: the network a Loihi 2 owner loads with ``lava.lib.dl.netx.hdf5.Network``.

The export takes a quantized network (``toolchain/loihi/quantize.py``, profile ``"netx"``) and writes
the layer list netx reads (``lava/lib/dl/netx/hdf5.py``, the layout of lava-dl SLAYER's
``export_hdf5``)::

    /layer/0   type "input", shape (C, H, W) or (n,)            -- shape only: the input is fed
                                                                   straight into layer 1's synapse
    /layer/i   type "dense" | "dense_rec" | "conv" | "flatten"
               weight (int; dense [out, in], conv [out, in/groups, kH, kW]), weight_rec (dense_rec),
               bias (int, added as bias << 6; dense [out], conv [W, H, C]), stride / padding /
               dilation (H, W), groups, shape ([n] or (C, H, W))
               neuron/type "CUBA", iDecay (Lava du + 1), vDecay, vThMant, refDelay 1, gradedSpike 0
    /nirdeploy attrs: how to run it (JSON)

Every number is the integer the emulator and the ``lava-fixed`` backend compute with, so the
netx network computes the same spikes (tests/test_netx.py checks it).

What netx can express: a chain of spiking CUBA layers, each fed by the one before it (or the
input) through one Dense or Conv, optionally with a recurrent Dense onto itself, and flatten
between conv and dense layers. Refused, with the node named: pooling that could not be folded
into the following layer (netx has no pool layer; ``toolchain/passes/fold_pooling.py`` folds the
usual cases), residual/skip connections and layers with several inputs, non-spiking layers (a
netx layer sends spikes), layers whose neurons have several time constants (one iDecay/vDecay
per netx layer), linear layers after the last neuron layer, recurrence other than a layer onto
itself, weight or bias exponents other than netx's (0 and 6), and reset by subtraction (netx's
CUBA neuron resets v to zero).

Running the artifact (``simulators/lava_netx.py``: :func:`run_netx`)::

    net = Network(net_config="model.net", reset_interval=T, reset_offset=1, input_message_bits=16)

``reset_interval=T`` resets every layer's state once per sample of T steps, ``reset_offset=1``
aligns those resets with an input that starts at Lava step 1 (layer i then processes input step
k of sample n at Lava step n T + k + 2 + i; with netx's default offset 0 each layer would reset
one step too early). ``input_message_bits`` > 0 sends graded inputs (event counts; 16 bits hold
counts up to 32767): with the default 0 every nonzero count becomes a single spike. A 3D input
is an array (W, H, C) (netx's XYZ order) into a conv layer; into a dense first layer it is the
flat vector in NIR (C, H, W) order. The network's output is the last layer's spikes. A
``dense_rec`` layer's spikes of the last step of one sample reach the first step of the next
(netx has no gate, unlike the lava-fixed backend), and so do spikes it fires before its first
window (driven by biased layers in front of it): pad every sample with trailing zero steps
until the layer is silent, and keep biases out of the layers before it.
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional

import numpy as np

from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.loihi.bits import NETX_BIAS_EXP
from toolchain.program.interpreter import incoming
from toolchain.loihi.fixed import FixedNetwork

LAYER_TYPES = ("input", "dense", "dense_rec", "conv", "flatten")


def _what(program, node) -> str:
    return f"node {node!r} ({program.ops[node].type})"


def refuse_subtraction(fx: FixedNetwork) -> None:
    """A layer that resets by subtraction has no netx form: refuse it in one line, naming the node."""
    for g in fx.groups.values():
        if g.role == "neuron" and g.v_sub is not None:
            raise UnsupportedNodeError(
                f"{_what(fx.program, g.node)} resets by subtraction (v <- v - amount on a spike), but netx's CUBA neuron "
                f"resets v to zero, so a .net cannot express it; run it on lava-float, lava-fixed or the emulator "
                f"instead, or re-export the graph with reset 'value' if it was trained that way"
            )


def netx_layers(fx: FixedNetwork) -> List[Dict[str, object]]:
    """The netx layer list of ``fx`` (dicts of datasets), or UnsupportedNodeError naming the node."""
    refuse_subtraction(fx)
    prog = fx.program
    for name in prog.order:
        op = prog.ops[name]
        if op.type in ("SumPool2d", "AvgPool2d"):
            raise UnsupportedNodeError(
                f"{_what(prog, name)} cannot be folded into a following Conv2d or Flatten+Affine, and netx has no pool layer"
            )
    neurons = [op.name for op in prog.neurons()]
    in_op = prog.ops[prog.input_name]
    in_shape = tuple(int(d) for d in in_op.out_shape)
    layers: List[Dict[str, object]] = [{"type": "input", "shape": np.array(in_shape), "node": prog.input_name}]
    prev_key: Optional[str] = None  # group key of the previous layer (None: the input)
    prev_node = prog.input_name
    prev_3d = len(in_shape) == 3
    for i, name in enumerate(neurons):
        keys = fx.node_groups[name]
        if len(keys) != 1:
            raise UnsupportedNodeError(
                f"{_what(prog, name)} has neurons with {len(keys)} different time constants (current and voltage decays), "
                f"which need {len(keys)} Lava processes; a netx layer has one iDecay, vDecay and vThMant"
            )
        g = fx.groups[keys[0]]
        if not g.spiking:
            raise UnsupportedNodeError(f"{_what(prog, name)} does not spike; every netx layer sends spikes")
        into = fx.conns_into(g.key)
        fwd = [c for c in into if fx.lag(c) == 0]
        rec = [c for c in into if fx.lag(c) > 0]
        srcs = sorted({fx.base_of(c.src)[0] for c in fwd})
        bad = len(fwd) != 1
        if not bad:
            base, r = fx.base_of(fwd[0].src)
            if prev_key is None:
                bad = not (base in fx.plan.inputs and r == 0 and fx.plan.inputs[base].offset == 0)
            else:
                bad = base != prev_key or r != 0
        if bad:
            names = sorted({fx.groups[s].node if s in fx.groups else prog.input_name for s in srcs}) or ["nothing"]
            raise UnsupportedNodeError(
                f"{_what(prog, name)} receives input from {', '.join(map(repr, names))}; netx networks are a chain "
                f"in which every layer is fed by the layer before it ({prev_node!r}), without skip connections"
            )
        if any(fx.base_of(c.src)[0] != g.key or fx.lag(c) != 1 or c.kind != "dense" for c in rec) or len(rec) > 1:
            raise UnsupportedNodeError(
                f"{_what(prog, name)} has a recurrent input that is not a single Dense from itself with one step of "
                f"delay; netx expresses only that (dense_rec)"
            )
        c = fwd[0]
        for cc in into:
            if cc.weight_exp != 0:
                raise NirDeployError(
                    f"{_what(prog, name)}: its connection {cc.key!r} uses weight exponent {cc.weight_exp}, which netx "
                    f"cannot store; quantize with profile 'netx'"
                )
        if g.bias_exp != NETX_BIAS_EXP and np.any(g.bias_mant):
            raise NirDeployError(
                f"{_what(prog, name)}: bias exponent {g.bias_exp}; netx uses {NETX_BIAS_EXP}; quantize with profile 'netx'"
            )
        neuron = {
            "type": "CUBA",
            "iDecay": int(g.du) + 1,
            "vDecay": int(g.dv),
            "vThMant": int(g.vth),
            "refDelay": 1,
            "gradedSpike": 0,
        }
        src_idx = fx.plan.inputs[fx.base_of(c.src)[0]].idx if prev_key is None else fx.groups[prev_key].idx
        src_idx = np.asarray(src_idx)
        layer: Dict[str, object] = {"node": name, "neuron": neuron, "group": g.key}
        if c.kind == "conv":
            if rec:
                raise UnsupportedNodeError(f"{_what(prog, name)} is a recurrent conv layer; netx has only dense_rec")
            if g.shape3 is None:  # pragma: no cover - the plan uses Conv only between 3D layers
                raise UnsupportedNodeError(f"{_what(prog, name)}: a conv layer needs a 3D neuron layer")
            p = c.conv
            layer.update(
                type="conv",
                shape=np.array(g.shape3),
                weight=c.weights[:, ::-1, ::-1, :].transpose(0, 3, 2, 1).astype(np.int64),
                stride=np.array(p["stride"][::-1]),
                padding=np.array(p["padding"][::-1]),
                dilation=np.array(p["dilation"][::-1]),
                groups=int(p["groups"]),
            )
            if np.any(g.bias_mant):
                C, H, W = g.shape3
                layer["bias"] = g.bias_mant.reshape(W, H, C).astype(np.int64)
        else:
            if prev_3d and prev_key is not None:
                layers.append({"type": "flatten", "shape": np.array([int(np.prod(fx.groups[prev_key].shape3))])})
            n = g.n
            rows = np.asarray(g.idx)
            W = np.zeros((n, src_idx.size), dtype=np.int64)
            W[np.ix_(rows, src_idx)] = c.weights
            layer.update(type="dense_rec" if rec else "dense", shape=np.array([n]), weight=W)
            if rec:
                Wr = np.zeros((n, n), dtype=np.int64)
                Wr[np.ix_(rows, rows)] = rec[0].weights
                layer["weight_rec"] = Wr
            if np.any(g.bias_mant):
                b = np.zeros(n, dtype=np.int64)
                b[rows] = g.bias_mant
                layer["bias"] = b
            if g.shape3 is not None and i + 1 < len(neurons):
                nxt = fx.conns_into(fx.node_groups[neurons[i + 1]][0])
                if any(cc.kind == "conv" for cc in nxt):
                    raise UnsupportedNodeError(
                        f"{_what(prog, name)}: its input cannot be a netx conv layer (the plan needs a dense matrix), "
                        f"so it is flat, but {neurons[i + 1]!r} after it needs a conv layer's 3D output"
                    )
        if np.any(np.abs(layer["weight"]) > 254):  # pragma: no cover - the quantizer clips to 254
            raise NirDeployError(f"{_what(prog, name)}: weights beyond netx's range [-256, 254]")
        layers.append(layer)
        prev_key, prev_node = g.key, name
        prev_3d = c.kind == "conv"
    # the graph's output must be the last layer's spikes
    last = neurons[-1] if neurons else None
    for o in prog.output_names:
        preds = [e.src for e in incoming(prog, o)]
        while len(preds) == 1 and prog.ops[preds[0]].type == "Flatten":  # a reshape changes no value
            preds = [e.src for e in incoming(prog, preds[0])]
        if preds != [last]:
            bad = [p for p in preds if p != last] or preds
            raise UnsupportedNodeError(
                f"the Output {o!r} is computed from {', '.join(map(repr, bad))} rather than directly from the last neuron "
                f"layer {last!r}; a netx network outputs the last layer's spikes"
            )
    return layers


def write_netx(fx: FixedNetwork, path: str, extra: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Write the netx HDF5 of quantized network ``fx`` to ``path``; returns its description."""
    import h5py

    layers = netx_layers(fx)
    prog = fx.program
    in_shape = [int(s) for s in layers[0]["shape"]]
    desc: Dict[str, object] = {
        "format": "lava-dl netx hdf5 (lava.lib.dl.netx.hdf5.Network)",
        "dt": float(prog.disc.dt),
        "input_shape": in_shape,
        "input_order": "(W, H, C) array into a conv layer" if layers[1]["type"] == "conv" and len(in_shape) == 3
        else "flat vector in NIR (C, H, W) order" if len(in_shape) == 3 else "vector",
        "run": "Network(net_config=PATH, reset_interval=T, reset_offset=1, input_message_bits=16); "
        "Loihi2SimCfg(select_tag='fixed_pt')",
        "layers": [
            {
                "index": i,
                "type": l["type"],
                "node": l.get("node"),
                "shape": [int(s) for s in l["shape"]],
                **({"scale": float(fx.groups[l["group"]].scale)} if "group" in l else {}),
            }
            for i, l in enumerate(layers)
        ],
        "quantization": fx.profile,
    }
    if extra:
        desc.update(extra)
    from toolchain.ir.atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:  # a kill mid-write leaves the previous file
        grp = f.create_group("layer")
        for i, l in enumerate(layers):
            h = grp.create_group(str(i))
            h.create_dataset("type", (1,), "S10", [l["type"].encode("ascii")])
            h.create_dataset("shape", data=np.asarray(l["shape"], dtype=np.int64))
            for k in ("weight", "weight_rec", "bias", "stride", "padding", "dilation"):
                if k in l:
                    h.create_dataset(k, data=np.asarray(l[k]))
            if "groups" in l:
                h.create_dataset("groups", data=int(l["groups"]))
            if "neuron" in l:
                for k, v in l["neuron"].items():
                    if k == "type":
                        h.create_dataset("neuron/type", (1,), "S10", [str(v).encode("ascii")])
                    else:
                        h.create_dataset(f"neuron/{k}", data=v)
        f.attrs["nirdeploy"] = json.dumps(desc)
    return desc


def read_description(path: str) -> Dict[str, object]:
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["nirdeploy"]) if "nirdeploy" in f.attrs else {}
