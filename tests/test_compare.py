"""``kinsim compare``: values and ratios come from the runs compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kinsim.cli import main
from kinsim.report.compare import HEADLINE, PLOTTED, compare_rows, format_table, plot_compare
from kinsim.runner import simulate

from .conftest import HARDWARE, WORKLOADS

SMALL = {"requests.problems": 3, "requests.samples": 4, "requests.max_output_tokens": 500}
SET = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def dense_and_sparse():
    dense = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml", SMALL).to_dict()
    sparse = simulate(WORKLOADS / "aime_bon32_blocktopk.yaml", HARDWARE / "h100.yaml", SMALL).to_dict()
    return [("dense", dense), ("block_topk", sparse)]


def test_rows_hold_the_values_and_ratios_to_the_first_run(dense_and_sparse):
    rows = {row["key"]: row for row in compare_rows(dense_and_sparse)}
    assert [row["key"] for row in compare_rows(dense_and_sparse)] == [key for key, *_ in HEADLINE]
    (_, dense), (_, sparse) = dense_and_sparse
    tasks = rows["throughput.tasks_per_s"]
    assert tasks["values"] == [dense["throughput"]["tasks_per_s"], sparse["throughput"]["tasks_per_s"]]
    assert tasks["ratios"] == [1.0, sparse["throughput"]["tasks_per_s"] / dense["throughput"]["tasks_per_s"]]
    assert rows["requests.unfinished"]["ratios"] == [None, None]  # 0 / 0 has no ratio


def test_plot_bars_are_the_ratios_split_by_which_way_is_better(dense_and_sparse):
    higher, lower = plot_compare(dense_and_sparse).axes
    rows = {row["key"]: row for row in compare_rows(dense_and_sparse)}
    assert higher.get_title() == "higher is better" and lower.get_title() == "lower is better"
    assert higher.get_ylabel() == lower.get_ylabel() == "ratio to dense (1 = the same)"
    up = ["throughput.tasks_per_s", "throughput.output_tokens_per_s"]
    down = ["latency.request.tpot.p50", "latency.task.e2e.p99", "kv.mean_bytes", "energy_j"]
    assert sorted(up + down) == sorted(PLOTTED)
    for ax, keys in ((higher, up), (lower, down)):
        assert [t.get_text() for t in ax.get_xticklabels()] == [rows[k]["label"] for k in keys]
        heights = [bar.get_height() for bar in ax.patches]
        assert heights == pytest.approx([rows[key]["ratios"][i] for i in range(2) for key in keys])


def _summary(scale: float) -> dict:
    """A run's figures, every one ``scale`` times a base value (only the keys the table reads)."""
    p = {"p50": 0.0456 * scale, "p99": 12.5 * scale}
    return {"sim_time_s": 1234.5 * scale, "throughput": {"tasks_per_s": 0.0123 * scale,
                                                        "output_tokens_per_s": 11637.4 * scale},
            "latency": {"request": {"ttft": p, "tpot": p, "e2e": p}, "task": {"e2e": p}},
            "kv": {"peak_bytes": 5.483e10 * scale, "mean_bytes": 2.5e9 * scale},
            "utilization": {"hbm": 0.4567 * scale, "compute": 0.1 * scale},
            "requests": {"preemptions": int(1032 * scale), "unfinished": 0}, "energy_j": 5e6 * scale}


def test_table_shows_every_figure_in_its_unit_with_one_number_format():
    lines = format_table([("a", _summary(1.0)), ("b", _summary(2.0))])
    table = {line[:25].strip(): line[25:].split() for line in lines}
    assert lines[0].split() == ["metric", "a", "b", "b", "/", "a"]
    # hand-worked: 1234.5 s and 2469 s; 0.0123 and 0.0246 tasks/s; 11,637.4 -> 11,637 and 23,274.8 -> 23,275
    assert table["makespan"] == ["1,234", "s", "2,469", "s", "2x"]
    assert table["task throughput"] == ["0.0123", "tasks/s", "0.0246", "tasks/s", "2x"]
    assert table["output token throughput"] == ["11,637", "tokens/s", "23,275", "tokens/s", "2x"]
    assert table["TTFT p50"] == ["45.6", "ms", "91.2", "ms", "2x"]  # 0.0456 s
    assert table["task e2e p99"] == ["12.5", "s", "25", "s", "2x"]
    assert table["KV peak per replica"] == ["54.83", "GB", "109.7", "GB", "2x"]  # 5.483e10 B, 1.0966e11 B
    assert table["HBM utilisation"] == ["45.7%", "91.3%", "2x"]  # 0.4567 -> 45.67% to 3 digits; 91.34%
    assert table["preemptions"] == ["1,032", "2,064", "2x"]
    assert table["unfinished requests"] == ["0", "0", "-"]  # 0 / 0 has no ratio
    assert table["energy"] == ["1.389", "kWh", "2.778", "kWh", "2x"]  # 5e6 J / 3.6e6 J per kWh
    text = "\n".join(lines)
    assert "e+" not in text and "e-" not in text and "(1/s)" not in text


def test_compare_run_files(tmp_path: Path, capsys, dense_and_sparse):
    files = []
    for label, summary in dense_and_sparse:
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps(summary))
        files.append(str(path))
    out = tmp_path / "cmp.json"
    assert main(["compare", *files, "--json", str(out), "--plot", str(tmp_path / "cmp.svg")]) == 0
    table = capsys.readouterr().out
    assert "block_topk / dense" in table.splitlines()[0]
    written = json.loads(out.read_text())
    assert written["runs"] == ["dense", "block_topk"]
    assert (tmp_path / "cmp.svg").read_text().lstrip().startswith("<?xml")


def test_a_run_file_of_an_earlier_version_without_the_memory_sections_still_compares(tmp_path, capsys,
                                                                                     dense_and_sparse):
    files = []
    for label, summary in dense_and_sparse:
        older = {k: v for k, v in summary.items() if k not in ("memory", "host_link")}
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps(older))
        files.append(str(path))
    assert main(["compare", *files]) == 0
    assert "block_topk / dense" in capsys.readouterr().out
    # a section every version writes is still required
    broken = {k: v for k, v in dense_and_sparse[0][1].items() if k != "kv"}
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    assert main(["compare", str(tmp_path / "broken.json"), files[1]]) == 2
    assert "kv: missing key" in capsys.readouterr().err


def test_compare_one_workload_on_two_gpus_runs_both(capsys):
    assert main(["compare", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"),
                 "--hw", str(HARDWARE / "h200.yaml"), *SET]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[1:3] == ["h100", "h200"]
    tpot = next(row for row in rows if row.startswith("TPOT p50"))
    # H200 has 4.8 TB/s against H100's 3.35 TB/s: a bandwidth-bound decode step is faster
    assert float(tpot.split()[-1].rstrip("x")) < 1.0


@pytest.mark.parametrize("args, words", [
    (["only.json"], ["at least two"]),
    ([str(WORKLOADS / "aime_bon32.yaml")], ["--hw"]),
])
def test_compare_bad_arguments_are_exit_2(tmp_path: Path, capsys, args, words):
    if args == ["only.json"]:
        path = tmp_path / "only.json"
        path.write_text(json.dumps(simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml", SMALL).to_dict()))
        args = [str(path)]
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words)
