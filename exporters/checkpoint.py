"""Loading a trained model: ``--model package.module:factory --checkpoint file.pt``.

Checkpoints are read without running code from the file: ``torch.load(weights_only=True)``
for ``.pt``/``.pth`` files and ``safetensors`` for ``.safetensors`` files. A checkpoint is
either a state dict or a dict with a ``"state_dict"`` entry and optionally ``"model_kwargs"``
(passed to the factory), ``"dt"``, ``"readout"`` and ``"input_shape"``. A module-level
``readout = "sum"`` (or max, mean, last) in the factory's module is used when the checkpoint
names none, and refused when it names another.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import sys
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from toolchain.errors import NirDeployError


def load_factory(spec: str) -> Callable[..., torch.nn.Module]:
    """``"package.module:factory"`` -> the factory callable."""
    if ":" not in spec:
        raise NirDeployError(f"--model must look like package.module:factory, got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    # let users name modules of their own project (the directory they run nirdeploy from)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise NirDeployError(f"cannot import {mod_name!r} for --model: {e}") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise NirDeployError(f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise NirDeployError(f"{spec!r} is not callable")
    return obj


def save_checkpoint(model: torch.nn.Module, info: Dict[str, Any], path: str) -> None:
    """Write ``{"state_dict": ..., **info}``: tensors and plain Python values only, so that
    :func:`load_checkpoint` reads it back with ``torch.load(weights_only=True)``; ``info`` holds what
    the export needs (``dt``, ``model_kwargs``, ``readout``) and what the training recorded."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    from toolchain.ir.atomic import atomic_path

    with atomic_path(path) as tmp:  # a kill mid-write leaves the previous checkpoint
        torch.save({"state_dict": state, **info}, tmp)


def load_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """(state_dict, extra) from a checkpoint file, never executing code stored in it."""
    if not os.path.exists(path):
        raise NirDeployError(f"cannot read checkpoint {path}: no such file")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file

            return load_file(path), {}
        except Exception as e:
            raise NirDeployError(f"cannot read safetensors checkpoint {path}: {str(e).splitlines()[0]}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:GLOBAL|Unsupported class) (\S+)", str(e))
        what = f" (it references {found.group(1)})" if found else ""
        raise NirDeployError(
            f"refusing to load {path}: it is a pickle that would run arbitrary code when loaded{what}; "
            "nirdeploy only reads weights (torch.load(weights_only=True)). Save model.state_dict() "
            "or a safetensors file instead"
        ) from None
    except Exception as e:
        raise NirDeployError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        extra = {k: v for k, v in obj.items() if k != "state_dict"}
        return obj["state_dict"], extra
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    raise NirDeployError(f"{path} holds a {type(obj).__name__}, not a state dict")


def build_model(spec: str, checkpoint: str, readout: Optional[str] = None) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Instantiate ``spec`` with the checkpoint's model_kwargs and load its weights (strictly).

    The readout rule comes from ``readout`` if given, else from the checkpoint's ``readout`` or a
    module-level ``readout`` string in the factory's module; a checkpoint and a module that
    disagree are refused (pass ``readout`` / ``--readout`` to choose)."""
    state, extra = load_checkpoint(checkpoint)
    factory = load_factory(spec)
    extra = dict(extra)
    extra["readout"] = _readout(spec, factory, extra.get("readout"), readout)
    kwargs = dict(extra.get("model_kwargs") or {})
    try:
        model = factory(**kwargs)
    except TypeError as e:
        raise NirDeployError(f"calling {spec} with the checkpoint's model_kwargs {kwargs} failed: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise NirDeployError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    missing, unexpected = _diff_keys(model.state_dict(), state)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
        raise NirDeployError(f"checkpoint {checkpoint} does not fit {spec}: {'; '.join(parts)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        msg = " ".join(str(e).split())
        raise NirDeployError(f"checkpoint {checkpoint} does not fit {spec}: {msg[:300]}") from None
    return model.eval(), extra


def _readout(spec: str, factory, in_checkpoint, given) -> Optional[str]:
    from toolchain.ir.metadata import READOUTS

    module = importlib.import_module(factory.__module__) if getattr(factory, "__module__", None) else None
    in_module = getattr(module, "readout", None) if module is not None else None
    for what, r in (("--readout", given), ("the checkpoint's readout", in_checkpoint),
                    (f"the module-level readout of {spec.split(':')[0]}", in_module)):  # fmt: skip
        if r is not None and r not in READOUTS:
            raise NirDeployError(f"{what} is {r!r}; choose one of {', '.join(READOUTS)}")
    if given is not None:
        return given
    if in_checkpoint is not None and in_module is not None and in_checkpoint != in_module:
        raise NirDeployError(
            f"the checkpoint says readout {in_checkpoint!r} but {spec.split(':')[0]} defines readout = {in_module!r}; "
            f"pass --readout to choose"
        )
    return in_checkpoint if in_checkpoint is not None else in_module


def _diff_keys(expected: Dict[str, Any], got: Dict[str, Any]):
    return sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
