"""``examples/frontier/make_samples.py``: the synthetic scored-sample set is deterministic, has the stated
shape and the marginal properties its docstring states."""

from __future__ import annotations

import importlib.util
from collections import defaultdict

import pytest
import yaml

from kinsim.frontier.importers import check_attention

from .conftest import ROOT


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "examples" / "frontier" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(example):
    return example.make_samples(0)


def by(rows, *keys):
    groups = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return groups


def test_the_same_seed_writes_the_same_bytes(example, tmp_path, capsys):
    a, b, c = tmp_path / "a" / "samples.jsonl", tmp_path / "b" / "samples.jsonl", tmp_path / "c" / "samples.jsonl"
    example.main(["--out", str(a)])
    example.main(["--out", str(b)])
    example.main(["--out", str(c), "--seed", "1"])
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    attention = yaml.safe_load((a.parent / "samples.attention.yaml").read_text())
    assert attention == {"attention": example.ATTENTION}
    check_attention(attention["attention"]["block_topk64"], path="block_topk64")  # a valid kinsim policy
    assert "SYNTHETIC" in capsys.readouterr().out and "SYNTHETIC" in (a.parent / "samples.attention.yaml").read_text()


def test_shape(example, rows):
    # 6 models x 2 attention configurations x 30 problems x 32 samples
    assert len(rows) == 6 * 2 * 30 * 32 == 11_520
    assert {r["model"] for r in rows} == {"qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b",
                                          "qwen3-32b"}
    assert {r["attention"] for r in rows} == {"dense", "block_topk64"}
    for group in by(rows, "model", "attention", "problem").values():
        assert sorted(r["sample"] for r in group) == list(range(32))
    for group in by(rows, "problem").values():  # one prompt per problem, whatever the model
        assert len({r["prompt_tokens"] for r in group}) == 1 and 90 <= group[0]["prompt_tokens"] <= 260
    assert all(256 <= r["output_tokens"] <= 32768 and r["correct"] in (0, 1) for r in rows)
    assert all(r["correct"] == 0 for r in rows if r["output_tokens"] == 32768)  # cut at the limit: wrong


def test_budgets_follow_the_stated_rule(rows):
    for r in rows:
        assert [b for b, _ in r["budgets"]] == [2048, 4096, 8192, 16384, 32768]
        # right at B exactly when right and the whole generation fits in B
        assert [ok for _, ok in r["budgets"]] == [int(r["correct"] and r["output_tokens"] <= b)
                                                   for b, _ in r["budgets"]]


def accuracy(rows):
    return sum(r["correct"] for r in rows) / len(rows)


def mean_length(rows):
    return sum(r["output_tokens"] for r in rows) / len(rows)


def test_bigger_models_are_more_accurate_and_shorter_and_block_topk_costs_a_little(example, rows):
    groups = by(rows, "model", "attention")
    for attention in ("dense", "block_topk64"):
        acc = [accuracy(groups[(m, attention)]) for m in example.SKILL]
        length = [mean_length(groups[(m, attention)]) for m in example.SKILL]
        # mean of sigmoid(s - d) over d ~ Normal(1, 2) is about sigmoid((s - 1) / sqrt(1 + pi 2^2 / 8)) =
        # sigmoid((s - 1) / 1.60): 0.6B (s = -2.0) 0.13, 32B (s = 2.2) 0.68, with block top-k (1.95) 0.64
        assert acc == sorted(acc) and acc[0] < 0.25 and acc[-1] > 0.55
        assert length == sorted(length, reverse=True)
    for model in example.SKILL:
        dense, sparse = by(groups[(model, "dense")], "problem", "sample"), groups[(model, "block_topk64")]
        # the same draws: a sample right with block top-k is right with dense attention
        assert all(dense[(r["problem"], r["sample"])][0]["correct"] for r in sparse if r["correct"])
        # a skill 0.25 lower moves sigmoid by at most 0.25 x 0.25 = 0.0625; more samples cut at the limit add a little
        assert 0 < accuracy(groups[(model, "dense")]) - accuracy(sparse) < 0.1
        assert mean_length(sparse) > mean_length(groups[(model, "dense")])  # 10% longer before the cut


def test_wrong_samples_are_longer_and_answer_a_distractor(rows):
    right = [r for r in rows if r["correct"]]
    wrong = [r for r in rows if not r["correct"]]
    assert mean_length(wrong) > mean_length(right)
    for group in by(rows, "problem").values():
        answers_right = {r["answer"] for r in group if r["correct"]}
        answers_wrong = {r["answer"] for r in group if not r["correct"]}
        assert len(answers_right) <= 1 and 1 <= len(answers_wrong) <= 3  # one right answer, three distractors
        assert not answers_right & answers_wrong


def test_flops_favour_smaller_models_than_eflops_on_the_example(example, tmp_path, capsys):
    """The paper's finding on the example: counting only FLOPs, long chain of thought's frontier is led by
    smaller models above its threshold than when memory traffic is counted (eFLOPs); and following the
    FLOPs-optimal choices costs more than the eFLOPs optimum, in eFLOPs."""
    import json

    from kinsim.cli import main

    samples = tmp_path / "samples.jsonl"
    example.main(["--out", str(samples)])
    out = tmp_path / "f.json"
    assert main(["frontier", str(samples), "--json", str(out), "--quiet"]) == 0
    findings = json.loads(out.read_text())["findings"]
    params = {"Qwen3-0.6B": 0.6, "Qwen3-1.7B": 1.7, "Qwen3-4B": 4, "Qwen3-8B": 8, "Qwen3-14B": 14, "Qwen3-32B": 32}
    threshold = findings["long_cot"]["threshold"]
    assert params[threshold["flops"]["model"]] < params[threshold["eflops"]["model"]]
    plan = next(p for p in findings["best_of_n"]["plans"] if (p["plan"], p["judge"]) == ("flops", "eflops"))
    assert plan["geomean"] > 1.2
