"""Spoken digits in the layout of the Spiking Heidelberg Digits (SHD), made offline.

:func:`synthesize_spoken_digits` speaks the ten English digit words ("zero" .. "nine") with the
formant synthesizer espeak-ng in many synthetic voices, passes the audio through a cochlea-like
filterbank and an integrate-and-fire spike encoder, and writes the spikes in SHD's HDF5 layout.
espeak-ng is needed only to *generate* the file (Debian: ``apt-get install -y espeak-ng``); the
generated file ships as ``toolchain/data/spoken_digits_shd.h5`` and :func:`load_spoken_digits`
reads it with nothing but h5py.

Pipeline (parameters in :data:`PARAMS`):

1. **Speakers.** Every (accent, variant) pair of ``accents`` (8 espeak-ng English voices: US,
   British, Scottish, RP, Lancaster, West Midlands, Caribbean, New York) and ``variants``
   (espeak's ``m1``..``m7`` male and ``f1``..``f4`` female voice variants) is one speaker:
   88 speakers. A seeded draw holds out ``test_fraction`` of them (18) for the test split,
   so, as in SHD, the test split is spoken by speakers never heard in training.
2. **Utterances.** ``n_per_class`` utterances per word; word ``c``'s ``j``-th utterance is
   spoken by speaker ``perm_c[j % 88]`` (every speaker says every word at least once when
   ``n_per_class >= 88``), at a speed of ``U(speed)`` words per minute and a pitch of
   ``U(pitch)`` (espeak's 0-99 scale). The audio (22.05 kHz) is trimmed to where it first and
   last exceeds -40 dB of its peak, given ``U(lead)`` seconds of leading silence, scaled to an
   RMS of ``U(gain_db)`` dB re 0.05 and mixed with white noise ``snr_db`` below the speech.
3. **Cochlea.** Pre-emphasis (``y[n] = x[n] - 0.95 x[n-1]``, the middle ear's tilt), then
   ``n_channels`` 4th-order gammatone band-pass filters (``scipy.signal.gammatone``) with centre
   frequencies log-spaced from ``f_min`` to ``f_max`` (100 Hz - 8 kHz); each output is half-wave
   rectified, compressed with a power ``compression`` (0.3, loudness-like), low-pass filtered
   (2nd-order Butterworth at ``lowpass`` Hz, the hair cell's envelope) and resampled to
   ``env_rate`` (2 kHz). Channel (unit) 0 is the lowest frequency.
4. **Spikes.** The envelopes of one utterance are normalised by their 99th percentile over all
   channels and times (an automatic gain control), and each drives an integrate-and-fire
   neuron at the rate ``max_rate * max(e - floor, 0) / (1 - floor)`` spikes/s (random initial
   phase). Spikes fire where the running integral of the rate (linear between envelope
   samples) crosses an integer, so their times are continuous, not multiples of 0.5 ms.

File (SHD layout, read by ``toolchain.data.load`` and by tonic's ``SHD`` class):
``spikes/times`` (per sample, variable-length float32 seconds; SHD uses float16),
``spikes/units`` (variable-length uint16), ``labels`` (uint16), ``extra/keys`` (the ten words),
``extra/speaker`` (speaker id), ``extra/speakers`` (id -> voice name), ``extra/split``
(0 = train, 1 = test), ``extra/speed``, ``extra/pitch``, ``extra/gain_db``,
``extra/center_frequencies``; root attributes ``n_channels`` and ``duration`` (read by
``load``), ``generator`` and ``params`` (JSON). Regenerate with
``python -m toolchain.data.speech`` (about a minute).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import wave
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from toolchain.errors import NirDeployError

from .events import EventDataset, load

SPOKEN_FILE = Path(__file__).resolve().parent / "spoken_digits_shd.h5"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLITS = {"train": 0, "test": 1}

PARAMS: Dict[str, Any] = dict(
    accents=("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"),
    variants=("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4"),
    test_fraction=0.2,  # of the speakers, held out for the test split
    speed=(140.0, 220.0),  # words per minute, uniform
    pitch=(25.0, 75.0),  # espeak pitch 0-99, uniform
    lead=(0.005, 0.05),  # seconds of silence before the word, uniform
    gain_db=(-6.0, 6.0),  # utterance level re RMS 0.05, uniform
    snr_db=(10.0, 30.0),  # white noise this far below the speech RMS, uniform
    warp=(0.88, 1.12),  # centre frequencies scaled by this (vocal tract length), uniform
    tilt_db=(-6.0, 6.0),  # channel gain in dB per octave re 1 kHz (microphone / channel), uniform
    f_min=100.0,
    f_max=8000.0,
    compression=0.3,  # power applied to the rectified filter outputs
    lowpass=200.0,  # Hz, envelope low-pass
    env_rate=2000.0,  # Hz, envelope sample rate
    max_rate=60.0,  # spikes/s of a channel at the utterance's reference level
    floor=0.15,  # envelope (relative to the reference level) below which a channel is silent
    max_duration=1.0,  # seconds; utterances are cut there (none is longer at the default speeds)
)

DEFAULTS = dict(n_per_class=100, seed=0, n_channels=64)


# ----------------------------------------------------------------------------- espeak
def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise NirDeployError(
            "generating spoken digits needs espeak-ng (Debian: apt-get install -y espeak-ng); "
            "loading the shipped file does not"
        )
    return exe


def speak(word: str, voice: str, speed: float, pitch: float, exe: Optional[str] = None) -> Tuple[np.ndarray, int]:
    """(float64 mono audio in [-1, 1], sample rate) of ``word`` spoken by espeak-ng."""
    exe = exe or _espeak()
    cmd = [exe, "-v", voice, "-s", str(int(round(speed))), "-p", str(int(round(pitch))), "--stdout", word]
    try:
        res = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise NirDeployError(f"espeak-ng failed for voice {voice!r}: {str(e).splitlines()[0]}") from None
    with wave.open(io.BytesIO(res.stdout)) as w:
        rate = w.getframerate()
        if w.getsampwidth() != 2:
            raise NirDeployError(f"espeak-ng wrote {8 * w.getsampwidth()}-bit audio; expected 16-bit")
        raw = w.readframes(w.getnframes())
    audio = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    return audio, rate


# ----------------------------------------------------------------------------- cochlea
def center_frequencies(n_channels: int, f_min: float = 100.0, f_max: float = 8000.0) -> np.ndarray:
    return np.geomspace(f_min, f_max, int(n_channels))


class Cochlea:
    """Gammatone filterbank + rectification + compression + envelope low-pass (see module doc)."""

    def __init__(self, rate: int, n_channels: int, p: Dict[str, Any]):
        from scipy import signal

        self.rate = int(rate)
        self.p = p
        self.fc = center_frequencies(n_channels, p["f_min"], p["f_max"])
        if self.fc.max() >= rate / 2:
            raise NirDeployError(f"f_max = {p['f_max']} Hz must lie below half the sample rate ({rate / 2} Hz)")
        self.lp = signal.butter(2, float(p["lowpass"]), fs=rate, output="sos")
        self.step = max(1, int(round(rate / float(p["env_rate"]))))

    @property
    def env_dt(self) -> float:
        return self.step / self.rate

    def envelopes(self, audio: np.ndarray, warp: float = 1.0, tilt_db: float = 0.0) -> np.ndarray:
        """float64 ``[n_channels, n_frames]`` at ``env_dt`` spacing (frame k at t = k * env_dt).

        ``warp`` scales the centre frequencies; ``tilt_db`` weights channel ``c`` by
        ``tilt_db * log2(fc_c / 1 kHz)`` dB before compression.
        """
        from scipy import signal

        x = np.append(audio[:1], audio[1:] - 0.95 * audio[:-1])
        out = []
        for fc in self.fc:
            b, a = signal.gammatone(min(fc * warp, 0.45 * self.rate), "iir", fs=self.rate)
            y = signal.lfilter(b, a, x) * 10 ** (tilt_db * math.log2(fc / 1000.0) / 20)
            y = np.maximum(y, 0.0) ** float(self.p["compression"])
            out.append(signal.sosfilt(self.lp, y)[:: self.step])
        return np.maximum(np.asarray(out), 0.0)


def encode_spikes(env: np.ndarray, env_dt: float, p: Dict[str, Any], rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """(times float64 s, units int64) of integrate-and-fire neurons driven by the envelopes."""
    C, T = env.shape
    ref = np.percentile(env, 99) if env.size else 0.0
    if not ref > 0:
        return np.zeros(0), np.zeros(0, np.int64)
    floor = float(p["floor"])
    rate = float(p["max_rate"]) * np.maximum(env / ref - floor, 0.0) / (1.0 - floor)
    # integral of the piecewise-linear rate, in spikes, starting at a random phase per channel
    cum = np.concatenate([np.zeros((C, 1)), np.cumsum((rate[:, 1:] + rate[:, :-1]) * (0.5 * env_dt), axis=1)], axis=1)
    cum += rng.random((C, 1))
    times, units = [], []
    t_grid = np.arange(T) * env_dt
    for c in range(C):
        lo, hi = math.floor(cum[c, 0]) + 1, math.floor(cum[c, -1])
        if hi < lo:
            continue
        m = np.arange(lo, hi + 1, dtype=np.float64)
        k = np.searchsorted(cum[c], m, side="left")  # cum[k-1] < m <= cum[k]
        k = np.clip(k, 1, T - 1)
        c0, c1 = cum[c, k - 1], cum[c, k]
        frac = np.where(c1 > c0, (m - c0) / np.where(c1 > c0, c1 - c0, 1.0), 1.0)
        times.append(t_grid[k - 1] + frac * env_dt)
        units.append(np.full(m.size, c, np.int64))
    if not times:
        return np.zeros(0), np.zeros(0, np.int64)
    t, u = np.concatenate(times), np.concatenate(units)
    o = np.lexsort((u, t))
    return t[o], u[o]


def _prepare(audio: np.ndarray, rate: int, p: Dict[str, Any], rng: np.random.Generator) -> Tuple[np.ndarray, float]:
    peak = np.abs(audio).max() if audio.size else 0.0
    if not peak > 0:
        raise NirDeployError("espeak-ng produced silence")
    loud = np.flatnonzero(np.abs(audio) > peak * 10 ** (-40 / 20))
    audio = audio[loud[0] : loud[-1] + 1]
    lead = int(round(rng.uniform(*p["lead"]) * rate))
    audio = np.concatenate([np.zeros(lead), audio])[: int(p["max_duration"] * rate)]
    rms = np.sqrt(np.mean(audio**2))
    gain_db = rng.uniform(*p["gain_db"])
    audio = audio * (0.05 * 10 ** (gain_db / 20) / rms)
    speech_rms = 0.05 * 10 ** (gain_db / 20)
    snr = rng.uniform(*p["snr_db"])
    audio = audio + rng.standard_normal(audio.size) * speech_rms * 10 ** (-snr / 20)
    return audio, gain_db


# ----------------------------------------------------------------------------- generator
def speakers(p: Optional[Dict[str, Any]] = None) -> List[str]:
    """espeak-ng voice names of the speakers, by id: ``accent+variant``."""
    p = {**PARAMS, **(p or {})}
    return [f"{a}+{v}" for a in p["accents"] for v in p["variants"]]


def test_speakers(seed: int = 0, p: Optional[Dict[str, Any]] = None) -> np.ndarray:
    """Sorted ids of the speakers held out for the test split."""
    p = {**PARAMS, **(p or {})}
    n = len(speakers(p))
    k = max(1, int(round(float(p["test_fraction"]) * n)))
    return np.sort(np.random.default_rng(np.random.SeedSequence([seed, 5])).permutation(n)[:k])


def synthesize_spoken_digits(
    path: Union[str, os.PathLike] = SPOKEN_FILE,
    n_per_class: int = DEFAULTS["n_per_class"],
    seed: int = 0,
    n_channels: int = DEFAULTS["n_channels"],
    verbose: bool = False,
    **params,
) -> Path:
    """Write the spoken-digits file (SHD layout, see the module docstring) to ``path``.

    ``params`` override :data:`PARAMS`. Needs espeak-ng. Deterministic for a given seed,
    parameters and espeak-ng version.
    """
    import h5py

    unknown = set(params) - set(PARAMS)
    if unknown:
        raise NirDeployError(f"unknown parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(PARAMS)}")
    p = {**PARAMS, **params}
    exe = _espeak()
    voices = speakers(p)
    held_out = set(int(s) for s in test_speakers(seed, p))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))  # what is spoken, by whom, how
    aug = np.random.default_rng(np.random.SeedSequence([seed, 6]))  # what happens to the audio
    plan = []  # (label, speaker, speed, pitch) in file order: classes interleaved
    per_class = [rng.permutation(len(voices)) for _ in WORDS]
    for j in range(int(n_per_class)):
        for c in range(len(WORDS)):
            plan.append((c, int(per_class[c][j % len(voices)]), float(rng.uniform(*p["speed"])), float(rng.uniform(*p["pitch"]))))
    cochlea = None
    times_l, units_l = [], []
    labels, spk, speed, pitch, gain = [], [], [], [], []
    for i, (c, s, sp, pt) in enumerate(plan):
        audio, rate = speak(WORDS[c], voices[s], sp, pt, exe)
        if cochlea is None:
            cochlea = Cochlea(rate, n_channels, p)
        elif rate != cochlea.rate:
            raise NirDeployError(f"espeak-ng changed its sample rate ({cochlea.rate} -> {rate} Hz)")
        audio, g = _prepare(audio, rate, p, aug)
        warp, tilt = float(aug.uniform(*p["warp"])), float(aug.uniform(*p["tilt_db"]))
        t, u = encode_spikes(cochlea.envelopes(audio, warp, tilt), cochlea.env_dt, p, aug)
        times_l.append(t.astype(np.float32))
        units_l.append(u.astype(np.uint16))
        labels.append(c)
        spk.append(s)
        speed.append(sp)
        pitch.append(pt)
        gain.append(g)
        if verbose and (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(plan)} utterances", flush=True)
    split = np.array([1 if s in held_out else 0 for s in spk], dtype=np.uint8)
    t_max = max((float(t.max()) for t in times_l if t.size), default=0.0)
    duration = (math.floor(t_max * 1e2 + 1e-6) + 1) * 1e-2  # next 10 ms strictly above the last spike
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        spikes = f.create_group("spikes")
        spikes.create_dataset("times", data=np.array(times_l + [None], dtype=object)[:-1], dtype=h5py.vlen_dtype(np.float32))
        spikes.create_dataset("units", data=np.array(units_l + [None], dtype=object)[:-1], dtype=h5py.vlen_dtype(np.uint16))
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        extra = f.create_group("extra")
        extra.create_dataset("keys", data=np.array([w.encode() for w in WORDS]))
        extra.create_dataset("speaker", data=np.asarray(spk, dtype=np.uint16))
        extra.create_dataset("speakers", data=np.array([v.encode() for v in voices]))
        extra.create_dataset("split", data=split)
        extra.create_dataset("speed", data=np.asarray(speed, dtype=np.float32))
        extra.create_dataset("pitch", data=np.asarray(pitch, dtype=np.float32))
        extra.create_dataset("gain_db", data=np.asarray(gain, dtype=np.float32))
        extra.create_dataset("center_frequencies", data=cochlea.fc.astype(np.float32))
        f.attrs["n_channels"] = int(n_channels)
        f.attrs["duration"] = float(duration)
        f.attrs["generator"] = "toolchain.data.speech.synthesize_spoken_digits"
        f.attrs["params"] = json.dumps({**p, "n_per_class": int(n_per_class), "seed": int(seed), "n_channels": int(n_channels)})
        f.attrs["espeak_ng"] = _espeak_version(exe)
        f.attrs["splits"] = "extra/split: 0 = train, 1 = test (held-out speakers)"
    os.replace(tmp, path)
    return path


def _espeak_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.strip().splitlines()[0].split("  Data at:")[0].strip() if out.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ----------------------------------------------------------------------------- loading
def load_spoken_digits(split: str = "train", path: Union[str, os.PathLike, None] = None) -> EventDataset:
    """The shipped spoken digits: ``"train"``, ``"test"`` (held-out speakers) or ``"all"``.

    The split of each sample is ``extra/split`` (0 = train, 1 = test) of the file; the
    dataset's ``input_shape`` is ``(n_channels,)`` and ``duration`` the file's ``duration``.
    """
    import h5py

    if split not in ("train", "test", "all"):
        raise NirDeployError(f"the spoken digits have the splits train, test and all, not {split!r}")
    path = Path(path) if path is not None else SPOKEN_FILE
    if not path.exists():
        raise NirDeployError(
            f"the spoken-digits file {path} is missing; regenerate it with `python -m toolchain.data.speech` (needs espeak-ng)"
        )
    ds = load(path)
    try:
        with h5py.File(path, "r") as f:
            which = np.asarray(f["extra/split"][()], dtype=np.int64) if "extra/split" in f else None
            spk = np.asarray(f["extra/speaker"][()], dtype=np.int64) if "extra/speaker" in f else None
    except OSError as e:
        raise NirDeployError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if split != "all":
        if which is None:
            raise NirDeployError(f"{path} has no extra/split array: only split 'all' is available")
        ds = ds.subset(np.flatnonzero(which == SPLITS[split]))
        if spk is not None:
            ds.meta["speakers"] = float(np.unique(spk[which == SPLITS[split]]).size)
    ds.name = f"spoken-digits-{split}"
    ds.meta["split"] = split
    return ds


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse
    import time

    ap = argparse.ArgumentParser(description="write the spoken-digits file (SHD layout); needs espeak-ng")
    ap.add_argument("-o", "--output", default=str(SPOKEN_FILE))
    ap.add_argument("--n-per-class", type=int, default=DEFAULTS["n_per_class"])
    ap.add_argument("--n-channels", type=int, default=DEFAULTS["n_channels"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    path = synthesize_spoken_digits(args.output, n_per_class=args.n_per_class, seed=args.seed, n_channels=args.n_channels, verbose=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
