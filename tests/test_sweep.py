"""``kinsim sweep``: points stored by content, reruns skip, failures recorded, local = Dask cluster."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kinsim.cli import main
from kinsim.runner import simulate
from kinsim.sweep.execute import resolve, run_sweep, sweep_rows
from kinsim.sweep.spec import load_sweep
from kinsim.sweep.store import ResultStore

from .conftest import HARDWARE, WORKLOADS

SMALL = "{requests.problems: 2, requests.samples: 4, requests.max_output_tokens: 300}"


def write_sweep(directory: Path, axes: str, extra: str = "") -> Path:
    path = directory / "sweep.yaml"
    path.write_text(f"name: test_sweep\nworkload: {WORKLOADS / 'aime_bon32.yaml'}\n"
                    f"hardware: {HARDWARE / 'h100.yaml'}\noverrides: {SMALL}\naxes:\n{axes}{extra}")
    return path


AXES = '  hw.gpu.memory.bandwidth: ["2 TB/s", "4 TB/s"]\n  deployment.max_num_seqs: [16, 64]\n'


def test_grid_points_are_stored_with_the_run_figures_and_a_rerun_skips_them(tmp_path: Path, capsys):
    sweep_file = write_sweep(tmp_path, AXES)
    db = tmp_path / "results.sqlite"
    assert main(["sweep", str(sweep_file), "--db", str(db), "--workers", "1", "--csv", str(tmp_path / "out.csv"),
                 "--plot", str(tmp_path / "plot.png")]) == 0
    first = capsys.readouterr().out
    assert "4 points, 4 simulated now, 0 from results.sqlite, 0 failed" in first
    frame = pd.read_csv(tmp_path / "out.csv")
    assert len(frame) == 4 and list(frame["status"]) == ["ok"] * 4
    # each row holds what kinsim run gives for that point
    expected = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml",
                        {"requests.problems": 2, "requests.samples": 4, "requests.max_output_tokens": 300,
                         "hw.gpu.memory.bandwidth": "4 TB/s", "deployment.max_num_seqs": 16})
    row = frame[(frame["hw.gpu.memory.bandwidth"] == "4 TB/s") & (frame["deployment.max_num_seqs"] == 16)].iloc[0]
    assert row["throughput.tasks_per_s"] == pytest.approx(expected["throughput.tasks_per_s"], rel=1e-12)
    assert row["hw.gpu.memory.bandwidth.si"] == 4e12
    assert main(["sweep", str(sweep_file), "--db", str(db), "--quiet"]) == 0
    assert "4 points, 0 simulated now, 4 from results.sqlite" in capsys.readouterr().out
    # a new value on an axis runs only the new points
    write_sweep(tmp_path, AXES.replace('"4 TB/s"]', '"4 TB/s", "6 TB/s"]'))
    assert main(["sweep", str(sweep_file), "--db", str(db), "--quiet"]) == 0
    assert "6 points, 2 simulated now, 4 from results.sqlite" in capsys.readouterr().out


def test_plot_draws_the_metric_against_the_axis_in_its_unit(tmp_path: Path):
    from kinsim.cli.sweep import plot_sweep

    sweep = load_sweep(write_sweep(tmp_path, '  hw.gpu.memory.bandwidth: ["2 TB/s", "3 TB/s", "5 TB/s"]\n'))
    store = ResultStore(tmp_path / "r.sqlite")
    run_sweep(sweep, store)
    rows = sweep_rows(sweep, store)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_sweep(sweep, rows, "hw.gpu.memory.bandwidth", "throughput.tasks_per_s")
    FigureCanvasAgg(fig).draw()  # tick labels and their offset text exist once drawn
    ax = fig.axes[0]
    (line,) = ax.lines
    # 2e12 B/s is drawn as 2 on an axis labelled in TB/s, with no "1e12" offset above the ticks
    assert list(line.get_xdata()) == [2.0, 3.0, 5.0]
    assert ax.get_xlabel() == "hw.gpu.memory.bandwidth (TB/s)"
    assert ax.get_ylabel() == "throughput.tasks_per_s (tasks/s)"
    assert ax.xaxis.get_offset_text().get_text() == ax.yaxis.get_offset_text().get_text() == ""
    assert [t.get_text() for t in ax.get_xticklabels()][:2] != ["", ""]
    assert list(line.get_ydata()) == [r["throughput.tasks_per_s"] for r in rows]
    assert line.get_ydata()[0] < line.get_ydata()[-1]  # more bandwidth, more tasks/s
    # bytes go in the unit of the largest value: peak KV of a few GB on an axis in GB
    ax = plot_sweep(sweep, rows, "hw.gpu.memory.bandwidth", "kv.peak_bytes").axes[0]
    peak = [r["kv.peak_bytes"] for r in rows]
    unit, factor = next((u, f) for u, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)) if max(peak) >= f)
    assert ax.get_ylabel() == f"kv.peak_bytes ({unit})"
    assert list(ax.lines[0].get_ydata()) == pytest.approx([p / factor for p in peak])


def test_sweep_table_shows_each_figure_in_its_unit(tmp_path: Path):
    from kinsim.cli.sweep import table_lines

    sweep = load_sweep(write_sweep(tmp_path, '  hw.gpu.memory.bandwidth: ["2 TB/s", "5 TB/s"]\n'))
    rows = [{"hw.gpu.memory.bandwidth": "2 TB/s", "status": "ok", "kv.peak_bytes": 5.483e10,
             "throughput.output_tokens_per_s": 11637.4, "latency.task.e2e.p99": 0.0456, "utilization.hbm": 0.4567,
             "energy_j": 5e6},
            {"hw.gpu.memory.bandwidth": "5 TB/s", "status": "failed", "reason": "does not fit"}]
    metrics = ["kv.peak_bytes", "throughput.output_tokens_per_s", "latency.task.e2e.p99", "utilization.hbm",
               "energy_j"]
    header, ok, failed = table_lines(sweep, rows, metrics)
    # 5.483e10 B = 54.83 GB; 0.0456 s = 45.6 ms; 5e6 J / 3.6e6 J per kWh = 1.3889 kWh
    assert ok.split() == ["2", "TB/s", "ok", "54.83", "GB", "11,637", "tokens/s", "45.6", "ms", "45.7%", "1.389",
                          "kWh"]
    assert failed.split() == ["5", "TB/s", "failed", "does", "not", "fit"]
    assert "e+" not in "\n".join([header, ok])


def test_failing_points_are_recorded_with_their_reason_and_do_not_stop_the_sweep(tmp_path: Path, capsys):
    sweep_file = write_sweep(tmp_path, '  hw.gpu.memory.capacity: ["10 GB", "80 GB"]\n  deployment.router: '
                                       '[least_loaded, nonsense]\n', extra="mode: zip\n")
    # both points fail, each with its reason recorded; a sweep where every point failed is exit 2, not 0
    assert main(["sweep", str(sweep_file), "--db", str(tmp_path / "r.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "every point failed (2 of 2)" in err and "does not fit" in err
    sweep = load_sweep(sweep_file)
    store = ResultStore(tmp_path / "r.sqlite")
    rows = sweep_rows(sweep, store)
    assert rows[0]["status"] == "failed" and "does not fit" in rows[0]["reason"]
    assert rows[1]["status"] == "failed" and "deployment.router" in rows[1]["reason"]


def test_sweep_keys_are_the_resolved_inputs_not_the_spelling(tmp_path: Path):
    a = load_sweep(write_sweep(tmp_path, '  hw.gpu.memory.bandwidth: ["3.35 TB/s", "3350 GB/s"]\n'))
    first, second = resolve(a)
    assert first.key == second.key  # the same hardware, written two ways


def test_local_workers_and_a_dask_local_cluster_give_equal_results(tmp_path: Path):
    distributed = pytest.importorskip("distributed", reason="needs the distributed extra")
    sweep = load_sweep(write_sweep(tmp_path, AXES))
    local = ResultStore(tmp_path / "local.sqlite")
    run_sweep(sweep, local, workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster:
        remote = ResultStore(tmp_path / "dask.sqlite")
        report = run_sweep(sweep, remote, scheduler=cluster.scheduler_address)
    assert report.ran == 4 and report.failed == 0
    assert sweep_rows(sweep, local) == sweep_rows(sweep, remote)


def test_bad_sweep_files_are_exit_2(tmp_path: Path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(f"workload: {WORKLOADS / 'aime_bon32.yaml'}\nhardware: {HARDWARE / 'h100.yaml'}\naxes: {{}}\n")
    assert main(["sweep", str(path)]) == 2
    assert "axes" in capsys.readouterr().err
    path.write_text(f"workload: nowhere.yaml\nhardware: {HARDWARE / 'h100.yaml'}\naxes: {{seed: [1]}}\n")
    assert main(["sweep", str(path)]) == 2
    assert "workload" in capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["--y", "latency.task.p99"], ["--y: not a figure a run reports", "latency.task.e2e.p99"]),
    (["--metrics", "throughput.tasks_per_s,series.t_s"], ["--metrics: not a figure a run reports", "series.t_s"]),
    (["--db", "{tmp}/text.sqlite"], ["--db: not a kinsim results file"]),
])
def test_bad_sweep_options_are_one_line_exit_2_before_any_point_runs(tmp_path: Path, capsys, args, words):
    sweep_file = write_sweep(tmp_path, AXES)
    (tmp_path / "text.sqlite").write_text("these bytes are not an SQLite database " * 4)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["sweep", str(sweep_file), "--quiet", *(a.replace("{tmp}", str(tmp_path)) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for word in words:
        assert word in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no results file made


def test_a_change_to_kinsims_source_changes_every_points_key(monkeypatch):
    from kinsim.sweep import store

    inputs = {"workload": {"seed": 1}, "hardware": {"name": "h100"}}
    before = store.content_key(inputs)
    assert store.content_key(inputs) == before
    monkeypatch.setattr(store, "source_digest", lambda: "0" * 64)
    assert store.content_key(inputs) != before
    monkeypatch.undo()
    assert len(store.source_digest()) == 64 and store.content_key(inputs) == before


def test_validate_checks_a_sweep_point_by_point_and_a_suite_case_by_case(tmp_path: Path, capsys):
    """``kinsim validate`` knows sweep files (every point's inputs resolved) and regression suites."""
    from .conftest import ROOT

    files = [str(ROOT / "examples" / "sweep_hbm_bandwidth.yaml"), str(ROOT / "regress" / "suite.yaml")]
    assert main(["validate", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("sweep_hbm_bandwidth.yaml (sweep, 5 points)")  # five bandwidths in the file
    assert out[1].endswith("suite.yaml (suite, 5 cases)")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\nworkload: {ROOT / 'workloads/aime_bon32.yaml'}\n"
                   f"hardware: {ROOT / 'hardware/h100.yaml'}\n"
                   'axes:\n  hw.gpu.memory.bandwidth: ["2 TB/s", "-1 TB/s", "3 TB/s"]\n')
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"kinsim: error: {bad}: point 2 of 3 (")
    assert "gpu.memory.bandwidth" in err[0]
