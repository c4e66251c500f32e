"""Writing files so that a kill mid-write leaves the previous good file, and checking output
paths before a run starts.

Every artifact nirdeploy writes goes to a temporary file in the target's folder (a hidden
``.NAME.tmp-XXXX.EXT``, keeping the extension for writers that look at it: ``np.savez`` appends
``.npz``, ``savefig`` picks the format from it) and is renamed into place with :func:`os.replace`
once it is complete and flushed to disk. A process killed mid-write leaves the old file (and at
most a stray hidden temporary file) behind, never a truncated artifact under the real name.

:func:`check_output_path` / :func:`check_output_dir` are what the CLI calls before a command runs,
so that a bad ``-o`` is reported in one line before minutes of work, not after.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from typing import Iterable, Iterator, Optional

from toolchain.errors import NirDeployError

__all__ = ["atomic_write", "atomic_path", "check_output_path", "check_output_dir"]


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _target(path: str | os.PathLike) -> str:
    """The file that ends up written: symlinks are followed, so a link keeps pointing at the new file."""
    p = os.fspath(path)
    if not p:
        raise NirDeployError("an output path is empty")
    real = os.path.realpath(p)
    if os.path.exists(real) and not os.path.isfile(real):
        kind = "a directory" if os.path.isdir(real) else "not a regular file"
        raise NirDeployError(f"cannot write {p}: it is {kind}")
    return real


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, makedirs: bool = True) -> Iterator[str]:
    """Yield a temporary file name next to ``path`` for writers that take a file name (``nir.write``,
    ``h5py.File``, ``np.savez_compressed``, ``torch.save``, ``savefig``); when the block ends
    without an exception the file is synced and renamed onto ``path``, otherwise it is removed."""
    target = _target(path)
    d = os.path.dirname(target)
    base = os.path.basename(target)
    ext = os.path.splitext(base)[1]
    try:
        if makedirs:
            os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{base}.tmp-", suffix=ext)
    except OSError as e:
        raise NirDeployError(f"cannot write {os.fspath(path)}: {e.strerror or e}") from None
    os.close(fd)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) if os.path.exists(target) else _umask_mode()
        os.chmod(tmp, mode)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, makedirs: bool = True, **open_kwargs):
    """``with atomic_write(path, "w") as f: ...``: like ``open(path, mode)``, but the data goes to
    a temporary file that replaces ``path`` only once the block has finished."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_write writes a whole new file; mode {mode!r} is not a 'w' mode")
    with atomic_path(path, makedirs=makedirs) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def _nearest_existing(d: str) -> str:
    """The deepest existing ancestor of folder ``d`` (``d`` itself if it exists)."""
    while not os.path.exists(d):
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    return d


def _check_folder(d: str, shown: str, what: str) -> None:
    """The folder ``d`` (or the folders to be created under its nearest existing ancestor) can take files."""
    existing = _nearest_existing(d)
    if not os.path.isdir(existing):
        raise NirDeployError(f"cannot write {what} {shown}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".nirdeploy-probe-")
    except OSError as e:
        raise NirDeployError(f"cannot write {what} {shown}: cannot create files in {existing} ({e.strerror})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path: Optional[str | os.PathLike], what: str = "output", inputs: Iterable[Optional[str]] = ()) -> None:
    """Refuse, with one line, an output file that cannot be written: an empty name, a directory,
    an existing target that is not a regular file (``/dev/full``, a fifo), a parent that is a
    file, a folder where no file can be created, or the same file as one of ``inputs``."""
    if path is None:
        return
    p = os.fspath(path)
    if not p:
        raise NirDeployError(f"the {what} path is empty")
    if p.endswith(os.sep) or os.path.isdir(p):
        raise NirDeployError(f"cannot write {what} {p}: it names a directory; give a file name")
    real = os.path.realpath(p)
    if os.path.exists(real) and not os.path.isfile(real):
        raise NirDeployError(f"cannot write {what} {p}: it is not a regular file (a device, fifo or socket)")
    for src in inputs:
        if src and _same_file(p, os.fspath(src)):
            raise NirDeployError(f"refusing to write {what} {p} over the input {src}; choose another output file")
    _check_folder(os.path.dirname(real), p, what)


def check_output_dir(path: Optional[str | os.PathLike], what: str = "output directory") -> None:
    """Refuse, with one line, an output folder that is an existing file or cannot take files."""
    if path is None:
        return
    p = os.fspath(path)
    if not p:
        raise NirDeployError(f"the {what} path is empty")
    real = os.path.realpath(p)
    if os.path.exists(real) and not os.path.isdir(real):
        raise NirDeployError(f"cannot write {what} {p}: it is a file, not a folder")
    _check_folder(real, p, what)
