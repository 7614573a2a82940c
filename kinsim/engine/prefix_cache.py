"""Automatic prefix caching: content-addressed KV blocks of one replica, kept after use, evicted LRU.

A prompt's whole KV blocks are named by *keys*: two blocks with the same key hold the same tokens at the
same place, so a request whose prompt starts with blocks already cached skips their prefill. Keys come
from the trace's ``hash_ids`` (each id names a prefix of ``hash_block_tokens`` tokens, so kinsim block
``b`` is named by the id of the hash block holding its last token, with ``b``) or, without them, from the
group (the members of a Best-of-N group share one prompt): see :func:`prompt_block_keys`.

**States of a key.** *Referenced* (``refs > 0``): some group resident on the replica holds the block; it
counts in the scheduler's used blocks. *Evictable* (``refs == 0``): no one holds it, but its KV stays in
HBM until the space is needed; the scheduler counts it as free (allocating may evict it) and this module
keeps it in least-recently-released order. A block is *ready* (hits may use it) once the prefill that
wrote it has completed; until then a second request with the same prefix computes it again, as a
serving engine whose block hashes are recorded after the block is computed does.

**Eviction order.** When a group releases its blocks, they join the eviction queue last block first, so
the tail of a prompt goes before its head (a prefix is useful only from its start), as vLLM frees them.

**Host tier** (``kv_offload: lru``). An evicted block is written to host memory when the host share has
room (else the least recently used host block makes room; blocks of swapped sequences are never
dropped). A prompt's hits continue from the HBM blocks into the host blocks that follow them: those are
loaded back (the scheduler counts the copies) rather than computed. Host blocks are copies: loading one
leaves it there, as the most recently used.

Counts here are blocks of the replica's KV cache (``kv_block_size`` tokens each); the module holds no
times and no bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import numpy as np

Key = Hashable


def prompt_block_keys(prompt_tokens: int, block_size: int, *, group: int, hash_ids: bytes | None = None,
                      hash_block_tokens: int = 0) -> tuple[Key, ...]:
    """The keys of the whole KV blocks (``block_size`` tokens) of a prompt of ``prompt_tokens`` tokens.

    With ``hash_ids`` (packed int64, see :class:`~kinsim.workload.request.BlockHashes`) each of
    ``hash_block_tokens`` tokens, block ``b`` (tokens ``b x block_size`` to ``(b + 1) x block_size - 1``)
    is named ``(id, b)`` by the id of the hash block holding its last token; blocks past the ids' reach
    are not cacheable. Without them every whole prompt block is named by the group: ``("group", group,
    b)``, shared by the group's members only."""
    whole = prompt_tokens // block_size
    if hash_ids is None or hash_block_tokens <= 0:
        return tuple(("group", group, b) for b in range(whole))
    ids = np.frombuffer(hash_ids, dtype="<i8")
    reach = min(whole, (len(ids) * hash_block_tokens) // block_size)
    ends = (np.arange(reach, dtype=np.int64) + 1) * block_size - 1
    return tuple(zip(ids[ends // hash_block_tokens].tolist(), range(reach)))


class PrefixCache:
    """The cached KV blocks of one replica: references, readiness and the eviction queue."""

    def __init__(self, host_tier: bool = False) -> None:
        """``host_tier``: evicted blocks go to host memory (:meth:`evict`'s ``host_room``)."""
        self._refs: dict[Key, int] = {}  # every cached key (referenced or evictable)
        self._ready: set[Key] = set()
        self._evictable: OrderedDict[Key, None] = OrderedDict()  # first is evicted first
        self._host: OrderedDict[Key, None] | None = OrderedDict() if host_tier else None  # first is dropped first
        self.evictions = 0  #: blocks evicted from HBM so far
        self.offloaded = 0  #: blocks written to the host tier so far

    @property
    def host_cached(self) -> int:
        """Blocks in the host tier."""
        return len(self._host) if self._host is not None else 0

    def lookup(self, keys: Sequence[Key]) -> tuple[int, int]:
        """Hits of ``keys`` from the first: ready blocks in HBM, then the blocks that follow them in the
        host tier (0 without one)."""
        gpu = self.hits(keys)
        host = 0
        if self._host:
            for key in keys[gpu:]:
                if key not in self._host:
                    break
                host += 1
        return gpu, host

    def touch_host(self, keys: Sequence[Key]) -> None:
        """``keys`` were just loaded from the host tier: the most recently used there."""
        if self._host is not None:
            for key in keys:
                if key in self._host:
                    self._host.move_to_end(key)

    def drop_host(self, blocks: int) -> None:
        """Drop the ``blocks`` oldest blocks of the host tier (to make room in host memory)."""
        if self._host is not None:
            for _ in range(min(blocks, len(self._host))):
                self._host.popitem(last=False)

    @property
    def cached(self) -> int:
        """Blocks in the cache (referenced or evictable)."""
        return len(self._refs)

    @property
    def evictable(self) -> int:
        """Cached blocks no one references (free to allocate, at the cost of their content)."""
        return len(self._evictable)

    def hits(self, keys: Sequence[Key]) -> int:
        """How many of ``keys``, from the first, are cached and ready."""
        count = 0
        for key in keys:
            if key not in self._ready:
                break
            count += 1
        return count

    def shareable(self, keys: Sequence[Key], hits: int) -> int:
        """How many of ``keys`` a group admitted now would hold as shared blocks: its ``hits``, then the
        following keys no one has cached (it writes them), up to the first cached but not ready one
        (another prefill is writing it: the rest is computed privately)."""
        count = hits
        for key in keys[hits:]:
            if key in self._refs:
                break
            count += 1
        return count

    def unreferenced(self, keys: Sequence[Key]) -> int:
        """How many of ``keys`` no one references: acquiring them takes that many free blocks."""
        refs = self._refs
        return sum(1 for key in keys if not refs.get(key, 0))

    def acquire(self, keys: Sequence[Key]) -> int:
        """Reference ``keys`` (adding those not cached, not yet ready); return how many were unreferenced."""
        refs, evictable = self._refs, self._evictable
        taken = 0
        for key in keys:
            count = refs.get(key, 0)
            if count == 0:
                taken += 1
                evictable.pop(key, None)
            refs[key] = count + 1
        return taken

    def mark_ready(self, keys: Sequence[Key]) -> None:
        """The prefill writing ``keys`` has completed: later requests may hit them."""
        self._ready.update(keys)

    def release(self, keys: Sequence[Key]) -> int:
        """Drop one reference to each of ``keys``; return how many became unreferenced. Those that were
        never ready are dropped (their content was not completed); the others become evictable, last
        key first."""
        refs, evictable, ready = self._refs, self._evictable, self._ready
        freed = 0
        for key in reversed(keys):
            count = refs[key] - 1
            if count:
                refs[key] = count
                continue
            freed += 1
            if key in ready:
                refs[key] = 0
                evictable[key] = None
            else:
                del refs[key]
        return freed

    def evict(self, blocks: int, host_room: int = 0) -> None:
        """Evict the ``blocks`` least recently released unreferenced blocks; with a host tier each goes to
        it, which holds at most ``host_room`` blocks (its oldest are dropped to make room)."""
        host = self._host
        for _ in range(min(blocks, len(self._evictable))):
            key, _ = self._evictable.popitem(last=False)
            del self._refs[key]
            self._ready.discard(key)
            self.evictions += 1
            if host is None:
                continue
            if key in host:  # already there (loaded from it earlier): nothing to write
                host.move_to_end(key)
                continue
            while host and len(host) >= host_room:
                host.popitem(last=False)
            if len(host) < host_room:
                host[key] = None
                self.offloaded += 1
