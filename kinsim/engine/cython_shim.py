"""The names of Cython's pure Python mode that :mod:`kinsim.engine.lean` uses, for running it as Python where
Cython is not installed: the declarations change nothing (kinsim/engine/native.py)."""

from __future__ import annotations

compiled = False
double = float
Py_ssize_t = int


def locals(**declarations):  # noqa: A001 (Cython's name)
    """``@cython.locals(name=type, ...)``: C types for a function's locals where compiled; nothing here."""
    def keep(function):
        return function
    return keep
