"""Automatic prefix caching (``deployment.prefix_caching``): hits, readiness, LRU eviction, accounting."""

from __future__ import annotations

import json

import pytest

from kinsim.engine.kv import kv_layout
from kinsim.engine.prefix_cache import PrefixCache, prompt_block_keys
from kinsim.errors import SpecError
from kinsim.runner import simulate
from kinsim.workload.load import load_workload
from kinsim.workload.request import BlockHashes

from .test_engine import H100, assert_same_figures, figures, hardware_with_kv_blocks, workload

BLOCK = 16  # the deployment's default kv_block_size


def trace_workload(tmp_path, rows, **deployment):
    """A workload replaying ``rows`` (kinsim trace rows) with hash ids of one KV block (16 tokens) each."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec = tmp_path / "w.yaml"
    spec.write_text(json.dumps({
        "name": "apc", "model": "Qwen3-0.6B",
        "deployment": {"prefix_caching": True, **deployment},
        "requests": {"kind": "trace", "path": "trace.jsonl", "hash_block_tokens": BLOCK}}))
    return load_workload(spec)


def row(i, arrival, hashes, prompt, output=4):
    return {"request_id": f"r{i}", "arrival_s": arrival, "prompt_tokens": prompt, "output_tokens": output,
            "hash_ids": hashes}


# ----------------------------------------------------------------------------------- the cache alone
def test_keys_name_blocks_by_the_hash_of_the_block_holding_their_last_token():
    ids = BlockHashes.of([7, 8, 9])  # hash blocks of 32 tokens: tokens 0-31, 32-63, 64-95
    # 90 tokens: 5 whole blocks of 16 (tokens 0-79); block b ends at token 16b + 15, in hash block (16b + 15) // 32
    keys = prompt_block_keys(90, 16, group=3, hash_ids=ids, hash_block_tokens=32)
    assert keys == ((7, 0), (7, 1), (8, 2), (8, 3), (9, 4))
    # ids reaching only 40 tokens name the first two whole blocks (32 tokens) only
    assert prompt_block_keys(90, 16, group=3, hash_ids=BlockHashes.of([7]), hash_block_tokens=40) == ((7, 0), (7, 1))
    # without ids the group names its whole prompt blocks
    assert prompt_block_keys(50, 16, group=3) == (("group", 3, 0), ("group", 3, 1), ("group", 3, 2))


def test_hits_count_ready_blocks_from_the_first_and_eviction_takes_the_least_recently_released():
    cache = PrefixCache()
    a, b = ["a0", "a1", "a2"], ["b0", "b1"]
    assert cache.acquire(a) == 3 and cache.hits(a) == 0  # written but not ready: no hit yet
    cache.mark_ready(a)
    assert cache.hits(a) == 3 and cache.hits(["a0", "x", "a2"]) == 1
    assert cache.acquire(b) == 2
    cache.mark_ready(b)
    assert cache.acquire(a) == 0  # already referenced: no new block
    assert cache.release(a) == 0 and cache.release(a) == 3  # the second holder frees them
    assert cache.release(b) == 2
    assert cache.evictable == 5 and cache.cached == 5
    # released a (last block first), then b: eviction order a2, a1, a0, b1, b0
    cache.evict(2)
    assert cache.hits(a) == 1 and cache.hits(b) == 2
    cache.evict(2)
    assert cache.hits(a) == 0 and cache.hits(b) == 1
    assert cache.evictions == 4 and cache.evictable == 1
    # re-referencing an evictable block takes it out of the queue
    assert cache.acquire(["b0"]) == 1 and cache.evictable == 0
    cache.evict(5)
    assert cache.hits(["b0"]) == 1 and cache.evictions == 4


def test_a_block_released_before_its_prefill_completed_is_dropped_not_cached():
    cache = PrefixCache()
    cache.acquire(["k0", "k1"])
    assert cache.release(["k0", "k1"]) == 2
    assert cache.cached == 0 and cache.evictable == 0


# ----------------------------------------------------------------------------------- in the engine
def test_a_request_sharing_three_prompt_blocks_with_an_earlier_one_hits_three_blocks(tmp_path):
    # r0: 4 blocks (ids 1 2 3 4, 64 tokens), done long before r1 arrives; r1 shares ids 1 2 3 then differs.
    w = trace_workload(tmp_path, [row(0, 0.0, [1, 2, 3, 4], 64), row(1, 5.0, [1, 2, 3, 9], 64 + 10)])
    result = simulate(w, H100)
    prefix = result.to_dict()["memory"]["prefix"]
    assert prefix["prefills"] == 2
    assert prefix["hit_blocks"] == 3
    assert prefix["hit_tokens"] == 3 * BLOCK
    assert prefix["queried_tokens"] == 64 + 74
    assert prefix["queried_blocks"] == 4 + 4  # whole prompt blocks: 64 // 16 and 74 // 16
    assert result["tokens.prefill_computed"] == 64 + (74 - 48)
    assert prefix["token_hit_rate"] == pytest.approx(48 / 138)


def test_without_prefix_caching_the_same_trace_hits_nothing(tmp_path):
    w = trace_workload(tmp_path, [row(0, 0.0, [1, 2, 3, 4], 64), row(1, 5.0, [1, 2, 3, 9], 74)],
                       prefix_caching=False)
    result = simulate(w, H100)
    assert result.to_dict()["memory"]["prefix"]["hit_tokens"] == 0
    assert result["tokens.prefill_computed"] == 64 + 74


def test_a_prefix_still_being_prefilled_is_not_hit(tmp_path):
    # Both arrive together: r1 is admitted in the step that writes r0's blocks, so it finds them not ready.
    w = trace_workload(tmp_path, [row(0, 0.0, [1, 2, 3], 48), row(1, 0.0, [1, 2, 3], 48)])
    result = simulate(w, H100)
    assert result.to_dict()["memory"]["prefix"]["hit_tokens"] == 0
    assert result["tokens.prefill_computed"] == 96


def test_a_whole_cached_prompt_still_computes_its_last_token(tmp_path):
    # Same 3-block prompt twice, far apart: the second finds all 48 tokens but must compute one for its logits.
    w = trace_workload(tmp_path, [row(0, 0.0, [1, 2, 3], 48), row(1, 5.0, [1, 2, 3], 48)])
    result = simulate(w, H100)
    assert result.to_dict()["memory"]["prefix"]["hit_tokens"] == 47
    assert result["tokens.prefill_computed"] == 48 + 1


@pytest.mark.parametrize("capacity, evicted, hit_tokens", [(45, 0, 63), (44, 2, 48)])
def test_eviction_makes_room_and_loses_the_hit(tmp_path, capacity, evicted, hit_tokens):
    # r0: 64 tokens (ids 1-4: 4 cached blocks), 4 outputs (1 private block); ended long before r1.
    # r1: 640 tokens of other content (40 blocks) and 1 private block: 41 in use beside r0's 4 cached ones.
    # With 45 blocks all fit: r2 (r0's prompt again) finds its 4 blocks and computes only its last token
    # (63 hit); its private block makes 4 + 1 in use + r1's 40 cached = 45: no eviction. With 44, r1's
    # private block evicts the least recently released block, r0's last (released last block first), so
    # r2 finds 3 blocks (48 tokens), computes 16 and writes block 4 again; then its private block makes
    # 5 + 40 = 45 > 44 and evicts one more (r1's last): 2 evictions.
    rows = [row(0, 0.0, [1, 2, 3, 4], 64), row(1, 2.0, list(range(100, 140)), 640), row(2, 4.0, [1, 2, 3, 4], 64)]
    w = trace_workload(tmp_path, rows)
    hw = hardware_with_kv_blocks(w, capacity)
    result = simulate(w, hw)
    prefix = result.to_dict()["memory"]["prefix"]
    assert prefix["evicted_blocks"] == evicted
    assert prefix["hit_tokens"] == hit_tokens
    assert result["tokens.prefill_computed"] == 64 + 640 + (64 - hit_tokens)
    assert result["requests.completed"] == 3


def test_prefix_caching_changes_nothing_where_nothing_is_reused():
    # Best-of-N groups are named by their group: a later group never hits an earlier one, and within a group
    # the prompt is shared as without the cache. The figures are those without prefix caching.
    w = workload(**{"requests.problems": 2, "requests.samples": 4})
    on = simulate(w, H100, {"deployment.prefix_caching": True})
    off = simulate(w, H100)
    assert on["tokens.prefill_computed"] == off["tokens.prefill_computed"] == 200
    same_inputs = {"inputs": None}  # the inputs differ by the key itself
    assert_same_figures({**figures(on), **same_inputs}, {**figures(off), **same_inputs})


@pytest.mark.parametrize("blocks", [60, 90])
def test_prefix_caching_fast_forward_equals_exact_steps(tmp_path, blocks):
    rows = [row(i, 0.02 * i, [1, 2, 3, 10 + i % 3], 64 + 5 * i, output=40 + 7 * i) for i in range(12)]
    w = trace_workload(tmp_path, rows)
    hw = hardware_with_kv_blocks(w, blocks)
    fast = simulate(w, hw)
    exact = simulate(w, hw, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    assert fast.to_dict()["memory"] == exact.to_dict()["memory"]


# ----------------------------------------------------------------------------------- the host tier
def test_an_evicted_block_goes_to_host_memory_and_a_hit_loads_it_back(tmp_path):
    # The 44-block case above with kv_offload: lru. r1's private block evicts r0's last block, which is
    # written to host memory; r2 then finds 3 blocks in HBM and the 4th in host memory: 4 hits, 63 tokens
    # skipped (all but the last), one block loaded over the host link before its prefill. r2's private
    # block then evicts r1's last block to host memory too: 2 blocks written.
    rows = [row(0, 0.0, [1, 2, 3, 4], 64), row(1, 2.0, list(range(100, 140)), 640), row(2, 4.0, [1, 2, 3, 4], 64)]
    w = trace_workload(tmp_path, rows, kv_offload="lru")
    hw = hardware_with_kv_blocks(w, 44)
    result = simulate(w, hw)
    memory = result.to_dict()["memory"]
    block_bytes = kv_layout(w.model, w.deployment, w.attention, hw).block_bytes
    assert memory["prefix"]["hit_blocks"] == 4 and memory["prefix"]["host_hit_blocks"] == 1
    assert memory["prefix"]["hit_tokens"] == 63
    assert result["tokens.prefill_computed"] == 64 + 640 + 1
    assert memory["host"]["offload_bytes"] == 2 * block_bytes
    assert memory["host"]["load_bytes"] == 1 * block_bytes
    # the load stalls r2's first step: one block over PCIe 5 (63 GB/s x 0.85) plus 2 us, to the nanosecond
    assert memory["host"]["stall_s"] == pytest.approx(block_bytes / (63e9 * 0.85) + 2e-6, abs=1e-9)
    assert memory["host"]["peak_bytes"] == 2 * block_bytes <= memory["host"]["capacity_bytes"]


def test_the_host_tier_needs_prefix_caching(tmp_path):
    with pytest.raises(SpecError, match="needs prefix_caching") as error:
        trace_workload(tmp_path, [row(0, 0.0, [1], 16)], prefix_caching=False, kv_offload="lru")
    assert error.value.path.endswith("kv_offload")


def test_the_host_tier_keeps_its_newest_blocks_within_its_room():
    cache = PrefixCache(host_tier=True)
    cache.acquire(["a", "b", "c"])
    cache.mark_ready(["a", "b", "c"])
    cache.release(["a", "b", "c"])  # eviction order: c, b, a
    cache.evict(3, host_room=2)  # c then b written; a pushes out c (the oldest)
    assert cache.offloaded == 3 and cache.host_cached == 2
    assert cache.lookup(["a", "b", "c"]) == (0, 2)  # a and b from the host tier; c is gone
    cache.touch_host(["b"])  # b loaded back: now the most recently used of the host tier
    cache.drop_host(1)  # the least recently used, a
    assert cache.lookup(["b"]) == (0, 1) and cache.lookup(["a"]) == (0, 0)
