"""Backends that run a NIR graph: the reference simulator (torch), Lava (float, fixed point)."""

from .result import SimResult  # noqa: F401
