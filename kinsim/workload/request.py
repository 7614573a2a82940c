"""The request: the unit of work the engine serves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class BlockHashes(bytes):
    """The hash ids of a prompt's prefix blocks, packed as little-endian int64 (8 bytes an id, no Python
    object per id: a million Mooncake requests carry sixteen million ids). Equal ids at the same place in
    two prompts mean equal prefixes up to that block, so shareable KV. :meth:`ids` unpacks them."""

    __slots__ = ()

    @classmethod
    def of(cls, ids) -> BlockHashes:
        """Pack a sequence of whole numbers."""
        return cls(np.asarray(ids, dtype="<i8").tobytes())

    def ids(self) -> tuple[int, ...]:
        """The hash ids, first block first."""
        return tuple(np.frombuffer(self, dtype="<i8").tolist())

    @property
    def blocks(self) -> int:
        """How many blocks (ids) there are."""
        return len(self) // 8

    def __repr__(self) -> str:
        return f"BlockHashes.of({list(self.ids())!r})"


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request.

    Attributes:
        request_id: unique name of the request.
        group_id: requests with the same group share one prompt (and its KV cache); a group is a task,
            done when all its requests are. A request alone forms its own group.
        arrival_s: arrival time, seconds from the start.
        prompt_tokens: prompt length, tokens.
        output_tokens: tokens to generate (after the generation cap).
        score: optional quality score carried through to reports (e.g. 1.0 for a correct sample).
        hash_ids: hash ids of the prompt's prefix blocks, each of ``hash_block_tokens`` tokens (a trace's
            ``hash_ids``: Mooncake's blocks are 512 tokens), or None. Carried for prefix caching; the
            engine does not read them yet.
        hash_block_tokens: tokens per hash id (0 without hash ids).
    """

    request_id: str
    group_id: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    score: float | None = None
    hash_ids: BlockHashes | None = None
    hash_block_tokens: int = 0
