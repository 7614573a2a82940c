"""``kinsim compare``: values and ratios come from the runs compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kinsim.cli import main
from kinsim.report.compare import HEADLINE, PLOTTED, compare_rows, plot_compare
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


def test_plot_bars_are_the_ratios(dense_and_sparse):
    ax = plot_compare(dense_and_sparse).axes[0]
    rows = {row["key"]: row for row in compare_rows(dense_and_sparse)}
    heights = [bar.get_height() for bar in ax.patches]
    expected = [rows[key]["ratios"][i] for i in range(2) for key in PLOTTED]
    assert heights == pytest.approx(expected)


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
