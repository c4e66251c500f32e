"""The pipelines of ``export``, ``retime`` and ``deploy`` as lists of registered pass names (as
hls4ml's flows), and the functions that run passes by name, checking their conditions."""

from __future__ import annotations

from typing import Dict, List

# the modules whose passes the pipelines name (each registers its passes on import)
import toolchain.passes.broadcast  # noqa: F401
import toolchain.passes.fold_batchnorm  # noqa: F401
import toolchain.passes.fold_pooling  # noqa: F401
import toolchain.passes.retime  # noqa: F401
from toolchain.errors import NirDeployError
from toolchain.passes.registry import PASSES, Pass, check_conditions


def get_pass(name: str) -> Pass:
    if name not in PASSES:
        raise NirDeployError(f"unknown pass {name!r}; registered: {', '.join(PASSES)}")
    return PASSES[name]


def run_pass(graph, name: str, **options):
    """Run one registered pass, checking its conditions."""
    p = get_pass(name)
    check_conditions(graph, p, p.requires, "it gets")
    out = p.fn(graph, **options)
    if p.strict:
        check_conditions(out, p, p.ensures, "it returns")
    return out


#: the pipelines of the commands, as lists of pass names
PIPELINES: Dict[str, List[str]] = {
    "export": ["fold_batchnorm", "broadcast_params"],
    "retime": ["retime"],
    "deploy": ["fold_pooling"],
}


def run_pipeline(graph, pipeline: str, options: Dict[str, Dict[str, object]] = None):
    """Run the named pipeline (``PIPELINES``); ``options[pass name]`` are that pass's arguments."""
    if pipeline not in PIPELINES:
        raise NirDeployError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
    options = options or {}
    for name in PIPELINES[pipeline]:
        graph = run_pass(graph, name, **options.get(name, {}))
    return graph
