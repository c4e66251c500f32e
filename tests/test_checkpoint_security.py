"""A checkpoint never runs code (docs/security.md).

torch 2.3's ``torch.load(weights_only=True)`` hands a TorchScript archive to ``torch.jit.load``,
which runs the archive's ``__setstate__`` (CVE-2025-32434). The payload built here really does
write a marker file when torch loads it (checked in a fresh interpreter); nirdeploy must refuse it
without calling ``torch.load`` or ``torch.jit.load`` at all, and the marker must not appear.
"""

import glob
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from exporters import checkpoint as ck
from exporters.checkpoint import ALLOWED_GLOBALS, inspect_checkpoint, load_checkpoint, save_checkpoint
from toolchain.cli.main import main
from toolchain.errors import NirDeployError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(glob.glob(str(REPO / "examples/zoo/*/checkpoint.pt"))) + [str(REPO / "toolchain/demo_model/checkpoint.pt")]


def make_payload(path, marker):
    """A TorchScript archive whose ``__setstate__`` creates ``marker`` (via ``torch.from_file(shared=True)``)."""
    from typing import Tuple

    class Payload(torch.nn.Module):
        def __init__(self, marker: str):
            super().__init__()
            self.marker = marker
            self.w = torch.ones(2)

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self) -> Tuple[str, torch.Tensor]:
            return (self.marker, self.w)

        @torch.jit.export
        def __setstate__(self, state: Tuple[str, torch.Tensor]) -> None:
            self.marker = state[0]
            self.training = False
            # used in the result, so the TorchScript optimizer keeps the call: creates the file
            self.w = state[1] + torch.from_file(self.marker, True, 2)

    torch.jit.save(torch.jit.script(Payload(str(marker))), str(path))
    assert not os.path.exists(marker)
    return str(path)


@pytest.fixture
def no_torch_load(monkeypatch):
    """Record (and block) every call of torch.load / torch.jit.load."""
    calls = []

    def blocked(name):
        def f(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return f

    monkeypatch.setattr(torch, "load", blocked("torch.load"))
    monkeypatch.setattr(torch.serialization, "load", blocked("torch.serialization.load"))
    monkeypatch.setattr(torch.jit, "load", blocked("torch.jit.load"))
    return calls


def test_the_payload_is_real(tmp_path):
    """Control: torch 2.3 itself runs the payload on torch.load(weights_only=True)."""
    marker = tmp_path / "control-marker"
    payload = make_payload(tmp_path / "control.pt", marker)
    code = f"import torch, warnings; warnings.simplefilter('ignore'); torch.load({payload!r}, weights_only=True)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 6):
        pytest.skip("torch >= 2.6 refuses TorchScript with weights_only itself")
    assert r.returncode == 0, r.stderr
    assert marker.exists(), "the TorchScript payload did not run under torch.load: the refusal test below proves less"


def test_torchscript_archive_is_refused_unopened(tmp_path, no_torch_load):
    marker = tmp_path / "marker"
    payload = make_payload(tmp_path / "payload.pt", marker)
    with pytest.raises(NirDeployError, match=r"TorchScript archive .*code/.*CVE-2025-32434") as e:
        load_checkpoint(payload)
    assert "\n" not in str(e.value)
    assert no_torch_load == []
    assert not marker.exists()


def test_torchscript_archive_is_refused_by_export(tmp_path, capsys, no_torch_load):
    marker = tmp_path / "marker"
    payload = make_payload(tmp_path / "payload.pt", marker)
    out = tmp_path / "m.nir"
    code = main(["export", "--model", "examples.zoo.temporal.model:build_model", "--checkpoint", payload, "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("nirdeploy: error: refusing to load")
    assert "TorchScript" in err[0]
    assert no_torch_load == [] and not marker.exists() and not out.exists()


class _System:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_plain_pickle_with_os_system_is_refused_naming_it(tmp_path, no_torch_load):
    marker = tmp_path / "marker"
    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps({"state_dict": {}, "x": _System(f"touch {marker}")}, protocol=2))
    with pytest.raises(NirDeployError, match=rf"plain pickle that references {os.system.__module__}\.system") as e:
        load_checkpoint(str(p))
    assert "\n" not in str(e.value)
    assert no_torch_load == [] and not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_zip_checkpoint_with_os_system_global_is_refused_naming_it(tmp_path, no_torch_load, protocol):
    """A real torch.save archive whose data.pkl was swapped for one that calls os.system."""
    good, evil = tmp_path / "good.pt", tmp_path / "evil.pt"
    torch.serialization.save({"w": torch.ones(2)}, good)  # the unpatched save
    marker = tmp_path / "marker"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(evil, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps({"w": _System(f"touch {marker}")}, protocol=protocol)
            zout.writestr(info, data)
    with pytest.raises(NirDeployError, match=rf"data\.pkl references {os.system.__module__}\.system"):
        load_checkpoint(str(evil))
    assert no_torch_load == [] and not marker.exists()


def test_legacy_non_zip_checkpoint_is_refused(tmp_path, no_torch_load):
    p = tmp_path / "legacy.pt"
    torch.serialization.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False)
    with pytest.raises(NirDeployError, match=r"legacy \(pre-torch-1.6\) or plain pickle.*zip format"):
        load_checkpoint(str(p))
    assert no_torch_load == []


def test_an_archive_with_foreign_members_is_refused(tmp_path, no_torch_load):
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    torch.serialization.save({"w": torch.ones(2)}, good)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr("good/extra_stuff.bin", b"x")
    with pytest.raises(NirDeployError, match=r"good/extra_stuff.bin is not part of a torch.save checkpoint"):
        load_checkpoint(str(bad))
    polyglot = tmp_path / "polyglot.pt"  # a pickle with a zip appended: torch would read the pickle
    polyglot.write_bytes(pickle.dumps({"x": _System("true")}, protocol=2) + good.read_bytes())
    assert zipfile.is_zipfile(polyglot)
    with pytest.raises(NirDeployError, match="plain pickle that references"):
        load_checkpoint(str(polyglot))
    p = tmp_path / "text.pt"
    p.write_text("not a checkpoint")
    with pytest.raises(NirDeployError, match="not a torch.save zip archive"):
        load_checkpoint(str(p))
    assert no_torch_load == []


def test_shipped_checkpoints_pass_the_inspection(no_torch_load):
    """Their data.pkl globals are all on the allow-list (which is what the list was derived from)."""
    assert len(SHIPPED) >= 5
    for path in SHIPPED:
        inspect_checkpoint(path)
        with zipfile.ZipFile(path) as z:
            root = z.namelist()[0].split("/")[0]
            data = z.read(f"{root}/data.pkl")
        import pickletools

        assert set(ck._pickle_globals(data, path, pickletools)) <= ALLOWED_GLOBALS
    assert no_torch_load == []


def test_shipped_checkpoints_and_every_plain_dtype_still_load(tmp_path):
    for path in SHIPPED:
        state, extra = load_checkpoint(path)
        assert state and all(isinstance(v, torch.Tensor) for v in state.values()) and "dt" in extra
    m = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    dtypes = [torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8, torch.int16, torch.int32,
              torch.bool, torch.complex64]  # fmt: skip
    for dt in dtypes:
        m.register_buffer(f"b_{str(dt).split('.')[1]}", torch.zeros(2, dtype=dt))
    info = {"dt": 1e-3, "model_kwargs": {"n": 3}, "readout": "sum", "input_shape": (2,)}
    save_checkpoint(m, info, str(tmp_path / "all.pt"))
    state, extra = load_checkpoint(str(tmp_path / "all.pt"))
    assert set(state) == set(m.state_dict()) and extra == info
    # a bare state dict and a dict of nn.Parameters (torch._utils._rebuild_parameter)
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    assert set(load_checkpoint(str(tmp_path / "sd.pt"))[0]) == set(m.state_dict())
    torch.save(dict(m.named_parameters()), tmp_path / "params.pt")
    assert set(load_checkpoint(str(tmp_path / "params.pt"))[0]) == {n for n, _ in m.named_parameters()}


def test_np_load_is_always_called_without_pickles():
    """Every np.load in the three packages passes allow_pickle=False (docs/security.md)."""
    import ast

    found = 0
    for pkg in ("toolchain", "exporters", "simulators"):
        for p in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                        and isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "numpy"):  # fmt: skip
                    found += 1
                    kw = {k.arg: k.value for k in node.keywords}
                    assert "allow_pickle" in kw and getattr(kw["allow_pickle"], "value", None) is False, f"{p}:{node.lineno}"
    assert found >= 1


def test_safetensors_still_load(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    p = tmp_path / "w.safetensors"
    safetensors.save_file({"fc.weight": torch.ones(3, 2)}, str(p))
    state, extra = load_checkpoint(str(p))
    assert torch.equal(state["fc.weight"], torch.ones(3, 2)) and extra == {}
