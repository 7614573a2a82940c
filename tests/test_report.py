"""Timelines, plots and exported tables: checked against the run they came from."""

from __future__ import annotations

import json
from collections import defaultdict
from numbers import Number
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kinsim.cli import main
from kinsim.ops.op import OP_CLASSES
from kinsim.report.plots import plot_breakdown, plot_latency, plot_roofline, plot_timeline, write_plots
from kinsim.report.trace import REPLICA_PID, chrome_trace
from kinsim.runner import simulate

from .conftest import HARDWARE, WORKLOADS

SMALL = {"requests.problems": 3, "requests.samples": 4, "requests.max_output_tokens": 400}


@pytest.fixture(scope="module")
def tp_run():
    """A small run with tensor parallelism (links in use), step by step, with op records in a window."""
    return simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml",
                    {**SMALL, "deployment.tensor_parallel": 2, "deployment.data_parallel": 2}, op_window=(0.5, 0.6),
                    exact_steps=True)


@pytest.fixture(scope="module")
def aime_run():
    return simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml")


# ----------------------------------------------------------------------------------- trace format
REQUIRED = {"X": {"name", "ph", "ts", "dur", "pid", "tid"}, "C": {"name", "ph", "ts", "pid", "args"},
            "b": {"name", "ph", "cat", "id", "ts", "pid"}, "e": {"name", "ph", "cat", "id", "ts", "pid"},
            "M": {"name", "ph", "pid", "args"}}


def check_trace_format(trace: dict) -> None:
    events = trace["traceEvents"]
    last_ts: dict[tuple, float] = {}
    open_async: dict[tuple, list[str]] = defaultdict(list)
    for event in events:
        phase = event["ph"]
        assert phase in REQUIRED, event
        assert REQUIRED[phase] <= event.keys(), event
        if phase == "M":
            continue
        assert isinstance(event["ts"], Number) and event["ts"] >= 0
        if phase == "X":
            assert event["dur"] >= 0
            track = ("X", event["pid"], event["tid"])
        elif phase == "C":
            assert event["args"] and all(isinstance(v, Number) for v in event["args"].values()), event
            track = ("C", event["pid"], event["name"])
        else:
            track = ("async", event["pid"], event["cat"], event["id"])
            if phase == "b":
                open_async[track].append(event["name"])
            else:
                assert open_async[track] and open_async[track].pop() == event["name"], event
        assert event["ts"] >= last_ts.get(track, 0.0), (track, event)
        last_ts[track] = event["ts"]
    assert not any(open_async.values()), "unbalanced async slices"


def test_trace_follows_the_format_rules_and_holds_the_run(tp_run):
    trace = chrome_trace(tp_run.records, tp_run.summary)
    check_trace_format(trace)
    events = trace["traceEvents"]
    steps = [e for e in events if e["ph"] == "X" and e["pid"] >= REPLICA_PID]
    busy = sum(seg.end_s - seg.start_s for seg in tp_run.records.segments)
    assert sum(e["dur"] for e in steps) == pytest.approx(busy * 1e6, rel=1e-9)
    requests = {e["id"] for e in events if e["ph"] == "b" and e["name"] == "request"}
    assert len(requests) == len(tp_run.records.sequences)
    links = [e for e in events if e["ph"] == "X" and e.get("cat") == "link"]
    assert links and all(0 < e["args"]["busy"] <= 1 for e in links)
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert {"GPU n0.gpu0 (replica 0)", "GPU n0.gpu3 (replica 1)", "replica 0", "replica 1"} <= names


def test_op_slices_only_inside_the_window_and_they_add_up_to_their_steps(tp_run):
    trace = chrome_trace(tp_run.records, tp_run.summary, window=(0.5, 0.6))
    check_trace_format(trace)
    kernels = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["tid"] == 3]
    assert kernels
    assert all(e["ts"] + e["dur"] >= 0.5e6 and e["ts"] <= 0.6e6 for e in kernels)
    # the kernels recorded for a segment inside the window tile it (up to the clock's 0.5 ns per step)
    inside = [seg for seg in tp_run.records.segments if 0.5 <= seg.start_s and seg.end_s <= 0.6]
    assert inside
    for seg in inside:
        ops = [op for op in tp_run.records.ops if op.replica == seg.replica and seg.start_s <= op.start_s < seg.end_s]
        assert sum(op.duration_s for op in ops) == pytest.approx(seg.end_s - seg.start_s, abs=seg.steps * 1e-9)


def test_aime_trace_is_under_50_mb_and_valid(aime_run, tmp_path: Path):
    path = tmp_path / "trace.json"
    code = main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"), "--quiet",
                 "--trace", str(path)])
    assert code == 0
    assert path.stat().st_size < 50e6
    check_trace_format(json.loads(path.read_text()))


def test_trace_ops_needs_a_window(capsys):
    code = main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"), "--trace-ops"])
    assert code == 2 and "--trace-window" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- plots
def test_breakdown_bars_are_the_run_breakdown(aime_run):
    ax = plot_breakdown(aime_run.summary).axes[0]
    widths = [bar.get_width() for bar in ax.patches]
    busy = [c for c in OP_CLASSES if aime_run.summary["breakdown_s"][c] > 0]  # classes without time get no bar
    assert [t.get_text() for t in ax.get_yticklabels()] == busy
    assert widths == pytest.approx([aime_run.summary["breakdown_s"][c] for c in busy])
    assert "time (replica-seconds)" in ax.get_xlabel() and "h100" in ax.get_title()


def test_latency_cdfs_are_the_percentiles_of_the_requests(aime_run):
    records = aime_run.records.sequences
    ttft = np.array([s.first_token_s - s.arrival_s for s in records]) * 1e3
    e2e = np.array([s.finish_s - s.arrival_s for s in records])
    axes = plot_latency(aime_run.summary).axes
    x_ttft, y = axes[0].lines[0].get_data()
    assert x_ttft == pytest.approx(np.percentile(ttft, np.arange(101)))
    assert y[0] == 0 and y[-1] == 1
    assert axes[2].lines[0].get_xdata() == pytest.approx(np.percentile(e2e, np.arange(101)))
    assert axes[0].get_xlabel() == "request TTFT (ms)"


def test_roofline_places_each_class_at_its_intensity_and_rate(aime_run):
    ax = plot_roofline(aime_run.summary).axes[0]
    segments = aime_run.records.segments
    i = OP_CLASSES.index("attention")
    flops = sum(seg.class_flops[i] for seg in segments)
    nbytes = sum(seg.class_bytes[i] for seg in segments)
    seconds = sum(seg.class_s[i] for seg in segments)
    (point,) = [line for line in ax.lines if line.get_label() == "attention"]
    assert point.get_xdata()[0] == pytest.approx(flops / nbytes)
    assert point.get_ydata()[0] == pytest.approx(flops / seconds)
    roof = ax.lines[0]
    assert max(roof.get_ydata()) == pytest.approx(aime_run.summary["ceilings"]["peak_flop_per_s"])
    # memory-bound decode attention sits under the bandwidth slope
    assert flops / seconds < aime_run.summary["ceilings"]["hbm_bandwidth"] * flops / nbytes


def test_timeline_integrates_to_the_tokens_generated(aime_run):
    top, bottom = plot_timeline(aime_run.summary).axes
    t, rate = top.lines[0].get_data()
    width = t[1] - t[0]
    assert float(np.sum(rate) * width) == pytest.approx(aime_run["tokens.generated"], rel=1e-9)
    kv = bottom.lines[0].get_ydata() * 1e9
    mean = float(np.mean(kv))  # equal bins: their mean is the time-mean
    assert mean == pytest.approx(aime_run["kv.mean_bytes"], rel=1e-9)
    assert bottom.lines[1].get_ydata()[0] * 1e9 == pytest.approx(aime_run["kv.capacity_bytes"])


def test_write_plots_writes_png_and_svg(tp_run, tmp_path: Path):
    paths = write_plots(tp_run.summary, tmp_path / "plots")
    assert sorted(p.name for p in paths) == sorted(f"{n}.{f}" for n in ("breakdown", "timeline", "latency",
                                                                          "roofline") for f in ("png", "svg"))
    for path in paths:
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if path.suffix == ".png" else b"<?xml" in head


# ----------------------------------------------------------------------------------- tables
def test_requests_and_steps_csv_match_the_records(tmp_path: Path):
    requests, steps = tmp_path / "requests.csv", tmp_path / "steps.csv"
    code = main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"), "--quiet",
                 *(a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")),
                 "--requests-csv", str(requests), "--steps-csv", str(steps)])
    assert code == 0
    table = pd.read_csv(requests)
    result = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml", SMALL)
    assert len(table) == 12 and table["generated_tokens"].sum() == result["tokens.generated"]
    assert table["finish_s"].tolist() == pytest.approx([s.finish_s for s in result.records.sequences])
    step_table = pd.read_csv(steps)
    assert step_table["tokens_out"].sum() == result["tokens.generated"]
    assert (step_table["end_s"] - step_table["start_s"]).sum() == pytest.approx(
        sum(result.to_dict()["breakdown_s"].values()), rel=1e-6)
    assert result.breakdown.loc["attention", "seconds"] == result["breakdown_s.attention"]
    assert result.breakdown["share"].sum() == pytest.approx(1.0)
