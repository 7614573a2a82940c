"""The request: the unit of work the engine serves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinsim.limits import MAX_TOKENS  # noqa: F401 - re-exported: generated lengths and trace rows are held to it


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
            ``hash_ids``: Mooncake's blocks are 512 tokens), or None. They name the prompt's blocks in the
            prefix cache (``deployment.prefix_caching``; :mod:`kinsim.engine.prefix_cache`).
        hash_block_tokens: tokens per hash id (0 without hash ids).
        acceptance: the request's speculative-decoding acceptance rate in [0, 1] (a trace's ``acceptance``
            column, read with ``deployment.speculative.acceptance: trace``), or None.
    """

    request_id: str
    group_id: str
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    score: float | None = None
    hash_ids: BlockHashes | None = None
    hash_block_tokens: int = 0
    acceptance: float | None = None


class RequestTable:
    """Requests as columns: what the engine reads of a million requests without a Python object each.

    Columns (NumPy arrays, one entry per request, in generation order): ``arrival_s`` (float64, seconds),
    ``prompt_tokens`` and ``output_tokens`` (int64), ``group`` (int64: the group's number, groups numbered
    in the order of their first request). Names, scores and hash ids are kept as given (lists) or, for
    generated workloads, made on demand from a pattern (``p{problem}`` and ``p{problem}-s{sample}``), so
    that a generated request costs 32 bytes. ``acceptance`` (float64, NaN where a request has none) is the
    trace's speculative acceptance column, or None. ``table[i]`` builds request ``i`` as a :class:`Request`.
    """

    def __init__(self, arrival_s: np.ndarray, prompt_tokens: np.ndarray, output_tokens: np.ndarray,
                 group: np.ndarray, group_ids: list[str] | None = None, request_ids: list[str] | None = None,
                 samples: int = 1, scores: list[float | None] | None = None,
                 hash_ids: list[BlockHashes | None] | None = None, hash_block_tokens: list[int] | None = None,
                 acceptance: np.ndarray | None = None) -> None:
        """Without ``group_ids`` and ``request_ids`` the names follow the generator's pattern: group ``g``
        is ``p{g}``; request ``i`` is ``p{i // samples}-s{i % samples}`` (``p{i}`` when ``samples`` is 1)."""
        self.arrival_s = np.asarray(arrival_s, dtype=float)
        self.prompt_tokens = np.asarray(prompt_tokens, dtype=np.int64)
        self.output_tokens = np.asarray(output_tokens, dtype=np.int64)
        self.group = np.asarray(group, dtype=np.int64)
        self._group_ids, self._request_ids, self._samples = group_ids, request_ids, samples
        self._scores, self._hash_ids, self._hash_block_tokens = scores, hash_ids, hash_block_tokens
        self.acceptance = None if acceptance is None else np.asarray(acceptance, dtype=float)

    def score_column(self) -> np.ndarray:
        """Each request's trace score (float64; NaN where it has none, all NaN without a score column)."""
        if self._scores is None:
            return np.full(len(self), np.nan)
        return np.array([np.nan if s is None else s for s in self._scores], dtype=float)

    @classmethod
    def from_requests(cls, requests: list[Request]) -> RequestTable:
        """The table of a list of requests (their names, scores and hash ids kept)."""
        codes: dict[str, int] = {}
        group = [codes.setdefault(r.group_id, len(codes)) for r in requests]
        return cls(np.array([r.arrival_s for r in requests], dtype=float),
                   np.array([r.prompt_tokens for r in requests], dtype=np.int64),
                   np.array([r.output_tokens for r in requests], dtype=np.int64),
                   np.array(group, dtype=np.int64), group_ids=list(codes), request_ids=[r.request_id for r in requests],
                   scores=[r.score for r in requests] if any(r.score is not None for r in requests) else None,
                   hash_ids=[r.hash_ids for r in requests] if any(r.hash_ids is not None for r in requests) else None,
                   hash_block_tokens=[r.hash_block_tokens for r in requests],
                   acceptance=(np.array([np.nan if r.acceptance is None else r.acceptance for r in requests])
                               if any(r.acceptance is not None for r in requests) else None))

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def groups(self) -> int:
        """How many groups there are."""
        return int(self.group.max()) + 1 if len(self.group) else 0

    def group_id(self, code: int) -> str:
        """The name of group number ``code``."""
        return self._group_ids[code] if self._group_ids is not None else f"p{code}"

    def request_id(self, i: int) -> str:
        if self._request_ids is not None:
            return self._request_ids[i]
        return f"p{i // self._samples}-s{i % self._samples}" if self._samples > 1 else f"p{i}"

    def __getitem__(self, i: int) -> Request:
        return Request(
            request_id=self.request_id(i), group_id=self.group_id(int(self.group[i])),
            arrival_s=float(self.arrival_s[i]), prompt_tokens=int(self.prompt_tokens[i]),
            output_tokens=int(self.output_tokens[i]),
            score=None if self._scores is None else self._scores[i],
            hash_ids=None if self._hash_ids is None else self._hash_ids[i],
            hash_block_tokens=0 if self._hash_block_tokens is None else self._hash_block_tokens[i],
            acceptance=None if self.acceptance is None or self.acceptance[i] != self.acceptance[i]
            else float(self.acceptance[i]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))
