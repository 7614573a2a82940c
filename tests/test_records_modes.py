"""``--records full | summary | none``: the same figures from rows, from running totals and from
histograms, and clear errors where an output needs what was not kept."""

from __future__ import annotations

import numpy as np
import pytest

from kinsim.cli import main
from kinsim.engine.segment_totals import SegmentTotals
from kinsim.engine.simulation import FULL_RECORDS_LIMIT, default_records
from kinsim.engine.streaming import QUANTILE_RELATIVE_ERROR, LogHistogram
from kinsim.runner import simulate

from .conftest import HARDWARE, WORKLOADS
from .test_engine import H100, workload


def _leaves(summary: dict, prefix: str = ""):
    for key, value in summary.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def _mixed_workload():
    return workload(**{"requests.problems": 30, "requests.samples": 3, "deployment.data_parallel": 3,
                       "requests.output_tokens": {"dist": "uniform", "low": 5, "high": 120},
                       "requests.arrival": {"process": "poisson", "rate": "40 /s"}, "requests.warmup": 4})


def test_summary_and_none_give_the_full_records_figures():
    w = _mixed_workload()
    full, summary, none = (simulate(w, H100, records=mode) for mode in ("full", "summary", "none"))
    assert (full["records"], summary["records"], none["records"]) == ("full", "summary", "none")
    reference = dict(_leaves(full.to_dict()))
    for result, exact_latencies in ((summary, True), (none, False)):
        for path, value in _leaves(result.to_dict()):
            if path.startswith(("series", "inputs", "wall_time_s", "records", "engine.events")):
                continue
            expected = reference[path]
            if path.startswith("latency.") and not exact_latencies and value is not None:
                # the histogram's percentiles: within its documented error; means, counts exact
                tolerance = 1e-12 if path.endswith("mean") else QUANTILE_RELATIVE_ERROR
                assert value == pytest.approx(expected, rel=tolerance), path
            elif isinstance(expected, float):
                assert value == pytest.approx(expected, rel=1e-12, abs=1e-300), path
            else:
                assert value == expected, path
    # summary keeps every request: its latency quantiles are the full ones
    assert summary["series.latency_quantiles.ttft"] == full["series.latency_quantiles.ttft"]


def test_summary_series_keep_their_totals():
    w = _mixed_workload()
    full, summary = simulate(w, H100, records="full"), simulate(w, H100, records="summary")
    width = full["series.t_s"][1] - full["series.t_s"][0]
    for key in ("output_tokens_per_s", "kv_bytes"):
        assert sum(summary[f"series.{key}"]) * width == pytest.approx(sum(full[f"series.{key}"]) * width, rel=1e-9)


def test_segment_totals_rebin_a_uniform_rate_exactly():
    totals = SegmentTotals(replicas=1)
    # 100 segments of 0.37 s each producing 37 tokens: 100 tokens/s from 0 to 37 s
    for k in range(100):
        totals.append(0, 0.37 * k, 0.37 * (k + 1), 1, 1, 0, 37, 1, 0.37, (0.0,) * 6, (0.0,) * 6, (0.0,) * 6,
                      0.0, 0.0, 0.0, 0.0, 0.0)
    assert totals.bin_width_s > 37.0 / 4096  # the grid grew to hold the run
    edges, tokens, _ = totals.series(37.0, 10)
    assert tokens == pytest.approx([370.0] * 10, rel=1e-9)
    assert totals.tokens_out == 3700 and totals.steps == 100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segment_totals_take_a_block_of_rows_as_they_take_them_one_by_one(seed):
    # SegmentTotals.append_columns sums a block as arrays (np.cumsum in order, the bins by np.add.at in row order):
    # every total and bin the same bits as append row by row, across the grid's growth, rows of no duration,
    # rows within one fine bin and rows over many, on replicas that appear or not in a block
    from kinsim.engine.records import SEGMENT_COLUMNS

    rng = np.random.default_rng(seed)
    rows = 3000
    start = np.sort(rng.uniform(0.0, 60.0, rows))
    duration = np.where(rng.random(rows) < 0.1, 0.0, rng.exponential(0.05, rows) * rng.choice([1, 30], rows))
    classes = 6
    columns = {"replica": rng.integers(0, 5, rows), "start_s": start, "end_s": start + duration,
               "steps": rng.integers(1, 300, rows), "decode_seqs": rng.integers(0, 64, rows),
               "prefill_tokens": rng.integers(0, 4096, rows), "tokens_out": rng.integers(0, 20000, rows),
               "kv_peak_blocks": rng.integers(0, 9000, rows), "kv_block_s": rng.uniform(0.0, 500.0, rows),
               "class_s": rng.uniform(0.0, 1.0, (rows, classes)), "class_flops": rng.uniform(0, 1e15, (rows, classes)),
               "class_bytes": rng.uniform(0, 1e12, (rows, classes)), "flops": rng.uniform(0, 1e15, rows),
               "hbm_bytes": rng.uniform(0, 1e12, rows), "compute_s": rng.uniform(0, 1, rows),
               "memory_s": rng.uniform(0, 1, rows), "network_s": rng.uniform(0, 1, rows),
               "host_link_s": rng.uniform(0, 1e-3, rows), "host_link_bytes": rng.uniform(0, 1e9, rows)}
    assert set(columns) == set(SEGMENT_COLUMNS)
    blocks, rowwise = SegmentTotals(replicas=6), SegmentTotals(replicas=6)
    for lo, hi in ((0, 1), (1, 700), (700, 701), (701, rows)):
        blocks.append_columns({name: values[lo:hi] for name, values in columns.items()})
    for row in zip(*(columns[name].tolist() for name in SEGMENT_COLUMNS)):
        rowwise.append(*row)
    assert rowwise.bin_width_s > 1e-3 and rowwise.busy_s[5] == 0.0  # the grid grew; one replica had no row
    assert vars(blocks).keys() == vars(rowwise).keys()
    for key, value in vars(blocks).items():
        assert np.array_equal(value, vars(rowwise)[key]), key


def test_log_histogram_percentiles_are_within_the_documented_error():
    rng = np.random.default_rng(3)
    values = rng.lognormal(mean=-3.0, sigma=1.5, size=20_000)
    histogram = LogHistogram()
    for value in values:
        histogram.add(float(value))
    assert histogram.mean == pytest.approx(values.mean(), rel=1e-12)
    for p in (0, 1, 50, 90, 99, 99.9, 100):
        exact = float(np.percentile(values, p))
        assert abs(histogram.percentile(p) - exact) <= QUANTILE_RELATIVE_ERROR * exact * 1.0001, p
    assert QUANTILE_RELATIVE_ERROR < 1e-3


def test_the_default_switches_to_summary_above_two_million_requests():
    assert FULL_RECORDS_LIMIT == 2_000_000
    assert default_records(FULL_RECORDS_LIMIT) == "full" and default_records(FULL_RECORDS_LIMIT + 1) == "summary"
    assert simulate(workload(), H100)["records"] == "full"


def test_a_table_that_was_not_kept_is_a_clear_error():
    result = simulate(workload(), H100, records="summary")
    with pytest.raises(ValueError, match="--records full"):
        _ = result.steps
    assert len(result.requests) == 6
    with pytest.raises(ValueError, match="--records summary"):
        _ = simulate(workload(), H100, records="none").requests


@pytest.mark.parametrize("records, option, needs", [("summary", "--steps-csv", "full"), ("none", "--trace", "full"),
                                                    ("none", "--requests-csv", "summary")])
def test_an_output_that_needs_more_records_is_refused_before_running(tmp_path, capsys, records, option, needs):
    out = tmp_path / "out"
    code = main(["run", str(WORKLOADS / "aime_longcot.yaml"), "--hw", str(HARDWARE / "h100.yaml"),
                 "--records", records, option, str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and option in err and f"--records {needs}" in err and "Traceback" not in err
    assert not out.exists()


def test_the_step_table_option_alone_keeps_full_records(tmp_path):
    out = tmp_path / "steps.csv"
    code = main(["run", str(WORKLOADS / "aime_longcot.yaml"), "--hw", str(HARDWARE / "h100.yaml"),
                 "--set", "requests.problems=2", "--set", "requests.max_output_tokens=300", "--steps-csv", str(out),
                 "--quiet"])
    assert code == 0 and len(out.read_text().splitlines()) > 1
