"""The bounds kinsim puts on its inputs, each with the reason for it, in one place.

A value beyond one of these is refused with one line naming the file, the key and the bound, before any
work (or memory) is spent on it. The bounds are far above any real system or workload; they exist so that
a typo or a hostile file gets a clear refusal instead of an overflow, a hang or a memory blow-up.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------------------- input files

#: Largest file of each kind that is read, bytes. The whole file is read into memory (YAML, JSON, a CSV of
#: shapes) or it is a trace streamed in blocks; the caps are about 100 times the largest real example.
MAX_FILE_BYTES = {
    "yaml": 16 << 20,         # hardware, workload, model, sweep, suite files and calibration profiles
    "json": 64 << 20,         # run files, baselines, model configs, calibration metadata
    "csv": 1 << 30,           # calibration measurements, shapes for kinsim op --shapes
    "trace": 64 << 30,        # request traces (CSV or JSONL, streamed); the largest public ones are a few GB
    "parquet": 1 << 30,       # aiconfigurator tables
}

#: Deepest nesting of lists and mappings in a YAML or JSON file. kinsim's own files nest at most 5 deep;
#: Python's parsers and the code walking the result recurse once per level.
MAX_NESTING = 64

#: Most values a YAML document may hold once its aliases are expanded (``*anchor`` repeats a value without
#: copying it in memory, so ten nested aliases can stand for 10^10 values: the "billion laughs").
MAX_YAML_VALUES = 1_000_000

# ----------------------------------------------------------------------------------------- sizes

#: Most GPUs in one node: the largest NVLink domain announced holds 576. A full-mesh node has
#: gpus x (gpus - 1) links in the link graph, 331,200 of them at the cap.
MAX_GPUS_PER_NODE = 576

#: Most GPUs in a hardware description (nodes x GPUs per node). A simulation with tensor parallelism builds
#: the link graph of every GPU: at the cap (8,192 nodes of 8) 393,216 directed links, 0.2 GB, 4 s.
MAX_TOTAL_GPUS = 65_536

#: Most points in a sweep: each is a simulation; the list of points is built before the first runs.
MAX_SWEEP_POINTS = 1_000_000

#: Most requests a generated workload draws (problems x samples): the request table takes 32 bytes a
#: request; 10^6 requests simulate in about half an hour.
MAX_REQUESTS = 100_000_000

#: Most tokens of one prompt or output (a constant, a uniform bound, a listed count, a cap): the longest
#: context of any released model is 10^7 tokens, and sums of tokens over a batch and a run stay exact
#: (below 2**53) in the cost model's integer sums.
MAX_TOKENS = 1 << 24

#: Latest arrival time, seconds (about 52 days). The engine's clock counts whole nanoseconds in floats,
#: exact below 2**53 ns (104 days); arrivals stay below half of that so that the run after the last
#: arrival is timed exactly too.
MAX_TIME_S = 2.0**52 / 1e9
#: How :data:`MAX_TIME_S` reads in messages.
MAX_TIME_WORDS = ("4,503,600 s (2^52 ns, about 52 days), the latest arrival kinsim simulates (its clock is exact "
                  "to the nanosecond below twice that)")

#: Largest whole number in any integer key: it must fit a 64-bit integer (NumPy's int64).
MAX_INT = 2**63 - 1
