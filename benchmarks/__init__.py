"""Benchmarks (``make bench`` runs ``python -m benchmarks.run``) and the demo setup they share with
``examples/zoo/fixed_point_evidence.py``."""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def demo_setup(allow_untrained: bool = True, workdir: str = None) -> Tuple[object, np.ndarray, np.ndarray, Dict[str, Any]]:
    """The demo network lowered at its trained dt and the demo test split binned at that dt.

    Returns (program, x [samples, steps, 40] counts, labels, info); ``info["nir"]`` and
    ``info["data_spec"]`` name the exported graph (in ``workdir``, default: a temporary
    directory that lives as long as the process) and the data (for ``--data``). Without the trained
    checkpoint (``toolchain/demo_model/checkpoint.pt``) or the shipped data, and with
    ``allow_untrained``, a randomly initialized model of the same shape and freshly generated
    data of the same task stand in (``info`` says so); the numbers are then only timings.
    """
    import sys

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from exporters.torch_to_nir import export_model
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL
    from toolchain.ir import discretization_of, load_graph, save_graph
    from toolchain.program import lower

    info: Dict[str, Any] = {}
    if DEMO_CHECKPOINT.exists():
        from exporters.checkpoint import build_model

        model, extra = build_model(DEMO_MODEL, str(DEMO_CHECKPOINT))
        dt, readout = extra.get("dt"), extra.get("readout")
        info["model"] = f"{DEMO_CHECKPOINT.relative_to(REPO)} (trained)"
    else:
        if not allow_untrained:
            raise SystemExit(f"the demo checkpoint {DEMO_CHECKPOINT} is missing")
        import torch

        from toolchain.demo_model.model import build_model as factory

        torch.manual_seed(0)
        model, dt, readout = factory(), 1e-3, "sum"
        info["model"] = "toolchain/demo_model/model.py, random initialization (checkpoint missing)"
    graph = export_model(model, dt=dt, readout=readout)
    workdir = workdir or tempfile.mkdtemp(prefix="nirdeploy-demo-")
    p = os.path.join(workdir, "model.nir")
    save_graph(graph, p)
    graph = load_graph(p)
    info["nir"] = p
    program = lower(graph, discretization_of(graph))
    try:
        from toolchain.data import open_dataset

        ds = open_dataset("default")
        info["data"] = "toolchain/data/temporal_default.h5, test split"
        info["data_spec"] = "default"
    except Exception:
        if not allow_untrained:
            raise
        from toolchain.data.synthetic import make_temporal_task

        _, ds = make_temporal_task(10, 500, seed=0)
        info["data"] = "make_temporal_task(seed=0), 500 test samples (shipped file missing)"
        info["data_spec"] = os.path.join(workdir, "test.h5")
        ds.save(info["data_spec"])
    x, binfo = ds.bin_with_info(program.disc.dt)
    info.update(dt=program.disc.dt, samples=int(x.shape[0]), steps=int(x.shape[1]), binning=binfo)
    return program, np.asarray(x, dtype=np.float64), np.asarray(ds.labels), info


def machine() -> Dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, RAM, versions."""
    out: Dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache", "L3 cache",
                "Hypervisor vendor", "Flags")  # fmt: skip
        for line in lscpu.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in keep:
                v = v.strip()
                if k.strip() == "Flags":
                    v = " ".join(f for f in v.split() if f.startswith(("avx", "fma", "sse4")))
                out[k.strip()] = v
    except Exception:  # pragma: no cover - lscpu missing
        pass
    out["cores"] = os.cpu_count()
    try:
        out["load_average_1_5_15_min"] = [round(v, 2) for v in os.getloadavg()]  # other work on the machine
    except OSError:  # pragma: no cover
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        out["ram_gb"] = round(kb / 2**20, 1)
    except Exception:  # pragma: no cover
        pass
    import lava.magma.core.process.process  # noqa: F401  (Lava sets the fork start method first)
    import numba
    import torch

    import simulators.emulator  # noqa: F401  (picks numba's fork-safe threading layer before any launch)
    from importlib.metadata import version

    out["versions"] = {p: version(p) for p in ("lava-nc", "lava-dl", "torch", "numpy", "numba")}
    out["torch_threads"] = torch.get_num_threads()
    out["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    out["numba_threading_layer"] = numba.config.THREADING_LAYER
    return out
