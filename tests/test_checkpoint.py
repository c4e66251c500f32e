"""The model/checkpoint contract (exporters/checkpoint.py, docs/api.md): factory + state dict,
model_kwargs, dt, readout, input_shape; a module-level readout is honoured or refused."""

import sys
import textwrap

import pytest
import torch

from exporters.checkpoint import build_model, save_checkpoint
from toolchain.errors import NirDeployError

MODULE = '''
import torch
readout = {readout!r}

class Net(torch.nn.Module):
    def __init__(self, n=3):
        super().__init__()
        self.fc = torch.nn.Linear(2, n)

    def forward(self, x, state=None):
        return self.fc(x), state

def build(n=3):
    return Net(n)
'''


@pytest.fixture
def factory(tmp_path, monkeypatch):
    def make(name, readout):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE.format(readout=readout)))
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop(name, None)
        return f"{name}:build"

    return make


def _ckpt(tmp_path, **info):
    import importlib

    path = tmp_path / "m.pt"
    mod = importlib.import_module(info.pop("module"))
    save_checkpoint(mod.build(4), {"model_kwargs": {"n": 4}, **info}, str(path))
    return str(path)


def test_module_level_readout_is_used_when_the_checkpoint_names_none(factory, tmp_path):
    spec = factory("ro_max", "max")
    model, extra = build_model(spec, _ckpt(tmp_path, module="ro_max"))
    assert extra["readout"] == "max" and model.fc.out_features == 4


def test_a_checkpoint_and_a_module_that_disagree_are_refused(factory, tmp_path):
    spec = factory("ro_mean", "mean")
    ck = _ckpt(tmp_path, module="ro_mean", readout="sum")
    with pytest.raises(NirDeployError, match="readout 'sum'.*readout = 'mean'.*--readout"):
        build_model(spec, ck)
    assert build_model(spec, ck, readout="last")[1]["readout"] == "last"  # the user chose


def test_an_unknown_module_readout_is_refused(factory, tmp_path):
    spec = factory("ro_bad", "softmax")
    with pytest.raises(NirDeployError, match="module-level readout.*'softmax'"):
        build_model(spec, _ckpt(tmp_path, module="ro_bad"))


def test_weights_come_from_the_checkpoint(factory, tmp_path):
    spec = factory("ro_w", "sum")
    ck = _ckpt(tmp_path, module="ro_w")
    model, _ = build_model(spec, ck)
    state = torch.load(ck, weights_only=True)["state_dict"]
    assert torch.equal(model.fc.weight, state["fc.weight"])


@pytest.mark.parametrize("name,content,pattern", [
    ("empty_dict", {}, "empty dict"),
    ("kwargs_str", {"state_dict": {"w": torch.zeros(1)}, "model_kwargs": "n=3"}, "model_kwargs must be a dict"),
    ("dt_str", {"state_dict": {"w": torch.zeros(1)}, "dt": "fast"}, "dt must be a positive number"),
    ("dt_negative", {"state_dict": {"w": torch.zeros(1)}, "dt": -1.0}, "dt must be a positive number"),
    ("shape_str", {"state_dict": {"w": torch.zeros(1)}, "input_shape": "abc"}, "input_shape must be a list"),
    ("state_not_tensors", {"state_dict": {"w": 3}}, "must map parameter names to tensors"),
])  # fmt: skip
def test_checkpoints_that_break_the_contract_are_one_line_errors(factory, tmp_path, capsys, name, content, pattern):
    from toolchain.cli.main import main

    spec = factory(f"ro_{name}", "sum")
    torch.save(content, tmp_path / f"{name}.pt")
    rc = main(["export", "--model", spec, "--checkpoint", str(tmp_path / f"{name}.pt"), "-o", str(tmp_path / "m.nir")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and pattern in err[0], err
    assert not (tmp_path / "m.nir").exists()


def test_paths_may_be_pathlike():
    """api.export_checkpoint(DEMO_MODEL, DEMO_CHECKPOINT) with pathlib paths (it raised AttributeError)."""
    import pathlib

    from toolchain import api
    from toolchain.demo import DEMO_CHECKPOINT, DEMO_MODEL

    g = api.export_checkpoint(DEMO_MODEL, pathlib.Path(DEMO_CHECKPOINT))
    assert g.metadata["dt"] == 1e-3 and g.metadata["checkpoint"]
