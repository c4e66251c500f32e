"""NIR -> lava-dl netx HDF5: the network a Loihi 2 owner loads with ``lava.lib.dl.netx.hdf5.Network``.

The export takes a quantized network (``toolchain/loihi/quantize.py``, profile ``"netx"``) and writes
the layer list netx reads (``lava/lib/dl/netx/hdf5.py``, the layout of lava-dl SLAYER's
``export_hdf5``)::

    /layer/0   type "input", shape (C, H, W) or (n,)            -- shape only: the input is fed
                                                                   straight into layer 1's synapse
               (a graph imported from a netx file with a bias-driven input layer, metadata
               netx.bias_input: that layer is written back as the input layer's neuron group,
               lava-dl's PilotNet layout; the input then sets its bias)
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
usual cases), residual/skip connections and layers with several inputs, layers whose neurons
have several time constants (one iDecay/vDecay per netx layer), linear layers after the last
neuron layer, recurrence other than a layer onto itself, and weight or bias exponents other than
netx's (0 and 6), and reset by subtraction (netx's CUBA neuron resets v to zero); each refusal says that the emulator backend runs the graph as it is.

Non-spiking readout layers (LI, CubaLI: norse's ``LICell`` / ``LIBoxCell`` head) cannot be netx
layers (a netx layer sends spikes); they run on the host from the chip's output spikes
(:func:`split_readout`, :func:`host_readout`, ``simulators/host_readout.py``). Each must be fed by
the last spiking layer alone through one Dense. Their integers are stored in the file under
``/nirdeploy/readout`` (which netx does not read) and the description says ``host_readout``::

    /nirdeploy/readout            attr description (JSON): chip_node, chip_layer, chip_shape,
                                  nodes {node: {type, shape}}, outputs {Output: {source, shape}}
    /nirdeploy/readout/chip_idx   NIR index of each chip output neuron, in netx's order
    /nirdeploy/readout/groups/i   attrs key, node, du, dv, vth, bias_exp, scale, weight_exp, lag;
                                  datasets idx, weight [n, n_chip] (netx's column order), bias_mant,
                                  v_scale, v_offset

Constants into a synaptic current (bias units, ``toolchain/loihi/plan.py``) have no separate unit in
a ``.net``: the first layer's unit is one more input element (dense) or channel (conv) that must be
1 at every step (the description's ``bias_input``; ``run_netx`` appends it), a deeper layer's unit
is an extra neuron (dense) or channel (conv) of the layer in front, with no input and a bias above
its threshold, so that it fires at every step (``bias_host`` in the description; ``run_netx`` drops
those neurons from the recorded spikes). A constant that starts late (a recurrent bias read with
``recurrent_step0 = "none"``) is refused: netx's dense_rec has no gate.

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
from typing import Dict, List, Optional, Tuple

import numpy as np

from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.loihi.bits import BIAS_MANT_MAX, DECAY_UNITY, NETX_BIAS_EXP
from toolchain.program.interpreter import incoming
from toolchain.loihi.fixed import FixedNetwork

LAYER_TYPES = ("input", "dense", "dense_rec", "conv", "flatten")
#: what a user can do about a graph netx cannot express: run it where it is supported
_ELSEWHERE = "; the emulator backend runs the graph as it is (nirdeploy simulate MODEL.nir --backend emulator)"
#: the HDF5 group of the host readout (lava-dl netx reads only /layer)
READOUT_GROUP = "nirdeploy/readout"


def _what(program, node) -> str:
    return f"node {node!r} ({program.ops[node].type})"


def refuse_subtraction(fx: FixedNetwork) -> None:
    """A layer that resets by subtraction has no netx form: refuse it in one line, naming the node."""
    for g in fx.groups.values():
        if g.role == "neuron" and getattr(g, "refractory", 0):
            raise UnsupportedNodeError(
                f"{_what(fx.program, g.node)} holds v at its reset value through the step after a spike (snnTorch's "
                f"delayed reset_mechanism='zero'), but netx's CUBA neuron has no refractory step, so a .net cannot "
                f"express it; run it on lava-float, lava-fixed or the emulator instead"
            )
        if g.role == "neuron" and g.v_sub is not None:
            partial = getattr(g, "v_keep", None) is not None
            if partial:
                how = (f"resets partially (keeps {float(np.max(g.v_keep)) / 4096:.3g} of its excess over the threshold "
                       f"on a spike: the reset of a -carry retiming method)")  # fmt: skip
            elif not np.any(g.v_sub):
                how = "never resets (reset 'none': v keeps its value after a spike)"
            else:
                how = "resets by subtraction (v <- v - amount on a spike)"
            fix = ("retime with exact or integral (without -carry) for a .net" if partial
                   else "re-export the graph with reset 'value' if it was trained that way")
            raise UnsupportedNodeError(
                f"{_what(fx.program, g.node)} {how}, but netx's CUBA neuron "
                f"resets v to zero, so a .net cannot express it; run it on lava-float, lava-fixed or the emulator "
                f"instead, or {fix}"
            )


def netx_layers(fx: FixedNetwork) -> List[Dict[str, object]]:
    """The netx layer list of ``fx`` (dicts of datasets), or UnsupportedNodeError naming the node."""
    refuse_subtraction(fx)
    prog = fx.program
    for name in prog.order:
        op = prog.ops[name]
        if op.type in ("SumPool2d", "AvgPool2d"):
            raise UnsupportedNodeError(
                f"{_what(prog, name)} cannot be folded into a following Conv2d or Flatten+Affine, and netx has no pool layer{_ELSEWHERE}"
            )
    neurons, readout = split_readout(fx)  # the readout layers run on the host (host_readout)
    in_op = prog.ops[prog.input_name]
    in_shape = tuple(int(d) for d in in_op.out_shape)
    layers: List[Dict[str, object]] = [{"type": "input", "shape": np.array(in_shape), "node": prog.input_name}]
    prev_key: Optional[str] = None  # group key of the previous layer (None: the input)
    prev_node = prog.input_name
    prev_3d = len(in_shape) == 3
    prev_layer: Optional[Dict[str, object]] = None
    for i, name in enumerate(neurons):
        keys = fx.node_groups[name]
        if len(keys) != 1:
            raise UnsupportedNodeError(
                f"{_what(prog, name)} has neurons with {len(keys)} different time constants (current and voltage decays), "
                f"which need {len(keys)} Lava processes; a netx layer has one iDecay, vDecay and vThMant{_ELSEWHERE}"
            )
        g = fx.groups[keys[0]]
        into = fx.conns_into(g.key)
        units = [c for c in into if _from_bias_unit(fx, c)]
        into = [c for c in into if not _from_bias_unit(fx, c)]
        _check_units(fx, name, units)
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
                f"in which every layer is fed by the layer before it ({prev_node!r}), without skip connections{_ELSEWHERE}"
            )
        if any(fx.base_of(c.src)[0] != g.key or fx.lag(c) != 1 or c.kind != "dense" for c in rec) or len(rec) > 1:
            raise UnsupportedNodeError(
                f"{_what(prog, name)} has a recurrent input that is not a single Dense from itself with one step of "
                f"delay; netx expresses only that (dense_rec){_ELSEWHERE}"
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
        if prev_key is None and _bias_driven_input(fx, name, c, rec, units):  # lava-dl's PilotNet input layer
            neuron["iDecay"] = DECAY_UNITY  # netx never drives this layer's current
            layers[0].update(node=name, neuron=neuron, group=g.key)
            if np.any(g.bias_mant):
                raise UnsupportedNodeError(f"{_what(prog, name)}: a bias-driven input layer has no bias of its own")
            prev_key, prev_node, prev_layer = g.key, name, layers[0]
            prev_3d = len(in_shape) == 3
            continue
        layer: Dict[str, object] = {"node": name, "neuron": neuron, "group": g.key}
        if c.kind == "conv":
            if rec:
                raise UnsupportedNodeError(f"{_what(prog, name)} is a recurrent conv layer; netx has only dense_rec{_ELSEWHERE}")
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
                        f"so it is flat, but {neurons[i + 1]!r} after it needs a conv layer's 3D output{_ELSEWHERE}"
                    )
        if units:  # the bias unit: an always-on input channel (first layer) or an extra neuron in front
            w = np.asarray(units[0].weights[:, 0], dtype=np.int64)  # [n] in the group's order
            if prev_key is None:
                _bias_from_input(prog, name, layers[0], layer, g, w)
            else:
                _bias_from_host(prog, name, prev_layer, layer, g, w, layers)
        if np.any(layer["weight"] > 254) or np.any(layer["weight"] < -256):  # pragma: no cover - the quantizer clips
            raise NirDeployError(f"{_what(prog, name)}: weights beyond netx's range [-256, 254]")
        layers.append(layer)
        prev_key, prev_node, prev_layer = g.key, name, layer
        prev_3d = c.kind == "conv"
    # the graph's output must be the last layer's spikes (or a host readout of them)
    last = neurons[-1] if neurons else None
    for o in prog.output_names:
        preds = _output_sources(prog, o)
        if len(preds) != 1 or preds[0] not in [last] + readout:
            bad = [p for p in preds if p not in [last] + readout] or preds
            also = f" or from a host readout ({', '.join(map(repr, readout))})" if readout else ""
            raise UnsupportedNodeError(
                f"the Output {o!r} is computed from {', '.join(map(repr, bad))} rather than directly from the last neuron "
                f"layer {last!r}{also}; a netx network outputs the last layer's spikes{_ELSEWHERE}"
            )
    return layers


def _bias_driven_input(fx: FixedNetwork, name: str, c, rec, units) -> bool:
    """The first layer is a bias-driven netx input layer (a graph imported from such a file, metadata
    ``netx.bias_input`` names it): fed by the input through an identity synapse of weight 1 (the
    input is its bias, bias_mant) with current decay 4096 (u is the input of the step)."""
    netx = (fx.program.metadata or {}).get("netx") or {}
    if not isinstance(netx, dict) or netx.get("bias_input") != name or rec or units:
        return False
    g = fx.groups[c.dst]
    w = np.asarray(c.weights)
    if c.kind == "conv":
        C = w.shape[0]
        ident = w.shape == (C, 1, 1, C) and np.array_equal(w.reshape(C, C), np.eye(C, dtype=w.dtype))
    else:
        ident = w.shape[0] == w.shape[1] and np.array_equal(w, np.eye(w.shape[0], dtype=w.dtype))
    return bool(ident and c.weight_exp == 0 and int(g.du) + 1 == DECAY_UNITY)


# --------------------------------------------------------------------------- bias units in a .net
def _from_bias_unit(fx: FixedNetwork, c) -> bool:
    g = fx.groups.get(c.src)
    return g is not None and g.role == "bias"


def _check_units(fx: FixedNetwork, name: str, units) -> None:
    prog = fx.program
    late = [c for c in units if fx.lag(c) > 0]
    if late:
        raise UnsupportedNodeError(
            f"{_what(prog, name)}: the bias of its recurrent edge arrives only from the second step of a sample "
            f"(recurrent_step0 'none'), but a netx dense_rec layer's first step receives the previous sample's last "
            f"step, so the .net cannot start it late; if the graph means the literal reading (the recurrent Affine "
            f"outputs its bias at step 0, as snnTorch computes), pass --recurrent-step0 bias{_ELSEWHERE}"
        )
    if len(units) > 1:  # pragma: no cover - the plan gives one unit per (depth, lag)
        raise UnsupportedNodeError(f"{_what(prog, name)}: fed by {len(units)} bias units; netx can host one")


def _always_inside_tap(layer: Dict[str, object], in_hw) -> Optional[tuple]:
    """A kernel tap (ky, kx) that reads inside the input at every output position, or None."""
    k_h, k_w = layer["weight"].shape[2:]
    out = []
    for axis, (size, k) in enumerate(zip(in_hw, (k_h, k_w))):
        s_, p_, d_ = (int(layer[q][axis]) for q in ("stride", "padding", "dilation"))
        n_out = (size + 2 * p_ - d_ * (k - 1) - 1) // s_ + 1
        ok = [t for t in range(k) if t * d_ - p_ >= 0 and (n_out - 1) * s_ - p_ + t * d_ <= size - 1]
        if not ok:
            return None
        out.append(ok[0])
    return tuple(out)


def _per_channel(prog, name: str, g, w: np.ndarray) -> np.ndarray:
    """The bias-unit weights of a conv layer as one value per output channel."""
    C, H, W = g.shape3
    wc = np.zeros(g.n, dtype=np.int64)
    wc[:] = w  # the group's order is Lava's (W, H, C)
    wc = wc.reshape(W, H, C)
    if not np.all(wc == wc[:1, :1, :]):
        raise UnsupportedNodeError(
            f"{_what(prog, name)}: the constant into its synaptic current differs between positions of one channel, "
            f"which a netx conv kernel cannot deliver from a constant channel{_ELSEWHERE}"
        )
    return wc[0, 0, :]


def _kernel_channel(prog, name: str, layer: Dict[str, object], in_hw, per_out: np.ndarray) -> None:
    """Append an input channel to conv ``layer``'s kernel that reads a constant-1 channel with one tap."""
    if int(layer["groups"]) != 1:
        raise UnsupportedNodeError(
            f"{_what(prog, name)}: a grouped convolution cannot read the extra always-on channel that carries the "
            f"constant into its synaptic current in a .net{_ELSEWHERE}"
        )
    tap = _always_inside_tap(layer, in_hw)
    if tap is None:
        raise UnsupportedNodeError(
            f"{_what(prog, name)}: no kernel tap of its convolution stays inside the input at every output position "
            f"(padding beyond the kernel's reach), so a constant channel cannot carry its bias in a .net{_ELSEWHERE}"
        )
    Wk = layer["weight"]
    extra = np.zeros((Wk.shape[0], 1) + Wk.shape[2:], dtype=np.int64)
    extra[:, 0, tap[0], tap[1]] = per_out
    layer["weight"] = np.concatenate([Wk, extra], axis=1)


def _bias_from_input(prog, name: str, inp: Dict[str, object], layer: Dict[str, object], g, w: np.ndarray) -> None:
    """The first layer's bias unit: one more input element (dense) or channel (conv), always 1."""
    shape = [int(d) for d in inp["shape"]]
    if layer["type"] == "conv":
        C, H, W = shape
        _kernel_channel(prog, name, layer, (H, W), _per_channel(prog, name, g, w))
        inp["shape"] = np.array([C + 1, H, W])
        inp["bias_channel"] = "channel"
    else:
        n_in = int(np.prod(shape))
        col = np.zeros((layer["weight"].shape[0], 1), dtype=np.int64)
        col[np.asarray(g.idx), 0] = w
        layer["weight"] = np.concatenate([layer["weight"], col], axis=1)
        inp["shape"] = np.array([n_in + 1])  # the flat input (NIR order) and a last element 1
        inp["bias_channel"] = "element"


def _bias_from_host(prog, name: str, host: Dict[str, object], layer: Dict[str, object], g, w, layers) -> None:
    """The bias unit as an extra neuron of the layer in front (``host``): no input, bias above its
    threshold, so it fires at every step (netx resets it to 0, and bias_mant > vThMant lifts it over
    the threshold again in one step); its outgoing weights are the constants."""
    vth = int(host["neuron"]["vThMant"])
    b_host = vth + 1
    if b_host > BIAS_MANT_MAX:  # pragma: no cover - the quantizer keeps hosts' thresholds below
        raise NirDeployError(f"{_what(prog, host['node'])}: threshold mantissa {vth} leaves no room for a bias unit")
    if host["type"] == "conv":
        if int(host["groups"]) != 1:
            raise UnsupportedNodeError(
                f"{_what(prog, name)}: the layer in front ({host['node']!r}) is a grouped convolution, which cannot "
                f"host the always-on channel that carries the constant into {name!r}'s synaptic current{_ELSEWHERE}"
            )
        C, H, W = (int(d) for d in host["shape"])
        Wk = host["weight"]
        host["weight"] = np.concatenate([Wk, np.zeros((1,) + Wk.shape[1:], dtype=np.int64)], axis=0)
        b = host.get("bias")
        b = np.zeros((W, H, C), dtype=np.int64) if b is None else np.asarray(b, dtype=np.int64)
        host["bias"] = np.concatenate([b, np.full((W, H, 1), b_host, dtype=np.int64)], axis=2)
        host["shape"] = np.array([C + 1, H, W])
        host["bias_host"] = {"channel": C, "neurons": H * W}
        if layer["type"] == "conv":
            _kernel_channel(prog, name, layer, (H, W), _per_channel(prog, name, g, w))
        else:  # flatten in between: NIR (C, H, W) order, the extra channel last; one of its neurons feeds
            flat = layers[-1]
            flat["shape"] = np.array([(C + 1) * H * W])
            cols = np.zeros((layer["weight"].shape[0], H * W), dtype=np.int64)
            cols[np.asarray(g.idx), 0] = w
            layer["weight"] = np.concatenate([layer["weight"], cols], axis=1)
        return
    n_h = int(host["shape"][0])
    host["weight"] = np.concatenate([host["weight"], np.zeros((1, host["weight"].shape[1]), dtype=np.int64)], axis=0)
    if "weight_rec" in host:
        Wr = np.zeros((n_h + 1, n_h + 1), dtype=np.int64)
        Wr[:n_h, :n_h] = host["weight_rec"]
        host["weight_rec"] = Wr
    b = host.get("bias")
    b = np.zeros(n_h, dtype=np.int64) if b is None else np.asarray(b, dtype=np.int64)
    host["bias"] = np.concatenate([b, [b_host]])
    host["shape"] = np.array([n_h + 1])
    host["bias_host"] = {"neuron": n_h, "neurons": 1}
    if layer["type"] == "conv":  # pragma: no cover - netx_layers refuses a dense layer before a conv
        raise UnsupportedNodeError(f"{_what(prog, name)}: a conv layer after a dense one")
    col = np.zeros((layer["weight"].shape[0], 1), dtype=np.int64)
    col[np.asarray(g.idx), 0] = w
    layer["weight"] = np.concatenate([layer["weight"], col], axis=1)


def _output_sources(prog, o: str) -> List[str]:
    """The nodes an Output reads, through Flatten nodes (a reshape changes no value)."""
    preds = [e.src for e in incoming(prog, o)]
    while len(preds) == 1 and prog.ops[preds[0]].type == "Flatten":
        preds = [e.src for e in incoming(prog, preds[0])]
    return preds


def split_readout(fx: FixedNetwork) -> Tuple[List[str], List[str]]:
    """(chip layers, host readout layers) of ``fx``: the spiking neuron nodes, written as netx
    layers, and the non-spiking ones (LI, CubaLI: a classifier head), which run on the host from
    the chip's output spikes (:func:`host_readout`). Each readout layer must be fed by the last
    spiking layer alone, through one Dense (Linear / Affine); otherwise UnsupportedNodeError
    names it. (A non-spiking layer cannot feed another neuron layer: the plan refuses that.)"""
    prog = fx.program
    neurons = [op.name for op in prog.neurons()]
    chip = [n for n in neurons if prog.ops[n].ssm.spiking]
    readout = [n for n in neurons if not prog.ops[n].ssm.spiking]
    if readout and not chip:
        raise UnsupportedNodeError(
            f"{_what(prog, readout[0])} does not spike, and no layer before it does: nothing of the graph would run on "
            f"the chip (every netx layer sends spikes; a non-spiking readout runs on the host from the chip's output "
            f"spikes){_ELSEWHERE}"
        )
    last = chip[-1] if chip else None
    last_key = fx.node_groups[last][0] if last is not None else None
    for name in readout:
        for k in fx.node_groups[name]:
            into = [c for c in fx.conns_into(k) if not _from_bias_unit(fx, c)]  # a bias unit is added on the host
            bases = [fx.base_of(c.src)[0] for c in into]
            if len(into) == 1 and bases == [last_key] and into[0].kind == "dense":
                continue
            names = sorted({fx.groups[b].node if b in fx.groups else prog.input_name for b in bases})
            how = ("through a Conv2d" if bases == [last_key] else
                   f"by {', '.join(map(repr, names))}" if bases else "by no layer")  # fmt: skip
            raise UnsupportedNodeError(
                f"{_what(prog, name)} does not spike and is fed {how}; a netx layer sends spikes, so a non-spiking "
                f"layer runs on the host from the chip's output spikes, which needs it fed by the last spiking layer "
                f"{last!r} alone through one Linear/Affine{_ELSEWHERE}"
            )
    return chip, readout


#: scalar parameters of a readout group (HDF5 attributes) and its arrays (datasets)
_READOUT_SCALARS = ("key", "node", "weight_exp", "lag", "du", "dv", "vth", "bias_exp", "scale", "unit_lag")
_READOUT_ARRAYS = ("idx", "weight", "bias_mant", "v_scale", "v_offset", "unit_weight")


def host_readout(fx: FixedNetwork, layers: Optional[List[Dict[str, object]]] = None) -> Optional[Dict[str, object]]:
    """The host readout of ``fx`` (None when every neuron layer spikes): the integers with which
    the host computes the non-spiking readout layers from the chip's output spikes exactly as the
    emulator does (``simulators/host_readout.py``). ``layers``: :func:`netx_layers` of ``fx``.

    ``{"chip_node", "chip_layer"`` (its index under /layer), ``"chip_idx"`` (int64 [n_chip]: the NIR
    index, within chip_node, of each neuron of the chip's output in netx's order: NIR order for a
    dense layer, Lava's (W, H, C) order for a conv layer), ``"chip_shape", "nodes"`` ({node: {type,
    shape}}), ``"outputs"`` ({Output: {source, shape}}: every Output reads one readout node or the
    chip's output, through Flatten only), ``"groups"``: per FixedGroup of a readout node: key, node,
    idx (NIR indices in the group's order), weight (int64 [n, n_chip]: its FixedConn from the chip's
    output, columns in netx's order), weight_exp, lag (the connection delivers the chip's step
    k - lag at step k), du, dv, vth, bias_mant, bias_exp, scale K, v_scale, v_offset
    (v_nir = v_int / (K v_scale) + v_offset)``}``.
    """
    layers = netx_layers(fx) if layers is None else layers
    chip, readout = split_readout(fx)
    if not readout:
        return None
    prog = fx.program
    last = chip[-1]
    li = max(i for i, l in enumerate(layers) if l.get("node") == last)
    src = fx.groups[fx.node_groups[last][0]]
    pos = np.arange(src.n) if layers[li]["type"] == "conv" else np.asarray(src.idx)  # netx position of neuron q
    chip_idx = np.zeros(src.n, dtype=np.int64)
    chip_idx[pos] = src.idx
    groups = []
    for name in readout:
        for k in fx.node_groups[name]:
            g = fx.groups[k]
            c = [cc for cc in fx.conns_into(k) if not _from_bias_unit(fx, cc)][0]
            units = [cc for cc in fx.conns_into(k) if _from_bias_unit(fx, cc)]
            W = np.zeros((g.n, src.n), dtype=np.int64)
            W[:, pos] = c.weights
            # a bias unit into the readout's current: its weights, added on the host from step unit_lag on
            uw = np.zeros(g.n, dtype=np.int64) if not units else np.asarray(units[0].weights[:, 0], dtype=np.int64)
            ul = int(fx.lag(units[0])) if units else 0
            groups.append({
                "key": k, "node": name, "idx": np.asarray(g.idx, dtype=np.int64), "weight": W,
                "weight_exp": int(c.weight_exp), "lag": int(fx.lag(c)), "du": int(g.du), "dv": int(g.dv),
                "vth": int(g.vth), "bias_mant": np.asarray(g.bias_mant, dtype=np.int64), "bias_exp": int(g.bias_exp),
                "scale": float(g.scale), "v_scale": np.asarray(g.v_scale, dtype=np.float64),
                "v_offset": np.asarray(g.v_offset, dtype=np.float64), "unit_weight": uw, "unit_lag": ul,
            })  # fmt: skip
    shape = lambda n: [int(d) for d in prog.ops[n].out_shape]  # noqa: E731
    return {
        "chip_node": last,
        "chip_layer": li,
        "chip_idx": chip_idx,
        "chip_shape": shape(last),
        "nodes": {n: {"type": prog.ops[n].type, "shape": shape(n)} for n in readout},
        "outputs": {o: {"source": _output_sources(prog, o)[0], "shape": shape(o)} for o in prog.output_names},
        "groups": groups,
    }


def _readout_description(ro: Dict[str, object]) -> Dict[str, object]:
    """The ``host_readout`` entry of the file's description."""
    return {
        "nodes": [{"node": n, **v} for n, v in ro["nodes"].items()],
        "input": f"the chip's output spikes: /layer/{ro['chip_layer']} (node {ro['chip_node']!r}), in netx's neuron order",
        "runs": "on the host, from the chip's output spikes, in Loihi's integer arithmetic (the emulator's LIF step): "
        "chip + host readout compute exactly what the emulator computes",
        "data": f"/{READOUT_GROUP}",
        "function": "simulators.host_readout.run_host_readout(exporters.nir_to_netx.read_host_readout(PATH), spikes)",
        "outputs": {o: v["source"] for o, v in ro["outputs"].items()},
    }


def _write_readout(f, ro: Dict[str, object]) -> None:
    h = f.create_group(READOUT_GROUP)
    h.attrs["description"] = json.dumps({k: ro[k] for k in ("chip_node", "chip_layer", "chip_shape", "nodes", "outputs")})
    h.create_dataset("chip_idx", data=ro["chip_idx"])
    for i, g in enumerate(ro["groups"]):
        hg = h.create_group(f"groups/{i}")
        for k in _READOUT_SCALARS:
            hg.attrs[k] = g[k]
        for k in _READOUT_ARRAYS:
            hg.create_dataset(k, data=g[k])


def read_host_readout(path: str) -> Optional[Dict[str, object]]:
    """The :func:`host_readout` stored in the ``.net`` at ``path`` (None if it has none)."""
    import h5py

    with h5py.File(path, "r") as f:
        if READOUT_GROUP not in f:
            return None
        h = f[READOUT_GROUP]
        ro = json.loads(h.attrs["description"])
        ro["chip_idx"] = h["chip_idx"][()]
        ro["groups"] = []
        for i in range(len(h["groups"])):
            hg = h[f"groups/{i}"]
            g = {k: hg.attrs[k] for k in _READOUT_SCALARS}
            g = {k: (v.item() if isinstance(v, np.generic) else str(v) if isinstance(v, bytes) else v) for k, v in g.items()}
            g.update({k: hg[k][()] for k in _READOUT_ARRAYS})
            ro["groups"].append(g)
    return ro


def write_netx(fx: FixedNetwork, path: str, extra: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """Write the netx HDF5 of quantized network ``fx`` to ``path``; returns its description."""
    import h5py

    layers = netx_layers(fx)
    readout = host_readout(fx, layers)
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
                **({"bias_host": l["bias_host"]} if "bias_host" in l else {}),
            }
            for i, l in enumerate(layers)
        ],
        "quantization": fx.profile,
    }
    if "bias_channel" in layers[0]:
        desc["bias_input"] = (
            f"the input carries one more {layers[0]['bias_channel']} than the graph's input, LAST, which must be 1 at "
            f"every step: it feeds the constant into the first layer's synaptic current (a bias unit)"
        )
    if "neuron" in layers[0]:  # a bias-driven input layer (written back from an imported PilotNet-style file)
        desc["input_order"] = (
            "none: the input layer's neurons are driven by their bias; set net.layers[0].neuron.bias_mant "
            "(a (W, H, C) array for a 3D input) to the input before each sample"
        )
    hosts = [l["node"] for l in layers if "bias_host" in l]
    if hosts:
        desc["bias_units"] = (
            f"layer(s) {', '.join(map(repr, hosts))} carry extra always-on neurons (bias_host: the last neuron of a "
            f"dense layer, the last channel of a conv layer) that feed the constant into the next layer's synaptic "
            f"current; drop them when reading those layers' spikes"
        )
    if readout is not None:
        desc["host_readout"] = _readout_description(readout)
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
        if readout is not None:
            _write_readout(f, readout)
        f.attrs["nirdeploy"] = json.dumps(desc)
    return desc


def read_description(path: str) -> Dict[str, object]:
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["nirdeploy"]) if "nirdeploy" in f.attrs else {}
