"""The program layer: a graph lowered at one discretization (``lower``) and the interpreter that
runs it (``toolchain.program.interpreter``)."""

from toolchain.program.lower import Op, Program, lower

__all__ = ["Op", "Program", "lower"]
