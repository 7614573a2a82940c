"""The CLI on malformed input: exit code 2 and one line naming the file, the key (or line) and the rule.

Each case copies a shipped file (or writes a small trace), breaks one thing, and runs ``kinsim validate``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kinsim.cli import main

from .conftest import HARDWARE, WORKLOADS

H100 = HARDWARE / "h100.yaml"
BON32 = WORKLOADS / "aime_bon32.yaml"
GOOD = {"hw.yaml": yaml.safe_load(H100.read_text(encoding="utf-8")),
        "wl.yaml": yaml.safe_load(BON32.read_text(encoding="utf-8"))}
HEADER = "request_id,arrival_s,prompt_tokens,output_tokens\n"
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BURST = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
MOON = '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n'
DELETE = object()

# A builder writes its files into a folder and returns the validate arguments and the file the message
# must name (None where the problem is not in a file).
Builder = Callable[[Path], tuple[list[str], "Path | None"]]


def dump(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def edited(base: dict, dotted: str, value: object = DELETE) -> dict:
    """A deep copy of ``base`` with the dotted key set to ``value`` (or deleted)."""
    out = copy.deepcopy(base)
    *parents, last = dotted.split(".")
    node = out
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


def text(name: str, content: str, *extra: str, others: dict[str, str] | None = None) -> Builder:
    """Write ``content`` to ``name`` (and ``others`` beside it); validate ``name`` with ``extra`` args."""

    def build(folder: Path) -> tuple[list[str], Path]:
        for other, other_content in (others or {}).items():
            (folder / other).write_text(other_content, encoding="utf-8")
        path = folder / name
        path.write_text(content, encoding="utf-8")
        return [str(path), *extra], path

    return build


def hw(dotted: str, value: object = DELETE) -> Builder:
    """The shipped h100.yaml with one key changed or deleted."""
    return text("hw.yaml", dump(edited(GOOD["hw.yaml"], dotted, value)))


def wl(dotted: str, value: object = DELETE) -> Builder:
    """The shipped aime_bon32.yaml with one key changed or deleted."""
    return text("wl.yaml", dump(edited(GOOD["wl.yaml"], dotted, value)))


def trace_workload(options: dict, name: str, content: str) -> Builder:
    """The shipped aime_bon32.yaml replaying trace ``name`` with ``options``; the message names the trace."""
    inner = text("wl.yaml", dump(edited(GOOD["wl.yaml"], "requests", {"kind": "trace", "path": name, **options})),
                 others={name: content})

    def build(folder: Path) -> tuple[list[str], Path]:
        args, _ = inner(folder)
        return args, folder / name

    return build


def with_set(override: str, name_file: bool = True) -> Builder:
    """The shipped h100.yaml, unchanged, validated with ``--set override``."""
    inner = text("hw.yaml", dump(GOOD["hw.yaml"]), "--set", override)

    def build(folder: Path) -> tuple[list[str], Path | None]:
        args, path = inner(folder)
        return args, path if name_file else None

    return build


def row(**changes: object) -> str:
    """One JSONL trace row, valid unless ``changes`` break it."""
    fields = {"request_id": "r1", "arrival_s": 0, "prompt_tokens": 10, "output_tokens": 20, **changes}
    return json.dumps(fields) + "\n"


def case(case_id: str, build: Builder, key: str | None, rule: str):
    """One row of the table: ``key`` (None for the file as a whole) and ``rule`` must appear in the
    message."""
    return pytest.param(build, key, rule, id=case_id)


CASES = [
    # ---- hardware: quantities and rules
    case("bandwidth-wrong-unit", hw("gpu.memory.bandwidth", "3.35 TFLOP/s"), "gpu.memory.bandwidth",
         "unknown unit 'TFLOP/s' for a bandwidth"),
    case("bandwidth-without-unit", hw("gpu.memory.bandwidth", 3350), "gpu.memory.bandwidth",
         'expected a bandwidth like "3.35 TB/s", got 3350'),
    case("bandwidth-negative", hw("gpu.memory.bandwidth", "-3.35 TB/s"), "gpu.memory.bandwidth",
         "must be positive"),
    case("memory-channels-zero", hw("gpu.memory.channels", 0), "gpu.memory.channels", "must be at least 1"),
    case("missing-required-key", hw("gpu.memory.capacity"), "gpu.memory.capacity", "missing required key"),
    case("unknown-key", hw("gpu.memory.speed", "1 GHz"), "gpu.memory",
         "unknown key 'speed' (hint: allowed keys here: bandwidth, capacity, channels, technology)"),
    case("string-for-int", hw("node.gpus", "eight"), "node.gpus", "expected a whole number, got 'eight'"),
    case("bool-for-int", hw("gpu.compute.units", True), "gpu.compute.units",
         "expected a whole number, got True"),
    case("unknown-dtype", hw("gpu.compute.peak.fp6", "100 TFLOP/s"), "gpu.compute.peak.fp6",
         "unknown data type"),
    case("idle-power-above-tdp", hw("gpu.power.idle", "800 W"), "gpu.power.idle", "must not exceed power.tdp"),
    # ---- files: YAML syntax, shape and extends
    case("extends-missing-file", hw("extends", "nope.yaml"), "extends", "extends a file that does not exist"),
    case("extends-cycle", text("a.yaml", "extends: b.yaml\n", others={"b.yaml": "extends: a.yaml\n"}),
         "extends", "extends forms a cycle (a.yaml -> b.yaml -> a.yaml)"),
    case("empty-file", text("hw.yaml", ""), None, "is empty"),
    case("not-yaml", text("hw.yaml", dump(GOOD["hw.yaml"]).replace("name: h100", "name: [h100", 1)),
         "line 2, column 12", "is not valid YAML: expected ',' or ']'"),
    case("top-level-list", text("hw.yaml", dump([GOOD["hw.yaml"]])), None,
         "expected a mapping of keys to values at the top level"),
    case("key-written-twice", text("hw.yaml", "name: again\n" + dump(GOOD["hw.yaml"])), "line 2, column 1",
         "key 'name' appears twice"),
    case("unhashable-key", text("hw.yaml", "[1, 2]: list as key\n" + dump(GOOD["hw.yaml"])), "line 1, column 1",
         "is not valid YAML"),
    # ---- workload: model, deployment, attention, requests
    case("gpu-memory-fraction-above-1", wl("deployment.gpu_memory_fraction", 1.5),
         "deployment.gpu_memory_fraction", "must be in (0, 1], got 1.5"),
    case("kv-cache-memory-negative", wl("deployment.kv_cache_memory", "-4 GiB"), "deployment.kv_cache_memory",
         "must be positive"),
    case("unknown-preset", wl("model", "Qwen3-9B"), "model.preset",
         "unknown model preset, got 'Qwen3-9B' (hint: did you mean Qwen3-8B"),
    case("kv-heads-not-dividing-heads", wl("model", {"preset": "Qwen3-8B", "kv_heads": 5}), "model.kv_heads",
         "must divide attention_heads (32)"),
    case("tensor-parallel-not-dividing-heads", wl("deployment.tensor_parallel", 3),
         "deployment.tensor_parallel", "must divide the model's attention heads (32)"),
    case("unknown-attention-policy", wl("attention.policy", "sparse"), "attention.policy",
         "must be one of dense, block_topk, topk, sliding_window, got 'sparse'"),
    case("block-size-not-multiple-of-kv-block", wl("attention", {"policy": "block_topk", "block_size": 24}),
         "attention.block_size", "must be a multiple of deployment.kv_block_size (16)"),
    case("unknown-distribution", wl("requests.output_tokens.dist", "gamma"), "requests.output_tokens.dist",
         "must be one of constant, uniform, normal, lognormal, list, got 'gamma'"),
    case("uniform-high-below-low", wl("requests.prompt_tokens.high", 50), "requests.prompt_tokens.high",
         "must be at least low (100), got 50"),
    case("workload-trace-missing", wl("requests", {"kind": "trace", "path": "missing.jsonl"}), "requests.path",
         "not found"),
    # ---- traces
    case("csv-fractional-tokens", text("t.csv", HEADER + "r1,0,12.5,20\n"), "line 2.prompt_tokens",
         "expected a whole number of tokens, got '12.5'"),
    case("csv-superscript-digit", text("t.csv", HEADER + "r1,0,\u00b2,20\n"), "line 2.prompt_tokens",
         "expected a whole number of tokens"),
    case("csv-duplicate-request-id", text("t.csv", HEADER + "r1,0,10,20\nr1,1,10,20\n"), "line 3.request_id",
         "duplicate request_id (first on line 2)"),
    case("csv-missing-column", text("t.csv", "request_id,arrival_s,prompt_tokens\nr1,0,10\n"),
         "line 2.output_tokens", "missing required column"),
    case("csv-header-repeats-column", text("t.csv", "request_id," + HEADER + "r0,r1,0,10,20\n"), "line 1",
         "request_id"),
    case("jsonl-invalid-json", text("t.jsonl", row() + '{"request_id": "r2",\n'), "line 2",
         "is not valid JSON"),
    case("jsonl-negative-arrival", text("t.jsonl", row(arrival_s=-1)), "line 1.arrival_s",
         "must not be negative, got -1"),
    # ---- public traces in their native formats
    case("jsonl-invalid-first-line", text("t.jsonl", '{"request_id": "r1",\n'), "line 1", "is not valid JSON"),
    case("trace-unknown-format", text("t.csv", "time,in,out\n1,2,3\n"), "line 1",
         "cannot tell the trace's format from its first line, got 'time,in,out' (hint: expected one of: kinsim"),
    case("azure-bad-timestamp", text("t.csv", AZURE + "2023-11-16 18:15:46.6805900,10,2\n16/11/2023 18:15,10,2\n"),
         "line 3.TIMESTAMP", "expected a date and time like 2023-11-16 18:15:46.6805900, got '16/11/2023 18:15'"),
    case("azure-negative-tokens", text("t.csv", AZURE + "2023-11-16 18:15:46.6805900,-10,2\n"),
         "line 2.ContextTokens", "expected a whole number of tokens, got '-10'"),
    case("burstgpt-text-tokens", text("t.csv", BURST + "5,ChatGPT,many,18,490,Conversation log\n"),
         "line 2.Request tokens", "expected a whole number of tokens, got 'many'"),
    case("burstgpt-short-row", text("t.csv", BURST + "5,ChatGPT,4,18,490,API log\n6,GPT-4,4,18\n"), "line 3",
         "has 4 cells, the header has 6"),
    case("mooncake-missing-key", text("t.jsonl", MOON + '{"timestamp": 1, "output_length": 3}\n'),
         "line 2.input_length", "missing required column"),
    case("mooncake-bad-hash-ids", text("t.jsonl", '{"timestamp": 1, "input_length": 3, "output_length": 3, '
                                                  '"hash_ids": ["a"]}\n'),
         "line 1.hash_ids", "expected a list of whole numbers (hash ids), got ['a']"),
    case("workload-trace-wrong-format", trace_workload({"format": "azure"}, "t.jsonl", MOON), "line 1",
         "missing required column 'TIMESTAMP'"),
    # ---- command-line overrides (--set applies to every file, so naming "--set" is right here)
    case("set-without-equals", with_set("gpu.memory.bandwidth", name_file=False), "--set",
         "expected an override like"),
    case("set-through-non-mapping", with_set("gpu.name.short=H100"), "gpu.name",
         "cannot set a key inside a value that is not a mapping"),
]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("build, key, rule", CASES)
def test_bad_input_is_one_line_naming_file_key_and_rule(tmp_path, capsys, build, key, rule):
    args, file = build(tmp_path)
    code, _, err = run_cli(capsys, "validate", *args)
    assert "Traceback" not in err
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    message = err.removeprefix("kinsim: error: ")
    if file is not None:
        assert message.startswith(f"{file}: "), message
    if key is not None:
        assert f"{key}:" in message, message
    assert rule in message, message


def test_shipped_files_validate(capsys):
    code, out, err = run_cli(capsys, "validate", str(H100), str(BON32))
    assert (code, err) == (0, "")
    assert out.count("ok  ") == 2


def test_info_json_gives_the_ridge_point(capsys, monkeypatch, root):
    monkeypatch.chdir(root)
    code, out, _ = run_cli(capsys, "info", "hardware/h100.yaml", "--json")
    assert code == 0
    ridge = json.loads(out)["ridge_flop_per_byte"]["bf16"]
    assert ridge == pytest.approx(989e12 / 3.35e12, rel=1e-9)


def test_failing_validate_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("hw.yaml").write_text(dump(edited(GOOD["hw.yaml"], "gpu.memory.bandwidth", 3350)), encoding="utf-8")
    Path("wl.yaml").write_text(dump(edited(GOOD["wl.yaml"], "deployment.tensor_parallel", 3)),
                               encoding="utf-8")
    before = sorted(tmp_path.rglob("*"))
    for name in ("hw.yaml", "wl.yaml"):
        assert run_cli(capsys, "validate", name)[0] == 2
    assert sorted(tmp_path.rglob("*")) == before
