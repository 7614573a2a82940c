"""The event-loop floor benchmark's closed forms (``benchmarks/bench_event_loop_floor.py``): a segment's duration
is the sum of its steps' and the cut finds the step that is running, so the floor it prints is of a loop that
prices as the engine's fast-forward does."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_event_loop_floor",
                                                  ROOT / "benchmarks" / "bench_event_loop_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("n", "context", "steps"), [(1, 10, 1), (7, 3000, 25), (64, 70_000, 400)])
def test_a_segment_takes_the_sum_of_its_steps(n, context, steps):
    bench = load_bench()
    one_by_one = sum(bench.step_constant_s(n) + bench.PER_CONTEXT_TOKEN_S * (context + n * k) for k in range(steps))
    assert bench.segment_s(n, context, steps) == pytest.approx(one_by_one, rel=1e-12)


def test_the_cut_finds_the_running_step():
    bench = load_bench()
    n, context = 12, 15_000
    for k in (0, 1, 5, 99):
        start, end = bench.segment_s(n, context, k), bench.segment_s(n, context, k + 1)
        for elapsed in (start, (start + end) / 2, end - 1e-12):
            assert bench.steps_by(n, context, elapsed) == k


def test_every_request_finishes_and_each_makes_two_to_four_segments():
    wall, finished, segments, cuts = load_bench().run(2000)
    assert finished == 2000
    assert 2.0 <= segments / 2000 <= 4.0  # a mixed step and a decode run each, plus the segments finishes end
    assert 0 < cuts <= 2000  # at most one cut an arrival
