"""Host memory as a KV tier: how many blocks it holds for a replica, and what copying them costs.

**Capacity.** ``deployment.host_kv_fraction`` of the node's host memory (``node.host_memory``) holds KV,
split evenly among the node's GPUs; each GPU of a tensor-parallel replica keeps its shard of every block,
so a replica holds ``floor(host_memory x fraction / node.gpus / block_bytes)`` blocks, where
``block_bytes`` is one block's bytes on one GPU. They hold swapped sequences and offloaded prefix blocks,
or, with block top-k over offloaded KV (where a block is a page of full KV), every cached token.

**Copies.** Each GPU copies its shard of the blocks over its host link, one direction a resource
(:func:`~kinsim.hardware.topology.host_link_resource`). A link that several GPUs of the replica share
(``host_link.shared_by``) carries all their shards. A copy of ``B`` bytes over one link takes
``B / (bandwidth x efficiency) + latency`` alone (:func:`~kinsim.hardware.topology.host_transfer_s`);
both directions run at once (the link is full duplex), so a step's copies take the longest of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from kinsim.engine.kv import KVLayout
from kinsim.hardware.spec import HardwareSpec
from kinsim.hardware.topology import host_link_resource, host_transfer_s


def host_kv_blocks(hw: HardwareSpec, layout: KVLayout, fraction: float) -> int:
    """KV blocks of one replica that its share of host memory holds (see the module docstring)."""
    return int(hw.node.host_memory * fraction / hw.node.gpus // layout.block_bytes)


def host_copy_model(hw: HardwareSpec, layout: KVLayout,
                    gpus: Iterable[int]) -> Callable[[int, int], tuple[float, dict[str, float]]]:
    """For a replica on GPUs ``gpus`` (cluster indices): a function of the blocks copied to host memory
    and from it in one step, giving the seconds the copies take alone and the share of that time each
    host-link resource is busy (the usage of a fluid-network flow)."""
    per_link = {d: Counter(host_link_resource(hw, g, d) for g in gpus) for d in ("d2h", "h2d")}

    def copy(out_blocks: int, in_blocks: int) -> tuple[float, dict[str, float]]:
        busy: dict[str, float] = {}
        for direction, blocks in (("d2h", out_blocks), ("h2d", in_blocks)):
            if blocks:
                for resource, sharing in per_link[direction].items():
                    busy[resource] = float(host_transfer_s(hw, blocks * layout.block_bytes * sharing))
        total = max(busy.values(), default=0.0)
        return total, {resource: seconds / total for resource, seconds in busy.items()} if total else {}

    return copy
