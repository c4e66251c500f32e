"""Artifacts are written atomically and output paths are checked before a run (toolchain/ir/atomic.py).

A process SIGKILLed in the middle of writing leaves the previous good file; a bad ``-o`` is
refused in one line (exit 2, no traceback) before the command does any work.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nir
import numpy as np
import pytest

from toolchain.cli.main import main
from toolchain.errors import NirDeployError
from toolchain.ir import load_graph, make_graph, save_graph
from toolchain.ir.atomic import atomic_path, atomic_write, check_output_dir, check_output_path

REPO = Path(__file__).resolve().parents[1]


def lif_graph(n=3, w=1.0):
    p = dict(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Affine(weight=np.full((n, 4), w), bias=np.zeros(n)),
        "lif": nir.LIF(**p),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    return make_graph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")], {"dt": 1e-3})


def temp_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".tmp-" in p.name)


def kill_mid_write(script, *args):
    """Run ``script`` (which prints 'writing' once it is part-way through a write, then keeps going
    slowly), SIGKILL it there and return its exit code."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.strip() == "writing", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_json_killed_mid_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "run.json"
    old = {"accuracy": 0.9, "runs": [1, 2, 3]}
    from toolchain.analysis.records import write_json

    write_json(old, str(path))
    code = kill_mid_write(
        """
        import sys, time
        from toolchain.ir.atomic import atomic_write
        with atomic_write(sys.argv[1], "w") as f:
            f.write('{"accuracy": 0.1, "runs": [')
            for i in range(100000):
                f.write("1, " * 10000)  # megabytes, part of it already on disk
                f.flush()
                if i == 20:
                    print("writing", flush=True)
                if i >= 20:
                    time.sleep(0.05)
        """,
        path,
    )
    assert code == -signal.SIGKILL
    with open(path) as f:
        assert json.load(f) == old
    left = temp_files(tmp_path)  # the killed write's temporary file, never the real name
    assert len(left) == 1 and left[0].startswith(".run.json.tmp-") and (tmp_path / left[0]).stat().st_size > 5e5


def test_nir_killed_mid_write_leaves_the_old_graph(tmp_path):
    path = tmp_path / "m.nir"
    save_graph(lif_graph(w=1.0), path)
    code = kill_mid_write(
        """
        import sys, time
        import nir
        sys.path.insert(0, "tests")
        from test_atomic import lif_graph
        from toolchain.ir import save_graph

        real = nir.write

        def slow(filename, graph):  # nir.write that is killed with half of the HDF5 file on disk
            real(filename, graph)
            data = open(filename, "rb").read()
            with open(filename, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                print("writing", flush=True)
                time.sleep(60)
                f.write(data[len(data) // 2 :])

        nir.write = slow
        save_graph(lif_graph(w=5.0), sys.argv[1])
        """,
        path,
    )
    assert code == -signal.SIGKILL
    g = load_graph(path)
    assert np.all(g.nodes["fc"].weight == 1.0)
    assert len(temp_files(tmp_path)) == 1


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"old": 1}')
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write('{"new"')
            raise RuntimeError("boom")
    assert json.loads(path.read_text()) == {"old": 1} and temp_files(tmp_path) == []
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            Path(tmp).write_text("partial")
            raise RuntimeError("boom")
    assert json.loads(path.read_text()) == {"old": 1} and temp_files(tmp_path) == []


def test_atomic_write_replaces_follows_links_and_keeps_the_mode(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("{}")
    os.chmod(real, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with atomic_write(link, "w") as f:
        f.write('{"a": 1}')
    assert link.is_symlink() and json.loads(real.read_text()) == {"a": 1}
    assert (real.stat().st_mode & 0o777) == 0o640
    with atomic_path(tmp_path / "sub" / "t.npz") as tmp:  # the extension is kept: np.savez does not add .npz
        assert tmp.endswith(".npz")
        np.savez_compressed(tmp, a=np.arange(3))
    assert np.load(tmp_path / "sub" / "t.npz", allow_pickle=False)["a"].tolist() == [0, 1, 2]
    with pytest.raises(NirDeployError, match="not a regular file"):
        with atomic_write("/dev/null", "w"):
            pass


# --------------------------------------------------------------------------- checks before a run
@pytest.fixture
def files(tmp_path):
    g = tmp_path / "m.nir"
    save_graph(lif_graph(), g)
    x = tmp_path / "x.npy"
    np.save(x, np.ones((10, 4)))
    afile = tmp_path / "afile"
    afile.write_text("a regular file")
    adir = tmp_path / "adir"
    adir.mkdir()
    rec = tmp_path / "run.json"
    rec.write_text("{}")
    return {"g": str(g), "x": str(x), "afile": str(afile), "adir": str(adir), "rec": str(rec), "tmp": tmp_path}


def refused(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("nirdeploy: error: "), err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def test_simulate_output_checks(capsys, files):
    g, x, tmp = files["g"], files["x"], files["tmp"]
    trace = tmp / "t.npz"
    sim = ["simulate", g, "--input", x, "-q", "--trace", str(trace)]
    refused(capsys, sim + ["-o", f"{files['afile']}/out.json"], "afile is a file, not a folder")
    refused(capsys, sim + ["-o", files["adir"]], "names a directory")
    refused(capsys, sim + ["-o", "/proc/nirdeploy-no-such/out.json"], "cannot create files in /proc")
    refused(capsys, ["simulate", g, "--input", x, "-q", "--trace", "/dev/full", "-o", str(tmp / "o.json")],
            "/dev/full", "not a regular file")  # fmt: skip
    refused(capsys, ["simulate", g, "--input", x, "-q", "-o", g], "over the input")
    # none of these started the run: no trace, no record, no partial file
    assert not trace.exists() and not (tmp / "o.json").exists() and temp_files(tmp) == []
    assert main(sim + ["-o", str(tmp / "ok.json")]) == 0 and trace.exists() and (tmp / "ok.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(capsys, files):
    ro = files["tmp"] / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        refused(capsys, ["simulate", files["g"], "--input", files["x"], "-q", "-o", str(ro / "o.json")], "cannot create files in")
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(ro, 0o755)


def test_retime_and_deploy_refuse_to_overwrite_their_input(capsys, files):
    g = files["g"]
    before = Path(g).read_bytes()
    refused(capsys, ["retime", g, "--dt", "5e-4", "--method", "tau", "-o", g], "over the input")
    other_spelling = os.path.join(files["adir"], "..", "m.nir")
    refused(capsys, ["retime", g, "--dt", "5e-4", "--method", "tau", "-o", other_spelling], "over the input")
    refused(capsys, ["deploy", g, "-o", g, "-q"], "over the input")
    link = files["tmp"] / "link.nir"
    link.symlink_to(g)
    refused(capsys, ["deploy", g, "-o", str(link), "-q"], "over the input")
    assert Path(g).read_bytes() == before
    refused(capsys, ["deploy", g, "-o", files["adir"], "-q"], "names a directory")
    refused(capsys, ["deploy", g, "-o", str(files["tmp"] / "m.net"), "--report", f"{files['afile']}/r.json", "-q"],
            "not a folder")  # fmt: skip
    assert not (files["tmp"] / "m.net").exists()
    refused(capsys, ["retime", g, "--dt", "5e-4", "--method", "tau", "-o", "/dev/full"], "not a regular file")
    assert temp_files(files["tmp"]) == [] and temp_files("/dev") == []


def test_export_sweep_report_compare_demo_check_their_output(capsys, files):
    tmp, afile = files["tmp"], files["afile"]
    refused(capsys, ["export", "--model", "toolchain.demo_model.model:build_model", "--checkpoint",
                     str(REPO / "toolchain/demo_model/checkpoint.pt"), "-o", f"{afile}/m.nir"], "not a folder")  # fmt: skip
    refused(capsys, ["sweep", files["g"], "--data", "default", "--dt", "1e-3", "-q", "-o", afile], "is a file, not a folder")
    refused(capsys, ["sweep", files["g"], "--data", "default", "--dt", "1e-3", "-q", "-o", f"{afile}/sw"], "not a folder")
    (tmp / "r.html").mkdir()
    refused(capsys, ["report", files["rec"], "-q", "-o", str(tmp / "r.html")], "names a directory")
    refused(capsys, ["report", files["rec"], "-q", "-o", f"{afile}/r.html"], "not a folder")
    refused(capsys, ["compare", files["g"], "--data", "default", "-q", "-o", "/dev/full"], "not a regular file")
    refused(capsys, ["demo", "-q", "-o", afile], "is a file, not a folder")
    assert sorted(p.name for p in tmp.iterdir()) == ["adir", "afile", "m.nir", "r.html", "run.json", "x.npy"]


def test_check_output_path_direct(tmp_path):
    check_output_path(tmp_path / "new" / "deeper" / "x.json")  # folders to be created are fine
    check_output_dir(tmp_path / "new" / "dir")
    check_output_path(None)
    for bad, msg in [("", "empty"), (str(tmp_path) + "/", "directory"), ("/dev/full", "not a regular file")]:
        with pytest.raises(NirDeployError, match=msg):
            check_output_path(bad)
    assert temp_files(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_the_api_reports_an_unwritable_folder_in_one_line(tmp_path):
    """Without the CLI's check first, the atomic writer itself refuses with a NirDeployError."""
    from toolchain.analysis.records import write_json

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(NirDeployError, match="cannot write .*afile/r.json"):
        write_json({}, str(afile / "r.json"))
    with pytest.raises(NirDeployError, match="cannot write /proc/r.json"):
        save_graph(lif_graph(), "/proc/r.json")
