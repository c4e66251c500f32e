"""The host readout of a ``.net``: the non-spiking readout layers (LI, CubaLI) computed on the host
from the chip's output spikes, in Loihi's integer arithmetic.

A netx layer sends spikes, so a graph whose last neuron layers do not spike (norse's ``LICell`` /
``LIBoxCell`` classifier head) is deployed in two parts (``exporters/nir_to_netx.py``): the
spiking layers as the netx network, and the readout's integers (each readout group's ``du``,
``dv``, ``vth``, ``bias_mant`` / ``bias_exp``, scale ``K``, ``v_scale`` / ``v_offset``, neuron
order, and the integer weights, weight exponent and lag of its Dense from the last spiking layer)
in the file's ``/nirdeploy/readout`` group, which lava-dl netx does not read.
:func:`run_host_readout` takes the chip's output spikes [N, T, n] of the last spiking layer (what
``simulators.lava_netx.run_netx`` records, or a Loihi run streamed with the same protocol) and
returns the readout's integer v, its v in the NIR model's units and the graph's Output values in
the reference's layout.

**Why it equals the emulator bit for bit.** The emulator (``simulators/emulator.py``) runs the
readout as one more Lava LIF group of the same FixedNetwork, with these same integers: its Dense
input is the sum of the integer weights over the source's spikes of step ``k - lag`` (int64),
shifted by the weight exponent and wrapped to int32 (binary input); its state update is
``lif_step``: ``a_in << 6``, the current decayed by ``(4096 - (du + 1)) / 4096`` with truncation
toward zero and one 24-bit wrap of ``u``, the voltage decayed by ``(4096 - dv) / 4096`` plus ``u``
plus ``bias_mant << bias_exp``, clipped to +-(2^23 - 1), and the (unreachable for a sane readout,
but still reproduced) threshold ``vth << 6`` with reset to 0. This module imports that very
``lif_step`` and the emulator's ``_params`` (so the two cannot drift apart) and computes the Dense
sum in exact int64 arithmetic, which is what the emulator's exact matrix product yields. The chip
part is the netx network, whose spikes equal the emulator's, layer by layer (tests/test_netx.py).
Same input spikes, same integers, same arithmetic: chip (netx) + host readout == emulator, which
tests/test_host_readout.py checks with ``np.array_equal`` on v, the outputs and the chip spikes.
The conversion to NIR units (``v_int / (K v_scale) + v_offset``) and the Outputs (a reshape of a
readout's v or of the chip's spikes) are the float operations ``emulator.to_result`` does, in the
same order, so those agree exactly too.

No Lava import: this runs on any host with numpy.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from simulators.emulator import _params, lif_step, shift, wrap32
from toolchain.errors import NirDeployError
from toolchain.loihi.fixed import FixedGroup


def _group(g: Dict[str, object]) -> FixedGroup:
    """A stored readout group as the FixedGroup the emulator ran."""
    return FixedGroup(
        key=str(g["key"]), node=str(g["node"]), role="neuron", idx=np.asarray(g["idx"]), depth=0, spiking=False,
        du=int(g["du"]), dv=int(g["dv"]), vth=int(g["vth"]), bias_mant=np.asarray(g["bias_mant"], dtype=np.int64),
        bias_exp=int(g["bias_exp"]), scale=float(g["scale"]), v_scale=np.asarray(g["v_scale"], dtype=np.float64),
        v_offset=np.asarray(g["v_offset"], dtype=np.float64),
    )  # fmt: skip


def readout_v_int(g: Dict[str, object], spikes: np.ndarray) -> np.ndarray:
    """Integer v [N, T, n] (int32, neurons in NIR order like ``emulate()["v"]``) of one stored readout
    group for the chip's output spikes [N, T, n_chip] (netx's neuron order)."""
    s = np.asarray(spikes)
    N, T, n_chip = s.shape
    W = np.asarray(g["weight"], dtype=np.int64)  # [n, n_chip] in the group's (process) order
    if W.shape[1] != n_chip:
        raise NirDeployError(f"the chip's output has {n_chip} neurons; the host readout expects {W.shape[1]}")
    fg = _group(g)
    order = np.argsort(fg.idx, kind="stable")  # the emulator keeps a group's neurons in NIR order
    fu, fv, vth64, bias = _params(fg, order)
    Wn = W[order]
    j, e = int(g["lag"]), int(g["weight_exp"])
    # the Dense: sum of the weights of the spiking inputs (int64), << e (>> -e), sent as int32
    acc = np.zeros((N, T, fg.n), dtype=np.int64)
    if j < T:
        acc[:, j:] = (s[:, : T - j].reshape(-1, n_chip).astype(np.int64) @ Wn.T).reshape(N, T - j, fg.n)
    a = wrap32(shift(acc, e))
    uw = np.asarray(g.get("unit_weight", np.zeros(fg.n)), dtype=np.int64)[order]
    if np.any(uw):  # a bias unit: one spike every step from step unit_lag, weights uw (a second Dense port)
        jl = int(g.get("unit_lag", 0))
        a[:, jl:] = wrap32(a[:, jl:] + uw)
    u = np.zeros((N, fg.n), np.int64)
    v = np.zeros((N, fg.n), np.int64)
    out = np.zeros((N, T, fg.n), dtype=np.int32)
    for k in range(T):
        u, v, _ = lif_step(u, v, a[:, k], fu, fv, vth64, bias)
        out[:, k] = v
    return out


def run_host_readout(readout: Dict[str, object], spikes: np.ndarray) -> Dict[str, Dict[str, np.ndarray]]:
    """The host readout (``exporters.nir_to_netx.read_host_readout(path)``) of the chip's output spikes
    [N, T, n_chip] (the last netx layer's spikes, netx's neuron order, aligned with the reference as
    ``run_netx`` returns them).

    Returns {"v_int": {group key: int32 [N, T, n] (NIR order; ``emulate()["v"]``'s layout)},
    "v": {readout node: float64 [N, T, *shape] in the NIR model's units}, "outputs": {Output:
    [N, T, *shape]} (the reference's layout)}.
    """
    s = np.asarray(spikes).astype(bool)
    N, T = s.shape[0], s.shape[1]
    s = s.reshape(N, T, -1)
    v_int: Dict[str, np.ndarray] = {}
    v: Dict[str, np.ndarray] = {}
    for node, info in readout["nodes"].items():
        v[node] = np.zeros((N, T, int(np.prod(info["shape"]))))
    for g in readout["groups"]:
        vi = readout_v_int(g, s)
        v_int[str(g["key"])] = vi
        fg = _group(g)
        p = np.argsort(fg.idx, kind="stable")  # as emulator.to_result
        v[str(g["node"])][:, :, fg.idx[p]] = (vi / (fg.scale * fg.v_scale[p])) + fg.v_offset[p]
    v = {n: a.reshape((N, T) + tuple(readout["nodes"][n]["shape"])) for n, a in v.items()}
    chip = np.zeros(s.shape, dtype=np.float64)
    chip[:, :, np.asarray(readout["chip_idx"])] = s  # NIR order of the last spiking layer
    outputs = {}
    for o, info in readout["outputs"].items():
        src = info["source"]
        val = v[src] if src in v else chip
        outputs[o] = val.reshape((N, T) + tuple(info["shape"]))
    return {"v_int": v_int, "v": v, "outputs": outputs}
