"""User-facing errors.

Anything the user can fix (a bad file, an unsupported layer, a missing option) raises
:class:`NirDeployError`. The CLI prints its message as one line and exits with status 2;
anything else is a bug and keeps its traceback.
"""


class NirDeployError(Exception):
    """An error caused by the user's input, reported as one clear line."""


class UnsupportedNodeError(NirDeployError):
    """A NIR node type (or a configuration of one) that a pass or backend cannot handle."""
