"""Builds kinsim; compiles the lean engine with Cython where it can (kinsim/engine/native.py says how and why).

Everything else about the package is in pyproject.toml."""

import importlib.util
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
# (by its path: kinsim's own imports need what this install is about to install)
_spec = importlib.util.spec_from_file_location("kinsim_native", ROOT / "kinsim" / "engine" / "native.py")
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)

setup(ext_modules=native.extensions(Path("build", "cython")), cmdclass={"build_ext": native.build_ext_command()})
