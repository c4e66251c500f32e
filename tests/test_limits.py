"""Memory bombs are refused before anything is allocated (toolchain/limits.py)."""

import h5py
import nir
import numpy as np
import pytest

from toolchain.cli.main import main
from toolchain.errors import NirDeployError
from toolchain.ir import Discretization, load_graph, make_graph
from toolchain.limits import ENV, check_allocation, parse_size


def test_sizes_parse():
    assert parse_size("8G") == 8 << 30 and parse_size("512M") == 512 << 20 and parse_size("1000") == 1000
    assert parse_size("1.5GiB") == int(1.5 * (1 << 30))
    for bad in ("2X", "-1G", "0", "nan"):
        with pytest.raises(NirDeployError):
            parse_size(bad)


def test_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(ENV, "1M")
    with pytest.raises(NirDeployError, match="limit of 1 MiB"):
        check_allocation(2 << 20, "something")
    check_allocation(1 << 19, "something small")


def test_a_small_file_declaring_a_huge_weight_is_refused_unread(tmp_path, monkeypatch):
    g = make_graph(
        {"input": nir.Input(input_type={"input": np.array([40000])}), "fc": nir.Linear(weight=np.zeros((4, 40000))),
         "lif": nir.LIF(tau=np.full(4, 0.01), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4),
                        v_reset=np.zeros(4)),
         "output": nir.Output(output_type={"output": np.array([4])})},
        [("input", "fc"), ("fc", "lif"), ("lif", "output")], Discretization(dt=1e-3).to_metadata(),
    )  # fmt: skip
    path = tmp_path / "big.nir"
    g.metadata = dict(g.metadata)
    nir.write(str(path), g)
    with h5py.File(path, "r+") as f:  # 40000 x 40000 float64 = 12 GiB declared, a few KB on disk
        del f["node/nodes/fc/weight"]
        f.create_dataset("node/nodes/fc/weight", shape=(40000, 40000), dtype="f8", compression="gzip")
    assert path.stat().st_size < 1 << 20
    monkeypatch.setenv(ENV, "4G")
    read = []
    monkeypatch.setattr(nir, "read", lambda *a, **k: read.append(a))
    with pytest.raises(NirDeployError, match=r"reading .*big.nir .* needs about"):
        load_graph(path)
    assert read == []  # refused before nir read a byte of the weight


def test_a_timestep_that_asks_for_petabytes_is_refused(tmp_path, capsys):
    from toolchain import api

    api.export_checkpoint("toolchain.demo_model.model:build_model", "toolchain/demo_model/checkpoint.pt",
                          output=str(tmp_path / "m.nir"))  # fmt: skip
    rc = main(["simulate", str(tmp_path / "m.nir"), "--data", "default", "--dt", "1e-12", "--method", "integral", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "PiB" in err[0] and "--max-memory" in err[0], err


def test_max_memory_option(tmp_path, capsys, monkeypatch):
    from toolchain import api

    monkeypatch.setenv(ENV, "")  # recorded, so the value main() sets is undone after the test
    api.export_checkpoint("toolchain.demo_model.model:build_model", "toolchain/demo_model/checkpoint.pt",
                          output=str(tmp_path / "m.nir"))  # fmt: skip
    rc = main(["--max-memory", "1M", "simulate", str(tmp_path / "m.nir"), "--data", "default", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "limit of 1 MiB" in err[0]  # the monkeypatch undoes the variable main() set


def test_a_run_whose_recordings_would_not_fit_is_refused_on_every_backend(monkeypatch):
    from simulators.backends import names, run
    from toolchain.program import lower

    g = make_graph(
        {"input": nir.Input(input_type={"input": np.array([4])}), "fc": nir.Linear(weight=np.ones((1000, 4))),
         "lif": nir.LIF(tau=np.full(1000, 0.01), r=np.ones(1000), v_leak=np.zeros(1000), v_threshold=np.ones(1000),
                        v_reset=np.zeros(1000)),
         "output": nir.Output(output_type={"output": np.array([1000])})},
        [("input", "fc"), ("fc", "lif"), ("lif", "output")], Discretization(dt=1e-3).to_metadata(),
    )  # fmt: skip
    prog = lower(g, Discretization(dt=1e-3))
    monkeypatch.setenv(ENV, "1M")
    x = np.zeros((50, 100, 4))  # 50 x 100 x 1000 outputs in float64: 40 MB
    for b in names():
        with pytest.raises(NirDeployError, match=f"recording 50 samples x 100 steps on {b}"):
            run(b, prog, x)
