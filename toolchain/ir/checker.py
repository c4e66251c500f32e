"""The checker: is a NIR graph one nirdeploy can run, and is a ``.nir`` file one it can read?

As ONNX's ``checker``: one verb, one error type. Every finding is a one-line
:class:`NirDeployError` that names the node (or metadata key) and what is wrong, raised before
any number is computed from it, so a malformed graph never becomes a traceback or a silently
wrong accuracy:

* :func:`check_file` looks at the HDF5 layout before nir reads it: every node is a group with a
  known ``type``, numeric parameters are numeric;
* :func:`check_graph` looks at a graph in memory: node names nir can write and read back, finite
  weights, biases and neuron parameters, no empty layers, well-typed metadata.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from toolchain.errors import NirDeployError
from toolchain.limits import check_allocation, human
from toolchain.ir.metadata import READOUTS, Discretization, graph_metadata
from toolchain.ir.nodes import node_type

#: parameters that hold numbers, per NIR node (weights, biases, neuron constants, geometry)
NUMERIC = ("weight", "bias", "tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in", "scale",
           "stride", "padding", "dilation", "groups", "kernel_size", "start_dim", "end_dim", "delay")  # fmt: skip
#: parameters that must be finite numbers (geometry is checked by shape inference)
FINITE = ("weight", "bias", "tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in", "scale")


def known_types() -> set:
    """NIR node type names: nir's own node classes (``nir.NIRNode`` subclasses defined by nir)."""
    import nir

    out, todo = set(), [nir.NIRNode]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.split(".")[0] == "nir":
                out.add(sub.__name__)
    return out


def check_file(f, path: str) -> None:
    """Check an open ``.nir`` file (h5py) before nir reads it."""
    import h5py

    if "node" not in f or not isinstance(f["node"], h5py.Group):
        raise NirDeployError(f"{path} is an HDF5 file but not a NIR graph (no 'node' group)")
    types = known_types()

    def walk(group, prefix: str):
        if "nodes" not in group or not isinstance(group["nodes"], h5py.Group):
            raise NirDeployError(f"{path}: graph {prefix or '/'} has no 'nodes' group")
        if "edges" not in group:
            raise NirDeployError(f"{path}: graph {prefix or '/'} has no 'edges'")
        for name, node in group["nodes"].items():
            where = f"{prefix}{name}"
            if not isinstance(node, h5py.Group):
                raise NirDeployError(f"{path}: node {where!r} is stored as a dataset, not as a group of parameters")
            if "type" not in node:
                raise NirDeployError(f"{path}: node {where!r} has no 'type'")
            t = node["type"][()]
            t = t.decode("utf8", "replace") if isinstance(t, bytes) else str(t)
            if t not in types:
                raise NirDeployError(
                    f"{path}: node {where!r} has type {t!r}, which nir cannot read (known: {', '.join(sorted(types))})"
                )
            if t == "NIRGraph":
                walk(node, where + ".")
                continue
            for p in NUMERIC:
                if p in node and isinstance(node[p], h5py.Dataset):
                    kind = node[p].dtype.kind
                    if kind not in "biuf" and not (p == "padding" and kind in "SOU"):
                        raise NirDeployError(
                            f"{path}: node {where!r} ({t}): parameter {p} is not numeric (dtype {node[p].dtype})"
                        )

    walk(f["node"], "")
    total = 0.0

    def size(name, obj):
        nonlocal total
        if isinstance(obj, h5py.Dataset):
            total += float(np.prod(obj.shape, dtype=np.float64)) * 8.0  # read, then held as float64
    f["node"].visititems(size)
    # nir reads every array, lowering keeps a float64 copy and torch another: about three times
    check_allocation(3.0 * total, f"reading {path} (its parameters hold {human(total)} as float64)")


def check_graph(graph) -> None:
    """Check a graph in memory (see the module docstring); returns nothing or raises."""
    for name, node in graph.nodes.items():
        t = node_type(node)
        if not isinstance(name, str) or not name or "/" in name:
            raise NirDeployError(
                f"node name {name!r} ({t}) cannot be stored: NIR files are HDF5 and a '/' (or an empty name) "
                f"makes a node nir cannot read back; rename the module"
            )
        for p in FINITE:
            v = getattr(node, p, None)
            if v is None:
                continue
            try:
                a = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                raise NirDeployError(f"node {name!r} ({t}): parameter {p} is not numeric ({np.asarray(v).dtype})") from None
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            if bad:
                raise NirDeployError(
                    f"node {name!r} ({t}): parameter {p} has {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'} "
                    f"of {np.size(a)}"
                )
        w = getattr(node, "weight", None)
        if w is not None and np.size(w) == 0:
            raise NirDeployError(f"node {name!r} ({t}) has an empty weight {tuple(np.shape(w))}: a layer of no neurons")
        for p in ("tau", "tau_mem", "v_threshold", "r"):
            v = getattr(node, p, None)
            if v is not None and np.size(v) == 0:
                raise NirDeployError(f"node {name!r} ({t}) has no neurons ({p} is empty)")
    for a, b in graph.edges:
        for n in (a, b):
            if n not in graph.nodes:
                raise NirDeployError(f"edge ({a!r} -> {b!r}) names node {n!r}, which is not in the graph")
    check_metadata(graph_metadata(graph), set(graph.nodes))


def check_metadata(meta: Mapping[str, Any], nodes=None) -> None:
    """The discretization metadata nirdeploy reads, type by type."""
    if "dt" in meta:
        Discretization.from_metadata(meta)  # dt, scheme, conventions, reset, v_init and node_conventions
    if "readout" in meta and meta["readout"] not in READOUTS:
        raise NirDeployError(f"metadata readout is {meta['readout']!r}; nirdeploy knows {', '.join(READOUTS)}")
    ssm = meta.get("ssm")
    if ssm is not None:
        if not isinstance(ssm, Mapping):
            raise NirDeployError("metadata ssm must map neuron node names to {A, B, c} matrices")
        for n, m in ssm.items():
            if nodes is not None and n not in nodes:
                raise NirDeployError(f"metadata ssm names node {n!r}, which is not in the graph")
            if not isinstance(m, Mapping) or not {"A", "B", "c"} <= set(m):
                raise NirDeployError(f"metadata ssm of node {n!r} must hold the matrices A, B and c")
            for k in ("A", "B", "c"):
                try:
                    a = np.asarray(m[k], dtype=np.float64)
                except (TypeError, ValueError):
                    raise NirDeployError(f"metadata ssm of node {n!r}: {k} is not numeric") from None
                if not np.all(np.isfinite(a)):
                    raise NirDeployError(f"metadata ssm of node {n!r}: {k} contains NaN or infinity")
