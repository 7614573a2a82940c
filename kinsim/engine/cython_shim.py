"""The names of Cython's pure Python mode that :mod:`kinsim.engine.lean` uses, for running it as Python where
Cython is not installed: the declarations change nothing (kinsim/engine/native.py)."""

from __future__ import annotations

compiled = False
double = float
Py_ssize_t = int
bint = bool


def ccall(function):
    """``@cython.ccall``: a method C calls directly where compiled (and Python still can); the function here."""
    return function


def final(cls):
    """``@cython.final``: an extension type no class derives from where compiled; the class here."""
    return cls


def cclass(cls):
    """``@cython.cclass``: an extension type where compiled; the class as it is here."""
    return cls


def declare(kind=None, value=None, **options):
    """``cython.declare(type, ...)``: a typed field or variable where compiled; its ``value`` (None) here."""
    return value


def locals(**declarations):  # noqa: A001 (Cython's name)
    """``@cython.locals(name=type, ...)``: C types for a function's locals where compiled; nothing here."""
    def keep(function):
        return function
    return keep
