"""Hardware specs: shipped files, derived figures, extends, overrides and the link graph."""

import pytest

from kinsim import simulate
from kinsim.errors import SpecError
from kinsim.hardware import build_topology, load_hardware
from kinsim.hardware.topology import gpu_name, gpu_to_gpu_bandwidth, route
from kinsim.schema import build, to_raw, with_overrides
from kinsim.workload.load import workload_from_raw

from .conftest import HARDWARE, ROOT

SHIPPED = sorted(HARDWARE.glob("*.yaml"))


def test_all_five_parts_ship():
    assert {p.stem for p in SHIPPED} >= {"a100", "h100", "h200", "b200", "mi300x"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_file_round_trips_and_cites_sources(path):
    hw = load_hardware(path)
    assert build(type(hw), to_raw(hw)) == hw
    # a GH200 node is one superchip; a GB200 or GB300 NVL72 rack is one NVLink domain of 72 GPUs
    assert hw.node.gpus == {"gh200": 1, "gb200": 72, "gb300": 72}.get(path.stem, 8)
    for source in (hw.gpu.source, hw.node.source):
        assert any(word in source.lower() for word in ("datasheet", "data sheet", "https://"))


@pytest.mark.parametrize(
    "name, peak, bandwidth",
    [("h100", 989e12, 3.35e12), ("h200", 989e12, 4.8e12), ("a100", 312e12, 2.039e12),
     ("b200", 2250e12, 8e12), ("mi300x", 1307.4e12, 5.3e12), ("h100_pcie", 756e12, 2e12),
     ("a100_pcie", 312e12, 1.935e12), ("a30", 165e12, 933e9), ("l40s", 362.05e12, 864e9), ("l4", 121e12, 300e9),
     ("gb200", 2500e12, 8e12), ("b300", 2250e12, 8e12), ("gb300", 2500e12, 8e12)],
)
def test_bf16_ridge_point(name, peak, bandwidth):
    hw = load_hardware(HARDWARE / f"{name}.yaml")
    assert hw.ridge_flop_per_byte["bf16"] == pytest.approx(peak / bandwidth, rel=1e-12)


def test_blackwell_ultra_keeps_blackwells_dense_rates_and_raises_fp4():
    # NVIDIA's HGX page lists HGX B300 and HGX B200 alike at 36 PFLOP/s BF16 and 72 FP8 with sparsity for 8
    # GPUs (2.25 and 4.5 dense per GPU), B300's FP4 at 108 PFLOP/s dense (13.5 per GPU); the GB300 NVL72
    # page lists 1,080 PFLOP/s dense FP4 for 72 GPUs (15 per GPU) and the GB200 NVL72's BF16 and FP8
    b200, b300 = load_hardware(HARDWARE / "b200.yaml"), load_hardware(HARDWARE / "b300.yaml")
    gb200, gb300 = load_hardware(HARDWARE / "gb200.yaml"), load_hardware(HARDWARE / "gb300.yaml")
    for old, new in ((b200, b300), (gb200, gb300)):
        assert (new.peak("bf16"), new.peak("fp8")) == (old.peak("bf16"), old.peak("fp8"))
        assert new.gpu.memory.bandwidth == old.gpu.memory.bandwidth == 8e12
    assert b300.peak("fp4") == pytest.approx(108e15 / 8) and gb300.peak("fp4") == pytest.approx(1080e15 / 72)
    # 2.3 TB / 8, rounded by NVIDIA; HBM stacks are binary (8 of 36 GiB)
    assert b300.gpu.memory.capacity == gb300.gpu.memory.capacity == 288 * 2**30
    # the GB300's clock is derived from its rate on the B300's SMs, as the GB200's from the B200's
    assert gb300.gpu.compute.clock / b300.gpu.compute.clock == pytest.approx(2.5 / 2.25, abs=1e-3)
    assert gb300.node.gpus == 72 and gb300.node.host_link.kind == "nvlink_c2c"


#: Dense BF16 tensor FLOP per SM per cycle, by architecture (NVIDIA's architecture whitepapers: Ampere's
#: third-generation tensor cores 1,024 FMA per SM per cycle, Hopper's 2,048, Ada's 512).
BF16_FLOP_PER_SM_CYCLE = {"a100": 2048, "a100_pcie": 2048, "a30": 2048, "h100": 4096, "h100_pcie": 4096,
                          "h200": 4096, "gh200": 4096, "l40s": 1024, "l4": 1024}


@pytest.mark.parametrize("name", sorted(BF16_FLOP_PER_SM_CYCLE))
def test_datasheet_rate_matches_sms_times_clock(name):
    # the datasheet's dense BF16 rate, the SM count and the clock of a file are three figures of one
    # product: a typo in any of them breaks it (L40S: 142 x 1,024 x 2.52 GHz = 366 against 362 TFLOP/s)
    hw = load_hardware(HARDWARE / f"{name}.yaml")
    rate = hw.gpu.compute.units * BF16_FLOP_PER_SM_CYCLE[name] * hw.gpu.compute.clock
    assert rate == pytest.approx(hw.peak("bf16"), rel=0.015)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_a_decode_step_on_every_shipped_gpu_is_bound_by_its_memory_bandwidth(path):
    # One Qwen3-8B sequence at about 1,025 cached tokens, kernels only: a step reads every weight but the
    # embedding table (one row of it) and the KV once, so it takes at least their bytes over the HBM (or
    # GDDR) bandwidth; the calibrated kernels' floors and shares keep it within twice that on every shipped
    # GPU (1.07x on an L4, 1.87x on a B200, where the memory time is shortest).
    hw = load_hardware(path)
    raw = {"name": "decode", "model": "Qwen3-8B", "deployment": {"engine": "none"},
           "requests": {"kind": "long_cot", "problems": 1, "prompt_tokens": 1000, "output_tokens": 50,
                        "max_output_tokens": 50}}
    w = workload_from_raw(raw, ROOT)
    embedding_table = w.model.vocab_size * w.model.hidden_size * 2  # bf16, untied: the LM head is read whole
    bound = (w.model.weight_bytes - embedding_table + w.model.kv_bytes_per_token * 1025) / hw.gpu.memory.bandwidth
    step = simulate(w, hw)["latency.request.tpot.p50"]
    assert bound <= step <= 2 * bound


def test_h100_ridge_is_about_295():
    assert load_hardware(HARDWARE / "h100.yaml").ridge_flop_per_byte["bf16"] == pytest.approx(295.2, abs=0.05)


def test_h200_extends_h100_and_changes_only_memory_and_power():
    h100, h200 = load_hardware(HARDWARE / "h100.yaml"), load_hardware(HARDWARE / "h200.yaml")
    assert h200.gpu.compute == h100.gpu.compute
    assert h200.gpu.memory.capacity == 141 * 2**30 and h200.gpu.memory.channels == 6  # HBM: binary GiB
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
