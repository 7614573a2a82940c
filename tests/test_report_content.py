"""What ``kinsim report`` writes: figures with units, no wall time (the same run gives the same bytes), and
no empty op classes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kinsim.cli import main
from kinsim.ops.op import OP_CLASSES
from kinsim.report.html import readable_inputs, render_report
from kinsim.report.plots import plot_breakdown

from .conftest import HARDWARE, WORKLOADS

TINY = ["--set", "requests.problems=1", "--set", "requests.samples=2", "--set", "requests.max_output_tokens=200"]


def _run(path: Path) -> dict:
    assert main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"), "--quiet", *TINY,
                 "--json", str(path)]) == 0
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("runs")
    first, second = folder / "a.json", folder / "b.json"
    _run(first)
    summary = _run(second)
    # make sure the two runs differ in wall time, as real ones do
    summary["wall_time_s"] += 1.25
    second.write_text(json.dumps(summary))
    return first, second


def _text(page: str) -> str:
    """The page without its embedded images."""
    return re.sub(r"base64,[A-Za-z0-9+/=]+", "base64,", page)


def test_two_reports_of_one_simulation_are_byte_identical(two_runs, tmp_path: Path, capsys):
    first, second = two_runs
    pages = []
    for i, run_file in enumerate((first, second)):
        out = tmp_path / f"r{i}.html"
        assert main(["report", str(run_file), "-o", str(out)]) == 0
        pages.append(out.read_bytes())
    assert pages[0] == pages[1]  # two runs of the same workload (different wall times), so also one run twice
    summary = json.loads(second.read_text())
    assert f"{summary['wall_time_s']:.2f} s" not in pages[1].decode()


@pytest.fixture
def no_images(monkeypatch):
    """Skip encoding the plots (the slow part) where a test reads only the text."""
    monkeypatch.setattr("kinsim.report.html._png", lambda fig: "")


def test_report_shows_quantities_with_units_and_no_harness_text(two_runs, no_images):
    first, _ = two_runs
    page = _text(render_report(json.loads(first.read_text())))
    assert "plots rendered" not in page and "render-check" not in page
    assert "data-plots-rendered" in page  # the script a browser test reads is still there
    # the run JSON writes every quantity in its SI base unit with every digit; the page as a person would
    assert "989000000000000.0" not in page and "FLOP/s" in page
    for line in ("bf16: 989 TFLOP/s", "capacity: 80 GiB", "bandwidth: 3.35 TB/s", "l2_cache: 50 MB",
                 "launch_overhead: 1 us", "tdp: 700 W", "clock: 1.83 GHz", "bandwidth: 450 GB/s"):
        assert line in page, line
    # no quantity in its base unit with an exponent or a run of digits (a prefix does that), and no
    # exponent at all in the summary and breakdown (an input may be tiny: "2.2e-12 ns" is what it is)
    base = r" (s|B|B/s|FLOP/s|Hz|W|\$/s)\b"
    assert not re.search(r"\d(\.\d+)?e[-+]?\d+" + base, page), re.search(r"\d(\.\d+)?e[-+]?\d+" + base, page)
    assert not re.search(r"\d{5,}(\.\d+)?" + base, page)
    assert not re.search(r"\d(\.\d+)?e[-+]?\d", page.split("Workload used")[0])


@pytest.mark.parametrize("raw, shown", [
    ("4.9999999999999996e-06 s", "5 us"),
    ("989000000000000.0 FLOP/s", "989 TFLOP/s"),
    ("85899345920.0 B", "80 GiB"),
    ("3350000000000.0 B/s", "3.35 TB/s"),
    ("0.5 Hz", "0.5 Hz"),
    ("0.0006944444444444445 $/s", "2.5 $/h"),
    ("2 h", "2 h"),  # not in its base unit: as written
    ("dense", "dense"),
    ("12 requests", "12 requests"),
    (12, 12),
    (None, None),
])
def test_readable_inputs(raw, shown):
    assert readable_inputs({"a": [raw], "b": {"c": raw}}) == {"a": [shown], "b": {"c": shown}}


def test_op_classes_without_time_have_no_bar_and_no_row(two_runs, no_images):
    first, _ = two_runs
    summary = json.loads(first.read_text())
    summary["breakdown_s"] = {c: 0.0 for c in OP_CLASSES}
    summary["breakdown_s"].update(attention=3.0, linear=1.0)
    ax = plot_breakdown(summary).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["attention", "linear"]
    assert [bar.get_width() for bar in ax.patches] == [3.0, 1.0]
    page = _text(render_report(summary))
    table = page.split("Breakdown by op class")[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(\w+)</td>", table) == ["attention", "linear"]
    # 3 s of 4 s is 75%; 1 s is 25%
    assert "<td class='num'>3 s</td><td class='num'>75%</td>" in table
    assert "<td class='num'>1 s</td><td class='num'>25%</td>" in table


@pytest.mark.parametrize("section", ["breakdown_s", "by_class", "by_class.attention", "latency.request", "kv",
                                     "utilization", "requests", "series"])
def test_keys_a_run_file_holds_beyond_those_kinsim_reads_are_passed_over(two_runs, tmp_path, no_images, capsys,
                                                                         section):
    """Report and compare read the keys they know (``RUN_SHAPE``), whatever else a section holds: a key added
    to a section, with a value of any type, changes nothing they show (it crashed report and compare when
    they iterated a section's items)."""
    first, _ = two_runs
    summary = json.loads(first.read_text())
    node = summary
    for part in section.split("."):
        node = node[part]
    node["added_by_hand"] = {"seconds": "x"}
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(summary))
    pages = []
    for run_file in (first, edited):
        out = tmp_path / f"{run_file.stem}.html"
        assert main(["report", str(run_file), "-o", str(out)]) == 0
        pages.append(out.read_bytes())
    assert pages[0] == pages[1]
    assert main(["compare", str(first), str(edited)]) == 0
    table = capsys.readouterr().out
    assert "added_by_hand" not in table


@pytest.mark.parametrize("chunk", [1 << 20, 777])  # one chunk of segments, and several
def test_the_timeline_spreads_each_segment_over_the_bins_it_overlaps(chunk, monkeypatch):
    # kinsim.metrics.timeline puts a segment that lies within one bin wholly in that bin and spreads only those
    # that cross a bin edge; the definition: each segment's tokens and block-seconds in proportion to its
    # overlap with each bin (an empty segment contributes nothing), computed here densely for every segment
    import numpy as np

    from kinsim import metrics
    from kinsim.metrics import timeline

    monkeypatch.setattr(metrics, "TIMELINE_CHUNK", chunk)
    rng = np.random.default_rng(7)
    n, bins, replicas, replica_bytes = 5000, 50, 4, 2e9
    start = np.sort(rng.uniform(0, 100, n))
    duration = rng.exponential(0.05, n)
    duration[::37] = rng.uniform(0, 20, len(duration[::37]))  # some span several bins
    duration[::101] = 0.0
    end = start + duration
    end[-1] = 130.0  # the last segment ends the run, on the last edge
    tokens, block_s = rng.integers(1, 400, n).astype(float), rng.uniform(0, 1e3, n)
    out = timeline(start, end, tokens, block_s, 130.0, replicas, replica_bytes, bins=bins)
    edges = np.linspace(0.0, 130.0, bins + 1)
    overlap = np.clip(np.minimum(end[:, None], edges[None, 1:]) - np.maximum(start[:, None], edges[None, :-1]), 0, None)
    overlap /= np.maximum(end - start, 1e-30)[:, None]
    width = 130.0 / bins
    assert np.allclose(out["output_tokens_per_s"], tokens @ overlap / width, rtol=1e-12, atol=0)
    assert np.allclose(out["kv_bytes"], block_s @ overlap / width / replicas * replica_bytes, rtol=1e-12, atol=0)
    # nothing is lost: every non-empty segment's tokens are in some bin
    assert np.isclose(sum(out["output_tokens_per_s"]) * width, tokens[end > start].sum(), rtol=1e-12)
