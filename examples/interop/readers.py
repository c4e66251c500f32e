"""Run a NIR graph with other frameworks' readers, next to nirdeploy's reference simulator.

* norse 1.1.0 ``norse.torch.from_nir(graph, dt=...)``: a nirtorch GraphExecutor stepped per bin;
* snnTorch 1.0.0 ``snntorch.import_from_nir(graph)``: the same, at its hard-coded dt = 1e-4.

Each returns the Output node's spikes [samples, steps, n] (float64) or raises what the reader
raises. Used by tests/test_interop.py and examples/interop/matrix.py.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from typing import Dict

import numpy as np
import torch


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))  # snnTorch prints
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    stack.callback(logging.disable, logging.NOTSET)
    return stack


def _plain_graph(graph):
    """A copy without nirdeploy's metadata (the readers do not look at it; nir.NIRGraph may)."""
    import nir

    g = copy.deepcopy(graph)
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, type_check=False)


def _step(module, x: np.ndarray) -> np.ndarray:
    xs = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    out, state = [], None
    with torch.no_grad():
        for t in range(xs.shape[1]):
            y = module(xs[:, t], state) if state is not None else module(xs[:, t])
            if isinstance(y, tuple):
                y, state = y[0], y[1]
            out.append(torch.as_tensor(y).detach().double().numpy())
    return np.stack(out, axis=1)


def run_norse(graph, x: np.ndarray, dt: float) -> np.ndarray:
    import norse.torch as nt

    with _quiet():
        m = nt.from_nir(_plain_graph(graph), dt=dt)
        return _step(m, x)


#: the node types norse 1.1.0's from_nir maps (norse/torch/utils/import_nir.py); nirtorch drops
#: the others without a word (an LI readout vanishes; an AvgPool2d breaks the graph: bug list)
NORSE_READS = ("Input", "Output", "Affine", "Conv2d", "Flatten", "Linear", "IF", "CubaLIF", "LIF", "SumPool2d")


def norse_layers(graph, x: np.ndarray, dt: float) -> Dict[str, np.ndarray]:
    """norse's ``from_nir`` module stepped over ``x``: {graph node: its module's output [samples,
    steps, ...]} for every node the reader built a module for (nirtorch names them by node, '.'
    replaced by '_')."""
    import norse.torch as nt

    with _quiet():
        m = nt.from_nir(_plain_graph(graph), dt=dt)
        rec: Dict[str, list] = {}
        mods = dict(m.named_modules())
        hooks = [mods[k.replace(".", "_")].register_forward_hook(
            lambda mod, i, o, k=k: rec.setdefault(k, []).append((o[0] if isinstance(o, tuple) else o).detach().double().numpy()))
            for k in graph.nodes if k.replace(".", "_") in mods and k not in ("input", "output")]  # fmt: skip
        try:
            _step(m, x)
        finally:
            for h in hooks:
                h.remove()
    return {k: np.stack(v, axis=1) for k, v in rec.items()}


def layer_agreement(graph, x: np.ndarray, dt: float) -> Dict[str, object]:
    """norse's spikes vs nirdeploy's reference on every spiking layer of ``graph``, and which of
    the graph's nodes norse's reader left out."""
    from simulators.reference import simulate
    from toolchain.ir import discretization_of
    from toolchain.program import lower

    res = simulate(lower(graph, discretization_of(graph)), x)
    theirs = norse_layers(graph, x, dt)
    layers = {}
    for k, z in res.spikes.items():
        ours = np.asarray(z).astype(bool)
        t = theirs[k].reshape(ours.shape) > 0
        layers[k] = (float(np.mean(t == ours)), int(t.sum()), int(ours.sum()))
    missing = [k for k, n in graph.nodes.items() if type(n).__name__ not in NORSE_READS]
    return {"layers": layers, "missing": missing}


def run_snntorch(graph, x: np.ndarray) -> np.ndarray:
    from snntorch.import_nir import import_from_nir  # not re-exported by snntorch/__init__ in 1.0.0

    with _quiet():
        m = import_from_nir(_plain_graph(graph))
        return _step(m, x)


def run_reference(graph, x: np.ndarray, **disc) -> np.ndarray:
    from simulators.reference import simulate
    from toolchain.ir import discretization_of
    from toolchain.program import lower

    prog = lower(graph, discretization_of(graph, **disc))
    res = simulate(prog, x)
    return np.asarray(res.output(), dtype=np.float64).reshape(x.shape[0], x.shape[1], -1)


def agreement(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """Spike agreement: the fraction of (sample, step, neuron) entries that are equal, and counts."""
    a = np.asarray(a).reshape(b.shape) > 0
    b = np.asarray(b) > 0
    return {"agreement": float(np.mean(a == b)), "spikes_reader": int(a.sum()), "spikes_reference": int(b.sum())}
