"""Running a written ``.net`` file in lava-dl netx, the way a Loihi 2 owner would load it.

The file is written by ``exporters/nir_to_netx.py`` (whose docstring explains the reset and input
protocol); this is the check that lava-dl's own reader computes the emulator's spikes.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np


def _carries_over(desc: Dict[str, object], path: str) -> bool:
    """True when a dense_rec layer can carry spikes from one sample into the next one in a single netx
    run: netx has no gate, so its last spikes of sample n reach step 0 of sample n + 1, and a layer
    driven by a constant (a bias or a bias unit, here or in front) never falls silent."""
    import h5py

    types = [l.get("type") for l in desc.get("layers", [])]
    if "dense_rec" not in types:
        return False
    if desc.get("bias_input") or desc.get("bias_units"):
        return True
    with h5py.File(path, "r") as f:
        return any("bias" in f["layer"][k] and np.any(f["layer"][k]["bias"][()]) for k in f["layer"])


def run_netx(
    path: str,
    x: np.ndarray,
    input_message_bits: int = 16,
    progress: bool = False,
    per_sample: Optional[bool] = None,
    input_bias: Optional[np.ndarray] = None,
) -> Dict[str, object]:
    """Run integer inputs x [N, T, *input_shape] (NIR layout) through the netx network at ``path``.

    One Lava run (``fixed_pt``) with ``reset_interval=T, reset_offset=1``. Returns
    {"spikes": [per netx neuron layer: bool [N, T, n] in the layer's order (dense: NIR order,
    conv: Lava's (W, H, C) order)], "network": str(net), "seconds": ...}. When the file has a host
    readout (non-spiking readout layers, ``exporters.nir_to_netx.host_readout``), it is applied to
    the last layer's spikes after the run (``simulators.host_readout.run_host_readout``) and the
    result also holds "host_readout": {"v_int": {group: int32 [N, T, n]}, "v": {node: [N, T, *shape]},
    "outputs": {Output: [N, T, *shape]}}.

    ``per_sample``: run every sample in its own netx run (default: when a dense_rec layer would carry
    spikes across samples, :func:`_carries_over`; one run otherwise).

    ``input_bias`` [N, n] (NIR order): for a network whose input layer is a neuron layer driven by its
    bias (lava-dl's PilotNet), each sample's bias_mant of that layer; every sample then runs in its own
    netx run (the bias is set before the run, in netx's (W, H, C) order) and ``x`` only gives N and T.
    """
    from exporters.nir_to_netx import read_description, read_host_readout

    desc = read_description(path)
    x = np.asarray(x)
    if per_sample is None:
        per_sample = x.shape[0] > 1 and (_carries_over(desc, path) or input_bias is not None)
    if input_bias is not None and x.shape[0] == 1:
        out = _run_once(path, x, desc, input_message_bits, progress, input_bias[0])
    elif per_sample and x.shape[0] > 1:
        parts = [_run_once(path, x[i : i + 1], desc, input_message_bits, progress,
                           None if input_bias is None else input_bias[i]) for i in range(x.shape[0])]  # fmt: skip
        out = {
            "spikes": [np.concatenate([p["spikes"][i] for p in parts]) for i in range(len(parts[0]["spikes"]))],
            "network": parts[0]["network"],
            "build_seconds": sum(p["build_seconds"] for p in parts),
            "run_seconds": sum(p["run_seconds"] for p in parts),
            "runs": len(parts),
        }
    else:
        out = _run_once(path, x, desc, input_message_bits, progress)
    readout = read_host_readout(path)
    if readout is not None:  # the non-spiking readout, on the host from the chip's output spikes
        from simulators.host_readout import run_host_readout

        out["host_readout"] = run_host_readout(readout, out["spikes"][-1])
    return out


def _run_once(path: str, x: np.ndarray, desc: Dict[str, object], input_message_bits: int, progress: bool,
              bias: Optional[np.ndarray] = None):  # fmt: skip
    """One netx run of all samples in ``x`` (``bias``: the bias_mant of a bias-driven input layer, NIR order)."""
    import tempfile
    import time

    # lava_runtime first: it lets Lava's import set multiprocessing's start method when one is already fixed
    from simulators.lava_runtime import LavaNetwork, PySpikeRecorderModel, SpikeRecorder, new_recording, run_network

    from simulators.backends import quiet_imports

    with quiet_imports():  # lava-dl's import prints warnings (Prophesee toolbox, CUDA) to stdout
        from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer

    N, T = x.shape[0], x.shape[1]
    if desc.get("bias_input"):  # a bias unit of the first layer: one more input channel, always 1
        x = np.concatenate([x, np.ones((N, T, 1) + x.shape[3:], dtype=x.dtype)], axis=2) if x.ndim == 5 else \
            np.concatenate([x.reshape(N, T, -1), np.ones((N, T, 1), dtype=x.dtype)], axis=2)
    t0 = time.perf_counter()
    net = Network(net_config=path, reset_interval=T, reset_offset=1, input_message_bits=input_message_bits)
    L = len(net.layers)
    total = N * T + L + 1
    in_shape = tuple(net.inp.shape)
    xs = x.reshape((N * T,) + x.shape[2:])
    if len(in_shape) == 3:  # (W, H, C) from NIR (C, H, W)
        xs = xs.transpose(0, 3, 2, 1)
    else:
        xs = xs.reshape(N * T, -1)
    if bias is None:
        data = np.zeros(in_shape + (total,), dtype=np.int32)
        data[..., : N * T] = np.moveaxis(xs, 0, -1)
        src = RingBuffer(data=data)
        src.s_out.connect(net.inp)
    else:  # the input layer's neurons are driven by their bias (netx leaves their input unconnected)
        nshape = tuple(net.layers[0].neuron.bias_mant.shape)
        b = np.asarray(bias, dtype=np.int64)
        if len(nshape) == 3:  # NIR (C, H, W) -> Lava (W, H, C)
            b = b.reshape(nshape[::-1]).transpose(2, 1, 0)
        net.layers[0].neuron.bias_mant.init = b.reshape(nshape).astype(np.int32)

    class _Plan:  # what run_network needs
        total_steps = total

    with tempfile.TemporaryDirectory(prefix="nirdeploy-netx-") as workdir:
        recordings, models = {}, {}
        for i, layer in enumerate(net.layers):
            n = int(np.prod(layer.out.shape))
            p = new_recording(workdir, "s", i, n, total)
            rec = SpikeRecorder(shape=(n,), path=p, name=f"layer{i}~spikes")
            layer.out.reshape((n,)).connect(rec.a_in)
            recordings[("s", str(i))] = p
            models[rec] = PySpikeRecorderModel
        lnet = LavaNetwork(root=net, processes={}, recordings=recordings, models=models, chunk=min(total, 1000))
        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)
        t1 = time.perf_counter()
        rec = run_network(_Plan, lnet, cfg, progress=progress, desc="netx")
    t2 = time.perf_counter()
    spikes = []
    for i in range(L):
        full = rec[("s", str(i))]  # [n, total]; layer i handles sample n step k at Lava step n T + k + 2 + i
        seg = full[:, 1 + i : 1 + i + N * T]
        spikes.append(seg.reshape(-1, N, T).transpose(1, 2, 0).astype(bool))
    # drop the always-on bias-unit neurons a layer hosts for the next one (nir_to_netx._bias_from_host)
    neuron_layers = [l for l in desc.get("layers", []) if l.get("type") in ("dense", "dense_rec", "conv")]
    if len(neuron_layers) == L:
        for i, l in enumerate(neuron_layers):
            h = l.get("bias_host")
            if not h:
                continue
            if l["type"] == "conv":
                C1, Hh, Wh = l["shape"]
                z = spikes[i].reshape(N, T, Wh, Hh, C1)  # Lava's (W, H, C) order
                spikes[i] = z[..., : C1 - 1].reshape(N, T, -1)
            else:
                spikes[i] = spikes[i][:, :, : int(l["shape"][0]) - 1]
    return {"spikes": spikes, "network": str(net), "build_seconds": t1 - t0, "run_seconds": t2 - t1, "runs": 1}


def run_netx_program(program, x: np.ndarray, record_v: bool = False, progress: bool = False):
    """lava-fixed on a program read from a lava-dl netx ``.net`` (``toolchain.api.load_netx``): the file
    itself runs in lava-dl netx (:func:`run_netx`, nirdeploy's protocol) -> a SimResult in the program's
    layout (the same as the emulator's on ``program.netx_fixed``)."""
    from simulators.emulator import to_result
    from toolchain.loihi.netx_read import bias_of

    fx = program.netx_fixed
    net = fx.netx
    x = np.asarray(x)
    x = x.reshape(x.shape[:2] + tuple(net.input_shape))  # run_netx takes the NIR layout
    bias = bias_of(net, x) if net.bias_input else None
    # netx's dense_rec has no gate: its last spikes of one sample would reach the next one's first step,
    # while every sample starts from zero state on the emulator; run such networks one sample per netx run
    rec = any(L.type == "dense_rec" for L in net.layers)
    r = run_netx(net.path, x, progress=progress, input_bias=bias, per_sample=True if rec else None)
    keys = list(fx.node_groups)
    if len(r["spikes"]) != len(keys):  # pragma: no cover - the reader and netx see the same layers
        raise RuntimeError(f"netx ran {len(r['spikes'])} layers, the reader has {len(keys)}")
    spikes = {}
    for k, s in zip(keys, r["spikes"]):
        g = fx.groups[k]
        z = np.zeros(s.shape, dtype=bool)
        z[:, :, g.idx] = s  # netx's order is the process order (conv: (W, H, C)); idx: NIR index of each
        spikes[k] = z
    res = to_result(fx, x, {"spikes": spikes, "v": {}}, False, "lava-fixed")
    res.info.update(quantization="netx file", source=net.path, netx_runs=r.get("runs", 1),
                    build_seconds=r.get("build_seconds"), run_seconds=r.get("run_seconds"))  # fmt: skip
    return res
