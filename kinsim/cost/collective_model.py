"""Calibrated all-reduce: NCCL and the serving engines' custom all-reduce, each as two protocols.

An implementation (a :class:`~kinsim.hardware.spec.CollectiveCurveSpec`) has a small-message and a
large-message protocol. For ``p`` GPUs and a buffer of ``B`` bytes per GPU, a protocol takes

    latency + per_peer x (p - 1) + traffic(p) x B / (link bandwidth x efficiency)

and the implementation runs the faster of the two (NCCL's tuner picks LL or Simple by size; vLLM's
custom all-reduce picks one-shot or two-shot). A curve may add a third protocol, in-switch reduction
(NCCL's NVLS: traffic 1, its own latency and efficiency), which runs only where the fabric reduces in
the switch and ``p > 2``, so a profile fitted on an NVSwitch-3 system keeps a ring protocol for a
fabric without it (an A100 node). Traffic, bytes each GPU sends per byte of buffer:

* ``ring``: ``2 (p - 1) / p`` (reduce-scatter then all-gather, also the custom two-shot);
* ``oneshot``: ``p - 1`` (each GPU reads every peer's whole buffer and reduces locally);
* ``nvls``: ``1`` where the fabric reduces in the switch (NVLink SHARP) and ``p > 2``; ``ring`` otherwise.

Which implementation runs is ``deployment.allreduce``: ``nccl``, ``custom`` or ``auto``, which chooses
as vLLM does: its custom all-reduce for buffers of at most 8 MiB on 2, 4, 6 or 8 GPUs of one NVLink node,
NCCL otherwise (vLLM ``CustomAllreduce``: ``max_size`` 8 MiB, world sizes 2/4/6/8).
"""

from __future__ import annotations

import math

import numpy as np

from kinsim.hardware.spec import CollectiveCurveSpec, HardwareSpec
from kinsim.ops.op import Number

#: Largest buffer vLLM's custom all-reduce takes, bytes.
CUSTOM_ALLREDUCE_MAX_BYTES = 8 * 1024 * 1024
#: GPU counts vLLM's custom all-reduce supports.
CUSTOM_ALLREDUCE_GPUS = (2, 4, 6, 8)
IMPLEMENTATIONS = ("nccl", "custom", "auto")


def traffic_factor(traffic: str, gpus: int, in_switch_reduction: bool) -> float:
    """Bytes each GPU sends per byte of buffer under ``traffic``."""
    ring = 2.0 * (gpus - 1) / gpus
    if traffic == "oneshot":
        return float(gpus - 1)
    if traffic == "nvls" and in_switch_reduction and gpus > 2:
        return 1.0
    return ring


def allreduce_time(curve: CollectiveCurveSpec, nbytes: Number, gpus: int, bandwidth: float,
                   in_switch_reduction: bool, latency_peers: int | None = None) -> tuple[Number, Number]:
    """(bandwidth seconds, latency seconds) of the fastest protocol (arrays allowed); ``bandwidth`` is a
    GPU's link bandwidth each way, B/s. The latencies are measured, so no per-hop link latency is added.
    ``latency_peers``: the peers whose per-peer latency counts, where not all ``gpus - 1`` (a group over
    several nodes: those of one node, :func:`multinode_latency`)."""
    nbytes = np.asarray(nbytes, dtype=float) if np.ndim(nbytes) else float(nbytes)
    peers = gpus - 1 if latency_peers is None else latency_peers
    small_net = traffic_factor(curve.small_traffic, gpus, in_switch_reduction) * nbytes / (
        bandwidth * curve.small_efficiency)
    small_lat = curve.small_latency + curve.small_per_peer * peers
    large_net = traffic_factor(curve.large_traffic, gpus, in_switch_reduction) * nbytes / (
        bandwidth * curve.large_efficiency)
    large_lat = curve.large_latency + curve.large_per_peer * peers
    small_faster = small_net + small_lat <= large_net + large_lat
    if np.ndim(small_faster) == 0:
        net, lat = (small_net, small_lat) if small_faster else (large_net, large_lat)
    else:
        net, lat = np.where(small_faster, small_net, large_net), np.where(small_faster, small_lat, large_lat)
    if curve.switch_efficiency is None or curve.switch_latency is None or not in_switch_reduction or gpus <= 2:
        return net, lat
    switch_net = nbytes / (bandwidth * curve.switch_efficiency)
    switch_lat = curve.switch_latency + curve.switch_per_peer * peers
    switch_faster = switch_net + switch_lat < net + lat
    if np.ndim(switch_faster) == 0:
        return (switch_net, switch_lat) if switch_faster else (net, lat)
    return np.where(switch_faster, switch_net, net), np.where(switch_faster, switch_lat, lat)


def multinode_latency(hw: HardwareSpec, gpus: int) -> tuple[int, float]:
    """(peers whose per-peer latency counts, seconds of network latency added) of an all-reduce of ``gpus``
    GPUs over more than one node: NCCL's multi-node algorithms are hierarchical (a chain or ring within each
    node, a tree or ring between the nodes' leaders), so a message waits on one node's peers, as the
    fitted single-node curve counts them, and on the network twice per level of a binary tree over the
    nodes (up while reducing, down while broadcasting)."""
    nodes = -(-gpus // hw.node.gpus)
    return hw.node.gpus - 1, 2.0 * math.ceil(math.log2(nodes)) * hw.cluster.network.latency


def choose_allreduce(choice: str, nbytes: Number, gpus: int, hw: HardwareSpec) -> str:
    """``nccl`` or ``custom`` for a buffer of ``nbytes`` over ``gpus`` GPUs (``choice`` is the deployment's
    ``allreduce``). ``auto`` follows vLLM; with an array of sizes it decides on the largest."""
    if choice != "auto":
        return choice
    one_node = gpus <= hw.node.gpus and hw.node.gpu_link.kind == "nvlink"
    small = float(np.max(nbytes)) <= CUSTOM_ALLREDUCE_MAX_BYTES
    return "custom" if one_node and small and gpus in CUSTOM_ALLREDUCE_GPUS else "nccl"
