"""The accuracy-cost frontier: accuracy estimators, per-task FLOPs and eFLOPs, the samples reader's rules,
Pareto frontiers and what they say, and ``kinsim frontier``. Every number is worked out in the test."""

from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kinsim import load_hardware
from kinsim.cli import main
from kinsim.cost.kinetics import kinetics_block_topk_cost, kinetics_dense_cost
from kinsim.errors import SpecError
from kinsim.frontier.accuracy import majority_credit, mean_correct, pass_at
from kinsim.frontier.flops import PAPER_INTENSITY, single_sample_costs, task_cost
from kinsim.frontier.pareto import (
    best_at,
    cost_at_accuracy,
    dense_vs_sparse,
    frontier,
    mark_frontiers,
    pareto_mask,
    plan_vs_optimum,
    size_threshold,
)
from kinsim.frontier.samples import load_samples
from kinsim.frontier.table import default_ns, frontier_rows
from kinsim.model import load_model
from kinsim.workload.spec import BlockTopKAttention, DenseAttention, SlidingWindowAttention, TopKAttention

from .conftest import HARDWARE

SMALL = load_model("Qwen3-0.6B")  # D = 2 x 8 x 128 x 28 = 57,344 KV elements per token, r = 16 / 8 = 2
SPARSE = "attention:\n  sparse: {policy: block_topk, block_size: 16, top_k: 4, local_window: 16, sink_tokens: 16}\n"


# ----------------------------------------------------------------------------------------- accuracy


def test_pass_at_n_by_hand():
    # n = 4 samples, c = 2 correct
    assert pass_at(4, 2, 1) == pytest.approx(0.5)      # 1 - C(2,1)/C(4,1) = 1 - 2/4
    assert pass_at(4, 2, 2) == pytest.approx(5 / 6)    # 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at(4, 2, 3) == 1.0                     # 3 draws from 4 cannot all be among the 2 wrong
    assert pass_at(4, 0, 4) == 0.0 and pass_at(4, 4, 1) == 1.0
    assert pass_at(10, 1, 5) == pytest.approx(0.5)     # 1 - C(9,5)/C(10,5) = 1 - 126/252
    with pytest.raises(ValueError):
        pass_at(4, 2, 5)


def test_pass_at_n_is_exact_for_many_samples():
    # n = 1000, c = 1: pass@k = k / n exactly (the one correct sample is among the k with chance k/n)
    assert pass_at(1000, 1, 300) == pytest.approx(0.3, rel=1e-12)


@pytest.mark.parametrize("answers, correct, credit", [
    (["7", "7", "3"], [1, 1, 0], 1.0),           # 7 wins 2 to 1 and is right
    (["7", "3", "3"], [1, 0, 0], 0.0),           # 3 wins 2 to 1 and is wrong
    (["7", "3"], [1, 0], 0.5),                   # a tie of one right and one wrong answer: 1/2
    (["3", "7"], [0, 1], 0.5),                   # ... whichever comes first
    (["1", "2", "3"], [0, 1, 0], 1 / 3),         # a three-way tie with one right answer: 1/3
    (["1", "1", "2", "2", "3"], [1, 1, 1, 1, 0], 1.0),  # both tied answers right (graders accept both)
    ([None, None], [1, 0], 0.0),                 # nobody votes
    ([None, "5", None], [1, 1, 1], 1.0),         # samples without an answer do not vote
])
def test_majority_vote_and_its_tie_rule(answers, correct, credit):
    assert majority_credit(answers, correct) == pytest.approx(credit)


def test_long_cot_accuracy_is_the_share_correct():
    assert mean_correct([1, 0, 0, 1]) == 0.5


# ----------------------------------------------------------------------------------------- FLOPs and eFLOPs


@pytest.mark.parametrize("name", ["Qwen3-0.6B", "Qwen3-8B"])
def test_equal_lengths_give_the_closed_forms(name):
    model = load_model(name)
    n, l_in, l_out, i = 32, 150, 10_000, PAPER_INTENSITY
    dense = task_cost(model, DenseAttention(), l_in, [l_out] * n, i)
    assert dense.eflops == pytest.approx(kinetics_dense_cost(model, n, l_in, l_out, i).eflops, rel=1e-12)
    assert dense.compute_flops == pytest.approx(kinetics_dense_cost(model, n, l_in, l_out, i).compute_flops,
                                                rel=1e-12)
    policy = BlockTopKAttention(block_size=16, top_k=64, local_window=64, sink_tokens=16)  # B = 1024+64+16
    sparse = task_cost(model, policy, l_in, [l_out] * n, i)
    closed = kinetics_block_topk_cost(model, n, l_in, l_out, i, budget=1104, block_size=16)
    assert sparse.eflops == pytest.approx(closed.eflops, rel=1e-12)
    assert sparse.selection_bytes == pytest.approx(closed.selection_bytes, rel=1e-12)


def _qwen3_params(layers, hidden, heads, intermediate, tied, vocab=151_936, kv_heads=8, head_dim=128):
    """Parameters of a dense Qwen3 from its config.json (Qwen/Qwen3-*): per layer Q, K, V, O, the QK norms,
    the gated MLP and two RMSNorms; embeddings (and an untied LM head) and the final norm."""
    q, kv = heads * head_dim, kv_heads * head_dim
    per_layer = hidden * q + 2 * hidden * kv + q * hidden + 2 * head_dim + 3 * hidden * intermediate + 2 * hidden
    return layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden


# (layers, hidden, heads, intermediate, tied), from each model's config.json on Hugging Face
QWEN3 = {"Qwen3-4B": (36, 2560, 32, 9728, True), "Qwen3-8B": (36, 4096, 32, 12288, False),
         "Qwen3-14B": (40, 5120, 40, 17408, False), "Qwen3-32B": (64, 5120, 64, 25600, False)}


@pytest.mark.parametrize("name", list(QWEN3))
def test_papers_dense_closed_form_for_qwen3(name):
    layers, hidden, heads, intermediate, tied = QWEN3[name]
    p = _qwen3_params(layers, hidden, heads, intermediate, tied)
    d = 2 * 8 * 128 * layers          # KV elements per token: K and V, 8 KV heads of 128, every layer
    r = heads // 8                    # query heads per KV head
    n, l_in, l_out, i = 8, 1_000, 16_384, 562.5
    # the paper's eq.: 2 N P L_out + 2 r N L_in D L_out + r N D L_out^2 + 2 I L_in D L_out + I N D L_out^2
    paper = (2 * n * p * l_out + 2 * r * n * l_in * d * l_out + r * n * d * l_out**2
             + 2 * i * l_in * d * l_out + i * n * d * l_out**2)
    assert task_cost(load_model(name), DenseAttention(), l_in, [l_out] * n, i).eflops == pytest.approx(paper,
                                                                                                     rel=1e-3)


def test_parameter_arithmetic_matches_the_model_card():
    # Qwen3-8B's model card says 8.2 B parameters; kinsim's README 8.19 B
    assert _qwen3_params(*QWEN3["Qwen3-8B"]) / 1e9 == pytest.approx(8.19, abs=0.005)


def test_unequal_lengths_dense_reads_the_shared_prompt_for_the_longest_sample():
    d, r, b, p = 57_344, 2, 2, SMALL.params_active
    cost = task_cost(SMALL, DenseAttention(), 3, [2, 4], intensity=10.0)
    # prompt L = 3, samples l = 2 and 4: prompt KV read for max l = 4 steps, own KV l^2/2 each
    assert cost.kv_bytes == pytest.approx(b * d * (3 * 4 + (2**2 + 4**2) / 2))            # 22 b D
    assert cost.attention_flops == pytest.approx(2 * r * d * ((3 * 2 + 2) + (3 * 4 + 8)))  # 28 x 2 r D
    assert cost.linear_flops == pytest.approx(2 * p * 6)
    assert cost.eflops == pytest.approx(cost.compute_flops + 10.0 * b * d * 22)


@pytest.mark.parametrize("policy", [BlockTopKAttention(block_size=1, top_k=5), TopKAttention(token_budget=5),
                                    SlidingWindowAttention(window=4, sink_tokens=1)])
def test_unequal_lengths_sparse_reads_each_samples_budget(policy):
    d, b = 57_344, 2
    cost = task_cost(SMALL, policy, 3, [2, 4])
    # budget B = 5, prompt 3: the l = 4 sample reads int_0^2 (3 + t) dt + 2 x 5 = 8 + 10, the l = 2 one 8
    assert cost.kv_bytes == pytest.approx(b * d * 26)
    selection = isinstance(policy, BlockTopKAttention)
    # selection: one mean key per block (of 1 token) per step: (b/2) D sum (L l + l^2/2) = D (8 + 20)
    assert cost.selection_bytes == pytest.approx(d * 28 if selection else 0.0)


def test_single_sample_costs_are_one_sample_tasks():
    flops, eflops = single_sample_costs(SMALL, DenseAttention(), np.array([3, 10]), np.array([4, 7]))
    for k, (l_in, l_out) in enumerate([(3, 4), (10, 7)]):
        one = task_cost(SMALL, DenseAttention(), l_in, [l_out])
        assert (flops[k], eflops[k]) == pytest.approx((one.compute_flops, one.eflops), rel=1e-12)


# ----------------------------------------------------------------------------------------- samples files


def _row(model="Qwen3-0.6B", attention="dense", problem="p1", sample=0, prompt=10, output=100, correct=1,
         **extra):
    return {"model": model, "attention": attention, "problem": problem, "sample": sample, "prompt_tokens": prompt,
            "output_tokens": output, "correct": correct, **extra}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# Each case: rows of a JSONL file and what the one-line error must say.
BAD = {
    "missing column": ([_row(), {k: v for k, v in _row(sample=1).items() if k != "correct"}],
                       "line 2.correct: missing required column"),
    "score not 0/1": ([_row(correct=100)], "line 1.correct: must be 0 or 1 (or true/false), got 100 (hint: a score"),
    "unknown column": ([_row(text="...")], "line 1: unknown column 'text'"),
    "negative sample": ([_row(sample=-1)], "line 1.sample: must be at least 0, got -1"),
    "zero output": ([_row(output=0)], "line 1.output_tokens: must be at least 1, got 0"),
    "unknown preset": ([_row(model="Qwen3-9B")], "line 1.model: unknown model preset, got 'Qwen3-9B'"),
    "missing model file": ([_row(model="models/mine.yaml")], "line 1.model: model file not found"),
    "unknown attention": ([_row(attention="sparse")], "line 1.attention: names no attention configuration, got "
                                                      "'sparse'"),
    "duplicate sample": ([_row(), _row(output=7)], "line 2.sample: repeats a sample of model Qwen3-0.6B, attention "
                                                   "dense, problem p1 (line 1)"),
    "prompt differs": ([_row(), _row(sample=1, prompt=11)], "line 2.prompt_tokens: differs from the problem's "
                                                            "prompt_tokens 10 (line 1)"),
    "answer both right and wrong": ([_row(answer="7"), _row(sample=1, answer=" 7 ", correct=0)],  # spaces dropped
                                    "line 2.correct: answer '7' to problem p1 is marked correct=0 here and "
                                    "correct=1 on line 1"),
    "answer a float": ([_row(answer=7.5)], "line 1.answer: expected a string"),
    "budgets malformed": ([_row(budgets="100;200")], 'line 1.budgets: expected "budget:correct" pairs'),
    "budget twice": ([_row(budgets=[[50, 1], [50, 1]])], "line 1.budgets: names a budget twice, got 50"),
    "budget past the end": ([_row(output=100, correct=1, budgets={"50": 0, "200": 0})],
                            "line 1.budgets: correct at budget 200 must equal the sample's correct (1)"),
    "budget sets differ": ([_row(budgets=[[50, 0]]), _row(sample=1, budgets=[[60, 0]])],
                           "line 2.budgets: has budgets 60 but line 1 of the same model and attention has budgets 50"),
    "budgets on some rows": ([_row(budgets=[[50, 0]]), _row(sample=1)],
                             "line 2.budgets: has no budgets but line 1"),
    "problems differ": ([_row(), _row(problem="p2"), _row(model="Qwen3-1.7B")],
                        "line 3.problem: model Qwen3-1.7B with attention dense has no samples of problem p2 (line 2 "
                        "has)"),
    "not json": (None, "line 1: is not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_samples_give_one_line_naming_file_line_column_rule(case, tmp_path):
    rows, message = BAD[case]
    path = tmp_path / "s.jsonl"
    if rows is None:
        path.write_text("{not json\n", encoding="utf-8")
    else:
        _write(path, rows)
    with pytest.raises(SpecError) as error:
        load_samples(path)
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ") and message in text, text


def test_csv_and_parquet_read_like_jsonl(tmp_path):
    rows = [_row(answer="7", budgets="50:0;100:1"),
            _row(sample=1, correct=0, output=60, answer=3, budgets="50:0;100:0")]
    jsonl = load_samples(_write(tmp_path / "s.jsonl", rows))
    pd.DataFrame(rows).to_csv(tmp_path / "s.csv", index=False)
    csv = load_samples(tmp_path / "s.csv")
    pd.DataFrame(rows).astype({"answer": str}).to_parquet(tmp_path / "s.parquet")
    parquet = load_samples(tmp_path / "s.parquet")
    for other in (csv, parquet):
        pd.testing.assert_frame_equal(other.samples.drop(columns="line"), jsonl.samples.drop(columns="line"))
        pd.testing.assert_frame_equal(other.budgets.drop(columns="line"), jsonl.budgets.drop(columns="line"))
    assert list(csv.samples["line"]) == [2, 3] and list(parquet.samples["line"]) == [1, 2]
    assert list(jsonl.budgets["budget"]) == [50, 100, 50, 100] and list(jsonl.budgets["correct"]) == [0, 1, 0, 0]


def test_csv_missing_column_is_named_in_the_header(tmp_path):
    (tmp_path / "s.csv").write_text("model,attention,problem,sample,prompt_tokens,output_tokens\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"s\.csv: line 1: missing required column 'correct'"):
        load_samples(tmp_path / "s.csv")


def test_attention_file_beside_the_samples_and_its_errors(tmp_path):
    path = _write(tmp_path / "s.jsonl", [_row(attention="sparse"), _row(attention="dense")])
    (tmp_path / "s.attention.yaml").write_text(SPARSE, encoding="utf-8")
    samples = load_samples(path)
    assert samples.attention["sparse"].token_budget == 4 * 16 + 16 + 16
    other = tmp_path / "other.yaml"
    other.write_text("attention:\n  sparse: {policy: block_topk, topk: 4}\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"other\.yaml: attention\.sparse: unknown key 'topk'"):
        load_samples(path, other)
    other.write_text("attention:\n  dense: {policy: topk, token_budget: 8}\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"attention\.dense: is built in"):
        load_samples(path, other)


def test_model_file_relative_to_the_samples(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.yaml").write_text(
        "name: tiny\nlayers: 2\nhidden_size: 256\nattention_heads: 4\nkv_heads: 2\nhead_dim: 64\n"
        "intermediate_size: 512\nvocab_size: 1000\n", encoding="utf-8")
    samples = load_samples(_write(tmp_path / "s.jsonl", [_row(model="models/tiny.yaml")]))
    model = samples.models["models/tiny.yaml"]
    assert model.ref == str((tmp_path / "models" / "tiny.yaml").resolve())
    assert model.spec.kv_elements_per_token == 2 * 2 * 64 * 2  # K and V, 2 KV heads of 64, 2 layers


# ----------------------------------------------------------------------------------------- rows


def _two_problem_file(tmp_path: Path) -> Path:
    """Qwen3-0.6B, dense: problem a with samples right, wrong (answers 7, 3); problem b wrong, wrong (1, 2);
    lengths 100 and 300 tokens after a 10-token prompt; budgets 50 and 200."""
    rows = [_row(problem="a", sample=0, output=100, correct=1, answer="7", budgets=[[50, 0], [200, 1]]),
            _row(problem="a", sample=1, output=300, correct=0, answer="3", budgets=[[50, 0], [200, 1]]),
            _row(problem="b", sample=0, output=100, correct=0, answer="1", budgets=[[50, 0], [200, 0]]),
            _row(problem="b", sample=1, output=300, correct=0, answer="2", budgets=[[50, 1], [200, 0]])]
    return _write(tmp_path / "two.jsonl", rows)


def test_rows_by_hand(tmp_path):
    frame, tasks = frontier_rows(load_samples(_two_problem_file(tmp_path)))
    get = {(r.strategy, r.n if r.strategy != "long_cot" else r.budget): r for r in frame.itertuples()}
    assert get["best_of_n", 1].accuracy == pytest.approx((0.5 + 0) / 2)   # pass@1: a 1/2, b 0
    assert get["best_of_n", 2].accuracy == pytest.approx((1 + 0) / 2)     # pass@2: a 1, b 0
    assert get["majority", 1].accuracy == pytest.approx((1 + 0) / 2)      # first sample: a right, b wrong
    assert get["majority", 2].accuracy == pytest.approx((0.5 + 0) / 2)    # a: tie 7 vs 3, half credit
    assert get["long_cot", 50].accuracy == pytest.approx((0 + 0.5) / 2)   # b's second sample right at 50
    assert get["long_cot", 200].accuracy == pytest.approx((1 + 0) / 2)
    # cost at N = 1: the first sample (100 tokens) of each problem; at N = 2 both; the closed forms then
    one = kinetics_dense_cost(SMALL, 1, 10, 100, PAPER_INTENSITY)
    assert get["best_of_n", 1].cost_eflops == pytest.approx(one.eflops, rel=1e-12)
    assert get["majority", 1].task == get["best_of_n", 1].task
    two = task_cost(SMALL, DenseAttention(), 10, [100, 300])
    assert get["best_of_n", 2].cost_flops == pytest.approx(two.compute_flops, rel=1e-12)
    # long CoT at 200 tokens: the samples cut at min(l, 200) = 100 and 200 tokens, each its own task
    cut = [task_cost(SMALL, DenseAttention(), 10, [length]).eflops for length in (100, 200)]
    assert get["long_cot", 200].cost_eflops == pytest.approx(np.mean(cut), rel=1e-12)
    task = tasks[get["long_cot", 200].task]
    assert task.prompts == (10, 10, 10, 10) and task.outputs == ((100,), (200,), (100,), (200,))
    assert tasks[get["best_of_n", 1].task].outputs == ((100,), (100,))
    assert task.attention == {"policy": "dense"} and task.model == "Qwen3-0.6B"


def test_default_values_of_n():
    assert default_ns(1) == [1] and default_ns(8) == [1, 2, 4, 8] and default_ns(6) == [1, 2, 4, 6]


# ----------------------------------------------------------------------------------------- frontiers


def _points(*points):
    """Rows (model, params, attention, cost, accuracy) of one strategy."""
    return pd.DataFrame([{"model": m, "params": p, "attention": a, "policy": "dense" if a == "dense" else "topk",
                          "strategy": "best_of_n", "cost_flops": c, "cost_eflops": c, "accuracy": acc}
                         for m, p, a, c, acc in points])


def test_three_point_frontier():
    cost = [1, 2, 4, 3, 5, 4, np.nan]
    accuracy = [0.2, 0.5, 0.6, 0.4, 0.6, 0.6, 0.9]
    # 3 (cost 3, 0.4) is beaten by 2 (cost 2, 0.5); 5 (cost 5, 0.6) by 3 (cost 4, 0.6); 6 is 3's twin;
    # the last has no cost
    assert pareto_mask(cost, accuracy).tolist() == [True, True, True, False, False, True, False]
    rows = _points(*[("m", 1, "dense", c, a) for c, a in zip(cost, accuracy)])
    assert frontier(rows, "flops")[["cost_flops", "accuracy"]].values.tolist() == [[1, 0.2], [2, 0.5], [4, 0.6]]
    assert best_at(rows, "flops", 3.5)["accuracy"] == 0.5 and best_at(rows, "flops", 0.5) is None


def test_marks_per_model_and_global():
    rows = _points(("small", 1, "dense", 1, 0.3), ("small", 1, "dense", 4, 0.5), ("big", 9, "dense", 2, 0.6))
    marked = mark_frontiers(rows, "flops")
    assert marked["on_frontier_model"].tolist() == [True, True, True]
    assert marked["on_frontier_global"].tolist() == [True, False, True]  # small at cost 4 loses to big at 2


def test_cost_at_accuracy_interpolates_in_log_cost():
    front = _points(("m", 1, "dense", 1.0, 0.2), ("m", 1, "dense", 100.0, 0.6))
    costs = cost_at_accuracy(front, "flops", [0.1, 0.2, 0.4, 0.6, 0.7])
    # 0.4 is half way from 0.2 to 0.6: half way from log 1 to log 100, cost 10; outside: undefined
    assert costs[1:4] == pytest.approx([1.0, 10.0, 100.0])
    assert math.isnan(costs[0]) and math.isnan(costs[4])


def test_dense_over_sparse_ratio_and_gain():
    rows = _points(("m", 1, "dense", 1.0, 0.2), ("m", 1, "dense", 100.0, 0.6),
                   ("m", 1, "topk", 0.5, 0.2), ("m", 1, "topk", 50.0, 0.6))
    (pair,) = dense_vs_sparse(rows, "flops")
    # every accuracy from 0.2 to 0.6 costs half as much sparse: dense 1 -> 100, sparse 0.5 -> 50
    assert pair["accuracy"] == [0.2, 0.3, 0.4, 0.5, 0.6] and pair["ratio"] == pytest.approx([2.0] * 5)
    assert pair["geomean"] == pytest.approx(2.0)
    # at cost 50 the sparse frontier has 0.6, the dense one still 0.2: 40 points
    assert pair["max_gain"] == pytest.approx(0.4) and pair["max_gain_cost"] == 50.0


def test_plan_in_flops_judged_in_eflops():
    rows = _points(("small", 1, "dense", 1.0, 0.2), ("big", 9, "dense", 4.0, 0.6))
    rows.loc[:, "cost_eflops"] = [8.0, 2.0]   # the small model reads far more KV: dearer in eFLOPs
    rows = pd.concat([rows, _points(("big", 9, "dense", 2.0, 0.2))]).reset_index(drop=True)
    rows.loc[2, "cost_eflops"] = 1.0          # big at a lower N: 0.2 for 2 FLOPs, 1 eFLOP
    plan = plan_vs_optimum(rows, "flops", "eflops", grid=[0.2, 0.6])
    # FLOPs frontier: small (1 FLOP, 0.2), big (4 FLOPs, 0.6); the eFLOPs frontier: big (1, 0.2), big (2, 0.6).
    # At 0.2 the plan picks small, 8 eFLOPs, against 1: 8x; at 0.6 both pick big at 2 eFLOPs: 1x
    assert plan["ratio"] == pytest.approx([8.0, 1.0]) and plan["geomean"] == pytest.approx(math.sqrt(8))


def test_size_threshold():
    # frontier by cost: small, mid, small again, mid, big: the frontier moves back to small at cost 3, so C0
    # is there, and small is the smallest model above it; without that point C0 is mid's first point
    sizes = {"small": 1, "mid": 4, "big": 9}
    points = [("small", 1, 0.1), ("mid", 2, 0.2), ("small", 3, 0.3), ("mid", 4, 0.4), ("big", 5, 0.5),
              ("huge", 6, 0.05)]
    rows = _points(*[(m, sizes.get(m, 20), "dense", c, a) for m, c, a in points])
    threshold = size_threshold(rows, "flops")
    assert (threshold["model"], threshold["from_cost"]) == ("small", 3.0)
    assert threshold["ladder"] == [[1.0, "small"], [4.0, "mid"], [5.0, "big"]]
    assert threshold["never"] == ["huge"]
    threshold = size_threshold(rows.drop(index=2), "flops")
    assert (threshold["model"], threshold["from_cost"]) == ("small", 1.0)  # small, mid, mid, big: monotone
    rows.loc[0, "model"], rows.loc[0, "params"] = "mid", 4  # mid, mid, small, mid, big
    assert size_threshold(rows, "flops")["model"] == "small"
    rows.loc[2, "model"], rows.loc[2, "params"] = "big", 9  # mid, mid, big, mid, big: back to mid at cost 4
    threshold = size_threshold(rows, "flops")
    assert (threshold["model"], threshold["from_cost"]) == ("mid", 4.0)


# ----------------------------------------------------------------------------------------- the command


def _sparse_file(tmp_path: Path) -> Path:
    """Two models x dense and sparse, two problems of two samples each."""
    rows = []
    for model in ("Qwen3-0.6B", "Qwen3-1.7B"):
        for attention in ("dense", "sparse"):
            for problem, corrects in (("a", (1, 0)), ("b", (0, 1))):
                for sample, correct in enumerate(corrects):
                    rows.append(_row(model=model, attention=attention, problem=problem, sample=sample,
                                     output=1000 * (sample + 1), correct=correct, answer=str(sample + correct * 10)))
    (tmp_path / "s.attention.yaml").write_text(SPARSE, encoding="utf-8")
    return _write(tmp_path / "s.jsonl", rows)


def test_command_writes_csv_json_and_plot(tmp_path, capsys):
    samples = _sparse_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["frontier", str(samples), "--cost", "flops", "--csv", str(out / "f.csv"), "--json",
                 str(out / "f.json"), "--plot", str(out / "f.png"), "--n", "1,2"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "best_of_n frontier" in printed and "size threshold in FLOPs" in printed
    table = pd.read_csv(out / "f.csv")
    assert list(table.columns[:13]) == ["model", "attention", "strategy", "n", "budget", "accuracy", "cost_flops",
                                        "cost_eflops", "cost_gpu_s", "cost_joules", "cost_usd", "on_frontier_model",
                                        "on_frontier_global"]
    assert len(table) == 2 * 2 * 2 * 2  # models x attention x (best_of_n, majority) x N
    bon1 = table[(table.strategy == "best_of_n") & (table.n == 1)]
    assert (bon1["accuracy"] == 0.5).all()  # pass@1 of one right in two, both problems
    document = json.loads((out / "f.json").read_text())
    assert document["cost"] == "flops" and document["intensity"] == 562.5
    assert set(document["findings"]) == {"best_of_n", "majority"}
    assert (out / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_command_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    samples = _write(tmp_path / "s.jsonl", [_row(), _row(correct=3, sample=1)])
    out = tmp_path / "out"
    out.mkdir()
    code = main(["frontier", str(samples), "--csv", str(out / "f.csv"), "--json", str(out / "f.json"),
                 "--plot", str(out / "f.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "s.jsonl: line 2.correct: must be 0 or 1" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--cost", "gpu_s"], "--cost: needs --hw"),
    (["--intensity", "-1"], "--intensity: must be a positive number"),
    (["--n", "1,x"], "--n: expected whole numbers"),
    (["--n", "64"], "--n: gives no rows"),
])
def test_command_bad_options(args, message, tmp_path, capsys):
    samples = _write(tmp_path / "s.jsonl", [_row(), _row(sample=1)])
    assert main(["frontier", str(samples), *args]) == 2
    assert message in capsys.readouterr().err


@dataclass(frozen=True)
class _FakeCost:
    gpu_s: float
    joules: float | None
    usd: float | None
    deployment: str


def test_command_simulated_costs_reach_the_rows(tmp_path, capsys, monkeypatch):
    """The CLI's wiring to ``kinsim.frontier.simulate`` (a stand-in here: the engine is tested there)."""
    seen = {}

    @dataclass(frozen=True)
    class SimTask:
        model: str
        attention: dict
        prompts: tuple
        outputs: tuple
        weights: tuple | None = None

    def simulate_costs(tasks, hw, *, workload=None, workers=1, dask=None, store=None, progress=None):
        seen.update(tasks=tasks, hw=hw, workers=workers)
        # a stand-in: 1 GPU-second per output token of a problem, 700 J per GPU-second, no price
        return [_FakeCost(sum(map(sum, t.outputs)) / len(t.prompts), 700.0 * sum(map(sum, t.outputs))
                          / len(t.prompts), None, "tp1") for t in tasks]

    fake = types.ModuleType("kinsim.frontier.simulate")
    fake.SimTask, fake.simulate_costs = SimTask, simulate_costs
    monkeypatch.setitem(sys.modules, "kinsim.frontier.simulate", fake)
    samples = _sparse_file(tmp_path)
    out = tmp_path / "f.csv"
    hw = str(HARDWARE / "h100.yaml")
    assert main(["frontier", str(samples), "--hw", hw, "--csv", str(out), "--n", "2", "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "cost per task in GPU-s" in printed and "GPU-s-optimal" in printed
    assert seen["hw"] == hw and seen["workers"] == 2 and len(seen["tasks"]) == 4  # models x attention at N = 2
    table = pd.read_csv(out)
    # N = 2: samples of 1000 and 2000 tokens per problem: 3000 GPU-s per task, 2.1 MJ; no price
    assert (table["cost_gpu_s"] == 3000.0).all() and (table["cost_joules"] == 2.1e6).all()
    assert table["cost_usd"].isna().all() and (table["deployment"] == "tp1").all()
    # the Kinetics model's seconds on the H100: FLOPs at its bf16 peak, bytes = (eFLOPs - FLOPs) / 562.5 at its
    # HBM bandwidth; the simulated GPU-seconds over them
    h100 = load_hardware(hw)
    kinetics_s = (table["cost_flops"] / h100.peak("bf16")
                  + (table["cost_eflops"] - table["cost_flops"]) / 562.5 / h100.gpu.memory.bandwidth)
    assert np.allclose(table["kinetics_s"], kinetics_s, rtol=1e-12)
    assert np.allclose(table["gpu_s_over_kinetics_s"], 3000.0 / kinetics_s, rtol=1e-12)
    assert "simulated GPU-s on h100 / the Kinetics model's seconds there" in printed
    assert main(["frontier", str(samples), "--hw", hw, "--cost", "usd"]) == 2
    assert "--cost: no row has a cost in usd: the hardware file gives no price" in capsys.readouterr().err


def test_command_simulates_on_the_engine_and_reuses_the_results_file(tmp_path, capsys):
    """End to end with kinsim's engine: one model, dense, two problems of two samples (N = 1, 2)."""
    rows = [_row(model="Qwen3-0.6B", problem=p, sample=k, output=40 + 10 * k, correct=int(k == 0 or p == "b"))
            for p in ("a", "b") for k in range(2)]
    samples = _write(tmp_path / "s.jsonl", rows)
    out = tmp_path / "f.json"
    hw = str(HARDWARE / "h100.yaml")
    assert main(["frontier", str(samples), "--hw", hw, "--json", str(out), "--workers", "1", "--no-progress"]) == 0
    document = json.loads(out.read_text())
    bon = [r for r in document["rows"] if r["strategy"] == "best_of_n"]
    assert [r["n"] for r in bon] == [1, 2] and all(r["cost_gpu_s"] > 0 for r in bon)
    assert bon[1]["cost_gpu_s"] > bon[0]["cost_gpu_s"]  # two samples per problem cost more than one
    assert document["findings"]["best_of_n"]["gpu_s_over_kinetics_s"]["median"] > 0
    db = tmp_path / "s.frontier.sqlite"  # the default results file, beside the samples
    assert db.exists()
    capsys.readouterr()
    assert main(["frontier", str(samples), "--hw", hw, "--json", str(out), "--workers", "1"]) == 0
    assert "simulations" not in capsys.readouterr().err  # nothing left to simulate: no progress to show
    assert json.loads(out.read_text())["rows"] == document["rows"]


def test_long_cot_weights_every_problem_alike_whatever_its_samples(tmp_path):
    """Problem a has one sample, problem b five: the long chain of thought's simulated task holds six
    single-sample problems, weighted 1 / (1 x 2) for a's and 1 / (5 x 2) for each of b's, so that the cost is
    the mean over problems of the mean over their samples, as the accuracy and the counted costs are."""
    budgets = [[1000, 1]]
    rows = [_row(problem="a", output=200, budgets=budgets)]
    rows += [_row(problem="b", sample=k, output=5, budgets=budgets) for k in range(5)]
    _, tasks = frontier_rows(load_samples(_write(tmp_path / "s.jsonl", rows)))
    (long_cot,) = [t for t in tasks if t.weights is not None]
    assert long_cot.outputs == ((200,), (5,), (5,), (5,), (5,), (5,))
    assert long_cot.weights == pytest.approx((0.5, 0.1, 0.1, 0.1, 0.1, 0.1), rel=1e-15)


def test_a_model_file_may_name_a_preset_and_change_keys(tmp_path):
    """A model file in the form a workload's model: takes: a preset with keys changed (fp8 KV halves the KV
    bytes of Qwen3-0.6B's 28 x 8 x 128 x 2 elements a token: 57,344 B against 114,688 B)."""
    (tmp_path / "m.yaml").write_text("preset: Qwen3-0.6B\nkv_dtype: fp8\n", encoding="utf-8")
    samples = load_samples(_write(tmp_path / "s.jsonl", [_row(model="m.yaml")]))
    assert samples.models["m.yaml"].spec.kv_bytes_per_token == 57_344


def test_a_byte_order_mark_is_read_and_a_missing_file_named_as_samples(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(_row()) + "\n").encode())
    assert len(load_samples(path).samples) == 1
    with pytest.raises(SpecError, match="samples file not found"):
        load_samples(tmp_path / "missing.jsonl")
