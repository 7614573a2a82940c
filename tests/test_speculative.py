"""Speculative decoding: acceptance and the integer trajectory, step counts and times worked by hand, the draft's
KV footprint, traced acceptance, bad input, fast = exact, conservation."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from kinsim.cli import main
from kinsim.cost.engine_overhead import ENGINE_OVERHEADS
from kinsim.cost.roofline import RooflineCost
from kinsim.cost.step_cost import price_step
from kinsim.engine.kv import kv_layout
from kinsim.engine.speculation import Q, cumulative_advances, expected_tokens, steps_to_finish, tau_q_of
from kinsim.errors import SpecError
from kinsim.ops.attention import PrefillChunk
from kinsim.ops.lower import Step, StepBatch, decode_batch, logit_ops, lower_step
from kinsim.ops.op import Op
from kinsim.runner import simulate

from .conftest import HARDWARE
from .test_engine import H100, assert_same_figures, check_invariants, figures, hardware_with_kv_blocks, step_time
from .test_engine import workload as base_workload

PROMPT = 600  # above the default self draft's window (512 + 16 sink tokens), so the window binds


def workload(speculative=None, **changes):
    """One Qwen3-0.6B request of PROMPT prompt tokens unless changed, with ``deployment.speculative``."""
    defaults = {"requests.problems": 1, "requests.samples": 1, "requests.prompt_tokens": PROMPT}
    return base_workload(**{**defaults, **changes, "deployment.speculative": speculative})


# ----------------------------------------------------------------------------------- acceptance
def test_expected_tokens_per_verify_step():
    # geometric: (1 - a^(k+1)) / (1 - a); a 0.5, k 2: (1 - 0.125) / 0.5 = 1.75
    assert expected_tokens(0.5, 2) == 1.75
    assert expected_tokens(1.0, 3) == 4.0  # every draft accepted: k + 1
    assert expected_tokens(0.0, 3) == 1.0  # none: the target's own token only
    # constant: 1 + a k; a 0.5, k 4: 1 + 2 = 3
    assert expected_tokens(0.5, 4, "constant") == 3.0
    assert tau_q_of(0.5, 2) == 1_835_008  # 1.75 x 2**20 = 1,835,008 exactly


def test_integer_trajectory_at_alpha_half_k_two():
    tau = np.array([tau_q_of(0.5, 2)])
    # from j = 0 the sequence has advanced floor(1.75 m) after m steps: 0 1 3 5 7 8 10 12 14
    cum = cumulative_advances(np.array([0]), tau, np.array([100]), 8)[:, 0]
    assert cum.tolist() == [0, 1, 3, 5, 7, 8, 10, 12, 14]
    assert np.diff(cum).tolist() == [1, 2, 2, 2, 1, 2, 2, 2]  # every step at least 1, mean 1.75
    # from j = 3 (floor(5.25) = 5 already): floor(1.75 (3 + m)) - 5 = 0 2 3 5 7
    assert cumulative_advances(np.array([3]), tau, np.array([100]), 4)[:, 0].tolist() == [0, 2, 3, 5, 7]
    # capped at the tokens left: 4 left from j = 0: 0 1 3 4 4
    assert cumulative_advances(np.array([0]), tau, np.array([4]), 4)[:, 0].tolist() == [0, 1, 3, 4, 4]
    # first finish in closed form: 5 tokens from j = 0 need floor(1.75 m) >= 5: m = 3 (5.25); from j = 3: 7 -> 4
    assert steps_to_finish(np.array([0, 3, 0]), np.repeat(tau, 3), np.array([5, 7, 1])).tolist() == [3, 4, 1]
    assert Q == 2**20


# ----------------------------------------------------------------------------------- times by hand
def verify_ops(model, deployment, context: int, k: int) -> list[Op]:
    """The verify pass of one sequence with ``context`` tokens cached under dense attention, by hand (module
    docstring of kinsim.ops.speculative): Qwen3-0.6B on one GPU has 16 query and 8 KV heads of 128."""
    flops_per_key = 4 * 16 * 128  # 8,192
    kv_bytes, q_bytes = 2 * 8 * 128 * 2, 16 * 128 * 2  # K and V of a token, one layer, bf16: 4,096; query 4,096
    attended = sum(context + i + 1 for i in range(k + 1))  # query i sees c + i + 1 tokens
    read = context + k + 1  # the cache read once, for the last query
    attention = Op(name="attention_verify", op_class="attention", kernel="attention_decode", dtype="bf16",
                   flops=float(flops_per_key * attended), bytes_read=float(kv_bytes * read + (k + 1) * q_bytes),
                   bytes_written=float((k + 1) * (q_bytes + kv_bytes)), count=model.layers,
                   shape={"batch": 1, "q_heads": 16, "kv_heads": 8, "head_dim": 128, "kv_tokens_read": float(read),
                          "kv_bytes_per_element": 2.0})
    tokens = StepBatch(prefill=(PrefillChunk(k + 1, 0, completes_prompt=False),))  # k + 1 tokens, no logits
    linear = list(lower_step(model, deployment, None, tokens, attention=False).ops)
    return linear + [attention] + logit_ops(model, deployment, k + 1)  # logits for all k + 1 positions


def speculative_step_s(w, context: int) -> float:
    """One speculative step of one sequence by hand: k draft decode steps (the target under the draft's
    window) at contexts c .. c + k - 1, the verify pass, and the engine's host time once (one sequence)."""
    spec = w.deployment.speculative
    bare = dataclasses.replace(w.deployment, engine="none", speculative=None)  # kernels only
    cost = RooflineCost(H100)
    drafts = sum(float(price_step(lower_step(w.model, bare, spec.draft_attention, decode_batch([context + i])),
                                  cost).time_s) for i in range(spec.tokens))
    verify = float(price_step(Step(tuple(verify_ops(w.model, bare, context, spec.tokens)), spec.tokens + 1,
                                   spec.tokens + 1), cost).time_s)
    overhead = ENGINE_OVERHEADS[w.deployment.engine]
    return drafts + verify + overhead.step_s + 1 * overhead.per_sequence_s


def prefill_s(w) -> float:
    """The serving frontend's time (the request reaches the engine that late), then the prompt's prefill."""
    return ENGINE_OVERHEADS[w.deployment.engine].frontend_s + step_time(
        w.model, w.deployment, w.attention, StepBatch(prefill=(PrefillChunk(PROMPT, 0, True),)))


def test_alpha_one_takes_ceil_of_decode_tokens_over_k_plus_one_verify_steps():
    # L = 12 output tokens: the first comes from the prefill, the other 11 from verify steps of 4 tokens
    # (k = 3 drafts all accepted, plus the target's own): ceil(11 / 4) = 3 steps, advancing 4, 4, 3
    w = workload({"tokens": 3, "acceptance": 1.0}, **{"requests.output_tokens": 12})
    result = simulate(w, H100)
    (seq,) = result.records.sequences
    assert seq.generated == 12
    spec = result.to_dict()["speculative"]
    assert spec["verify_steps"] == 3 and spec["drafted_tokens"] == 9  # 3 drafts x 3 steps
    assert spec["accepted_tokens"] == 8  # 11 tokens advanced less 3 of the target's own
    assert spec["tokens_per_verify"] == 11 / 3 and spec["acceptance_rate"] == 8 / 9
    # after the prefill the sequence holds 600 tokens; its steps start at 600, 604, 608 cached
    expected = prefill_s(w) + sum(speculative_step_s(w, PROMPT + 4 * m) for m in range(3))
    assert seq.finish_s == pytest.approx(expected, rel=1e-9, abs=4e-9)  # each step rounded to the ns


def test_alpha_zero_takes_one_verify_step_per_token_and_pays_for_the_drafts():
    # every draft rejected: 11 steps of one token each; 3 x 11 = 33 drafts, none accepted
    w = workload({"tokens": 3, "acceptance": 0.0}, **{"requests.output_tokens": 12})
    result = simulate(w, H100)
    (seq,) = result.records.sequences
    spec = result.to_dict()["speculative"]
    assert (spec["verify_steps"], spec["drafted_tokens"], spec["accepted_tokens"]) == (11, 33, 0)
    assert spec["acceptance_rate"] == 0.0 and spec["tokens_per_verify"] == 1.0
    expected = prefill_s(w) + sum(speculative_step_s(w, PROMPT + m) for m in range(11))
    assert seq.finish_s == pytest.approx(expected, rel=1e-9, abs=12e-9)
    plain = simulate(workload(None, **{"requests.output_tokens": 12}), H100)
    assert seq.finish_s > plain["sim_time_s"]  # the wasted drafts' time is counted
    assert 0 < spec["draft_share"] < 1
    busy = sum(seg.end_s - seg.start_s for seg in result.records.segments)  # one replica, idle until it arrives
    assert busy == pytest.approx(result["sim_time_s"] - ENGINE_OVERHEADS["vllm"].frontend_s, rel=1e-9)
    assert spec["draft_s"] == pytest.approx(spec["draft_share"] * busy, rel=1e-9)


def test_geometric_trajectory_end_to_end():
    # alpha 0.5, k 2: tau 1.75; L = 9 leaves 8 decode tokens: floor(1.75 m) >= 8 at m = 5 (8.75, capped to 8),
    # advancing 1 2 2 2 1: 5 steps, 10 drafts, 8 - 5 = 3 accepted
    w = workload({"tokens": 2, "acceptance": 0.5}, **{"requests.output_tokens": 9})
    spec = simulate(w, H100).to_dict()["speculative"]
    assert (spec["verify_steps"], spec["drafted_tokens"], spec["accepted_tokens"]) == (5, 10, 3)
    assert spec["tokens_per_verify"] == 8 / 5 and spec["acceptance_rate"] == 3 / 10


def test_constant_acceptance_model():
    # alpha 0.5 of k = 4 drafts every step: tau = 1 + 2 = 3; L = 10 leaves 9 decode tokens: 3 steps
    w = workload({"tokens": 4, "acceptance": 0.5, "acceptance_model": "constant"}, **{"requests.output_tokens": 10})
    spec = simulate(w, H100).to_dict()["speculative"]
    assert (spec["verify_steps"], spec["drafted_tokens"], spec["accepted_tokens"]) == (3, 12, 6)
    assert spec["tokens_per_verify"] == 3.0 and spec["acceptance_rate"] == 0.5


def test_tokens_are_conserved_and_runs_without_the_feature_have_no_section():
    w = workload({"tokens": 3, "acceptance": 0.8}, **{"requests.problems": 3, "requests.samples": 4,
                                                       "requests.output_tokens": {"dist": "uniform", "low": 5,
                                                                                  "high": 80}})
    result = simulate(w, H100)
    check_invariants(result)  # the steps' tokens_out add up to every sequence's generated tokens
    spec = result.to_dict()["speculative"]
    decoded = result["tokens.generated"] - 12  # 12 first tokens came from prefills
    assert spec["verify_steps"] + spec["accepted_tokens"] == decoded
    assert "speculative" not in simulate(workload(None), H100).to_dict()


# ----------------------------------------------------------------------------------- memory
def test_a_separate_draft_adds_its_kv_bytes_per_token_and_takes_its_weights_from_kv_memory():
    target = base_workload(model="Qwen3-8B")
    draft = base_workload(model="Qwen3-8B", **{"deployment.speculative": {"draft": "Qwen3-0.6B", "tokens": 3,
                                                                           "acceptance": 0.7}})
    plain, speculative = (kv_layout(w.model, w.deployment, w.attention, H100) for w in (target, draft))
    usable = 80 * 2**30 * 0.99 * 0.9  # H100: 80 GiB, 99% of it visible, x vLLM's gpu_memory_utilization 0.9
    # vLLM's profiling peak: the forward pass of 8,192 tokens (residual x 2, QKV, gate and up: 2 x 4,096 +
    # 48 x 128 + 2 x 12,288 bf16 values a token) beats the sampler's 256 x 151,936 logits x 16 B; 0.25 GiB
    # outside PyTorch
    workspace = max(8192 * (2 * 4096 + 48 * 128 + 2 * 12288) * 2, 256 * 151_936 * 16) + 0.25 * 2**30
    # Qwen3-8B: 2 x 8 KV heads x 128 x 2 B x 36 layers = 147,456 B a token; Qwen3-0.6B: 28 layers: 114,688 B
    assert plain.block_bytes == 16 * 147_456
    assert speculative.block_bytes == 16 * (147_456 + 114_688) == 4 * 2**20
    weights_8b, weights_06b = target.model.weight_bytes, draft.deployment.speculative.draft.weight_bytes
    assert plain.total_blocks == math.floor((usable - weights_8b - workspace) / (16 * 147_456))
    assert speculative.total_blocks == math.floor((usable - weights_8b - weights_06b - workspace) / (4 * 2**20))
    assert speculative.total_blocks < plain.total_blocks * 147_456 / (147_456 + 114_688)
    self_draft = base_workload(model="Qwen3-8B", **{"deployment.speculative": {"tokens": 3, "acceptance": 0.7}})
    assert kv_layout(self_draft.model, self_draft.deployment, self_draft.attention, H100) == plain  # no extra


# ----------------------------------------------------------------------------------- traced acceptance
def trace(tmp_path: Path, rows: list[dict]) -> str:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_acceptance_from_a_trace_column(tmp_path: Path):
    rows = [{"request_id": "a", "arrival_s": 0.0, "prompt_tokens": 50, "output_tokens": 9, "acceptance": 1.0},
            {"request_id": "b", "arrival_s": 0.0, "prompt_tokens": 50, "output_tokens": 9, "acceptance": 0.0}]
    w = workload({"tokens": 3, "acceptance": "trace"}, requests={"kind": "trace", "path": trace(tmp_path, rows)})
    result = simulate(w, H100)
    # a: 8 decode tokens, 4 a step: 2 steps (6 drafts accepted); b: 8 steps of one token
    spec = result.to_dict()["speculative"]
    assert (spec["verify_steps"], spec["drafted_tokens"], spec["accepted_tokens"]) == (10, 30, 6)
    assert fast_equals_exact(w, H100)


def test_acceptance_trace_needs_the_column(tmp_path: Path):
    rows = [{"request_id": "a", "arrival_s": 0.0, "prompt_tokens": 50, "output_tokens": 9}]
    path = trace(tmp_path, rows)
    w = workload({"tokens": 3, "acceptance": "trace"}, requests={"kind": "trace", "path": path})
    with pytest.raises(SpecError, match="deployment.speculative.acceptance: needs a per-request acceptance") as e:
        simulate(w, H100)
    assert path in str(e.value)
    rows.append({"request_id": "b", "arrival_s": 0.0, "prompt_tokens": 50, "output_tokens": 9, "acceptance": 0.5})
    w = workload({"tokens": 3, "acceptance": "trace"}, requests={"kind": "trace", "path": trace(tmp_path, rows)})
    with pytest.raises(SpecError, match=r"request a\.acceptance: has no acceptance rate"):
        simulate(w, H100)
    with pytest.raises(SpecError, match="requests.kind best_of_n has none"):
        simulate(workload({"tokens": 3, "acceptance": "trace"}), H100)
    bad = [{"request_id": "a", "arrival_s": 0.0, "prompt_tokens": 50, "output_tokens": 9, "acceptance": 1.5}]
    w = workload({"tokens": 3, "acceptance": "trace"}, requests={"kind": "trace", "path": trace(tmp_path, bad)})
    with pytest.raises(SpecError, match=r"line 1\.acceptance: must be at most 1, got 1\.5"):
        simulate(w, H100)


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("speculative", "changes", "message"), [
    ({"tokens": 0, "acceptance": 0.5}, {}, "deployment.speculative.tokens: must be at least 1"),
    ({"tokens": 3, "acceptance": 1.5}, {}, r"deployment.speculative.acceptance: must be in \[0, 1\]"),
    ({"tokens": 3, "acceptance": "always"}, {}, "must be a number in .0, 1. or trace"),
    ({"tokens": 3, "acceptance": 0.5, "acceptance_model": "poisson"}, {}, "must be one of geometric, constant"),
    ({"tokens": 3, "acceptance": 0.5, "draft": "Qwen9"}, {}, "deployment.speculative.draft.preset: unknown model"),
    ({"tokens": 3, "acceptance": 0.5, "draft": 7}, {}, "deployment.speculative.draft: expected self"),
    ({"tokens": 3, "acceptance": 0.5, "draft": "Qwen3-0.6B", "draft_attention": {"policy": "dense"}}, {},
     "draft_attention: applies to a self draft only"),
    ({"tokens": 3, "acceptance": 0.5}, {"deployment.max_num_seqs": 64, "deployment.max_num_batched_tokens": 200},
     r"deployment.max_num_batched_tokens: must be at least .* 64 x 4 = 256"),
    ({"tokens": 3, "acceptance": 0.5}, {"attention": {"policy": "block_topk", "offload": True}},
     "deployment.speculative: is not modelled with attention.offload"),
])
def test_bad_input_is_one_clear_error(speculative, changes, message):
    with pytest.raises(SpecError, match=message):
        simulate(workload(speculative, **changes), H100)


def test_cli_refuses_bad_speculative_input_in_one_line(tmp_path: Path, capsys):
    path = tmp_path / "w.yaml"
    path.write_text("name: w\nmodel: Qwen3-0.6B\ndeployment: {speculative: {tokens: 2, acceptance: 2}}\n"
                    "requests: {kind: long_cot, problems: 1, prompt_tokens: 10, output_tokens: 5, "
                    "max_output_tokens: 5}\n")
    assert main(["run", str(path), "--hw", str(HARDWARE / "h100.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "deployment.speculative.acceptance: must be in [0, 1], got 2" in err


# ----------------------------------------------------------------------------------- fast = exact
def fast_equals_exact(w, hw) -> bool:
    fast, exact = simulate(w, hw), simulate(w, hw, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    check_invariants(fast)
    check_invariants(exact)
    return True


@pytest.mark.parametrize(("speculative", "changes"), [
    ({"tokens": 3, "acceptance": 0.8}, {}),
    ({"tokens": 2, "acceptance": 0.6, "draft": "Qwen3-0.6B"}, {"deployment.prefix_caching": True}),
    ({"tokens": 4, "acceptance": 0.3, "acceptance_model": "constant"},
     {"attention": {"policy": "block_topk", "block_size": 16, "top_k": 2}, "deployment.preemption": "swap"}),
    ({"tokens": 1, "acceptance": 0.9, "draft_attention": {"policy": "topk", "token_budget": 64}},
     {"attention": {"policy": "sliding_window", "window": 40}, "deployment.data_parallel": 2}),
])
def test_fast_forward_equals_exact_steps_with_speculation(speculative, changes):
    w = workload(speculative, **{"requests.problems": 3, "requests.samples": 4, "requests.prompt_tokens": 120,
                                 "requests.output_tokens": {"dist": "uniform", "low": 5, "high": 200},
                                 "requests.arrival": {"process": "poisson", "rate": "40 /s"}, **changes})
    hw = hardware_with_kv_blocks(w, 60)  # tight: preemptions
    assert fast_equals_exact(w, hw)


def test_preempted_sequences_keep_their_place_on_the_trajectory():
    # swapped out and back, a sequence resumes where it was: 149 decode tokens at tau 1.75 take the least m
    # with floor(1.75 m) >= 149, m = 86 (150.5), whatever the swaps (a recompute instead regenerates one token
    # in its prefill, which is not a verify step)
    w = workload({"tokens": 2, "acceptance": 0.5}, **{"requests.problems": 2, "requests.samples": 6,
                                                       "requests.prompt_tokens": 60, "requests.output_tokens": 150,
                                                       "deployment.preemption": "swap"})
    result = simulate(w, hardware_with_kv_blocks(w, 40))
    assert result.to_dict()["memory"]["preemptions"]["swap"] > 0
    assert steps_to_finish(np.array([0]), np.array([tau_q_of(0.5, 2)]), np.array([149]))[0] == 86
    assert result["requests.completed"] == 12
    assert result.to_dict()["speculative"]["verify_steps"] == 12 * 86
