"""Hardware specs: shipped files, derived figures, extends, overrides and the link graph."""

import pytest

from kinsim.errors import SpecError
from kinsim.hardware import build_topology, load_hardware
from kinsim.hardware.topology import gpu_name, gpu_to_gpu_bandwidth, route
from kinsim.schema import build, to_raw, with_overrides

from .conftest import HARDWARE

SHIPPED = sorted(HARDWARE.glob("*.yaml"))


def test_all_five_parts_ship():
    assert {p.stem for p in SHIPPED} >= {"a100", "h100", "h200", "b200", "mi300x"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_file_round_trips_and_cites_sources(path):
    hw = load_hardware(path)
    assert build(type(hw), to_raw(hw)) == hw
    assert hw.node.gpus == (1 if path.stem == "gh200" else 8)  # a GH200 node is one superchip
    for source in (hw.gpu.source, hw.node.source):
        assert any(word in source.lower() for word in ("datasheet", "data sheet", "https://"))


@pytest.mark.parametrize(
    "name, peak, bandwidth",
    [("h100", 989e12, 3.35e12), ("h200", 989e12, 4.8e12), ("a100", 312e12, 2.039e12),
     ("b200", 2250e12, 8e12), ("mi300x", 1307.4e12, 5.3e12)],
)
def test_bf16_ridge_point(name, peak, bandwidth):
    hw = load_hardware(HARDWARE / f"{name}.yaml")
    assert hw.ridge_flop_per_byte["bf16"] == pytest.approx(peak / bandwidth, rel=1e-12)


def test_h100_ridge_is_about_295():
    assert load_hardware(HARDWARE / "h100.yaml").ridge_flop_per_byte["bf16"] == pytest.approx(295.2, abs=0.05)


def test_h200_extends_h100_and_changes_only_memory_and_power():
    h100, h200 = load_hardware(HARDWARE / "h100.yaml"), load_hardware(HARDWARE / "h200.yaml")
    assert h200.gpu.compute == h100.gpu.compute
    assert h200.gpu.memory.capacity == 141e9 and h200.gpu.memory.channels == 6
    assert h200.node.gpu_link == h100.node.gpu_link


def test_override_is_a_validated_copy():
    hw = load_hardware(HARDWARE / "h100.yaml")
    faster = with_overrides(hw, {"gpu.memory.bandwidth": "6.7 TB/s"})
    assert faster.gpu.memory.bandwidth == 6.7e12
    assert hw.gpu.memory.bandwidth == 3.35e12
    assert faster.ridge_flop_per_byte["bf16"] == pytest.approx(989 / 6.7)
    with pytest.raises(SpecError, match=r"gpu.memory.bandwidth: must be positive"):
        with_overrides(hw, {"gpu.memory.bandwidth": "-1 TB/s"})


def test_load_with_overrides_names_file_on_error():
    with pytest.raises(SpecError, match=r"h100.yaml: gpu.memory: unknown key 'bandwith'"):
        load_hardware(HARDWARE / "h100.yaml", {"gpu.memory.bandwith": "1 TB/s"})


def test_switch_topology_routes_through_the_switch():
    hw = load_hardware(HARDWARE / "h100.yaml")
    graph = build_topology(hw)
    path = route(graph, gpu_name(0, 0), gpu_name(0, 5))
    assert path == ["n0.gpu0", "n0.switch", "n0.gpu5"]
    assert graph.edges["n0.gpu0", "n0.switch"]["bandwidth"] == 450e9
    assert graph.edges["n0.gpu0", "n0.host"]["bandwidth"] == 63e9
    # 8 GPUs x (host link + switch port) x 2 directions
    assert graph.number_of_edges() == 8 * 2 * 2


def test_full_mesh_splits_bandwidth_among_peers():
    hw = load_hardware(HARDWARE / "mi300x.yaml")
    graph = build_topology(hw)
    assert graph.edges["n0.gpu0", "n0.gpu7"]["bandwidth"] == pytest.approx(448e9 / 7)
    assert gpu_to_gpu_bandwidth(hw, graph) == pytest.approx(64e9)


def test_ring_topology_has_two_neighbours_each():
    hw = with_overrides(load_hardware(HARDWARE / "h100.yaml"), {"node.gpu_link.topology": "ring"})
    graph = build_topology(hw)
    gpu_edges = [(a, b) for a, b, kind in graph.edges(data="kind") if kind == "nvlink"]
    assert len(gpu_edges) == 8 * 2
    assert graph.edges["n0.gpu0", "n0.gpu1"]["bandwidth"] == 225e9
    assert route(graph, "n0.gpu0", "n0.gpu2") == ["n0.gpu0", "n0.gpu1", "n0.gpu2"]


def test_cluster_adds_network_between_nodes():
    hw = with_overrides(load_hardware(HARDWARE / "h100.yaml"), {"cluster.nodes": 2})
    assert hw.total_gpus == 16
    graph = build_topology(hw)
    assert route(graph, "n0.gpu0", "n1.gpu0") == ["n0.gpu0", "network", "n1.gpu0"]
    assert graph.edges["n0.gpu0", "network"]["bandwidth"] == 50e9


def test_peak_of_unlisted_dtype_falls_back_to_bf16():
    a100 = load_hardware(HARDWARE / "a100.yaml")
    assert a100.peak("fp8") == a100.peak("bf16") == 312e12
