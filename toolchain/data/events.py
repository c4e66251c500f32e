"""Event datasets with continuous timestamps, binned at any timestep on demand.

An :class:`EventDataset` keeps every event's time in seconds (float64) so the same data can be
presented to a model at any bin width ``dt``: re-binning from the raw timestamps is the only
faithful way to change the time resolution (splitting or merging already binned counts is not).
Samples are stored flat, in CSR style: the events of sample ``i`` are
``times[sample_ptr[i]:sample_ptr[i + 1]]`` (and the same slice of ``channels`` / ``values``).

Files: :meth:`EventDataset.save` writes the versioned ``nirdeploy-events`` HDF5 format and
:func:`load` reads it as well as the HDF5 layout of the Spiking Heidelberg Digits (SHD/SSC).
Both are described in ``docs/data-format.md``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from toolchain.errors import NirDeployError
from toolchain.limits import check_allocation

FORMAT = "nirdeploy-events"
VERSION = 1
#: relative tolerance used when assigning a timestamp to a bin: t = k*dt (up to rounding) -> bin k
BIN_EPS = 1e-9
#: number of input channels of the cochlea model behind SHD and SSC
SHD_CHANNELS = 700

MetaValue = Union[str, float]


@dataclass
class EventSample:
    """One sample's events (views into the dataset's arrays) and its label."""

    times: np.ndarray
    channels: np.ndarray
    values: np.ndarray
    label: int

    def __len__(self) -> int:
        return int(self.times.shape[0])


@dataclass
class EventDataset:
    """Labelled samples of events ``(time, channel, value)`` with continuous timestamps.

    Attributes:
        times: float64 ``[n_events]``, seconds from the start of the event's sample (>= 0).
        channels: int64 ``[n_events]``, flat (C-order) index into ``input_shape``.
        sample_ptr: int64 ``[n_samples + 1]``, CSR offsets: sample ``i`` owns events
            ``sample_ptr[i]:sample_ptr[i+1]``.
        labels: int64 ``[n_samples]``, class index per sample.
        input_shape: shape of one time step of the binned input, e.g. ``(40,)`` or ``(2, 34, 34)``.
        duration: seconds per sample; the default number of bins at ``dt`` is
            ``ceil(duration / dt)``.
        values: float32 ``[n_events]``, the amount each event adds to its bin (default 1: counts).
        classes: class names, ``classes[label]``.
        name: short name of the dataset (shown in run records).
        meta: free-form provenance, ``str -> str | float``.
        images: optional float32 ``[n_samples, H, W]`` in [0, 1]: the static image each sample's
            events were made from (event digits: for static-to-event transfer), or None.
        targets: optional int64 ``[n_samples, H, W]``: dense per-pixel targets (segmentation:
            0 = background, 1 + class for an object's pixels), or None.
    """

    times: np.ndarray
    channels: np.ndarray
    sample_ptr: np.ndarray
    labels: np.ndarray
    input_shape: Tuple[int, ...]
    duration: float
    values: Optional[np.ndarray] = None
    classes: List[str] = field(default_factory=list)
    name: str = ""
    meta: Dict[str, MetaValue] = field(default_factory=dict)
    images: Optional[np.ndarray] = None
    targets: Optional[np.ndarray] = None

    def __post_init__(self):
        self.times = np.ascontiguousarray(self.times, dtype=np.float64).reshape(-1)
        self.channels = np.ascontiguousarray(self.channels, dtype=np.int64).reshape(-1)
        self.sample_ptr = np.ascontiguousarray(self.sample_ptr, dtype=np.int64).reshape(-1)
        self.labels = np.ascontiguousarray(self.labels, dtype=np.int64).reshape(-1)
        if self.values is None:
            self.values = np.ones(self.times.shape[0], dtype=np.float32)
        else:
            self.values = np.ascontiguousarray(self.values, dtype=np.float32).reshape(-1)
        self.input_shape = tuple(int(d) for d in np.atleast_1d(self.input_shape))
        self.duration = float(self.duration)
        self.classes = [str(c) for c in self.classes]
        self.name = str(self.name)
        self.meta = {str(k): (v if isinstance(v, str) else float(v)) for k, v in dict(self.meta).items()}
        if self.images is not None:
            self.images = np.ascontiguousarray(self.images, dtype=np.float32)
        if self.targets is not None:
            self.targets = np.ascontiguousarray(self.targets, dtype=np.int64)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`NirDeployError` if the arrays are inconsistent."""
        who = f"event dataset {self.name!r}" if self.name else "event dataset"
        n_ev = self.times.shape[0]
        if self.channels.shape[0] != n_ev or self.values.shape[0] != n_ev:
            raise NirDeployError(
                f"{who}: times, channels and values must have one entry per event "
                f"(got {n_ev}, {self.channels.shape[0]}, {self.values.shape[0]})"
            )
        ptr = self.sample_ptr
        if ptr.shape[0] != self.labels.shape[0] + 1:
            raise NirDeployError(
                f"{who}: sample_ptr must have n_samples + 1 = {self.labels.shape[0] + 1} entries, got {ptr.shape[0]}"
            )
        if ptr[0] != 0 or ptr[-1] != n_ev or np.any(np.diff(ptr) < 0):
            raise NirDeployError(f"{who}: sample_ptr must rise from 0 to the number of events ({n_ev})")
        if not self.input_shape or any(d < 1 for d in self.input_shape):
            raise NirDeployError(f"{who}: input_shape must be a tuple of positive sizes, got {self.input_shape}")
        if not (math.isfinite(self.duration) and self.duration > 0):
            raise NirDeployError(f"{who}: duration must be a positive number of seconds, got {self.duration}")
        if n_ev:
            if not np.all(np.isfinite(self.times)) or self.times.min() < 0:
                raise NirDeployError(f"{who}: event times must be finite and >= 0 seconds")
            if self.channels.min() < 0 or self.channels.max() >= self.n_channels:
                raise NirDeployError(
                    f"{who}: channel indices must lie in [0, {self.n_channels}) for input shape {self.input_shape}, "
                    f"got [{self.channels.min()}, {self.channels.max()}]"
                )
            if not np.all(np.isfinite(self.values)):
                raise NirDeployError(f"{who}: event values must be finite")
        if self.labels.size and self.classes and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise NirDeployError(f"{who}: labels must lie in [0, {len(self.classes)}) (one per class name)")
        for key in ("images", "targets"):
            a = getattr(self, key)
            if a is not None and (a.ndim < 2 or a.shape[0] != len(self)):
                raise NirDeployError(
                    f"{who}: {key} must be an array [n_samples = {len(self)}, H, W], got shape {a.shape}"
                )
        if self.images is not None and self.images.size and not np.all(np.isfinite(self.images)):
            raise NirDeployError(f"{who}: images must be finite")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_samples(self) -> int:
        return len(self)

    @property
    def n_events(self) -> int:
        return int(self.times.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of flat input channels, ``prod(input_shape)``."""
        return int(np.prod(self.input_shape))

    @property
    def n_classes(self) -> int:
        return len(self.classes) if self.classes else (int(self.labels.max()) + 1 if len(self) else 0)

    def sample(self, i: int) -> EventSample:
        """The events of sample ``i`` (negative indices count from the end)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        i %= n
        a, b = self.sample_ptr[i], self.sample_ptr[i + 1]
        return EventSample(self.times[a:b], self.channels[a:b], self.values[a:b], int(self.labels[i]))

    def subset(self, indices: Union[Sequence[int], np.ndarray, slice]) -> "EventDataset":
        """A new dataset holding the given samples, in the given order (copies the events)."""
        idx = np.arange(len(self))[indices] if isinstance(indices, slice) else np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean mask must have {len(self)} entries")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset indices out of range for {len(self)} samples")
        idx %= max(len(self), 1)
        starts, stops = self.sample_ptr[idx], self.sample_ptr[idx + 1]
        counts = stops - starts
        ptr = np.zeros(idx.size + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        # gather index of every selected event, vectorized
        ev = np.repeat(starts - ptr[:-1], counts) + np.arange(ptr[-1])
        return EventDataset(
            times=self.times[ev],
            channels=self.channels[ev],
            values=self.values[ev],
            sample_ptr=ptr,
            labels=self.labels[idx],
            input_shape=self.input_shape,
            duration=self.duration,
            classes=list(self.classes),
            name=self.name,
            meta=dict(self.meta),
            images=None if self.images is None else self.images[idx],
            targets=None if self.targets is None else self.targets[idx],
        )

    def sample_index(self) -> np.ndarray:
        """int64 ``[n_events]``: the sample each event belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.sample_ptr))

    def counts(self) -> np.ndarray:
        """float64 ``[n_samples, n_channels]``: summed values per channel over the whole sample
        (the rate code: everything a model that ignores time could use)."""
        flat = self.sample_index() * self.n_channels + self.channels
        return np.bincount(flat, weights=self.values, minlength=len(self) * self.n_channels).reshape(len(self), self.n_channels)

    # ------------------------------------------------------------------ binning
    def n_steps_at(self, dt: float) -> int:
        """Default number of bins at ``dt``: ``ceil(duration / dt)`` (dt need not divide duration)."""
        dt = _check_dt(dt)
        return max(1, int(math.ceil(self.duration / dt - 1e-9)))

    def bin_indices(self, dt: float) -> np.ndarray:
        """int64 ``[n_events]``: the bin ``k = floor(t / dt)`` of every event.

        An event at ``t = k * dt`` belongs to bin ``k`` even when ``t / dt`` rounds to just below
        ``k`` in floating point: the quotient is raised by a relative ``BIN_EPS`` before flooring.
        """
        dt = _check_dt(dt)
        q = self.times / dt
        return np.floor(q + BIN_EPS * np.maximum(q, 1.0)).astype(np.int64)

    def bin_with_info(self, dt: float, n_steps: Optional[int] = None) -> Tuple[np.ndarray, Dict[str, Any]]:
        """Like :meth:`bin`, also returning statistics: dt, n_steps, events, dropped_events.

        ``dropped_events`` counts the events whose bin lies at or beyond ``n_steps``.
        """
        dt = _check_dt(dt)
        if n_steps is None:
            n_steps = self.n_steps_at(dt)
        n_steps = int(n_steps)
        if n_steps < 1:
            raise NirDeployError(f"n_steps must be at least 1, got {n_steps}")
        n, c = len(self), self.n_channels
        check_allocation(4.0 * n * n_steps * c, f"binning {n} samples of {self.name!r} at dt={dt:g} s ({n_steps} steps)")
        out = np.zeros((n, n_steps, c), dtype=np.float32)
        k = self.bin_indices(dt)
        keep = k < n_steps
        dropped = int(self.n_events - np.count_nonzero(keep))
        if n and self.n_events:
            flat = (self.sample_index()[keep] * n_steps + k[keep]) * c + self.channels[keep]
            # sum per occupied cell (memory ~ events, not bins), then scatter into the dense array
            cells, inv = np.unique(flat, return_inverse=True)
            sums = np.bincount(inv, weights=self.values[keep].astype(np.float64), minlength=cells.size)
            out.reshape(-1)[cells] = sums.astype(np.float32)
        info = {
            "binned_at_dt": dt,
            "n_steps": n_steps,
            "events": self.n_events,
            "dropped_events": dropped,
        }
        return out.reshape((n, n_steps) + self.input_shape), info

    def bin(self, dt: float, n_steps: Optional[int] = None) -> np.ndarray:
        """float32 ``[n_samples, n_steps, *input_shape]``: the events binned at ``dt`` seconds.

        Bin ``k`` covers ``[k dt, (k+1) dt)`` and holds the SUM of the values of its events
        (counts when values are 1); an event is never split across bins. ``n_steps`` defaults to
        ``ceil(duration / dt)``; events falling at or beyond ``n_steps`` are dropped (see
        :meth:`bin_with_info` for how many).
        """
        return self.bin_with_info(dt, n_steps)[0]

    # ------------------------------------------------------------------ files
    def save(self, path: Union[str, os.PathLike], group: Optional[str] = None, mode: str = "w") -> None:
        """Write the dataset in the ``nirdeploy-events`` HDF5 format (docs/data-format.md).

        With ``group``, the dataset goes into that HDF5 group (a named split such as ``"train"``),
        so several splits can share one file: save the first with ``mode="w"``, the rest with
        ``mode="a"``.
        """
        import h5py

        try:
            with h5py.File(path, mode) as f:
                f.attrs["format"] = FORMAT
                f.attrs["version"] = VERSION
                g = f
                if group:
                    if group in f:
                        del f[group]
                    g = f.create_group(group)
                _write(g, self)
        except OSError as e:
            raise NirDeployError(f"cannot write event dataset {path}: {_first_line(e)}") from None

    @classmethod
    def load(cls, path: Union[str, os.PathLike], split: Optional[str] = None, **kw) -> "EventDataset":
        """See :func:`load`."""
        return load(path, split=split, **kw)


# ---------------------------------------------------------------------- HDF5 I/O
_ARRAYS = ("times", "channels", "values", "sample_ptr", "labels", "images", "targets")


def _write(g, ds: EventDataset) -> None:
    g.attrs["format"] = FORMAT
    g.attrs["version"] = VERSION
    g.attrs["name"] = ds.name
    g.attrs["duration"] = ds.duration
    g.attrs["input_shape"] = np.asarray(ds.input_shape, dtype=np.int64)
    g.attrs["classes"] = json.dumps(ds.classes)
    g.attrs["meta"] = json.dumps(ds.meta)
    z = dict(compression="gzip", compression_opts=6, shuffle=True)
    chan_dtype = np.min_scalar_type(max(ds.n_channels - 1, 0))
    if chan_dtype.kind != "u":
        chan_dtype = np.dtype(np.uint8)
    big = lambda a: z if a.size > 64 else {}
    g.create_dataset("times", data=ds.times, **big(ds.times))
    g.create_dataset("channels", data=ds.channels.astype(chan_dtype), **big(ds.channels))
    if not np.all(ds.values == 1):
        g.create_dataset("values", data=ds.values, **big(ds.values))
    g.create_dataset("sample_ptr", data=ds.sample_ptr, **big(ds.sample_ptr))
    g.create_dataset("labels", data=ds.labels, **big(ds.labels))
    if ds.images is not None:
        g.create_dataset("images", data=ds.images, **big(ds.images))
    if ds.targets is not None:
        t = ds.targets
        lo, hi = (int(t.min()), int(t.max())) if t.size else (0, 0)
        tdtype = np.min_scalar_type(hi) if lo >= 0 else np.result_type(np.min_scalar_type(lo), np.min_scalar_type(hi))
        g.create_dataset("targets", data=t.astype(tdtype), **big(t))


def _attr(a) -> Any:
    if isinstance(a, bytes):
        return a.decode("utf8")
    if isinstance(a, np.ndarray) and a.shape == ():
        return a.item()
    if isinstance(a, np.generic):
        return a.item()
    return a


def _read_nirdeploy(g, path: str) -> EventDataset:
    version = _attr(g.attrs.get("version"))
    if version != VERSION:
        raise NirDeployError(
            f"{path} is a nirdeploy event file of version {version}; this nirdeploy reads version {VERSION}"
        )
    missing = [k for k in ("times", "channels", "sample_ptr", "labels") if k not in g]
    if missing:
        raise NirDeployError(f"{path} is a damaged nirdeploy event file: dataset(s) {', '.join(missing)} missing")
    try:
        arrays = {k: g[k][()] for k in _ARRAYS if k in g}
        classes = json.loads(_attr(g.attrs.get("classes", "[]")))
        meta = json.loads(_attr(g.attrs.get("meta", "{}")))
        duration = float(_attr(g.attrs["duration"]))
        input_shape = tuple(int(d) for d in np.atleast_1d(g.attrs["input_shape"]))
        name = str(_attr(g.attrs.get("name", "")))
    except (KeyError, ValueError, TypeError) as e:
        raise NirDeployError(f"{path} is a damaged nirdeploy event file: {_first_line(e)}") from None
    return _build(
        path,
        times=arrays["times"],
        channels=arrays["channels"],
        values=arrays.get("values"),
        sample_ptr=arrays["sample_ptr"],
        labels=arrays["labels"],
        input_shape=input_shape,
        duration=duration,
        classes=classes,
        name=name or os.path.splitext(os.path.basename(path))[0],
        meta=meta,
        images=arrays.get("images"),
        targets=arrays.get("targets"),
    )


def _build(path: str, **kw) -> EventDataset:
    try:
        return EventDataset(**kw)
    except NirDeployError as e:
        msg = str(e).split(": ", 1)[-1] if str(e).startswith("event dataset") else str(e)
        raise NirDeployError(f"{path} holds an invalid event dataset: {msg}") from None


def _is_shd(f) -> bool:
    return "spikes" in f and hasattr(f["spikes"], "keys") and "times" in f["spikes"] and "units" in f["spikes"] and "labels" in f


def _read_shd(f, path: str, input_shape: Optional[Sequence[int]] = None) -> EventDataset:
    try:
        t_list = f["spikes/times"][()]
        u_list = f["spikes/units"][()]
        labels = np.asarray(f["labels"][()], dtype=np.int64).reshape(-1)
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise NirDeployError(f"cannot read the SHD-layout datasets of {path}: {_first_line(e)}") from None
    n = labels.shape[0]
    if len(t_list) != n or len(u_list) != n:
        raise NirDeployError(
            f"{path}: spikes/times, spikes/units and labels must have one entry per sample "
            f"(got {len(t_list)}, {len(u_list)}, {n})"
        )
    lens = np.fromiter((np.size(t) for t in t_list), dtype=np.int64, count=n)
    ulens = np.fromiter((np.size(u) for u in u_list), dtype=np.int64, count=n)
    if np.any(lens != ulens):
        i = int(np.flatnonzero(lens != ulens)[0])
        raise NirDeployError(f"{path}: sample {i} has {lens[i]} spike times but {ulens[i]} units")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=ptr[1:])
    cat = lambda lst, dt: np.concatenate([np.asarray(a, dtype=dt).reshape(-1) for a in lst]) if n else np.zeros(0, dt)
    times = cat(t_list, np.float64)
    units = cat(u_list, np.int64)
    classes: List[str] = []
    if "extra" in f and "keys" in f["extra"]:
        classes = [_attr(k) if not isinstance(k, str) else k for k in f["extra/keys"][()]]
        classes = [c.decode("utf8") if isinstance(c, bytes) else str(c) for c in classes]
    max_unit = int(units.max()) if units.size else 0
    # optional root attributes (a nirdeploy extension; SHD and SSC do not carry them)
    n_ch_attr = _attr(f.attrs.get("n_channels")) if "n_channels" in f.attrs else None
    dur_attr = _attr(f.attrs.get("duration")) if "duration" in f.attrs else None
    if input_shape is None and n_ch_attr is not None and int(n_ch_attr) > max_unit:
        input_shape = (int(n_ch_attr),)
    if input_shape is None:
        # SHD and SSC come from a 700-channel cochlea model and ship class names in extra/keys
        n_ch = SHD_CHANNELS if classes and max_unit < SHD_CHANNELS else max_unit + 1
        input_shape = (n_ch,)
    if classes and labels.size and labels.max() >= len(classes):
        classes = []  # names do not cover the labels: better none than wrong ones
    t_max = float(times.max()) if times.size else 0.0
    # whole milliseconds strictly above the last event, so that ceil(duration/dt) bins hold it
    duration = (math.floor(t_max * 1e3 + 1e-6) + 1) * 1e-3
    if dur_attr is not None and float(dur_attr) > t_max:
        duration = float(dur_attr)
    return _build(
        path,
        times=times,
        channels=units,
        sample_ptr=ptr,
        labels=labels,
        input_shape=tuple(input_shape),
        duration=duration,
        classes=classes,
        name=os.path.splitext(os.path.basename(path))[0],
        meta={"layout": "shd", "source": os.path.abspath(path)},
    )


def load(
    path: Union[str, os.PathLike],
    split: Optional[str] = None,
    input_shape: Optional[Sequence[int]] = None,
) -> EventDataset:
    """Read an event dataset: the ``nirdeploy-events`` HDF5 format or the SHD HDF5 layout.

    ``split`` names the group to read when a nirdeploy file holds several splits (e.g. the
    shipped default: ``"train"`` / ``"test"``). ``input_shape`` overrides the shape inferred for
    SHD-layout files (700 channels when the file carries ``extra/keys`` like SHD and SSC, else
    the largest unit + 1).
    Anything unreadable raises :class:`NirDeployError` with one sentence.
    """
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise NirDeployError(f"cannot read event dataset {path}: no such file")
    if os.path.isdir(path):
        raise NirDeployError(f"cannot read event dataset {path}: it is a directory")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise NirDeployError(f"{path} is not an HDF5 file (expected a nirdeploy event file or the SHD layout)") from None
    try:
        with f:
            fmt = _attr(f.attrs.get("format"))
            if fmt == FORMAT:
                if "times" in f:
                    if split:
                        raise NirDeployError(f"{path} holds a single dataset, not splits: drop the split name {split!r}")
                    return _read_nirdeploy(f, path)
                splits = sorted(k for k in f.keys() if _attr(f[k].attrs.get("format")) == FORMAT)
                if not splits and any(k in f for k in _ARRAYS):
                    return _read_nirdeploy(f, path)  # a single dataset with parts missing: say which
                if split is None:
                    if len(splits) == 1:
                        split = splits[0]
                    else:
                        raise NirDeployError(
                            f"{path} holds the splits {', '.join(splits) or '(none)'}: choose one (e.g. {path}:{splits[0] if splits else 'test'})"
                        )
                if split not in splits:
                    raise NirDeployError(f"{path} has no split {split!r}; it holds {', '.join(splits) or 'none'}")
                ds = _read_nirdeploy(f[split], path)
                if not ds.name:
                    ds.name = split
                return ds
            if fmt is not None:
                raise NirDeployError(f"{path} has format {fmt!r}, not {FORMAT!r} or the SHD layout")
            if _is_shd(f):
                if split:
                    raise NirDeployError(f"{path} is an SHD-layout file, which holds one split: drop the split name {split!r}")
                return _read_shd(f, path, input_shape)
            raise NirDeployError(
                f"{path} is an HDF5 file but neither a nirdeploy event file (attribute format={FORMAT!r}) "
                "nor the SHD layout (spikes/times, spikes/units, labels)"
            )
    except NirDeployError:
        raise
    except Exception as e:  # a truncated or otherwise damaged file
        raise NirDeployError(f"cannot read event dataset {path}: {_first_line(e)}") from None


def _check_dt(dt) -> float:
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise NirDeployError(f"dt must be a number of seconds, got {dt!r}") from None
    if not (math.isfinite(dt) and dt > 0):
        raise NirDeployError(f"dt must be a positive number of seconds, got {dt!r}")
    return dt


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
