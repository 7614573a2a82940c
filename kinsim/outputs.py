"""The output files of one command, written all or none.

Every command that writes files does it through one :class:`Outputs`, in three steps:

1. **Register and check, before any work.** ``outputs.file("--json", args.json)`` (or ``.directory`` for a
   folder of files) checks that the output can be written: a file's folder exists and is a folder, the path
   is not itself a folder, a figure's suffix names a format, no two options name one path, and a probe file
   can be created where the temporary will go. A folder output may sit under folders that do not exist yet
   (they are made when it is written). A problem is a :class:`~kinsim.errors.SpecError` naming the path and
   the option (``f/out.json: --json: is under a file, not a directory``), before any simulation runs.
2. **Produce each output into a temporary next to its target** (``outputs.write("--json", produce)``,
   ``write_text``, ``write_figure``): a file ``.NAME.XXXXXXXX.tmp`` or a folder ``.NAME.XXXXXXXX`` in the
   same folder, so the last step is a rename within one file system. A target that exists and is not a
   regular file (``/dev/null``, a FIFO), or any path under ``/dev`` or ``/proc`` (``/dev/stdout``), is not
   renamed over: its content is produced into a temporary file of the system's temp folder and appended to
   it at the end (as a shell's ``>>`` would).
3. **Commit when every output is produced** (on leaving the ``with`` block without an error): first the
   copies into special files (the step that can still fail for lack of space, as ``/dev/full`` does), then
   the renames. On any error before that, or an interruption, every temporary (and every folder made for a
   folder output) is removed, so none of the command's outputs is left behind, and any earlier file at a
   target is untouched.

A rename, the last and cheapest step, fails only when the file system changes under the command (turned
read-only, a folder put in the target's place). Then the outputs already renamed that did not exist before
are removed again, the rest of the temporaries too, and the error names the output whose rename failed; an
output that replaced an earlier file keeps its new content (the old one is gone). A copy into a special file
that fails after another special file was written cannot be taken back either.

An ``OSError`` while producing or committing an output becomes one line naming the path, the option and the
reason the system gave: ``/dev/full: --trace: cannot be written (No space left on device)``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.files import FIGURE_FORMATS, write_figure


@dataclass
class _Target:
    """One registered output."""

    option: str
    value: str  # as given on the command line, for messages
    path: Path  # where it ends up (a symlink's target for a regular file behind a link)
    directory: bool
    special: bool = False  # exists and is not a regular file: copied into, not renamed over
    tmp: Path | None = None
    made: list[Path] = field(default_factory=list)  # folders made for it, outermost first


def cannot_write(option: str, value: str | Path, error: OSError) -> SpecError:
    """The one-line error for an output the system refused to write."""
    reason = error.strerror or str(error) or type(error).__name__
    return SpecError(f"cannot be written ({reason})", path=option, file=str(value))


def _random_name(path: Path, suffix: str) -> Path:
    """``.NAME.XXXXXXXX<suffix>`` next to ``path`` (NAME cut short so that a name the file system takes for the
    target is taken for its temporary too)."""
    return path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}{suffix}")


def _new_file(path: Path) -> Path:
    """Create an empty temporary file next to ``path`` (mode as ``open`` gives, under the umask)."""
    while True:
        tmp = _random_name(path, ".tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def _new_directory(path: Path) -> Path:
    """Create an empty temporary folder next to ``path`` (mode as ``mkdir`` gives, under the umask)."""
    while True:
        tmp = _random_name(path, "")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _remove(path: Path) -> None:
    """Remove a file or folder tree, ignoring what is already gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


class Outputs:
    """The outputs of one command: registered and checked first, produced into temporaries, committed
    together at the end (see the module's docstring). Use as a context manager::

        with Outputs() as outputs:
            json_path = outputs.file("--json", args.json)
            ...                                  # the work
            if json_path is not None:
                outputs.write_text("--json", text)
        # all outputs are in place here
    """

    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}

    # -- registering ------------------------------------------------------------------------------------

    def file(self, option: str, value: str | Path | None, *, figure: bool = False) -> Path | None:
        """Register the output file of ``option`` (``None`` passes through) and check it can be written."""
        if value is None:
            return None
        return self._add(checked_file(option, value, figure=figure))

    def directory(self, option: str, value: str | Path | None) -> Path | None:
        """Register the output folder of ``option`` (``None`` passes through) and check it can be written;
        folders above it that do not exist are made when it is written."""
        if value is None:
            return None
        path = Path(value)
        if os.path.lexists(path) and not path.is_dir():
            raise SpecError("exists and is not a directory", path=option, file=str(value))
        ancestor = _nearest_existing(path.parent)
        if not ancestor.is_dir():
            raise SpecError("is under a file, not a directory", path=option, file=str(value))
        if ancestor == path.parent:
            _probe(option, value, lambda: _new_directory(path))
        else:
            _probe(option, value, lambda: _new_directory(ancestor / path.name))
        if path.is_dir():  # its files are moved into it at the end
            _probe(option, value, lambda: _new_file(path / "probe"))
        return self._add(_Target(option, str(value), path, directory=True))

    def _add(self, target: _Target) -> Path:
        for other in self._targets.values():
            if os.path.abspath(other.path) == os.path.abspath(target.path):
                raise SpecError(f"is also the path of {other.option}", path=target.option, file=target.value)
        if target.option in self._targets:
            raise ValueError(f"{target.option} registered twice")  # a bug in the command
        self._targets[target.option] = target
        return target.path

    # -- producing --------------------------------------------------------------------------------------

    def write(self, option: str, produce: Callable[[Path], Any]) -> Any:
        """Produce the output of ``option``: call ``produce`` with a temporary path (a file, or an empty folder
        for a folder output) that it fills; return what it returns. The output is in place once committed."""
        target = self._targets[option]
        if target.tmp is not None:
            raise ValueError(f"{option} written twice")  # a bug in the command
        try:
            if target.special:
                fd, name = tempfile.mkstemp(prefix=".kinsim-output.", suffix=".tmp")
                os.close(fd)
                target.tmp = Path(name)
            elif target.directory:
                self._make_parents(target)
                target.tmp = _new_directory(target.path)
            else:
                target.tmp = _new_file(target.path)
            return produce(target.tmp)
        except OSError as error:
            if not _ours(error.filename, target):
                raise  # about a file elsewhere (an input read while producing this output): not this output's
            raise cannot_write(option, target.value, error) from None

    def write_text(self, option: str, text: str) -> None:
        """Produce a text output (UTF-8)."""
        self.write(option, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def write_figure(self, option: str, figure: Any, dpi: int = 110) -> None:
        """Produce a matplotlib figure in the format its target's suffix names."""
        fmt = self._targets[option].path.suffix.lstrip(".").lower()
        self.write(option, lambda tmp: write_figure(figure, tmp, fmt, dpi=dpi))

    @staticmethod
    def _make_parents(target: _Target) -> None:
        missing = []
        folder = target.path.parent
        while not os.path.lexists(folder) and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir()
            target.made.append(folder)

    # -- committing -------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Move every produced output into place: copies into special files first, then renames. On an
        error the outputs renamed that did not exist before are removed again (see the module's docstring)."""
        produced = [t for t in self._targets.values() if t.tmp is not None]
        placed: list[Path] = []
        try:
            for target in (t for t in produced if t.special):
                try:
                    with open(target.tmp, "rb") as source, open(target.path, "ab") as sink:
                        shutil.copyfileobj(source, sink)
                except OSError as error:
                    raise cannot_write(target.option, target.value, error) from None
            for target in (t for t in produced if not t.special):
                try:
                    placed += self._rename(target)
                except OSError as error:
                    for path in reversed(placed):
                        _remove(path)
                    raise cannot_write(target.option, target.value, error) from None
            for target in produced:
                target.made.clear()  # the folders made now hold outputs
        finally:
            self.discard()

    @staticmethod
    def _rename(target: _Target) -> list[Path]:
        """Rename a produced output into place; returns the paths it created (for an undo)."""
        if target.tmp is None:
            return []
        if not target.directory:
            existed = os.path.lexists(target.path)
            os.replace(target.tmp, target.path)
            return [] if existed else [target.path]
        if not os.path.lexists(target.path):
            os.rename(target.tmp, target.path)
            return [target.path]
        placed = []
        for item in sorted(target.tmp.iterdir()):
            destination = target.path / item.name
            existed = os.path.lexists(destination)
            os.replace(item, destination)
            if not existed:
                placed.append(destination)
        return placed

    def discard(self) -> None:
        """Remove every temporary not yet moved into place, and the folders made for outputs not committed."""
        for target in self._targets.values():
            if target.tmp is not None:
                _remove(target.tmp)
                target.tmp = None
            for folder in reversed(target.made):
                try:
                    folder.rmdir()
                except OSError:
                    break
            target.made.clear()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def _ours(filename: str | bytes | int | None, target: _Target) -> bool:
    """Whether an OSError's file name is about ``target``: none (a write to an open file), the temporary or
    a file in it, or a file in the target's folder (a temporary of a producer's own)."""
    if filename is None:
        return True
    if not isinstance(filename, (str, bytes)):
        return False
    name = os.path.abspath(os.fsdecode(filename))
    if target.tmp is not None:
        tmp = os.path.abspath(target.tmp)
        if name == tmp or name.startswith(tmp + os.sep):
            return True
    return os.path.dirname(name) == os.path.abspath(target.path.parent)


def checked_file(option: str, value: str | Path, *, figure: bool = False, special: bool = True) -> _Target:
    """Check that the output file ``value`` of ``option`` can be written (see :meth:`Outputs.file`);
    ``special=False`` refuses a target that exists and is not a regular file (``/dev/full``, a FIFO)."""
    path = Path(value)
    if figure and path.suffix.lstrip(".").lower() not in FIGURE_FORMATS:
        raise SpecError("a figure's suffix must be one of ." + ", .".join(FIGURE_FORMATS), path=option,
                        file=str(value))
    try:
        mode: int | None = os.stat(path).st_mode  # follows links
    except (FileNotFoundError, NotADirectoryError):  # absent, or under a file (told below)
        mode = None
    except OSError as error:  # a link loop, a name too long
        raise cannot_write(option, value, error) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise SpecError("is a directory, expected a file path", path=option, file=str(value))
    if (mode is not None and not stat.S_ISREG(mode)) or _system_path(path):
        if not special:
            raise SpecError("is not a regular file", path=option, file=str(value))
        if mode is not None and not os.access(path, os.W_OK):
            raise SpecError("cannot be written (Permission denied)", path=option, file=str(value))
        return _Target(option, str(value), path, directory=False, special=True)
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    parent = real.parent
    if not parent.is_dir():
        ancestor = _nearest_existing(parent)
        if os.path.lexists(ancestor) and not ancestor.is_dir():
            raise SpecError("is under a file, not a directory", path=option, file=str(value))
        raise SpecError("directory does not exist", path=option, file=str(value))
    _probe(option, value, lambda: _new_file(real))
    return _Target(option, str(value), real, directory=False)


def _system_path(path: Path) -> bool:
    """Whether ``path`` names a device or a process's file (``/dev/stdout``, ``/proc/self/fd/1``): written into,
    never renamed over, whatever it resolves to."""
    return os.path.abspath(path).startswith(("/dev/", "/proc/"))


def _probe(option: str, value: str | Path, make: Callable[[], Path]) -> None:
    """Create (and remove) a temporary where the output's temporary will go."""
    try:
        probe = make()
    except OSError as error:
        raise cannot_write(option, value, error) from None
    _remove(probe)
