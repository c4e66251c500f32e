"""One entry point for every backend: ``run(backend, program, inputs) -> SimResult``."""

from __future__ import annotations

import contextlib
import io
import time

from toolchain.errors import NirDeployError

BACKENDS = ("reference", "lava-float", "lava-fixed", "emulator")
FIXED_POINT = ("lava-fixed", "emulator")
#: Loihi fixed-point parameter sets of toolchain/loihi/quantize.py (docs/fixed-point.md)
PROFILES = ("netx", "loihi")


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
    if profile is not None:
        if profile not in PROFILES:
            raise NirDeployError(f"unknown fixed-point profile {profile!r}; choose one of {', '.join(PROFILES)}")
        if backend in FIXED_POINT:
            kw["profile"] = profile
    if backend == "reference":
        from simulators.reference import simulate

        res = simulate(program, inputs, record_v=record_v, progress=progress, **kw)
    elif backend == "lava-float":
        with quiet_imports():
            from simulators.lava_float import run_lava_float
        res = run_lava_float(program, inputs, record_v=record_v, progress=progress, **kw)
    elif backend == "lava-fixed":  # Loihi fixed point on Lava's bit-accurate models (toolchain/loihi/quantize.py)
        with quiet_imports():
            from simulators.lava_fixed import run_lava_fixed
        res = run_lava_fixed(program, inputs, record_v=record_v, progress=progress, **kw)
    elif backend == "emulator":  # the same integers, batched (simulators/emulator.py)
        from simulators.emulator import run_emulator

        res = run_emulator(program, inputs, record_v=record_v, progress=progress, **kw)
    else:
        raise NirDeployError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    res.info.setdefault("seconds", time.perf_counter() - t0)
    return res
