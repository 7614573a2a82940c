"""Each request's share of the GPU time (``gpu_s``), and the trace score carried to the request table."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from kinsim.cli import main
from kinsim.engine.attribution import decode_shares, step_shares
from kinsim.ops.attention import decode_tokens_read
from kinsim.runner import simulate
from kinsim.workload.spec import TopKAttention

from .conftest import HARDWARE
from .test_engine import workload


def test_decode_shares_split_other_ops_by_tokens_and_attention_by_tokens_attended():
    # two sequences with 9 and 19 tokens cached attend 10 and 20 tokens, then 11 and 21 (30, then 32 in all);
    # each 1.0 s step spends 0.6 s in attention, 0.4 s elsewhere (0.2 s each: one token each)
    shares = decode_shares(np.array([1.0, 1.0]), np.array([0.6, 0.6]), np.array([1.0, 1.0]), np.array([9, 19]),
                           None, np.array([30.0, 32.0]))
    first = 0.2 + 0.6 * 10 / 30 + 0.2 + 0.6 * 11 / 32  # 0.80625
    second = 0.2 + 0.6 * 20 / 30 + 0.2 + 0.6 * 21 / 32  # 1.19375
    assert shares == pytest.approx([first, second], rel=1e-12)
    assert shares.sum() == pytest.approx(2.0, rel=1e-12)


def test_a_capped_policy_attributes_at_most_the_cap():
    # cap 20: the second sequence attends 20 tokens at both steps (20, then min(21, 20)); 30 then 31 in all
    shares = decode_shares(np.array([1.0, 1.0]), np.array([0.6, 0.6]), np.array([1.0, 1.0]), np.array([9, 19]),
                           20, np.array([30.0, 31.0]))
    assert shares == pytest.approx([0.4 + 0.6 * 10 / 30 + 0.6 * 11 / 31, 0.4 + 0.6 * 20 / 30 + 0.6 * 20 / 31],
                                   rel=1e-12)
    assert decode_tokens_read(TopKAttention(token_budget=20), np.array([9, 19, 30])).tolist() == [10.0, 20.0, 20.0]


def test_each_step_is_divided_by_its_own_clock_duration():
    # the first step lasted 2 s on the clock for 1 s priced: its shares double, the second step's do not
    shares = decode_shares(np.array([1.0, 1.0]), np.array([0.6, 0.6]), np.array([2.0, 1.0]), np.array([9, 19]),
                           None, np.array([30.0, 32.0]))
    assert shares == pytest.approx([2 * (0.2 + 0.2) + 0.2 + 0.6 * 11 / 32, 2 * (0.2 + 0.4) + 0.2 + 0.6 * 21 / 32],
                                   rel=1e-12)


def test_a_mixed_step_splits_between_the_decoding_sequence_and_the_prefill_chunk():
    # 1.0 s step, 0.5 s of attention. One decoding sequence: 1 token, 10 tokens attended. One prefill chunk of
    # 20 tokens after 10 cached: 20 tokens computed, 30 attended. 0.5 s over 21 tokens, 0.5 s over 40 attended.
    decode, chunks = step_shares(1.0, 0.5, np.array([10.0]), 1.0, [30.0], [20.0])
    assert decode == pytest.approx([0.5 / 21 + 0.5 * 10 / 40], rel=1e-12)
    assert chunks == pytest.approx([0.5 * 20 / 21 + 0.5 * 30 / 40], rel=1e-12)
    assert decode.sum() + sum(chunks) == pytest.approx(1.0, rel=1e-12)


def busy_gpu_s(result) -> float:
    return sum((seg.end_s - seg.start_s) * len(result.records.replica_gpus[seg.replica])
               for seg in result.records.segments)


def test_a_request_alone_owes_all_the_busy_time_of_its_gpus():
    for tp in (1, 2):
        w = workload(**{"requests.problems": 1, "requests.samples": 1, "deployment.tensor_parallel": tp})
        result = simulate(w, HARDWARE / "h100.yaml")
        busy = sum(seg.end_s - seg.start_s for seg in result.records.segments)
        assert result.requests["gpu_s"].tolist() == pytest.approx([tp * busy], rel=1e-12)


def test_identical_samples_of_one_problem_owe_equal_shares():
    # Best-of-3 with one prompt and equal outputs: the lead's prefill is split among the three, every decode
    # step has the same three sequences at the same context
    w = workload(**{"requests.problems": 1, "requests.samples": 3})
    result = simulate(w, HARDWARE / "h100.yaml")
    gpu_s = result.requests["gpu_s"].to_numpy()
    assert gpu_s == pytest.approx([busy_gpu_s(result) / 3] * 3, rel=1e-9)


def test_a_longer_request_owes_more_and_the_shares_add_up(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("request_id,arrival_s,prompt_tokens,output_tokens,score\n"
                     "a,0,100,10,1\nb,0,100,200,0.25\nc,0,400,10,\n")
    w = workload(**{"requests": {"kind": "trace", "path": str(trace)}})
    result = simulate(w, HARDWARE / "h100.yaml")
    rows = result.requests.set_index("request_id")
    assert rows.loc["b", "gpu_s"] > rows.loc["a", "gpu_s"]  # 190 more decode steps
    assert rows.loc["c", "gpu_s"] > rows.loc["a", "gpu_s"]  # a longer prompt: more prefill tokens and attention
    assert rows["gpu_s"].sum() == pytest.approx(busy_gpu_s(result), rel=1e-9)
    assert rows.loc["a", "score"] == 1.0 and rows.loc["b", "score"] == 0.25 and np.isnan(rows.loc["c", "score"])


def test_requests_csv_has_gpu_s_and_score(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"request_id": "x", "arrival_s": 0, "prompt_tokens": 50, "output_tokens": 5, "score": 3}\n')
    spec = tmp_path / "w.yaml"
    spec.write_text(f"name: t\nmodel: Qwen3-0.6B\nrequests: {{kind: trace, path: {trace}}}\n")
    out = tmp_path / "requests.csv"
    assert main(["run", str(spec), "--hw", str(HARDWARE / "h100.yaml"), "--requests-csv", str(out)]) == 0
    with out.open() as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["score"]) == 3.0 and float(row["gpu_s"]) > 0.0


def test_the_scores_section_puts_trace_scores_beside_gpu_time(tmp_path):
    # task g1: a (score 1) and b (score 0); task g2: c (score 0); d has no score and stays out
    trace = tmp_path / "t.csv"
    trace.write_text("request_id,group_id,arrival_s,prompt_tokens,output_tokens,score\n"
                     "a,g1,0,100,10,1\nb,g1,0,100,30,0\nc,g2,0,60,20,0\nd,g3,0,60,20,\n")
    w = workload(**{"requests": {"kind": "trace", "path": str(trace)}})
    result = simulate(w, HARDWARE / "h100.yaml")
    gpu = result.requests.set_index("request_id")["gpu_s"]
    scores = result.to_dict()["scores"]
    assert scores["requests"] == 3 and scores["tasks"] == 2
    assert scores["mean"] == pytest.approx(1 / 3) and scores["task_best_mean"] == pytest.approx(0.5)
    assert scores["gpu_s_per_request"] == pytest.approx((gpu["a"] + gpu["b"] + gpu["c"]) / 3, rel=1e-12)
    assert scores["gpu_s_per_task"] == pytest.approx((gpu["a"] + gpu["b"] + gpu["c"]) / 2, rel=1e-12)
    assert scores["solved"] == {"tasks": 1, "gpu_s_per_task": pytest.approx(gpu["a"] + gpu["b"], rel=1e-12)}
    assert scores["unsolved"] == {"tasks": 1, "gpu_s_per_task": pytest.approx(gpu["c"], rel=1e-12)}
    # no request table, no section; no scores, no section
    assert "scores" not in simulate(w, HARDWARE / "h100.yaml", records="none").to_dict()
    assert "scores" not in simulate(workload(), HARDWARE / "h100.yaml").to_dict()


def test_the_run_summary_and_the_html_report_show_the_scores_row(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("request_id,group_id,arrival_s,prompt_tokens,output_tokens,score\n"
                     "a,g1,0,100,10,1\nb,g1,0,100,30,0\n")
    spec = tmp_path / "w.yaml"
    spec.write_text(f"name: t\nmodel: Qwen3-0.6B\nrequests: {{kind: trace, path: {trace}}}\n")
    run = tmp_path / "run.json"
    assert main(["run", str(spec), "--hw", str(HARDWARE / "h100.yaml"), "--json", str(run)]) == 0
    words = "mean 0.5 over 2 requests, best per task 1 over 1 tasks"
    assert words in capsys.readouterr().out
    page = tmp_path / "report.html"
    assert main(["report", str(run), "-o", str(page)]) == 0
    assert words in page.read_text()
