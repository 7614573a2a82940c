"""Hostile inputs (issue 16, classes 3 to 5): files that are not regular files, wrong types where a name is
expected, and hostile sizes. Each is refused with exit 2 and one line naming the file, in bounded time."""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from pathlib import Path

import pytest

from kinsim import limits
from kinsim.cli import main
from kinsim.errors import SpecError, _show
from kinsim.yamlio import load_yaml_text

from .conftest import HARDWARE, WORKLOADS

H100 = str(HARDWARE / "h100.yaml")
AIME = str(WORKLOADS / "aime_bon32.yaml")
SMALL = ["--set", "requests.problems=1", "--set", "requests.samples=2"]
TRACE_HEADER = "request_id,arrival_s,prompt_tokens,output_tokens\n"


def run_bounded(argv: list[str], capsys, seconds: float = 5.0) -> tuple[int, str]:
    """``main(argv)`` in a thread: a hang (a FIFO opened for reading blocks until a writer comes) fails the
    test instead of blocking it; the blocked reader is then released by opening the FIFOs for writing."""
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", main(argv)), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for arg in argv:
            if os.path.exists(arg) and Path(arg).is_fifo():
                os.close(os.open(arg, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"kinsim {' '.join(argv)} did not finish in {seconds} s")
    return result["rc"], capsys.readouterr().err


def assert_refused(rc: int, err: str, *words: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("kinsim: error: "), err
    for word in words:
        assert word in err, err


# ----------------------------------------------------------------------------------------- class 3

def _loop(path: Path) -> str:
    os.symlink(path.with_name("other" + path.suffix), path)
    os.symlink(path, path.with_name("other" + path.suffix))
    return "symbolic link loop"


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return "FIFO"


def _device(path: Path) -> str:
    os.symlink("/dev/zero", path)
    return "character device"


def _directory(path: Path) -> str:
    path.mkdir()
    return "is a directory"


def _oversized(path: Path, monkeypatch) -> str:
    """A file one byte over a cap lowered to 64 KiB (every other file the command reads is smaller)."""
    for kind in limits.MAX_FILE_BYTES:
        monkeypatch.setitem(limits.MAX_FILE_BYTES, kind, 1 << 16)
    path.write_text("x" * ((1 << 16) + 1))
    return "is 64 KiB, larger than the 64 KiB"


FAULTS = {"symlink-loop": _loop, "fifo": _fifo, "dev-zero": _device, "directory": _directory,
          "oversized": _oversized}

#: Every kind of input file, as (file name, the command line that reads it as that kind).
INPUTS = {
    "hardware": ("hw.yaml", lambda p, t: ["run", AIME, "--hw", p, *SMALL]),
    "workload": ("wl.yaml", lambda p, t: ["run", p, "--hw", H100]),
    "validate-yaml": ("x.yaml", lambda p, t: ["validate", p]),
    "calibration-profile": ("profile.yaml", lambda p, t: ["validate", _hardware_with_profile(t, p)]),
    "extends-parent": ("parent.yaml", lambda p, t: ["validate", _extending(t, p)]),
    "sweep": ("sweep.yaml", lambda p, t: ["sweep", p, "--workers", "1"]),
    "sweep-workload": ("wl.yaml", lambda p, t: ["sweep", _sweep_of(t, p), "--workers", "1"]),
    "suite": ("suite.yaml", lambda p, t: ["regress", p]),
    "suite-hardware": ("hw.yaml", lambda p, t: ["regress", _suite_of(t, p)]),
    "baseline": ("base.json", lambda p, t: ["regress", _suite_of(t, H100), "--baseline", p]),
    "run-json-report": ("run.json", lambda p, t: ["report", p, "-o", str(t / "out.html")]),
    "run-json-compare": ("run.json", lambda p, t: ["compare", p, p]),
    "model-config": ("config.json", lambda p, t: ["info", p]),
    "model-config-in-workload": ("config.json", lambda p, t: ["validate", _workload_with_config(t, p)]),
    "trace-csv": ("t.csv", lambda p, t: ["validate", p]),
    "trace-jsonl": ("t.jsonl", lambda p, t: ["validate", p]),
    "trace-in-workload": ("t.csv", lambda p, t: ["validate", _workload_with_trace(t, p)]),
    "shapes-csv": ("shapes.csv", lambda p, t: ["op", "gemm", "--hw", H100, "--shapes", p]),
    "measurements": ("m/measurements.csv", lambda p, t: ["calibrate", "fit", str(Path(p).parent), "--hw", H100,
                                                          "-o", str(t / "profile-out.yaml")]),
}


def _hardware_with_profile(tmp: Path, profile: str) -> str:
    path = tmp / "hw-with-profile.yaml"
    path.write_text(f"extends: {H100}\ncalibration: {profile}\n")
    return str(path)


def _extending(tmp: Path, parent: str) -> str:
    path = tmp / "child.yaml"
    path.write_text(f"extends: {Path(parent).name}\nname: child\n")
    return str(path)


def _sweep_of(tmp: Path, workload: str) -> str:
    path = tmp / "the-sweep.yaml"
    path.write_text(f"workload: {workload}\nhardware: {H100}\naxes:\n  seed: [1, 2]\n")
    return str(path)


def _suite_of(tmp: Path, hardware: str) -> str:
    path = tmp / "the-suite.yaml"
    path.write_text(f"cases:\n  small:\n    workload: {AIME}\n    hardware: {hardware}\n"
                    "    overrides: {requests.problems: 1, requests.samples: 2}\n")
    return str(path)


def _workload_with_config(tmp: Path, config: str) -> str:
    path = tmp / "wl-config.yaml"
    path.write_text(f"extends: {AIME}\nmodel: {{config: {Path(config).name}}}\n")
    return str(path)


def _workload_with_trace(tmp: Path, trace: str) -> str:
    path = tmp / "wl-trace.yaml"
    path.write_text(f"name: replay\nmodel: Qwen3-8B\nrequests: {{kind: trace, path: {Path(trace).name}}}\n")
    return str(path)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", INPUTS)
def test_an_input_that_is_not_a_regular_file_is_refused_in_one_line(tmp_path: Path, capsys, monkeypatch, kind,
                                                                    fault):
    name, argv = INPUTS[kind]
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    make = FAULTS[fault]
    why = make(path, monkeypatch) if fault == "oversized" else make(path)
    started = time.perf_counter()
    rc, err = run_bounded(argv(str(path), tmp_path), capsys)
    assert_refused(rc, err, path.name)
    if not (fault == "directory" and kind.startswith("model-config")):  # a folder holding a config.json is one
        assert why in err
    assert time.perf_counter() - started < 5


def test_the_size_cap_is_read_from_the_file_not_trusted_from_stat(tmp_path: Path, monkeypatch):
    from kinsim.reading import read_bytes

    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n")
    monkeypatch.setitem(limits.MAX_FILE_BYTES, "yaml", 4)
    with pytest.raises(SpecError, match="x.yaml: is 5 bytes, larger than the 4 bytes a yaml input may be"):
        read_bytes(path, "yaml")


@pytest.mark.parametrize("fault", ["symlink-loop", "fifo", "directory"])
def test_calibration_metadata_that_is_not_a_regular_file_is_refused(tmp_path: Path, fault):
    from kinsim.calibration.measurements import read_metadata

    FAULTS[fault](tmp_path / "metadata.json")
    with pytest.raises(SpecError, match="metadata.json: "):
        read_metadata(tmp_path)


# ----------------------------------------------------------------------------------------- class 4

@pytest.mark.parametrize("override, key", [
    ("attention.policy=[dense]", "attention.policy"),
    ("attention={policy: {a: 1}}", "attention.policy"),
    ("requests.kind={a: 1}", "requests.kind"),
    ("requests.arrival.process=[poisson]", "requests.arrival.process"),
    ("requests.prompt_tokens.dist=[uniform]", "requests.prompt_tokens.dist"),
    ("requests.output_tokens={dist: {lognormal: 1}}", "requests.output_tokens.dist"),
    ("model={preset: [Qwen3-8B]}", "model.preset"),
    ("model={preset: {Qwen3-8B: 1}}", "model.preset"),
    ("deployment.router=[round_robin]", "deployment.router"),
    ("model.kv_dtype=[fp8]", "model.kv_dtype"),
    ("seed=2024-01-01", "seed"),
    ("name=[a]", "name"),
])
def test_a_list_or_mapping_where_a_name_belongs_is_refused_with_its_key(capsys, override, key):
    rc = main(["validate", AIME, "--set", override])
    assert_refused(rc, capsys.readouterr().err, "aime_bon32.yaml", key)


def test_a_list_where_a_hardware_choice_belongs_is_refused(capsys):
    rc = main(["validate", H100, "--set", "node.gpu_link.topology=[switch]"])
    assert_refused(rc, capsys.readouterr().err, "h100.yaml", "node.gpu_link.topology")


@pytest.mark.parametrize("extra, key", [
    ("plot: {x: [seed]}\n", "plot.x"),
    ("plot: {x: {seed: 1}}\n", "plot.x"),
    ("plot: {y: [throughput.tasks_per_s]}\n", "plot.y"),
    ("mode: [grid]\n", "mode"),
    ("name: [a, b]\n", "name"),
    ("workload: [a.yaml]\n", "workload"),
])
def test_a_sweep_field_of_the_wrong_type_is_refused_with_its_key(tmp_path: Path, capsys, extra, key):
    sweep = tmp_path / "s.yaml"
    base = {"workload": AIME, "hardware": H100}
    text = "".join(f"{k}: {v}\n" for k, v in base.items() if not extra.startswith(k)) + "axes:\n  seed: [1]\n"
    sweep.write_text(text + extra)
    rc = main(["sweep", str(sweep), "--workers", "1", "--db", str(tmp_path / "db.sqlite")])
    assert_refused(rc, capsys.readouterr().err, "s.yaml", f": {key}:")
    assert not (tmp_path / "db.sqlite").exists()


@pytest.mark.parametrize("text, key", [
    ("name: [a]\ncases: {}\n", "name"),
    ("metrics: {[a]: 1}\ncases: {}\n", "line 1"),
    ("metrics: [throughput.tasks_per_s]\ncases: {}\n", "metrics"),
    ("cases:\n  c: {workload: [a], hardware: b}\n", "cases.c.workload"),
    ("cases:\n  c: {workload: " + AIME + ", hardware: {a: 1}}\n", "cases.c.hardware"),
])
def test_a_suite_field_of_the_wrong_type_is_refused_with_its_key(tmp_path: Path, capsys, text, key):
    suite = tmp_path / "suite.yaml"
    suite.write_text(text)
    rc = main(["regress", str(suite), "--update"])
    assert_refused(rc, capsys.readouterr().err, "suite.yaml", key)


def test_a_yaml_date_is_read_as_the_string_it_is_written_as():
    assert load_yaml_text("a: 2024-01-01\nb: !!timestamp 2024-01-01 10:00:00\n") == {
        "a": "2024-01-01", "b": "2024-01-01 10:00:00"}
    assert not any(isinstance(v, datetime.date) for v in load_yaml_text("[2024-01-01, 2001-12-14t21:59:43.10-05:00]"))


@pytest.fixture(scope="module")
def run_json(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("run") / "run.json"
    assert main(["run", AIME, "--hw", H100, *SMALL, "--json", str(path)]) == 0
    return json.loads(path.read_text())


def _set(summary: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(summary))
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize("key, value, rule", [
    ("throughput.tasks_per_s", "NaN", "expected a finite number"),
    ("throughput.tasks_per_s", [1.0], "expected a finite number"),
    ("latency.request.ttft", [1, 2], "expected a mapping"),
    ("latency.request.ttft.p50", KeyError, "missing key"),
    ("latency.task.e2e.p99", {"a": 1}, "expected a finite number or null"),
    ("requests.completed", 1.5, "expected a whole number"),
    ("requests.unfinished_reasons", [], "expected a mapping"),
    ("breakdown_s.attention", None, "expected a finite number"),
    ("by_class.linear", KeyError, "missing key"),
    ("ceilings.hbm_bandwidth", 0, "expected a positive number"),
    ("series.t_s", "0,1", "expected a list of numbers"),
    ("series.kv_bytes", [1.0], "has 1 values, series.t_s has"),
    ("series.latency_quantiles.ttft", [0.1, 0.2], "has 2 values, series.latency_quantiles.q has"),
    ("workload", 3, "expected a string"),
    ("gpus", "8", "expected a whole number"),
    ("inputs.workload", [1], "expected a mapping or null"),
    ("energy_j", float("nan"), "expected a finite number"),
])
def test_a_run_json_with_wrong_contents_is_refused_with_its_key(tmp_path: Path, capsys, run_json, key, value, rule):
    command = "compare" if len(key) % 3 == 0 else "report"  # both read a run with load_run: a share each
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(run_json))
    bad.write_text(json.dumps(_set(run_json, key, value)))
    argv = ["report", str(bad), "-o", str(tmp_path / "r.html")] if command == "report" else \
        ["compare", str(good), str(bad), "--json", str(tmp_path / "c.json")]
    rc = main(argv)
    path = key.rsplit(".", 1)[0] if rule.startswith("expected a mapping") and value == [] else key
    assert_refused(rc, capsys.readouterr().err, "bad.json", path, rule)
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "c.json").exists()


# ----------------------------------------------------------------------------------------- class 5

def _deep_json(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [limits.MAX_NESTING + 1, 100_000])
@pytest.mark.parametrize("kind", ["baseline", "run-json-report", "run-json-compare", "model-config",
                                  "model-config-in-workload"])
def test_deeply_nested_json_is_refused(tmp_path: Path, capsys, kind, depth):
    name, argv = INPUTS[kind]
    path = tmp_path / name
    path.write_text(_deep_json(depth))
    started = time.perf_counter()
    rc, err = run_bounded(argv(str(path), tmp_path), capsys)
    assert_refused(rc, err, name, f"more than {limits.MAX_NESTING} deep")
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("line", [_deep_json(100_000), "[" * 100_000 + "]" * 100_000])
@pytest.mark.parametrize("where", ["first", "second"])
def test_a_deeply_nested_trace_line_is_refused(tmp_path: Path, capsys, line, where):
    row = json.dumps({"request_id": "r0", "arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1})
    path = tmp_path / "t.jsonl"
    path.write_text((line + "\n" + row + "\n") if where == "first" else (row + "\n" + line + "\n"))
    rc, err = run_bounded(["validate", str(path)], capsys)
    assert_refused(rc, err, "t.jsonl", "line 1" if where == "first" else "line 2")


def test_deeply_nested_calibration_metadata_is_refused(tmp_path: Path):
    from kinsim.calibration.measurements import read_metadata

    (tmp_path / "metadata.json").write_text(_deep_json(100_000))
    with pytest.raises(SpecError, match=f"metadata.json: nests lists and objects more than {limits.MAX_NESTING}"):
        read_metadata(tmp_path)


def _alias_bomb(levels: int = 9, width: int = 10) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, why", [
    (_alias_bomb() + "name: *a8\n", "aliases expand to more than 1,000,000 values"),
    (_alias_bomb(), "aliases expand to more than 1,000,000 values"),
    ("a0: &a0 [[[[[[[[[[x]]]]]]]]]]\n" + "".join(f"a{i}: &a{i} [[[[[[[[[*a{i - 1}]]]]]]]]]\n" for i in range(1, 12)),
     f"aliases make lists and mappings nest more than {limits.MAX_NESTING} deep"),
    ("a: &a [1, *a]\n", "an alias refers to a value that contains it"),
    ("a: !!set {x, y}\n", "!!set"),
])
@pytest.mark.parametrize("kind", ["hardware", "sweep", "suite", "calibration-profile"])
def test_yaml_alias_bombs_and_deep_nesting_are_refused_quickly(tmp_path: Path, capsys, kind, text, why):
    name, argv = INPUTS[kind]
    path = tmp_path / name
    path.write_text(text)
    started = time.perf_counter()
    rc, err = run_bounded(argv(str(path), tmp_path), capsys)
    assert_refused(rc, err, name, why)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("kind", ["workload", "suite"])
def test_deeply_nested_yaml_is_refused_in_bounded_time(tmp_path: Path, capsys, kind):
    """PyYAML's scanner looks up to 1,024 characters ahead for a key at each bracket: about 0.7 s, whatever
    the depth; then composing stops at the nesting cap."""
    name, argv = INPUTS[kind]
    path = tmp_path / name
    path.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    started = time.perf_counter()
    rc, err = run_bounded(argv(str(path), tmp_path), capsys)
    assert_refused(rc, err, name, f"nest more than {limits.MAX_NESTING} deep")
    assert time.perf_counter() - started < 3


def test_a_message_about_a_huge_value_is_short_and_quick():
    bomb: list = ["lol"] * 10  # what an alias bomb builds: 10^30 values, shared, that repr would write out
    for _ in range(30):
        bomb = [bomb] * 10
    started = time.perf_counter()
    assert len(_show(bomb)) <= 80 and len(_show({"a": bomb})) <= 80
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize("write", [
    lambda p: p.write_text(TRACE_HEADER + "r0,0,1," + "9" * 200_000 + "\n"),
    lambda p: p.write_text('request_id,arrival_s,prompt_tokens,output_tokens,"' + "x" * 200_000 + '"\n'),
])
def test_a_csv_cell_over_the_field_limit_is_refused(tmp_path: Path, capsys, write):
    path = tmp_path / "t.csv"
    write(path)
    rc, err = run_bounded(["validate", str(path)], capsys)
    assert_refused(rc, err, "t.csv", "field larger than field limit")


def test_a_shapes_csv_cell_over_the_field_limit_is_refused(tmp_path: Path, capsys):
    path = tmp_path / "shapes.csv"
    path.write_text("m,n,k\n1,1," + "1" * 200_000 + "\n")
    rc, err = run_bounded(["op", "gemm", "--hw", H100, "--shapes", str(path)], capsys)
    assert_refused(rc, err, "shapes.csv", "line 2", "field larger than field limit")


@pytest.mark.parametrize("override, key, rule", [
    ("cluster={nodes: 100000000, source: x, network: {bandwidth_per_gpu: 50 GB/s, latency: 5 us}}", "cluster.nodes",
     f"at most {limits.MAX_TOTAL_GPUS:,}"),
    ("cluster={nodes: 16384, source: x, network: {bandwidth_per_gpu: 50 GB/s, latency: 5 us}}", "cluster.nodes",
     f"nodes x GPUs per node must be at most {limits.MAX_TOTAL_GPUS:,}"),
    ("node.gpus=100000000", "node.gpus", f"at most {limits.MAX_GPUS_PER_NODE:,}"),
    ("node.gpus=100000000000000000000000", "node.gpus", "must fit a 64-bit integer"),
])
def test_absurd_cluster_sizes_are_refused_before_building_anything(capsys, override, key, rule):
    started = time.perf_counter()
    rc = main(["info", H100, "--set", override])
    assert_refused(rc, capsys.readouterr().err, "h100.yaml", key, rule)
    assert time.perf_counter() - started < 2


def test_info_on_the_largest_cluster_builds_two_nodes_of_links_only(capsys):
    nodes = limits.MAX_TOTAL_GPUS // 8
    started = time.perf_counter()
    rc = main(["info", H100, "--set",
               f"cluster={{nodes: {nodes}, source: x, network: {{bandwidth_per_gpu: 50 GB/s, latency: 5 us}}}}"])
    assert rc == 0 and f"{nodes} node(s), {nodes * 8} GPUs" in capsys.readouterr().out
    assert time.perf_counter() - started < 2


def test_a_sweep_grid_over_the_cap_is_refused_before_it_is_built(tmp_path: Path, capsys):
    sweep = tmp_path / "s.yaml"
    axis = list(range(1000))
    sweep.write_text(f"workload: {AIME}\nhardware: {H100}\naxes:\n  seed: {axis}\n  requests.problems: {axis}\n"
                     f"  requests.samples: {axis}\n  deployment.max_num_seqs: {axis}\n")
    started = time.perf_counter()
    rc = main(["sweep", str(sweep), "--workers", "1", "--db", str(tmp_path / "db.sqlite")])
    assert_refused(rc, capsys.readouterr().err, "s.yaml", "axes", f"1,000,000,000,000 points, more than kinsim's cap "
                                                                  f"of {limits.MAX_SWEEP_POINTS:,}")
    assert time.perf_counter() - started < 2 and not (tmp_path / "db.sqlite").exists()


@pytest.mark.parametrize("override, key, rule", [
    ("requests.prompt_tokens={dist: uniform, low: 1, high: 1000000000000000000000000000000}",
     "requests.prompt_tokens.high", "must fit a 64-bit integer"),
    ("requests.prompt_tokens={dist: uniform, low: 1, high: 100000000}", "requests.prompt_tokens.high",
     f"must be at most {limits.MAX_TOKENS:,}"),
    ("requests.output_tokens=100000000000000000000", "requests.output_tokens.value", "must fit a 64-bit integer"),
    ("requests.output_tokens=20000000", "requests.output_tokens.value", f"must be at most {limits.MAX_TOKENS:,}"),
    ("requests.output_tokens={dist: list, values: [1, 20000000]}", "requests.output_tokens.values[1]",
     f"must be at most {limits.MAX_TOKENS:,}"),
    ("requests.max_output_tokens=9223372036854775807", "requests.max_output_tokens",
     f"must be at most {limits.MAX_TOKENS:,}"),
    ("requests.problems=1000000000000000000", "requests.problems", f"must be at most {limits.MAX_REQUESTS:,}"),
    ("requests.samples=10000000", "requests.samples", f"problems x samples must be at most {limits.MAX_REQUESTS:,}"),
    ("requests.arrival={process: poisson, rate: 1e-320 /s}", "requests.arrival.rate",
     "the mean interval 1/rate must be at most"),
    ("requests.arrival={process: poisson, rate: 0.000001 /s}", "requests.arrival.rate",
     "30 problems at this rate arrive over about 3e+07 s"),
    ("deployment.max_num_seqs=9223372036854775808", "deployment.max_num_seqs", "must fit a 64-bit integer"),
    ("deployment.data_parallel=1000000", "deployment.data_parallel", f"at most {limits.MAX_TOTAL_GPUS:,}"),
    ("attention={policy: block_topk, top_k: 1000000000}", "attention.top_k", f"at most {limits.MAX_TOKENS:,}"),
    ("seed=100000000000000000000", "seed", "must fit a 64-bit integer"),
])
def test_numbers_that_would_overflow_are_refused_with_their_key_and_bound(capsys, override, key, rule):
    started = time.perf_counter()
    rc = main(["validate", AIME, "--set", override])
    assert_refused(rc, capsys.readouterr().err, "aime_bon32.yaml", f": {key}: ", rule)
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("rows, options, line, rule", [
    ("r0,0,1,1\nr1,1e300,1,1\n", "", "line 3.arrival_s", "replays at 1e+300 s, past 4,503,600 s"),
    ("r0,0,1,1\nr1,4600000,1,1\n", "", "line 3.arrival_s", "replays at 4.6e+06 s, past"),
    ("r0,0,1,1\nr1,1,1,1\n", ", time_scale: 1.0e+300", "line 3.arrival_s", "replays at 1e+300 s"),
    ("r0,0,1,1\nr1,1,1,1\n", ", rate_scale: 1.0e-320", "line 3.arrival_s", "replays at inf s"),
    ("r0,0,20000000,1\n", "", "line 2.prompt_tokens", f"must be at most {limits.MAX_TOKENS:,}"),
    ("r0,0,1,20000000\n", "", "line 2.output_tokens", f"must be at most {limits.MAX_TOKENS:,}"),
])
def test_trace_times_and_lengths_beyond_the_bounds_are_refused(tmp_path: Path, capsys, rows, options, line, rule):
    (tmp_path / "t.csv").write_text(TRACE_HEADER + rows)
    workload = tmp_path / "wl.yaml"
    workload.write_text(f"name: replay\nmodel: Qwen3-8B\nrequests: {{kind: trace, path: t.csv{options}}}\n")
    rc = main(["validate", str(workload)])
    assert_refused(rc, capsys.readouterr().err, "t.csv", f": {line}: ", rule)


def test_a_trace_just_within_the_bounds_is_read(tmp_path: Path, capsys):
    assert limits.MAX_TIME_S * 1e9 == 2.0**52  # half the clock's exact range of 2**53 ns
    last = 4_500_000  # seconds, just below 2**52 ns = 4,503,599.6 s
    (tmp_path / "t.csv").write_text(TRACE_HEADER + f"r0,0,1,1\nr1,{last},{limits.MAX_TOKENS},1\n")
    assert main(["validate", str(tmp_path / "t.csv")]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("hash_id", [2**63, 2**70, -(2**63) - 1])
def test_a_hash_id_beyond_int64_is_refused_at_its_line(tmp_path: Path, capsys, suffix, hash_id):
    """Hash ids are kept as int64: one just past either end is refused at its line (it crashed the array
    build; found by the fuzzer)."""
    trace = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        trace.write_text("request_id,arrival_s,prompt_tokens,output_tokens,hash_ids\n"
                         f"a,0,32,4,1 2\nb,1,32,4,7 {hash_id}\n")
        line = "line 3.hash_ids"
    else:
        trace.write_text('{"request_id": "a", "arrival_s": 0, "prompt_tokens": 32, "output_tokens": 4}\n'
                         f'{{"request_id": "b", "arrival_s": 1, "prompt_tokens": 32, "output_tokens": 4, '
                         f'"hash_ids": [7, {hash_id}]}}\n')
        line = "line 2.hash_ids"
    rc = main(["info", str(trace)])
    assert_refused(rc, capsys.readouterr().err, f"{trace}: {line}: a hash id must fit a 64-bit integer",
                   f"got {hash_id}")


def test_a_huge_sweep_value_gives_a_short_message(tmp_path: Path, capsys):
    """A 200,000-character axis value that fails validation: the message stays one short line (the point's
    values are shown cut, as every value in a message is; found by the fuzzer)."""
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nworkload: {AIME}\nhardware: {HARDWARE / 'h100.yaml'}\n"
                     f"axes:\n  hw.gpu.memory.bandwidth: ['{'9' * 200_000} TB/ss']\n")
    rc = main(["validate", str(sweep)])
    err = capsys.readouterr().err
    assert_refused(rc, err, f"{sweep}: point 1 of 1 (")
    assert len(err) < 600


@pytest.mark.parametrize("part", ["file", "path", "rule", "hint", "value"])
def test_every_part_of_a_message_is_cut_to_a_bounded_length(part):
    """A file name, key, rule, hint or value of 200,000 characters (all may come from the input): the message
    keeps the start and end of each part and stays short (found by the fuzzer in three places)."""
    from kinsim.errors import MAX_PART, MAX_TEXT, SpecError

    huge = "a" * 100_000 + "b" * 100_000
    fields = {"rule": "must be positive", "path": "gpu.memory", "file": "h.yaml", "hint": "see docs", "value": 1}
    fields[part] = huge
    rule = fields.pop("rule")
    message = str(SpecError(rule, **fields))
    assert len(message) < 2 * MAX_PART + 2 * MAX_TEXT + 100
    if part != "value":
        assert f"{'a' * 50} ... {'b' * 50}" in message
