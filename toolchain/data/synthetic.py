"""The embedded default task: "chirp codes", a synthetic SHD-like task where timing is everything.

The 40 input channels form 5 bands of 8 adjacent channels (think of the frequency channels of
a cochlea model, as in SHD). A *word* is one chirp per band: a sweep that fires the band's
channels one after the other, either upwards (``u``: first channel first) or downwards (``d``).
The bands sweep at different speeds: crossing a band takes 3, 4.5, 6, 9 and 13 ms. Each of the
10 classes is a direction code, one letter per band (``"uuuuu"``, ``"dduuu"``, ... see
:data:`PARAMS`), and a sample repeats its class's word 2 to 4 times at random onsets.

Why timing matters:

* Every chirp fires every channel of its band once, whatever its direction, so the number of
  spikes per channel does not depend on the class: a rate code is at chance (logistic
  regression on per-channel counts: ~10-12 % on the shipped test split).
* The direction is only visible in the order of spikes a few ms apart. An SNN neuron reads it
  by integrating: excitation from one end of a band and inhibition from the other end make the
  membrane cross threshold only when the excitatory spikes come first and accumulate before the
  inhibition arrives (several input spikes within 3-13 ms, with tau ~ 10 ms). That needs the
  drive per input spike to be right: scale it by 2 (the "tau" retiming at rho = 2) and the wrong
  order fires too; halve it and nothing fires.
* The fast bands (3 and 4.5 ms) lose their direction when binned at 4 ms and partly at 2 ms;
  pairs of classes that differ only there (e.g. ``uuuuu``/``dduuu``) become confusable. The
  slow bands survive coarse bins, so a model binned at 4 ms still does well, but measurably
  worse than at 1 ms.

Nuisances: the bands of a word start at independent random offsets (0-6 ms, class-independent),
each spike is jittered (Gaussian, 0.4 ms), each sample's chirp durations are warped by
U(0.9, 1.1), 10 % of chirp spikes are dropped and Poisson background noise adds 5 events per
channel per second. Timestamps are rounded to 1 microsecond, like an event sensor's clock.

``make_temporal_task`` draws any number of samples; ``generate_default`` writes the shipped file
``toolchain/data/temporal_default.h5`` (2000 train / 500 test, seed 0) and ``load_default``
reads it back. Regenerate with ``python -m toolchain.data.synthetic``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from toolchain.errors import NirDeployError

from .events import EventDataset, load

DEFAULT_FILE = Path(__file__).resolve().parent / "temporal_default.h5"
DEFAULT_SIZES = {"train": 2000, "test": 500}
DEFAULT_SEED = 0

PARAMS: Dict[str, Any] = dict(
    bands=5,  # groups of adjacent channels; each one chirps up or down
    band_size=8,  # channels per band (n_channels = bands * band_size)
    sweep_ms=(3.0, 4.5, 6.0, 9.0, 13.0),  # time a chirp takes to cross its band, per band
    codes=("00000", "11000", "01100", "10100", "00110", "10010", "01010", "00011", "11011", "01111"),
    words=(2, 4),  # repetitions of the class's word per sample: uniform integer in [lo, hi]
    stagger_ms=6.0,  # within a word, each band starts at U(0, stagger) ms (class-independent)
    duration=0.1,  # seconds per sample
    min_gap=0.003,  # seconds between words (and at both ends)
    jitter=0.4e-3,  # std of the Gaussian jitter of each spike, seconds
    warp=0.10,  # chirp durations of each sample are scaled by U(1 - warp, 1 + warp)
    p_drop=0.10,  # probability that a chirp spike is missing
    noise_rate=5.0,  # background Poisson events per channel per second
    time_resolution=1e-6,  # timestamps are rounded to this (seconds); 0 to keep full precision
)


def class_names(params: Optional[Dict[str, Any]] = None) -> list:
    p = {**PARAMS, **(params or {})}
    return ["".join("ud"[int(b)] for b in code) for code in p["codes"]]


def _make_split(n: int, rng: np.random.Generator, p: Dict[str, Any], name: str) -> EventDataset:
    nb, bs = int(p["bands"]), int(p["band_size"])
    C = nb * bs
    T = float(p["duration"])
    sweeps = np.asarray(p["sweep_ms"], dtype=np.float64) * 1e-3
    codes = np.array([[int(b) for b in code] for code in p["codes"]], dtype=np.int64)
    if sweeps.size != nb or codes.shape[1] != nb:
        raise NirDeployError(f"sweep_ms and every code need one entry per band ({nb})")
    n_classes = codes.shape[0]
    lo, hi = (int(v) for v in p["words"])
    stagger = float(p["stagger_ms"]) * 1e-3
    labels = rng.integers(0, n_classes, size=n)
    pos = np.arange(bs, dtype=np.float64) / (bs - 1)  # position of each channel along its band
    times_l, chans_l, counts = [], [], np.zeros(n, dtype=np.int64)
    for i in range(n):
        code = codes[labels[i]]
        sw = sweeps * rng.uniform(1 - p["warp"], 1 + p["warp"])
        # one word: band b's channel j fires at offset_b + sw_b * (j or reversed j)
        order = np.where(code[:, None] == 0, pos[None, :], pos[None, ::-1])  # [band, channel]
        word_len = stagger + sw.max()
        k = int(rng.integers(lo, hi + 1))
        free = T - k * word_len - (k + 1) * p["min_gap"]
        if free < 0:
            raise NirDeployError(
                f"{k} words of {word_len * 1e3:.1f} ms with gaps of {p['min_gap'] * 1e3:g} ms do not fit in "
                f"{T * 1e3:g} ms: raise duration or lower words"
            )
        gaps = rng.dirichlet(np.ones(k + 1)) * free + p["min_gap"]
        onsets = np.cumsum(gaps[:k]) + np.arange(k) * word_len
        offs = rng.uniform(0.0, stagger, size=(k, nb))
        t = onsets[:, None, None] + offs[:, :, None] + (sw[:, None] * order)[None]  # [word, band, channel]
        t = t.reshape(-1)
        c = np.tile(np.arange(C), k)
        t = t + rng.normal(0.0, p["jitter"], size=t.size)
        keep = rng.random(t.size) >= p["p_drop"]
        t, c = t[keep], c[keep]
        n_noise = int(rng.poisson(p["noise_rate"] * C * T))
        t = np.concatenate([t, rng.uniform(0.0, T, size=n_noise)])
        c = np.concatenate([c, rng.integers(0, C, size=n_noise)])
        if p["time_resolution"]:
            t = np.round(t / p["time_resolution"]) * p["time_resolution"]
        ok = (t >= 0) & (t < T)
        t, c = t[ok], c[ok]
        o = np.argsort(t, kind="stable")
        times_l.append(t[o])
        chans_l.append(c[o])
        counts[i] = o.size
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    meta: Dict[str, Any] = {}
    for key, v in p.items():
        if isinstance(v, (tuple, list)):
            meta[key] = ",".join(f"{x:g}" if not isinstance(x, str) else x for x in v)
        else:
            meta[key] = float(v)
    meta["task"] = "chirp-codes"
    meta["split"] = name
    return EventDataset(
        times=np.concatenate(times_l) if n else np.zeros(0),
        channels=np.concatenate(chans_l) if n else np.zeros(0, dtype=np.int64),
        sample_ptr=ptr,
        labels=labels,
        input_shape=(C,),
        duration=T,
        classes=class_names(p),
        name=f"chirps-{name}",
        meta=meta,
    )


def make_temporal_task(n_train: int, n_test: int, seed: int = 0, **params) -> Tuple[EventDataset, EventDataset]:
    """(train, test) of the chirp task; deterministic for a given seed and parameters.

    ``params`` override :data:`PARAMS`. The two splits come from independent random streams
    derived from ``seed``, so changing ``n_train`` does not change the test set.
    """
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise NirDeployError(f"unknown task parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(PARAMS)}")
    p = {**PARAMS, **params}
    if int(p["band_size"]) < 2 or int(p["bands"]) < 1:
        raise NirDeployError("the chirp task needs at least one band of at least 2 channels")
    seq = np.random.SeedSequence(seed)
    s_train, s_test = seq.spawn(2)
    train = _make_split(int(n_train), np.random.default_rng(s_train), p, "train")
    test = _make_split(int(n_test), np.random.default_rng(s_test), p, "test")
    for ds in (train, test):
        ds.meta["seed"] = float(seed)
    return train, test


def generate_default(path: Union[str, os.PathLike] = DEFAULT_FILE) -> Path:
    """Write the default task (2000 train / 500 test samples, seed 0) to ``path``; returns it."""
    train, test = make_temporal_task(DEFAULT_SIZES["train"], DEFAULT_SIZES["test"], seed=DEFAULT_SEED)
    train.save(path, group="train", mode="w")
    test.save(path, group="test", mode="a")
    return Path(path)


def load_default(split: str = "test") -> EventDataset:
    """The shipped default task: ``"train"`` (2000 samples) or ``"test"`` (500)."""
    if split not in DEFAULT_SIZES:
        raise NirDeployError(f"the default data has the splits train and test, not {split!r}")
    if not DEFAULT_FILE.exists():
        raise NirDeployError(
            f"the default data {DEFAULT_FILE} is missing; regenerate it with "
            "`python -m toolchain.data.synthetic`"
        )
    ds = load(DEFAULT_FILE, split=split)
    ds.name = f"default-{split}"
    return ds


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="write the default chirp task file")
    ap.add_argument("-o", "--output", default=str(DEFAULT_FILE))
    args = ap.parse_args(argv)
    path = generate_default(args.output)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
