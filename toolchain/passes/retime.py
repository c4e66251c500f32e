"""Zero-shot re-discretization of a NIR graph for a new timestep (Karilanova et al. 2024).

``retime(graph, dt_target, method)`` is a pure graph pass: it returns a new graph whose neurons
realize the adapted discrete dynamics at ``dt_target``. With rho = dt_T / dt_S and the source
neuron's discrete SSM (A, B, c) (``toolchain.dynamics.discretize``):

``tau``       the reference: keep the time constants and recompute the per-step update with the
              graph's own scheme and input convention at dt_T (what passing a new dt to norse or
              snnTorch does). Only the metadata's dt changes.
``exact``     re-discretize the graph's continuous-time ODE at dt_T with its own scheme and input
              convention, keeping the charge carried by one input count: under the ``current``
              convention a count held for a bin of dt_T carries rho times more charge than at
              dt_S, so r (LI/LIF/IF/I) or w_in (CubaLI/CubaLIF) is divided by rho. Under the
              ``impulse`` convention nothing changes (equal to ``tau``).
``integral``  A_T = A^rho,  B_T = S B / rho,  c_T = S c,  S = (A^rho - I)(A - I)^-1,
              exact when each source-rate input is spread evenly over the rho sub-steps. S is
              evaluated as rho phi1(rho L) phi1(L)^-1 with L = log A and phi1(X) = int_0^1 e^{sX} ds
              (Van Loan's block exponential), which has no singularity at A = I (IF/I neurons:
              S = rho I) and handles equal time constants (a Jordan block).
``euler``     A_T = I + rho (A - I),  B_T = B,  c_T = rho c (first order). Refused when a leaky
              mode would be unstable, |1 - rho (1 - a)| >= 1.
``none``      the no-adaptation baseline: the trained per-step update is kept unchanged.
``exact-carry``, ``integral-carry``
              exact / integral plus a reset adapted to rho (``toolchain.dynamics.retiming.carry_reset``):
              a layer that resets to a value keeps the fraction 1 - 1/rho of its excess over the
              threshold at a coarser target (``reset = "partial"``), what the source model would
              have integrated after its mid-bin reset on average (derivation in docs/retiming.md).

Inputs are counts summed per bin, so a bias that a Linear/Conv layer adds every step is a
constant count per bin: integral, exact and euler scale such biases by rho (tau and none keep
them, as the framework would).

Every method is the identity at rho = 1. Weights and thresholds are untouched; only the ``-carry``
methods change the reset rule.

Where NIR's neuron parameters can express the result under the graph's scheme and convention,
the node's parameters are rewritten; otherwise (e.g. an integral retime of a CubaLIF breaks the
tie between the two entries of B) the exact adapted matrices are stored in
``metadata["ssm"][node] = {"A", "B", "c"}`` and the node keeps its nearest NIR parameters.
Simulators use those matrices; the Lava backend projects them onto Loihi's CUBA form.
"""

from __future__ import annotations

import copy
from typing import Dict

import numpy as np

from toolchain.dynamics.discretize import continuous_ssm, discretize, neuron_ssm
from toolchain.dynamics.retiming import (
    BASELINES,
    CARRY,
    METHODS,
    base_method,
    carry_reset,
    euler_matrices,
    fit_params,
    integral_matrices,
)
from toolchain.errors import NirDeployError
from toolchain.ir.graph import make_graph
from toolchain.ir.metadata import Discretization, discretization_of, exact_node, graph_metadata, portable_cuba_params
from toolchain.ir.nodes import node_kind, node_type
from toolchain.ir.shapes import infer_shapes
from toolchain.ir.topology import topology
from toolchain.passes.registry import register_pass


def _with_params(node, params: Dict[str, np.ndarray], shape):
    new = copy.copy(node)
    for k, v in params.items():
        old = getattr(node, k, None)
        dtype = np.asarray(old).dtype if old is not None and np.asarray(old).dtype.kind == "f" else np.float64
        setattr(new, k, np.asarray(v, dtype=np.float64).reshape(shape).astype(dtype))
    return new


def _scale_biases(nodes, topo, rho: float) -> None:
    """A bias added every step is a constant input *count* per bin: at dt_T it becomes rho b.

    The count-aware methods (integral, exact, euler) treat every input as counts summed per bin,
    so a linear layer's bias that drives neurons is scaled like a constant-rate input. The
    ``tau`` reference and the ``none`` baseline keep it (that is what the framework would do).
    """
    def drives_neuron(name, seen=()):
        for s in topo.succs[name]:
            kind = node_kind(nodes[s])
            if kind == "neuron" or (kind == "linear" and s not in seen and drives_neuron(s, seen + (name,))):
                return True
        return False

    for name in topo.order:
        if node_type(nodes[name]) in ("Affine", "Conv1d", "Conv2d") and drives_neuron(name):
            node = copy.copy(nodes[name])
            if getattr(node, "bias", None) is not None:
                b = np.asarray(node.bias)
                node.bias = (b.astype(np.float64) * rho).astype(b.dtype)
                nodes[name] = node


def _fold_power_of_two_r(nodes, topo, skip) -> None:
    """Move a LIF/LI's r into the weights and biases in front of it where that is exact.

    Retiming under the ``current`` convention rescales r (r = 1/rho for the exact method, and
    for integral at rho = 2: 0.5 up to the fit's rounding), and norse's ``from_nir`` ignores r
    (docs/interop.md). When r is one power of two for the whole layer (a fitted r within 1e-12 of
    one, the tolerance within which the pass calls every fitted parameter exact, is snapped to it) and every input comes through a linear op that feeds
    only this neuron, ``r W x + r b`` with ``r = 1`` is the same number as before in floating
    point (a power-of-two scaling commutes with rounding), so nirdeploy's own reading is
    unchanged bit for bit and readers that ignore r read the right model. Other r are kept.
    """
    for name in topo.order:
        node = nodes[name]
        if node_type(node) not in ("LIF", "LI") or name in skip or getattr(node, "r", None) is None:
            continue
        r = np.unique(np.asarray(node.r, dtype=np.float64))
        if r.size != 1 or r[0] <= 0:
            continue
        p2 = float(2.0 ** np.round(np.log2(r[0])))
        # a fitted r within the pass's exactness tolerance (1e-12, as for every fitted parameter) of a
        # power of two is that power of two: integral retiming at rho = 2 gives r = 0.5 + 2e-16
        if p2 == 1.0 or abs(r[0] - p2) > 1e-12 * p2:
            continue
        preds = topo.preds[name] + topo.back_preds[name]
        ok = preds and all(
            node_type(nodes[p]) in ("Affine", "Linear", "Conv1d", "Conv2d") and len(topo.succs[p]) == 1 for p in preds
        )
        if not ok:
            continue
        f = p2
        for p in preds:
            lin = copy.copy(nodes[p])
            w = np.asarray(lin.weight)
            lin.weight = (w * f).astype(w.dtype)
            if getattr(lin, "bias", None) is not None:
                b = np.asarray(lin.bias)
                lin.bias = (b * f).astype(b.dtype)
            nodes[p] = lin
        new = copy.copy(node)
        new.r = np.ones_like(np.asarray(node.r))
        nodes[name] = new


# --------------------------------------------------------------------------- the pass
@register_pass("retime", ensures=("has_timestep",))
def retime(graph, dt_target: float, method: str, source: Discretization | None = None):
    """A new graph adapted from its discretization's dt to ``dt_target`` with ``method``."""
    if method not in METHODS + BASELINES:
        raise NirDeployError(f"unknown retiming method {method!r}; choose one of {', '.join(METHODS + BASELINES)}")
    if not np.isfinite(dt_target) or dt_target <= 0:
        raise NirDeployError(f"the target dt must be a positive number of seconds, got {dt_target!r}")
    meta = graph_metadata(graph)
    disc = source or discretization_of(graph)
    rho = float(dt_target) / disc.dt
    full_method, method = method, base_method(method)
    topo = topology(graph)
    shapes = infer_shapes(graph, topo)
    overrides = dict(meta.get("ssm") or {})
    nodes = dict(graph.nodes)
    new_overrides: Dict[str, Dict[str, np.ndarray]] = {}
    target = disc.replace(dt=float(dt_target))
    history = dict(meta.get("retime") or {})
    if full_method.endswith(CARRY) and not disc.reset_delay:  # snnTorch's held reset (value + delay) stays as it is
        trained = history.get("trained_dt")
        trained_rho = float(dt_target) / float(trained) if trained else None
        reset, keep = carry_reset(disc.reset, disc.reset_keep, rho, trained_rho)
        target = target.replace(reset=reset, reset_keep=keep)
    exact_params = dict(meta.get("exact_params") or {})
    for name in topo.order:
        if node_kind(graph.nodes[name]) != "neuron":
            continue
        # the node as nirdeploy reads it (metadata exact_params); its portable form is rewritten below
        node = exact_node(meta, name, graph.nodes[name])
        nodes[name] = node
        shape = shapes[name][0]
        ssm = neuron_ssm(node, shape, name, disc, override=overrides.get(name))
        conv = disc.convention(name)
        if method in ("tau", "exact"):
            if name in overrides:
                raise NirDeployError(
                    f"node {name!r} carries adapted matrices from an earlier integral/euler retiming; "
                    f"the {method} method works on time constants: retime the original graph instead"
                )
            if method == "exact" and conv == "current" and rho != 1.0:
                key = "w_in" if node_type(node) in ("CubaLI", "CubaLIF") else "r"
                val = np.asarray(getattr(node, key) if getattr(node, key, None) is not None else 1.0, dtype=np.float64)
                nodes[name] = _with_params(node, {key: np.broadcast_to(val, shape) / rho}, shape)
            continue
        if rho == 1.0:
            if name in overrides:
                new_overrides[name] = overrides[name]
            continue
        if method == "integral":
            A, B, c = integral_matrices(ssm.A, ssm.B, ssm.c, rho)
        elif method == "none":
            A, B, c = ssm.A.copy(), ssm.B.copy(), ssm.c.copy()
        else:
            A, B, c = euler_matrices(ssm.A, ssm.B, ssm.c, rho, name)
        kind = node_type(node)
        params = fit_params(kind, A, B, c, target.dt, disc.scheme, conv)
        finite = all(np.all(np.isfinite(v)) for v in params.values())
        positive = all(np.all(params[k] > 0) for k in ("tau", "tau_syn", "tau_mem") if k in params)
        exact = False
        if finite and positive:
            fitted = _with_params(node, params, shape)
            Ac, Bc, cc = continuous_ssm(fitted, shape, name)
            A2, B2, c2 = discretize(Ac, Bc, cc, target.dt, disc.scheme, conv)
            scale = max(1.0, float(np.max(np.abs(A))), float(np.max(np.abs(B))), float(np.max(np.abs(c))))
            err = max(float(np.max(np.abs(A2 - A))), float(np.max(np.abs(B2 - B))), float(np.max(np.abs(c2 - c))))
            exact = err <= 1e-12 * scale  # else keep the exact matrices: fitted parameters would drift
            nodes[name] = fitted
        if not exact:
            new_overrides[name] = {"A": A, "B": B, "c": c}
    new_exact = {}
    for name in exact_params:  # keep the exact reading in the metadata, the node in NIR's own reading at dt_T
        nat = nodes[name]
        new_exact[name] = {"r": np.asarray(nat.r, dtype=np.float64), "w_in": np.asarray(nat.w_in, dtype=np.float64)}
        shape = np.asarray(nat.tau_syn).shape
        nodes[name] = _with_params(nat, portable_cuba_params(nat.tau_syn, nat.tau_mem, nat.r, nat.w_in, target.dt), shape)
    if method in ("integral", "exact", "euler") and rho != 1.0:
        _scale_biases(nodes, topo, rho)
    _fold_power_of_two_r(nodes, topo, set(new_overrides))
    new_meta = dict(meta)
    new_meta.pop("reset_keep", None)  # written again by to_metadata() when the reset is partial
    new_meta.update(target.to_metadata())
    new_meta["retime"] = {
        "method": full_method,
        "source_dt": disc.dt,
        "rho": rho,
        "trained_dt": float(history.get("trained_dt", disc.dt)),
    }
    if new_exact:
        new_meta["exact_params"] = new_exact
    if new_overrides:
        new_meta["ssm"] = new_overrides
    else:
        new_meta.pop("ssm", None)
    return make_graph(nodes, graph.edges, new_meta)
