"""Real event datasets read with tonic, offline: SHD, N-MNIST, DVS Gesture, CIFAR10-DVS.

``load_tonic(name, root, split)`` reads files already present under ``root`` with tonic's own
dataset classes and readers (``tonic.datasets.SHD`` / ``NMNIST`` / ``DVSGesture`` /
``CIFAR10DVS``) and converts their structured event arrays into an :class:`EventDataset` with
continuous timestamps in seconds. It never downloads: tonic's classes download whatever they
miss, so they are used through subclasses whose ``download`` raises, after nirdeploy has checked
that the files are there; a missing file raises :class:`NirDeployError` naming it and saying
where it belongs.

``root`` is what tonic calls ``save_to``: each dataset lives in ``root/<ClassName>/`` (``root``
may also name that folder itself). Expected layouts (tonic 1.7; see :data:`LAYOUTS`):

==============  ==============================================================================
``SHD``         ``root/SHD/shd_train.h5``, ``root/SHD/shd_test.h5`` (unzipped)
``NMNIST``      ``root/NMNIST/Train/<digit>/<id>.bin``, ``root/NMNIST/Test/<digit>/<id>.bin``
``DVSGesture``  ``root/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy`` (and
                ``ibmGestureTest``): tonic's preprocessed version, columns x, y, p, t (ms)
``CIFAR10DVS``  ``root/CIFAR10DVS/<class>/<id>.aedat4`` (reading needs the package ``aedat``)
==============  ==============================================================================

Conversion (the same code for all four): tonic's ``t`` is in microseconds -> ``times = t * 1e-6``
seconds; vision events ``(x, y, p)`` on a ``(W, H, 2)`` sensor become flat channels of
``input_shape = (2, H, W)`` (polarity first, tonic's ``p``: 0 = OFF, 1 = ON); SHD's
``(t, x)`` on the ``(700, 1, 1)`` cochlea become channels ``x`` of ``input_shape = (700,)``.
DVS Gesture and CIFAR10-DVS timestamps count from the start of a recording, so each sample is
shifted to start at its first event (``align_start``); SHD and N-MNIST times already start at the
sample's start and are kept. ``duration`` defaults to the last event of the loaded samples
rounded up to the next whole millisecond. Events outside the sensor are dropped (counted in
``meta["dropped_outside_sensor"]``).

Splits: ``"train"`` and ``"test"`` are tonic's. CIFAR10-DVS has none; here ``"train"`` is the
first 90 % of each class's files in sorted name order, ``"test"`` the last 10 % and ``"all"``
everything. ``max_samples`` keeps a seeded random subset (in the original order).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from toolchain.errors import NirDeployError

from .events import EventDataset

#: per dataset: tonic class, where the files go (relative to root/<ClassName>), where to get them
LAYOUTS: Dict[str, Dict[str, Any]] = {
    "SHD": dict(
        module="tonic.datasets.hsd",
        cls="SHD",
        files={"train": "shd_train.h5", "test": "shd_test.h5"},
        source="https://zenkelab.org/datasets/shd_{split}.h5.zip (unzip it)",
        align_start=False,
    ),
    "NMNIST": dict(
        module="tonic.datasets.nmnist",
        cls="NMNIST",
        files={"train": "Train/<digit>/*.bin", "test": "Test/<digit>/*.bin"},
        source="the N-MNIST Train.zip / Test.zip (https://www.garrickorchard.com/datasets/n-mnist), unzipped",
        align_start=False,
    ),
    "DVSGesture": dict(
        module="tonic.datasets.dvsgesture",
        cls="DVSGesture",
        files={"train": "ibmGestureTrain/user<NN>_<lighting>/<label>.npy", "test": "ibmGestureTest/user<NN>_<lighting>/<label>.npy"},
        source="tonic's preprocessed ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz (figshare), unpacked",
        align_start=True,
    ),
    "CIFAR10DVS": dict(
        module="tonic.datasets.cifar10dvs",
        cls="CIFAR10DVS",
        files={"all": "<class>/*.aedat4"},
        source="tonic's CIFAR10DVS.zip (figshare) with each class's zip unpacked into <class>/",
        align_start=True,
    ),
}
CIFAR_TRAIN_FRACTION = 0.9


def _canonical(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    for n in LAYOUTS:
        if n.lower() == key:
            return n
    raise NirDeployError(f"unknown tonic dataset {name!r}; nirdeploy reads {', '.join(LAYOUTS)}")


def _location(name: str, root: Union[str, os.PathLike]) -> Tuple[Path, Path]:
    """(save_to, save_to/<ClassName>)."""
    root = Path(os.path.expanduser(os.fspath(root)))
    if root.name == name and not (root / name).is_dir():
        root = root.parent
    return root, root / name


def _missing(name: str, loc: Path, split: str) -> Optional[str]:
    """What is missing for this split, or None."""
    if not loc.is_dir():
        return f"the folder {loc}"
    if name == "SHD":
        f = loc / LAYOUTS[name]["files"][split]
        return None if f.is_file() else f"the file {f}"
    if name == "NMNIST":
        d = loc / ("Train" if split == "train" else "Test")
        return None if d.is_dir() and any(d.glob("*/*.bin")) else f"N-MNIST .bin files in {d}/<digit>/"
    if name == "DVSGesture":
        d = loc / ("ibmGestureTrain" if split == "train" else "ibmGestureTest")
        return None if d.is_dir() and any(d.glob("user*_*/*.npy")) else f"DVS Gesture .npy files in {d}/user<NN>_<lighting>/"
    if name == "CIFAR10DVS":
        return None if any(loc.glob("*/*.aedat4")) else f"CIFAR10-DVS .aedat4 files in {loc}/<class>/"
    raise AssertionError(name)  # pragma: no cover


def _offline_class(name: str):
    """tonic's dataset class, subclassed (same name, so the same folder) never to download."""
    import importlib

    spec = LAYOUTS[name]
    try:
        base = getattr(importlib.import_module(spec["module"]), spec["cls"])
    except ImportError as e:  # pragma: no cover - tonic is a dependency
        raise NirDeployError(f"reading {name} needs tonic ({e})") from None

    def download(self):
        raise NirDeployError(f"{name} files are missing under {self.location_on_system}; nirdeploy never downloads")

    def _check_exists(self):
        return True  # checked by load_tonic before construction

    return type(base.__name__, (base,), {"download": download, "_check_exists": _check_exists})


def _classes(name: str, tds) -> List[str]:
    c = getattr(tds, "classes", [])
    if isinstance(c, dict):
        return [k for k, _ in sorted(c.items(), key=lambda kv: kv[1])]
    return [x.decode("utf8") if isinstance(x, bytes) else str(x) for x in list(c)]


def _sensor_shape(sensor_size) -> Tuple[int, ...]:
    W, H, P = (int(v) for v in sensor_size)
    return (W,) if H == 1 and P == 1 else (P, H, W)


def convert_events(events: np.ndarray, sensor_size, align_start: bool = False) -> Tuple[np.ndarray, np.ndarray, int]:
    """(times s float64, flat channels int64, number dropped) of one tonic structured array.

    ``sensor_size`` is tonic's ``(W, H, P)``; the channels index ``(P, H, W)`` (or ``(W,)``
    for a ``(W, 1, 1)`` sensor such as SHD's, where ``y`` and ``p`` are ignored).
    """
    names = events.dtype.names or ()
    if "t" not in names or "x" not in names:
        raise NirDeployError(f"tonic events need fields t and x, got {', '.join(names) or 'none'}")
    W, H, P = (int(v) for v in sensor_size)
    traw = np.asarray(events["t"])
    x = events["x"].astype(np.int64)
    audio = H == 1 and P == 1
    y = events["y"].astype(np.int64) if ("y" in names and not audio) else np.zeros_like(x)
    p = events["p"].astype(np.int64) if ("p" in names and not audio) else np.zeros_like(x)
    ok = (x >= 0) & (x < W) & (y >= 0) & (y < H) & (p >= 0) & (p < P) & np.isfinite(traw.astype(np.float64))
    dropped = int(ok.size - np.count_nonzero(ok))
    traw, x, y, p = traw[ok], x[ok], y[ok], p[ok]
    if align_start and traw.size:
        traw = traw - traw.min()  # in the file's own (integer) microseconds: no rounding
    t = traw.astype(np.float64) * 1e-6
    chan = x if audio else (p * H + y) * W + x
    o = np.argsort(t, kind="stable")
    return t[o], chan[o], dropped


def load_tonic(
    name: str,
    root: Union[str, os.PathLike],
    split: str = "train",
    max_samples: Optional[int] = None,
    seed: int = 0,
    duration: Optional[float] = None,
    align_start: Optional[bool] = None,
) -> EventDataset:
    """One split of a real event dataset read with tonic from files under ``root`` (see module doc).

    ``name``: ``"SHD"``, ``"NMNIST"``, ``"DVSGesture"`` or ``"CIFAR10DVS"`` (case and dashes
    ignored). ``split``: ``"train"`` / ``"test"`` (CIFAR10-DVS also ``"all"``).
    """
    name = _canonical(name)
    splits = ("train", "test", "all") if name == "CIFAR10DVS" else ("train", "test")
    if split not in splits:
        raise NirDeployError(f"{name} has the splits {', '.join(splits)}, not {split!r}")
    save_to, loc = _location(name, root)
    need = _missing(name, loc, split if name != "CIFAR10DVS" else "all")
    if need:
        layout = LAYOUTS[name]
        where = ", ".join(f"{loc}/{v}" for k, v in layout["files"].items() if k in (split, "all"))
        raise NirDeployError(
            f"{name} {split} data not found: missing {need}; put {layout['source']} so that it reads {where} "
            "(nirdeploy never downloads)"
        )
    cls = _offline_class(name)
    try:
        if name == "CIFAR10DVS":
            tds = cls(save_to=str(save_to))
        else:
            tds = cls(save_to=str(save_to), train=(split == "train"))
    except NirDeployError:
        raise
    except Exception as e:
        raise NirDeployError(f"tonic cannot open {name} under {loc}: {_first_line(e)}") from None
    n_all = len(tds)
    idx = np.arange(n_all)
    if name == "CIFAR10DVS" and split != "all":
        idx = _cifar_split(tds, split)
    if max_samples is not None and 0 <= int(max_samples) < idx.size:
        keep = np.random.default_rng(seed).choice(idx.size, size=int(max_samples), replace=False)
        idx = idx[np.sort(keep)]
    if align_start is None:
        align_start = bool(LAYOUTS[name]["align_start"])
    sensor = tds.sensor_size
    times_l, chans_l, labels = [], [], []
    dropped = 0
    for i in idx:
        try:
            events, target = tds[int(i)]
        except NirDeployError:
            raise
        except ImportError as e:
            raise NirDeployError(f"reading {name} needs the Python package {e.name or 'aedat'} (pip install {e.name or 'aedat'})") from None
        except Exception as e:
            what = tds.data[int(i)] if getattr(tds, "data", None) else f"sample {int(i)}"
            raise NirDeployError(f"tonic cannot read {name} {what}: {_first_line(e)}") from None
        t, c, d = convert_events(np.asarray(events), sensor, align_start)
        times_l.append(t)
        chans_l.append(c)
        labels.append(int(np.asarray(target).reshape(-1)[0]))
        dropped += d
    counts = np.array([t.size for t in times_l], dtype=np.int64)
    ptr = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    times = np.concatenate(times_l) if times_l else np.zeros(0)
    chans = np.concatenate(chans_l) if chans_l else np.zeros(0, np.int64)
    if duration is None:
        t_max = float(times.max()) if times.size else 0.0
        duration = (math.floor(t_max * 1e3 + 1e-6) + 1) * 1e-3
    classes = _classes(name, tds)
    if classes and labels and max(labels) >= len(classes):
        classes = []
    meta: Dict[str, Any] = {
        "source": str(loc),
        "reader": f"tonic {_tonic_version()} {LAYOUTS[name]['module']}.{LAYOUTS[name]['cls']}",
        "split": split,
        "align_start": float(align_start),
        "dropped_outside_sensor": float(dropped),
        "samples_available": float(n_all if split == "all" or name != "CIFAR10DVS" else len(_cifar_split(tds, split))),
    }
    return EventDataset(
        times=times,
        channels=chans,
        sample_ptr=ptr,
        labels=np.asarray(labels, dtype=np.int64),
        input_shape=_sensor_shape(sensor),
        duration=float(duration),
        classes=classes,
        name=f"{name.lower()}-{split}",
        meta=meta,
    )


def _cifar_split(tds, split: str) -> np.ndarray:
    """Indices of CIFAR10-DVS's train (first 90 % of each class by file name) or test split."""
    paths = [os.fspath(p) for p in tds.data]
    targets = np.asarray(tds.targets, dtype=np.int64)
    out = []
    for c in np.unique(targets):
        members = np.flatnonzero(targets == c)
        members = members[np.argsort([paths[i] for i in members], kind="stable")]
        k = int(round(CIFAR_TRAIN_FRACTION * members.size))
        out.append(members[:k] if split == "train" else members[k:])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def _tonic_version() -> str:
    try:
        import tonic

        return str(getattr(tonic, "__version__", "?"))
    except ImportError:  # pragma: no cover
        return "?"


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
