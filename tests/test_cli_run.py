"""``kinsim run``: the JSON it writes, the summary it prints, and how it treats bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kinsim.cli import main
from kinsim.runner import simulate

from .conftest import HARDWARE, WORKLOADS

SMALL = ["--set", "requests.problems=2", "--set", "requests.samples=4", "--set", "requests.max_output_tokens=300"]

REQUIRED_KEYS = [
    "workload", "hardware", "sim_time_s", "requests.completed", "requests.unfinished", "tokens.generated",
    "tokens.prompt", "throughput.output_tokens_per_s", "throughput.tasks_per_s",
    *(f"latency.request.{m}.{p}" for m in ("ttft", "tpot", "e2e") for p in ("p50", "p90", "p99")),
    "latency.task.e2e.p50", "latency.task.e2e.p99",
    *(f"breakdown_s.{c}" for c in ("attention", "selection", "linear", "moe", "communication", "other")),
    "utilization.compute", "utilization.hbm", "utilization.link",
    "kv.capacity_bytes", "kv.peak_bytes", "kv.mean_bytes", "energy_j", "wall_time_s",
]


def lookup(obj: dict, dotted: str):
    for part in dotted.split("."):
        obj = obj[part]
    return obj


def test_run_writes_every_required_key_and_equals_the_library_result(tmp_path: Path, capsys):
    out = tmp_path / "run.json"
    code = main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"), *SMALL,
                 "--json", str(out)])
    assert code == 0
    written = json.loads(out.read_text())
    for key in REQUIRED_KEYS:
        assert lookup(written, key) is not None, key
    assert written["requests"]["completed"] == 8
    library = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml",
                       {"requests.problems": 2, "requests.samples": 4, "requests.max_output_tokens": 300}).to_dict()
    written.pop("wall_time_s"), library.pop("wall_time_s")
    assert written == library
    printed = capsys.readouterr()
    assert "tasks/s" in printed.out and "2 of 2 completed" in printed.out
    assert "\r" not in printed.err  # no progress bar when stderr is not a terminal


def test_quiet_prints_nothing(capsys):
    code = main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"), *SMALL, "--quiet"])
    assert code == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("args, words", [
    (["--set", "hw.gpu.memory.bandwidth=-1 TB/s"], ["gpu.memory.bandwidth", "must be positive", "-1"]),
    (["--set", "deployment.max_num_seqs=0"], ["deployment.max_num_seqs", "at least 1"]),
    (["--set", "model=Qwen3-32B", "--set", "hw.gpu.memory.capacity=40 GB"], ["does not fit",
                                                                              "deployment.tensor_parallel"]),
    (["--set", "deployment.data_parallel=9"], ["deployment.data_parallel", "h100.yaml) has 8"]),
    (["--set", "deployment.router=random"], ["deployment.router", "must be one of"]),
])
def test_bad_input_is_one_message_exit_2_and_no_output_file(tmp_path: Path, capsys, args, words):
    out = tmp_path / "run.json"
    code = main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"), *args,
                 "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and err.count("\n") == 1
    for word in words:
        assert word in err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_workload_file_is_exit_2(tmp_path: Path, capsys):
    code = main(["run", str(tmp_path / "nope.yaml"), "--hw", str(HARDWARE / "h100.yaml")])
    assert code == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_a_failed_write_leaves_no_file(tmp_path: Path):
    from kinsim.files import write_atomically

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(tmp_path / "out.json", fail)
    assert list(tmp_path.iterdir()) == []
