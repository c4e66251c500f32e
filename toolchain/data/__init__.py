"""Event data: continuous-timestamp datasets, their HDF5 files and the embedded default task.

``open_dataset(spec)`` is what the command line's ``--data`` goes through:

* ``"default"`` / ``"default:test"``: the shipped chirp task, test split (``"default:train"``);
* ``"file.h5"``: a nirdeploy event file or an SHD-layout file;
* ``"file.h5:split"``: one split of a nirdeploy event file holding several.
"""

from __future__ import annotations

import os
from typing import Optional

from .events import FORMAT, VERSION, EventDataset, EventSample, load

_SYNTHETIC = ("DEFAULT_FILE", "generate_default", "load_default", "make_temporal_task")

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
]


def __getattr__(name):
    # imported lazily so that `python -m toolchain.data.synthetic` runs the module only once
    if name in _SYNTHETIC:
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_dataset(spec: str) -> EventDataset:
    """The dataset named by ``spec`` (see the module docstring)."""
    spec = str(spec)
    if spec == "default" or spec.startswith("default:"):
        split = spec.partition(":")[2] or "test"
        from .synthetic import load_default

        return load_default(split)
    split: Optional[str] = None
    path = spec
    if not os.path.exists(spec) and ":" in spec:
        head, _, tail = spec.rpartition(":")
        if tail and "/" not in tail and "\\" not in tail:
            path, split = head, tail
    return load(path, split=split)
