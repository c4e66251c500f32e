"""Event data: continuous-timestamp datasets, their HDF5 files, generated and real datasets.

``open_dataset(spec)`` is what the command line's ``--data`` goes through. Without a split,
every named dataset gives its test split:

* ``"default"`` / ``"default:test"``: the shipped chirp task, test split (``"default:train"``);
* ``"digits"`` / ``"digits:train"``: event digits (N-MNIST recipe on scikit-learn's 8x8 digits,
  16x16 DVS events, 100 ms; 1500 train / 300 test, seed 0), generated once and cached in
  ``~/.cache/nirdeploy`` (``toolchain.data.digits``);
* ``"digits-seg"`` / ``"digits-seg:train"``: one or two digits on a 32x32 canvas with per-pixel
  masks in ``targets`` (1000 train / 200 test), cached likewise;
* ``"spoken-digits"`` / ``"spoken-digits:train"`` (``:all``): the shipped SHD-layout spoken
  digits (espeak-ng voices through a cochlea model; test = held-out speakers,
  ``toolchain.data.speech``);
* ``"tonic:NAME:ROOT"`` / ``"tonic:NAME:ROOT:train"``: a real dataset (SHD, NMNIST,
  DVSGesture, CIFAR10DVS) read with tonic from files under ROOT, never downloaded
  (``toolchain.data.tonic_loaders``);
* ``"file.h5"``: a nirdeploy event file or an SHD-layout file;
* ``"file.h5:split"``: one split of a nirdeploy event file holding several.

Generators: ``make_event_digits``, ``make_segmentation_digits``, ``make_temporal_task``,
``synthesize_spoken_digits`` (needs espeak-ng); loaders: ``load``, ``load_default``,
``load_spoken_digits``, ``load_tonic``.
"""

from __future__ import annotations

import os
from typing import Optional

from toolchain.errors import NirDeployError

from .events import FORMAT, VERSION, EventDataset, EventSample, load

_SYNTHETIC = ("DEFAULT_FILE", "generate_default", "load_default", "make_temporal_task")
_LAZY = {
    "make_event_digits": "digits",
    "make_segmentation_digits": "digits",
    "synthesize_spoken_digits": "speech",
    "load_spoken_digits": "speech",
    "SPOKEN_FILE": "speech",
    "load_tonic": "tonic_loaders",
}
#: named datasets of open_dataset and their splits (the first is the default)
NAMED_SPLITS = {
    "default": ("test", "train"),
    "digits": ("test", "train"),
    "digits-seg": ("test", "train"),
    "spoken-digits": ("test", "train", "all"),
}

__all__ = [
    "EventDataset",
    "EventSample",
    "FORMAT",
    "VERSION",
    "DEFAULT_FILE",
    "load",
    "open_dataset",
    "load_default",
    "make_temporal_task",
    "generate_default",
    "make_event_digits",
    "make_segmentation_digits",
    "synthesize_spoken_digits",
    "load_spoken_digits",
    "SPOKEN_FILE",
    "load_tonic",
]


def __getattr__(name):
    # imported lazily so that `python -m toolchain.data.synthetic` runs the module only once
    if name in _SYNTHETIC:
        from . import synthetic

        return getattr(synthetic, name)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_dataset(spec: str) -> EventDataset:
    """The dataset named by ``spec`` (see the module docstring)."""
    spec = str(spec)
    head, _, tail = spec.partition(":")
    if head in NAMED_SPLITS and not os.path.exists(spec):
        splits = NAMED_SPLITS[head]
        split = tail or splits[0]
        if head == "default":
            from .synthetic import load_default

            return load_default(split)  # says which splits there are
        if split not in splits:
            raise NirDeployError(f"the {head} data has the splits {', '.join(splits)}, not {split!r}")
        if head == "digits":
            from .digits import load_digits_split

            return load_digits_split(split)
        if head == "digits-seg":
            from .digits import load_segmentation_split

            return load_segmentation_split(split)
        from .speech import load_spoken_digits

        return load_spoken_digits(split)
    if head == "tonic" and not os.path.exists(spec):
        return _open_tonic(tail)
    split: Optional[str] = None
    path = spec
    if not os.path.exists(spec) and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if tail and "/" not in tail and "\\" not in tail:
            path, split = head, tail
    return load(path, split=split)


def _open_tonic(rest: str) -> EventDataset:
    """``NAME:ROOT[:split]`` -> load_tonic (split defaults to test, like the other named data)."""
    from .tonic_loaders import load_tonic

    name, _, root = rest.partition(":")
    if not name or not root:
        raise NirDeployError("a tonic dataset is named tonic:NAME:ROOT[:split], e.g. tonic:NMNIST:~/data:test")
    split = "test"
    r, _, last = root.rpartition(":")
    if r and last in ("train", "test", "all"):
        root, split = r, last
    return load_tonic(name, root, split=split)


def file_sha256(path: "str | os.PathLike") -> str:
    """The sha256 of a file's bytes (hex)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_identity(spec: str) -> dict:
    """What determines the data ``open_dataset(spec)`` returns: the spec, and the sha256 of the
    file it reads (a path, ``file.h5:split``, or the shipped file of ``default`` /
    ``spoken-digits``); generated data (``digits``, ``digits-seg``) are named by their
    generator's version, a tonic dataset by its spec alone."""
    spec = str(spec)
    ident: dict = {"spec": spec}
    head, _, tail = spec.partition(":")
    path: Optional[str] = None
    if head in NAMED_SPLITS and not os.path.exists(spec):
        if head == "default":
            from .synthetic import DEFAULT_FILE

            path = str(DEFAULT_FILE)
        elif head == "spoken-digits":
            from .speech import SPOKEN_FILE

            path = str(SPOKEN_FILE)
        else:
            from .digits import GENERATOR_VERSION

            ident["generator_version"] = GENERATOR_VERSION
    elif head == "tonic" and not os.path.exists(spec):
        pass
    elif os.path.isfile(spec):
        path = spec
    elif ":" in spec:
        p, _, split = spec.rpartition(":")
        if split and "/" not in split and "\\" not in split and os.path.isfile(p):
            path = p
    if path is not None and os.path.isfile(path):
        ident["sha256"] = file_sha256(path)
    return ident
