"""Event-camera digits made offline: N-MNIST's recipe on scikit-learn's bundled 8x8 digits.

Two generators share one sensor model:

* :func:`make_event_digits` -- one digit per sample, ``input_shape = (2, size, size)``; the
  static image of every sample is kept in ``EventDataset.images`` (for static-to-event transfer).
* :func:`make_segmentation_digits` -- one or two digits at random positions on a larger canvas,
  with per-pixel masks in ``EventDataset.targets`` (0 = background, 1 + class on a digit).

Recipe (after Orchard et al. 2015, "Converting static image datasets to spiking neuromorphic
datasets using saccades"):

1. **Images.** scikit-learn's 1797 handwritten 8x8 digits (``sklearn.datasets.load_digits``,
   bundled, no download), intensities 0..16 scaled to [0, 1], upsampled with a cubic spline.
   A seeded permutation splits them: the test images are the first ``min(n_test, test_pool)``
   of it, the training images the rest, so train and test never share an image. When more
   samples are asked for than a split has images, images are reused (each use has its own
   saccade, sensor noise and so its own events).
2. **Saccades.** As in N-MNIST the scene moves along a triangle of three straight segments,
   one per third of ``duration``: vertices (0, 0), (A/2, A), (A, 0) back to (0, 0) in (x, y)
   pixels, with ``A = saccade * size`` (``saccade * digit_size`` on a segmentation canvas). Per sample, each vertex is jittered by
   ``U(-saccade_jitter, saccade_jitter) * A`` and the x and y directions are flipped at
   random. The path is shifted so that the scene is at rest position (where ``images`` and
   ``targets`` show it) at the sample's mid time ``duration / 2``.
3. **Sensor.** A DVS pixel model simulated every ``sub_dt`` (0.1 ms): the log intensity
   ``L = log(I + log_eps)`` of every pixel (bilinear sampling of the moving scene) is compared
   with the pixel's memorised level; when it has risen by the pixel's ON threshold (fallen by
   its OFF threshold) the pixel emits an ON (OFF) event and moves its level by one threshold.
   The event time is where the linearly interpolated ``L`` crosses the level inside the
   sub-step (continuous, not a multiple of ``sub_dt``), but not before the pixel's
   ``refractory`` period after its previous event has passed. Thresholds are per pixel and per
   polarity: ``threshold * (1 + threshold_mismatch * N(0, 1))``, a fixed map of one sensor
   (drawn from the seed, shared by train and test). The levels start at the first frame's
   ``L`` (the sensor has adapted to the scene before it moves).
4. **Noise.** Background activity: Poisson events at ``noise_rate`` per pixel per second,
   random polarity and time. Timestamps are rounded to ``time_resolution`` (1 us, a sensor
   clock).

Channels are flat indices into ``(2, H, W)``: polarity first, **0 = OFF, 1 = ON** (tonic's
``p`` convention), then row ``y`` (top to bottom), then column ``x``.

Everything is deterministic for a given seed and parameters; the train and test splits use
independent random streams derived from the seed (changing ``n_train`` does not change the
test samples). :func:`cached_event_digits` / :func:`cached_segmentation_digits` keep generated
splits in a per-user cache (``$NIRDEPLOY_CACHE``, else ``$XDG_CACHE_HOME/nirdeploy``, else
``~/.cache/nirdeploy``), keyed by all parameters; ``open_dataset("digits")`` uses them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from toolchain.errors import NirDeployError

from .events import EventDataset, load

#: bump when the generated events change for the same parameters (invalidates caches)
GENERATOR_VERSION = 1

PARAMS: Dict[str, Any] = dict(
    saccade=0.15,  # triangle amplitude A as a fraction of the image side (N-MNIST: 7 px of 34)
    saccade_jitter=0.25,  # each vertex moved by U(-j, j) * A
    sub_dt=1e-4,  # simulation sub-step, seconds
    threshold=0.25,  # mean ON and OFF contrast threshold, in log-intensity units
    threshold_mismatch=0.10,  # relative std of the per-pixel thresholds (fixed sensor map)
    refractory=0.5e-3,  # seconds a pixel stays silent after an event
    log_eps=0.1,  # L = log(I + log_eps); I in [0, 1]
    noise_rate=1.0,  # background events per pixel per second (either polarity)
    time_resolution=1e-6,  # timestamps rounded to this (seconds); 0 keeps full precision
    test_pool=360,  # at most this many images (20 %) are reserved for the test split
    chunk=512,  # samples simulated at once (memory only: results do not depend on it)
)

SEG_PARAMS: Dict[str, Any] = dict(
    mask_threshold=0.3,  # a pixel belongs to a digit where the digit's intensity exceeds this
    max_tries=50,  # placements tried to keep two digits' masks apart before accepting overlap
)

CLASSES = [str(d) for d in range(10)]
#: default sizes used by open_dataset("digits") and open_dataset("digits-seg")
DEFAULT_DIGITS = dict(n_train=1500, n_test=300, seed=0, size=16, duration=0.1)
DEFAULT_SEG = dict(n_train=1000, n_test=200, seed=0, canvas=32, digit_size=12, n_digits=(1, 2), duration=0.1)


# ----------------------------------------------------------------------------- images
def _digits() -> Tuple[np.ndarray, np.ndarray]:
    """(images float64 [1797, 8, 8] in [0, 1], labels int64 [1797]) from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is part of the environment
        raise NirDeployError("the event digits need scikit-learn (pip install scikit-learn)") from None
    d = load_digits()
    return np.asarray(d.images, dtype=np.float64) / 16.0, np.asarray(d.target, dtype=np.int64)


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    """float32 ``[n, size, size]``: 8x8 images upsampled with a cubic spline, clipped to [0, 1]."""
    from scipy.ndimage import zoom

    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 2:
        images = images[None]
    n, h, w = images.shape
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):  # one at a time: a 3-D zoom would also filter across images
        z = zoom(images[i], (size / h, size / w), order=3, mode="grid-constant", cval=0.0, grid_mode=True)
        z[z < 1e-6] = 0.0  # spline round-off and undershoot: black is black
        out[i] = np.minimum(z, 1.0)
    return out


def _pools(n_test: int, seed: int, test_pool: int, n_images: int) -> Tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(np.random.SeedSequence([seed, 8])).permutation(n_images)
    k = max(1, min(int(n_test), int(test_pool), n_images - 1)) if n_test > 0 else 0
    return perm[k:], perm[:k]


def _take(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n image indices from pool: each image once before any repeats (shuffled per round)."""
    if n <= pool.size:
        return pool[:n].copy()
    rounds = [pool] + [rng.permutation(pool) for _ in range(int(math.ceil(n / pool.size)) - 1)]
    return np.concatenate(rounds)[:n]


# ----------------------------------------------------------------------------- saccades
def _saccade_paths(n: int, n_sub: int, duration: float, side: int, p: Dict[str, Any], rng) -> np.ndarray:
    """float64 ``[n, n_sub + 1, 2]``: (dx, dy) scene offset in pixels at t = k * sub_dt."""
    A = float(p["saccade"]) * side
    base = np.array([[0.0, 0.0], [A / 2, A], [A, 0.0], [0.0, 0.0]])
    jit = rng.uniform(-1.0, 1.0, size=(n, 4, 2)) * float(p["saccade_jitter"]) * A
    jit[:, 3] = jit[:, 0]  # the triangle closes
    flip = np.where(rng.random((n, 1, 2)) < 0.5, -1.0, 1.0)
    verts = (base[None] + jit) * flip  # [n, 4, 2]
    t = np.arange(n_sub + 1) * (duration / n_sub)
    s = np.clip(t / duration * 3.0, 0.0, 3.0)  # position along the three segments
    seg = np.minimum(s.astype(np.int64), 2)
    f = (s - seg)[None, :, None]
    path = verts[:, seg] * (1 - f) + verts[:, seg + 1] * f  # [n, n_sub + 1, 2]
    mid = verts[:, 1] * 0.5 + verts[:, 2] * 0.5  # t = duration / 2: halfway along segment 2
    return path - mid[:, None, :]


# ----------------------------------------------------------------------------- sensor
def _sensor_map(shape: Tuple[int, int], p: Dict[str, Any], seed: int) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 9]))
    P = shape[0] * shape[1]
    th = float(p["threshold"])
    mm = float(p["threshold_mismatch"])
    on = th * (1.0 + mm * rng.standard_normal(P))
    off = th * (1.0 + mm * rng.standard_normal(P))
    lo = 0.2 * th
    return np.maximum(on, lo), np.maximum(off, lo)


def _shift_frames(padded: np.ndarray, pad: int, H: int, W: int, off: np.ndarray) -> np.ndarray:
    """float64 ``[B, H * W]``: each padded image sampled bilinearly at (y - dy, x - dx)."""
    B, Hp, Wp = padded.shape
    sx, sy = -off[:, 0], -off[:, 1]
    ix, iy = np.floor(sx), np.floor(sy)
    fx, fy = (sx - ix)[:, None], (sy - iy)[:, None]
    base = np.arange(B) * (Hp * Wp) + (iy.astype(np.int64) + pad) * Wp + (ix.astype(np.int64) + pad)
    grid = (np.arange(H)[:, None] * Wp + np.arange(W)[None, :]).reshape(-1)
    idx = base[:, None] + grid[None, :]  # flat index of the top-left neighbour, [B, H * W]
    flat = padded.reshape(-1)
    out = flat.take(idx) * ((1 - fy) * (1 - fx))
    out += flat.take(idx + 1) * ((1 - fy) * fx)
    out += flat.take(idx + Wp) * (fy * (1 - fx))
    out += flat.take(idx + Wp + 1) * (fy * fx)
    return out


def simulate_dvs(
    images: np.ndarray,
    paths: np.ndarray,
    duration: float,
    th_on: np.ndarray,
    th_off: np.ndarray,
    p: Dict[str, Any],
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DVS events of moving images (no noise, no rounding).

    ``images`` float ``[B, H, W]`` in [0, 1], ``paths`` ``[B, n_sub + 1, 2]`` offsets (pixels)
    at ``t = k * duration / n_sub``; ``th_on`` / ``th_off`` ``[H * W]``.
    Returns (sample int64, time float64 s, channel int64 into (2, H, W)), unsorted.
    """
    B, H, W = images.shape
    n_sub = paths.shape[1] - 1
    sub_dt = duration / n_sub
    P = H * W
    pad = int(math.ceil(np.abs(paths).max())) + 2 if paths.size else 2
    padded = np.pad(np.asarray(images, dtype=np.float64), ((0, 0), (pad, pad), (pad, pad)))
    eps = float(p["log_eps"])
    refr = float(p["refractory"])
    L_prev = np.log(_shift_frames(padded, pad, H, W, paths[:, 0]) + eps)
    ref = L_prev.copy()
    last = np.full((B, P), -np.inf)
    on_th, off_th = th_on[None, :], th_off[None, :]
    out_b: List[np.ndarray] = []
    out_t: List[np.ndarray] = []
    out_c: List[np.ndarray] = []
    for k in range(1, n_sub + 1):
        t0 = (k - 1) * sub_dt
        t1 = k * sub_dt
        L = np.log(_shift_frames(padded, pad, H, W, paths[:, k]) + eps)
        d = L - ref
        ready = last <= t1 - refr
        for pol, fire, level_step in (
            (1, ready & (d >= on_th), on_th),
            (0, ready & (d <= -off_th), -off_th),
        ):
            bb, pp = np.nonzero(fire)
            if bb.size == 0:
                continue
            step = np.broadcast_to(level_step, (B, P))[bb, pp]
            level = ref[bb, pp] + step
            lp, ln = L_prev[bb, pp], L[bb, pp]
            dl = ln - lp
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(dl != 0, (level - lp) / dl, 1.0)
            t = t0 + np.clip(frac, 0.0, 1.0) * sub_dt
            t = np.maximum(t, last[bb, pp] + refr)
            ref[bb, pp] = level
            last[bb, pp] = t
            out_b.append(bb)
            out_t.append(t)
            out_c.append(pol * P + pp)
        L_prev = L
    if not out_b:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(out_b).astype(np.int64), np.concatenate(out_t), np.concatenate(out_c).astype(np.int64)


def _events_of_scenes(
    scenes: np.ndarray,
    duration: float,
    p: Dict[str, Any],
    rng: np.random.Generator,
    sensor: Tuple[np.ndarray, np.ndarray],
    side: int,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, channels, sample_ptr) of the scenes [n, H, W] moved along random saccades
    (amplitude ``saccade * side`` pixels)."""
    n, H, W = scenes.shape
    sub_dt = float(p["sub_dt"])
    if not (sub_dt > 0 and duration > 0):
        raise NirDeployError("duration and sub_dt must be positive numbers of seconds")
    n_sub = max(1, int(round(duration / sub_dt)))
    paths = _saccade_paths(n, n_sub, duration, side, p, rng)
    # noise is drawn per sample, in sample order, before simulating: chunking does not matter
    P2 = 2 * H * W
    n_noise = rng.poisson(float(p["noise_rate"]) * H * W * duration, size=n)
    noise_t = rng.uniform(0.0, duration, size=int(n_noise.sum()))
    noise_c = rng.integers(0, P2, size=int(n_noise.sum()))
    noise_b = np.repeat(np.arange(n), n_noise)
    bs, ts, cs = [noise_b], [noise_t], [noise_c]
    chunk = max(1, int(p["chunk"]))
    for a in range(0, n, chunk):
        b, t, c = simulate_dvs(scenes[a : a + chunk], paths[a : a + chunk], duration, sensor[0], sensor[1], p)
        bs.append(b + a)
        ts.append(t)
        cs.append(c)
    b, t, c = np.concatenate(bs), np.concatenate(ts), np.concatenate(cs)
    res = float(p["time_resolution"])
    if res:
        t = np.round(t / res) * res
    ok = (t >= 0) & (t < duration)
    b, t, c = b[ok], t[ok], c[ok]
    o = np.lexsort((c, t, b))
    b, t, c = b[o], t[o], c[o]
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(b, minlength=n), out=ptr[1:])
    return t, c, ptr


def _check_opts(opts: Dict[str, Any], known: Dict[str, Any]) -> Dict[str, Any]:
    unknown = set(opts) - set(known)
    if unknown:
        raise NirDeployError(f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return {**known, **opts}


def _meta(p: Dict[str, Any], **extra) -> Dict[str, Any]:
    meta: Dict[str, Any] = {}
    for key, v in {**p, **extra}.items():
        if key == "chunk":
            continue
        if isinstance(v, (tuple, list)):
            meta[key] = ",".join(str(x) for x in v)
        elif isinstance(v, str):
            meta[key] = v
        else:
            meta[key] = float(v)
    meta["generator_version"] = float(GENERATOR_VERSION)
    return meta


# ----------------------------------------------------------------------------- event digits
def make_event_digits(
    n_train: int,
    n_test: int,
    seed: int = 0,
    size: int = 16,
    duration: float = 0.1,
    **opts,
) -> Tuple[EventDataset, EventDataset]:
    """(train, test) event digits: ``input_shape = (2, size, size)``, 10 classes ``"0"``..``"9"``.

    ``images`` holds each sample's static digit at rest position (float32 ``[n, size, size]``).
    ``opts`` override :data:`PARAMS` (see the module docstring for the recipe).
    """
    p = _check_opts(opts, PARAMS)
    size, n_train, n_test = int(size), int(n_train), int(n_test)
    if size < 4:
        raise NirDeployError(f"size must be at least 4 pixels, got {size}")
    if n_train < 0 or n_test < 0:
        raise NirDeployError("n_train and n_test must be >= 0")
    duration = float(duration)
    imgs8, targets = _digits()
    train_pool, test_pool = _pools(n_test, seed, p["test_pool"], len(imgs8))
    s_train, s_test = np.random.SeedSequence([seed, 1]).spawn(2)
    sensor = _sensor_map((size, size), p, seed)
    out = []
    for split, n, pool, ss in (("train", n_train, train_pool, s_train), ("test", n_test, test_pool, s_test)):
        rng = np.random.default_rng(ss)
        idx = _take(pool, n, rng) if n else np.zeros(0, np.int64)
        images = upsample(imgs8[idx], size) if n else np.zeros((0, size, size), np.float32)
        times, chans, ptr = _events_of_scenes(images.astype(np.float64), duration, p, rng, sensor, size)
        meta = _meta(p, task="event-digits", split=split, seed=seed, size=size, unique_images=float(np.unique(idx).size))
        out.append(
            EventDataset(
                times=times,
                channels=chans,
                sample_ptr=ptr,
                labels=targets[idx],
                input_shape=(2, size, size),
                duration=duration,
                classes=CLASSES,
                name=f"digits-{split}",
                meta=meta,
                images=images,
            )
        )
    return out[0], out[1]


# ----------------------------------------------------------------------------- segmentation
def _place(canvas: int, k: int, digit_imgs: np.ndarray, rng, p: Dict[str, Any]) -> np.ndarray:
    """int64 ``[k, 2]`` top-left (row, col) of k digits whose masks do not overlap if possible."""
    ds = digit_imgs.shape[-1]
    th = float(p["mask_threshold"])
    best, best_overlap = None, None
    for _ in range(max(1, int(p["max_tries"]))):
        pos = rng.integers(0, canvas - ds + 1, size=(k, 2))
        occ = np.zeros((canvas, canvas), np.int64)
        for j in range(k):
            r, c = pos[j]
            occ[r : r + ds, c : c + ds] += digit_imgs[j] > th
        overlap = int(np.count_nonzero(occ > 1))
        if best is None or overlap < best_overlap:
            best, best_overlap = pos, overlap
        if overlap == 0:
            break
    return best


def make_segmentation_digits(
    n_train: int,
    n_test: int,
    seed: int = 0,
    canvas: int = 32,
    digit_size: int = 12,
    n_digits: Union[int, Sequence[int]] = (1, 2),
    duration: float = 0.1,
    **opts,
) -> Tuple[EventDataset, EventDataset]:
    """(train, test) of digits on a canvas, with per-pixel masks.

    Each sample places ``n_digits`` digits (an int, or ``(lo, hi)``: uniform in ``[lo, hi]``),
    each upsampled to ``digit_size`` pixels, at random integer positions on a ``canvas`` x
    ``canvas`` scene (positions are re-drawn up to ``max_tries`` times to keep the digits'
    masks apart), moves the whole scene along a saccade and records DVS events as
    :func:`make_event_digits` does (``input_shape = (2, canvas, canvas)``).

    ``targets`` (int64 ``[n, canvas, canvas]``): the scene at the sample's mid time (= rest
    position), 0 = background and ``1 + class`` where a digit's intensity exceeds
    ``mask_threshold`` (where two digits overlap, the brighter one wins). ``images``: the scene
    at rest (pixel-wise max of the digits). ``labels``: the class of the first digit placed.
    Digit images come from the same disjoint train/test pools as :func:`make_event_digits`.
    """
    p = _check_opts(opts, {**PARAMS, **SEG_PARAMS})
    canvas, digit_size = int(canvas), int(digit_size)
    if not 4 <= digit_size <= canvas:
        raise NirDeployError(f"digit_size must lie in [4, canvas = {canvas}], got {digit_size}")
    lo, hi = (int(n_digits), int(n_digits)) if np.isscalar(n_digits) else (int(n_digits[0]), int(n_digits[-1]))
    if not 1 <= lo <= hi:
        raise NirDeployError(f"n_digits must be a positive int or a range (lo, hi) with 1 <= lo <= hi, got {n_digits}")
    duration = float(duration)
    imgs8, classes = _digits()
    train_pool, test_pool = _pools(n_test, seed, p["test_pool"], len(imgs8))
    s_train, s_test = np.random.SeedSequence([seed, 2]).spawn(2)
    sensor = _sensor_map((canvas, canvas), p, seed)
    th = float(p["mask_threshold"])
    out = []
    for split, n, pool, ss in (("train", int(n_train), train_pool, s_train), ("test", int(n_test), test_pool, s_test)):
        rng = np.random.default_rng(ss)
        scenes = np.zeros((n, canvas, canvas), np.float32)
        masks = np.zeros((n, canvas, canvas), np.int64)
        labels = np.zeros(n, np.int64)
        for i in range(n):
            k = int(rng.integers(lo, hi + 1))
            idx = rng.choice(pool, size=k, replace=pool.size < k)
            dimgs = upsample(imgs8[idx], digit_size)
            pos = _place(canvas, k, dimgs, rng, p)
            best = np.zeros((canvas, canvas), np.float32)
            for j in range(k):
                r, c = pos[j]
                layer = np.zeros((canvas, canvas), np.float32)
                layer[r : r + digit_size, c : c + digit_size] = dimgs[j]
                win = (layer > th) & (layer > best)
                masks[i][win] = 1 + classes[idx[j]]
                best = np.maximum(best, layer)
            scenes[i] = best
            labels[i] = classes[idx[0]]
        times, chans, ptr = _events_of_scenes(scenes.astype(np.float64), duration, p, rng, sensor, digit_size)
        meta = _meta(
            p, task="segmentation-digits", split=split, seed=seed, canvas=canvas, digit_size=digit_size,
            n_digits=(lo, hi), targets="0 = background, 1 + class = digit pixel at duration / 2",
        )
        out.append(
            EventDataset(
                times=times,
                channels=chans,
                sample_ptr=ptr,
                labels=labels,
                input_shape=(2, canvas, canvas),
                duration=duration,
                classes=CLASSES,
                name=f"digits-seg-{split}",
                meta=meta,
                images=scenes,
                targets=masks,
            )
        )
    return out[0], out[1]


# ----------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """Where generated datasets are cached: ``$NIRDEPLOY_CACHE``, else
    ``$XDG_CACHE_HOME/nirdeploy``, else ``~/.cache/nirdeploy``."""
    env = os.environ.get("NIRDEPLOY_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "nirdeploy"


def _cached(kind: str, make, params: Dict[str, Any]) -> Tuple[EventDataset, EventDataset]:
    key = json.dumps({"kind": kind, "version": GENERATOR_VERSION, **params}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir() / f"{kind}-{digest}.h5"
    if path.exists():
        try:
            return load(path, split="train"), load(path, split="test")
        except NirDeployError:
            pass  # a damaged cache file: regenerate it
    train, test = make(**params)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".h5", dir=path.parent)
        os.close(fd)
        try:
            train.save(tmp, group="train", mode="w")
            test.save(tmp, group="test", mode="a")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, NirDeployError):
        pass  # an unwritable cache only costs time
    return train, test


def cached_event_digits(**params) -> Tuple[EventDataset, EventDataset]:
    """:func:`make_event_digits` through the per-user cache (arguments: the same, by keyword;
    defaults :data:`DEFAULT_DIGITS`)."""
    return _cached("digits", make_event_digits, {**DEFAULT_DIGITS, **params})


def cached_segmentation_digits(**params) -> Tuple[EventDataset, EventDataset]:
    """:func:`make_segmentation_digits` through the per-user cache (defaults :data:`DEFAULT_SEG`)."""
    params = {**DEFAULT_SEG, **params}
    if not np.isscalar(params["n_digits"]):
        params["n_digits"] = tuple(int(v) for v in params["n_digits"])
    return _cached("digits-seg", make_segmentation_digits, params)


def load_digits_split(split: str = "test", **params) -> EventDataset:
    """One split of the default event digits (``open_dataset("digits:train")``)."""
    return _split(cached_event_digits(**params), split, "digits")


def load_segmentation_split(split: str = "test", **params) -> EventDataset:
    """One split of the default segmentation digits (``open_dataset("digits-seg:train")``)."""
    return _split(cached_segmentation_digits(**params), split, "digits-seg")


def _split(pair: Tuple[EventDataset, EventDataset], split: str, what: str) -> EventDataset:
    if split not in ("train", "test"):
        raise NirDeployError(f"the {what} data has the splits train and test, not {split!r}")
    return pair[0] if split == "train" else pair[1]
