"""What became of every request, as columns: the engine writes a request's outcome when it ends.

A request is a :class:`~kinsim.engine.sequence.Sequence` object only while a replica holds it (waiting,
prefilling or decoding); when it ends, its times and counts go into :class:`RequestRecords` and the object
is dropped. Memory per request is then the table's ~90 bytes (its arrival, lengths and group, and the
columns below), not the objects' kilobyte, whatever the run's length.

Times are seconds of simulated time on the engine's clock; a time that never happened is NaN (``None``
in a row view).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinsim.engine.sequence import DECODE, FINISHED, PREFILL, UNFINISHED, WAITING, Sequence
from kinsim.workload.request import Request, RequestTable

#: Request states, by their code in :attr:`RequestRecords.state`.
STATES = (WAITING, PREFILL, DECODE, FINISHED, UNFINISHED)
STATE_CODE = {state: code for code, state in enumerate(STATES)}


def _time(value: float) -> float | None:
    return None if value != value else float(value)  # NaN: never happened


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """One request's record, read back as an object (the attributes a :class:`Sequence` had)."""

    request: Request
    order: int
    replica: int
    arrival_s: float
    admitted_s: float | None
    first_token_s: float | None
    finish_s: float | None
    generated: int
    preemptions: int
    state: str
    reason: str | None
    gpu_s: float = 0.0

    @property
    def key(self) -> tuple[float, int]:
        return (self.arrival_s, self.order)


class RequestRecords:
    """Outcomes of every request of ``table``, in generation order.

    Columns: ``arrival_s`` (when it reached the engine: its arrival, or a closed loop's release),
    ``admitted_s``, ``first_token_s``, ``finish_s`` (float64 seconds, NaN if never), ``generated``
    (tokens, int64), ``preemptions`` (int64), ``gpu_s`` (float64: its share of the GPU-seconds of the steps
    it took part in, :mod:`kinsim.engine.attribution`), ``replica`` (int64, -1 if never placed), ``state`` (int8
    codes of :data:`STATES`), ``reason`` (int64 index into :attr:`reasons`, -1 for none).
    ``records[i]`` is request ``i`` as a :class:`RequestOutcome`.
    """

    def __init__(self, table: RequestTable) -> None:
        n = len(table)
        self.table = table
        self.arrival_s = table.arrival_s.copy()
        self.admitted_s = np.full(n, np.nan)
        self.first_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.generated = np.zeros(n, dtype=np.int64)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.gpu_s = np.zeros(n)
        self.replica = np.full(n, -1, dtype=np.int64)
        self.state = np.zeros(n, dtype=np.int8)
        self.reason = np.full(n, -1, dtype=np.int64)
        self.reasons: list[str] = []
        self._reason_code: dict[str, int] = {}

    def write(self, seq: Sequence) -> None:
        """Record ``seq`` as it is now (called when it ends, and for any left over at the end)."""
        i = seq.order
        self.arrival_s[i] = seq.arrival_s
        self.admitted_s[i] = np.nan if seq.admitted_s is None else seq.admitted_s
        self.first_token_s[i] = np.nan if seq.first_token_s is None else seq.first_token_s
        self.finish_s[i] = np.nan if seq.finish_s is None else seq.finish_s
        self.generated[i] = seq.generated
        self.preemptions[i] = seq.preemptions
        self.gpu_s[i] = seq.gpu_s
        self.replica[i] = seq.replica
        self.state[i] = STATE_CODE[seq.state]
        if seq.reason is not None:
            self.set_reason(i, seq.reason)

    def write_finished(self, rows: list[tuple]) -> None:
        """Record finished sequences at once, each row ``(order, arrival_s, admitted_s, first_token_s, finish_s,
        generated, preemptions, gpu_s, replica)`` as :meth:`write` would (the lean engine's buffer of ends)."""
        if not rows:
            return
        order, arrival, admitted, first, finish, generated, preemptions, gpu_s, replica = (
            np.array(column) for column in zip(*rows))
        self.arrival_s[order] = arrival
        self.admitted_s[order] = admitted.astype(float)  # (None would be NaN, as write writes it)
        self.first_token_s[order] = first.astype(float)
        self.finish_s[order] = finish
        self.generated[order] = generated
        self.preemptions[order] = preemptions
        self.gpu_s[order] = gpu_s
        self.replica[order] = replica
        self.state[order] = STATE_CODE[FINISHED]

    def set_reason(self, i: int, reason: str) -> None:
        code = self._reason_code.get(reason)
        if code is None:
            code = self._reason_code[reason] = len(self.reasons)
            self.reasons.append(reason)
        self.reason[i] = code

    def __len__(self) -> int:
        return len(self.arrival_s)

    #: The per-request columns (:meth:`take_rows` copies them).
    COLUMNS = ("arrival_s", "admitted_s", "first_token_s", "finish_s", "generated", "preemptions", "gpu_s",
               "replica", "state")

    def take_rows(self, other: RequestRecords, rows: np.ndarray, packed: bool = False) -> None:
        """Copy the outcomes of requests ``rows`` (a boolean mask or indices) from ``other``, a record of
        the same requests, or where ``packed`` of those rows alone, in order: how the outcomes of replicas
        simulated in other processes come together (:mod:`kinsim.engine.parallel`,
        :mod:`kinsim.engine.lockstep`)."""
        for name in self.COLUMNS:
            getattr(self, name)[rows] = getattr(other, name) if packed else getattr(other, name)[rows]
        self.reason[rows] = -1
        codes = other.reason if packed else other.reason[rows]
        indices = np.arange(len(self))[rows]
        for code in np.unique(codes[codes >= 0]).tolist():
            for i in indices[codes == code].tolist():
                self.set_reason(i, other.reasons[code])

    def sort_reasons(self) -> None:
        """Number the reasons in the order of the first request (in generation order) that ended with each,
        so that the order does not depend on which process or instant wrote them first."""
        used = np.unique(self.reason[self.reason >= 0])
        if len(used) < 2 and len(used) == len(self.reasons):
            return
        first = {int(code): int(np.argmax(self.reason == code)) for code in used.tolist()}
        ordered = sorted(first, key=first.get)
        recode = np.full(len(self.reasons) + 1, -1, dtype=np.int64)
        for new, old in enumerate(ordered):
            recode[old] = new
        self.reason = recode[self.reason]  # -1 stays -1 (the last entry)
        self.reasons = [self.reasons[old] for old in ordered]
        self._reason_code = {reason: code for code, reason in enumerate(self.reasons)}

    def __getitem__(self, i: int) -> RequestOutcome:
        reason = int(self.reason[i])
        return RequestOutcome(
            request=self.table[i], order=i, replica=int(self.replica[i]), arrival_s=float(self.arrival_s[i]),
            admitted_s=_time(self.admitted_s[i]), first_token_s=_time(self.first_token_s[i]),
            finish_s=_time(self.finish_s[i]), generated=int(self.generated[i]),
            preemptions=int(self.preemptions[i]), state=STATES[self.state[i]],
            reason=self.reasons[reason] if reason >= 0 else None, gpu_s=float(self.gpu_s[i]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def finished(self) -> np.ndarray:
        """Boolean mask of the requests that finished."""
        return self.state == STATE_CODE[FINISHED]

    def reason_counts(self) -> dict[str, int]:
        """How many requests ended for each reason (those with one)."""
        counts = np.bincount(self.reason[self.reason >= 0], minlength=len(self.reasons))
        return {self.reasons[code]: int(count) for code, count in enumerate(counts) if count}
