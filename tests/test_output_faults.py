"""Outputs that cannot be written: every output option of every command, under three faults.

Each fault leaves the command with exit 2, one line on stderr naming the option and the path, and none of
its outputs (nor a temporary) behind: (a) a path under a regular file, refused before any work; (b) a target
that is ``/dev/full`` (reached through a link with the output's name, so a figure's suffix passes), where
writes fail for lack of space; (c) an ``OSError`` injected while an output is half written. Then: the same
options all written at once are there with the bytes the library writes; the sweep database under SQLite
errors, foreign files and a full disk; and the commit step of :class:`kinsim.outputs.Outputs` itself.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import kinsim.outputs
from kinsim.cli import main
from kinsim.errors import SpecError
from kinsim.outputs import Outputs
from kinsim.runner import simulate

from .conftest import HARDWARE, WORKLOADS

H100 = str(HARDWARE / "h100.yaml")
WORKLOAD = str(WORKLOADS / "aime_bon32.yaml")
SMALL = {"requests.problems": 2, "requests.samples": 4, "requests.max_output_tokens": 300}
SMALL_ARGS = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
HAS_PYARROW = __import__("importlib.util").util.find_spec("pyarrow") is not None


@dataclass(frozen=True)
class Output:
    flag: str  # the option given on the command line
    name: str  # the file (or folder, ending in /) it writes, inside the test's output folder
    option: str = ""  # the option the error names, when not ``flag`` (regress --update writes --baseline)

    @property
    def named(self) -> str:
        return self.option or self.flag

    @property
    def directory(self) -> bool:
        return self.name.endswith("/")


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]  # "{in}" is the folder of the inputs
    outputs: tuple[Output, ...]


COMMANDS = {
    "run": Command(("run", WORKLOAD, "--hw", H100, *SMALL_ARGS, "--quiet"), (
        Output("--json", "run.json"), Output("--trace", "trace.json"), Output("--requests-csv", "requests.csv"),
        Output("--steps-csv", "steps.csv"), Output("--plots", "plots/"))),
    "report": Command(("report", "{in}/a.json"), (Output("--output", "report.html"),)),
    "compare": Command(("compare", "{in}/a.json", "{in}/b.json"), (
        Output("--json", "compare.json"), Output("--plot", "compare.svg"))),
    "sweep": Command(("sweep", "{in}/sweep.yaml", "--workers", "1", "--quiet"), (
        Output("--csv", "sweep.csv"), *((Output("--parquet", "sweep.parquet"),) if HAS_PYARROW else ()),
        Output("--plot", "sweep.png"), Output("--db", "sweep.sqlite"))),
    "regress-update": Command(("regress", "{in}/suite.yaml", "--update"), (
        Output("--baseline", "baseline.json", option="--update"),)),
    "regress": Command(("regress", "{in}/suite.yaml", "--baseline", "{in}/suite.baseline.json"), (
        Output("--junit", "junit.xml"), Output("--markdown", "report.md"))),
    "calibrate-measure": Command(("calibrate", "measure", "--cpu-smoke"), (Output("--out", "measured/"),)),
    **({"calibrate-import": Command(("calibrate", "import", "aiconfigurator", "--data", "{in}/aic", "--system",
                                     "fake_sxm"), (Output("--out", "imported/"),))} if HAS_PYARROW else {}),
    "calibrate-fit": Command(("calibrate", "fit", "{in}/measured", "--hw", H100), (
        Output("--output", "profile.yaml"),)),
    "calibrate-validate": Command(("calibrate", "validate", "{in}/measured", "--hw", H100), (
        Output("--csv", "validation.csv"), Output("--plot", "validation.pdf"))),
    "info": Command(("info", "{in}/mooncake.jsonl"), (Output("--plot", "trace.png"),)),
    "frontier": Command(("frontier", "{in}/samples.jsonl", "--cost", "eflops"), (
        Output("--csv", "frontier.csv"), Output("--json", "frontier.json"), Output("--plot", "frontier.png"))),
}

CASES = [pytest.param(name, output, id=f"{name}{output.flag}") for name, command in COMMANDS.items()
         for output in command.outputs]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Every input the commands read, made once: two small runs, a one-point sweep, a one-case suite with its
    baseline, synthetic measurements, fake aiconfigurator tables, a Mooncake trace, a scored-sample file."""
    from .test_calibration import write_measurements
    from .test_trace_formats import FILES

    folder = tmp_path_factory.mktemp("inputs")
    for name, seqs in (("a", 16), ("b", 64)):
        summary = simulate(WORKLOAD, H100, {**SMALL, "deployment.max_num_seqs": seqs}).to_dict()
        (folder / f"{name}.json").write_text(json.dumps(summary))
    overrides = "{" + ", ".join(f"{k}: {v}" for k, v in SMALL.items()) + "}"
    (folder / "sweep.yaml").write_text(f"name: faults\nworkload: {WORKLOAD}\nhardware: {H100}\n"
                                       f"overrides: {overrides}\naxes:\n  deployment.max_num_seqs: [16]\n")
    (folder / "suite.yaml").write_text(f"name: faults\nmetrics:\n  throughput.tasks_per_s: 0.001\ncases:\n"
                                       f"  small:\n    workload: {WORKLOAD}\n    hardware: {H100}\n"
                                       f"    overrides: {overrides}\n")
    assert main(["regress", str(folder / "suite.yaml"), "--update"]) == 0
    write_measurements(folder / "measured")
    if HAS_PYARROW:
        from .test_aiconfigurator import write_tables

        write_tables(folder / "aic")
    (folder / "mooncake.jsonl").write_text(FILES["mooncake.jsonl"], encoding="utf-8")
    (folder / "samples.jsonl").write_text("".join(
        json.dumps({"model": "Qwen3-0.6B", "attention": "dense", "problem": 1, "sample": s, "prompt_tokens": 10,
                    "output_tokens": 100, "correct": s}) + "\n" for s in (0, 1)), encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch, request) -> Path:
    """A system temp folder of the test's own (to see that no temporary is left there); a fake torch and
    Triton with a measuring harness that writes what the real one writes (no GPU, no torch needed); and,
    unless a test asks for ``real_figures``, figures and HTML reports that cost nothing to draw (the tests
    are about where outputs go, not what they show: the tests of each command check their content)."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    for module in ("torch", "triton"):
        monkeypatch.setitem(sys.modules, module, types.ModuleType(module))
    import kinsim.calibration.measure

    def fake_measure(out: Path, quick: bool, cpu_smoke: bool, log=print) -> Path:
        (out / "measurements.csv").write_text("kernel,impl,dtype,flops,bytes,time_s\ngemm,triton,bf16,1,1,1e-6\n")
        (out / "metadata.json").write_text('{"device": "fake"}\n')
        return out / "measurements.csv"

    monkeypatch.setattr(kinsim.calibration.measure, "run", fake_measure)
    if "real_figures" not in request.fixturenames:  # the costly renderers, out of the way
        import kinsim.report.html
        import kinsim.report.plots

        def figure_bytes(figure, path, fmt="png", dpi=110):
            Path(path).write_bytes(f"a {fmt} figure".encode())
            return Path(path)

        monkeypatch.setattr(kinsim.outputs, "write_figure", figure_bytes)
        monkeypatch.setattr(kinsim.report.plots, "save_figure", figure_bytes)
        monkeypatch.setattr(kinsim.report.html, "render_report", lambda run: "<html>a report</html>\n")
    return system_tmp


def command_line(name: str, inputs: Path, out: Path, paths: dict[str, str], only: str | None = None) -> list[str]:
    """The argv of command ``name`` writing every output into ``out``, or where ``paths`` (by flag) says;
    with ``only``, that output, one other (to see that it is not left behind) and the sweep's results file."""
    command = COMMANDS[name]
    argv = [arg.replace("{in}", str(inputs)) for arg in command.argv]
    outputs = command.outputs
    if only is not None:
        others = [o for o in outputs if o.flag not in (only, "--db")]
        outputs = [o for o in outputs if o.flag in (only, "--db")] + others[:1]
    for output in outputs:
        argv += [output.flag, paths.get(output.flag, str(out / output.name.rstrip("/")))]
    return argv


def left_behind(out: Path, name: str, fault: Output) -> list[str]:
    """What a refused command left in ``out``: nothing, but for the sweep's results file, which keeps the points
    simulated before an export failed (a rerun reads them instead of simulating again)."""
    names = sorted(p.name for p in out.iterdir())
    if name == "sweep" and fault.flag != "--db" and "sweep.sqlite" in names:
        with sqlite3.connect(out / "sweep.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM points WHERE status = 'ok'").fetchone()[0] == 1
        names.remove("sweep.sqlite")
    return names


def refused(capsys, code: int, output: Output, path: str) -> str:
    """Assert exit 2 and one error line on stderr that names the path and the option (after progress lines of
    calibrate import, indented); return the line."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("  ")]
    assert len(lines) == 1 and err.endswith("\n") and "Traceback" not in err, err
    assert lines[0].startswith(f"kinsim: error: {path}: {output.named}: "), err
    return lines[0]


# ------------------------------------------------------------------------------ (a) under a regular file

@pytest.mark.parametrize("name, output", CASES)
def test_an_output_under_a_regular_file_is_refused_before_any_work(name, output, inputs, tmp_path, capsys,
                                                                    monkeypatch):
    import kinsim.runner

    def must_not_run(*_, **__):
        raise AssertionError("simulated before checking the outputs")

    monkeypatch.setattr(kinsim.runner, "simulate", must_not_run)
    out = tmp_path / "out"
    out.mkdir()
    (out / "f").write_text("a file\n")
    bad = str(out / "f" / output.name.rstrip("/"))
    code = main(command_line(name, inputs, out, {output.flag: bad}))
    err = refused(capsys, code, output, bad)
    assert "is under a file, not a directory" in err
    assert sorted(p.name for p in out.iterdir()) == ["f"]  # no other output, no temporary


# ------------------------------------------------------------------------------ (b) a full device

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
# not the sweep's results file: SQLite would follow the link and leave a journal in /dev were the file not
# refused; its full disk is the injected "database or disk is full" of (c)
@pytest.mark.parametrize("name, output", [case for case in CASES if case.values[1].flag != "--db"])
def test_an_output_on_a_full_device_leaves_no_output(name, output, inputs, tmp_path, capsys, isolated):
    out = tmp_path / "out"
    out.mkdir()
    full = out / output.name.rstrip("/")
    full.symlink_to("/dev/full")
    code = main(command_line(name, inputs, out, {output.flag: str(full)}, only=output.flag))
    err = refused(capsys, code, output, str(full))
    if output.directory:
        assert "exists and is not a directory" in err
    else:  # the whole command ran; its last step found no space
        assert "cannot be written (No space left on device)" in err
    assert left_behind(out, name, output) == [full.name] and os.readlink(full) == "/dev/full"
    assert list(isolated.iterdir()) == []


# ------------------------------------------------------------------------------ (c) a fault mid-write

@pytest.mark.parametrize("name, output", CASES)
def test_an_error_while_an_output_is_half_written_leaves_no_output(name, output, inputs, tmp_path, capsys,
                                                                    monkeypatch, isolated):
    out = tmp_path / "out"
    out.mkdir()
    if output.flag == "--db":  # the results file: SQLite reports the full disk on the first point stored
        full_disk_on_insert(monkeypatch, after=0)
        reason = "cannot be used (database or disk is full)"
    else:
        half_written(monkeypatch, output.named)
        reason = "cannot be written (No space left on device)"
    code = main(command_line(name, inputs, out, {}, only=output.flag))
    err = refused(capsys, code, output, str(out / output.name.rstrip("/")))
    assert reason in err
    assert left_behind(out, name, output) == [] and list(isolated.iterdir()) == []


def half_written(monkeypatch, option: str) -> None:
    """Make the output of ``option`` fail for lack of space once half of it is written."""
    write = Outputs.write

    def failing(self, flag, produce):
        if flag != option:
            return write(self, flag, produce)

        def half(tmp: Path):
            produce(tmp)
            files = [p for p in ([tmp] if tmp.is_file() else tmp.rglob("*")) if p.is_file()]
            assert files, "nothing was written"
            files[0].write_bytes(files[0].read_bytes()[: files[0].stat().st_size // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return write(self, flag, half)

    monkeypatch.setattr(Outputs, "write", failing)


class _FullDisk:
    """An SQLite connection whose inserts of points fail, as on a full disk, after ``after`` of them (a
    sweep's claims on points, small rows made before each point runs, are let through)."""

    def __init__(self, db: sqlite3.Connection, after: int) -> None:
        self.db, self.left = db, after

    def execute(self, sql: str, *args):
        if sql.startswith("INSERT") and "INTO points" in sql:
            if self.left == 0:
                raise sqlite3.OperationalError("database or disk is full")
            self.left -= 1
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.db, name)


def full_disk_on_insert(monkeypatch, after: int) -> None:
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: _FullDisk(connect(*args, **kwargs), after))


# ------------------------------------------------------------------------------ no change when all succeed

@pytest.fixture
def real_figures() -> None:
    """Asked for by a test that draws its figures for real (see :func:`isolated`)."""


def test_every_output_of_a_run_is_written_with_the_bytes_the_library_writes(tmp_path, capsys, real_figures):
    from kinsim.files import save_figure, write_text_atomically
    from kinsim.report.plots import PLOTTERS
    from kinsim.report.trace import write_trace

    out = tmp_path / "out"
    out.mkdir()
    assert main(command_line("run", Path("."), out, {})) == 0
    result = simulate(WORKLOAD, H100, SMALL, records="full")
    summary = result.to_dict()
    written = json.loads((out / "run.json").read_text())
    summary["wall_time_s"] = written["wall_time_s"]  # the one figure that is not the simulation's
    library = tmp_path / "library"
    (library / "plots").mkdir(parents=True)
    write_text_atomically(library / "run.json", json.dumps(summary, indent=2) + "\n")
    write_trace(library / "trace.json", result.records, summary)
    result.requests.to_csv(library / "requests.csv", index=False)
    result.steps.to_csv(library / "steps.csv", index=False)
    figure = PLOTTERS["breakdown"](summary)  # one plot of the four, to keep the test short
    for fmt in ("png", "svg"):  # one figure drawn in both formats, in this order, as write_plots does
        save_figure(figure, library / "plots" / f"breakdown.{fmt}")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        ["run.json", "trace.json", "requests.csv", "steps.csv", "plots",
         *(f"plots/{name}.{fmt}" for name in PLOTTERS for fmt in ("png", "svg"))])  # and nothing else
    for path in library.rglob("*"):
        if path.is_file():
            name = path.relative_to(library).as_posix()
            assert (out / name).read_bytes() == path.read_bytes(), name
    mode = 0o666 & ~_umask()
    assert (out / "run.json").stat().st_mode & 0o777 == mode  # as open() makes a file, not 0600
    assert (out / "plots").stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"run"}))  # run: the test above
def test_every_output_of_each_command_is_written(name, inputs, tmp_path, capsys, isolated):
    out = tmp_path / "out"
    out.mkdir()
    assert main(command_line(name, inputs, out, {})) in (0, 1), capsys.readouterr().err  # 1: a failed check
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(o.name.rstrip("/") for o in COMMANDS[name].outputs)
    for output in COMMANDS[name].outputs:
        path = out / output.name.rstrip("/")
        assert (path.is_dir() and any(path.iterdir())) if output.directory else path.stat().st_size > 0
    assert list(isolated.iterdir()) == []


def test_a_special_file_is_written_into_not_replaced(inputs, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that the writer does not wait
    try:
        assert main(["compare", str(inputs / "a.json"), str(inputs / "b.json"), "--json", str(fifo)]) == 0
        chunks = []
        while True:
            try:
                chunk = os.read(reader, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(reader)
    assert json.loads(b"".join(chunks))["runs"] == ["a", "b"]  # the JSON went through the pipe
    assert fifo.is_fifo()  # and the pipe is still a pipe


# ------------------------------------------------------------------------------ sweep: refusals up front

def test_a_sweep_without_pyarrow_refuses_parquet_before_running_or_writing_anything(inputs, tmp_path, capsys,
                                                                                      monkeypatch):
    import kinsim.sweep.execute

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError

    def must_not_run(*_, **__):
        raise AssertionError("ran points before refusing --parquet")

    monkeypatch.setattr(kinsim.sweep.execute, "run_sweep", must_not_run)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["sweep", str(inputs / "sweep.yaml"), "--db", str(out / "s.sqlite"), "--csv", str(out / "s.csv"),
                 "--parquet", str(out / "s.parquet")])
    err = refused(capsys, code, Output("--parquet", ""), str(out / "s.parquet"))
    assert "needs pyarrow" in err
    assert list(out.iterdir()) == []


def test_two_options_on_one_path_are_refused(inputs, tmp_path, capsys):
    same = str(tmp_path / "same.json")
    code = main(["run", WORKLOAD, "--hw", H100, *SMALL_ARGS, "--json", same, "--trace", same])
    err = refused(capsys, code, Output("--trace", ""), same)
    assert "is also the path of --json" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "system-tmp"]


# ------------------------------------------------------------------------------ sweep: the results file

def sweep_file(folder: Path, values: str) -> Path:
    overrides = "{" + ", ".join(f"{k}: {v}" for k, v in SMALL.items()) + "}"
    path = folder / "sweep.yaml"
    path.write_text(f"name: faults\nworkload: {WORKLOAD}\nhardware: {H100}\noverrides: {overrides}\n"
                    f"axes:\n  deployment.max_num_seqs: [{values}]\n")
    return path


def test_a_full_disk_after_some_points_keeps_them_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    sweep = sweep_file(tmp_path, "16, 32, 64")
    db = tmp_path / "results.sqlite"
    full_disk_on_insert(monkeypatch, after=1)
    code = main(["sweep", str(sweep), "--db", str(db), "--workers", "1", "--csv", str(tmp_path / "s.csv")])
    refused(capsys, code, Output("--db", ""), str(db))
    assert not (tmp_path / "s.csv").exists()
    monkeypatch.undo()
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM points").fetchone()[0] == 1
    assert main(["sweep", str(sweep), "--db", str(db), "--workers", "1", "--quiet"]) == 0
    assert "3 points, 2 simulated now, 1 from results.sqlite, 0 failed" in capsys.readouterr().out


def test_a_sweep_that_crashes_before_storing_a_point_leaves_no_database(tmp_path, capsys, monkeypatch):
    import kinsim.sweep.execute

    def crash(*_, **__):
        raise RuntimeError("a bug")

    monkeypatch.setattr(kinsim.sweep.execute, "simulate_point", crash)
    db = tmp_path / "results.sqlite"
    assert main(["sweep", str(sweep_file(tmp_path, "16")), "--db", str(db), "--workers", "1"]) == 3
    assert "a bug" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml", "system-tmp"]


def _foreign_table(db: Path) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
        connection.execute("INSERT INTO users VALUES ('ada')")


def _missing_columns(db: Path) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE points (key TEXT PRIMARY KEY, status TEXT)")


def _garbage_row(db: Path) -> None:
    from kinsim.sweep.execute import resolve
    from kinsim.sweep.spec import load_sweep
    from kinsim.sweep.store import SCHEMA

    key = resolve(load_sweep(db.parent / "sweep.yaml"))[0].key
    with sqlite3.connect(db) as connection:
        connection.execute(SCHEMA)
        connection.execute("INSERT INTO points VALUES (?, 's', '{', 'ok', '', '{}', 'not json', 0.0, 'now')", (key,))


def _garbage_bytes(db: Path) -> None:
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)


@pytest.mark.parametrize("make, words", [
    (_foreign_table, "tables kinsim did not make: users"),
    (_missing_columns, "table points has no column sweep, point, reason"),
    (_garbage_row, "not a kinsim results file (point "),
    (_garbage_bytes, "not a kinsim results file ("),
])
def test_a_results_file_kinsim_did_not_write_is_refused_and_left_as_it_was(make, words, tmp_path, capsys):
    sweep = sweep_file(tmp_path, "16")
    db = tmp_path / "results.sqlite"
    make(db)
    before = db.read_bytes()
    code = main(["sweep", str(sweep), "--db", str(db), "--workers", "1", "--csv", str(tmp_path / "s.csv")])
    err = refused(capsys, code, Output("--db", ""), str(db))
    assert words in err
    assert db.read_bytes() == before and not (tmp_path / "s.csv").exists()


def test_a_locked_results_file_is_one_line(tmp_path, capsys, monkeypatch):
    import kinsim.sweep.store

    monkeypatch.setattr(kinsim.sweep.store, "LOCK_TIMEOUT_S", 0.05)
    sweep = sweep_file(tmp_path, "16")
    db = tmp_path / "results.sqlite"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code = main(["sweep", str(sweep), "--db", str(db), "--workers", "1"])
    finally:
        holder.close()
    err = refused(capsys, code, Output("--db", ""), str(db))
    assert "database is locked" in err


# ------------------------------------------------------------------------------ the commit step

def test_a_failed_rename_takes_back_the_new_outputs_already_in_place(tmp_path, monkeypatch):
    (tmp_path / "old.txt").write_text("before\n")
    replace = os.replace

    def fail_on_c(source, target):
        if str(target).endswith("c.txt"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return replace(source, target)

    monkeypatch.setattr(kinsim.outputs.os, "replace", fail_on_c)
    with pytest.raises(SpecError, match=r"^/.*/c.txt: -c: cannot be written \(Read-only file system\)$"):
        with Outputs() as outputs:
            for option, name in (("-a", "a.txt"), ("-b", "old.txt"), ("-c", "c.txt")):
                outputs.file(option, tmp_path / name)
                outputs.write_text(option, f"{option}\n")
    # a.txt (new) is taken back; old.txt was replaced before the failure and keeps its new content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt", "system-tmp"]
    assert (tmp_path / "old.txt").read_text() == "-b\n"


def test_an_interrupted_command_leaves_earlier_files_and_no_temporaries(tmp_path):
    (tmp_path / "a.txt").write_text("before\n")
    with pytest.raises(KeyboardInterrupt):
        with Outputs() as outputs:
            outputs.file("-a", tmp_path / "a.txt")
            outputs.directory("-d", tmp_path / "new" / "deeper" / "plots")
            outputs.write_text("-a", "after\n")
            outputs.write("-d", lambda folder: (folder / "x.png").write_bytes(b"png"))
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "system-tmp"]  # no folder made for -d stays
    assert (tmp_path / "a.txt").read_text() == "before\n"


def test_a_folder_output_is_merged_into_an_existing_folder(tmp_path):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "mine.txt").write_text("kept\n")
    (plots / "x.png").write_bytes(b"old")
    with Outputs() as outputs:
        outputs.directory("--plots", plots)
        outputs.write("--plots", lambda folder: (folder / "x.png").write_bytes(b"new"))
    assert sorted(p.name for p in plots.iterdir()) == ["mine.txt", "x.png"]
    assert (plots / "x.png").read_bytes() == b"new" and (plots / "mine.txt").read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots", "system-tmp"]


@pytest.mark.parametrize("entry", ["kinsim calibrate measure", "python -m kinsim.calibration.measure"])
def test_a_failed_measurement_leaves_no_folder(entry, tmp_path, monkeypatch):
    import kinsim.calibration.measure

    def fails_halfway(out: Path, quick: bool, cpu_smoke: bool, log=print) -> Path:
        (out / "measurements.csv").write_text("kernel,impl\n")
        raise SystemExit("kinsim calibrate measure: no CUDA GPU is visible")

    monkeypatch.setattr(kinsim.calibration.measure, "run", fails_halfway)
    out = tmp_path / "new" / "measured"
    with pytest.raises(SystemExit):
        if entry.startswith("kinsim"):
            main(["calibrate", "measure", "--out", str(out)])
        else:
            kinsim.calibration.measure.main(["--out", str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["system-tmp"]  # not even the folder above it


def test_an_input_read_while_producing_an_output_is_not_blamed_on_the_output(tmp_path):
    def reads_elsewhere(tmp: Path) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "inputs" / "table.parquet"))

    with pytest.raises(PermissionError):
        with Outputs() as outputs:
            outputs.directory("--out", tmp_path / "out")
            outputs.write("--out", reads_elsewhere)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["system-tmp"]


def test_an_output_with_the_longest_name_the_file_system_takes_is_written(tmp_path):
    name = "r" * (os.pathconf(tmp_path, "PC_NAME_MAX") - len(".json")) + ".json"
    with Outputs() as outputs:
        outputs.file("--json", tmp_path / name)
        outputs.write_text("--json", "{}\n")
    assert (tmp_path / name).read_text() == "{}\n"
