"""Road-like driving frames (200 x 66 RGB), generated deterministically from a seed.

lava-dl's PilotNet networks were trained and measured on frames of the PilotNet driving dataset
(a dashboard camera, resized to 200 x 66; ``tutorials/lava/lib/dl/netx/pilotnet_snn/dataset.py``),
which is not available here and is not ours to ship. No installed package ships a road image
(scikit-image is not installed; matplotlib's sample images are a portrait, a logo and a product
photo; we add no heavy dependency). For activity and energy estimates the frames only need the statistics that drive
the network's spikes: a bright sky band, a dark horizon line of trees / buildings, a grey road
trapezoid narrowing to a vanishing point that moves with the road's curvature, white lane
markings (solid edges, a dashed centre line), green / brown verges, soft shading and sensor
noise. :func:`road_frames` draws these with numpy alone:

* the horizon at 30-40 % of the height, the vanishing point's x from the curvature ``c`` in
  [-1, 1] (a quadratic bend of the road's centre line towards the top);
* the road's half-width grows linearly from 2 px at the horizon to 70-95 px at the bottom row;
* dashes of the centre line: period 9-14 rows in perspective (longer near the camera), a random
  phase per frame;
* per-frame random sky / road / verge colours, a vertical illumination gradient, Gaussian noise
  (sigma 0.02) and a few dark "car" boxes on the road in some frames.

Pixel values are floats in [0, 1], layout ``[N, 66, 200, 3]`` (H, W, C), like
``np.array(PIL image) / 255`` in lava-dl's dataset. :func:`pilotnet_bias` applies lava-dl's input
transform (``dataset.py``: ``2 * weight * image - weight + bias``, cast to int32, with the
``weight`` / ``bias`` of the ``.net`` input layer, 40 and 36 for ``pilotnet_lif.net``) and returns
the per-neuron bias in NIR order (C, H, W), the value nirdeploy's ``--input`` takes for a
bias-driven input layer (``toolchain/loihi/netx_read.py``; ``nirdeploy inspect`` shows a file's
input ``weight`` / ``bias`` under ``ignored_by_netx``).

Command line (one frame as ``--input`` for ``simulate``/``compare``, repeated over the steps)::

    python -m toolchain.data.road_frames -o frame.npy --seed 0 --steps 16 --weight 40 --bias 36
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

import numpy as np

from toolchain.errors import NirDeployError

#: lava-dl's PilotNet input size (dataset.py: size=[200, 66], i.e. W x H)
WIDTH, HEIGHT = 200, 66
GENERATOR_VERSION = 1


def road_frames(n: int, seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """``n`` road-like RGB frames ``[n, height, width, 3]`` in [0, 1] (deterministic in ``seed``)."""
    if n < 1:
        raise NirDeployError("road_frames needs at least one frame")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((n, height, width, 3))
    for k in range(n):
        img = np.empty((height, width, 3))
        hz = int(round(height * rng.uniform(0.30, 0.40)))  # horizon row
        curv = rng.uniform(-1.0, 1.0)
        sky = np.array([0.55, 0.70, 0.90]) * rng.uniform(0.75, 1.1) + rng.uniform(-0.05, 0.05, 3)
        verge = np.array([0.30, 0.45, 0.20]) * rng.uniform(0.7, 1.2) + rng.uniform(-0.05, 0.05, 3)
        road = np.full(3, rng.uniform(0.30, 0.50)) + rng.uniform(-0.03, 0.03, 3)
        # sky: brighter towards the horizon
        t_sky = np.clip(yy / max(1, hz), 0, 1)[..., None]
        img[:] = sky * (0.85 + 0.25 * t_sky)
        # horizon band: trees / buildings, a ragged dark silhouette above the horizon
        tops = hz - np.abs(np.cumsum(rng.normal(0, 1.2, width))) % max(2, hz // 2) - 1
        band = (yy < hz) & (yy >= tops[None, :])
        img[band] = np.array([0.18, 0.25, 0.15]) * rng.uniform(0.6, 1.3)
        # ground: verges with a depth gradient
        below = yy >= hz
        depth = np.clip((yy - hz) / max(1, height - 1 - hz), 0, 1)  # 0 at the horizon, 1 at the bottom
        img[below] = (verge * (0.7 + 0.4 * depth[..., None]))[below]
        # road: centre line bends quadratically towards the horizon with the curvature
        vx = width / 2 + curv * width * 0.35
        cx = vx + (width / 2 - vx) * depth + curv * width * 0.15 * depth * (1 - depth)
        half = 2 + (rng.uniform(70, 95) - 2) * depth
        on_road = below & (np.abs(xx - cx) <= half)
        img[on_road] = (road * (0.85 + 0.25 * depth[..., None]))[on_road]
        # lane markings: solid edge lines and a dashed centre line
        lw = 0.6 + 1.8 * depth
        edge = below & (np.abs(np.abs(xx - cx) - 0.92 * half) <= lw * 0.6)
        img[edge] = 0.92
        period = 9 + 5 * depth
        phase = rng.uniform(0, 1)
        dashes = ((yy - hz) / period + phase) % 1.0 < 0.5
        centre = below & (np.abs(xx - cx) <= lw * 0.5) & dashes
        img[centre] = np.array([0.95, 0.9, 0.6])
        # a few cars: dark boxes on the road
        for _ in range(rng.integers(0, 3)):
            d = rng.uniform(0.15, 0.8)
            row = hz + d * (height - 1 - hz)
            r0 = int(round(row))
            c_at = vx + (width / 2 - vx) * d + curv * width * 0.15 * d * (1 - d)
            w = max(2, int(round(0.5 * (2 + (80 - 2) * d))))
            c0 = int(round(c_at + rng.uniform(-0.6, 0.6) * (2 + 70 * d) - w / 2))
            h = max(2, int(round(w * 0.6)))
            img[max(hz, r0 - h):r0, max(0, c0):max(0, c0 + w)] = rng.uniform(0.05, 0.6, 3)
        img += rng.normal(0, 0.02, img.shape)
        out[k] = np.clip(img, 0.0, 1.0)
    return out


def pilotnet_bias(frames: np.ndarray, weight: float = 40.0, bias: float = 36.0) -> np.ndarray:
    """lava-dl's PilotNet input transform of frames ``[N, H, W, 3]`` in [0, 1] -> integer bias
    ``[N, 3, H, W]`` (NIR order): ``int32(2 * weight * image - weight + bias)`` (dataset.py)."""
    f = np.asarray(frames, dtype=np.float64)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise NirDeployError(f"pilotnet_bias takes RGB frames [N, H, W, 3], got shape {f.shape}")
    b = (2 * weight * f - weight + bias).astype(np.int32)  # astype truncates towards zero, as in dataset.py
    return b.transpose(0, 3, 1, 2).astype(np.int64)


def bias_inputs(frames_bias: np.ndarray, steps: int) -> np.ndarray:
    """``[N, 3, H, W]`` biases -> the simulator input ``[N, steps, 3, H, W]`` (the same bias at every
    step, which is how a bias-driven input layer takes a frame)."""
    if steps < 1:
        raise NirDeployError("--steps must be at least 1")
    b = np.asarray(frames_bias, dtype=np.float64)
    return np.repeat(b[:, None], steps, axis=1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toolchain.data.road_frames", description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", required=True, help="a .npy file: one frame [steps, 3, 66, 200] (or images with --raw)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", type=int, default=0, help="which frame of the seed's sequence")
    ap.add_argument("--steps", type=int, default=16, help="time steps (lava-dl's PilotNet: reset_interval 16)")
    ap.add_argument("--weight", type=float, default=40.0, help="the input layer's weight (pilotnet_lif.net: 40)")
    ap.add_argument("--bias", type=float, default=36.0, help="the input layer's bias (pilotnet_lif.net: 36)")
    ap.add_argument("--raw", action="store_true", help="write the RGB image [66, 200, 3] in [0, 1] instead")
    a = ap.parse_args(argv)
    try:
        frames = road_frames(a.index + 1, seed=a.seed)[a.index:]
        if a.raw:
            np.save(a.output, frames[0])
        else:
            np.save(a.output, bias_inputs(pilotnet_bias(frames, a.weight, a.bias), a.steps)[0])
    except NirDeployError as e:
        raise SystemExit(f"error: {e}")
    print(a.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
