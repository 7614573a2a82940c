"""The Mooncake (Kimi) traces, as published.

Source: https://github.com/kvcache-ai/Mooncake (``FAST25-release/traces/conversation_trace.jsonl``,
``toolagent_trace.jsonl``, ``synthetic_trace.jsonl``; earlier ``mooncake_trace.jsonl``); paper: Qin et
al., "Mooncake: A KVCache-centric Disaggregated Architecture for LLM Serving", FAST 2025. One JSON object
a line::

    {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48]}

``timestamp`` is milliseconds from the start of the trace; ``hash_ids`` name the prompt's blocks of 512
tokens (equal ids: equal prefixes, so shared KV). Other keys are read past.
"""

from __future__ import annotations

from pathlib import Path

from kinsim.limits import MAX_TOKENS
from kinsim.workload.formats.columns import Column, read_columns
from kinsim.workload.formats.table import TraceTable, shifted_to_first

NAME = "mooncake"
KEYS = ("timestamp", "input_length", "output_length")
#: Tokens per hash id in the published traces.
BLOCK_TOKENS = 512
COLUMNS = (Column("timestamp", "float", 0), Column("input_length", "int", 0, maximum=MAX_TOKENS),
           Column("output_length", "int", 0, maximum=MAX_TOKENS),
           Column("hash_ids", "ids", required=False))


def read(path: str | Path) -> TraceTable:
    """The rows of a Mooncake trace; times in seconds from its first request."""
    line, values = read_columns(path, COLUMNS, jsonl=True)
    return TraceTable(file=str(path), format=NAME, line=line, time_s=shifted_to_first(values["timestamp"] / 1000.0),
                      prompt_tokens=values["input_length"], output_tokens=values["output_length"],
                      hash_offsets=values.get("hash_ids.offsets"), hash_values=values.get("hash_ids.values"))
