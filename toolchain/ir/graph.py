"""Reading, writing and building NIR graphs (``.nir`` files, HDF5) with one-line errors."""

from __future__ import annotations

import copy
import os
from typing import Any, Dict, List, Optional, Tuple

from toolchain.errors import NirDeployError
from toolchain.ir.checker import check_file, check_graph
from toolchain.ir.metadata import graph_metadata


# --------------------------------------------------------------------------- file I/O
def load_graph(path: str | os.PathLike):
    """Read a ``.nir`` file with a clear error for anything that is not a readable NIR graph."""
    import h5py
    import nir

    path = os.fspath(path)
    if not os.path.exists(path):
        raise NirDeployError(f"cannot read {path}: no such file")
    if os.path.isdir(path):
        raise NirDeployError(f"cannot read {path}: it is a directory, not a .nir file")
    if not h5py.is_hdf5(path):
        raise NirDeployError(f"{path} is not a NIR file (NIR files are HDF5; this one is not)")
    try:
        with h5py.File(path, "r") as f:
            check_file(f, path)
        graph = nir.read(path, type_check=False)
    except NirDeployError:
        raise
    except ValueError as e:
        msg = str(e)
        if "Unknown unit type" in msg:
            raise NirDeployError(
                f"{path} contains a node type that nir {nir.version} cannot read ({msg.split(':', 1)[-1].strip()})"
            ) from None
        raise NirDeployError(f"{path} is not a valid NIR graph: {_first_line(e)}") from None
    except (KeyError, OSError, TypeError, AssertionError, IndexError, AttributeError, RuntimeError) as e:
        raise NirDeployError(f"{path} is not a valid NIR graph: {_which_node(path) or _first_line(e)}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NirDeployError(f"{path} holds a single {type(graph).__name__} node, not a NIR graph")
    graph = flatten_subgraphs(graph)
    check_graph(graph)
    return flatten_subgraphs(graph)


def save_graph(graph, path: str | os.PathLike) -> None:
    """Write ``graph`` to ``path`` (.nir); a graph the checker refuses is not written."""
    import nir

    check_graph(graph)

    graph = copy.copy(graph)
    graph.metadata = graph_metadata(graph)
    from toolchain.ir.atomic import atomic_path

    with atomic_path(path) as tmp:  # a kill mid-write leaves the previous file
        nir.write(tmp, graph)


def _first_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__


def _which_node(path: str) -> str:
    """The first node nir fails to read, and why (nir's own errors name no node)."""
    import h5py
    from nir.serialization import read_node

    try:
        with h5py.File(path, "r") as f:
            for name, node in f["node"]["nodes"].items():
                try:
                    read_node(node)
                except Exception as e:  # nir raises AssertionError, KeyError, ... without the node's name
                    what = _first_line(e) if not isinstance(e, KeyError) else f"missing parameter {e}"
                    return f"node {name!r}: {what}"
    except Exception:
        return ""
    return ""


def make_graph(nodes: Dict[str, Any], edges: List[Tuple[str, str]], metadata: Optional[dict] = None):
    """A NIRGraph without nir's own type check (nirdeploy infers shapes itself)."""
    import nir

    return nir.NIRGraph(nodes=dict(nodes), edges=list(edges), metadata=dict(metadata or {}), type_check=False)


def flatten_subgraphs(graph):
    """Inline nested NIRGraph nodes (e.g. a recurrent cell exported as a subgraph).

    Node ``k`` of subgraph ``s`` becomes ``s.k``; edges into ``s`` go to the nodes its Input
    feeds and edges out of ``s`` leave from the nodes that feed its Output.
    """
    import nir

    if not any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()):
        return graph
    nodes: Dict[str, Any] = {}
    edges: List[Tuple[str, str]] = []
    entry: Dict[str, List[str]] = {}
    exit_: Dict[str, List[str]] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub = flatten_subgraphs(node)
            ins = [k for k, n in sub.nodes.items() if isinstance(n, nir.Input)]
            outs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Output)]
            entry[name] = [f"{name}.{b}" for a, b in sub.edges if a in ins]
            exit_[name] = [f"{name}.{a}" for a, b in sub.edges if b in outs]
            for k, n in sub.nodes.items():
                if k not in ins and k not in outs:
                    nodes[f"{name}.{k}"] = n
            for a, b in sub.edges:
                if a not in ins and b not in outs:
                    edges.append((f"{name}.{a}", f"{name}.{b}"))
        else:
            nodes[name] = node
    for a, b in graph.edges:
        srcs = exit_.get(a, [a])
        dsts = entry.get(b, [b])
        edges.extend((s, d) for s in srcs for d in dsts)
    return make_graph(nodes, edges, graph_metadata(graph))


