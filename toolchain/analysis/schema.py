"""The record schema: run, compare and sweep records as versioned dataclasses (docs/records.md).

Every record nirdeploy writes is one of these, serialized by ``to_dict`` into JSON with a
``schema`` name and a ``schema_version``; ``from_dict`` reads one back, refusing a record of an
unknown kind or a newer version with a one-line error. Fields that a run does not produce (no
labels: no ``accuracy``) are ``None`` here and absent from the JSON. Records written before the
schema existed (no ``schema`` key) are recognised by their keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Type

from toolchain.errors import NirDeployError

SCHEMA_VERSION = 1


_NUMBER = (int, float)
#: the annotations whose values from_dict checks (others are free-form objects)
_TYPES = {
    "str": (str,), "int": (int,), "float": _NUMBER, "List[str]": (list,), "List[int]": (list,),
    "Dict[str, Any]": (dict,), "Dict[str, float]": (dict,), "Dict[str, Dict[str, Any]]": (dict,),
}  # fmt: skip


def _check_type(cls_name: str, name: str, annotation: str, value) -> None:
    optional = annotation.startswith("Optional[")
    inner = annotation[len("Optional["):-1] if optional else annotation
    if value is None:
        if optional:
            return
        raise NirDeployError(f"not a valid {cls_name}: {name} is null")
    if inner.startswith("List[") and inner not in _TYPES:
        ok = isinstance(value, list)
    else:
        types = _TYPES.get(inner)
        if types is None:
            return
        ok = isinstance(value, types) and not (isinstance(value, bool) and types in (_NUMBER, (int,)))
    if not ok:
        raise NirDeployError(f"not a valid {cls_name}: {name} is {type(value).__name__} {value!r:.40}, expected {inner}")


def _clean(v):
    if dataclasses.is_dataclass(v):
        return v.to_dict()
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


class _Record:
    """Shared (de)serialization: fields in order, ``None`` dropped, ``extra`` merged at the end."""

    SCHEMA = ""
    #: fields written even when None (tables read them from every row)
    ALWAYS: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        if self.SCHEMA:
            out["schema"] = self.SCHEMA
            out["schema_version"] = SCHEMA_VERSION
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is not None or f.name in self.ALWAYS:
                out[f.name] = _clean(v)
        out.update(getattr(self, "extra", None) or {})
        return out

    @classmethod
    def from_dict(cls, d: Dict[str, Any]):
        if not isinstance(d, dict):
            raise NirDeployError(f"a {cls.__name__} must be a JSON object, got {type(d).__name__}")
        if cls.SCHEMA:
            schema = d.get("schema", cls.SCHEMA)
            if schema != cls.SCHEMA:
                raise NirDeployError(f"this is a {schema!r} record, not a {cls.SCHEMA!r} record")
            version = d.get("schema_version", SCHEMA_VERSION)
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise NirDeployError(
                    f"this {cls.SCHEMA} record has schema version {version!r}; this nirdeploy reads up to {SCHEMA_VERSION}"
                )
        names = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in names.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise NirDeployError(f"not a valid {cls.__name__}: missing {', '.join(missing)}")
        kw, extra = {}, {}
        for k, v in d.items():
            if k in ("schema", "schema_version"):
                continue
            if k in names and k != "extra":
                kw[k] = v
            else:
                extra[k] = v
        for k, v in kw.items():
            _check_type(cls.__name__, k, str(names[k].type), v)
        if "extra" in names:
            kw["extra"] = extra
        for k, sub in cls.NESTED.items():
            if kw.get(k) is not None:
                kw[k] = [sub.from_dict(x) for x in kw[k]]
        return cls(**kw)

    NESTED: Dict[str, Type["_Record"]] = {}


@dataclass
class LayerStats(_Record):
    """Spikes of one neuron layer of a run."""

    name: str
    type: str
    neurons: int
    spikes: int
    spikes_per_sample: float
    firing_rate: float  # spikes per neuron per time step
    firing_rate_hz: float
    projection_error: Optional[float] = None  # hardware backends: error of Loihi's CUBA projection
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RunRecord(_Record):
    """One simulation of a program on a backend (``nirdeploy simulate``, the demo, a sweep cell)."""

    SCHEMA = "nirdeploy.run"

    backend: str
    dt: float
    samples: int
    n_steps: int
    readout: str
    layers: List[LayerStats]
    total_spikes_per_sample: float
    nirdeploy: Optional[str] = None
    created: Optional[str] = None
    model: Optional[str] = None
    predictions: Optional[List[int]] = None
    metric: Optional[str] = None  # "mean_iou" for segmentation (else accuracy)
    segmentation: Optional[Dict[str, Any]] = None
    labels: Optional[List[int]] = None
    accuracy: Optional[float] = None
    discretization: Optional[Dict[str, Any]] = None
    metrics: Optional[Dict[str, Any]] = None  # toolchain/analysis/metrics.py (NeuroBench names)
    resources: Optional[Dict[str, Any]] = None  # toolchain/analysis/resources.py
    energy: Optional[Dict[str, Any]] = None  # toolchain/analysis/energy.py
    metrics_error: Optional[str] = None
    raster: Optional[Dict[str, Any]] = None
    data: Optional[Dict[str, Any]] = None
    timing: Optional[Dict[str, Any]] = None
    backend_info: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict)  # e.g. retime, trace

    NESTED = {"layers": LayerStats}
    ALWAYS = ("model",)


@dataclass
class CompareLayer(_Record):
    name: str
    spike_agreement: float
    spikes_a: int
    spikes_b: int
    samples_identical: int
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class CompareRecord(_Record):
    """Two backends on the same inputs (``nirdeploy compare``)."""

    SCHEMA = "nirdeploy.compare"

    backends: List[str]
    samples: int
    n_steps: int
    spike_agreement: float
    prediction_agreement: float
    samples_with_identical_spikes: int
    output_max_abs_diff: float
    layers: List[CompareLayer]
    accuracy: Optional[Dict[str, float]] = None
    mean_iou: Optional[Dict[str, float]] = None
    model: Optional[str] = None
    dt: Optional[float] = None
    runs: Optional[Dict[str, Dict[str, Any]]] = None  # backend -> its run record
    extra: Dict[str, Any] = field(default_factory=dict)

    NESTED = {"layers": CompareLayer}


@dataclass
class SweepRow(_Record):
    """One cell of a sweep: a target dt and a retiming method."""

    dt: float
    rho: float
    method: str
    accuracy: Optional[float] = None
    spikes_per_sample: Optional[float] = None
    record: Optional[Dict[str, Any]] = None  # the cell's run record
    backend: Optional[str] = None
    profile: Optional[str] = None
    metric: Optional[str] = None
    mean_iou: Optional[float] = None
    error: Optional[str] = None  # a cell that could not run, and why
    extra: Dict[str, Any] = field(default_factory=dict)

    ALWAYS = ("accuracy", "spikes_per_sample", "backend", "profile")


@dataclass
class SweepRecord(_Record):
    """Target timesteps x retiming methods (``nirdeploy sweep``; ``DIR/sweep.json``)."""

    SCHEMA = "nirdeploy.sweep"

    rows: List[SweepRow]
    source_dt: float
    metric: str = "accuracy"
    model: Optional[str] = None
    data: Optional[str] = None
    backend: Optional[str] = None
    profile: Optional[str] = None
    samples: Optional[int] = None
    recommendation: Optional[Dict[str, Any]] = None  # toolchain/analysis/recommend.py
    extra: Dict[str, Any] = field(default_factory=dict)

    NESTED = {"rows": SweepRow}
    ALWAYS = ("model", "data", "backend", "profile", "samples")


KINDS: Dict[str, Type[_Record]] = {"run": RunRecord, "compare": CompareRecord, "sweep": SweepRecord}


def kind_of(d: Dict[str, Any]) -> Optional[str]:
    """``"run"``, ``"compare"`` or ``"sweep"`` for a record dict (by its ``schema``, or for records
    written before the schema by their keys); None for anything else."""
    if not isinstance(d, dict):
        return None
    schema = d.get("schema")
    if schema is not None:
        for k, cls in KINDS.items():
            if cls.SCHEMA == schema:
                return k
        return None
    if isinstance(d.get("rows"), list):
        return "sweep"
    if "spike_agreement" in d and "backends" in d:
        return "compare"
    if "layers" in d and "backend" in d:
        return "run"
    return None


def parse(d: Dict[str, Any]) -> Tuple[str, _Record]:
    """``(kind, record)`` of a record dict, validated; a one-line error for anything else."""
    k = kind_of(d)
    if k is None:
        schema = d.get("schema") if isinstance(d, dict) else None
        what = f"a record of unknown schema {schema!r}" if schema else "neither a run record, a compare record nor a sweep"
        raise NirDeployError(f"this is {what}")
    return k, KINDS[k].from_dict(d)
