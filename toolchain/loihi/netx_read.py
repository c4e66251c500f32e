"""Reading a lava-dl netx ``.net`` (written by lava-dl SLAYER's ``export_hdf5`` or by nirdeploy deploy).

``read_netx(path) -> NetxNet``: the layers with the integers **as lava-dl netx hands them to Lava**
(``lava/lib/dl/netx/hdf5.py``, ``netx/utils.py``, ``lava/proc/dense/models.py``):

* datasets ``weight``, ``weight_rec``, ``bias`` are cast with ``astype(int)`` (NetDict);
* a dense (dense_rec: the concatenation of weight and weight_rec) matrix goes through netx's
  ``optimize_weight_bits``: clipped to [-256, 254] when it is mixed-sign and out of range, shifted
  left by ``scale_bits`` (so that it fills 8 bits), ``weight_exp = -scale_bits`` (negative for small
  weights), ``num_weight_bits = 8 - scale_bits - n`` (n: trailing zero bits); Lava's bit-accurate
  Dense then clips to 8 bits and truncates to ``num_weight_bits`` (mixed sign: one bit more) and
  shifts the sum by ``weight_exp`` (floor). A file's ``wgtExp`` is not read by netx and is ignored
  here too (shown by inspect);
* conv weights are used as they are (Lava's Conv has no exponent), kernel (out, in/groups, kH, kW),
  stride / padding / dilation in (H, W) order;
* neurons ``CUBA`` / ``LOIHI``: ``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant``,
  ``bias_mant = bias`` (Lava stores it as int16) with ``bias_exp = 6``; refDelay is not used by
  netx's CUBA (LIF) neuron; ``messageBits`` > 0 makes the next synapse graded;
* the first synapse receives graded input (nirdeploy's protocol: ``input_message_bits=16``)
  unless the input layer is itself a neuron layer;
* a file whose first layer is dense (lava-dl's tutorials export their blocks from ``/layer/0`` on)
  gets an input layer of the first weight's input size, as netx does; a first conv layer without
  an input layer is refused (netx itself then needs ``input_shape``);
* an input layer with a ``neuron`` group (lava-dl's PilotNet) is a layer of CUBA neurons whose
  only drive is their bias: netx leaves its input port unconnected and the caller sets
  ``bias_mant`` (one value per neuron; netx's array is (W, H, C), nirdeploy's input is NIR
  (C, H, W), :func:`bias_order`); its ``weight`` / ``bias`` datasets (SLAYER's input transform) are not
  applied by netx and are only reported.

Layer types netx cannot run (pool, average, concat, convT, unpool, complex dense) and neuron types
other than CUBA are refused by name.

``netx_graph(net, dt)``: a NIR graph (float) with the network's structure and dynamics in
SLAYER's units (state scale 4096: weight = w / 64 with the exponent applied, threshold =
vThMant / 64, bias per step = bias / 64), euler scheme with the current input convention at
``dt``: CubaLIF with ``tau_syn = dt / du``, ``w_in = 1 / du``, ``tau_mem = dt / dv``, ``r = 1 / dv``,
``v_leak = bias / dv`` (decays of 0 become 1e-9 per step). A bias-driven input layer is a LIF
(``tau = dt / dv``, ``r = 1 / (64 dv)``: an input of b per step adds the bias b << 6 to v; its
iDecay plays no part, netx never drives its current) fed by the input through an identity synapse
(a 1x1 Conv2d, or a Linear for a flat input). The metadata's ``quantization_hint`` gives every layer
the scale 4096, so that ``deploy`` of the graph writes the file's integers back
(``toolchain/loihi/quantize.py``), and ``netx`` records the source, dt and per-layer integers.

``netx_fixed(net, program) -> FixedNetwork``: the integers above as the fixed network the emulator
runs (bit-exactly what Lava computes with them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from toolchain.errors import NirDeployError, UnsupportedNodeError

SUPPORTED = ("input", "dense", "dense_rec", "conv", "flatten")
#: layer types netx's Network raises NotImplementedError for (or that nirdeploy does not read)
REFUSED = ("pool", "average", "concat", "convT", "unpool", "dense_comp")
NEURONS = ("CUBA", "LOIHI")
BIAS_EXP = 6
STATE_SCALE = 4096.0  # SLAYER: weight x 64 in a_in, << 6 in u: 4096 integer units per float unit
EPS_DECAY = 1e-9


@dataclass
class NetxLayer:
    index: int  # /layer/<index>
    type: str
    shape: Tuple[int, ...]  # NIR order: (C, H, W) or (n,)
    neuron: Dict[str, int] = field(default_factory=dict)  # iDecay, vDecay, vThMant, refDelay, messageBits
    weight: Optional[np.ndarray] = None  # as in the file (int): dense [out, in], conv [out, in/g, kH, kW]
    weight_rec: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None  # int, per neuron in NIR order (broadcast from per channel)
    stride: Tuple[int, int] = (1, 1)  # (H, W)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    # what Lava's Dense computes with (dense / dense_rec): weights after netx + Lava, exponent
    w_eff: Optional[np.ndarray] = None
    w_rec_eff: Optional[np.ndarray] = None
    weight_exp: int = 0
    num_weight_bits: int = 8
    graded_in: bool = False  # the synapse receives graded messages
    extra: Dict[str, object] = field(default_factory=dict)  # datasets netx ignores (wgtExp, input weight/bias)

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    @property
    def has_neuron(self) -> bool:
        return bool(self.neuron)


@dataclass
class NetxNet:
    path: str
    layers: List[NetxLayer]  # every /layer in order (input, neuron layers, flatten)
    input_shape: Tuple[int, ...]  # NIR order
    bias_input: bool  # the input layer is a neuron layer driven by its bias (the input sets it)
    description: Dict[str, object] = field(default_factory=dict)  # nirdeploy's /nirdeploy attribute, if any
    dt: Optional[float] = None  # simulation/Ts (lava-dl) or nirdeploy's dt, when the file says

    @property
    def neuron_layers(self) -> List[NetxLayer]:
        return [l for l in self.layers if l.has_neuron]


# --------------------------------------------------------------------------- reading
def is_netx(path) -> bool:
    """True for an HDF5 file with a /layer group (a netx network), False otherwise (also for .nir)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "layer" in f and "nodes" not in f
    except Exception:
        return False


def _str(d) -> str:
    v = d[()]
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def _arr(d) -> np.ndarray:
    return np.asarray(d[()])


def _pair(v, default) -> Tuple[int, int]:
    if v is None:
        return default
    a = np.asarray(v).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _int(a) -> np.ndarray:
    """NetDict's copy: ``[()].astype(int)`` (truncation toward zero)."""
    return np.asarray(a).astype(np.int64)


def optimize_weight_bits(weight: np.ndarray):
    """lava.lib.dl.netx.utils.optimize_weight_bits -> (weights, num_weight_bits, weight_exp, mixed/exc/inh)."""
    w = np.asarray(weight).astype(np.int64)
    mx, mn = int(w.max(initial=0)), int(w.min(initial=0))
    if (mx > 254 and mn < 0) or (mn < -256 and mx > 0):
        w = np.clip(w, -256, 254)
        mx, mn = int(w.max(initial=0)), int(w.min(initial=0))
    if mx < 0:
        mode, signed = "inh", 0
        scale = -256 / mn
    elif mn >= 0:
        mode, signed = "exc", 0
        if mx == 0:  # netx would divide by zero; an all-zero matrix has nothing to shift
            return w, 8, 0, mode
        scale = 255 / mx
    else:
        mode, signed = "mixed", 1
        scale = min(127 / mx, -128 / mn)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(w / (2**n) - np.round(w / (2**n)))) != 0:
        n -= 1
    n -= signed
    nbits = 8 - scale_bits - n
    if scale_bits < 0:
        raise UnsupportedNodeError(
            f"weights up to {mx} (min {mn}) exceed netx's 8-bit synapse (netx would shift them by {scale_bits})"
        )
    return (w.astype(np.int32) << scale_bits).astype(np.int64), int(nbits), int(-scale_bits), mode


def lava_dense_weights(w: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """What Lava's bit-accurate Dense keeps: clip_weights(8 bits) then truncate_weights (sign mode of w)."""
    w = np.asarray(w, dtype=np.int64)
    mixed = bool(w.min(initial=0) < 0 and w.max(initial=0) > 0)
    inh = bool(w.max(initial=0) <= 0 and w.min(initial=0) < 0)
    x = -w if inh else w.copy()
    x = np.clip(x, -256 if mixed else 0, 255)
    t = 8 - int(num_weight_bits) + int(mixed)
    if t > 0:
        x = (x >> t) << t
    return -x if inh else x


def bias_order(shape) -> str:
    """How a bias (or an input) of a 3D layer is laid out in netx."""
    if len(shape) == 3:
        C, H, W = shape
        return (f"netx holds it as a (W, H, C) = ({W}, {H}, {C}) array; --input takes [T, C, H, W] = [T, {C}, {H}, {W}] "
                f"(NIR order, the same at every step) and nirdeploy transposes it")
    return f"a vector of {int(np.prod(shape))}"


def read_netx(path) -> NetxNet:
    """The network in ``path`` (see the module docstring); NirDeployError for what netx cannot run."""
    import json

    import h5py

    path = str(path)
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise NirDeployError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    with f:
        if "layer" not in f:
            raise NirDeployError(f"{path} is an HDF5 file without a /layer group: not a lava-dl netx network")
        desc = json.loads(f.attrs["nirdeploy"]) if "nirdeploy" in f.attrs else {}
        dt = desc.get("dt")
        if dt is None and "simulation" in f and "Ts" in f["simulation"]:
            dt = None  # lava-dl's Ts is in steps (1), not seconds
        keys = sorted(f["layer"].keys(), key=lambda k: int(k))
        layers: List[NetxLayer] = []
        for k in keys:
            h = f["layer"][k]
            t = _str(h["type"]) if "type" in h else "?"
            if t in REFUSED or t not in SUPPORTED:
                raise UnsupportedNodeError(
                    f"{path}: layer {k} is of type {t!r}, which lava-dl netx cannot run "
                    f"(netx's Network implements input, dense, dense_rec, conv and flatten)"
                )
            shape = tuple(int(s) for s in _arr(h["shape"]).reshape(-1)) if "shape" in h else ()
            L = NetxLayer(index=int(k), type=t, shape=shape)
            if "neuron" in h:
                nt = _str(h["neuron/type"])
                if nt not in NEURONS:
                    raise UnsupportedNodeError(
                        f"{path}: layer {k} has {nt!r} neurons; nirdeploy reads CUBA (LOIHI) neurons only"
                    )
                nd = h["neuron"]
                L.neuron = {q: int(np.asarray(nd[q][()]).reshape(-1)[0]) for q in ("iDecay", "vDecay", "vThMant", "refDelay", "messageBits") if q in nd}
                for q in ("iDecay", "vDecay", "vThMant"):
                    if q not in L.neuron:
                        raise NirDeployError(f"{path}: layer {k}'s neuron has no {q}")
                if "wgtExp" in nd:
                    L.extra["wgtExp"] = int(np.asarray(nd["wgtExp"][()]).reshape(-1)[0])
            if t == "input":
                for q in ("weight", "bias"):
                    if q in h:
                        L.extra[q] = float(np.asarray(h[q][()]).reshape(-1)[0])
            elif t in ("dense", "dense_rec", "conv"):
                if "neuron" not in h:
                    raise UnsupportedNodeError(f"{path}: layer {k} ({t}) has no neuron group")
                if "delay" in h:
                    raise UnsupportedNodeError(f"{path}: layer {k} has synaptic delays, which nirdeploy does not read")
                if "weight" not in h:
                    raise UnsupportedNodeError(f"{path}: layer {k} ({t}) has no 'weight' (complex weights are not read)")
                L.weight = _int(h["weight"][()])
                if t == "dense_rec":
                    L.weight_rec = _int(h["weight_rec"][()])
                if "bias" in h:
                    L.bias = _int(h["bias"][()])
                for q in ("stride", "padding", "dilation"):
                    if q in h:
                        setattr(L, q, _pair(h[q][()], getattr(L, q)))
                if "groups" in h:
                    L.groups = int(np.asarray(h["groups"][()]).reshape(-1)[0])
            layers.append(L)
    return _resolve(path, layers, desc, dt)


def _resolve(path: str, layers: List[NetxLayer], desc, dt) -> NetxNet:
    """Shapes, orders, the effective dense weights and graded flags; consistency checks."""
    if layers and layers[0].type in ("dense", "dense_rec"):
        # lava-dl's tutorials export the blocks from /layer/0 on: netx then takes the input size from
        # the first dense layer's weights (hdf5.Network._create); the reader adds the input layer
        w = layers[0].weight
        n_in = int(w.shape[1]) if w.ndim == 2 else int(w.size // max(1, int(np.prod(layers[0].shape))))
        layers.insert(0, NetxLayer(index=-1, type="input", shape=(n_in,)))
    if not layers or layers[0].type != "input":
        what = f"a {layers[0].type} layer" if layers else "nothing"
        raise UnsupportedNodeError(
            f"{path}: the first layer is {what}, not an input layer; netx needs input_shape for it "
            f"(add a /layer/0 of type 'input' with the input's shape, as lava-dl's PilotNet files have)"
        )
    inp = layers[0]
    bias_input = inp.has_neuron
    prev_shape = inp.shape
    prev_bits = int(inp.neuron.get("messageBits", 0)) if bias_input else 16
    flatten = False
    for L in layers[1:]:
        if L.type == "input":
            raise UnsupportedNodeError(f"{path}: layer {L.index} is a second input layer")
        if L.type == "flatten":
            flatten = True
            continue
        L.graded_in = prev_bits > 0
        if L.type == "conv":
            if flatten or len(prev_shape) != 3:
                raise UnsupportedNodeError(f"{path}: conv layer {L.index} does not follow a 3D layer")
            if len(L.shape) != 3:
                raise UnsupportedNodeError(f"{path}: conv layer {L.index} has shape {L.shape}")
            C, H, W = prev_shape
            w = L.weight
            if w.ndim == 5:  # SLAYER's (out, in, kH, kW, 1)
                w = w.reshape(w.shape[:4])
                L.weight = w
            if w.ndim != 4 or w.shape[1] * L.groups != C or w.shape[0] != L.shape[0]:
                raise UnsupportedNodeError(f"{path}: conv layer {L.index}: weight {w.shape} does not fit input {prev_shape}")
            oh = (H + 2 * L.padding[0] - L.dilation[0] * (w.shape[2] - 1) - 1) // L.stride[0] + 1
            ow = (W + 2 * L.padding[1] - L.dilation[1] * (w.shape[3] - 1) - 1) // L.stride[1] + 1
            if (L.shape[1], L.shape[2]) != (oh, ow):
                raise UnsupportedNodeError(f"{path}: conv layer {L.index}: shape {L.shape}, but the convolution gives {(L.shape[0], oh, ow)}")
        else:
            n_in = int(np.prod(prev_shape))
            n = int(np.prod(L.shape))
            L.shape = (n,)
            w = L.weight
            if w.ndim == 1:
                w = w.reshape(n, -1)
            L.weight = w
            if w.shape != (n, n_in):
                raise UnsupportedNodeError(f"{path}: dense layer {L.index}: weight {w.shape}, expected {(n, n_in)}")
            if len(prev_shape) == 3 and not flatten:
                raise UnsupportedNodeError(f"{path}: dense layer {L.index} follows a 3D layer without flatten")
            if L.type == "dense_rec":
                wr = L.weight_rec.reshape(n, -1)
                if wr.shape != (n, n):
                    raise UnsupportedNodeError(f"{path}: dense_rec layer {L.index}: weight_rec {wr.shape}")
                cat, nb, e, _ = optimize_weight_bits(np.hstack([w, wr]))
                L.w_eff = lava_dense_weights(cat[:, :n_in], nb)
                L.w_rec_eff = lava_dense_weights(cat[:, n_in:], nb)
                L.weight_rec = wr
            else:
                wo, nb, e, _ = optimize_weight_bits(w)
                L.w_eff = lava_dense_weights(wo, nb)
            L.weight_exp, L.num_weight_bits = e, nb
        if L.bias is not None:
            b = L.bias.reshape(-1)
            if b.size == 1 and L.n > 1 and len(L.shape) == 1:
                b = np.full(L.n, int(b[0]))
            elif len(L.shape) == 3 and b.size == L.shape[0]:  # per channel
                b = np.repeat(b, L.shape[1] * L.shape[2])
            elif len(L.shape) == 3 and b.size == L.n:  # per neuron, netx's (W, H, C) array
                C, H, W = L.shape
                b = b.reshape(W, H, C).transpose(2, 1, 0).reshape(-1)
            elif b.size != L.n:
                raise UnsupportedNodeError(f"{path}: layer {L.index}: bias of {b.size} values for {L.n} neurons")
            if np.any(np.abs(b) > 32767):
                raise UnsupportedNodeError(f"{path}: layer {L.index}: biases beyond Lava's 16-bit bias_mant")
            L.bias = b.astype(np.int64)
        flatten = False
        prev_shape = L.shape
        prev_bits = int(L.neuron.get("messageBits", 0))
    if len([l for l in layers if l.has_neuron]) == 0:
        raise UnsupportedNodeError(f"{path}: no neuron layer")
    return NetxNet(path=path, layers=layers, input_shape=tuple(inp.shape), bias_input=bias_input, description=desc, dt=dt)


# --------------------------------------------------------------------------- the NIR view
def node_name(L: NetxLayer) -> str:
    return "input_layer" if L.type == "input" else f"layer{L.index}"


def _decay(x: int) -> float:
    return max(float(x) / 4096.0, EPS_DECAY)


def _neuron_node(L: NetxLayer, one_state: bool = False):
    import nir

    n = tuple(L.shape)
    du, dv = _decay(L.neuron["iDecay"]), _decay(L.neuron["vDecay"])
    b = np.zeros(n) if L.bias is None else L.bias.astype(np.float64).reshape(n) / 64.0
    vth = np.full(n, L.neuron["vThMant"] / 64.0)
    full = lambda v: np.full(n, float(v))  # noqa: E731
    if one_state:  # the bias-driven input layer: the input is its bias, on the voltage (u stays 0)
        return nir.LIF(tau=full(1.0 / dv), r=full(1.0 / (64.0 * dv)), v_leak=np.zeros(n), v_threshold=vth,
                       v_reset=np.zeros(n))  # fmt: skip
    return nir.CubaLIF(tau_syn=full(1.0 / du), tau_mem=full(1.0 / dv), r=full(1.0 / dv), v_leak=b / dv,
                       v_threshold=vth, v_reset=np.zeros(n), w_in=full(1.0 / du))  # fmt: skip


def netx_graph(net: NetxNet, dt: float = 1e-3, metadata: Optional[Dict[str, object]] = None):
    """The float NIR graph of ``net`` at timestep ``dt`` (see the module docstring). Time constants
    are written in units of dt and scaled by ``dt`` (tau = dt / decay)."""
    import nir

    from toolchain.ir import make_graph

    dt = float(dt)
    nodes: Dict[str, object] = {"input": nir.Input(input_type={"input": np.array(net.input_shape)})}
    edges: List[Tuple[str, str]] = []
    prev = "input"
    scales = {}
    for L in net.layers:
        if L.type == "flatten":
            nodes[f"flatten{L.index}"] = nir.Flatten(input_type=None, start_dim=0, end_dim=-1)
            edges.append((prev, f"flatten{L.index}"))
            prev = f"flatten{L.index}"
            continue
        if not L.has_neuron:
            continue
        name = node_name(L)
        node = _neuron_node(L, one_state=L.type == "input")
        for p in ("tau", "tau_syn", "tau_mem"):
            if hasattr(node, p):
                setattr(node, p, np.asarray(getattr(node, p)) * dt)
        if L.type == "conv":
            w = L.weight.astype(np.float64) / 64.0
            nodes[f"w{L.index}"] = nir.Conv2d(input_shape=None, weight=w, stride=np.array(L.stride),
                                              padding=np.array(L.padding), dilation=np.array(L.dilation),
                                              groups=int(L.groups), bias=np.zeros(w.shape[0]))  # fmt: skip
        elif L.type in ("dense", "dense_rec"):
            nodes[f"w{L.index}"] = nir.Linear(weight=L.w_eff.astype(np.float64) * 2.0**L.weight_exp / 64.0)
        if L.type == "input":  # the input (its bias) through an identity synapse: a plain graph of the network
            C = net.input_shape[0] if len(net.input_shape) == 3 else None
            nodes[f"w{L.index}"] = (
                nir.Conv2d(input_shape=None, weight=np.eye(C).reshape(C, C, 1, 1), stride=np.array([1, 1]),
                           padding=np.array([0, 0]), dilation=np.array([1, 1]), groups=1, bias=np.zeros(C))
                if C is not None else nir.Linear(weight=np.eye(L.n))
            )  # fmt: skip
        edges += [(prev, f"w{L.index}"), (f"w{L.index}", name)]
        nodes[name] = node
        if L.type == "dense_rec":
            nodes[f"w{L.index}_rec"] = nir.Linear(weight=L.w_rec_eff.astype(np.float64) * 2.0**L.weight_exp / 64.0)
            edges += [(name, f"w{L.index}_rec"), (f"w{L.index}_rec", name)]
        scales[name] = {"layer": L.index, "state_scale": STATE_SCALE, "weight_exp": int(L.weight_exp),
                        "iDecay": L.neuron["iDecay"], "vDecay": L.neuron["vDecay"], "vThMant": L.neuron["vThMant"]}  # fmt: skip
        prev = name
    last = net.neuron_layers[-1]
    nodes["output"] = nir.Output(output_type={"output": np.array(last.shape)})
    edges.append((prev, "output"))
    meta = {
        "dt": dt, "scheme": "euler", "input_convention": "current", "reset": "value", "v_init": "v_reset",
        "source_framework": "lava-dl netx", "readout": "sum",
        "netx": {"source": str(net.path), "dt": dt, "state_scale": STATE_SCALE, "bias_exp": BIAS_EXP,
                 "bias_input": node_name(net.layers[0]) if net.bias_input else False, "layers": scales},
        # toolchain/loihi/quantize.py: quantize every layer at the file's scale (gives back its integers)
        "quantization_hint": {"source": "lava-dl netx file", "scales": {k: STATE_SCALE for k in scales}},
    }  # fmt: skip
    meta.update(metadata or {})
    return make_graph(nodes, edges, meta)


# --------------------------------------------------------------------------- the fixed network
def _perm_whc(shape3) -> np.ndarray:
    C, H, W = shape3
    return np.arange(C * H * W).reshape(C, H, W).transpose(2, 1, 0).reshape(-1)


def netx_fixed(net: NetxNet, program):
    """The FixedNetwork of ``net`` for ``program`` (its :func:`netx_graph`, lowered): one group per
    netx neuron layer (key = node name), Lava's process orders, depths 1, 2, ... along the chain."""
    from toolchain.loihi.fixed import FixedConn, FixedGroup, FixedNetwork
    from toolchain.loihi.plan import LavaPlan, PlanConn, PlanGroup, PlanInput

    groups: Dict[str, FixedGroup] = {}
    pgroups: Dict[str, PlanGroup] = {}
    conns: List[FixedConn] = []
    pconns: List[PlanConn] = []
    in_shape = tuple(net.input_shape)
    in3 = in_shape if len(in_shape) == 3 else None
    inputs = {"in": PlanInput(key="in", offset=0, lag=0, idx=_perm_whc(in3) if in3 else np.arange(int(np.prod(in_shape))),
                              shape3=in3)}  # fmt: skip
    prev_key, prev_idx, prev3 = "in", inputs["in"].idx, in3
    depth = 0
    for L in net.neuron_layers:
        depth += 1
        key = node_name(L)
        shape3 = tuple(L.shape) if len(L.shape) == 3 else None
        idx = _perm_whc(shape3) if shape3 else np.arange(L.n)
        du, dv, vth = int(L.neuron["iDecay"]) - 1, int(L.neuron["vDecay"]), int(L.neuron["vThMant"])
        bias = np.zeros(L.n, np.int64) if L.bias is None else L.bias[idx]
        if L.type == "input":  # driven by its bias: delivered once at step 0 into a current that never decays
            du, bias = -1, np.zeros(L.n, np.int64)
        groups[key] = FixedGroup(key=key, node=key, role="neuron", idx=idx, depth=depth, spiking=True, du=du, dv=dv,
                                 vth=vth, bias_mant=bias, bias_exp=BIAS_EXP, scale=STATE_SCALE, v_scale=np.ones(L.n),
                                 v_offset=np.zeros(L.n), shape3=shape3, limit="netx file")  # fmt: skip
        pgroups[key] = PlanGroup(key=key, node=key, role="neuron", idx=idx, du=(du + 1) / 4096.0, dv=dv / 4096.0,
                                 vth=vth / 64.0, bias=bias / 64.0, v_scale=np.ones(L.n), v_offset=np.zeros(L.n),
                                 depth=depth, scale=np.ones(L.n), shape3=shape3)  # fmt: skip
        if L.type == "input" and shape3 is not None:  # identity 1x1 convolution (a dense identity would be n^2)
            C = shape3[0]
            k = np.eye(C, dtype=np.int64).reshape(C, 1, 1, C)
            p = {"input_shape": (shape3[2], shape3[1], C), "padding": (0, 0), "stride": (1, 1), "dilation": (1, 1),
                 "groups": 1, "output_shape": (shape3[2], shape3[1], C)}  # fmt: skip
            conns.append(FixedConn(key=f"{key}~bias", src="in", dst=key, kind="conv", graded=True, weights=k, conv=p))
            pconns.append(PlanConn(key=f"{key}~bias", src="in", dst=key, kind="conv", weights=k.astype(float), graded=True, conv=p))
        elif L.type == "input":
            W = np.eye(L.n, dtype=np.int64)
            conns.append(FixedConn(key=f"{key}~bias", src="in", dst=key, kind="dense", graded=True, weights=W))
            pconns.append(PlanConn(key=f"{key}~bias", src="in", dst=key, kind="dense", weights=W.astype(float), graded=True))
        elif L.type == "conv":
            k = L.weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1).astype(np.int64)  # netx: Lava (out, kX, kY, in/g)
            Cp, Hp, Wp = prev3
            p = {"input_shape": (Wp, Hp, Cp), "padding": tuple(L.padding[::-1]), "stride": tuple(L.stride[::-1]),
                 "dilation": tuple(L.dilation[::-1]), "groups": int(L.groups),
                 "output_shape": (shape3[2], shape3[1], shape3[0])}  # fmt: skip
            conns.append(FixedConn(key=f"w{L.index}", src=prev_key, dst=key, kind="conv", graded=L.graded_in, weights=k, conv=p))
            pconns.append(PlanConn(key=f"w{L.index}", src=prev_key, dst=key, kind="conv", weights=k / 64.0, graded=L.graded_in, conv=p))
        else:
            W = L.w_eff[:, prev_idx]  # columns in the source's process order (netx flattens (W, H, C) to NIR order)
            conns.append(FixedConn(key=f"w{L.index}", src=prev_key, dst=key, kind="dense", graded=L.graded_in, weights=W,
                                   weight_exp=int(L.weight_exp)))  # fmt: skip
            pconns.append(PlanConn(key=f"w{L.index}", src=prev_key, dst=key, kind="dense", graded=L.graded_in,
                                   weights=W * 2.0**L.weight_exp / 64.0))  # fmt: skip
            if L.type == "dense_rec":
                Wr = L.w_rec_eff
                conns.append(FixedConn(key=f"w{L.index}_rec", src=key, dst=key, kind="dense",
                                       graded=int(L.neuron.get("messageBits", 0)) > 0, weights=Wr, weight_exp=int(L.weight_exp)))  # fmt: skip
                pconns.append(PlanConn(key=f"w{L.index}_rec", src=key, dst=key, kind="dense", graded=False,
                                       weights=Wr * 2.0**L.weight_exp / 64.0))  # fmt: skip
        prev_key, prev_idx, prev3 = key, idx, shape3
    plan = LavaPlan(program=program, n_samples=1, n_steps=1, padding=0, groups=pgroups, inputs=inputs, conns=pconns,
                    forms={}, node_groups={k: [k] for k in groups}, host_sources=[node_name(net.neuron_layers[-1])])  # fmt: skip
    fx = FixedNetwork(program=program, plan=plan, groups=groups, conns=conns, profile="netx")
    fx.report = {"source": "netx file", "path": net.path, "layers": [
        {"node": k, "scale": STATE_SCALE, "vth_mant": g.vth, "weight_max_rel_error": 0.0, "threshold_rel_error": 0.0,
         "decay_max_abs_error": 0.0, "limit": "netx file"} for k, g in groups.items()]}  # fmt: skip
    fx.netx = net
    return fx


def emulator_input(net: NetxNet, x: np.ndarray) -> np.ndarray:
    """The emulator's input for the netx network: ``x`` itself, or for a bias-driven input layer
    the bias of each sample (``x[:, 0]``, which must be the same at every step) at step 0 only."""
    x = np.asarray(x)
    if not net.bias_input:
        return x
    b = bias_of(net, x)
    out = np.zeros_like(x, dtype=np.float64)
    out[:, 0] = b.reshape((b.shape[0],) + x.shape[2:])
    return out


def bias_of(net: NetxNet, x: np.ndarray) -> np.ndarray:
    """Per sample, the input layer's bias_mant [N, n] (NIR order) from inputs [N, T, *shape]."""
    x = np.asarray(x)
    N, T = x.shape[0], x.shape[1]
    flat = x.reshape(N, T, -1)
    if T > 1 and not np.all(flat == flat[:, :1]):
        raise NirDeployError(
            "this network's input layer is driven by its bias (lava-dl's PilotNet style): the input sets the bias, "
            "one value per neuron and sample, so it must be the same at every step of a sample"
        )
    b = flat[:, 0]
    if np.any(np.abs(b) > 32767) or np.any(b != np.rint(b)):
        raise NirDeployError("a bias-driven input layer takes integer biases within Lava's 16 bits (|b| <= 32767)")
    return b.astype(np.int64)


# --------------------------------------------------------------------------- import
def import_graph(path, dt: float):
    """The float NIR graph of the ``.net`` at ``path`` at timestep ``dt`` (``nirdeploy import-netx``):
    :func:`netx_graph` with metadata ``imported_from`` (file name, sha256, dt), every node declaring
    its shapes (the export pipeline), ready to save, retime and deploy."""
    import hashlib
    import os

    from toolchain.passes.pipelines import run_pipeline

    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise NirDeployError(f"--dt must be a number of seconds, got {dt!r}") from None
    if not np.isfinite(dt) or dt <= 0:
        raise NirDeployError(f"--dt must be a positive number of seconds, got {dt!r}")
    if not is_netx(path):
        raise NirDeployError(f"{path} is not a lava-dl netx network (an HDF5 file with a /layer group)")
    net = read_netx(path)
    for L in net.neuron_layers[:-1]:  # the last layer's messages go nowhere
        if int(L.neuron.get("messageBits", 0)) > 0:
            raise UnsupportedNodeError(
                f"{path}: layer {L.index} sends graded spikes (messageBits {L.neuron['messageBits']}), which a NIR graph "
                f"of spiking neurons cannot express; nirdeploy runs the .net as it is (simulate / compare {path})"
            )
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    meta = {"imported_from": {"file": os.path.basename(str(path)), "sha256": digest, "dt": dt,
                              "format": "lava-dl netx hdf5",
                              "written_by": "nirdeploy" if net.description else "lava-dl (or another tool)"}}  # fmt: skip
    return run_pipeline(netx_graph(net, dt, metadata=meta), "export")


def default_dt(path) -> float:
    """The dt a ``.net`` runs at when none is given: the one nirdeploy recorded, else 1 ms (lava-dl
    files carry none; the integers have no time)."""
    net = read_netx(path)
    return float(net.dt) if net.dt else 1e-3
