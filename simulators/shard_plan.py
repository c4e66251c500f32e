"""How a run is split into shards and merged back: pure functions, shared by the local workers
(simulators/shards.py) and the Ray tasks (simulators/ray_executor.py)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Tuple

from simulators.result import SimResult


def default_workers() -> int:
    """The cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def shard_bounds(n: int, workers: int) -> List[Tuple[int, int]]:
    """``workers`` contiguous [start, stop) ranges covering ``n`` samples, sizes differing by at most one."""
    workers = max(1, min(int(workers), int(n)))
    base, extra = divmod(int(n), workers)
    out, a = [], 0
    for i in range(workers):
        b = a + base + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


def merge_info(parts: List[SimResult], bounds: List[Tuple[int, int]]) -> Dict[str, Any]:
    """The first shard's description of the network, with the per-run numbers of every shard:
    ``shards`` (samples and seconds of each), saturation counts summed and maxima maximized."""
    info = dict(parts[0].info)
    info["shards"] = [
        {"samples": b - a, **{k: p.info[k] for k in ("build_seconds", "run_seconds", "seconds") if k in p.info}}
        for p, (a, b) in zip(parts, bounds)
    ]
    for k in ("build_seconds", "run_seconds"):
        if all(k in p.info for p in parts):
            info[k] = max(float(p.info[k]) for p in parts)  # the shards run side by side
    sat = [p.info.get("saturation") for p in parts]
    if all(isinstance(s, dict) for s in sat):
        merged: Dict[str, Dict[str, Any]] = {}
        for s in sat:
            for node, st in s.items():
                m = merged.setdefault(node, dict(st))
                if m is st:
                    continue
                for key, val in st.items():
                    if key.startswith("max"):
                        m[key] = max(m.get(key, val), val)
                    elif isinstance(val, (int, float)):
                        m[key] = m.get(key, 0) + val
        info["saturation"] = merged
    info.pop("seconds", None)  # the whole run's wall time is set by the caller
    return info
