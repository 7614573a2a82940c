"""The fluid resource model: max-min fair sharing, with answers worked out by hand."""

from __future__ import annotations

import pytest
import simpy

from kinsim.engine.fluid import FluidNetwork


def _run(starts):
    """Start flows ``(at_s, name, work_s, usage)``; return {name: finish time}."""
    env = simpy.Environment()
    net = FluidNetwork(env)
    done: dict[str, float] = {}

    def starter(at, name, work, usage):
        yield env.timeout(at)
        flow = net.start(name, work, usage)
        yield flow.done
        done[name] = env.now

    for spec in starts:
        env.process(starter(*spec))
    env.run()
    return done, net


def test_a_flow_alone_runs_at_its_own_time():
    done, net = _run([(0.0, "gemm", 2.5, {"gpu0.compute": 0.9, "gpu0.hbm": 0.2})])
    assert done == {"gemm": 2.5}
    assert net.busy_s["gpu0.compute"] == pytest.approx(0.9 * 2.5)


def test_two_equal_transfers_on_one_link_take_twice_as_long():
    done, net = _run([(0.0, "a", 1.0, {"link": 1.0}), (0.0, "b", 1.0, {"link": 1.0})])
    assert done == {"a": pytest.approx(2.0), "b": pytest.approx(2.0)}
    assert net.busy_s["link"] == pytest.approx(2.0)


def test_a_late_transfer_shares_the_link_from_when_it_starts():
    # a runs alone for 0.5 s (half done), then both at rate 1/2: a needs 1 s more -> 1.5 s;
    # b has done 0.5 by then and finishes its last 0.5 alone -> 2.0 s.
    done, _ = _run([(0.0, "a", 1.0, {"link": 1.0}), (0.5, "b", 1.0, {"link": 1.0})])
    assert done["a"] == pytest.approx(1.5)
    assert done["b"] == pytest.approx(2.0)


def test_a_gemm_overlapping_an_allreduce_on_other_resources_is_not_slowed():
    gemm = (0.0, "gemm", 1.0, {"gpu0.compute": 0.9, "gpu0.hbm": 0.3})
    allreduce = (0.0, "allreduce", 0.5, {"gpu0.hbm": 0.2, "gpu0->switch": 1.0})
    done, _ = _run([gemm, allreduce])
    assert done == {"gemm": pytest.approx(1.0), "allreduce": pytest.approx(0.5)}


def test_a_memory_bound_op_and_an_allreduce_contending_for_hbm():
    # HBM demand 0.8 + 0.6 = 1.4 > 1: both run at 1/1.4. The all-reduce's 0.5 s of work ends at
    # t = 0.5 * 1.4 = 0.7; the op has done 0.7/1.4 = 0.5 by then and finishes its last 0.5 alone: 1.2.
    op = (0.0, "decode_attention", 1.0, {"gpu0.hbm": 0.8})
    allreduce = (0.0, "allreduce", 0.5, {"gpu0.hbm": 0.6, "gpu0->switch": 1.0})
    done, net = _run([op, allreduce])
    assert done["allreduce"] == pytest.approx(0.7)
    assert done["decode_attention"] == pytest.approx(1.2)
    assert net.busy_s["gpu0.hbm"] == pytest.approx(0.8 * 1.0 + 0.6 * 0.5)


def test_max_min_gives_the_unconstrained_flow_the_leftover():
    # a and b share link x (each needs all of it); c uses link y with a. Filling: at level 1/2, x is
    # full, freezing a and b at 1/2 (a ends at 2, b too). a then uses 0.25 of y, so c rises to 0.75.
    done, _ = _run([(0.0, "a", 1.0, {"x": 1.0, "y": 0.5}), (0.0, "b", 1.0, {"x": 1.0}), (0.0, "c", 1.0, {"y": 1.0})])
    assert done["c"] == pytest.approx(1 / 0.75)
    assert done["a"] == pytest.approx(2.0)
    assert done["b"] == pytest.approx(2.0)


def test_resize_shortens_a_running_flow():
    env = simpy.Environment()
    net = FluidNetwork(env)
    ended = []

    def run():
        flow = net.start("segment", 10.0, {"hbm": 0.5})
        yield env.timeout(3.0)
        net.resize(flow, 4.0)
        yield flow.done
        ended.append(env.now)

    env.process(run())
    env.run()
    assert ended == [pytest.approx(4.0)]


def test_usage_above_one_is_refused():
    net = FluidNetwork(simpy.Environment())
    with pytest.raises(ValueError, match="within"):
        net.start("bad", 1.0, {"hbm": 1.5})


def test_a_remainder_below_the_clocks_resolution_completes_instead_of_firing_forever():
    # at 1.5e10 (ticks, late in a long run) the spacing of floats is about 2e-6: a flow of 1e-7 of work
    # cannot end later than now, so its timer fires at now; it must complete then rather than reschedule
    env = simpy.Environment(initial_time=1.5e10)
    assert env.now + 1e-7 == env.now
    network = FluidNetwork(env)
    flow = network.start("tiny", 1e-7, {"link": 1.0})
    for _ in range(10):
        if flow.done.processed:
            break
        env.step()
    assert flow.done.processed and not network.flows
    assert network.busy_s["link"] == 1e-7
