"""The segment table: columns round-trip what was appended, rows read back as SegmentRecord, ~8 bytes a number."""

from __future__ import annotations

import gc
import random
import struct
import tracemalloc

import numpy as np
import pytest

from kinsim.engine.records import SEGMENT_COLUMNS, Records, SegmentRecord, SegmentTable
from kinsim.metrics import ordered_sum
from kinsim.ops.op import OP_CLASSES
from kinsim.report.trace import _merged

C = len(OP_CLASSES)


def row(i: int) -> tuple:
    """Row ``i``, with values that the test below writes down again as arrays."""
    return (i % 3, i * 0.5, i * 0.5 + 0.25, i % 7 + 1, i % 5, 100 * (i % 2), 2 * i, 1000 + i, i / 3,
            tuple(i + k / 8 for k in range(C)), tuple(i * 1e12 + k for k in range(C)),
            tuple(i * 1e9 - k for k in range(C)), i * 2e12, i * 2e9, i / 7, i / 11, i / 13, i / 17, i * 3e6)


def test_columns_and_rows_are_what_was_appended_across_blocks():
    table = SegmentTable()
    n = 2 * table.BLOCK_ROWS + 123  # two flushed blocks and a partly filled buffer
    for i in range(n):
        table.append(*row(i))
    assert len(table) == n
    i = np.arange(n)
    k = np.arange(C)
    expected = {
        "replica": i % 3, "start_s": i * 0.5, "end_s": i * 0.5 + 0.25, "steps": i % 7 + 1, "decode_seqs": i % 5,
        "prefill_tokens": 100 * (i % 2), "tokens_out": 2 * i, "kv_peak_blocks": 1000 + i, "kv_block_s": i / 3,
        "class_s": i[:, None] + k[None, :] / 8, "class_flops": i[:, None] * 1e12 + k[None, :],
        "class_bytes": i[:, None] * 1e9 - k[None, :], "flops": i * 2e12, "hbm_bytes": i * 2e9,
        "compute_s": i / 7, "memory_s": i / 11, "network_s": i / 13, "host_link_s": i / 17, "host_link_bytes": i * 3e6,
    }
    assert tuple(expected) == SEGMENT_COLUMNS
    for name, values in expected.items():
        column = table.column(name)
        assert column.dtype == (np.int64 if name in ("replica", "steps", "decode_seqs", "prefill_tokens",
                                                     "tokens_out", "kv_peak_blocks") else np.float64)
        assert column.shape == ((n, C) if name.startswith("class_") else (n,))
        assert np.array_equal(column, values), name
        assert not column.flags.writeable
    # rows, from the joined block, a later block and the buffer, and by iteration
    for j in (0, table.BLOCK_ROWS - 1, table.BLOCK_ROWS, n - 1, -1, -n):
        assert table[j] == SegmentRecord(*row(j % n))
    assert table[3].end_s == 1.75 and table[3].class_s == (3.0, 3.125, 3.25, 3.375, 3.5, 3.625)
    assert list(table) == [SegmentRecord(*row(j)) for j in range(n)]
    assert table[5:8] == [SegmentRecord(*row(j)) for j in (5, 6, 7)]
    with pytest.raises(IndexError):
        table[n]
    # rows appended after a column was read: the column read before is unchanged, the new one has all rows
    before = table.column("end_s")
    for j in range(n, n + table.BLOCK_ROWS + 1):
        table.append(*row(j))
    assert len(before) == n and np.array_equal(before, expected["end_s"])
    assert np.array_equal(table.column("end_s"), np.arange(n + table.BLOCK_ROWS + 1) * 0.5 + 0.25)
    assert table[n + 1] == SegmentRecord(*row(n + 1)) and table[-1] == SegmentRecord(*row(n + table.BLOCK_ROWS))


def test_an_empty_table_and_bad_rows():
    table = Records().segments
    assert isinstance(table, SegmentTable) and len(table) == 0 and not table and list(table) == []
    assert table.column("class_s").shape == (0, C) and table.column("steps").dtype == np.int64
    with pytest.raises(KeyError, match="no segment column"):
        table.column("nope")
    for field, value in [("class_s", (1.0, 2.0)), ("kv_peak_blocks", 3.5), ("end_s", "1")]:
        bad = dict(zip(SEGMENT_COLUMNS, row(0)), **{field: value})  # two classes, a fraction of a block, text
        with pytest.raises(struct.error):
            table.append(*bad.values())
    assert len(table) == 0
    table.append(*row(1)[:3], np.int64(row(1)[3]), *row(1)[4:])  # NumPy scalars are numbers too
    assert table[0] == SegmentRecord(*row(1)) and type(table[0].steps) is int


def test_a_row_costs_bytes_not_kilobytes():
    """200,000 rows in under 500 bytes each (the columns hold 34 numbers a row: 272 bytes, plus a bounded
    buffer); a list of SegmentRecord objects, measured the same way, takes over a kilobyte a row."""

    def per_row(add, n: int) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for i in range(n):
                add(i)
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - base) / n
        finally:
            tracemalloc.stop()

    rnd = random.Random(0)

    def fresh(i: int) -> tuple:  # a new float object for every number, as the engine makes them
        return (i % 4, i * 0.25, i * 0.25 + rnd.random(), 1 + i % 2048, 64, 0, 64, 500 + i % 97, rnd.random(),
                tuple(rnd.random() for _ in range(C)), tuple(rnd.random() * 1e12 for _ in range(C)),
                tuple(rnd.random() * 1e9 for _ in range(C)), rnd.random() * 1e13, rnd.random() * 1e10,
                rnd.random(), rnd.random(), rnd.random())

    table = SegmentTable()
    some = fresh(0)[9:12]  # the table copies numbers, so rows need not be fresh objects: quicker to measure
    table_bytes = per_row(lambda i: table.append(i % 4, i * 0.25, i * 0.25 + 0.125, 1 + i % 2048, 64, 0, 64,
                                                 500 + i % 97, i * 0.5, *some, i * 1e9, i * 1e6, i * 1e-4,
                                                 i * 2e-4, 0.0), 200_000)
    assert len(table) == 200_000 and table[-1].kv_block_s == 199_999 * 0.5
    assert table_bytes < 500, f"{table_bytes:.0f} bytes per row"
    records: list[SegmentRecord] = []
    objects = per_row(lambda i: records.append(SegmentRecord(*fresh(i))), 5_000)
    assert objects > 1000, f"{objects:.0f} bytes per row"  # the old records: the measure sees what they cost


def _peak_bytes(work) -> tuple[int, object]:
    """Bytes that ``work()`` held at its peak beyond what was held before it (tracemalloc sees NumPy's
    arrays), and what it returned."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = work()
        return tracemalloc.get_traced_memory()[1] - base, result
    finally:
        tracemalloc.stop()


def _columns_of(rows: int, first: int = 0, replica: int = 0) -> dict[str, np.ndarray]:
    """``rows`` rows as columns, ending at ``first``, ``first + 1``, ... on ``replica``."""
    i = np.arange(first, first + rows)
    columns = {name: np.zeros((rows, C) if name.startswith("class_") else rows,
                              dtype=np.int64 if name in ("replica", "steps", "decode_seqs", "prefill_tokens",
                                                         "tokens_out", "kv_peak_blocks") else np.float64)
               for name in SEGMENT_COLUMNS}
    columns["replica"][:] = replica
    columns["end_s"][:] = i
    columns["class_s"][:] = i[:, None] + np.arange(C) / 8
    return columns


def test_a_table_never_holds_its_rows_twice():
    """Rows added a block at a time and then read as columns: the peak stays within the rows themselves plus
    the room a growing column keeps (an eighth) and one block; joining blocks when read, as the table did
    before, held every row twice (10^6 chat requests peaked 700 MiB higher for it)."""
    block, blocks = 4096, 60
    row_bytes = 8 * (len(SEGMENT_COLUMNS) + 3 * (C - 1))  # 272: 34 numbers
    assert row_bytes == 272

    def fill() -> SegmentTable:
        table = SegmentTable()
        for b in range(blocks):
            table.append_columns(_columns_of(block, b * block))
        table.columns()
        return table

    peak, table = _peak_bytes(fill)
    rows = block * blocks
    assert len(table) == rows and np.array_equal(table.column("end_s"), np.arange(rows))
    assert np.array_equal(table.column("class_s")[-1], rows - 1 + np.arange(C) / 8)
    assert peak < rows * row_bytes * 9 / 8 + 2 * block * row_bytes, (peak, rows * row_bytes)


def test_iteration_gives_the_rows_there_were_when_it_began():
    """Rows added while a table is iterated (enough that its columns must grow) are not seen, and the rows
    that were are read intact: the iteration's views keep the columns from moving."""
    table = SegmentTable()
    n = 3 * table.BLOCK_ROWS + 5
    for i in range(n):
        table.append(*row(i))
    table.column("end_s")  # (the rows in the columns, none buffered; then more, so no view is out)
    table.append_columns(_columns_of(5, n))
    rows = iter(table)
    first = next(rows)
    table.append_columns(_columns_of(8 * table.BLOCK_ROWS, n + 5))
    seen = [first, *rows]
    assert seen[:n] == [SegmentRecord(*row(i)) for i in range(n)]
    assert len(seen) == n + 5 and [r.end_s for r in seen[n:]] == [float(n + i) for i in range(5)]
    assert len(table) == n + 5 + 8 * table.BLOCK_ROWS and table[-1].end_s == n + 5 + 8 * table.BLOCK_ROWS - 1


def test_joining_tables_frees_each_column_as_it_goes():
    """Two tables of interleaved rows joined in end order with ``consume``: the join's peak is the result plus
    one column and the row order's index arrays, beyond the tables it frees as it goes."""
    rows = 50_000

    def join() -> SegmentTable:
        tables = [SegmentTable.from_columns(_columns_of(rows, 0, replica=0)),
                  SegmentTable.from_columns(_columns_of(rows, 0, replica=1))]
        for table in tables:
            table.column("end_s")
        before = tracemalloc.get_traced_memory()[0]  # (traced from their making, so that their freeing counts)
        tracemalloc.reset_peak()
        joined = SegmentTable.in_end_order(tables, consume=True)
        return tracemalloc.get_traced_memory()[1] - before, joined

    _, (peak, joined) = _peak_bytes(join)
    assert np.array_equal(joined.column("end_s"), np.repeat(np.arange(rows), 2))
    assert np.array_equal(joined.column("replica"), np.tile([0, 1], rows))
    largest_column, index = 2 * rows * C * 8, 2 * rows * 8  # a class column; one int64 per row
    # the lexsort's keys and order, the places (4 indexes), and one column: not the tables again
    assert peak < largest_column + 5 * index + 2 * rows * 8 + 64 * 1024, peak


def test_ordered_sum_adds_in_row_order():
    rnd = random.Random(1)
    values = [rnd.uniform(-1, 1) * 10 ** rnd.randint(-8, 8) for _ in range(1000)]
    loop = 0.0
    for v in values:
        loop += v
    for chunk in (1, 7, 1000, 1 << 16):
        assert ordered_sum(np.array(values), chunk) == loop
    matrix = np.array(values).reshape(250, 4)
    by_column = [0.0] * 4
    for r in matrix.tolist():
        by_column = [a + b for a, b in zip(by_column, r)]
    assert ordered_sum(matrix, 7).tolist() == by_column
    assert ordered_sum(np.zeros(0)) == 0.0 and ordered_sum(np.zeros((0, 3))).tolist() == [0.0] * 3


def test_a_trace_window_keeps_whole_merged_slices():
    """The trace merges consecutive decode-only segments of a replica with one batch; a window filters the
    table first, and keeps the same slices as filtering the merged slices of the whole table."""
    rnd = random.Random(2)
    table = SegmentTable()
    clock = [0.0, 0.0, 0.0]
    for _ in range(3000):
        r = rnd.randrange(3)
        start = clock[r] + (rnd.choice([0.0, 0.0, 0.0, 0.5]))
        end = start + rnd.choice([0.25, 1.0, 3.0])
        clock[r] = end
        prefill = rnd.choice([0, 0, 0, 0, 64])
        table.append(r, start, end, rnd.randint(1, 9), rnd.choice([8, 8, 8, 7]), prefill, 8, 100, 1.5,
                     (0.1,) * C, (1.0,) * C, (2.0,) * C, 6.0, 12.0, 0.5, 0.25, 0.0)
    whole = _merged(table)
    assert len(whole) < 0.8 * len(table)  # it did merge
    for window in [(0.0, 1e9), (100.0, 100.0), (250.5, 400.0), (-5.0, 0.0), (clock[0], 1e9), (1e9, 2e9)]:
        expected = [s for s in whole if s["end_s"] >= window[0] and s["start_s"] <= window[1]]
        assert _merged(table, window) == expected


def test_tables_join_in_end_order_with_ties_in_replica_order():
    """Rows of several tables (replicas simulated in several processes) in one table: by end time, rows that
    ended at one instant by replica; a table already in that order comes back as it is."""
    a, b = SegmentTable(), SegmentTable()
    rows = [row(i) for i in range(6)]
    # replica, end_s: a holds (2, 0.75), (0, 1.75); b holds (1, 0.75), (1, 1.25), (0, 0.25)
    for r, end in ((2, 0.75), (0, 1.75)):
        a.append(r, 0.0, end, *rows[0][3:])
    for r, end in ((1, 0.75), (1, 1.25), (0, 0.25)):
        b.append(r, 0.0, end, *rows[1][3:])
    joined = SegmentTable.in_end_order([a, b])
    assert list(zip(joined.column("replica").tolist(), joined.column("end_s").tolist())) == [
        (0, 0.25), (1, 0.75), (2, 0.75), (1, 1.25), (0, 1.75)]
    assert joined.column("class_s").shape == (5, C)
    assert SegmentTable.in_end_order([joined]) is joined
    assert SegmentTable.from_columns(joined.columns()) == joined
    assert len(SegmentTable.in_end_order([SegmentTable()])) == 0
    # consumed: the same rows, and the tables given are left empty (their columns freed as the join goes)
    again = [SegmentTable.from_columns(a.columns()), SegmentTable.from_columns(b.columns())]
    assert SegmentTable.in_end_order(again, consume=True) == joined
    assert [len(table) for table in again] == [0, 0] and again[0].column("class_s").shape == (0, C)


def test_request_reasons_are_numbered_by_their_first_request_and_rows_move_between_records():
    from kinsim.engine.request_records import RequestRecords
    from kinsim.workload.request import RequestTable

    table = RequestTable(arrival_s=np.zeros(4), prompt_tokens=np.full(4, 10), output_tokens=np.full(4, 5),
                         group=np.arange(4))
    first, second = RequestRecords(table), RequestRecords(table)
    first.set_reason(3, "later")  # written first, by the last request
    first.set_reason(1, "earlier")
    first.sort_reasons()
    assert first.reasons == ["earlier", "later"] and first.reason.tolist() == [-1, 0, -1, 1]
    second.set_reason(0, "own")
    second.finish_s[2] = 7.5
    second.take_rows(first, np.array([False, False, True, True]))  # request 2's and 3's outcomes from first
    assert np.isnan(second.finish_s[2]) and second.reason.tolist() == [0, -1, -1, 1]
    assert second.reasons == ["own", "later"]


def test_finished_requests_written_at_once_are_what_write_writes_one_by_one():
    # the lean engine keeps its finished requests and writes a block at once (RequestRecords.write_finished)
    from kinsim.engine.request_records import RequestRecords
    from kinsim.engine.sequence import FINISHED, GroupState, Sequence
    from kinsim.workload.request import Request, RequestTable

    table = RequestTable(arrival_s=np.arange(5) * 0.5, prompt_tokens=np.full(5, 10), output_tokens=np.full(5, 5),
                         group=np.arange(5))
    sequences = []
    for i in (3, 0, 4):  # in the order they end, not the table's
        seq = Sequence(Request(f"p{i}", f"p{i}", i * 0.5, 10, 5), i, GroupState(i, 10, 0), i * 0.5, state=FINISHED,
                       generated=5, preemptions=i % 2, admitted_s=i + 0.1, first_token_s=i + 0.2, finish_s=i + 1.5,
                       gpu_s=i / 7, replica=i % 3)
        sequences.append(seq)
    one_by_one, at_once = RequestRecords(table), RequestRecords(table)
    for seq in sequences:
        one_by_one.write(seq)
    at_once.write_finished([(s.order, s.arrival_s, s.admitted_s, s.first_token_s, s.finish_s, s.generated,
                             s.preemptions, s.gpu_s, s.replica) for s in sequences])
    for name in RequestRecords.COLUMNS + ("reason",):
        assert np.array_equal(getattr(at_once, name), getattr(one_by_one, name), equal_nan=True), name
    assert at_once.finished().tolist() == [True, False, False, True, True]


def _rows_written_one_by_one(items, statics):
    """The rows RowBuffer's items stand for, computed one by one on Python floats as a row is written alone:
    ``static x steps`` then add_attention's additions, the class sums by Python's ``sum``."""
    from kinsim.engine.pricer import add_attention

    rows = []
    for kind, head, payload in items:
        if kind == "step":
            column = list(payload)
        else:
            static, layers, *terms = payload
            column = [value * head[3] for value in statics[static]]
            add_attention(column, layers, *terms)
        s, f, b = column[1:1 + C], column[1 + C:1 + 2 * C], column[1 + 2 * C:1 + 3 * C]
        rows.append((*head, s, f, b, sum(f), sum(b), *column[1 + 3 * C:]))
    return rows


@pytest.mark.parametrize("sink", ["table", "totals"])
def test_the_lean_engines_row_buffer_writes_the_rows_written_one_by_one_in_order(sink):
    # kinsim.engine.row_buffer keeps a decode run as (its static column's number, steps, attention sums) and a
    # mixed step as its column, and expands a block at a time as arrays: the same bits, in the order added
    from kinsim.engine.row_buffer import RowBuffer
    from kinsim.engine.segment_totals import SegmentTotals

    rng = random.Random(5)
    statics = [[rng.uniform(0, 1e-3) if r < 1 + C or r >= 1 + 3 * C else rng.uniform(1e6, 1e12) for r in range(24)]
               for _ in range(3)]
    table = SegmentTable() if sink == "table" else SegmentTotals(3)
    buffer = RowBuffer(table)
    numbers = [buffer.static(column) for column in statics]
    assert numbers == [0, 1, 2] and buffer.static(statics[1]) == 1  # one number per column object
    items = []
    for i in range(RowBuffer.BLOCK_ROWS + 500):  # a full block and a partial one
        steps = 1 if i % 3 == 0 else rng.randint(1, 2048)
        head = (i % 3, i * 0.01, i * 0.01 + 0.003 * steps, steps, rng.randint(1, 200), 0, rng.randint(1, 400),
                rng.randint(0, 9000), rng.uniform(0, 50))
        if i % 3 == 0:
            head = head[:5] + (rng.randint(1, 4096),) + head[6:]
            column = [rng.uniform(0, 1e12) for _ in range(24)]
            buffer.step(*head[:3], *head[4:], column)
            items.append(("step", head, column))
        else:
            payload = (rng.randrange(3), 36, rng.uniform(0, 1), rng.uniform(0, 1e12), rng.uniform(0, 1e11),
                       rng.uniform(0, 1e-2), rng.uniform(0, 1e-2))
            buffer.run(*head[:4], head[4], *head[6:], *payload)
            items.append(("run", head, payload))
    buffer.flush()
    expected = _rows_written_one_by_one(items, statics)
    reference = SegmentTable() if sink == "table" else SegmentTotals(3)
    for values in expected:
        reference.append(*values)
    if sink == "table":
        assert len(table) == len(expected)
        for name in SEGMENT_COLUMNS:  # to the bit
            assert np.array_equal(table.column(name), reference.column(name)), name
    else:
        assert vars(table).keys() == vars(reference).keys()
        for key, value in vars(table).items():
            assert np.array_equal(value, vars(reference)[key]), key
