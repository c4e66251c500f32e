"""Loading a trained model: ``--model package.module:factory --checkpoint file.pt``.

Checkpoints are read without running code from the file: a ``.pt``/``.pth`` file is first
inspected without torch (:func:`inspect_checkpoint`: a torch.save zip, no TorchScript members, only
allow-listed pickle globals; docs/security.md) and then read with ``torch.load(weights_only=True)``;
``.safetensors`` files are read with ``safetensors``. A checkpoint is
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
    from toolchain.ir.atomic import atomic_write

    with atomic_write(path, "wb") as f:  # a kill mid-write leaves the previous checkpoint
        torch.save({"state_dict": state, **info}, f)


#: the members ``torch.save`` (zip format, torch >= 1.6) writes under the archive's one root folder;
#: ``.data/serialization_id`` and ``byteorder`` are written by newer versions (2.x) only, and the
#: archive writer puts its version record at ``.data/version`` for format versions >= 6
_MEMBER = re.compile(r"data\.pkl|version|\.data/version|byteorder|\.data/serialization_id|data/[0-9]+")
#: what marks a TorchScript archive (``torch.jit.save``): torch.load hands these to torch.jit.load
_TORCHSCRIPT = re.compile(r"code/.*|constants\.pkl|attributes\.pkl|extra/.*|.*\.py|.*\.debug_pkl")
#: the globals a weights-only state dict pickle refers to: derived from the shipped checkpoints
#: (examples/zoo/*/checkpoint.pt, toolchain/demo_model/checkpoint.pt) and torch.save of a state
#: dict with parameters and buffers of every plain dtype
_STORAGES = ("Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
             "ComplexFloat", "ComplexDouble")  # fmt: skip
ALLOWED_GLOBALS = frozenset(
    ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "torch.Size"]
    + [f"torch.{s}Storage" for s in _STORAGES]
)


def inspect_checkpoint(path: str) -> None:
    """Refuse a ``.pt`` file that is anything but ``torch.save``'s zip archive of tensors and plain
    values, without handing it to torch: no TorchScript members, no legacy (non-zip) pickle, and a
    ``data.pkl`` whose globals are all in :data:`ALLOWED_GLOBALS` (docs/security.md)."""
    import pickletools
    import zipfile

    resave = "save model.state_dict() with torch.save or a safetensors file instead"
    with open(path, "rb") as f:
        magic = f.read(4)
    # torch decides by the first bytes, zipfile by the end: a file must pass both to be read as a zip
    if magic != b"PK\x03\x04" or not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read()
        what = "not a torch.save zip archive"
        if head[:1] == b"\x80":
            bad = _first_refused_global(head, path, pickletools)
            what = "a legacy (pre-torch-1.6) or plain pickle" + (f" that references {bad}" if bad else "")
        raise NirDeployError(f"refusing to load {path}: it is {what}; nirdeploy reads only torch.save's zip format "
                             f"(torch >= 1.6) and .safetensors; {resave}")  # fmt: skip
    try:
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist()]
            roots = {n.split("/", 1)[0] for n in names}
            if len(roots) != 1 or any("/" not in n for n in names):
                raise NirDeployError(f"refusing to load {path}: a torch.save archive has one root folder, this one has "
                                     f"{', '.join(sorted(roots))}")  # fmt: skip
            root = roots.pop()
            rel = [n[len(root) + 1:] for n in names]
            script = [r for r in rel if _TORCHSCRIPT.fullmatch(r)]
            if script:
                raise NirDeployError(
                    f"refusing to load {path}: it is a TorchScript archive (it holds {root}/{script[0]}), and loading "
                    f"one runs its code even with torch.load(weights_only=True) in torch < 2.6 (CVE-2025-32434); {resave}"
                )
            other = [r for r in rel if not _MEMBER.fullmatch(r)]
            if other:
                raise NirDeployError(f"refusing to load {path}: {root}/{other[0]} is not part of a torch.save "
                                     f"checkpoint; {resave}")  # fmt: skip
            if "data.pkl" not in rel:
                raise NirDeployError(f"refusing to load {path}: the archive has no {root}/data.pkl; {resave}")
            data = z.read(f"{root}/data.pkl")
    except zipfile.BadZipFile as e:
        raise NirDeployError(f"cannot read checkpoint {path}: {e}") from None
    for name in _pickle_globals(data, path, pickletools):
        if name not in ALLOWED_GLOBALS:
            raise NirDeployError(
                f"refusing to load {path}: its data.pkl references {name}, which a weights-only checkpoint does not "
                f"need (loading it could run code; nirdeploy reads weights only, torch.load(weights_only=True)); {resave}"
            )


def _first_refused_global(head: bytes, path: str, pickletools) -> Optional[str]:
    """The first global outside the allow-list in the (up to 4) pickles at the start of ``head``, for the message."""
    import io

    stream = io.BytesIO(head)
    try:
        for _ in range(4):
            if stream.tell() >= len(head):
                break
            for name in _pickle_globals(stream, path, pickletools):
                if name not in ALLOWED_GLOBALS:
                    return name
    except NirDeployError:
        pass
    return None


_STRING_OPS = ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING")
_MEMO_OPS = ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT")


def _pickle_globals(data: bytes, path: str, pickletools):
    """Every global (``module.name``) the pickle ``data`` imports, read from its opcodes, never executed.

    ``GLOBAL``/``INST`` name theirs; ``STACK_GLOBAL`` (protocol 4+) is read only when its module and
    name are the two string literals pushed just before it, anything else is refused."""
    recent = []  # the last two opcodes that are not memo stores
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                yield str(arg).replace(" ", ".", 1)
            elif op.name == "STACK_GLOBAL":
                if len(recent) < 2 or not all(name in _STRING_OPS for name, _ in recent):
                    raise NirDeployError(f"refusing to load {path}: its data.pkl builds a global from values that "
                                         f"cannot be read without running it")  # fmt: skip
                yield f"{recent[0][1]}.{recent[1][1]}"
            elif op.name in ("EXT1", "EXT2", "EXT4"):
                raise NirDeployError(f"refusing to load {path}: its data.pkl imports through the pickle extension registry")
            if op.name not in _MEMO_OPS:
                recent = (recent + [(op.name, arg)])[-2:]
    except (ValueError, EOFError) as e:
        raise NirDeployError(f"cannot read checkpoint {path}: data.pkl is not a valid pickle ({e})") from None


def load_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """(state_dict, extra) from a checkpoint file, never executing code stored in it."""
    path = os.fspath(path)  # str or os.PathLike
    if not os.path.exists(path):
        raise NirDeployError(f"cannot read checkpoint {path}: no such file")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file

            return load_file(path), {}
        except Exception as e:
            raise NirDeployError(f"cannot read safetensors checkpoint {path}: {str(e).splitlines()[0]}") from None
    inspect_checkpoint(path)  # before torch sees the file: torch 2.3's weights_only can still run TorchScript
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
        state = obj["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise NirDeployError(f"{path}: 'state_dict' must map parameter names to tensors")
        _check_extra(path, extra)
        return state, extra
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    if isinstance(obj, dict) and not obj:
        raise NirDeployError(f"{path} holds an empty dict: no weights")
    raise NirDeployError(f"{path} holds a {type(obj).__name__}, not a state dict")


def _check_extra(path: str, extra: Dict[str, Any]) -> None:
    """The checkpoint contract's optional entries (docs/api.md), type by type."""
    kw = extra.get("model_kwargs")
    if kw is not None and (not isinstance(kw, dict) or not all(isinstance(k, str) for k in kw)):
        raise NirDeployError(f"{path}: model_kwargs must be a dict of keyword arguments, got {type(kw).__name__} {kw!r:.40}")
    dt = extra.get("dt")
    if dt is not None and (isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0 or dt == float("inf")):
        raise NirDeployError(f"{path}: dt must be a positive number of seconds, got {dt!r:.40}")
    shape = extra.get("input_shape")
    if shape is not None and (
        not isinstance(shape, (list, tuple)) or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):  # fmt: skip
        raise NirDeployError(f"{path}: input_shape must be a list of positive integers, got {shape!r:.40}")


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
