"""Issue 16, classes 1, 7 and 8: no exit 0 with garbage, messages that name the files and the right key,
plots that survive any name, and throughput that counts only what was delivered.

Every test runs a tiny workload (a few requests) or stops before simulating anything.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from kinsim.cli import main
from kinsim.engine.clock import MAX_RUN_S, MAX_TICKS, TICKS_PER_S
from kinsim.errors import SpecError
from kinsim.limits import MAX_TIME_S, MAX_TOKENS
from kinsim.workload.distributions import Constant, Listed, LogNormal, Normal, Uniform

from .conftest import HARDWARE

H100 = str(HARDWARE / "h100.yaml")
BOUND = f"{MAX_TOKENS:,}"  # how messages write the token bound: 16,777,216


def write_workload(directory: Path, requests: str, name: str = "tiny", model: str = "Qwen3-8B") -> Path:
    """A workload file: ``requests`` is the YAML body of its requests mapping (indented two spaces)."""
    path = directory / "w.yaml"
    path.write_text(f"name: '{name}'\nmodel: {model}\nrequests:\n{requests}")
    return path


GENERATED = ("  kind: best_of_n\n  problems: 2\n  samples: 2\n  prompt_tokens: 100\n  output_tokens: 20\n"
             "  max_output_tokens: 200\n")


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# ----------------------------------------------------------------------------------- class 1: draws

def test_the_token_bound_is_2_to_the_24():
    assert MAX_TOKENS == 2**24 == 16_777_216


#: Every distribution kind with parameters whose draws leave 1..MAX_TOKENS, and the parameter blamed.
OVERFLOWING = [
    ("{dist: constant, value: 4398046511104}", "value"),          # 2**42
    ("{dist: uniform, low: 1, high: 4398046511104}", "high"),
    ("{dist: normal, mean: 1.0e+30, std: 1}", "mean"),
    ("{dist: normal, mean: 100, std: 1.0e+12}", "std"),
    ("{dist: lognormal, median: 11000, sigma: 60}", "sigma"),     # the example: most draws overflow int64
    ("{dist: lognormal, median: 1.0e+30, sigma: 0.5}", "median"),
    ("{dist: list, values: [5, 4398046511104, 7]}", "values[1]"),
]


@pytest.mark.parametrize("field", ["prompt_tokens", "output_tokens"])
@pytest.mark.parametrize("dist, blamed", OVERFLOWING)
def test_a_distribution_that_overflows_is_refused_up_front_with_its_key(tmp_path: Path, capsys, field, dist, blamed):
    body = GENERATED.replace(f"  {field}: {'100' if field == 'prompt_tokens' else '20'}\n", f"  {field}: {dist}\n")
    assert dist in body
    workload = write_workload(tmp_path, body)
    out = tmp_path / "run.json"
    assert main(["run", str(workload), "--hw", H100, "--json", str(out)]) == 2
    err = one_error_line(capsys)
    assert f"w.yaml: requests.{field}.{blamed}:" in err and BOUND in err
    assert not out.exists()


def test_the_up_front_test_is_the_one_in_a_billion_quantile():
    assert 0.5 * math.erfc(5.998 / math.sqrt(2)) == pytest.approx(1e-9, rel=0.01)  # the normal's tail past 5.998
    # log-normal: median x exp(5.998 sigma) must stay within 2**24: with median 11000, ln(2**24 / 11000)
    # / 5.998 = 7.330 / 5.998 = 1.222, so sigma 1.22 passes and sigma 1.23 does not
    assert 11000 * math.exp(5.998 * 1.22) <= MAX_TOKENS < 11000 * math.exp(5.998 * 1.23)
    LogNormal(median=11000, sigma=1.22)
    with pytest.raises(SpecError, match="quantile"):
        LogNormal(median=11000, sigma=1.23)
    # normal: mean + 5.998 std; constants, uniform and lists: their largest value
    Normal(mean=1e7, std=(MAX_TOKENS - 1e7) / 5.998 * 0.999)
    with pytest.raises(SpecError):
        Normal(mean=1e7, std=(MAX_TOKENS - 1e7) / 5.998 * 1.001)
    Constant(value=MAX_TOKENS), Uniform(low=1, high=MAX_TOKENS), Listed(values=(1, MAX_TOKENS))
    for make in (lambda: Constant(value=MAX_TOKENS + 1), lambda: Uniform(low=1, high=MAX_TOKENS + 1),
                 lambda: Listed(values=(1, MAX_TOKENS + 1))):
        with pytest.raises(SpecError, match="16,777,216"):
            make()


class _Rigged:
    """A generator whose every float draw is ``value`` (what a distribution's far tail could give)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def normal(self, loc, scale, size):
        return np.full(size, self.value)

    def lognormal(self, mean, sigma, size):
        return np.full(size, self.value)


@pytest.mark.parametrize("dist", [Normal(mean=100, std=10), LogNormal(median=100, sigma=0.5)])
@pytest.mark.parametrize("draw", [np.inf, np.nan, 1e19, 2.0**31, -np.inf])
def test_every_draw_is_checked_in_float_before_the_int64_cast(dist, draw):
    # 1e19 cast to int64 wraps to a negative count; inf and NaN cast to -2**63. Each is an error instead.
    with pytest.raises(SpecError, match="outside 1 to 16,777,216"):
        dist.sample(_Rigged(draw), 3)


def test_an_out_of_range_draw_names_the_key_and_the_file(tmp_path: Path, monkeypatch):
    from kinsim.engine.simulation import Simulation
    from kinsim.hardware.load import load_hardware
    from kinsim.workload.load import load_workload

    body = GENERATED.replace("  output_tokens: 20\n", "  output_tokens: {dist: normal, mean: 20, std: 2}\n")
    workload = load_workload(write_workload(tmp_path, body))
    monkeypatch.setattr("kinsim.workload.generate.np.random.default_rng", lambda seed: _Rigged(1e19))
    with pytest.raises(SpecError) as error:
        Simulation(workload, load_hardware(H100), workload_file="w.yaml")
    assert str(error.value).startswith("w.yaml: requests.output_tokens: drew 1e+19 tokens")


# ----------------------------------------------------------------------------------- class 1/8: arrivals

def test_the_clock_bound_is_where_float64_stops_holding_every_nanosecond():
    assert MAX_TICKS == 2.0**53 and MAX_RUN_S == 2**53 / 1e9 == pytest.approx(9_007_199.254740992)
    assert MAX_TICKS + 1 == MAX_TICKS  # one tick past the bound is lost: the clock would round
    assert (MAX_TICKS - 1) + 1 == MAX_TICKS and MAX_RUN_S * TICKS_PER_S == MAX_TICKS
    assert MAX_TIME_S == MAX_RUN_S / 2  # arrivals stop at half of it: the run after the last one stays exact


def test_poisson_arrivals_past_the_clock_are_refused_with_the_rate_key(tmp_path: Path, capsys):
    # 200 problems at 1e-5 /s: the last arrives near 200 / 1e-5 = 2e7 s, past 4.5e6 s
    body = GENERATED.replace("problems: 2", "problems: 200") + "  arrival: {process: poisson, rate: 1.0e-5 /s}\n"
    assert main(["run", str(write_workload(tmp_path, body)), "--hw", H100]) == 2
    err = one_error_line(capsys)
    assert "w.yaml: requests.arrival.rate:" in err and "2^52 ns" in err


TRACE_HEAD = "request_id,arrival_s,prompt_tokens,output_tokens\na,0,10,5\n"


@pytest.mark.parametrize("row, options, blamed", [
    ("b,1e20,10,5", "", "line 3.arrival_s: replays at 1e+20 s"),                   # the example
    ("b,4503600,10,5", "", "line 3.arrival_s: replays at 4.5036e+06 s"),          # just past 2^52 ns
    ("b,10,10,5", "  time_scale: 1.0e+6\n", "line 3.arrival_s: replays at 1e+07 s"),  # past it once scaled
    ("b,1,10,100000000000000000000", "", "line 3.output_tokens: must be at most 16,777,216"),  # int64 overflow
    ("b,1,4294967296,5", "  max_prompt_tokens: 100\n", "line 3.prompt_tokens: must be at most 16,777,216"),
])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_trace_rows_out_of_range_are_refused_naming_the_line(tmp_path: Path, capsys, row, options, blamed, suffix):
    trace = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        trace.write_text(TRACE_HEAD + row + "\n")
    else:
        rows = [line.split(",") for line in (TRACE_HEAD + row).splitlines()[1:]]
        trace.write_text("".join(json.dumps({"request_id": r, "arrival_s": float(t), "prompt_tokens": int(p),
                                             "output_tokens": int(o)}) + "\n" for r, t, p, o in rows))
        blamed = blamed.replace("line 3.", "line 2.")  # JSONL has no header line
    workload = write_workload(tmp_path, f"  kind: trace\n  path: {trace.name}\n{options}")
    assert main(["run", str(workload), "--hw", H100]) == 2
    err = one_error_line(capsys)
    assert f"{trace}: {blamed}" in err


def test_a_native_trace_spanning_more_than_52_days_is_refused(tmp_path: Path, capsys):
    trace = tmp_path / "azure.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                     "2024-11-16 18:15:46.6805900,374,44\n")
    workload = write_workload(tmp_path, f"  kind: trace\n  path: {trace.name}\n  format: azure\n")
    assert main(["run", str(workload), "--hw", H100]) == 2
    # 2024 is a leap year: 366 days later, 31,622,400 s
    assert "azure.csv: line 3.TIMESTAMP: replays at 3.16224e+07 s" in one_error_line(capsys)


def test_the_engine_refuses_requests_it_cannot_time_exactly_whoever_built_them(tmp_path: Path):
    from kinsim.engine.simulation import Simulation
    from kinsim.hardware.load import load_hardware
    from kinsim.workload.load import load_workload
    from kinsim.workload.request import Request

    workload, hw = load_workload(write_workload(tmp_path, GENERATED)), load_hardware(H100)
    for bad, words in ((Request("late", "late", 1e20, 10, 5), "request late.arrival_s: must be from 0 s"),
                       (Request("nan", "nan", float("nan"), 10, 5), "request nan.arrival_s"),
                       (Request("long", "long", 0.0, 10, 2**40), "request long.output_tokens: must be from 1")):
        with pytest.raises(SpecError, match=words):
            Simulation(workload, hw, requests=[Request("ok", "ok", 0.0, 10, 5), bad])


def test_a_run_whose_clock_would_pass_the_bound_stops_with_an_error(tmp_path: Path, capsys, monkeypatch):
    # Arrivals stop at half the clock's range, so no input reaches the engine's own guard; move the guard to
    # 10 s instead: a request arriving at 9 s that decodes 20,000 tokens at several ms each runs past it.
    monkeypatch.setattr("kinsim.engine.simulation.MAX_TICKS", 10e9)
    (tmp_path / "t.csv").write_text(TRACE_HEAD + "b,9,10,20000\n")
    workload = write_workload(tmp_path, "  kind: trace\n  path: t.csv\n")
    assert main(["run", str(workload), "--hw", H100, "--json", str(tmp_path / "run.json")]) == 2
    assert "w.yaml: the simulated time would pass 2^53 ns" in one_error_line(capsys)
    assert not (tmp_path / "run.json").exists()


# ----------------------------------------------------------------------------------- class 1: regress

def write_suite(directory: Path, tolerance: str, where: str = "suite") -> Path:
    workload = write_workload(directory, GENERATED)
    guarded = f"{{throughput.tasks_per_s: {tolerance}}}"
    path = directory / "suite.yaml"
    path.write_text("name: t\n" + (f"metrics: {guarded}\n" if where == "suite" else "")
                    + f"cases:\n  small:\n    workload: {workload}\n    hardware: {H100}\n"
                    + (f"    metrics: {guarded}\n" if where == "case" else ""))
    return path


@pytest.mark.parametrize("where, path", [("suite", "metrics"), ("case", "cases.small.metrics")])
@pytest.mark.parametrize("tolerance", [".nan", ".inf", "-.inf", "-0.01", "1.0e+400", "true", "'1%'"])
def test_a_tolerance_that_is_not_a_finite_number_0_or_more_is_refused(tmp_path: Path, capsys, tolerance, where, path):
    suite = write_suite(tmp_path, tolerance, where)
    assert main(["regress", str(suite), "--update"]) == 2  # refused before any case runs
    err = one_error_line(capsys)
    assert f"suite.yaml: {path}.throughput.tasks_per_s: must be a relative tolerance, a finite number" in err
    assert not (tmp_path / "suite.baseline.json").exists()


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_baseline_figure_that_is_not_finite_is_refused(tmp_path: Path, capsys, value):
    suite = write_suite(tmp_path, "0.001")
    (tmp_path / "suite.baseline.json").write_text('{"cases": {"small": {"throughput.tasks_per_s": ' + value + "}}}")
    assert main(["regress", str(suite)]) == 2
    assert "suite.baseline.json: cases.small.throughput.tasks_per_s: expected a finite number" in one_error_line(capsys)


# ----------------------------------------------------------------------------------- class 1: sweep

def write_sweep(directory: Path, body: str) -> Path:
    path = directory / "s.yaml"
    path.write_text(f"name: s\nworkload: {write_workload(directory, GENERATED)}\nhardware: {H100}\n{body}")
    return path


@pytest.mark.parametrize("body, key, near", [
    ('axes:\n  hw.gpu.memory.bandwith: ["2 TB/s", "3 TB/s"]\n', "axes.hw.gpu.memory.bandwith",
     "hw.gpu.memory.bandwidth"),
    ("axes:\n  deployment.tensor_paralel: [1, 2]\n", "axes.deployment.tensor_paralel", "deployment.tensor_parallel"),
    ("axes:\n  attention.topk: [16, 32]\n", "axes.attention.topk", "attention.top_k"),
    ("axes:\n  requests.output_tokens.sigm: [0.5, 0.6]\n", "axes.requests.output_tokens.sigm",
     "requests.output_tokens.sigma"),
    ("overrides: {requests.problem: 2}\naxes:\n  seed: [0, 1]\n", "overrides.requests.problem", "requests.problems"),
])
def test_a_misspelt_sweep_key_is_refused_before_any_point_runs(tmp_path: Path, capsys, body, key, near):
    sweep = write_sweep(tmp_path, body)
    db = tmp_path / "r.sqlite"
    assert main(["sweep", str(sweep), "--db", str(db), "--workers", "1"]) == 2
    err = one_error_line(capsys)
    assert f"s.yaml: {key}: not a key of the workload" in err and f"did you mean {near}?" in err
    assert not db.exists()


@pytest.mark.parametrize("key", ["hw.gpu.memory.bandwidth", "hardware.gpu.compute.peak.fp8", "model", "model.kv_dtype",
                                 "model.preset", "attention.policy", "requests.arrival.rate", "seed",
                                 "requests.output_tokens.sigma"])
def test_every_real_key_is_accepted_as_an_axis(tmp_path: Path, key):
    from kinsim.sweep.spec import load_sweep

    assert list(load_sweep(write_sweep(tmp_path, f"axes:\n  {key}: [1]\n")).axes) == [key]


def test_a_sweep_whose_every_point_failed_is_not_exit_0(tmp_path: Path, capsys):
    sweep = write_sweep(tmp_path, 'axes:\n  hw.gpu.memory.capacity: ["1 GB", "2 GB"]\n')
    csv = tmp_path / "out.csv"
    assert main(["sweep", str(sweep), "--db", str(tmp_path / "r.sqlite"), "--workers", "1", "--csv", str(csv),
                 "--quiet"]) == 2
    err = one_error_line(capsys)
    assert "s.yaml: every point failed (2 of 2); the first:" in err and "does not fit" in err
    assert not csv.exists()


# ----------------------------------------------------------------------------------- class 1: calibration

MEASUREMENTS = ("kernel,impl,dtype,flops,bytes,time_s,gpus,kv_dtype\n"
                "gemm,torch.matmul,bf16,1e9,1e7,1e-4,,\n"
                "{row}\n")


@pytest.mark.parametrize("row, where", [
    ("gemm,torch.matmul,bf61,1e9,1e7,1e-4,,", "row 3.dtype"),            # priced as bf16 before
    ("gemm,torch.matmul,FP8,1e9,1e7,1e-4,,", "row 3.dtype"),
    ("attention_decode,triton,bf16,1e9,1e7,1e-4,,fp88", "row 3.kv_dtype"),  # would miss the fp8-KV curves
    ("allreduce,ncl,bf16,0,1e7,1e-4,8,", "row 3.impl"),                  # would fall back to the roofline
])
def test_an_unknown_name_in_measurements_is_refused_naming_file_row_and_column(tmp_path: Path, capsys, row, where):
    directory = tmp_path / "measured"
    directory.mkdir()
    (directory / "measurements.csv").write_text(MEASUREMENTS.format(row=row))
    out = tmp_path / "p.yaml"
    assert main(["calibrate", "fit", str(directory), "--hw", H100, "-o", str(out)]) == 2
    assert f"measurements.csv: {where}: must be one of" in one_error_line(capsys)
    assert not out.exists()


def test_peak_refuses_a_name_that_is_no_data_type():
    from kinsim.hardware.load import load_hardware

    hw = load_hardware(H100)
    assert hw.peak("fp4") == hw.peak("bf16")  # a real type the GPU does not list: upcast, as documented
    with pytest.raises(SpecError, match="unknown data type"):
        hw.peak("bf61")


# ----------------------------------------------------------------------------------- class 7: messages

@pytest.mark.parametrize("sets, key, words", [
    (["deployment.tensor_parallel=16"], "deployment.tensor_parallel", ["one replica needs 16 GPUs", "has 8"]),
    (["deployment.data_parallel=16"], "deployment.data_parallel", ["needs 16 GPUs", "has 8"]),
    (["deployment.tensor_parallel=4", "deployment.data_parallel=3"], "deployment.data_parallel",
     ["needs 12 GPUs", "at most 2 fits"]),
    (["model=Qwen3-32B", "hw.gpu.memory.capacity=40 GB"], "deployment.tensor_parallel",
     ["the model (Qwen3-32B, bf16 weights) does not fit", "gpu.memory.capacity", "deployment.gpu_memory_fraction"]),
    (["deployment.max_num_seqs=512", "deployment.max_num_batched_tokens=256"], "deployment.max_num_batched_tokens",
     ["must be at least deployment.max_num_seqs"]),
])
def test_deployment_errors_name_the_workload_file_the_key_and_the_hardware_file(tmp_path: Path, capsys, sets, key,
                                                                                 words):
    workload = write_workload(tmp_path, GENERATED)
    args = [a for s in sets for a in ("--set", s)]
    assert main(["run", str(workload), "--hw", H100, *args]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"kinsim: error: {workload}: {key}:")
    if "max_num_seqs" not in key and "max_num_batched" not in key:
        assert f"({H100})" in err
    for word in words:
        assert word in err


# ----------------------------------------------------------------------------------- class 7: plots

MATH = r"$\foo$ a_b^c $x$ \ end"  # unknown mathtext command: drawing it as math raises


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> dict:
    from kinsim.runner import simulate

    directory = tmp_path_factory.mktemp("math")
    workload = write_workload(directory, GENERATED, name=MATH)
    return simulate(workload, H100, {"model.name": MATH, "hw.name": MATH}).to_dict()


def render(fig) -> None:
    """Parse every text of ``fig`` as drawing it would: a text matplotlib takes for math (a pair of unescaped
    ``$``) goes through the mathtext parser, which raises on ``$\\foo$``. (A full ``savefig`` does the same
    and more, at a second or two a figure on a busy machine; the sweep test below does one.)"""
    from matplotlib.mathtext import MathTextParser
    from matplotlib.text import Text

    parser = MathTextParser("agg")
    texts = fig.findobj(Text)
    assert any("foo" in t.get_text() or "bar" in t.get_text() for t in texts)  # the user text is there
    for text in texts:
        shown, is_math = text._preprocess_math(text.get_text())
        if is_math:
            parser.parse(shown, dpi=72, prop=text.get_fontproperties())


@pytest.mark.parametrize("name", ["breakdown", "timeline", "latency", "roofline"])
def test_every_run_plot_draws_a_name_with_math_specials_as_written(summary, name):
    from kinsim.report.plots import PLOTTERS

    fig = PLOTTERS[name](summary)
    render(fig)
    titles = [ax.get_title() for ax in fig.axes] + [fig.get_suptitle()]
    assert any(r"\$\foo\$ a_b^c \$x\$" in t for t in titles)


def test_the_compare_plot_survives_math_specials_and_html_shows_names_unescaped(summary):
    import html

    from kinsim.report.compare import plot_compare
    from kinsim.report.plots import run_title

    render(plot_compare([(MATH, summary), ("$\\bar$", summary)]))
    assert run_title(summary).startswith(MATH)  # the HTML report's heading: html-escaped, not mathtext-escaped
    assert "\\$" not in html.escape(run_title(summary))


def test_the_sweep_trace_and_calibration_plots_survive_math_specials(tmp_path: Path):
    import pandas as pd

    from kinsim.calibration.validate import plot_validation
    from kinsim.cli.sweep import plot_sweep
    from kinsim.report.trace_plots import plot_trace
    from kinsim.sweep.spec import Sweep
    from kinsim.workload.formats import read_table
    from kinsim.workload.replay import select
    from kinsim.workload.spec import TraceRequests

    sweep = Sweep(name=MATH, workload=tmp_path, hardware=tmp_path, axes={"deployment.router": [], "seed": []})
    rows = [{"status": "ok", "deployment.router": f"$\\r{i}$", "deployment.router.si": f"$\\r{i}$", "seed": "$\\s$",
             "throughput.tasks_per_s": float(i)} for i in range(2)]
    figure = plot_sweep(sweep, rows, "deployment.router", "throughput.tasks_per_s")
    render(figure)
    figure.savefig(io.BytesIO(), format="png", dpi=10)  # the categorical tick labels are made when drawn
    (tmp_path / "t.csv").write_text(TRACE_HEAD + "b,1,10,5\n")
    selection = select(read_table(tmp_path / "t.csv"), TraceRequests(path=str(tmp_path / "t.csv")))
    render(plot_trace(selection, MATH))
    table = pd.DataFrame({"kernel": ["gemm"], "impl": [MATH], "time_s": [1e-4], "predicted_s": [2e-4]})
    render(plot_validation(table, MATH))


# ----------------------------------------------------------------------------------- class 8: delivered tokens

# Request a (10 prompt, 5 output tokens) finishes; request b (10 prompt, a million output tokens) outgrows the KV
# cache of one replica alone and is aborted. b holds prompt + generated - 1 tokens of KV after its last token
# (the newest token's KV is written by the next step); it is aborted when the next token needs a block past
# the C blocks of B tokens: prompt + generated - 1 = C x B, so generated = C x B - 10 + 1.
SMALL_GPU = "hw.gpu.memory.capacity=19.5 GB"  # Qwen3-8B's 16.4 GB of weights leave a few hundred blocks


def run_trace(tmp_path: Path, rows: str, records: str) -> dict:
    (tmp_path / "t.csv").write_text("request_id,arrival_s,prompt_tokens,output_tokens\n" + rows)
    workload = write_workload(tmp_path, "  kind: trace\n  path: t.csv\n")
    out = tmp_path / "run.json"
    assert main(["run", str(workload), "--hw", H100, "--set", SMALL_GPU, "--records", records, "--json", str(out),
                 "--quiet"]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("records", ["full", "none"])
def test_throughput_counts_delivered_tokens_and_the_rest_is_reported_undelivered(tmp_path: Path, records):
    s = run_trace(tmp_path, "a,0,10,5\nb,1,10,1000000\n", records)
    capacity = s["kv"]["capacity_blocks"] * s["kv"]["block_tokens"]
    assert s["requests"]["completed"] == 1 and s["requests"]["unfinished"] == 1
    assert s["tokens"]["delivered"] == 5
    assert s["tokens"]["undelivered"] == capacity - 10 + 1
    assert s["tokens"]["generated"] == 5 + capacity - 10 + 1
    assert s["throughput"]["output_tokens_per_s"] == pytest.approx(5 / s["sim_time_s"], rel=1e-12)


def test_with_no_finished_request_every_throughput_is_0(tmp_path: Path, capsys):
    s = run_trace(tmp_path, "b,0,10,1000000\n", "full")
    assert s["requests"]["completed"] == 0 and s["tokens"]["undelivered"] > 0 and s["sim_time_s"] > 0
    assert s["tokens"]["delivered"] == 0
    assert s["throughput"] == {"output_tokens_per_s": 0.0, "tasks_per_s": 0.0, "requests_per_s": 0.0}


def test_the_text_report_says_delivered_and_undelivered(tmp_path: Path, capsys):
    from kinsim.report.summary import summary_lines

    s = run_trace(tmp_path, "a,0,10,5\nb,1,10,1000000\n", "full")
    line = next(line for line in summary_lines(s) if line.startswith("tokens"))
    assert f"5 delivered, {s['tokens']['undelivered']:,} generated for unfinished requests" in line
    s["tokens"] = {k: v for k, v in s["tokens"].items() if k not in ("delivered", "undelivered")}  # an older run file
    assert "generated" in next(line for line in summary_lines(s) if line.startswith("tokens"))
