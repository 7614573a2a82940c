"""Block top-k attention over KV offloaded to host memory: what each decode step fetches over the host link.

With ``attention.offload`` the full KV of every sequence lives in host memory; HBM keeps the block summaries
(mean keys), the sink tokens, the local window, the last incomplete block and a cache of recently selected
blocks (:mod:`kinsim.engine.kv`). Each decode step, in each layer, selection picks the top-k blocks from the
summaries in HBM, and the selected blocks the GPU cache misses are copied from host memory before that
layer's attention reads them.

Per sequence with ``c`` tokens cached, block size ``b``, ``s`` sink tokens and a local window of ``w``::

    selected  = min(top_k, floor(max(c - s - w, 0) / b))     complete blocks outside the sink and window
    fetched   = selected x (1 - cache_hit_rate)                blocks, per layer (fractional: an expectation)
    bytes     = fetched x b x (K and V bytes of a token, one layer, this GPU's KV heads) x layers

The hit rate is a parameter: kinsim does not simulate which blocks attention selects.

**Time.** A layer's selection needs that layer's queries, so its fetch cannot start before the layer runs,
and its attention cannot start before the fetch ends: the fetch is on the critical path and adds to the
step's time (no overlap with the GPU's kernels). Each layer's fetch is one batched copy (the blocks of
every sequence of the batch) and pays the link's latency once::

    fetch time = g x bytes / (host link bandwidth x efficiency) + layers x latency   (0 when nothing is fetched)

(:func:`kinsim.hardware.topology.host_transfer_s` per layer), where ``g`` is the number of the replica's
GPUs behind one host link (``host_link.shared_by`` > 1 with tensor parallelism: they fetch at once).
Another replica on the same link slows it further: the engine shares the link's resource
(:func:`kinsim.hardware.topology.host_link_resource`) among the flows that use it. Not modelled: prefill reading earlier
chunks' KV back from host memory (prefill attention reads it from HBM, as without offload), the copy of
completed blocks to host memory (the other direction of the full-duplex link, off the critical path), and
a cache's own HBM traffic.
"""

from __future__ import annotations

import numpy as np

from kinsim.hardware.spec import HardwareSpec
from kinsim.ops.attention import AttentionDims
from kinsim.ops.op import Number
from kinsim.workload.spec import AttentionPolicy, BlockTopKAttention


def offloads(policy: AttentionPolicy) -> bool:
    """Whether ``policy`` keeps the full KV in host memory (block top-k with ``offload``)."""
    return isinstance(policy, BlockTopKAttention) and policy.offload


def selected_blocks(policy: BlockTopKAttention, context: Number) -> Number:
    """Blocks one decode step selects outside the sink and the local window, per sequence with ``context``
    tokens cached (any shape; whole numbers as floats)."""
    outside = np.maximum(np.asarray(context, dtype=float) - (policy.sink_tokens + policy.local_window), 0.0)
    return np.minimum(np.floor(outside / policy.block_size), float(policy.top_k))


def selected_blocks_run(policy: BlockTopKAttention, context: np.ndarray, steps: int) -> np.ndarray:
    """:func:`selected_blocks` summed over the sequences, per step of a segment (shape ``(steps,)``): at
    step ``k`` sequence ``i`` has ``context[i] + k`` tokens cached. ``O(n + steps)``, in integers, so the
    same numbers as summing the ``(steps, n)`` matrix.

    With ``x = c - s - w`` a sequence selects ``clip(floor((x + k) / b), 0, top_k)`` blocks. That grows by one
    at the steps ``k = k0 + j b`` (``k0 = b - x mod b``, the ``j``-th crossing of a multiple of ``b``, to
    ``floor(x / b) + 1 + j`` blocks) while the new count is within ``[1, top_k]``: one run of steps ``b``
    apart per sequence, counted with a difference array read with stride ``b``."""
    b, top_k = policy.block_size, policy.top_k
    x = np.asarray(context, dtype=np.int64) - (policy.sink_tokens + policy.local_window)
    whole = x // b
    first = int(np.clip(whole, 0, top_k).sum())
    if steps <= 1:
        return np.full(steps, float(first))
    k0 = b - x % b  # first crossing, in 1..b
    j_low = np.maximum(-whole, 0)  # first crossing that lands in [1, top_k]
    j_high = top_k - 1 - whole  # last one
    live = j_high >= j_low
    cap = steps + b  # past every step of the segment, so what lands here changes nothing counted
    start = np.minimum(k0 + j_low * b, cap)[live]
    end = np.minimum(k0 + (j_high + 1) * b, cap)[live]
    length = -(-(cap + 1) // b) * b
    marks = np.bincount(start, minlength=length)[:length] - np.bincount(end, minlength=length)[:length]
    grows = marks.reshape(-1, b).cumsum(axis=0).reshape(-1)[:steps]  # sequences growing at each step
    return (first + np.cumsum(grows)).astype(float)


def fetch_bytes_per_block(dims: AttentionDims, policy: BlockTopKAttention, layers: int) -> float:
    """Bytes one selected block brings over the host link, all layers: its K and V for this GPU's KV heads."""
    return policy.block_size * dims.kv_bytes_per_token * layers


def fetch_bytes(dims: AttentionDims, policy: BlockTopKAttention, layers: int, blocks: Number) -> Number:
    """Bytes a step fetches when ``blocks`` blocks are selected in all (a sum over the batch): the cache's
    misses, ``blocks x (1 - cache_hit_rate)``, times :func:`fetch_bytes_per_block`."""
    return (np.asarray(blocks, dtype=float) * (1.0 - policy.cache_hit_rate)) * fetch_bytes_per_block(dims, policy,
                                                                                                     layers)


def replica_gpus_per_host_link(hw: HardwareSpec, tensor_parallel: int) -> int:
    """GPUs of one replica behind one host link: ``min(tensor_parallel, host_link.shared_by)``. A replica's
    GPUs are consecutive and a link serves ``shared_by`` consecutive GPUs, so this is exact when one of the
    two divides the other (always, for powers of two)."""
    return min(tensor_parallel, hw.node.host_link.shared_by)


def host_link_busy_s(hw: HardwareSpec, nbytes: Number, gpus_per_link: int = 1) -> Number:
    """Seconds a host link is busy carrying ``nbytes`` for each of ``gpus_per_link`` GPUs of a replica (they
    fetch in lock-step, so their copies share it): ``gpus_per_link x nbytes / (bandwidth x efficiency)``."""
    return gpus_per_link * np.asarray(nbytes, dtype=float) / hw.node.host_link.dma_bandwidth


def fetch_seconds(hw: HardwareSpec, layers: int, nbytes: Number, gpus_per_link: int = 1) -> Number:
    """Time on the critical path of a step that fetches ``nbytes`` per GPU over the host link (see the
    module docstring): :func:`host_link_busy_s` ``+ layers x latency``, or 0 when ``nbytes`` is 0."""
    busy = host_link_busy_s(hw, nbytes, gpus_per_link)
    return np.where(busy > 0, busy + layers * hw.node.host_link.latency, 0.0)
