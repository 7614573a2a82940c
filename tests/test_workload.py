"""Workload specs, generated requests and traces."""

import json

import numpy as np
import pytest

from kinsim.errors import SpecError
from kinsim.schema import build, to_raw
from kinsim.workload import (
    BlockTopKAttention,
    DenseAttention,
    load_workload,
    read_trace,
    workload_requests,
)
from kinsim.workload.distributions import LogNormal

from .conftest import WORKLOADS


def test_aime_bon32_is_30_by_32_with_shared_prompts():
    w = load_workload(WORKLOADS / "aime_bon32.yaml")
    requests = workload_requests(w)
    assert len(requests) == 30 * 32
    groups = {}
    for r in requests:
        groups.setdefault(r.group_id, set()).add(r.prompt_tokens)
    assert len(groups) == 30 and all(len(prompts) == 1 for prompts in groups.values())
    outputs = np.array([r.output_tokens for r in requests])
    assert outputs.max() <= 32_768
    assert 12_000 <= outputs.mean() <= 14_000
    assert all(100 <= r.prompt_tokens <= 200 for r in requests)
    assert isinstance(w.attention, DenseAttention)
    assert w.model.name == "Qwen3-8B"


def test_lognormal_mean_after_cap_matches_file_description():
    # The file says: median 11,000, sigma 0.6, capped at 32,768 -> mean about 12,800.
    dist = LogNormal(median=11000, sigma=0.6)
    draws = np.minimum(dist.sample(np.random.default_rng(1), 400_000), 32_768)
    assert draws.mean() == pytest.approx(12_800, rel=0.01)
    assert (draws == 32_768).mean() == pytest.approx(0.035, abs=0.005)


def test_blocktopk_variant_has_same_requests():
    dense = load_workload(WORKLOADS / "aime_bon32.yaml")
    sparse = load_workload(WORKLOADS / "aime_bon32_blocktopk.yaml")
    assert workload_requests(dense) == workload_requests(sparse)
    assert isinstance(sparse.attention, BlockTopKAttention)
    assert sparse.attention.token_budget == 64 * 16 + 16


def test_same_seed_same_requests_other_seed_differs():
    a = workload_requests(load_workload(WORKLOADS / "aime_bon32.yaml"))
    b = workload_requests(load_workload(WORKLOADS / "aime_bon32.yaml"))
    c = workload_requests(load_workload(WORKLOADS / "aime_bon32.yaml", {"seed": 1}))
    assert a == b
    assert a != c


def test_workload_round_trips_through_raw():
    w = load_workload(WORKLOADS / "aime_bon32_blocktopk.yaml")
    assert build(type(w), to_raw(w)) == w


def test_model_override_on_preset_shorthand():
    w = load_workload(WORKLOADS / "aime_bon32.yaml", {"model.kv_dtype": "fp8"})
    assert w.model.kv_bytes_per_token == 147_456 / 2


def test_poisson_arrivals_have_the_given_rate():
    w = load_workload(WORKLOADS / "aime_longcot.yaml",
                      {"requests.problems": 4000, "requests.arrival": {"process": "poisson", "rate": "2 /s"}})
    arrivals = np.array([r.arrival_s for r in workload_requests(w)])
    assert np.all(np.diff(arrivals) >= 0)
    assert np.diff(arrivals).mean() == pytest.approx(0.5, rel=0.05)


def test_listed_lengths_are_used_in_order(tmp_path):
    w = load_workload(WORKLOADS / "aime_bon32.yaml", {
        "requests.problems": 2, "requests.samples": 3, "requests.prompt_tokens": 100,
        "requests.output_tokens": {"dist": "list", "values": [10, 20, 40000]}})
    outs = [r.output_tokens for r in workload_requests(w)]
    assert outs == [10, 20, 32_768, 10, 20, 32_768]


def test_tensor_parallel_must_divide_heads():
    with pytest.raises(SpecError, match=r"deployment.tensor_parallel: must divide the model's attention heads"):
        load_workload(WORKLOADS / "aime_bon32.yaml", {"deployment.tensor_parallel": 3})


TRACE_ROWS = [
    {"request_id": "b", "group_id": "g1", "arrival_s": 0.5, "prompt_tokens": 100, "output_tokens": 7},
    {"request_id": "a", "group_id": "g1", "arrival_s": 0.5, "prompt_tokens": 100, "output_tokens": 9,
     "score": 1.0},
    {"request_id": 3, "arrival_s": 0.0, "prompt_tokens": 50, "output_tokens": 5},
]


def _write_trace(tmp_path):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in TRACE_ROWS) + "\n")
    csv = tmp_path / "t.csv"
    lines = ["request_id,group_id,arrival_s,prompt_tokens,output_tokens,score"]
    for r in TRACE_ROWS:
        lines.append(",".join(str(r.get(k, "")) for k in
                              ("request_id", "group_id", "arrival_s", "prompt_tokens", "output_tokens", "score")))
    csv.write_text("\n".join(lines) + "\n")
    return jsonl, csv


def test_trace_jsonl_and_csv_agree_and_sort_by_arrival(tmp_path):
    jsonl, csv = _write_trace(tmp_path)
    a, b = read_trace(jsonl), read_trace(csv)
    assert a == b
    assert [r.request_id for r in a] == ["3", "b", "a"]
    assert a[0].group_id == "3"
    assert a[2].score == 1.0 and a[1].score is None


def test_workload_with_trace_resolves_path_relative_to_file(tmp_path):
    jsonl, _ = _write_trace(tmp_path)
    wl = tmp_path / "w.yaml"
    wl.write_text("name: t\nmodel: Qwen3-0.6B\nrequests: {kind: trace, path: t.jsonl, time_scale: 2}\n")
    requests = workload_requests(load_workload(wl))
    assert [r.arrival_s for r in requests] == [0.0, 1.0, 1.0]
