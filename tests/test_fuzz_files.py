"""A fuzzer (hypothesis) that mutates a valid .nir file, by bytes and by HDF5 fields, and checks
the invariant of the CLI: every command either works or fails with one line and exit 2, never a
traceback (toolchain/ir/checker.py, docs/security.md)."""

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout

import h5py
import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from toolchain.cli.main import main
from toolchain.ir import Discretization, make_graph, save_graph

SETTINGS = dict(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    g = make_graph(
        {"input": nir.Input(input_type={"input": np.array([4])}),
         "fc": nir.Affine(weight=np.full((3, 4), 0.5), bias=np.zeros(3)),
         "lif": nir.CubaLIF(tau_syn=np.full(3, 5e-3), tau_mem=np.full(3, 0.02), r=np.ones(3), v_leak=np.zeros(3),
                            v_threshold=np.ones(3), v_reset=np.zeros(3), w_in=np.ones(3)),
         "rec": nir.Linear(weight=np.eye(3) * 0.1),
         "output": nir.Output(output_type={"output": np.array([3])})},
        [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
        Discretization(dt=1e-3).to_metadata(),
    )  # fmt: skip
    save_graph(g, d / "valid.nir")
    np.save(d / "x.npy", np.random.default_rng(0).poisson(1.0, (20, 4)).astype(float))
    return d


def _invariant(path, x):
    for argv in (["inspect", str(path)], ["simulate", str(path), "--input", str(x), "-q"]):
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            rc = main(argv)
        lines = err.getvalue().strip().splitlines()
        assert rc in (0, 2), (argv, rc, lines)
        if rc == 2:
            assert len(lines) == 1 and lines[0].startswith("nirdeploy: error: "), lines
        assert "Traceback" not in err.getvalue()


@settings(**SETTINGS)
@given(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_mutations(valid, tmp_path_factory, flips):
    data = bytearray((valid / "valid.nir").read_bytes())
    for pos, val in flips:
        data[int(pos * len(data))] = val
    p = tmp_path_factory.mktemp("b") / "m.nir"
    p.write_bytes(bytes(data))
    _invariant(p, valid / "x.npy")


FIELDS = ["node/nodes/fc/weight", "node/nodes/fc/bias", "node/nodes/lif/tau_syn", "node/nodes/lif/tau_mem",
          "node/nodes/lif/v_threshold", "node/nodes/lif/w_in", "node/nodes/rec/weight", "node/nodes/lif/type",
          "node/nodes/input/input_type/input", "node/edges/src", "node/nodes/output/type"]  # fmt: skip
VALUES = st.one_of(
    st.just(np.array([np.nan])), st.just(np.array([], dtype=np.float64)), st.just(np.array([b"abc", b"d"])),
    st.just(np.zeros((2, 2, 2))), st.just(np.array(-1.0)), st.just(np.array([1e308, -1e308])),
    st.just(np.array([3], dtype=np.int64)), st.just(b"Banana"), st.just(np.array([np.inf] * 3)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: np.full(3, v)),
)  # fmt: skip


@settings(**SETTINGS)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), st.one_of(st.none(), VALUES)), min_size=1, max_size=3))
def test_field_mutations(valid, tmp_path_factory, edits):
    p = tmp_path_factory.mktemp("f") / "m.nir"
    shutil.copy(valid / "valid.nir", p)
    with h5py.File(p, "r+") as f:
        for field, value in edits:
            try:
                if field in f:
                    del f[field]
                if value is not None:  # None: the field is deleted
                    f[field] = value
            except (OSError, ValueError, TypeError, KeyError):
                pass  # h5py cannot make this edit (e.g. under a dataset): the file keeps the others
    _invariant(p, valid / "x.npy")
