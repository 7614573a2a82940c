"""How fast, and in how much memory, a trace of a million rows is read in each format.

Writes a 10^6-row file of each format to a temporary folder (kinsim's own CSV and JSONL, Azure 2023,
Azure 2024, BurstGPT, Mooncake with about 16 hash ids a row, like the published traces' ~8k-token
prompts in 512-token blocks), then, each in a fresh process so that its peak resident memory
(``ru_maxrss``) is its own, and prints wall time and peak memory per format of three stages:

* ``read``: the file into NumPy columns (``read_table``); the target is under 10 s and 500 MB;
* ``info``: reading, the replay options and the summary (what ``kinsim info TRACE`` does);
* ``requests``: reading, the options and one ``Request`` object per row (what ``kinsim run`` hands the
  engine, which then holds a million requests' state anyway).

    python benchmarks/bench_trace_read.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_files(folder: Path, rows: int) -> dict[str, Path]:
    """One file of ``rows`` rows per format, in its published header and units."""
    rng = np.random.default_rng(0)
    gaps_ns = rng.integers(0, 200_000_000, rows)
    time_ns = np.cumsum(gaps_ns)
    prompts = rng.integers(1, 16_000, rows)
    outputs = rng.integers(0, 800, rows)  # about 1 in 800 rows failed (0 output tokens)
    seconds = time_ns / 1e9
    files = {}

    def write(name: str, header: str, lines) -> None:
        path = folder / name
        with open(path, "w", encoding="utf-8") as handle:
            if header:
                handle.write(header + "\n")
            handle.writelines(lines)
        files[name.split(".")[0] if name != "kinsim.jsonl" else "kinsim_jsonl"] = path

    stamps = np.datetime_as_string(np.datetime64("2023-11-16T18:15:46.6805900") + time_ns.astype("timedelta64[ns]"),
                                   unit="ns")
    write("azure_2023.csv", "TIMESTAMP,ContextTokens,GeneratedTokens",
          (f"{s[:10]} {s[11:-2]},{p},{o}\n" for s, p, o in zip(stamps, prompts.tolist(), outputs.tolist())))
    stamps = np.datetime_as_string(np.datetime64("2024-05-10T00:00:00.009930") + time_ns.astype("timedelta64[ns]"),
                                   unit="us")
    write("azure_2024.csv", "TIMESTAMP,ContextTokens,GeneratedTokens",
          (f"{s[:10]} {s[11:]}+00:00,{p},{o}\n" for s, p, o in zip(stamps, prompts.tolist(), outputs.tolist())))
    models = np.where(rng.random(rows) < 0.8, "ChatGPT", "GPT-4")
    logs = np.where(rng.random(rows) < 0.5, "Conversation log", "API log")
    write("burstgpt.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type",
          (f"{t:.0f},{m},{p},{o},{p + o},{lg}\n" for t, m, p, o, lg in
           zip(seconds.tolist(), models, prompts.tolist(), outputs.tolist(), logs)))
    write("kinsim.csv", "request_id,arrival_s,prompt_tokens,output_tokens",
          (f"r{i},{t:.6f},{p},{o + 1}\n" for i, t, p, o in
           zip(range(rows), seconds.tolist(), prompts.tolist(), outputs.tolist())))
    write("kinsim.jsonl", "",
          (f'{{"request_id": "r{i}", "arrival_s": {t:.6f}, "prompt_tokens": {p}, "output_tokens": {o + 1}}}\n'
           for i, t, p, o in zip(range(rows), seconds.tolist(), prompts.tolist(), outputs.tolist())))
    # Mooncake: a shared system prompt of 1-4 blocks out of 1,000, then blocks of the request's own
    blocks = -(-prompts // 512)
    shared = np.minimum(rng.integers(1, 5, rows), blocks)
    system = rng.integers(0, 1000, rows) * 4
    own = 4000 + np.cumsum(blocks - shared) - (blocks - shared)

    def mooncake_lines():
        for t, p, o, b, s, y, w in zip((time_ns // 1_000_000).tolist(), prompts.tolist(), outputs.tolist(),
                                       blocks.tolist(), shared.tolist(), system.tolist(), own.tolist()):
            ids = list(range(y, y + s)) + list(range(w, w + b - s))
            yield f'{{"timestamp": {t}, "input_length": {p}, "output_length": {o}, "hash_ids": {ids}}}\n'

    write("mooncake.jsonl", "", mooncake_lines())
    return files


STAGES = ("read", "info", "requests")


def measure(path: str, stage: str) -> dict[str, float]:
    """Run ``stage`` on ``path`` in this process: wall time and peak memory."""
    from kinsim.workload.formats import read_table
    from kinsim.workload.replay import replay_trace, select
    from kinsim.workload.spec import TraceRequests
    from kinsim.workload.trace_summary import summarize_trace

    t0 = time.perf_counter()
    if stage == "read":
        rows = len(read_table(path))
    elif stage == "info":
        source = TraceRequests(path=path)
        rows = summarize_trace(select(read_table(path), source))["requests"]
    else:
        rows = len(replay_trace(TraceRequests(path=path)).requests)
    return {"rows": rows, "s": time.perf_counter() - t0, "peak_mb": peak_mb()}


def peak_mb() -> float:
    """Peak resident memory of this process, MB: VmHWM where Linux gives it (ru_maxrss there keeps the
    peak of the process that forked this one), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write", default=None, help=argparse.SUPPRESS)  # write the files into this folder
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)  # PATH STAGE, in this process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one)))
        return
    if args.write:
        write_files(Path(args.write), args.rows)
        return
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()  # written by a child, so that this process stays small for the ones it starts
        subprocess.run([sys.executable, __file__, "--write", folder, "--rows", str(args.rows)], check=True)
        files = {p.stem if p.name != "kinsim.jsonl" else "kinsim_jsonl": p for p in sorted(Path(folder).iterdir())}
        print(f"wrote {len(files)} files of {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        print(f"{'format':<14} {'file MB':>8}" + "".join(f" {stage + ' s':>11} {'MB':>5}" for stage in STAGES))
        for name, path in files.items():
            cells = []
            for stage in STAGES:
                out = subprocess.run([sys.executable, __file__, "--one", str(path), stage], check=True,
                                     capture_output=True, text=True).stdout
                f = json.loads(out)
                cells.append(f" {f['s']:>11.2f} {f['peak_mb']:>5.0f}")
            print(f"{name:<14} {path.stat().st_size / 1e6:>8.0f}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
