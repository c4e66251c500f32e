"""Time-resolution sweeps: one model, several target timesteps and retiming methods, side by side.

Each (dt, method) cell retimes the graph, re-bins the raw event timestamps at dt, simulates on
one backend and writes its run record to ``DIR/cells/``. Cells run in parallel on the available
cores; a cell whose record already exists with the same ``cache_key`` is not run again, so an
interrupted sweep resumes. The key is a hash of everything that determines a cell (the model
file's bytes, the data, samples, the source discretization, dt, method, backend, profile and the
nirdeploy version); its inputs are stored in the cell next to the hash. One sweep at a time
writes a folder: it holds an exclusive lock on ``DIR/.lock``.
``DIR/sweep.json`` / ``DIR/sweep.csv`` collect the rows and two plots compare the methods.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from toolchain.errors import NirDeployError
from toolchain.ir.atomic import atomic_path, atomic_write
from simulators.shards import busy, stop_pool, worker_init  # a sweep worker dies with the sweep, Ctrl-C goes to it
from toolchain.analysis.schema import SweepRecord


@dataclass(frozen=True)
class Cell:
    dt: float
    method: str
    #: ``{"hash": ..., **fields}`` (cache_key_of); written into the cell's JSON
    cache_key: Optional[Dict[str, Any]] = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"dt{self.dt:.6g}_{self.method}".replace("-", "m")


@dataclass
class PreparedCell:
    """A cell ready to run: its program and inputs, and what its record needs (``prepare_cell``)."""

    cell: Cell
    model_path: str
    data: str
    backend: str
    profile: Optional[str]
    out_dir: str
    program: Any
    x: np.ndarray
    labels: Any
    targets: Any
    class_names: Any
    readout: str
    data_info: Dict[str, Any]
    source_dt: float


def prepare_cell(model_path: str, data: str, cell: Cell, backend: str, samples: Optional[int], out_dir: str,
                 source: Optional[dict] = None, profile: Optional[str] = None) -> PreparedCell:  # fmt: skip
    """Retime the graph to the cell's dt with its method, lower it and bin the data at that dt."""
    from toolchain.data import open_dataset
    from toolchain.ir import Discretization, discretization_of, graph_metadata, load_graph
    from toolchain.program import lower
    from toolchain.passes.pipelines import run_pipeline
    from toolchain.analysis.segmentation import class_names_of

    graph = load_graph(model_path)
    src = Discretization.from_metadata(source) if source else discretization_of(graph)
    g = run_pipeline(graph, "retime", {"retime": {"dt_target": cell.dt, "method": cell.method, "source": src}})
    program = lower(g, discretization_of(g))
    ds = open_dataset(data)
    if samples:
        ds = ds.subset(np.arange(min(samples, len(ds))))
    x, info = ds.bin_with_info(cell.dt)
    x = x.reshape((x.shape[0], x.shape[1]) + tuple(program.input_shape))
    targets = getattr(ds, "targets", None)  # per-pixel masks: a segmentation task, scored by mean IoU
    return PreparedCell(cell, model_path, data, backend, profile, out_dir, program, x, ds.labels, targets,
                        None if targets is None else class_names_of(ds),
                        str(graph_metadata(graph).get("readout", "sum")), {"dataset": ds.name, "source": data, **info},
                        src.dt)  # fmt: skip


def finish_cell(p: PreparedCell, res) -> Dict:
    """The cell's row from its run (``res``, a SimResult); writes the cell's record."""
    from toolchain.analysis.records import run_record, write_json

    cell = p.cell
    rec = run_record(
        res,
        p.program,
        labels=p.labels,
        readout=p.readout,
        targets=p.targets,
        class_names=p.class_names,
        model=p.model_path,
        data=p.data_info,
        inputs=p.x,
        extra={"retime": {"method": cell.method, "source_dt": p.source_dt, "rho": cell.dt / p.source_dt}},
    )
    row = {
        "dt": cell.dt,
        "rho": cell.dt / p.source_dt,
        "method": cell.method,
        "accuracy": rec.get("accuracy"),
        "spikes_per_sample": rec["total_spikes_per_sample"],
        "record": rec,
        "backend": p.backend,
        "profile": _profile(p.backend, p.profile),
    }
    if cell.cache_key is not None:
        row["cache_key"] = cell.cache_key
    if p.targets is not None:
        row["metric"] = "mean_iou"
        row["mean_iou"] = rec["segmentation"]["mean_iou"]
    write_json(row, os.path.join(p.out_dir, "cells", cell.key + ".json"))
    return row


def run_cell(
    model_path: str,
    data: str,
    cell: Cell,
    backend: str,
    samples: Optional[int],
    out_dir: str,
    source: Optional[dict] = None,
    threads: int = 1,
    profile: Optional[str] = None,
) -> Dict:
    """Run one cell and write its record; returns the row (also used in worker processes)."""
    import torch

    from simulators.backends import run

    torch.set_num_threads(threads)
    p = prepare_cell(model_path, data, cell, backend, samples, out_dir, source, profile)
    return finish_cell(p, run(backend, p.program, p.x, progress=False, profile=profile))


def _profile(backend: str, profile: Optional[str]) -> Optional[str]:
    """The fixed-point profile a cell on ``backend`` runs with (None for floating point)."""
    from simulators.backends import profile_for

    return profile_for(backend, profile)


def metric_of(rows: Sequence[Dict]) -> str:
    """``accuracy`` (classification) or ``mean_iou`` (segmentation: rows carry ``mean_iou``)."""
    return "mean_iou" if any(r.get("metric") == "mean_iou" for r in rows) else "accuracy"


def _failed_row(cell: Cell, src_dt: float, message: str) -> Dict:
    return {"dt": cell.dt, "rho": cell.dt / src_dt, "method": cell.method, "accuracy": None,
            "spikes_per_sample": None, "error": message}


def cache_key_of(fields: Dict[str, Any]) -> Dict[str, Any]:
    """``{"hash": sha256 of the canonical JSON of fields, **fields}``."""
    canon = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return {"hash": hashlib.sha256(canon.encode()).hexdigest(), **fields}


def cell_key_fields(model_sha256: str, data: Dict[str, Any], samples: Optional[int], source: Dict[str, Any],
                    cell: Cell, backend: str, profile: Optional[str]) -> Dict[str, Any]:  # fmt: skip
    """Everything that determines one cell's record (its cache key's inputs)."""
    import toolchain

    return {
        "model_sha256": model_sha256,
        "data": data,
        "samples": samples,
        "source": source,
        "dt": cell.dt,
        "method": cell.method,
        "backend": backend,
        "profile": profile,
        "nirdeploy": toolchain.__version__,
    }


class FolderLocked(NirDeployError):
    """Another sweep holds ``DIR/.lock``."""


@contextlib.contextmanager
def lock_folder(out_dir: str) -> Iterator[str]:
    """Hold an exclusive ``fcntl.flock`` on ``out_dir/.lock`` (the holder's pid written in it);
    raises FolderLocked at once if another process holds it."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            except OSError:
                pid = "unknown"
            raise FolderLocked(f"{out_dir} is being written by another sweep (pid {pid})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _validate(model_path: str, data: str, dts: Sequence[float], methods: Sequence[str],
              samples: Optional[int]):  # fmt: skip
    """Refuse bad arguments before any cell runs (so they never become cached rows); returns
    the graph."""
    from toolchain.data import open_dataset
    from toolchain.dynamics.retiming import BASELINES, METHODS
    from toolchain.ir import load_graph

    for m in methods:
        if m not in METHODS + BASELINES:
            raise NirDeployError(f"unknown method {m!r}; choose from {', '.join(METHODS + BASELINES)}")
    if not methods:
        raise NirDeployError("--method is empty")
    for dt in dts:
        if not np.isfinite(dt) or dt <= 0:
            raise NirDeployError(f"every --dt must be a positive number of seconds, got {dt!r}")
    if not dts:
        raise NirDeployError("--dt is empty")
    if samples is not None and (isinstance(samples, bool) or int(samples) != samples or samples < 1):
        raise NirDeployError(f"--samples must be a whole number of at least 1, got {samples!r}")
    graph = load_graph(model_path)
    open_dataset(data)  # a missing or unreadable --data is the user's error, not a row per cell
    return graph


def sweep(
    model_path: str,
    data: str,
    dts: Sequence[float],
    methods: Sequence[str],
    backend: str,
    out_dir: str,
    samples: Optional[int] = None,
    workers: Optional[int] = None,
    progress: bool = True,
    source: Optional[dict] = None,
    profile: Optional[str] = None,
    lava_check: int = 0,
    lava_backend: str = "lava-fixed",
    executor: str = "local",
    ray_address: Optional[str] = None,
) -> Dict:
    """Run the cells (cached), write sweep.json with its recommendation. ``lava_check`` N > 0: the
    recommended cell of each target dt also runs on ``lava_backend`` on the first N samples and its
    agreement with the sweep's backend (or the reference, for a sweep on that Lava backend) is
    recorded in the recommendation (:func:`lava_agreement`).

    ``executor="ray"``: the cells (and the Lava check's shards) run as Ray tasks on the cluster at
    ``ray_address`` / ``$RAY_ADDRESS`` or on a local Ray started for the sweep
    (simulators/ray_executor.py); the rows are the same, and the cells are cached the same way."""
    from toolchain.data import dataset_identity, file_sha256
    from toolchain.ir import Discretization, discretization_of

    from toolchain.ir import graph_metadata
    from toolchain.program import lower

    imported = None
    from toolchain.loihi.netx_read import is_netx

    if is_netx(model_path):  # a lava-dl .net: swept as its float view imported at its dt (import-netx)
        model_path, imported = _import_netx(model_path, out_dir, source)
    graph = _validate(model_path, data, dts, methods, samples)
    if source is None and "dt" not in graph_metadata(graph):
        raise NirDeployError(
            "this graph carries no training timestep in its metadata (it was written by another tool); "
            "pass --source-dt SECONDS to sweep it"
        )
    src = discretization_of(graph) if source is None else Discretization.from_metadata(source)
    src_dt = src.dt if source is None else float(source["dt"])
    lower(graph, src)  # a graph that cannot run at its own timestep is the user's error, not a row per cell
    _profile(backend, profile)  # an unknown backend or profile is refused before the folder is touched
    if isinstance(lava_check, bool) or int(lava_check) != lava_check or lava_check < 0:
        raise NirDeployError(f"--lava-check takes a number of samples (0: off), got {lava_check!r}")
    if lava_check:
        from simulators.backends import BACKENDS

        if lava_backend not in BACKENDS or not BACKENDS[lava_backend].needs_lava:
            lava = ", ".join(n for n, b in BACKENDS.items() if b.needs_lava)
            raise NirDeployError(f"--lava-backend must be a Lava backend ({lava}), got {lava_backend!r}")
    from simulators.ray_executor import check_executor, import_ray

    executor = check_executor(executor)
    if ray_address and executor != "ray":
        raise NirDeployError("--ray-address is for --executor ray")
    if executor == "ray":
        import_ray()  # missing Ray is refused before the folder is touched
    with lock_folder(out_dir):
        return _sweep_locked(graph, model_path, data, dts, methods, backend, out_dir, samples, workers, progress,
                             source, profile, src, src_dt, file_sha256(model_path), dataset_identity(data),
                             imported, lava_check=int(lava_check), lava_backend=lava_backend, executor=executor,
                             ray_address=ray_address)  # fmt: skip


def _import_netx(path: str, out_dir: str, source: Optional[dict]):
    """``(OUT/imported.nir, what was done)``: the ``.net`` imported at ``source``'s dt (--source-dt),
    else at the dt the file records, else 1 ms (``toolchain.loihi.netx_read.import_graph``)."""
    from toolchain.ir import save_graph
    from toolchain.loihi.netx_read import default_dt, import_graph

    dt = float(source["dt"]) if source and source.get("dt") else default_dt(path)
    graph = import_graph(path, dt)
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "imported.nir")
    save_graph(graph, out)
    info = dict(graph.metadata["imported_from"], path=str(path), graph=out,
                note=f"a lava-dl netx network, swept as its float NIR view imported at dt={dt:g} s "
                     f"(nirdeploy import-netx {path} --dt {dt:g}); each cell retimes that graph")  # fmt: skip
    return out, info


def _cached_row(path: str, key: Dict[str, Any]) -> Optional[Dict]:
    """The finished cell at ``path`` if it was computed under ``key`` (same hash), else None."""
    try:
        with open(path) as f:
            row = json.load(f)
    except (OSError, ValueError):
        return None  # missing, or a cell interrupted while writing: run it again
    if not isinstance(row, dict) or (row.get("cache_key") or {}).get("hash") != key["hash"]:
        return None  # computed from another model, data, samples, source, backend, profile or version
    return row


def _sweep_locked(graph, model_path, data, dts, methods, backend, out_dir, samples, workers, progress, source,
                  profile, src, src_dt, model_sha256, data_identity, imported=None, lava_check=0,
                  lava_backend="lava-fixed", executor="local", ray_address=None) -> Dict:  # fmt: skip
    os.makedirs(os.path.join(out_dir, "cells"), exist_ok=True)
    prof = _profile(backend, profile)
    src_meta = src.to_metadata()
    cells = []
    for dt in dts:
        for m in methods:
            c = Cell(float(dt), m)
            fields = cell_key_fields(model_sha256, data_identity, samples, src_meta, c, backend, prof)
            cells.append(Cell(c.dt, c.method, cache_key=cache_key_of(fields)))
    rows: Dict[str, Dict] = {}
    todo = []
    for c in cells:
        row = _cached_row(os.path.join(out_dir, "cells", c.key + ".json"), c.cache_key)
        if row is not None:
            rows[c.key] = row
            continue
        todo.append(c)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"sweep ({backend})", unit="cell")
    cluster = None
    if todo and executor == "ray":
        cluster = _run_cells_ray(todo, model_path, data, backend, samples, out_dir, source, src_dt, profile, rows,
                                 bar, ray_address)  # fmt: skip
    elif todo:
        if workers == 1:
            for c in todo:
                rows[c.key] = _guarded(model_path, data, c, backend, samples, out_dir, source, src_dt, profile)
                if bar:
                    bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=worker_init, initargs=(os.getpid(),)) as ex:
                futs = {ex.submit(busy, _guarded, model_path, data, c, backend, samples, out_dir, source, src_dt, profile): c
                        for c in todo}
                try:
                    for fut in as_completed(futs):
                        c = futs[fut]
                        rows[c.key] = fut.result()
                        if bar:
                            bar.update(1)
                except KeyboardInterrupt:  # also Terminated (SIGTERM, SIGHUP): no queued cell runs
                    stop_pool(ex)
                    raise
    if bar:
        bar.close()
    ordered = [rows[c.key] for c in cells]
    result = {
        "metric": metric_of(ordered),
        "model": model_path,
        "data": data,
        "backend": backend,
        "profile": _profile(backend, profile),
        "source_dt": src_dt,
        "samples": samples,
        "rows": ordered,
    }
    if imported:
        result["imported_from"] = imported
    if cluster is not None:
        result["executor"] = cluster
    from toolchain.analysis.recommend import recommendation

    result["recommendation"] = recommendation(result)  # the deployment answer (docs/retiming.md)
    if lava_check:
        for entry in result["recommendation"]["per_dt"]:
            entry["lava"] = lava_agreement(model_path, data, Cell(entry["dt"], entry["method"]), source, backend,
                                           lava_backend, lava_check, out_dir, profile, progress, executor,
                                           ray_address)  # fmt: skip
    result = SweepRecord.from_dict(result).to_dict()
    write_sweep(result, out_dir)
    return result


def cell_program(model_path: str, cell: Cell, source: Optional[dict] = None):
    """The program a cell runs: the graph retimed to ``cell.dt`` with ``cell.method``, lowered."""
    from toolchain.ir import Discretization, discretization_of, load_graph
    from toolchain.passes.pipelines import run_pipeline
    from toolchain.program import lower

    graph = load_graph(model_path)
    src = Discretization.from_metadata(source) if source else discretization_of(graph)
    g = run_pipeline(graph, "retime", {"retime": {"dt_target": cell.dt, "method": cell.method, "source": src}})
    return lower(g, discretization_of(g))


def lava_agreement(model_path: str, data: str, cell: Cell, source: Optional[dict], backend: str, lava_backend: str,
                   n: int, out_dir: str, profile: Optional[str] = None, progress: bool = False,
                   executor: str = "local", ray_address: Optional[str] = None) -> Dict[str, Any]:  # fmt: skip
    """The recommended ``cell`` on ``lava_backend`` and on ``backend`` (the sweep's; the reference
    when the sweep ran on that Lava backend) on the first ``n`` samples, compared as ``nirdeploy
    compare`` does (``toolchain.api.compare``); the compare record goes to
    ``DIR/lava_check/<cell>.json``. Returns the recommendation's ``lava`` entry: ``backend``,
    ``against``, ``samples``, ``prediction_agreement``, ``spike_agreement``,
    ``samples_with_identical_spikes``, ``accuracy`` (both, on these samples), per-layer
    ``layers`` (name, spike_agreement) and ``record``; or ``error`` (why Lava could not run it)."""
    from toolchain.analysis.records import compare_backends, write_json
    from toolchain.analysis.segmentation import class_names_of
    from toolchain.data import open_dataset
    from toolchain.ir import graph_metadata, load_graph

    against = backend if backend != lava_backend else "reference"
    entry: Dict[str, Any] = {"backend": lava_backend, "against": against}
    program = cell_program(model_path, cell, source)
    ds = open_dataset(data)
    ds = ds.subset(np.arange(min(n, len(ds))))
    x, info = ds.bin_with_info(cell.dt)  # binned as the cell was (run_cell)
    x = x.reshape((x.shape[0], x.shape[1]) + tuple(program.input_shape))
    targets = getattr(ds, "targets", None)
    readout = str(graph_metadata(load_graph(model_path)).get("readout", "sum"))
    try:
        cmp, records = compare_backends(program, x, ds.labels, (against, lava_backend), readout, progress, model_path,
                                        {"dataset": ds.name, "source": data, **info}, targets=targets,
                                        class_names=None if targets is None else class_names_of(ds),
                                        profile=profile, workers=None if executor == "ray" else 1,
                                        executor=executor, ray_address=ray_address)  # fmt: skip
    except NirDeployError as e:  # a graph Lava cannot run is an answer, not a failed sweep
        entry["error"] = str(e)
        return entry
    cmp.update(model=model_path, dt=cell.dt, method=cell.method)
    path = os.path.join(out_dir, "lava_check", cell.key + ".json")
    write_json({**cmp, "runs": records}, path)
    entry.update({k: cmp[k] for k in ("samples", "prediction_agreement", "spike_agreement",
                                      "samples_with_identical_spikes")})  # fmt: skip
    if cmp.get("accuracy"):
        entry["accuracy"] = cmp["accuracy"]
    if cmp.get("mean_iou"):
        entry["mean_iou"] = cmp["mean_iou"]
    entry["layers"] = [{"name": l["name"], "spike_agreement": l["spike_agreement"]} for l in cmp["layers"]]
    entry["record"] = os.path.relpath(path, out_dir)
    return entry


def _guarded(model_path, data, cell, backend, samples, out_dir, source, src_dt, profile=None):
    """A cell that cannot run (e.g. an unstable euler retime) becomes a row with its reason."""
    try:
        return run_cell(model_path, data, cell, backend, samples, out_dir, source, profile=profile)
    except NirDeployError as e:
        return _failed_cell(cell, src_dt, str(e), backend, profile, out_dir)


def _failed_cell(cell: Cell, src_dt: float, message: str, backend: str, profile: Optional[str], out_dir: str) -> Dict:
    """The row (and cached record) of a cell that cannot run, with its reason."""
    from toolchain.analysis.records import write_json

    row = _failed_row(cell, src_dt, message)
    row.update(backend=backend, profile=_profile(backend, profile))
    if cell.cache_key is not None:
        row["cache_key"] = cell.cache_key
    write_json(row, os.path.join(out_dir, "cells", cell.key + ".json"))
    return row


def _run_cells_ray(todo: Sequence[Cell], model_path, data, backend, samples, out_dir, source, src_dt, profile,
                   rows: Dict[str, Dict], bar, ray_address: Optional[str]) -> Dict[str, Any]:  # fmt: skip
    """The cells as Ray tasks (simulators/ray_executor.py): each is prepared here (retimed, lowered,
    binned) just before it is submitted, runs on any node, and its record is written here as soon as
    it finishes, so an interrupted sweep on Ray resumes from the cells that finished."""
    from simulators.ray_executor import run_cells_ray

    prepared: Dict[str, PreparedCell] = {}

    def jobs():
        for c in todo:
            try:
                p = prepare_cell(model_path, data, c, backend, samples, out_dir, source, profile)
            except NirDeployError as e:  # e.g. an unstable euler retime: a row with its reason
                rows[c.key] = _failed_cell(c, src_dt, str(e), backend, profile, out_dir)
                if bar:
                    bar.update(1)
                continue
            prepared[c.key] = p
            yield c.key, (backend, p.program, p.x, False, profile, {})

    def done(key, res, err):
        p = prepared.pop(key)
        if err is not None:
            rows[key] = _failed_cell(p.cell, src_dt, err, backend, profile, out_dir)
        else:
            rows[key] = finish_cell(p, res)
        if bar:
            bar.update(1)

    return run_cells_ray(jobs(), done, ray_address)


def write_sweep(result: Dict, out_dir: str) -> None:
    from toolchain.analysis.records import write_json

    write_json(result, os.path.join(out_dir, "sweep.json"))
    with atomic_write(os.path.join(out_dir, "sweep.csv"), "w", newline="") as f:
        w = csv.writer(f)
        metric = result.get("metric", "accuracy")
        w.writerow(["dt", "rho", "method", metric, "spikes_per_sample", "error"])
        for r in result["rows"]:
            w.writerow([r["dt"], r["rho"], r["method"], r.get(metric), r.get("spikes_per_sample"), r.get("error", "")])
    plot_sweep(result, out_dir)


def plot_sweep(result: Dict, out_dir: str) -> List[str]:
    """``{metric}_vs_dt.png`` and ``spikes_vs_dt.png`` in the sweep directory (the report's figures)."""
    from toolchain.reports.plots import sweep_figures

    metric = result.get("metric", "accuracy")
    figs = sweep_figures(result)
    paths = []
    for key, fname in (("sweep_accuracy", f"{metric}_vs_dt.png"), ("sweep_spikes", "spikes_vs_dt.png")):
        p = os.path.join(out_dir, fname)
        with atomic_path(p) as tmp, open(tmp, "wb") as f:
            f.write(figs[key])
        paths.append(p)
    return paths
