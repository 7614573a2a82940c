"""Hardware as frozen, validated data: a GPU, the node that holds several, an optional cluster of nodes.

All numbers are SI floats (bytes, B/s, FLOP/s, s, Hz, W, $/s); YAML writes them with units. Every
section carries a ``source`` naming the datasheet or document its figures come from, and says which
figures, if any, are estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kinsim.dtypes import DTYPES, compute_type
from kinsim.errors import SpecError
from kinsim.limits import MAX_GPUS_PER_NODE, MAX_TOTAL_GPUS
from kinsim.schema import at_least, at_most, check_fields, fraction, non_empty, non_negative, positive, spec_field

#: Attention kernel families kinsim knows the structure of (:mod:`kinsim.ops.kernel_work`).
ATTENTION_KERNELS = ("flash3", "flash2")


@dataclass(frozen=True, kw_only=True)
class ComputeSpec:
    """The GPU's compute units and their peak dense throughput."""

    units: int = spec_field("Streaming multiprocessors (NVIDIA) or compute units (AMD).",
                            check=at_least(1))
    clock: float = spec_field("Boost clock at which the peak rates are quoted.", unit="frequency",
                              check=positive)
    peak: dict[str, float] = spec_field(
        "Peak dense throughput per data type, without structured sparsity: tensor-core rates for "
        "bf16, fp16, fp8 (and fp4, tf32, int8 where quoted), the vector rate for fp32. bf16 is required.",
        unit="flop_rate", check=positive)

    def __post_init__(self) -> None:
        check_fields(self)
        for dtype in self.peak:
            if dtype not in DTYPES:
                raise SpecError("unknown data type", path=f"peak.{dtype}", value=dtype,
                                hint="use one of " + ", ".join(DTYPES))
        if "bf16" not in self.peak:
            raise SpecError("missing required key", path="peak.bf16",
                            hint="the bf16 tensor rate is the reference rate for every model")


@dataclass(frozen=True, kw_only=True)
class MemorySpec:
    """The GPU's device memory (HBM), modelled as ``channels`` equal, independent channels."""

    capacity: float = spec_field("Device memory capacity.", unit="bytes", check=positive)
    bandwidth: float = spec_field("Peak device memory bandwidth, all channels together.",
                                  unit="bandwidth", check=positive)
    channels: int = spec_field("Independent memory channels (HBM stacks) sharing the bandwidth equally.",
                               check=at_least(1))
    technology: str = spec_field("Memory technology, for reports (HBM2e, HBM3, HBM3e).", default="HBM")

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def channel_bandwidth(self) -> float:
        """Bandwidth of one channel, B/s."""
        return self.bandwidth / self.channels


@dataclass(frozen=True, kw_only=True)
class PowerSpec:
    """Board power, used for energy estimates."""

    tdp: float = spec_field("Maximum board power (thermal design power).", unit="power", check=positive)
    idle: float = spec_field("Board power when idle.", unit="power", check=non_negative, example="70 W")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.idle > self.tdp:
            raise SpecError("must not exceed power.tdp", path="idle", value=f"{self.idle:g} W")


@dataclass(frozen=True, kw_only=True)
class GPUSpec:
    """One GPU."""

    name: str = spec_field("Marketing name of the part.", check=non_empty)
    source: str = spec_field("Where the figures come from (datasheet titles and addresses); name any "
                             "figure that is an estimate.", check=non_empty)
    compute: ComputeSpec = spec_field("Compute units and peak rates.")
    memory: MemorySpec = spec_field("Device memory.")
    l2_cache: float = spec_field("Last-level on-chip cache (L2) size.", unit="bytes", check=positive,
                                 example="50 MB")
    launch_overhead: float = spec_field("Fixed cost of launching one kernel.", unit="time",
                                        check=non_negative, example="1 us")
    attention_kernels: str = spec_field(
        "The attention kernels serving engines run on this GPU, whose structure kinsim prices "
        "(kinsim.ops.kernel_work): flash3 (FlashAttention-3, Hopper) or flash2 (FlashAttention-2, vLLM's "
        "kernels on Ampere: no KV split for multi-head attention, its own split rule for grouped queries, a "
        "fifth of FlashAttention-3's bytes in flight per thread block). GPUs whose engines run other kernels "
        "are priced with flash3's structure.", choices=ATTENTION_KERNELS, default="flash3")
    power: PowerSpec = spec_field("Board power.")
    price: float | None = spec_field("Rental price of one GPU, for cost estimates.", unit="price",
                                     default=None, check=non_negative)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class GPULinkSpec:
    """The GPU-to-GPU fabric inside a node (NVLink with NVSwitch, Infinity Fabric mesh)."""

    kind: str = spec_field("Fabric name, for reports.", choices=("nvlink", "infinity_fabric", "pcie"))
    topology: str = spec_field(
        "`switch`: every GPU has one port of `bandwidth` to a non-blocking switch; `full_mesh`: a "
        "direct link to each other GPU, each with bandwidth/(gpus-1); `ring`: links to two neighbours, "
        "each with bandwidth/2.", choices=("switch", "full_mesh", "ring"))
    bandwidth: float = spec_field("Per-GPU bandwidth in one direction, all links together.",
                                  unit="bandwidth", check=positive, example="450 GB/s")
    latency: float = spec_field("One-way latency of a transfer between two GPUs.", unit="time",
                                check=non_negative, example="2 us")
    in_switch_reduction: bool = spec_field(
        "The switch reduces data itself (NVLink SHARP, NVSwitch 3rd generation and later): an all-reduce "
        "then sends and receives each byte once instead of 2 (p-1)/p times (NCCL's NVLS algorithm).",
        default=False)
    copy_efficiency: float = spec_field(
        "Share of `bandwidth` a bulk GPU-to-GPU copy reaches (a KV transfer between disaggregated prefill and "
        "decode replicas; collectives use the calibration profile instead). Default 0.85: an estimate from "
        "peer-to-peer copy benchmarks on NVLink, which reach about 85% of the link rate after packet headers "
        "and flow control; no measurement of kinsim's own.", default=0.85, check=fraction)

    def __post_init__(self) -> None:
        check_fields(self)


#: Share of a host link's bandwidth a bulk DMA copy reaches, by link kind, where the file gives no
#: ``host_link.efficiency`` (estimates; reasons in the field's description).
HOST_LINK_EFFICIENCY = {"pcie": 0.85, "nvlink_c2c": 0.9}


@dataclass(frozen=True, kw_only=True)
class HostLinkSpec:
    """Each GPU's link to its host CPU and memory (full duplex: each direction has ``bandwidth``)."""

    kind: str = spec_field("Link name, for reports.", default="pcie", choices=("pcie", "nvlink_c2c"))
    generation: int | None = spec_field("PCIe generation.", default=None, check=at_least(1))
    bandwidth: float = spec_field("Bandwidth per GPU in one direction.", unit="bandwidth", check=positive,
                                  example="63 GB/s")
    latency: float = spec_field("One-way latency of a transfer.", unit="time", check=non_negative, example="2 us")
    efficiency: float | None = spec_field(
        "Share of the bandwidth a bulk DMA copy (cudaMemcpyAsync from pinned host memory) reaches. Absent: "
        f"{HOST_LINK_EFFICIENCY['pcie']:g} for pcie (256-byte payloads carry about 24 bytes of TLP header, "
        "sequence number and LCRC, plus flow-control packets; pinned copies on x16 links measure about 0.8-0.87 "
        f"of the 128b/130b rate), {HOST_LINK_EFFICIENCY['nvlink_c2c']:g} for nvlink_c2c (an estimate: "
        "cache-line transactions with less per-packet overhead than PCIe; no measurement cited).", default=None,
        check=fraction)
    shared_by: int = spec_field(
        "GPUs that share one host link (e.g. two GPUs behind one PCIe switch uplink): their transfers to and "
        "from the host divide its bandwidth. 1: every GPU has its own link.", default=1,
        check=(at_least(1), at_most(MAX_GPUS_PER_NODE, "kinsim's cap on GPUs per node")))

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def dma_efficiency(self) -> float:
        """``efficiency``, or the default of the link's kind (:data:`HOST_LINK_EFFICIENCY`)."""
        return HOST_LINK_EFFICIENCY[self.kind] if self.efficiency is None else self.efficiency

    @property
    def dma_bandwidth(self) -> float:
        """Bandwidth a bulk copy reaches in one direction, B/s: ``bandwidth x dma_efficiency``."""
        return self.bandwidth * self.dma_efficiency


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """A server holding several GPUs."""

    gpus: int = spec_field("GPUs in one node.", check=(at_least(1), at_most(MAX_GPUS_PER_NODE, "kinsim's cap")))
    source: str = spec_field("Where the node figures come from.", check=non_empty)
    gpu_link: GPULinkSpec = spec_field("GPU-to-GPU fabric.")
    host_link: HostLinkSpec = spec_field("GPU-to-host link.")
    host_memory: float = spec_field("Host (CPU) memory of the node.", unit="bytes", check=positive,
                                    example="2 TB")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.gpus % self.host_link.shared_by:
            raise SpecError(f"must divide node.gpus ({self.gpus}): each host link serves the same number of GPUs",
                            path="host_link.shared_by", value=self.host_link.shared_by)


@dataclass(frozen=True, kw_only=True)
class NetworkSpec:
    """The scale-out network between nodes (InfiniBand or Ethernet, one NIC per GPU)."""

    bandwidth_per_gpu: float = spec_field("NIC bandwidth per GPU in one direction.", unit="bandwidth",
                                          check=positive, example="400 Gbit/s")
    latency: float = spec_field("One-way latency between GPUs of different nodes.", unit="time",
                                check=non_negative, example="5 us")
    copy_efficiency: float = spec_field(
        "Share of `bandwidth_per_gpu` a bulk RDMA write reaches (a KV transfer between disaggregated replicas "
        "on different nodes). Default 0.9: an estimate (RDMA write benchmarks on InfiniBand reach about 90-97% "
        "of the line rate with large messages); no measurement of kinsim's own.", default=0.9, check=fraction)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """Several identical nodes joined by a network."""

    nodes: int = spec_field("Number of nodes.", check=(at_least(1), at_most(MAX_TOTAL_GPUS, "kinsim's cap on GPUs")))
    source: str = spec_field("Where the network figures come from.", check=non_empty)
    network: NetworkSpec = spec_field("Network between nodes.")

    def __post_init__(self) -> None:
        check_fields(self)


_DEFAULT_EFFICIENCY_SOURCE = (
    "kinsim defaults, estimates within published ranges (not calibration data): large bf16 GEMMs reach "
    "about 80% of peak on H100/H200, streaming kernels about 90% of HBM peak, long-context decode "
    "attention close to HBM peak, page-gathered sparse attention about 90% of dense attention's "
    "bandwidth, 8-GPU NCCL all-reduce about 80% of NVLink bandwidth. Replaced by a calibration profile.")


@dataclass(frozen=True, kw_only=True)
class EfficiencySpec:
    """Fractions of the peak rates that kernels reach, per kernel kind (used by the roofline cost model
    until a calibration profile replaces them with fitted curves)."""

    source: str = spec_field("Where the efficiencies come from.", default=_DEFAULT_EFFICIENCY_SOURCE,
                             check=non_empty)
    gemm_compute: float = spec_field("Share of peak tensor throughput a large GEMM reaches.", default=0.8,
                                     check=fraction)
    gemm_memory: float = spec_field("Share of HBM bandwidth a memory-bound GEMM (small M) reaches.",
                                    default=0.85, check=fraction)
    attention_compute: float = spec_field("Share of peak a prefill (flash) attention kernel reaches.",
                                          default=0.6, check=fraction)
    attention_memory: float = spec_field("Share of HBM bandwidth a dense decode attention kernel reaches.",
                                         default=0.9, check=fraction)
    sparse_attention_memory: float = spec_field(
        "Share of HBM bandwidth a page-gathered sparse attention or block-selection kernel reaches.",
        default=0.81, check=fraction)
    elementwise_memory: float = spec_field("Share of HBM bandwidth a streaming elementwise kernel reaches "
                                           "(norms, RoPE, activations, sampling).", default=0.9,
                                           check=fraction)
    link: float = spec_field("Share of link bandwidth a large collective reaches.", default=0.8,
                             check=fraction)

    def __post_init__(self) -> None:
        check_fields(self)


#: Terms of a profile counted in GPU cycles (see ``CalibrationSpec.clock``).
CYCLE_TERMS = ("kernel_floor", "combine_floor", "per_sequence", "item_cost", "small_latency", "small_per_peer",
               "large_latency", "large_per_peer", "switch_latency", "switch_per_peer")
#: Kernel floors: counted in cycles up to the profile's bare floor, in seconds beyond it
#: (``CalibrationSpec.on_clock``, ``CalibrationSpec.bare_floor``).
FLOOR_TERMS = ("kernel_floor", "combine_floor")
#: Kinds whose cost per work item (``item_cost``) counts in seconds on every GPU (``CalibrationSpec.on_clock``):
#: an attention thread block starts with a chain of dependent memory reads (its sequence's length and block
#: table, then its query and its first page of keys), and its fitted cost is that chain's length, 2.4-3.1 us on
#: the H100 (4,400-5,700 cycles, several HBM round trips), not arithmetic. A GEMM tile's (0.19 us on the H100,
#: under one round trip) is the SM's own work, its epilogue and the tile scheduler's: cycles.
LATENCY_ITEM_KINDS = ("attention_decode", "attention_decode_fp8kv", "attention_sparse", "attention_prefill",
                      "attention_prefill_fp8kv")

#: Kernel kinds a calibration profile may carry curves for (communication is not calibrated).
CALIBRATED_KERNELS = ("gemm", "attention_decode", "attention_decode_fp8kv", "attention_sparse", "attention_prefill",
                      "attention_prefill_fp8kv", "selection", "elementwise", "moe")

#: The op kernel kind a profile's curve kind prices (``attention_decode_fp8kv`` prices decode attention
#: over an fp8 KV cache, ``attention_prefill_fp8kv`` prefill attention over one).
OP_KERNEL = {"attention_decode_fp8kv": "attention_decode", "attention_prefill_fp8kv": "attention_prefill"}


@dataclass(frozen=True, kw_only=True)
class KernelCurveSpec:
    """The fitted terms of one kernel kind (see :mod:`kinsim.cost.kernel_model` for the formula).

    Saturated rates are shares of the hardware file's datasheet peaks; the terms that describe small
    kernels are stated so that they carry over to another GPU: seconds per kernel, per sequence and per
    work item, bytes per second one work item streams alone (Little's law: its bytes in flight over the
    memory latency), and the share of one SM's peak one work item reaches. Profiles of the first kind
    (``flops_half`` and ``bytes_half`` only) keep loading and mean what they meant."""

    compute_max: float = spec_field("Share of the peak FLOP rate large kernels reach.", check=fraction)
    flops_half: float = spec_field("FLOPs at which a kernel reaches half of compute_max (0: no such term).",
                                   default=0.0, check=non_negative)
    memory_max: float = spec_field("Share of the HBM bandwidth large kernels reach.", check=fraction)
    bytes_half: float = spec_field("HBM bytes at which a kernel reaches half of memory_max (0: no such term).",
                                   default=0.0, check=non_negative)
    kernel_floor: float | None = spec_field(
        "Shortest duration of one kernel of this kind (launch, ramp-up, tail); multiplied by the kernels the "
        "op launches. Absent: the GPU's launch_overhead once per op.", unit="time", default=None,
        check=non_negative, example="3 us")
    combine_floor: float = spec_field("Duration of the extra kernel that merges split work (split-KV "
                                      "combine, split-K reduction), when the op splits.", unit="time",
                                      default=0.0, check=non_negative, example="1 us")
    per_sequence: float = spec_field("Time per sequence the kernel loops over (attention; for prefill "
                                     "attention, per new token: the KV-cache write's thread block each).", unit="time",
                                     default=0.0, check=non_negative, example="10 ns")
    item_cost: float = spec_field("SM time of one work item (thread block) beyond its data: the kernel "
                                  "takes items x item_cost / SMs.", unit="time", default=0.0,
                                  check=non_negative, example="0.5 us")
    item_bandwidth: float | None = spec_field(
        "Bandwidth one work item streams alone (its bytes in flight / memory latency): a kernel with few "
        "items reaches items x item_bandwidth at most. Absent: no such limit.", unit="bandwidth",
        default=None, check=positive, example="300 GB/s")
    item_compute_share: float | None = spec_field(
        "Share of one SM's peak rate one work item reaches; the kernel's compute time is then at least "
        "its waves (ceil(items / SMs)) of one item's FLOPs at that rate. Absent: no such limit.",
        default=None, check=fraction)
    l2_bandwidth_ratio: float | None = spec_field(
        "Only for measurements that replay one kernel without flushing the L2 cache: data that fits in L2 "
        "is read at this multiple of the HBM bandwidth. Never used by the engine, whose layers read "
        "distinct data.", default=None, check=positive)
    overlap_loss: float | None = spec_field(
        "Share of the shorter of the compute and memory times that does not hide under the longer one: a "
        "kernel takes max(compute, memory) + overlap_loss x min(compute, memory) beyond its fixed terms, "
        "which matters near the ridge point, where neither saturates. Absent: 0 (the roofline's max).",
        default=None, check=fraction)
    points: int = spec_field("Measurements the fit used.", default=0, check=non_negative)
    held_out_mape: float | None = spec_field("Mean absolute percentage error on held-out measurements, as a "
                                             "fraction.", default=None, check=non_negative)
    note: str = spec_field("What the fit could and could not determine.", default="")

    def __post_init__(self) -> None:
        check_fields(self)  # fraction: in (0, 1], so a curve never divides by a zero maximum


#: Traffic of one protocol of an all-reduce, bytes each GPU sends per byte of buffer (see
#: :mod:`kinsim.cost.collective_model`).
ALLREDUCE_TRAFFIC = ("ring", "oneshot", "nvls")


@dataclass(frozen=True, kw_only=True)
class CollectiveCurveSpec:
    """Fitted terms of one all-reduce implementation: two protocols (small and large messages), each a
    latency, a latency per peer and a share of the link bandwidth; the implementation runs the faster one,
    as NCCL picks LL or Simple and a custom all-reduce one-shot or two-shot."""

    small_latency: float = spec_field("Fixed time of the small-message protocol.", unit="time",
                                      check=non_negative, example="5 us")
    small_per_peer: float = spec_field("Added time per peer GPU, small-message protocol.", unit="time",
                                       default=0.0, check=non_negative, example="0.5 us")
    small_efficiency: float = spec_field("Share of link bandwidth, small-message protocol.", check=fraction)
    small_traffic: str = spec_field("Traffic pattern of the small-message protocol.", default="ring",
                                    choices=ALLREDUCE_TRAFFIC)
    large_latency: float = spec_field("Fixed time of the large-message protocol.", unit="time",
                                      check=non_negative, example="10 us")
    large_per_peer: float = spec_field("Added time per peer GPU, large-message protocol.", unit="time",
                                       default=0.0, check=non_negative, example="0.5 us")
    large_efficiency: float = spec_field("Share of link bandwidth, large-message protocol.", check=fraction)
    large_traffic: str = spec_field("Traffic pattern of the large-message protocol (nvls: used where the "
                                    "fabric reduces in the switch and more than 2 GPUs take part, else "
                                    "ring).", default="ring", choices=ALLREDUCE_TRAFFIC)
    switch_latency: float | None = spec_field(
        "Fixed time of the in-switch reduction protocol (NCCL's NVLS), a third protocol used only where the "
        "fabric reduces in the switch and more than 2 GPUs take part. Absent: no such protocol.", unit="time",
        default=None, check=non_negative, example="0.5 us")
    switch_per_peer: float = spec_field("Added time per peer GPU, in-switch protocol.", unit="time", default=0.0,
                                        check=non_negative, example="1 us")
    switch_efficiency: float | None = spec_field("Share of link bandwidth, in-switch protocol (each byte sent "
                                                 "and received once).", default=None, check=fraction)
    points: int = spec_field("Measurements the fit used.", default=0, check=non_negative)
    held_out_mape: float | None = spec_field("Mean absolute percentage error on held-out measurements, as a "
                                             "fraction.", default=None, check=non_negative)
    note: str = spec_field("What the fit could and could not determine.", default="")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class CalibrationSpec:
    """A calibration profile: efficiency curves fitted to kernels measured on one GPU model."""

    source: str = spec_field("Provenance: measurement directory, device, driver, library versions, date.",
                             check=non_empty)
    device: str = spec_field("The GPU the kernels were measured on.", check=non_empty)
    gemm: KernelCurveSpec | None = spec_field("Linear layers (GEMM).", default=None)
    attention_decode: KernelCurveSpec | None = spec_field("Dense paged decode attention.", default=None)
    attention_decode_fp8kv: KernelCurveSpec | None = spec_field(
        "Dense paged decode attention over an fp8 KV cache (the kernel dequantizes as it reads, so it is not "
        "simply faster by the bytes it saves); absent: attention_decode's terms.", default=None)
    attention_sparse: KernelCurveSpec | None = spec_field("Sparse (block top-k) decode attention.", default=None)
    attention_prefill: KernelCurveSpec | None = spec_field("Prefill (flash) attention.", default=None)
    attention_prefill_fp8kv: KernelCurveSpec | None = spec_field(
        "Prefill attention with an fp8 KV cache (the serving engine quantizes the queries and runs the fp8 "
        "kernel, whose tiles differ from the bf16 one's); absent: attention_prefill's terms.", default=None)
    selection: KernelCurveSpec | None = spec_field("Block scoring and top-k selection.", default=None)
    elementwise: KernelCurveSpec | None = spec_field("Streaming elementwise kernels.", default=None)
    moe: KernelCurveSpec | None = spec_field(
        "The routed experts of an MoE layer, fused (grouped GEMMs with each expert's rows padded to whole "
        "tiles); absent: the GEMM terms.", default=None)
    allreduce_nccl: CollectiveCurveSpec | None = spec_field("NCCL all-reduce.", default=None)
    allreduce_custom: CollectiveCurveSpec | None = spec_field(
        "The serving engine's own all-reduce (vLLM/SGLang custom all-reduce, one-shot and two-shot).",
        default=None)
    attention_kernels: str | None = spec_field(
        "The attention kernels of the GPU the profile was fitted on (gpu.attention_kernels there): on a GPU "
        "that runs the other kind, decode attention's item_bandwidth scales by their bytes in flight per "
        "thread block. Absent: flash3.", choices=ATTENTION_KERNELS, default=None)
    transferred_from: str | None = spec_field(
        "Set when this profile was fitted on another GPU and is applied to this one (calibration: {from: "
        "PATH}): the device it was measured on.", default=None)
    clock: float | None = spec_field(
        "Boost clock of the GPU the profile was fitted on. Its fixed times (per-sequence costs, per-item costs "
        "but attention's, collective latencies, and kernel floors up to the elementwise kernels' floor) are "
        "counted in that GPU's cycles: on a GPU with another clock they scale by the ratio. Absent: they stay "
        "as written.",
        unit="frequency", default=None, check=positive)

    def __post_init__(self) -> None:
        check_fields(self)

    def on_clock(self, clock: float) -> CalibrationSpec:
        """This profile as it applies to a GPU whose boost clock is ``clock``: every term of
        :data:`CYCLE_TERMS` multiplied by ``self.clock / clock``, but a kernel floor (:data:`FLOOR_TERMS`) only
        up to the profile's bare floor ``f0`` (:meth:`bare_floor`): ``min(f, f0) x ratio + max(f - f0, 0)``,
        and the ``item_cost`` of the attention kinds (:data:`LATENCY_ITEM_KINDS`) not at all.

        The floor of the simplest kernel (``f0``: the elementwise kernels', the shortest any kind has on the H100
        and the A100) is taken as what every kernel pays to be launched, ramp up and drain: work of the GPU, in
        its cycles. What a kernel's floor has beyond it is taken as the chain of dependent memory accesses its
        shortest run waits on (an attention kernel reads its query, then its keys, then its values; the
        KV-cache write reads the slot before it stores), which take the memory's latency in seconds whatever
        the SM clock; so is an attention thread block's cost, its own chain of dependent reads.
        docs/calibration.md gives the evidence (the shortest kernels of the H100 and A100 tables) and the
        transfer's figures under each rule."""
        if self.clock is None or clock == self.clock:
            return self
        ratio = self.clock / clock
        bare = self.bare_floor()

        def term(name, value):
            if name in FLOOR_TERMS:
                cycles = value if value <= bare else bare  # the part in cycles; the rest stays in seconds
                return cycles * ratio + (value - cycles)
            return value * ratio

        def scaled(curve, kind):
            if curve is None:
                return None
            seconds = ("item_cost",) if kind in LATENCY_ITEM_KINDS else ()  # kept as written
            return replace(curve, **{name: term(name, getattr(curve, name)) for name in CYCLE_TERMS
                                     if name not in seconds and getattr(curve, name, None) is not None})

        return replace(self, **{kind: scaled(getattr(self, kind), kind)
                                for kind in (*CALIBRATED_KERNELS, "allreduce_nccl", "allreduce_custom")})

    def bare_floor(self) -> float:
        """The part of every kernel floor counted in cycles (:meth:`on_clock`): the elementwise kernels' floor
        (the simplest kernel, a streaming copy, and the shortest the H100 and A100 tables time), or without an
        elementwise curve the shortest floor of the profile's curves (0 without any)."""
        if self.elementwise is not None and self.elementwise.kernel_floor:
            return self.elementwise.kernel_floor
        floors = [curve.kernel_floor for curve in (getattr(self, name) for name in CALIBRATED_KERNELS)
                  if curve is not None and curve.kernel_floor]
        return min(floors, default=0.0)

    def curve(self, kernel: str) -> KernelCurveSpec | None:
        """The curves of ``kernel`` (a kernel kind), or ``None`` when the profile has none."""
        if kernel == "moe" and self.moe is None:  # the grouped GEMMs priced as GEMMs
            return self.gemm
        return getattr(self, kernel, None) if kernel in CALIBRATED_KERNELS else None

    def curve_for(self, kernel: str, kv_bytes_per_element: float | None = None) -> KernelCurveSpec | None:
        """The curves that price an op of kind ``kernel``: decode and prefill attention over a one-byte (fp8)
        KV cache have their own where the profile has them."""
        if kv_bytes_per_element == 1 and kernel in ("attention_decode", "attention_prefill"):
            fp8 = getattr(self, f"{kernel}_fp8kv")
            if fp8 is not None:
                return fp8
        return self.curve(kernel)

    def allreduce(self, implementation: str) -> CollectiveCurveSpec | None:
        """The all-reduce terms of ``implementation`` (``nccl`` or ``custom``), or ``None``."""
        return getattr(self, f"allreduce_{implementation}", None)


@dataclass(frozen=True, kw_only=True)
class HardwareSpec:
    """A hardware file: one GPU model, the node and optionally the cluster built from it."""

    name: str = spec_field("Short name of this hardware description (h100, my-h100-2x-hbm).",
                           check=non_empty)
    description: str = spec_field("One line for people.", default="")
    gpu: GPUSpec = spec_field("The GPU.")
    node: NodeSpec = spec_field("The node.")
    cluster: ClusterSpec | None = spec_field("Several nodes; absent for a single node.", default=None)
    efficiency: EfficiencySpec = spec_field("Shares of the peak rates kernels reach (roofline cost model).",
                                            default=EfficiencySpec())
    calibration: CalibrationSpec | None = spec_field(
        "Efficiency curves fitted to measured kernels; in a file, the path of a profile written by kinsim "
        "calibrate fit (relative to the hardware file). Kernel kinds it covers replace the constants of "
        "efficiency.", default=None)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.total_gpus > MAX_TOTAL_GPUS:
            raise SpecError(f"nodes x GPUs per node must be at most {MAX_TOTAL_GPUS:,} (kinsim's cap: every GPU "
                            f"and link is a vertex and edges of the link graph), got {self.cluster.nodes:,} x "
                            f"{self.node.gpus:,}", path="cluster.nodes", value=self.cluster.nodes)

    def with_overrides(self, overrides: dict) -> HardwareSpec:
        """A validated copy with dotted keys changed, e.g. ``{"gpu.memory.bandwidth": "6.7 TB/s"}``."""
        from kinsim.schema import with_overrides

        return with_overrides(self, overrides)

    @property
    def total_gpus(self) -> int:
        """GPUs in the whole system (nodes x GPUs per node)."""
        return self.node.gpus * (self.cluster.nodes if self.cluster else 1)

    def peak(self, dtype: str) -> float:
        """Peak dense rate for ``dtype`` in FLOP/s; a stored format runs at its compute type's rate
        (``mxfp4`` at ``fp4``, :func:`kinsim.dtypes.compute_type`), and a type the GPU does not list at the
        bf16 rate (as a kernel would upcast it). A name that is not a data type at all is an error, not bf16."""
        if dtype not in DTYPES:
            raise SpecError("unknown data type", value=dtype, hint="one of " + ", ".join(DTYPES))
        peak = self.gpu.compute.peak
        return peak.get(dtype) or peak.get(compute_type(dtype), peak["bf16"])

    @property
    def ridge_flop_per_byte(self) -> dict[str, float]:
        """Roofline ridge point per listed data type: peak FLOP/s over memory bandwidth, FLOP/byte."""
        bandwidth = self.gpu.memory.bandwidth
        return {dtype: rate / bandwidth for dtype, rate in self.gpu.compute.peak.items()}
