"""The backend registry: ``run(backend, program, inputs) -> SimResult`` for every backend.

A backend is registered by name with what it can do (``fixed_point``: it runs the quantized
integers of ``toolchain/loihi``; ``needs_lava``: it starts Lava's CPU simulator) and the
fixed-point profiles it takes. Its module is imported only when it runs, so that listing the
backends (the CLI's ``--backend`` choices) loads no Lava.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import time
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from simulators.result import check_result_memory
from toolchain.errors import NirDeployError
from toolchain.loihi.bits import PROFILES


@dataclass(frozen=True)
class Backend:
    """A registered backend: ``module:function(program, inputs, record_v=, progress=, **kw) -> SimResult``."""

    name: str
    target: str  # "module:function", imported lazily
    description: str
    fixed_point: bool = False
    needs_lava: bool = False
    profiles: Tuple[str, ...] = ()

    def load(self):
        mod, fn = self.target.split(":")
        if self.needs_lava:
            with quiet_imports():
                return getattr(importlib.import_module(mod), fn)
        return getattr(importlib.import_module(mod), fn)


BACKENDS: Dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    if backend.name in BACKENDS:
        raise ValueError(f"backend {backend.name!r} is registered twice")
    BACKENDS[backend.name] = backend
    return backend


register_backend(Backend("reference", "simulators.reference:simulate", "float64 torch simulation of the NIR semantics"))
register_backend(Backend("lava-float", "simulators.lava_float:run_lava_float",
                         "Lava's CPU simulator, floating point (Loihi2SimCfg)", needs_lava=True))  # fmt: skip
register_backend(Backend("lava-fixed", "simulators.lava_fixed:run_lava_fixed",
                         "Lava's CPU simulator, bit-accurate Loihi fixed point", fixed_point=True, needs_lava=True,
                         profiles=PROFILES))  # fmt: skip
register_backend(Backend("emulator", "simulators.emulator:run_emulator",
                         "nirdeploy's batched integer emulator, bit-exact with lava-fixed", fixed_point=True,
                         profiles=PROFILES))  # fmt: skip


def names() -> Tuple[str, ...]:
    """Registered backend names (the CLI's ``--backend`` choices)."""
    return tuple(BACKENDS)


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise NirDeployError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def profile_for(backend: str, profile=None):
    """The fixed-point profile a run on ``backend`` uses (None for floating-point backends)."""
    return (profile or "netx") if get(backend).fixed_point else None


@contextlib.contextmanager
def quiet_imports():
    """lava-dl prints warnings on import (Prophesee toolbox, CUDA): keep the terminal clean."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield


def run(backend: str, program, inputs, record_v: bool = False, progress: bool = False, profile=None, **kw):
    """Simulate ``inputs`` [samples, steps, *input_shape] on ``backend``; times the run.

    ``profile`` (``netx`` or ``loihi``) picks the quantization of the fixed-point backends
    (``lava-fixed``, ``emulator``); the floating-point backends have none and ignore it."""
    t0 = time.perf_counter()
    b = get(backend)
    if profile is not None:
        if profile not in PROFILES:
            raise NirDeployError(f"unknown fixed-point profile {profile!r}; choose one of {', '.join(PROFILES)}")
        if profile in b.profiles:
            kw["profile"] = profile
    shape = np.shape(inputs)
    if len(shape) >= 2:
        check_result_memory(program, int(shape[0]), int(shape[1]), record_v, True, backend)
    res = b.load()(program, inputs, record_v=record_v, progress=progress, **kw)
    res.info.setdefault("seconds", time.perf_counter() - t0)
    return res
