"""The hardware's links as a directed networkx graph.

Vertices are GPUs (``n0.gpu3``), per-node switches (``n0.switch``), hosts (``n0.host``) and, with a
cluster, the network (``network``). Each directed edge is one direction of a link and carries
``bandwidth`` (B/s), ``latency`` (s) and ``kind``. The engine turns edges into shared resources; a
transfer's route is given by :func:`route`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # networkx is imported when a graph is built (it costs 0.15 s at start-up)
    import networkx as nx

from kinsim.hardware.spec import HardwareSpec


def gpu_name(node: int, gpu: int) -> str:
    """Vertex name of GPU ``gpu`` of node ``node``."""
    return f"n{node}.gpu{gpu}"


def build_topology(hw: HardwareSpec) -> nx.DiGraph:
    """Build the link graph of ``hw``: both directions of every link, with bandwidth and latency."""
    import networkx as nx

    graph = nx.DiGraph()
    nodes = hw.cluster.nodes if hw.cluster else 1
    link = hw.node.gpu_link
    n = hw.node.gpus
    for node in range(nodes):
        gpus = [gpu_name(node, i) for i in range(n)]
        for i, name in enumerate(gpus):
            graph.add_node(name, kind="gpu", node=node, index=i)
        host = f"n{node}.host"
        graph.add_node(host, kind="host", node=node)
        for name in gpus:
            _add_link(graph, name, host, hw.node.host_link.bandwidth, hw.node.host_link.latency,
                      hw.node.host_link.kind)
        if n > 1:
            if link.topology == "switch":
                switch = f"n{node}.switch"
                graph.add_node(switch, kind="switch", node=node)
                # The switch is non-blocking; half the end-to-end latency on each hop.
                for name in gpus:
                    _add_link(graph, name, switch, link.bandwidth, link.latency / 2, link.kind)
            elif link.topology == "full_mesh":
                for i in range(n):
                    for j in range(i + 1, n):
                        _add_link(graph, gpus[i], gpus[j], link.bandwidth / (n - 1), link.latency,
                                  link.kind)
            else:  # ring
                pairs = {tuple(sorted((i, (i + 1) % n))) for i in range(n)}
                share = link.bandwidth / (2 if n > 2 else 1)
                for i, j in sorted(pairs):
                    _add_link(graph, gpus[i], gpus[j], share, link.latency, link.kind)
    if hw.cluster and nodes > 1:
        graph.add_node("network", kind="network")
        net = hw.cluster.network
        for node in range(nodes):
            for i in range(n):
                # Half the end-to-end latency on each side of the (non-blocking) network.
                _add_link(graph, gpu_name(node, i), "network", net.bandwidth_per_gpu, net.latency / 2,
                          "network")
    return graph


def _add_link(graph: nx.DiGraph, a: str, b: str, bandwidth: float, latency: float, kind: str) -> None:
    for src, dst in ((a, b), (b, a)):
        graph.add_edge(src, dst, bandwidth=bandwidth, latency=latency, kind=kind)


def gpu_to_gpu_bandwidth(hw: HardwareSpec, graph: nx.DiGraph | None = None) -> float:
    """Bottleneck bandwidth (B/s, one direction) of a transfer between GPU 0 and GPU 1 of node 0, or 0
    for a single-GPU node."""
    if hw.node.gpus < 2:
        return 0.0
    if graph is None:  # the route between two GPUs of node 0 passes at most node 0 and the network
        two_nodes = replace(hw.cluster, nodes=min(hw.cluster.nodes, 2)) if hw.cluster else None
        graph = build_topology(replace(hw, cluster=two_nodes))
    path = route(graph, gpu_name(0, 0), gpu_name(0, 1))
    return min(graph.edges[a, b]["bandwidth"] for a, b in zip(path, path[1:]))


def route(graph: nx.DiGraph, src: str, dst: str) -> list[str]:
    """The vertices a transfer from ``src`` to ``dst`` passes: the path of least serialisation time
    per byte (sum of 1/bandwidth), so NVLink is preferred to a detour through the host."""
    import networkx as nx

    return nx.shortest_path(graph, src, dst, weight=lambda a, b, edge: 1.0 / edge["bandwidth"])


#: Directions of a host link: host to GPU (a fetch, a swap-in) and GPU to host (a write-back, a swap-out).
HOST_LINK_DIRECTIONS = ("h2d", "d2h")


def host_link_resource(hw: HardwareSpec, gpu: int, direction: str = "h2d") -> str:
    """Name of the fluid-network resource of one direction of the host link of GPU ``gpu`` (its index in
    the cluster, node-major), e.g. ``n0.host_link3.h2d``.

    GPUs that share a host link (``node.host_link.shared_by``: consecutive GPUs of a node behind one PCIe
    switch uplink) get the same name, so their transfers divide its bandwidth; the two directions of a
    full-duplex link are separate resources. These are not edges of :func:`build_topology`'s graph: no
    collective between GPUs routes through the host."""
    if direction not in HOST_LINK_DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(HOST_LINK_DIRECTIONS)}, got {direction!r}")
    per_node = hw.node.gpus
    if not 0 <= gpu < hw.total_gpus:
        raise ValueError(f"GPU index must be in [0, {hw.total_gpus}), got {gpu}")
    return f"n{gpu // per_node}.host_link{gpu % per_node // hw.node.host_link.shared_by}.{direction}"


def host_transfer_s(hw: HardwareSpec, nbytes):
    """Seconds one transfer of ``nbytes`` bytes (a float or an array) over a GPU's host link takes alone:
    ``nbytes / (bandwidth x efficiency) + latency`` (``node.host_link``; efficiency as
    :attr:`~kinsim.hardware.spec.HostLinkSpec.dma_efficiency`). Transfers that share the link at the same
    time divide its bandwidth (the engine's fluid network does that, on :func:`host_link_resource`)."""
    link = hw.node.host_link
    return nbytes / link.dma_bandwidth + link.latency
