"""KV offloaded to host memory: the host link as a resource, block top-k with offload (footprint, fetch
bytes, step time) and the GH200 hardware file. Every number is worked out by hand in the test."""

from __future__ import annotations

import pytest
import simpy

from kinsim.engine.fluid import FluidNetwork
from kinsim.errors import SpecError
from kinsim.hardware import load_hardware
from kinsim.hardware.topology import host_link_resource, host_transfer_s

from .conftest import HARDWARE

# ------------------------------------------------------------------------------------- the host link


def test_host_link_efficiency_defaults_by_kind_and_can_be_set():
    h100 = load_hardware(HARDWARE / "h100.yaml")
    assert h100.node.host_link.kind == "pcie" and h100.node.host_link.efficiency is None
    assert h100.node.host_link.dma_efficiency == 0.85
    assert h100.node.host_link.dma_bandwidth == pytest.approx(63e9 * 0.85)
    gh200 = load_hardware(HARDWARE / "gh200.yaml")
    assert gh200.node.host_link.dma_bandwidth == pytest.approx(450e9 * 0.9)
    assert h100.with_overrides({"node.host_link.efficiency": 0.7}).node.host_link.dma_efficiency == 0.7
    with pytest.raises(SpecError, match=r"node.host_link.efficiency: must be in \(0, 1\]"):
        h100.with_overrides({"node.host_link.efficiency": 1.5})


def test_gpus_sharing_a_host_link_get_one_resource_name():
    h100 = load_hardware(HARDWARE / "h100.yaml")
    assert [host_link_resource(h100, g) for g in (0, 1, 7)] == ["n0.host_link0.h2d", "n0.host_link1.h2d",
                                                                "n0.host_link7.h2d"]
    assert host_link_resource(h100, 1, "d2h") == "n0.host_link1.d2h"
    paired = h100.with_overrides({"node.host_link.shared_by": 2})
    # GPUs 0-1, 2-3, 4-5, 6-7 behind one uplink each
    assert [host_link_resource(paired, g) for g in range(8)] == [f"n0.host_link{g // 2}.h2d" for g in range(8)]
    two_nodes = h100.with_overrides({"cluster.nodes": 2})
    assert host_link_resource(two_nodes, 9) == "n1.host_link1.h2d"
    with pytest.raises(SpecError, match=r"node.host_link.shared_by: must divide node.gpus \(8\)"):
        h100.with_overrides({"node.host_link.shared_by": 3})


def test_a_transfer_alone_takes_bytes_over_bandwidth_times_efficiency_plus_latency():
    h100 = load_hardware(HARDWARE / "h100.yaml")
    # 64 blocks of 16 tokens of Qwen3-8B bf16 KV: 2 x 8 KV heads x 128 x 2 bytes x 36 layers = 147,456 B a token
    nbytes = 64 * 16 * 147_456
    assert host_transfer_s(h100, nbytes) == pytest.approx(nbytes / (63e9 * 0.85) + 2e-6, rel=1e-12)
    gh200 = load_hardware(HARDWARE / "gh200.yaml")
    assert host_transfer_s(gh200, nbytes) == pytest.approx(nbytes / (450e9 * 0.9) + 1e-6, rel=1e-12)


def _finish_times(flows):
    """Run flows ``(name, work_s, usage)`` started together; {name: finish time}."""
    env = simpy.Environment()
    net = FluidNetwork(env)
    done = {}
    for name, work, usage in flows:
        net.start(name, work, usage).done.callbacks.append(lambda event, name=name: done.update({name: env.now}))
    env.run()
    return done


def test_two_gpus_sharing_one_host_link_take_twice_as_long_for_the_same_transfer():
    paired = load_hardware(HARDWARE / "h100.yaml").with_overrides({"node.host_link.shared_by": 2})
    alone = host_transfer_s(paired, 64 * 16 * 147_456)
    # GPUs 0 and 1 share a link: their transfers divide it; GPU 2's own link is free
    flows = [(f"gpu{g}", alone, {host_link_resource(paired, g): 1.0}) for g in (0, 1, 2)]
    done = _finish_times(flows)
    assert done["gpu0"] == pytest.approx(2 * alone) and done["gpu1"] == pytest.approx(2 * alone)
    assert done["gpu2"] == pytest.approx(alone)


def test_gh200_is_one_superchip_with_nvlink_c2c_to_480_gb_of_host_memory():
    gh200 = load_hardware(HARDWARE / "gh200.yaml")
    assert gh200.node.gpus == 1 and gh200.total_gpus == 1
    assert gh200.gpu.memory.capacity == 96e9 and gh200.gpu.memory.bandwidth == 4e12
    assert gh200.node.host_link.kind == "nvlink_c2c" and gh200.node.host_link.bandwidth == 450e9
    assert gh200.node.host_memory == 480e9
    assert gh200.calibration is not None and gh200.calibration.transferred_from is not None
    # the same GH100 compute as the H100 SXM5: 989 TFLOP/s bf16 dense over 4 TB/s
    assert gh200.ridge_flop_per_byte["bf16"] == pytest.approx(989e12 / 4e12)
