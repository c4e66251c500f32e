"""``--json`` on every command: exactly one JSON object on stdout, everything else on stderr.

One mechanism for all commands (docs/records.md, "--json"):

* :func:`add_json_option` gives every subparser a ``--json`` flag (``build_parser`` calls it once,
  after every command module registered its parser);
* a command hands its result to :func:`emit` (``emit(args, {"output": path, ...})``): one line;
  a command that emits nothing still prints ``{"command", "exit_status"}``;
* :func:`json_mode` (used by ``main``) sends what the command prints (tables, ``wrote ...``
  lines, rich consoles, progress bars, Lava's own prints) to stderr while it runs, then prints
  ``{"command": NAME, "exit_status": N, **result}`` to stdout; an error the user can fix is also
  one object, ``{"command", "exit_status": 2, "error": "..."}`` (and its line on stderr).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
from typing import Any, Dict, Iterator

import numpy as np

JSON_HELP = "print one JSON object (the command's result) to stdout; everything else goes to stderr"


def add_json_option(sub) -> None:
    """``--json`` on every subparser of ``sub`` (an argparse subparsers action) that lacks one."""
    for p in sub.choices.values():
        if "--json" not in p._option_string_actions:
            p.add_argument("--json", action="store_true", help=JSON_HELP)


def emit(args, result: Dict[str, Any]) -> None:
    """The command's result, printed as JSON by ``main`` when ``--json`` is given (else ignored)."""
    args._json_result = dict(result)


def jsonable(x):
    """numpy arrays and scalars, tuples, non-string keys, paths -> plain JSON values; NaN and
    infinities -> null."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None  # strict JSON has no NaN / Infinity
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def dumps(obj) -> str:
    return json.dumps(jsonable(obj), indent=1, allow_nan=False)


def parse_args(parser, argv):
    """``parser.parse_args(argv)``; with ``--json`` in ``argv`` a usage error is also one object,
    ``{"command", "exit_status": 2, "error": argparse's message}`` (the usage stays on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--json" not in argv:
        return parser.parse_args(argv)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return parser.parse_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            lines = buf.getvalue().strip().splitlines()
            command = next((a for a in argv if not a.startswith("-")), None)
            sys.stdout.write(dumps({"command": command, "exit_status": e.code, "error": lines[-1] if lines else "usage"})
                             + "\n")  # fmt: skip
            sys.stdout.flush()
        raise
    finally:
        sys.stderr.write(buf.getvalue())


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """sys.stdout -> sys.stderr; and file descriptor 1 -> 2 when sys.stdout is the process's own
    stdout (so that C libraries and child processes cannot write to stdout either)."""
    fd_saved = None
    try:
        if sys.stdout is sys.__stdout__ and sys.stdout.fileno() == 1:
            sys.stdout.flush()
            fd_saved = os.dup(1)
            os.dup2(2, 1)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd_saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if fd_saved is not None:
            os.dup2(fd_saved, 1)
            os.close(fd_saved)


@contextlib.contextmanager
def json_mode(args) -> Iterator[Dict[str, Any]]:
    """Around a command run with ``--json``: its prints go to stderr; on leaving, the one JSON
    object goes to stdout. The caller sets ``state["exit_status"]`` (and ``state["error"]``)."""
    state: Dict[str, Any] = {"exit_status": 0}
    try:
        with _stdout_to_stderr():
            yield state
    finally:
        out = {"command": args.command, "exit_status": state["exit_status"]}
        if state.get("error"):
            out["error"] = state["error"]
        else:
            out.update({k: v for k, v in (getattr(args, "_json_result", None) or {}).items() if k not in out})
        sys.stdout.write(dumps(out) + "\n")
        sys.stdout.flush()
