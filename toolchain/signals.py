"""Termination signals and child processes that die with their parent.

* :class:`Terminated` is raised in the main thread when SIGTERM or SIGHUP arrives inside
  :func:`raise_on_termination`; it subclasses :class:`KeyboardInterrupt`, so every cleanup path
  written for Ctrl-C (stopping the Lava runtime, cancelling a sweep's cells) runs for it too. The
  CLI exits with ``128 + signum`` (143 for SIGTERM, 129 for SIGHUP).
* :func:`die_with_parent` makes the calling (freshly forked) process receive SIGKILL when its
  parent goes away (Linux ``prctl(PR_SET_PDEATHSIG)``), also after a SIGKILL of the parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator, Optional

#: signals turned into :class:`Terminated` (SIGINT stays Python's KeyboardInterrupt)
TERMINATING = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Terminated(KeyboardInterrupt):
    """The process was asked to end (SIGTERM, SIGHUP); ``signum`` says by which signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:  # pragma: no cover
            return str(self.signum)


def exit_code_of(exc: BaseException) -> int:
    """128 + signum for :class:`Terminated`, 130 for any other KeyboardInterrupt (SIGINT)."""
    return exc.exit_code if isinstance(exc, Terminated) else 128 + int(signal.SIGINT)


@contextlib.contextmanager
def raise_on_termination() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    Only signals whose handler is the default one are taken over: a handler the application
    installed, or an ignored SIGHUP (``nohup``), stays as it is. The first signal raises; later
    ones during the cleanup that follows are ignored so that the cleanup can finish. The previous
    handlers are restored on exit. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:
            return
        if _swallowing(frame):  # raised here, the exception would be printed and ignored: retry soon
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        fired.append(signum)
        raise Terminated(signum)

    prev_hook = sys.unraisablehook

    def unraisable(u):  # a Terminated raised where Python swallows exceptions (any weakref callback,
        exc = u.exc_value  # __del__, ...): not printed, and the signal is delivered again soon
        if isinstance(exc, Terminated):
            fired.clear()
            threading.Timer(0.05, os.kill, (os.getpid(), exc.signum)).start()
            return
        prev_hook(u)

    old = {}
    try:
        sys.unraisablehook = unraisable
        for s in TERMINATING:
            if signal.getsignal(s) == signal.SIG_DFL:
                old[s] = signal.signal(s, handler)
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sys.unraisablehook = prev_hook


def _swallowing(frame) -> bool:
    """True inside a weakref callback of weakref.py / _weakrefset.py or a ``__del__``: Python prints
    and ignores exceptions raised there (``Exception ignored in ...``), so a Terminated raised there
    would be lost. Any other place that swallows it is caught by the ``sys.unraisablehook`` that
    :func:`raise_on_termination` installs."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or code.co_filename.endswith(("weakref.py", "_weakrefset.py")):
            return True
        frame = frame.f_back
    return False


_PR_SET_PDEATHSIG = 1
_libc = None


def load_libc() -> None:
    """Load libc for :func:`die_with_parent` now (in a parent, before it forks), without calling
    prctl: ``PR_SET_PDEATHSIG`` with 0 would clear a death signal set earlier (a sharded run's
    worker imports the Lava runtime after it asked to die with its parent)."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        except Exception:  # pragma: no cover - best effort
            pass


def die_with_parent(parent_pid: Optional[int] = None, sig: int = signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent (the *thread* that forked it)
    exits; if the parent ``parent_pid`` is already gone (it died before this ran), exit now.
    Returns False where prctl is not available (not Linux)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        ok = _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except Exception:  # pragma: no cover - best effort
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died between fork and prctl: nobody would stop this process
    return ok
