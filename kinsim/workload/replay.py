"""From a trace's rows to the requests that are replayed: the options of ``requests: {kind: trace}``.

Rules, in the order they apply (each skipped row is counted under the first rule that skips it):

1. rows with an empty prompt (0 tokens; native formats only) are skipped: ``zero_prompt``;
2. rows that generated no tokens (failed requests) are skipped when ``skip_failed`` (the default):
   ``failed``; otherwise they are replayed with one output token (counted as ``failed_replayed``);
3. with ``model``, rows of other models are skipped: ``other_model``;
4. rows arriving before ``start`` or at or after ``start + duration`` (seconds from the trace's origin)
   are skipped: ``outside_window``;
5. with ``sample`` below 1, a generator ``numpy.random.default_rng(seed)`` draws one uniform number per
   row of the file, in file order, and a row is kept when its draw is below ``sample``: ``sampled_out``.
   A row's fate depends only on its place in the file and the seed, not on the other options;
6. prompts above ``max_prompt_tokens`` and outputs above ``max_output_tokens`` are cut to the cap
   (``capped_prompt``, ``capped_output``);
7. the kept rows are sorted by time, ties in file order (``unsorted`` counts rows that arrive earlier
   than a row above them in the file), and replayed at ``(t - start) x time_scale / rate_scale`` seconds.
   A replayed arrival past :data:`~kinsim.limits.MAX_TIME_S` (2^52 ns, about 52 days: half the range of
   the engine's exact clock) is an error naming the row; so is a token count past MAX_TOKENS (2**24),
   before any cap.

Requests of native formats are named by their file line (``"17"``) and form groups of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from kinsim.errors import SpecError
from kinsim.limits import MAX_TIME_S, MAX_TIME_WORDS
from kinsim.workload.formats import read_table
from kinsim.workload.formats.table import TraceTable
from kinsim.workload.request import BlockHashes, Request
from kinsim.workload.spec import TraceRequests

#: Why rows are skipped, in the order the rules apply, with the words the notice uses.
SKIP_REASONS = {
    "zero_prompt": "with an empty prompt",
    "failed": "failed (no output tokens)",
    "other_model": "of other models",
    "outside_window": "outside the time window",
    "sampled_out": "sampled out",
}


#: What a replay may change about the rows it keeps, with the words the notice uses.
CHANGES = (("failed_replayed", "failed rows replayed with 1 output token"), ("capped_prompt", "prompts capped"),
           ("capped_output", "outputs capped"), ("unsorted", "rows out of time order sorted"))


@dataclass(frozen=True)
class TraceReport:
    """What replaying a trace kept, skipped and changed. Counts are rows of the file."""

    file: str
    format: str
    rows: int
    replayed: int
    skipped: dict[str, int]
    failed_replayed: int
    capped_prompt: int
    capped_output: int
    unsorted: int
    models: dict[str, int] | None = None
    hash_block_tokens: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {"file": self.file, "format": self.format, "rows": self.rows, "replayed": self.replayed,
                "skipped": dict(self.skipped), "failed_replayed": self.failed_replayed,
                "capped_prompt": self.capped_prompt, "capped_output": self.capped_output,
                "unsorted": self.unsorted, "models": self.models, "hash_block_tokens": self.hash_block_tokens}

    def notice(self) -> str | None:
        """One line saying what was skipped, capped or sorted; None when the trace was replayed as is."""
        return trace_notice(self.as_dict())


def trace_notice(report: dict[str, Any]) -> str | None:
    """:meth:`TraceReport.notice` of a report dict (as a run's ``inputs.trace`` holds it)."""
    details = _details(report)
    if not details:
        return None
    return (f"trace {report['file']} ({report['format']}): replayed {report['replayed']:,} of "
            f"{report['rows']:,} rows; " + "; ".join(details))


def _details(report: dict[str, Any]) -> list[str]:
    """What was skipped (one phrase) and what was changed (another), leaving out what did not happen."""
    skipped = [f"{n:,} {SKIP_REASONS[k]}" for k, n in report["skipped"].items() if n]
    changes = [f"{report[key]:,} {words}" for key, words in CHANGES if report[key]]
    return (["skipped " + ", ".join(skipped)] if skipped else []) + ([", ".join(changes)] if changes else [])


@dataclass(frozen=True, eq=False)
class Selection:
    """The rows a trace replays, in arrival order, with their replayed figures.

    Attributes:
        rows: int64 indices into the table's rows.
        arrival_s: float64 replayed arrival times, seconds.
        prompt_tokens, output_tokens: int64 lengths after the caps, tokens.
    """

    table: TraceTable
    rows: np.ndarray
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    report: TraceReport
    hash_block_tokens: int = field(default=512)


def select(table: TraceTable, source: TraceRequests, seed: int = 0) -> Selection:
    """Apply ``source``'s options to ``table`` (rules in the module docstring)."""
    n = len(table)
    skipped = {reason: 0 for reason in SKIP_REASONS}
    keep = np.ones(n, dtype=bool)

    def skip(reason: str, mask: np.ndarray) -> None:
        dropped = mask & keep
        skipped[reason] = int(dropped.sum())
        keep[dropped] = False

    skip("zero_prompt", table.prompt_tokens < 1)
    failed = table.output_tokens < 1
    if source.skip_failed:
        skip("failed", failed)
    skip("other_model", _other_model(table, source))
    t = table.time_s
    outside = t < source.start
    if source.duration is not None:
        outside |= t >= source.start + source.duration
    skip("outside_window", outside)
    if source.sample < 1.0:
        draws = np.random.default_rng(seed).random(n)
        skip("sampled_out", draws >= source.sample)
    kept = np.flatnonzero(keep)
    order = kept[np.argsort(t[kept], kind="stable")]
    prompts = table.prompt_tokens[order]
    outputs = np.maximum(table.output_tokens[order], 1)
    capped_prompt = capped_output = 0
    if source.max_prompt_tokens is not None:
        capped_prompt = int((prompts > source.max_prompt_tokens).sum())
        prompts = np.minimum(prompts, source.max_prompt_tokens)
    if source.max_output_tokens is not None:
        capped_output = int((outputs > source.max_output_tokens).sum())
        outputs = np.minimum(outputs, source.max_output_tokens)
    running = np.maximum.accumulate(t) if n else t
    unsorted = int((t[1:] < running[:-1]).sum()) if n > 1 else 0
    models = None
    if table.model is not None:
        counts = np.bincount(table.model, minlength=len(table.models))
        models = {name: int(c) for name, c in zip(table.models, counts)}
    has_hashes = table.hash_offsets is not None
    report = TraceReport(file=table.file, format=table.format, rows=n, replayed=len(order), skipped=skipped,
                         failed_replayed=0 if source.skip_failed else int(failed[order].sum()),
                         capped_prompt=capped_prompt, capped_output=capped_output, unsorted=unsorted,
                         models=models, hash_block_tokens=source.hash_block_tokens if has_hashes else None)
    if len(order) == 0:
        raise SpecError(f"no request left to replay of {n:,} {table.format} rows ("
                        + "; ".join(_details(report.as_dict())) + ")", file=table.file,
                        hint="widen the time window, the sample or the model filter")
    with np.errstate(over="ignore"):  # an overflow is an inf arrival, refused below
        arrival = (t[order] - source.start) * source.time_scale / source.rate_scale
    _check_arrivals(table, order, arrival, source)
    return Selection(table, order, arrival, prompts, outputs, report, source.hash_block_tokens)


#: The column each format's arrival time comes from (for messages).
TIME_COLUMNS = {"kinsim": "arrival_s", "azure": "TIMESTAMP", "burstgpt": "Timestamp", "mooncake": "timestamp"}


def _check_arrivals(table: TraceTable, order: np.ndarray, arrival: np.ndarray, source: TraceRequests) -> None:
    """A :class:`SpecError` naming the first row (in file order) replayed past the clock's exact range."""
    late = ~(arrival <= MAX_TIME_S)  # NaN and inf too
    if not late.any():
        return
    row = int(order[late].min())
    index = int(np.flatnonzero(order == row)[0])
    scaled = source.time_scale != 1.0 or source.rate_scale != 1.0
    raise SpecError(f"replays at {float(arrival[index]):.6g} s, past {MAX_TIME_WORDS}",
                    path=f"line {int(table.line[row])}.{TIME_COLUMNS.get(table.format, 'time')}",
                    value=float(table.time_s[row]), file=table.file,
                    hint="replay a window of the trace (requests.start, requests.duration)"
                         + (" or change requests.time_scale / rate_scale" if scaled else ""))


def _other_model(table: TraceTable, source: TraceRequests) -> np.ndarray:
    if source.model is None:
        return np.zeros(len(table), dtype=bool)
    if table.model is None:
        raise SpecError(f"the {table.format} format has no model column", path="requests.model",
                        value=source.model, file=table.file, hint="model: applies to BurstGPT traces")
    if source.model not in table.models:
        raise SpecError("no row of this model", path="requests.model", value=source.model, file=table.file,
                        hint="the trace has " + ", ".join(table.models))
    return table.model != table.models.index(source.model)


def to_requests(selection: Selection) -> list[Request]:
    """The selected rows as :class:`Request` objects, in arrival order."""
    table = selection.table
    rows = selection.rows
    if table.request_id is not None and table.group_id is not None:
        ids = list(map(table.request_id.__getitem__, rows.tolist()))
        groups = list(map(table.group_id.__getitem__, rows.tolist()))
    else:
        ids = list(map(str, table.line[rows].tolist()))
        groups = ids
    columns = [ids, groups, selection.arrival_s.tolist(), selection.prompt_tokens.tolist(),
               selection.output_tokens.tolist()]
    if table.score is not None:
        columns.append([None if s != s else s for s in table.score[rows].tolist()])  # NaN: no score
    if table.hash_offsets is not None and table.hash_values is not None:
        if len(columns) == 5:
            columns.append(repeat(None))
        columns += [_block_hashes(table.hash_values, table.hash_offsets[rows], table.hash_offsets[rows + 1]),
                    repeat(selection.hash_block_tokens)]
    if table.acceptance is not None:  # after score, hash ids and hash_block_tokens, in Request's order
        columns += [repeat(None)] * (7 - len(columns)) + [repeat(0)] * (len(columns) < 8)
        columns.append([None if a != a else a for a in table.acceptance[rows].tolist()])  # NaN: none
    return list(map(Request, *columns))  # positional and mapped: the cheapest way to make a million


def _block_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, chunk: int = 1 << 16) -> list[BlockHashes]:
    """The ids ``values[starts[i]:ends[i]]`` of each row packed as :class:`BlockHashes`: ``chunk`` rows'
    ids are gathered and packed in one NumPy call, then cut per row (one copy per row, no array per row)."""
    out: list[BlockHashes] = []
    for first in range(0, len(starts), chunk):
        s, e = starts[first:first + chunk], ends[first:first + chunk]
        counts = e - s
        bounds = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        index = np.repeat(s - bounds[:-1], counts) + np.arange(bounds[-1])
        packed = memoryview(values[index].astype("<i8").tobytes())
        cuts = (bounds * 8).tolist()
        out.extend(BlockHashes(packed[a:b]) for a, b in zip(cuts[:-1], cuts[1:]))
    return out


@dataclass(frozen=True)
class TraceReplay:
    """The requests a trace replays and the report of what was kept."""

    requests: list[Request]
    report: TraceReport


def replay_trace(source: TraceRequests, seed: int = 0) -> TraceReplay:
    """Read ``source.path`` in ``source.format`` and apply its options (rules in the module docstring)."""
    selection = select(read_table(source.path, source.format), source, seed)
    return TraceReplay(to_requests(selection), selection.report)
