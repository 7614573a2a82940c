"""The decoding sequences of one replica as arrays: the state the hot path reads and writes every segment.

Every decode step advances each decoding sequence by one token and may give it a new KV block; a segment
of ``k`` steps advances them all by ``k``. Kept in :class:`~kinsim.engine.sequence.Sequence` objects,
that is a Python loop over the batch per segment (and several more to gather the values into arrays for
pricing and block counting). :class:`DecodeBatch` keeps the counters the loop touches as NumPy arrays
instead, in FCFS order (earlier arrival, then generation order: the order the scheduler always used), so
applying a segment, counting its blocks and pricing it are a few vector operations whatever the batch.

**Ownership.** While a sequence is in the batch its ``kv_tokens``, ``generated``, ``private_blocks``,
``verify_steps`` and ``gpu_s`` (a float column of its own) live here and the object's fields are stale;
:meth:`DecodeBatch.remove` writes them back. Everything else about a sequence (its request, group,
timestamps, state) stays on the object.

**GPU time owed, lazily.** Without speculation every decoding sequence advances one token a step, and a
dense decode step owes sequence ``i`` an affine function of its cached tokens, ``(kv_i + 1) x weight +
constant`` (:mod:`kinsim.engine.attribution`). :meth:`DecodeBatch.credit` adds such a segment's two
coefficients to two running sums instead of touching every sequence; since ``kv_i - steps`` is constant
while ``i`` decodes (``steps``: the batch's step counter, :meth:`advance`), sequence ``i`` is owed
``(kv_i - steps + 1) x (W - W_i) + (C - C_i)`` on top of its settled ``gpu_s``, with ``W_i`` and ``C_i`` the
sums when it joined or was last settled (:meth:`DecodeBatch.owed_gpu_s` reads every sequence's). It is
settled when it leaves, and all are settled every :data:`REBASE_STEPS` steps, so that the cancellation in
that sum stays small (about ``REBASE_STEPS / kv`` times the rounding of a double: below 1e-12 relative).
"""

from __future__ import annotations

import bisect

import numpy as np

from kinsim.engine.sequence import Sequence

#: The per-sequence columns (all int64): tokens in the KV cache, tokens generated, private KV blocks held,
#: the group's shared prompt tokens, the group's index on the replica, the request's output tokens; with
#: speculative decoding the verify steps done and the expected tokens per verify step x 2**20 (else 0).
COLUMNS = ("kv", "generated", "blocks", "shared", "group", "output", "verify_steps", "tau_q")

#: Steps after which every sequence's lazily owed GPU time is settled and the running sums restart.
REBASE_STEPS = 4096


class DecodeBatch:
    """Decoding sequences in FCFS order; ``n`` of them; columns are the first ``n`` entries of arrays.

    The columns are views of the first ``n`` entries of each row (int64, one per sequence, FCFS order),
    writable (the scheduler updates them in place), made again whenever ``n`` or the storage changes
    rather than at every read (the hot path reads them a dozen times a segment):

    ``kv`` tokens in each sequence's KV cache; ``generated`` tokens generated; ``blocks`` private KV blocks
    held; ``shared`` prompt tokens its group holds in shared blocks; ``group`` its group's number on the
    replica; ``output`` tokens its request generates in all; ``verify_steps`` speculative verify steps
    done (0 without speculation); ``tau_q`` expected tokens per verify step x 2**20 (0 without
    speculation); ``gpu_s`` GPU-seconds settled so far (float64; :mod:`kinsim.engine.attribution`; with what
    :meth:`credit` has added since, :meth:`owed_gpu_s`)."""

    kv: np.ndarray
    generated: np.ndarray
    blocks: np.ndarray
    shared: np.ndarray
    group: np.ndarray
    output: np.ndarray
    verify_steps: np.ndarray
    tau_q: np.ndarray
    gpu_s: np.ndarray

    def __init__(self, capacity: int = 64) -> None:
        self.seqs: list[Sequence] = []
        self._keys: list[tuple[float, int]] = []
        self._data = np.zeros((len(COLUMNS), max(capacity, 1)), dtype=np.int64)
        # float rows: settled GPU-seconds, and the running sums W and C when each was last settled
        self._floats = np.zeros((3, max(capacity, 1)))
        self.steps = 0  # decode steps applied to the batch since the last rebase (each one token a sequence)
        self._weight = self._constant = 0.0  # the running sums W and C of credit()
        self._views()

    def _views(self) -> None:
        """Make the column views again (after ``n`` or the storage changed): the rows of one 2-D view,
        unpacked in :data:`COLUMNS` order."""
        n = len(self.seqs)
        (self.kv, self.generated, self.blocks, self.shared, self.group, self.output, self.verify_steps,
         self.tau_q) = self._data[:, :n]
        self.gpu_s, self._weight_at, self._constant_at = self._floats[:, :n]

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def n(self) -> int:
        return len(self.seqs)

    def add(self, seq: Sequence) -> None:
        """Take ``seq`` (its counters as they are on the object) at its FCFS place."""
        n = len(self.seqs)
        if n == self._data.shape[1]:
            grown = np.zeros((len(COLUMNS), 2 * n), dtype=np.int64)
            grown[:, :n] = self._data
            self._data = grown
            self._floats = np.concatenate((self._floats, np.zeros((3, n))), axis=1)
        key = seq.key
        at = bisect.bisect_right(self._keys, key)
        data, floats = self._data, self._floats
        if at < n:
            data[:, at + 1:n + 1] = data[:, at:n]
            floats[:, at + 1:n + 1] = floats[:, at:n]
        floats[:, at] = (seq.gpu_s, self._weight, self._constant)
        data[:, at] = (seq.kv_tokens, seq.generated, seq.private_blocks, seq.group.shared_tokens, seq.group.index,
                       seq.request.output_tokens, seq.verify_steps, seq.tau_q)
        self.seqs.insert(at, seq)
        self._keys.insert(at, key)
        self._views()

    def kv_of(self, seq: Sequence) -> int:
        """Tokens in the KV cache of decoding ``seq`` (its object's field is stale while it is here)."""
        at = bisect.bisect_left(self._keys, seq.key)
        if at >= len(self.seqs) or self.seqs[at] is not seq:
            raise ValueError(f"sequence {seq.order} is not decoding")
        return int(self._data[0, at])

    def credit(self, weight: float, constant: float) -> None:
        """Owe each decoding sequence ``(kv + 1) x weight + constant`` GPU-seconds, ``kv`` its cached tokens
        now (before the steps that owe it are applied), in ``O(1)``: see the module docstring."""
        self._weight += weight
        self._constant += self.steps * weight + constant

    def advance(self, steps: int) -> None:
        """Every decoding sequence has advanced ``steps`` tokens (its ``kv`` column too); past
        :data:`REBASE_STEPS`, settle them all and restart the running sums."""
        self.steps += steps
        if self.steps >= REBASE_STEPS:
            self.gpu_s[:] = self.owed_gpu_s()
            self._weight = self._constant = 0.0
            self._weight_at[:] = 0.0
            self._constant_at[:] = 0.0
            self.steps = 0

    def owed_gpu_s(self) -> np.ndarray:
        """Each decoding sequence's GPU-seconds so far, settled and owed (a new array, FCFS order)."""
        base = (self.kv - self.steps + 1).astype(float)
        return self.gpu_s + (base * (self._weight - self._weight_at) + (self._constant - self._constant_at))

    def _write_back(self, at: int) -> Sequence:
        seq = self.seqs[at]
        data, floats = self._data, self._floats
        kv = int(data[0, at])
        seq.kv_tokens = kv
        seq.generated = int(data[1, at])
        seq.private_blocks = int(data[2, at])
        seq.verify_steps = int(data[6, at])
        seq.gpu_s = float(floats[0, at]) + ((kv - self.steps + 1) * (self._weight - float(floats[1, at]))
                                            + (self._constant - float(floats[2, at])))
        return seq

    def remove(self, seq: Sequence) -> None:
        """Take ``seq`` out, writing its counters back to the object."""
        at = bisect.bisect_left(self._keys, seq.key)
        if at >= len(self.seqs) or self.seqs[at] is not seq:
            raise ValueError(f"sequence {seq.order} is not decoding")
        self._delete(at)

    def _delete(self, at: int) -> Sequence:
        """Take out the sequence at position ``at``, writing its counters back; return it."""
        seq = self._write_back(at)
        n = len(self.seqs)
        self._data[:, at:n - 1] = self._data[:, at + 1:n]
        self._floats[:, at:n - 1] = self._floats[:, at + 1:n]
        del self.seqs[at], self._keys[at]
        self._views()
        return seq

    def remove_where(self, mask: np.ndarray) -> list[Sequence]:
        """Take out the sequences where ``mask`` (shape ``(n,)``) is true, writing their counters back;
        return them in FCFS order."""
        gone = np.flatnonzero(mask).tolist()
        if not gone:
            return []
        if len(gone) == 1:  # the common case: one sequence finished
            return [self._delete(gone[0])]
        removed = [self._write_back(at) for at in gone]
        keep = ~mask
        n = len(self.seqs)
        m = n - len(gone)
        self._data[:, :m] = self._data[:, :n][:, keep]
        self._floats[:, :m] = self._floats[:, :n][:, keep]
        kept = keep.tolist()
        self.seqs = [s for s, k in zip(self.seqs, kept) if k]
        self._keys = [key for key, k in zip(self._keys, kept) if k]
        self._views()
        return removed
