"""Memory limits: refuse a load, a binning or a run whose arrays would not fit, before allocating.

The limit is 80 % of this machine's memory (``/proc/meminfo`` MemTotal), or the
``NIRDEPLOY_MAX_MEMORY`` environment variable (bytes, or with a K/M/G/T suffix), which the CLI's
``--max-memory`` sets so that worker processes inherit it. Estimates count the arrays nirdeploy
itself allocates (float32 bins, float64 parameters and recordings); they are lower bounds.
"""

from __future__ import annotations

import os
from typing import Optional

from toolchain.errors import NirDeployError

ENV = "NIRDEPLOY_MAX_MEMORY"
FRACTION = 0.8
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1000000"`` -> bytes."""
    s = str(text).strip().upper().removesuffix("B").removesuffix("I")
    unit = s[-1:] if s[-1:] in _UNITS and s[-1:] else ""
    num = s[: -1] if unit else s
    try:
        v = float(num) * _UNITS[unit]
    except ValueError:
        raise NirDeployError(f"--max-memory must be a size such as 8G or 500M, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise NirDeployError(f"--max-memory must be a positive size, got {text!r}")
    return int(v)


def machine_memory() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def max_memory() -> Optional[int]:
    """The limit in bytes (None: unknown machine memory and no setting)."""
    if os.environ.get(ENV):
        return parse_size(os.environ[ENV])
    m = machine_memory()
    return int(m * FRACTION) if m else None


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def check_allocation(nbytes: float, what: str) -> None:
    """Refuse ``what`` when it needs more than the limit."""
    limit = max_memory()
    if limit is not None and nbytes > limit:
        source = f"{ENV} / --max-memory" if os.environ.get(ENV) else f"{int(FRACTION * 100)} % of this machine's memory"
        raise NirDeployError(
            f"{what} needs about {human(nbytes)}, more than the limit of {human(limit)} ({source}); "
            f"use fewer samples, a coarser --dt or a smaller model, or raise --max-memory"
        )
