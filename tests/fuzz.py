"""A seeded mutation fuzzer for kinsim's inputs: every failure must be one line and exit 2, never a bug.

It copies the shipped inputs (hardware files, workloads, sweep files, the regression suite) and small variants
of them (a workload, a sweep, a suite and its baseline, a request trace in CSV and JSONL, a run JSON, a
scored-sample set and its attention file, a Kinetics generations file) into a
scratch directory, then, case after case, mutates one of them and runs the commands that read it, in this
process, through :func:`kinsim.cli.main` (the shipped workloads, sweeps and suite are validated and
described, not simulated: they take seconds each):

* structural mutations of the parsed file (a key removed, renamed or added; a value replaced by another
  type, a huge, tiny, negative, NaN or infinite number, a date, a long string, deep nesting);
* textual mutations of the file (cut short, bytes flipped, a YAML alias bomb, deep brackets, binary).

For every case it checks the rules of ``docs/errors.md``:

* the exit code is 0, 1 or 2, never 3 (a traceback) or an escaping exception;
* exit 2 prints exactly one line on stderr, ``kinsim: error: ...``;
* nothing is left in the case's output directory unless the command succeeded, and no temporaries ever;
* exit 0 from ``kinsim run`` gives figures that are valid (finite, non-negative, requests accounted for);
* each case ends within :data:`CASE_SECONDS` and adds at most :data:`CASE_MEMORY_BYTES` to the peak memory.

Simulations run only when the mutated workload stays small (at most :data:`MAX_SIM_REQUESTS` requests of at
most :data:`MAX_SIM_TOKENS` output tokens each), so that a valid but huge workload is not mistaken for a
hang. Run it alone for a longer campaign::

    python -m tests.fuzz --cases 2000 --seed 7        # prints each failing case, exits 1 if any
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Wall seconds one case may take.
CASE_SECONDS = 20
#: Bytes one case may add to the process's peak resident memory.
CASE_MEMORY_BYTES = 1 << 30
#: A mutated workload is simulated only when it has at most this many requests ...
MAX_SIM_REQUESTS = 64
#: ... of at most this many output tokens each (its other commands run whatever its size).
MAX_SIM_TOKENS = 4096

TINY_WORKLOAD = {
    "name": "fuzz_bon",
    "model": "Qwen3-8B",
    "deployment": {"tensor_parallel": 1, "data_parallel": 2, "max_num_seqs": 8, "max_num_batched_tokens": 2048,
                   "chunked_prefill": True, "kv_block_size": 16, "gpu_memory_fraction": 0.9},
    "attention": {"policy": "block_topk", "block_size": 16, "top_k": 8},
    "requests": {"kind": "best_of_n", "problems": 2, "samples": 3,
                 "prompt_tokens": {"dist": "uniform", "low": 100, "high": 200},
                 "output_tokens": {"dist": "lognormal", "median": 60, "sigma": 0.6},
                 "max_output_tokens": 256, "arrival": {"process": "poisson", "rate": "4 /s"}},
    "seed": 0,
}

TRACE_ROWS = [
    {"request_id": "a", "group_id": "g1", "arrival_s": 0.0, "prompt_tokens": 120, "output_tokens": 40},
    {"request_id": "b", "group_id": "g1", "arrival_s": 0.0, "prompt_tokens": 120, "output_tokens": 55},
    {"request_id": "c", "arrival_s": 0.25, "prompt_tokens": 300, "output_tokens": 20, "hash_ids": [1, 2]},
]


#: A scored-sample set (``kinsim frontier``): one model, dense and a sparse setting, two problems of two samples.
SAMPLE_ROWS = [
    {"model": "Qwen3-0.6B", "attention": attention, "problem": problem, "sample": sample, "prompt_tokens": 50,
     "output_tokens": 100 * (sample + 1), "correct": int(sample == 0 or problem == "b"), "answer": str(sample),
     "budgets": [[100, int(sample == 0)], [1000, int(sample == 0 or problem == "b")]]}
    for attention in ("dense", "sparse") for problem in ("a", "b") for sample in range(2)]
SAMPLE_ATTENTION = {"attention": {"sparse": {"policy": "block_topk", "block_size": 16, "top_k": 4}}}
#: A Kinetics generations file (``kinsim samples import kinetics``): its metadata line, then generations.
KINETICS_LINES = [
    {"task": "aime24", "attn_local": 0, "attn_block_topk": 64, "attn_block_size": 16, "attn_topk": None},
    {"query": "what is two plus three", "prediction": ["so the answer is \\boxed{5}<eos>"], "choices": ["5"],
     "score": 100.0},
    {"query": "what is two plus three", "prediction": ["so \\boxed{4}<eos>"], "choices": ["5"], "score": 0.0},
]


class CaseTimeout(BaseException):
    """A case ran past :data:`CASE_SECONDS` (a BaseException, so kinsim's handlers cannot swallow it)."""


@dataclass
class Outcome:
    """What one command of one case did."""

    argv: list[str]
    code: int | None
    stderr: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Case:
    """One mutated input and the commands run on it."""

    index: int
    target: str
    mutation: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"{' '.join(o.argv)}: {p}" for o in self.outcomes for p in o.problems]


# ---------------------------------------------------------------------------------------------- the corpus


def build_corpus(root: Path) -> dict[str, Path]:
    """Write the inputs the fuzzer mutates under ``root``; return them by name."""
    from kinsim.cli import main

    root.mkdir(parents=True, exist_ok=True)
    for folder in ("hardware", "workloads", "regress"):
        shutil.copytree(ROOT / folder, root / folder)
    (root / "examples").mkdir()
    for sweep in (ROOT / "examples").glob("sweep_*.yaml"):
        shutil.copy(sweep, root / "examples" / sweep.name)
    files = {"hardware": root / "hardware" / "h100.yaml", "hardware_a100": root / "hardware" / "a100.yaml"}
    # the shipped files as they are (only validated and described: simulating them takes seconds each)
    files.update({f"shipped_{p.stem}": p for p in sorted((root / "workloads").glob("*.yaml"))})
    files.update({f"shipped_{p.stem}": p for p in sorted((root / "examples").glob("sweep_*.yaml"))})
    files["shipped_suite"] = root / "regress" / "suite.yaml"
    workload = root / "workload.yaml"
    workload.write_text(yaml.safe_dump(TINY_WORKLOAD, sort_keys=False))
    files["workload"] = workload
    shipped = yaml.safe_load((ROOT / "workloads" / "chat_poisson.yaml").read_text())
    shipped["requests"]["problems"] = 12
    (root / "chat.yaml").write_text(yaml.safe_dump(shipped, sort_keys=False))
    files["chat"] = root / "chat.yaml"
    csv_lines = ["request_id,group_id,arrival_s,prompt_tokens,output_tokens,hash_ids"]
    for row in TRACE_ROWS:
        hashes = " ".join(str(h) for h in row.get("hash_ids", []))
        csv_lines.append(f"{row['request_id']},{row.get('group_id', '')},{row['arrival_s']},{row['prompt_tokens']},"
                         f"{row['output_tokens']},{hashes}")
    (root / "trace.csv").write_text("\n".join(csv_lines) + "\n")
    (root / "trace.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TRACE_ROWS))
    files["trace_csv"], files["trace_jsonl"] = root / "trace.csv", root / "trace.jsonl"
    replay = {**TINY_WORKLOAD, "name": "fuzz_replay", "requests": {"kind": "trace", "path": "trace.jsonl"}}
    (root / "replay.yaml").write_text(yaml.safe_dump(replay, sort_keys=False))
    files["replay"] = root / "replay.yaml"
    sweep = {"name": "fuzz_sweep", "workload": "workload.yaml", "hardware": "hardware/h100.yaml",
             "axes": {"deployment.max_num_seqs": [4, 8]},
             "plot": {"x": "deployment.max_num_seqs", "y": "throughput.tasks_per_s"}}
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    files["sweep"] = root / "sweep.yaml"
    suite = {"name": "fuzz_suite", "metrics": {"throughput.output_tokens_per_s": 1e-6, "requests.preemptions": 0},
             "cases": {"tiny": {"workload": "workload.yaml", "hardware": "hardware/h100.yaml"}}}
    (root / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    files["suite"] = root / "suite.yaml"
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        if main(["regress", str(files["suite"]), "--update"]) != 0:
            raise RuntimeError(f"could not write the suite's baseline: {quiet.getvalue()}")
        if main(["run", str(workload), "--hw", str(files["hardware"]), "--json", str(root / "run.json"),
                 "--quiet"]) != 0:
            raise RuntimeError(f"could not write a run JSON: {quiet.getvalue()}")
    files["baseline"] = root / "suite.baseline.json"
    files["run_json"] = root / "run.json"
    (root / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in SAMPLE_ROWS))
    (root / "samples.attention.yaml").write_text(yaml.safe_dump(SAMPLE_ATTENTION, sort_keys=False))
    files["samples"], files["samples_attention"] = root / "samples.jsonl", root / "samples.attention.yaml"
    (root / "gen.jsonl").write_text("".join(json.dumps(line) + "\n" for line in KINETICS_LINES))
    files["kinetics"] = root / "gen.jsonl"
    files["tokenizer"] = _write_tokenizer(root / "tokenizer.json")
    return files


def _write_tokenizer(path: Path) -> Path:
    """A word-level tokenizer over the generations' words (``tokenizers``, the frontier extra)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = "what is two plus three so the answer".split()
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}},
                                           unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(["<eos>"])
    tokenizer.save(str(path))
    return path


# ------------------------------------------------------------------------------------------- the mutations


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


#: Replacement values: wrong types, hostile numbers, dates, long text, deep nesting.
REPLACEMENTS: list[tuple[str, Callable[[], Any]]] = [
    ("null", lambda: None), ("true", lambda: True), ("empty string", lambda: ""), ("word", lambda: "garbage"),
    ("zero", lambda: 0), ("minus one", lambda: -1), ("half", lambda: 0.5), ("1e300", lambda: 1e300),
    ("-1e300", lambda: -1e300), ("1e-320", lambda: 1e-320), ("NaN", lambda: math.nan), ("inf", lambda: math.inf),
    ("2**70", lambda: 2**70), ("1e20", lambda: 1e20), ("empty list", lambda: []), ("list", lambda: ["dense"]),
    ("empty mapping", lambda: {}), ("mapping", lambda: {"a": 1}), ("date", lambda: datetime.date(2024, 1, 1)),
    ("long text", lambda: "x" * 200_000), ("nested 200", lambda: _nested(200)),
    ("unit typo", lambda: "3.35 TB/ss"), ("negative quantity", lambda: "-3 TB/s"),
]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a node of a parsed document (mapping keys and list indices)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node[:8]):
            found += _paths(value, prefix + (index,))
    return found


def _parent(doc: Any, path: tuple) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def mutate_structure(doc: Any, rng: random.Random) -> tuple[Any, str]:
    """A copy of ``doc`` with one structural change, and its description."""
    import copy

    doc = copy.deepcopy(doc)
    paths = _paths(doc)
    if not paths:
        return {"a": 1}, "replaced the document by a mapping"
    path = rng.choice(paths)
    parent, last = _parent(doc, path), path[-1]
    where = ".".join(str(p) for p in path)
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[last]
        return doc, f"removed {where}"
    if action < 0.25 and isinstance(parent, dict):
        parent[str(last) + "x"] = parent.pop(last)
        return doc, f"renamed {where} to {last}x"
    if action < 0.32 and isinstance(parent, dict):
        parent["unexpected_key"] = 1
        return doc, f"added unexpected_key beside {where}"
    name, make = rng.choice(REPLACEMENTS)
    parent[last] = make()
    return doc, f"set {where} to {name}"


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def mutate_text(text: str, rng: random.Random) -> tuple[str | bytes, str]:
    """A textual mutation of ``text`` and its description."""
    choice = rng.randrange(7)
    if choice == 0:
        cut = rng.randrange(max(1, len(text)))
        return text[:cut], f"cut at byte {cut}"
    if choice == 1:
        data = bytearray(text.encode())
        for _ in range(3):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), "three bytes flipped"
    if choice == 2:
        return ALIAS_BOMB, "a YAML alias bomb (9^9 leaves)"
    if choice == 3:
        return "[" * 50_000 + "]" * 50_000, "50,000 nested brackets"
    if choice == 4:
        return bytes(rng.randrange(256) for _ in range(512)), "512 random bytes"
    if choice == 5:
        return "", "empty"
    return text + "\n" + text, "the document twice"


# --------------------------------------------------------------------------------------- running a command


def _figures_problems(path: Path) -> list[str]:
    """Why a run JSON written with exit 0 is not valid figures (empty when it is)."""
    problems = []
    summary = json.loads(path.read_text(), parse_constant=lambda name: math.nan)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, list):
            for value in node[:1000]:
                walk(value, where)
        elif isinstance(node, float) and not math.isfinite(node):
            problems.append(f"{where} is {node}")

    walk({k: v for k, v in summary.items() if k != "inputs"}, "")
    requests = summary.get("requests", {})
    if requests.get("completed", 0) + requests.get("unfinished", 0) != requests.get("total", -1):
        problems.append(f"requests do not add up: {requests}")
    for key, value in summary.get("tokens", {}).items():
        if isinstance(value, (int, float)) and value < 0:
            problems.append(f"tokens.{key} is negative: {value}")
    throughput = summary.get("throughput", {})
    for key, value in throughput.items():
        if isinstance(value, (int, float)) and value < 0:
            problems.append(f"throughput.{key} is negative: {value}")
    if requests.get("completed", 0) == 0 and throughput.get("output_tokens_per_s", 0) > 0:
        problems.append("throughput without a completed request")
    return problems


def run_command(argv: list[str], out_dir: Path, expect_outputs: list[Path]) -> Outcome:
    """Run ``kinsim argv`` in this process and check the rules of a case."""
    from kinsim.cli import main

    err, out = io.StringIO(), io.StringIO()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    outcome = Outcome(argv, None, "")

    def alarm(signum, frame):
        raise CaseTimeout()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(CASE_SECONDS)
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            outcome.code = main(argv)
    except CaseTimeout:
        outcome.problems.append(f"still running after {CASE_SECONDS} s")
    except SystemExit as exit_:
        outcome.code = exit_.code if isinstance(exit_.code, int) else 2
    except BaseException as error:  # noqa: BLE001 - anything escaping main is what we look for
        outcome.problems.append(f"{type(error).__name__} escaped main: {str(error)[:200]}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - started
    outcome.stderr = err.getvalue()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    if grown > CASE_MEMORY_BYTES:
        outcome.problems.append(f"peak memory grew by {grown / 2**30:.1f} GiB")
    if outcome.code not in (0, 1, 2, None):
        outcome.problems.append(f"exit {outcome.code}: {outcome.stderr.strip()[-300:]}")
    if outcome.code == 2:
        lines = outcome.stderr.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("kinsim: error: "):
            outcome.problems.append(f"exit 2 with {len(lines)} lines on stderr: {outcome.stderr[:300]!r}")
        elif len(lines[0]) > 2000:
            outcome.problems.append(f"a {len(lines[0])}-character error line")
    left = sorted(p.name for p in out_dir.rglob("*"))
    temporaries = [name for name in left if name.endswith(".tmp") or name.startswith(".")]
    if temporaries:
        outcome.problems.append(f"temporaries left behind: {temporaries}")
    if outcome.code not in (0, 1) and left:  # exit 1 (a failed check) still writes its reports
        outcome.problems.append(f"exit {outcome.code} left outputs behind: {left}")
    if outcome.code in (0, 1):
        for path in expect_outputs:
            if not path.exists():
                outcome.problems.append(f"exit 0 without its output {path.name}")
            elif path.suffix == ".json" and argv[0] == "run":
                outcome.problems += _figures_problems(path)
    if elapsed > CASE_SECONDS and not outcome.problems:
        outcome.problems.append(f"took {elapsed:.0f} s")
    return outcome


def _small_enough_to_simulate(workload: Path) -> bool:
    """Whether a (valid) mutated workload is small: few requests, short outputs."""
    from kinsim.errors import KinsimError

    try:
        from kinsim.workload.generate import workload_request_table
        from kinsim.workload.load import load_workload

        spec = load_workload(workload)
        requests = spec.requests
        if getattr(requests, "kind", "") != "trace":
            problems = getattr(requests, "problems", 0) * max(1, getattr(requests, "samples", 1) or 1)
            if problems > MAX_SIM_REQUESTS:
                return False
        table = workload_request_table(spec)
    except (KinsimError, CaseTimeout):
        return False
    except Exception:  # noqa: BLE001 - the commands themselves will show a bug; here we only size the run
        return False
    return len(table) <= MAX_SIM_REQUESTS and (len(table) == 0 or int(table.output_tokens.max()) <= MAX_SIM_TOKENS)


def commands_for(target: str, path: Path, files: dict[str, Path], out: Path) -> list[tuple[list[str], list[Path]]]:
    """The commands that read ``target`` (at ``path``), each with the outputs it should write."""
    hw, workload = str(files["hardware"]), str(files["workload"])
    if target.startswith("shipped_"):
        described = path.parent.name == "workloads"
        return [(["validate", str(path)], [])] + ([(["info", str(path)], [])] if described else [])
    if target.startswith("hardware"):
        return [(["validate", str(path)], []), (["info", str(path), "--json"], []),
                (["run", workload, "--hw", str(path), "--json", str(out / "r.json"), "--quiet"], [out / "r.json"])]
    if target in ("workload", "chat", "replay"):
        cmds: list[tuple[list[str], list[Path]]] = [(["validate", str(path)], []), (["info", str(path)], [])]
        if _small_enough_to_simulate(path):
            cmds.append((["run", str(path), "--hw", hw, "--json", str(out / "r.json"), "--requests-csv",
                          str(out / "r.csv"), "--quiet"], [out / "r.json", out / "r.csv"]))
        return cmds
    if target.startswith("trace"):
        return [(["info", str(path)], [])]
    if target == "sweep":
        return [(["sweep", str(path), "--db", str(out / "s.sqlite"), "--csv", str(out / "s.csv"), "--quiet"],
                 [out / "s.csv"])]
    if target == "suite":
        return [(["regress", str(path), "--baseline", str(files["baseline"]), "--junit", str(out / "j.xml")],
                 [out / "j.xml"])]
    if target == "baseline":
        return [(["regress", str(files["suite"]), "--baseline", str(path)], [])]
    if target in ("samples", "samples_attention"):
        return [(["frontier", str(files["samples"]), "--csv", str(out / "f.csv"), "--json", str(out / "f.json"),
                  "--quiet"], [out / "f.csv", out / "f.json"])]
    if target == "kinetics":
        return [(["samples", "import", "kinetics", str(path), "--model", "Qwen3-0.6B", "--tokenizer",
                  str(files["tokenizer"]), "--out", str(out / "s.jsonl"), "--budgets", "4,8"],
                 [out / "s.jsonl", out / "s.attention.yaml"])]
    if target == "run_json":
        return [(["report", str(path), "-o", str(out / "r.html")], [out / "r.html"]),
                (["compare", str(path), str(files["run_json"])], [])]
    raise ValueError(target)


def _load(path: Path) -> Any:
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if path.suffix == ".csv":
        lines = text.splitlines()
        header = lines[0].split(",")
        return [dict(zip(header, line.split(","))) for line in lines[1:]]
    return yaml.safe_load(text)


def _dump(doc: Any, like: Path) -> str:
    if like.suffix == ".json":
        return json.dumps(doc, indent=1, default=str)
    if like.suffix == ".jsonl":
        return "".join(json.dumps(row, default=str) + "\n" for row in (doc if isinstance(doc, list) else [doc]))
    if like.suffix == ".csv":
        rows = doc if isinstance(doc, list) else [doc]
        header = list(dict.fromkeys(k for row in rows if isinstance(row, dict) for k in row))
        lines = [",".join(map(str, header))]
        lines += [",".join(str(row.get(k, "")) if isinstance(row, dict) else str(row) for k in header)
                  for row in rows]
        return "\n".join(lines) + "\n"
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1 << 20)


def run_campaign(cases: int, seed: int, scratch: Path, progress: Callable[[str], None] | None = None) -> list[Case]:
    """Run ``cases`` mutation cases from ``seed`` in ``scratch``; return them all (failing ones have problems)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    files = build_corpus(scratch / "corpus")
    targets = ["hardware", "hardware_a100", "workload", "chat", "replay", "trace_csv", "trace_jsonl", "sweep",
               "suite", "baseline", "run_json", "samples", "samples_attention", "kinetics"]
    targets += sorted(name for name in files if name.startswith("shipped_"))
    originals = {name: files[name].read_bytes() for name in targets}
    docs = {name: _load(files[name]) for name in targets}
    rng = random.Random(seed)
    done = []
    for index in range(cases):
        target = targets[index % len(targets)]
        path = files[target]
        if rng.random() < 0.8:
            doc, mutation = mutate_structure(docs[target], rng)
            try:
                content: str | bytes = _dump(doc, path)
            except (RecursionError, ValueError, yaml.YAMLError):
                content, mutation = "[" * 5000, mutation + " (unwritable; deep brackets instead)"
        else:
            content, mutation = mutate_text(originals[target].decode(), rng)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        case = Case(index, target, mutation)
        for argv, outputs in commands_for(target, path, files, scratch / "out"):
            out = scratch / "out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            case.outcomes.append(run_command(argv, out, outputs))
        path.write_bytes(originals[target])
        for stray in files["sweep"].parent.glob("*.sqlite"):
            stray.unlink()
        done.append(case)
        if progress is not None and case.problems:
            progress(f"case {index} ({target}: {mutation}):\n  " + "\n  ".join(case.problems))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-limit-gb", type=float, default=4.0,
                        help="address-space limit of this process, so that a blow-up is an error, not a swap storm")
    args = parser.parse_args(argv)
    limit = int(args.memory_limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kinsim-fuzz-") as scratch:
        cases = run_campaign(args.cases, args.seed, Path(scratch), progress=print)
    failing = [c for c in cases if c.problems]
    commands = sum(len(c.outcomes) for c in cases)
    codes: dict[Any, int] = {}
    for case in cases:
        for outcome in case.outcomes:
            codes[outcome.code] = codes.get(outcome.code, 0) + 1
    print(f"{len(cases)} cases, {commands} commands, exit codes {dict(sorted(codes.items(), key=str))}, "
          f"{len(failing)} failing, {time.monotonic() - started:.1f} s")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
