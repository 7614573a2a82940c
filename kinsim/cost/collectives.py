"""Collectives over the node's links: a latency-bandwidth (alpha-beta) model.

A collective over ``p`` GPUs with a buffer of ``B`` bytes per GPU takes
``hops x alpha + link_bytes / (bandwidth x efficiency)``, where each algorithm has its traffic factor:

================ ========= ======================== ====================
collective       algorithm link bytes per GPU       sequential hops
================ ========= ======================== ====================
all-reduce       ring      2 (p-1)/p B              2 (p-1)
all-reduce       tree      2 B                      2 ceil(log2 p)
all-gather       ring      (p-1)/p B (B = output)   p-1
reduce-scatter   ring      (p-1)/p B (B = input)    p-1
all-to-all       direct    (p-1)/p B                1
================ ========= ======================== ====================

``auto`` takes the faster of ring and tree for all-reduce (tree wins on small, latency-bound buffers).

The per-GPU bandwidth comes from the node's fabric: a switch port's ``bandwidth`` for NVSwitch; for a
full mesh the ``p - 1`` direct links a GPU uses to its peers (``bandwidth x (p-1)/(gpus-1)``); for a
ring of links both neighbours (``bandwidth``).

A group larger than a node: a ring (all-reduce, all-gather, reduce-scatter) crosses each node's boundary
once per channel, and NCCL spreads its channels over the node's NICs, so every GPU sends its ring traffic
over its node links while the node's NICs together carry the traffic that leaves the node, which is a
GPU's ring traffic: per GPU the ring runs at ``min(node bandwidth, GPUs per node x NIC bandwidth)``
(8 x 400 Gbit/s NICs: 400 GB/s against NVLink's 450 GB/s on an H100 node), with the network's latency per
hop. An all-to-all's traffic to other nodes crosses the GPU's own NIC: it runs at the NIC bandwidth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.ops.op import Collective, Number

ALGORITHMS = ("auto", "ring", "tree")


@dataclass(frozen=True)
class CollectiveTerms:
    """How a collective runs: bytes each GPU sends, at what bandwidth, over how many latency hops."""

    algorithm: str
    link_bytes: Number
    bandwidth: float
    hops: int
    hop_latency: float

    def time(self, link_efficiency: float = 1.0) -> tuple[Number, Number]:
        """(bandwidth term, latency term), seconds."""
        return self.link_bytes / (self.bandwidth * link_efficiency), self.hops * self.hop_latency


def group_bandwidth(hw: HardwareSpec, gpus: int, *, ring: bool = True) -> tuple[float, float]:
    """(per-GPU link bandwidth each way in B/s, per-hop latency in s) for a group of ``gpus`` GPUs running a
    ring collective (``ring``) or an all-to-all; see the module docstring for groups over several nodes."""
    if gpus > hw.total_gpus:
        raise SpecError(f"more GPUs than the hardware has ({hw.total_gpus})", path="gpus", value=gpus)
    node, link = hw.node, hw.node.gpu_link
    if gpus <= node.gpus:
        if link.topology == "full_mesh":
            return link.bandwidth * (gpus - 1) / (node.gpus - 1), link.latency
        return link.bandwidth, link.latency
    network = hw.cluster.network
    if not ring:
        return network.bandwidth_per_gpu, network.latency
    node_bandwidth, _ = group_bandwidth(hw, node.gpus)
    return min(node_bandwidth, node.gpus * network.bandwidth_per_gpu), network.latency


def collective_terms(collective: Collective, hw: HardwareSpec, algorithm: str = "ring") -> CollectiveTerms:
    """The terms of ``collective`` with ``algorithm`` (``ring`` or ``tree``; ``tree`` only for all-reduce)."""
    p, nbytes = collective.gpus, collective.bytes
    if p < 1:
        raise SpecError("must be at least 1", path="gpus", value=p)
    if p == 1:
        return CollectiveTerms(algorithm, 0.0 * nbytes, 1.0, 0, 0.0)
    kind = collective.kind
    bandwidth, latency = group_bandwidth(hw, p, ring=kind in ("allreduce", "allgather", "reducescatter"))
    if kind == "allreduce" and algorithm == "tree":
        return CollectiveTerms("tree", 2.0 * nbytes, bandwidth, 2 * math.ceil(math.log2(p)), latency)
    if kind == "allreduce":
        return CollectiveTerms("ring", 2.0 * (p - 1) / p * nbytes, bandwidth, 2 * (p - 1), latency)
    if kind in ("allgather", "reducescatter"):
        return CollectiveTerms("ring", (p - 1) / p * nbytes, bandwidth, p - 1, latency)
    return CollectiveTerms("direct", (p - 1) / p * nbytes, bandwidth, 1, latency)


def collective_time(collective: Collective, hw: HardwareSpec, link_efficiency: float,
                    algorithm: str = "auto") -> tuple[Number, Number, str]:
    """(bandwidth seconds, latency seconds, algorithm) of ``collective``; ``auto`` takes the faster of ring
    and tree for an all-reduce (per element, when the buffer is an array)."""
    if algorithm not in ALGORITHMS:
        raise SpecError("must be one of " + ", ".join(ALGORITHMS), path="algorithm", value=algorithm)
    if algorithm != "auto" or collective.kind != "allreduce":
        terms = collective_terms(collective, hw, "ring" if algorithm == "auto" else algorithm)
        return (*terms.time(link_efficiency), terms.algorithm)
    ring_net, ring_lat = collective_terms(collective, hw, "ring").time(link_efficiency)
    tree_net, tree_lat = collective_terms(collective, hw, "tree").time(link_efficiency)
    tree_faster = tree_net + tree_lat < ring_net + ring_lat
    if np.ndim(tree_faster) == 0:
        return (tree_net, tree_lat, "tree") if tree_faster else (ring_net, ring_lat, "ring")
    return np.where(tree_faster, tree_net, ring_net), np.where(tree_faster, tree_lat, ring_lat), "auto"
