"""The engine's scale machinery: closed-form segment pricing and block counts, columnar requests, and
a simulation that keeps no per-request object once a request has ended."""

from __future__ import annotations

import numpy as np
import pytest

from kinsim import load_hardware
from kinsim.cost.roofline import RooflineCost
from kinsim.engine.attribution import decode_coefficients, decode_shares, step_coefficients, step_shares
from kinsim.engine.decode_batch import COLUMNS, REBASE_STEPS
from kinsim.engine.kv import KVLayout
from kinsim.engine.pricer import StepPricer
from kinsim.engine.scheduler import Scheduler
from kinsim.engine.sequence import DECODE, GroupState, Sequence
from kinsim.engine.simulation import Simulation
from kinsim.ops.attention import PrefillChunk
from kinsim.ops.lower import StepBatch
from kinsim.workload.generate import generate_request_table, generate_requests
from kinsim.workload.request import Request, RequestTable

from .conftest import HARDWARE
from .test_engine import workload

H100 = load_hardware(HARDWARE / "h100.yaml")

POLICIES = [{"policy": "dense"}, {"policy": "block_topk", "block_size": 16, "top_k": 4},
            {"policy": "sliding_window", "window": 300}, {"policy": "topk", "token_budget": 700},
            {"policy": "block_topk", "block_size": 16, "top_k": 4, "local_window": 20, "offload": True,
             "gpu_cache_blocks": 2, "cache_hit_rate": 0.5}]


@pytest.mark.parametrize("attention", POLICIES)
@pytest.mark.parametrize("prefix_shared_read", [False, True])
@pytest.mark.parametrize("n", [1, 3, 9, 13, 14, 60])  # Qwen3-8B has 8 KV heads: 14 x 8 >= 0.8 x 132 SMs > 13 x 8
def test_closed_form_segment_pricing_equals_the_matrix_of_contexts_to_the_bit(attention, prefix_shared_read, n):
    w = workload(model="Qwen3-8B", attention=attention, **{"deployment.prefix_shared_read": prefix_shared_read})
    pricer = StepPricer(w.model, w.deployment, w.attention, RooflineCost(H100))
    rng = np.random.default_rng(1)
    steps = 300
    context = rng.integers(1, 1500, size=n)  # some below the sparse budgets, some above, some crossing them
    shared = rng.integers(0, 100, size=n).astype(float)
    groups = rng.integers(0, 3, size=n)
    matrix = (context[None, :] + np.arange(steps)[:, None]).astype(float)
    closed = pricer.decode_run(context, steps, shared, groups)
    reference = pricer.decode_segment(matrix, shared, groups)
    assert np.array_equal(closed.matrix, reference.matrix)
    # the direct path (no ops) serves split and unsplit batches of a kernel kind the H100 profile has terms
    # for (dense decode; sparse kernels keep the hardware file's efficiencies and the ops)
    assert (pricer._direct[n] is not None) == (attention["policy"] == "dense")
    if n <= 13 and pricer._direct[n] is not None:  # split: the number of splits changes within the segment
        assert pricer._direct[n].split
        tokens = (context.sum() + n * np.arange(steps)) / n
        fill = -(-132 // (n * 8))
        splits = np.minimum(np.minimum(fill, np.ceil(tokens / 128)), 128)
        assert n > 1 or len(np.unique(splits)) > 1


@pytest.mark.parametrize("attention", POLICIES[:2])
@pytest.mark.parametrize("prefix_shared_read", [False, True])
@pytest.mark.parametrize("n", [0, 1, 3, 13, 14, 60])
def test_a_mixed_step_priced_in_direct_form_equals_its_ops_priced_one_by_one_to_the_bit(attention, prefix_shared_read,
                                                                                        n):
    w = workload(model="Qwen3-8B", attention=attention, **{"deployment.prefix_shared_read": prefix_shared_read})
    pricer = StepPricer(w.model, w.deployment, w.attention, RooflineCost(H100))
    rng = np.random.default_rng(2)
    batch = StepBatch(decode_context=rng.integers(1, 1500, size=n).astype(float),
                      prefill=(PrefillChunk(300, 0, True), PrefillChunk(64, 512, False)),
                      shared_prefix=rng.integers(0, 100, size=n).astype(float), group_index=rng.integers(0, 3, size=n))
    for _ in range(2):  # the second time from the prefill cache
        assert np.array_equal(pricer.step(batch).matrix, pricer._price(batch, 1).matrix)



@pytest.mark.parametrize("n", [1, 3, 13, 14, 60])  # split (n <= 13 on Qwen3-8B) and unsplit KV
@pytest.mark.parametrize("chunks", [(), (PrefillChunk(300, 0, True),),
                                    (PrefillChunk(300, 0, True), PrefillChunk(64, 512, False))])
def test_the_lean_engines_mixed_step_column_equals_the_step_and_its_ops_to_the_bit(n, chunks):
    # StepPricer.dense_column adds the same parts on Python floats (from lists kept per value) that step adds as
    # arrays; the lean engine's mixed steps are priced by it, so a bit off would move a tick
    w = workload(model="Qwen3-8B")
    pricer = StepPricer(w.model, w.deployment, w.attention, RooflineCost(H100))
    context = np.random.default_rng(4).integers(1, 1500, size=n).astype(float)
    batch = StepBatch(decode_context=context, prefill=chunks)
    for _ in range(2):  # the second time from the kept lists
        column = pricer.dense_column(n, int(context.sum()), tuple((c.tokens, c.cached, c.completes_prompt)
                                                                  for c in chunks))
        assert all(type(value) is float for value in column)
        assert np.array_equal(np.array(column), pricer._price(batch, 1).matrix[:, 0])
        assert np.array_equal(np.array(column), pricer.step(batch).matrix[:, 0])

@pytest.mark.parametrize("n", [1, 13, 60])
def test_the_direct_decode_pricing_of_another_head_size_equals_its_ops_to_the_bit(n):
    # head dimension 64 (gpt-oss's): the per-item and per-sequence costs scale (kernel_work.head_dim_scale)
    w = workload(model={"preset": "Qwen3-8B", "head_dim": 64})
    pricer = StepPricer(w.model, w.deployment, w.attention, RooflineCost(H100))
    rng = np.random.default_rng(3)
    context = rng.integers(1, 1500, size=n)
    matrix = (context[None, :] + np.arange(50)[:, None]).astype(float)
    assert np.array_equal(pricer.decode_run(context, 50).matrix, pricer.decode_segment(matrix).matrix)
    assert pricer._direct[n] is not None and pricer._direct[n].item_cost != H100.calibration.attention_decode.item_cost
    batch = StepBatch(decode_context=context.astype(float), prefill=(PrefillChunk(300, 0, True),))
    assert np.array_equal(pricer.step(batch).matrix, pricer._price(batch, 1).matrix)


def test_head_dim_scale_is_one_at_the_profiles_head_size():
    from kinsim.ops.kernel_work import HEAD_DIM_EXPONENT, head_dim_scale

    assert head_dim_scale(128) == 1.0 and head_dim_scale(64) == 0.5 ** HEAD_DIM_EXPONENT
    assert list(head_dim_scale(np.array([64.0, 128.0]))) == [0.5 ** HEAD_DIM_EXPONENT, 1.0]


def _scheduler_with_batch(kv, shared, block_size=16, window_blocks=None):
    """A scheduler whose decode batch holds sequences with ``kv`` tokens cached and ``shared`` prompt tokens
    in shared blocks, each holding the private blocks its tokens need."""
    layout = KVLayout(block_size=block_size, total_blocks=10_000, block_bytes=1.0, gpus=1, window_blocks=window_blocks,
                      shares_prompt=window_blocks is None)
    scheduler = Scheduler(layout, workload().deployment)
    for i, (tokens, prefix) in enumerate(zip(kv, shared)):
        seq = Sequence(Request(f"r{i}", f"g{i}", 0.0, prefix + 1, 10_000), i, GroupState(i, prefix + 1, prefix), 0.0)
        seq.state, seq.kv_tokens, seq.generated = DECODE, tokens, 1
        seq.private_blocks = int(layout.private_blocks_of(tokens, prefix))
        scheduler.batch.add(seq)
    return scheduler, layout


@pytest.mark.parametrize("window_blocks", [None, 5])
def test_blocks_added_per_step_match_counting_every_sequence(window_blocks):
    kv = [16, 17, 31, 32, 100, 5, 64]
    shared = [0, 0, 16, 0, 48, 0, 32] if window_blocks is None else [0] * 7
    scheduler, layout = _scheduler_with_batch(kv, shared, window_blocks=window_blocks)
    steps = 70
    added = scheduler._blocks_added(steps)
    for k in range(steps):  # after step k each sequence holds the blocks of kv + k + 1 tokens
        need = sum(layout.private_blocks_of(t + k + 1, s) - layout.private_blocks_of(t, s) for t, s in zip(kv, shared))
        assert added[k] == need


def test_the_decode_batch_keeps_fcfs_order_and_writes_counters_back():
    scheduler, _ = _scheduler_with_batch([10, 20, 30], [0, 0, 0])
    batch = scheduler.batch
    assert [s.order for s in batch.seqs] == [0, 1, 2]
    batch.kv[:] += 5
    second = batch.seqs[1]
    batch.remove(second)
    assert second.kv_tokens == 25 and [s.order for s in batch.seqs] == [0, 2]
    assert batch.kv.tolist() == [15, 35]
    batch.add(second)  # back at its place by arrival, then order
    assert [s.order for s in batch.seqs] == [0, 1, 2] and batch.kv.tolist() == [15, 25, 35]
    gone = batch.remove_where(np.array([True, False, True]))
    assert [s.order for s in gone] == [0, 2] and gone[1].kv_tokens == 35 and batch.kv.tolist() == [25]


def test_the_decode_batch_owes_credited_gpu_time_by_each_sequences_cached_tokens():
    # two sequences at 9 and 19 cached tokens; a segment owes (kv + 1) x 0.5 + 2 each: 7.0 and 12.0 s
    scheduler, _ = _scheduler_with_batch([9, 19], [0, 0])
    batch = scheduler.batch
    batch.credit(0.5, 2.0)
    batch.kv[:] += 3  # the segment's three steps
    batch.advance(3)
    # a third joins at 40 tokens with 1.0 s settled; the next segment owes (kv + 1) x 0.25 + 1 each
    third = Sequence(Request("r2", "g2", 0.0, 1, 10_000), 2, GroupState(2, 1, 0), 0.0)
    third.state, third.kv_tokens, third.generated, third.gpu_s = DECODE, 40, 1, 1.0
    batch.add(third)
    batch.credit(0.25, 1.0)  # at 12, 22 and 40 tokens: 13 x 0.25 + 1 = 4.25, 23 x 0.25 + 1 = 6.75, 11.25
    assert batch.owed_gpu_s().tolist() == pytest.approx([11.25, 18.75, 12.25], rel=1e-12)
    gone = batch.remove_where(np.array([True, False, True]))
    assert [s.gpu_s for s in gone] == pytest.approx([11.25, 12.25], rel=1e-12)
    # past REBASE_STEPS the owed time is settled into the column and the sums restart: nothing changes
    batch.kv[:] += REBASE_STEPS
    batch.advance(REBASE_STEPS)
    assert batch.steps == 0 and batch.gpu_s.tolist() == pytest.approx([18.75], rel=1e-12)
    batch.credit(1.0, 0.0)  # one second per token attended: 22 + REBASE_STEPS + 1 tokens
    second = batch.seqs[0]
    batch.remove(second)
    assert second.gpu_s == pytest.approx(18.75 + 22 + REBASE_STEPS + 1, rel=1e-12) and batch.n == 0


def test_decode_coefficients_are_the_shares_of_every_sequence():
    time_s, attention_s, step_s = np.array([1.0, 2.0, 0.5]), np.array([0.6, 0.9, 0.2]), np.array([1.0, 2.5, 0.5])
    context = np.array([9, 19, 130])
    attended = np.array([(context + 1 + k).sum() for k in range(3)], dtype=float)
    weight, constant = decode_coefficients(time_s, attention_s, step_s, 3, attended)
    shares = decode_shares(time_s, attention_s, step_s, context, None, attended)
    assert ((context + 1) * weight + constant).tolist() == pytest.approx(shares.tolist(), rel=1e-12)
    assert shares.sum() == pytest.approx(step_s.sum(), rel=1e-12)
    decode, chunks = step_shares(1.0, 0.5, np.array([10.0, 20.0]), 1.0, [30.0], [20.0])
    weight, constant, lazy_chunks = step_coefficients(1.0, 0.5, 2, 30.0, 1.0, [30.0], [20.0])
    assert (np.array([10.0, 20.0]) * weight + constant).tolist() == pytest.approx(decode.tolist(), rel=1e-12)
    assert lazy_chunks == pytest.approx(chunks, rel=1e-12)


def test_the_decode_batch_names_its_storage_rows_in_columns_order():
    # the column views are unpacked from the storage by name (DecodeBatch._views): each must be its row
    scheduler, _ = _scheduler_with_batch([10, 20, 30], [0, 0, 0])
    batch = scheduler.batch
    for row in range(len(COLUMNS)):
        batch._data[row, :3] = [100 * row, 100 * row + 1, 100 * row + 2]
    for row, name in enumerate(COLUMNS):
        assert getattr(batch, name).tolist() == [100 * row, 100 * row + 1, 100 * row + 2], name
    # one finished sequence leaves by the single-removal path, its counters written back, the rest moved up
    gone = batch.remove_where(np.array([False, True, False]))
    assert [s.order for s in gone] == [1] and (gone[0].kv_tokens, gone[0].generated) == (1, 101)
    assert batch.kv.tolist() == [0, 2] and batch.generated.tolist() == [100, 102]


def test_a_generated_request_table_names_and_sizes_requests_as_the_list_does():
    w = workload(**{"requests.problems": 3, "requests.samples": 2,
                    "requests.output_tokens": {"dist": "uniform", "low": 5, "high": 50}})
    table = generate_request_table(w.requests, seed=4)
    listed = generate_requests(w.requests, seed=4)
    assert len(table) == 6 and list(table) == listed
    assert [r.request_id for r in listed] == ["p0-s0", "p0-s1", "p1-s0", "p1-s1", "p2-s0", "p2-s1"]
    assert table.group.tolist() == [0, 0, 1, 1, 2, 2] and table.groups == 3
    again = RequestTable.from_requests(listed)
    assert list(again) == listed and again.group.tolist() == [0, 0, 1, 1, 2, 2]


def test_a_trace_table_numbers_groups_in_order_of_first_request():
    requests = [Request("a", "x", 0.0, 10, 2), Request("b", "y", 1.0, 10, 2), Request("c", "x", 2.0, 10, 2,
                                                                                       score=1.0)]
    table = RequestTable.from_requests(requests)
    assert table.group.tolist() == [0, 1, 0] and table.group_id(1) == "y"
    assert table[2] == requests[2]


@pytest.mark.parametrize("router", ["group_affinity", "least_loaded", "round_robin"])
def test_nothing_is_kept_per_request_once_it_has_ended(router):
    w = workload(**{"requests.problems": 40, "requests.samples": 2, "deployment.data_parallel": 3,
                    "deployment.router": router, "requests.arrival": {"process": "poisson", "rate": "20 /s"}})
    sim = Simulation(w, H100)
    records = sim.run()
    assert sim.finished == 80
    assert not sim._live  # no live sequence objects
    assert all(not r.scheduler.groups for r in sim.replicas)  # every group forgotten where it ran
    assert not sim.router._placed
    assert records.sequences.generated.sum() == records.sequences.table.output_tokens.sum()


@pytest.mark.parametrize("preset,tp,ep,hardware,cost", [
    ("Qwen3-0.6B", 1, 1, "h100.yaml", "roofline"),
    ("Qwen3-32B", 8, 1, "h100.yaml", "roofline"),  # auto all-reduce: custom up to 819 tokens, then NCCL
    ("Qwen3-32B", 4, 1, "a100.yaml", "roofline"),
    ("Llama-3.1-70B", 2, 1, "mi300x.yaml", "roofline"),
    ("Qwen3-30B-A3B", 2, 1, "b200.yaml", "roofline"),  # MoE: the expected experts touched, a power per count
    ("Qwen3-235B-A22B", 8, 8, "h200.yaml", "roofline"),
    ("Qwen3-8B", 1, 1, "h100.yaml", "kinetics"),
])
def test_the_count_tables_equal_each_count_priced_alone_to_the_bit(preset, tp, ep, hardware, cost):
    """The ops that depend on the token count alone, and the logit ops, are priced for 256 counts at once
    (arrays); every entry must be the bits of pricing its count alone, including the block where the
    all-reduce changes implementation (the table then prices that block count by count)."""
    from kinsim.cost.registry import make_cost_model

    w = workload(model=preset, **{"deployment.tensor_parallel": tp, "deployment.expert_parallel": ep})
    pricer = StepPricer(w.model, w.deployment, w.attention, make_cost_model(cost, load_hardware(HARDWARE / hardware)))
    size = pricer._by_tokens.BLOCK
    for table, price, part in ((pricer._by_tokens, pricer._token_figures, pricer._token_part),
                               (pricer._by_rows, pricer._rows_figures, pricer._rows_part)):
        for block in (0, 3):
            figures = table.block(block * size)
            for i in range(size):
                assert np.array_equal(figures[:, i], price(block * size + i)), (block, i)
            assert np.array_equal(part(block * size + 7)[:, 0], figures[:, 7])
    assert pricer._token_figures(0)[0] == pricer.overhead.step_s  # no token: no op, the host time alone
    assert not pricer._rows_figures(0).any()


@pytest.mark.parametrize("changes", [{}, {"deployment.prefix_caching": True},
                                     {"deployment.preemption": "swap"},
                                     {"attention": {"policy": "sliding_window", "window": 120}}])
def test_a_plans_decode_blocks_are_the_blocks_its_decodes_add(monkeypatch, changes):
    """The plan's ``decode_blocks`` stands in for :meth:`Scheduler.decode_need` when the step is priced (a
    mixed step's occupancy, a segment's first block count): it must be the count at the end of planning,
    through preemptions, swaps and admissions (32 sequences of 400 tokens on 27 blocks of 16 tokens)."""
    plans, segments = 0, 0
    plan, decode_segment = Scheduler.plan, Scheduler.decode_segment

    def checked_plan(self, now):
        nonlocal plans
        result = plan(self, now)
        assert result.decode_blocks == self.decode_need()
        plans += 1
        return result

    def checked_segment(self, max_steps, admission_pending=False, need=None):
        nonlocal segments
        if need is not None:
            assert np.array_equal(self._blocks_added(max_steps, need), self._blocks_added(max_steps))
            segments += 1
        return decode_segment(self, max_steps, admission_pending, need)

    monkeypatch.setattr(Scheduler, "plan", checked_plan)
    monkeypatch.setattr(Scheduler, "decode_segment", checked_segment)
    w = workload(**{"requests.problems": 4, "requests.samples": 8, "requests.output_tokens": 300,
                    "deployment.kv_cache_memory": "50 MB", **changes})
    records = Simulation(w, H100)._run_events()  # the general engine's scheduler (the lean engine has its own)
    assert plans >= 20 and segments >= 5  # the checks ran
    if "attention" not in changes:  # full KV does not fit: preemptions (the case the plan's count must follow)
        assert records.sequences.preemptions.sum() > 0
