"""Disaggregated prefill and decode: the roles' replicas, and each request's KV moving between them.

``deployment.disaggregation`` splits the replicas into a prefill role and a decode role (counts and tensor
parallelism each; the prefill replicas take the first GPUs, node-major, then the decode replicas). A request
goes to a prefill replica (the deployment's router, among the prefill replicas), is prefilled there and
gets its first token; it then goes to a decode replica (the same router among the decode replicas:
``group_affinity`` keeps a Best-of-N problem's samples together, so they share the prompt's blocks there
too). The decode replica admits it when a seat and blocks for its KV are free, allocates them and starts the
**KV transfer**; the prefill replica keeps the KV allocated until the transfer ends, then frees it. The
prefill replica does not wait for the transfer: its next prefill overlaps it, as serving engines' KV
connectors do (vLLM's NIXL connector, Mooncake's transfer engine).

A transfer moves the blocks the decode replica allocated (the group's shared prompt blocks when no member
holds them there yet, and the sequence's private blocks), ``blocks x block_bytes`` per decode GPU, and, for a
model with sliding-window layers (whose blocks count only the full-attention layers), each sequence's window:
its last ``min(tokens, sliding_window)`` tokens' KV in each such layer (counted per sequence: the members of a
group hold the same prompt window when they move, but their windows part with their first tokens). Between
the two replicas' GPUs it is split into ``m = max(tp_prefill, tp_decode)`` streams, stream ``i`` from prefill
GPU ``i mod tp_prefill`` to decode GPU ``i mod tp_decode``, each carrying ``1/m`` of the replica's bytes over
the topology's route (NVLink through the switch inside a node, the NICs and the network across nodes). Alone
it takes::

    latency + max over links (bytes on the link / (link bandwidth x copy_efficiency))

where ``latency`` is the route's one-way latency (the sum of its hops') and ``copy_efficiency`` the link's
(``node.gpu_link.copy_efficiency``, ``cluster.network.copy_efficiency``). A role given its own hardware file
(``disaggregation.<role>.hardware``) is a cluster of its own, reached only over the network: each GPU's NIC
(``cluster.network.bandwidth_per_gpu`` of its file) into a non-blocking network and out through the other
GPU's.

The bandwidth part is a flow of the fluid network on the route's links, so transfers that share a link
divide it (two at once each take twice the bandwidth time), and so do the collectives of tensor-parallel
replicas on those links. Sequences of one group admitted together (from one prefill replica) move in one
transfer; a member admitted later while the group's shared blocks are still in flight joins the batch only
when they have arrived too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from kinsim.engine.clock import to_seconds, to_ticks
from kinsim.engine.fluid import FluidNetwork
from kinsim.engine.sequence import Sequence
from kinsim.hardware.spec import HardwareSpec
from kinsim.workload.spec import DeploymentSpec

#: Role names; ``both`` is every replica of a deployment that is not disaggregated.
ROLES = ("prefill", "decode")


@dataclass(frozen=True)
class RolePlan:
    """One role's replicas: its name, a deployment with the role's ``tensor_parallel`` (and ``data_parallel``
    its replica count), its first replica index, its first GPU (node-major index in its cluster) and its own
    hardware file (None: the run's hardware, whose GPUs the roles without one share, in role order)."""

    name: str
    deployment: DeploymentSpec
    first_replica: int
    first_gpu: int
    hardware_file: str | None = None

    @property
    def prefix(self) -> str:
        """Prefix of the names of its GPUs and links: ``""`` on the run's hardware, else ``"<role>:"``."""
        return "" if self.hardware_file is None else f"{self.name}:"

    @property
    def replicas(self) -> int:
        return self.deployment.data_parallel

    @property
    def tensor_parallel(self) -> int:
        return self.deployment.tensor_parallel


def role_plans(deployment: DeploymentSpec) -> list[RolePlan]:
    """The roles of ``deployment``: one ``both`` role, or ``prefill`` then ``decode``."""
    split = deployment.disaggregation
    if split is None:
        return [RolePlan("both", deployment, 0, 0)]
    plans, replica, gpu = [], 0, 0
    for name in ROLES:
        spec = getattr(split, name)
        tp = deployment.tensor_parallel if spec.tensor_parallel is None else spec.tensor_parallel
        role_deployment = replace(deployment, tensor_parallel=tp, data_parallel=spec.replicas, disaggregation=None)
        plans.append(RolePlan(name, role_deployment, replica, gpu if spec.hardware is None else 0, spec.hardware))
        replica += spec.replicas
        if spec.hardware is None:  # on its own hardware a role starts from GPU 0 of its own cluster
            gpu += spec.replicas * tp
    return plans


def copy_efficiency(hw: HardwareSpec, kind: str) -> float:
    """Share of a link's bandwidth a bulk copy reaches: the network's for ``network`` links, else the GPU
    fabric's."""
    if kind == "network":
        return hw.cluster.network.copy_efficiency
    return hw.node.gpu_link.copy_efficiency


def joined_topology(clusters: list[tuple[str, HardwareSpec, object]], file_of: dict[str, str | None]):
    """One graph of every cluster's links, for KV transfers: each cluster's graph (``(prefix, hardware,
    graph)``, vertices renamed with the prefix except the shared ``network``), every edge carrying its copy
    ``efficiency``. With more than one cluster, every GPU is also linked to the network by its NIC
    (``cluster.network`` of its file): that is the only way between clusters. ``file_of``: each prefix's
    hardware file, for the error when one has no network."""
    import networkx as nx

    from kinsim.errors import SpecError

    joined = nx.DiGraph()
    for prefix, hw, graph in clusters:
        renamed = nx.relabel_nodes(graph, {v: v if v == "network" else prefix + v for v in graph.nodes})
        for _a, _b, edge in renamed.edges(data=True):
            edge["efficiency"] = copy_efficiency(hw, edge["kind"])
        joined.update(renamed)
        if len(clusters) == 1:
            continue
        if hw.cluster is None:
            raise SpecError("has no cluster.network: a disaggregated role on other hardware reaches it only over "
                            "the network", path="cluster", file=file_of.get(prefix))
        net = hw.cluster.network
        for vertex, kind in graph.nodes(data="kind"):
            if kind == "gpu" and not renamed.has_edge(prefix + vertex, "network"):
                for a, b in ((prefix + vertex, "network"), ("network", prefix + vertex)):
                    joined.add_edge(a, b, bandwidth=net.bandwidth_per_gpu, latency=net.latency / 2, kind="network",
                                    efficiency=net.copy_efficiency)
    return joined


@dataclass(frozen=True)
class TransferCost:
    """A KV transfer alone: ``latency_s`` (route latency, seconds), ``work_s`` (bandwidth time, seconds) and
    ``usage`` (share of each link resource it keeps busy while it runs at full speed)."""

    latency_s: float
    work_s: float
    usage: dict[str, float]


def transfer_cost(graph, src_gpus: list[str], dst_gpus: list[str], replica_bytes: float) -> TransferCost:
    """What moving ``replica_bytes`` (the decode replica's bytes, all its GPUs) from the GPUs ``src_gpus`` of
    a prefill replica to ``dst_gpus`` of a decode replica costs (streams and formula in the module
    docstring). ``graph``: :func:`joined_topology` of the clusters."""
    from kinsim.hardware.topology import route

    streams = max(len(src_gpus), len(dst_gpus))
    per_stream = replica_bytes / streams
    busy: dict[str, float] = {}
    latency = 0.0
    for i in range(streams):
        path = route(graph, src_gpus[i % len(src_gpus)], dst_gpus[i % len(dst_gpus)])
        hops = list(zip(path, path[1:]))
        latency = max(latency, sum(graph.edges[a, b]["latency"] for a, b in hops))
        for a, b in hops:
            edge = graph.edges[a, b]
            name = f"{a}->{b}"
            busy[name] = busy.get(name, 0.0) + per_stream / (edge["bandwidth"] * edge["efficiency"])
    work = max(busy.values()) if busy else 0.0
    usage = {name: seconds / work for name, seconds in busy.items()} if work > 0 else {}
    return TransferCost(latency, work, usage)


@dataclass(eq=False)
class _Transfer:
    """KV in flight to one decode replica: the sequences it carries and, when it carries their group's shared
    prompt blocks, the members that wait for it (admitted later by other transfers)."""

    decode: int
    seqs: list[Sequence]
    blocks: float  # decode-replica blocks' worth of bytes: whole blocks, plus window-layer KV as a fraction
    started_s: float
    carries_shared: bool
    waiters: list[Sequence] = field(default_factory=list)


@dataclass
class TransferStats:
    """Disaggregation figures of a run: transfers, KV bytes moved (all GPUs of the decode replicas), and per
    sequence the wait from its first token to its decode replica's admission (``queue_s``) and from admission
    until its KV (and its group's shared blocks) had arrived (``stall_s``)."""

    transfers: int = 0
    bytes: float = 0.0
    transfer_s: list[float] = field(default_factory=list)
    queue_s: list[float] = field(default_factory=list)
    stall_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | list[float]]:
        return {"transfers": self.transfers, "bytes": self.bytes,
                "transfer_s": self.transfer_s, "queue_s": self.queue_s, "stall_s": self.stall_s}


class KVHandoff:
    """Moves sequences from prefill replicas to decode replicas (see the module docstring).

    ``replicas``: every replica of the simulation (prefill ones, then decode ones); ``choose_decode(group)``:
    the decode replica (its index among all) for a group; ``group_state(replica, seq)``: the decode replica's
    state of ``seq``'s group; ``cost(prefill, decode, blocks)``: the :class:`TransferCost` of moving that many
    of the decode replica's blocks; ``block_bytes``: one such block, all a decode replica's GPUs;
    ``window_blocks(tokens)``: a sequence's sliding-window KV at ``tokens`` cached, in such blocks' worth of
    bytes (a fraction; None: the model has no window layers)."""

    def __init__(self, env, network: FluidNetwork, replicas: list, choose_decode: Callable[[int], int],
                 group_state: Callable[[object, Sequence], object],
                 cost: Callable[[int, int, float], TransferCost], block_bytes: float,
                 window_blocks: Callable[[int], float] | None = None) -> None:
        self.env, self.network, self.replicas = env, network, replicas
        self._choose, self._group_state, self._cost, self._block_bytes = choose_decode, group_state, cost, block_bytes
        self._window_blocks = window_blocks
        self._source: dict[Sequence, int] = {}  # sequence -> the prefill replica holding its KV
        self._handed_s: dict[Sequence, float] = {}  # when it got its first token
        self._admitted_s: dict[Sequence, float] = {}  # when its decode replica admitted it
        self.stats = TransferStats()

    def handoff(self, seq: Sequence, prefill: int, group_id: int) -> None:
        """``seq`` has its first token on replica ``prefill``: send it to a decode replica."""
        decode = self._choose(group_id)
        self._source[seq] = prefill
        self._handed_s[seq] = to_seconds(self.env.now)
        replica = self.replicas[decode]
        seq.group = self._group_state(replica.scheduler, seq)
        seq.replica = decode
        replica.receive(seq)

    def start(self, decode: int, landings: list[tuple[Sequence, int, bool]]) -> None:
        """Start the transfers of the sequences replica ``decode`` has just admitted: one per group."""
        by_group: dict[tuple[int, int], list[tuple[Sequence, int, bool]]] = {}
        for landing in landings:  # one transfer per group and prefill replica it comes from
            by_group.setdefault((id(landing[0].group), self._source[landing[0]]), []).append(landing)
        now = to_seconds(self.env.now)
        for members in by_group.values():
            seqs = [seq for seq, _, _ in members]
            for seq in seqs:
                self.stats.queue_s.append(now - self._handed_s.pop(seq))
                self._admitted_s[seq] = now
            blocks = sum(b for _, b, _ in members)
            if self._window_blocks is not None:  # each sequence's window-layer KV moves with its blocks
                blocks += sum(self._window_blocks(seq.kv_tokens) for seq in seqs)
            transfer = _Transfer(decode, seqs, blocks, now, any(c for _, _, c in members))
            if transfer.carries_shared:
                seqs[0].group.carrier = transfer
            self._launch(transfer, self._source[seqs[0]])

    def _launch(self, transfer: _Transfer, prefill: int) -> None:
        cost = self._cost(prefill, transfer.decode, transfer.blocks)
        self.stats.transfers += 1
        self.stats.bytes += transfer.blocks * self._block_bytes
        latency, work = to_ticks(np.array([cost.latency_s, cost.work_s]))
        name = f"kv_transfer.replica{prefill}->replica{transfer.decode}"

        def after_latency(_event=None) -> None:
            if work > 0:
                flow = self.network.start(name, float(work), cost.usage)
                flow.done.callbacks.append(lambda _e: self._arrived(transfer))
            else:
                self._arrived(transfer)

        if latency > 0:
            self.env.timeout(float(latency)).callbacks.append(after_latency)
        else:
            after_latency()

    def _arrived(self, transfer: _Transfer) -> None:
        """The transfer's KV has arrived: free it on the prefill side; its sequences join the decode batch
        (those whose group's shared blocks are still in flight wait for them)."""
        now = to_seconds(self.env.now)
        self.stats.transfer_s.append(now - transfer.started_s)
        group = transfer.seqs[0].group
        ready = list(transfer.seqs)
        if transfer.carries_shared:
            if group.carrier is transfer:
                group.carrier = None
            ready += transfer.waiters
        elif group.carrier is not None:  # the carrier is still in flight (it clears itself on arrival)
            group.carrier.waiters.extend(ready)
            ready = []
        for seq in transfer.seqs:
            self.release(seq)
        decode = self.replicas[transfer.decode]
        for seq in ready:
            self.stats.stall_s.append(now - self._admitted_s.pop(seq))
            decode.scheduler.land(seq)
        if ready:
            decode.landed()

    def release(self, seq: Sequence) -> None:
        """Free ``seq``'s KV on its prefill replica (its transfer has ended, or it has ended); wake the
        replica, which may have been waiting for the blocks."""
        prefill = self._source.pop(seq, None)
        if prefill is None:
            return
        self._handed_s.pop(seq, None)
        replica = self.replicas[prefill]
        replica.scheduler.release_held(seq)
        replica.wake()
