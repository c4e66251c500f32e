"""A corpus of malformed ``.nir`` files, one per way a file can be wrong (used by test_bad_files.py).

``write_corpus(folder)`` writes them and returns ``{name: path}``. Each is built from a valid
40-input graph (so the default data fits) and broken in one place: with nir's own API where nir
allows it, and by editing the HDF5 file where nir's writer would refuse.
"""

import shutil
from pathlib import Path

import h5py
import nir
import numpy as np

from toolchain.ir import Discretization, make_graph


def _lif(n=2):
    return nir.LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))


def _graph(nodes=None, meta=None, edges=None):
    nd = {"input": nir.Input(input_type={"input": np.array([40])}),
          "fc": nir.Affine(weight=np.ones((2, 40)) * 0.1, bias=np.zeros(2)),
          "lif": _lif(), "output": nir.Output(output_type={"output": np.array([2])})}  # fmt: skip
    nd.update(nodes or {})
    edges = edges or [("input", "fc"), ("fc", "lif"), ("lif", "output")]
    return make_graph(nd, edges, Discretization(dt=1e-3).to_metadata() if meta is None else meta)


def _write(graph, path):
    """nir.write without nirdeploy's checker (which would refuse these graphs)."""
    graph.metadata = dict(graph.metadata)
    nir.write(str(path), graph)


def write_corpus(folder) -> dict:
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    out = {}

    def put(name, graph):
        _write(graph, d / f"{name}.nir")
        out[name] = d / f"{name}.nir"

    w = np.ones((2, 40)) * 0.1
    w[0, 1] = np.nan
    put("nan_weight", _graph({"fc": nir.Affine(weight=w, bias=np.zeros(2))}))
    put("inf_bias", _graph({"fc": nir.Affine(weight=np.ones((2, 40)), bias=np.array([0, np.inf]))}))
    lif = _lif()
    lif.v_threshold = np.array([1.0, np.nan])
    put("nan_threshold", _graph({"lif": lif}))
    lif = _lif()
    lif.tau = np.full(3, 0.01)
    put("tau_shape", _graph({"lif": lif}))
    lif = _lif()
    lif.tau = np.full(2, -0.01)
    put("negative_tau", _graph({"lif": lif}))
    put("zero_size", _graph({"fc": nir.Affine(weight=np.ones((0, 40)), bias=np.zeros(0)), "lif": _lif(0),
                             "output": nir.Output(output_type={"output": np.array([0])})}))  # fmt: skip
    put("missing_edge", _graph(edges=[("input", "fc"), ("lif", "output")]))
    for name, key, val in (("meta_conventions_str", "node_conventions", "oops"), ("meta_ssm_str", "ssm", {"lif": "x"}),
                           ("meta_dt_str", "dt", "fast"), ("meta_dt_negative", "dt", -1.0),
                           ("meta_scheme_unknown", "scheme", "rk4"), ("meta_readout_unknown", "readout", "softmax")):  # fmt: skip
        meta = Discretization(dt=1e-3).to_metadata()
        meta[key] = val
        put(name, _graph(meta=meta))
    put("slash_name", _graph({"a/b": nir.Affine(weight=np.ones((2, 40)), bias=np.zeros(2))},
                             edges=[("input", "a/b"), ("a/b", "lif"), ("lif", "output")]))  # fmt: skip
    src = out["nan_weight"]

    def edited(name, fn):
        p = d / f"{name}.nir"
        shutil.copy(src, p)
        with h5py.File(p, "r+") as f:
            fn(f)
        out[name] = p

    def string_tau(f):
        del f["node/nodes/lif/tau"]
        f["node/nodes/lif/tau"] = np.array([b"a", b"b"])

    def unknown_type(f):
        del f["node/nodes/lif/type"]
        f["node/nodes/lif/type"] = b"Banana"

    def node_as_dataset(f):
        del f["node/nodes/lif"]
        f["node/nodes/lif"] = np.zeros(3)

    def no_edges(f):
        del f["node/edges"]

    edited("string_tau", string_tau)
    edited("unknown_type", unknown_type)
    edited("node_as_dataset", node_as_dataset)
    edited("no_edges", no_edges)
    data = src.read_bytes()
    (d / "torn.nir").write_bytes(data[: len(data) // 2])
    out["torn"] = d / "torn.nir"
    (d / "not_hdf5.nir").write_bytes(b"hello, not a graph")
    out["not_hdf5"] = d / "not_hdf5.nir"
    return out
