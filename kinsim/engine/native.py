"""How the lean engine is compiled: the Cython options that ``setup.py`` builds with and the tests rebuild with.

:mod:`kinsim.engine.lean` is plain Python that declares C types in Cython's pure Python mode: its hot loops'
numbers (``@cython.locals``), and its replica as an extension type of C fields whose methods call each other
directly (``@cython.cclass``, ``@cython.ccall``). ``pip install`` compiles it with Cython where a C compiler is
at hand, and runs it as Python where not (the extension is optional; with ``KINSIM_PURE_PYTHON=1`` set at
install time it is not built). Both give the same bits (``tests/test_native.py``): the typed numbers are C
doubles and 64-bit integers taking the same operations in the same order as Python's floats and ints, with the
compiler told not to fuse a multiply and an add (``-ffp-contract=off``: a fused one rounds once where Python
rounds twice), and the rounding to a tick is still Python's ``round`` (half to even). Measured on 10^5 chat
requests on 8 replicas, alternated: 6.9-7.4 s as Python, 4.7-5.0 s compiled (docs/engine.md).

This module imports nothing of kinsim's (``setup.py`` loads it by its path, before kinsim's dependencies are
installed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: The modules compiled, as paths from the project's root.
COMPILED = ("kinsim/engine/lean.py",)
#: Cython's options: the annotations are documentation (``list[float]`` must not become a type check); the
#: declared C types are those of ``@cython.locals``.
DIRECTIVES = {"language_level": 3, "annotation_typing": False}
#: C compiler options where the compiler takes GCC's (GCC, Clang): no fused multiply-add, so each operation
#: rounds as Python's does.
GCC_FLAGS = ("-ffp-contract=off",)
#: Set (to anything but "" or "0") when installing: build no extension and run the lean engine as Python.
PURE_ENV = "KINSIM_PURE_PYTHON"


#: Seconds by which a module's source must be newer than its compiled build to count as edited since (an
#: install writes both within a moment, in either order).
STALE_AFTER_S = 2.0


def stale_build(extension: str | Path, source: str | Path) -> str:
    """Why the compiled ``extension`` does not run ``source`` (its ``.py``, edited since the build: an in-place
    or editable build whose edits would silently not run, the interpreter preferring the extension), or ``""``
    (no source beside it, or not newer than the build by :data:`STALE_AFTER_S`)."""
    extension, source = Path(extension), Path(source)
    try:
        edited = source.stat().st_mtime - extension.stat().st_mtime
    except OSError:
        return ""
    if edited <= STALE_AFTER_S:
        return ""
    return (f"{source} changed {edited:.0f} s after its compiled build {extension.name}, which is what runs: rebuild "
            f"it (pip install -e . or python setup.py build_ext --inplace) or delete it to run the source")


def wanted() -> bool:
    """Whether the install should compile (:data:`PURE_ENV` not set)."""
    return os.environ.get(PURE_ENV, "") in ("", "0")


def extensions(build_dir: Path | None = None) -> list:
    """The setuptools extensions of :data:`COMPILED` (paths from the working directory: the project's root,
    where setup.py runs), cythonized into ``build_dir``, each optional (a failed compile leaves the module as
    Python); [] where Cython is missing or :func:`wanted` says no."""
    if not wanted():
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        return []
    # (sources relative to the root, where setup.py runs, so that the C files lie in build_dir as in the tree)
    modules = cythonize([Extension(path[:-3].replace("/", "."), [path]) for path in COMPILED],
                        compiler_directives=DIRECTIVES, quiet=True,
                        build_dir=None if build_dir is None else str(build_dir))
    for module in modules:  # (set on cythonize's extensions: it does not carry the flag over)
        module.optional = True
    return modules


def compile_flags(compiler_type: str) -> list[str]:
    """Extra C options for a distutils compiler of ``compiler_type`` ("unix" is GCC's or Clang's; MSVC does
    not contract without being told)."""
    return list(GCC_FLAGS) if compiler_type == "unix" else []


def build_ext_command():
    """setuptools' ``build_ext`` with the C options of :func:`compile_flags` for the compiler it finds."""
    from setuptools.command.build_ext import build_ext

    class BuildExt(build_ext):
        def build_extension(self, ext) -> None:
            ext.extra_compile_args = [*ext.extra_compile_args, *compile_flags(self.compiler.compiler_type)]
            super().build_extension(ext)

    return BuildExt


def build_copy(module: Path, target: Path) -> Path:
    """Compile a copy of ``module`` (a ``.py`` file) in directory ``target`` with :data:`DIRECTIVES` and
    :func:`compile_flags`, as ``setup.py`` builds it; return the extension's path (imported under the module's
    last name). For tests that set the compiled and the Python module side by side."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    target.mkdir(parents=True, exist_ok=True)
    source = target / module.name
    shutil.copyfile(module, source)
    modules = cythonize([Extension(module.stem, [str(source)])], compiler_directives=DIRECTIVES, quiet=True)
    command = build_ext_command()(Distribution({"ext_modules": modules, "script_name": "setup.py"}))
    command.build_lib, command.build_temp = str(target), str(target / "temp")
    command.ensure_finalized()
    command.run()
    return Path(command.get_ext_fullpath(module.stem))

