"""Public production traces read as published (Azure 2023 and 2024, BurstGPT, Mooncake), their quirks,
the replay options, ``kinsim info`` of a trace, and replaying each format with ``kinsim run``.

Each file is written here in its native header and units; the expected figures are worked out by hand
from the rows above them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kinsim.cli import main
from kinsim.errors import SpecError
from kinsim.runner import simulate
from kinsim.workload import BlockHashes, read_trace
from kinsim.workload.formats import azure, burstgpt, detect_format, kinsim_format, mooncake, read_table
from kinsim.workload.formats import fast as fast_readers
from kinsim.workload.formats.columns import read_columns
from kinsim.workload.replay import _block_hashes, replay_trace, select
from kinsim.workload.spec import TraceRequests
from kinsim.workload.trace_summary import summarize_trace

from .conftest import HARDWARE, ROOT
from .test_engine import H100, assert_same_figures, figures, workload

# Azure 2023: seven fractional digits, no offset. Line 3 failed (0 generated tokens); line 4 arrives
# before line 3 (out of order). Seconds from the first request: 0, 3.31941, 0.5, 60.
AZURE_2023 = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.0000000,1000,0
2023-11-16 18:15:47.1805900,200,10
2023-11-16 18:16:46.6805900,4000,300
"""

# Azure 2024: offsets; line 4 is 02:00:00.50993 at +02:00, i.e. 00:00:00.50993 UTC, 0.5 s after line 2.
AZURE_2024 = """TIMESTAMP,ContextTokens,GeneratedTokens
2024-05-10 00:00:00.009930+00:00,2048,128
2024-05-10 00:00:01.509930+00:00,512,16
2024-05-10 02:00:00.509930+02:00,100,1
"""

# BurstGPT: seconds from the trace start (first row at 5 s); two models; line 3 failed (Response tokens
# 0), line 5 has an empty prompt; Total tokens and Log Type are read past.
BURSTGPT = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
6,GPT-4,1000,0,1000,Conversation log
6.5,GPT-4,300,20,320,API log
8,ChatGPT,0,5,5,API log
9,GPT-4,100,50,150,Conversation log
"""

# Mooncake: milliseconds; hash ids of 512-token blocks; line 3 failed (output_length 0).
MOONCAKE = "".join(json.dumps(row) + "\n" for row in [
    {"timestamp": 0, "input_length": 1000, "output_length": 52, "hash_ids": [0, 1]},
    {"timestamp": 1500, "input_length": 1100, "output_length": 5, "hash_ids": [0, 1, 2]},
    {"timestamp": 1500, "input_length": 600, "output_length": 0, "hash_ids": [0, 3]},
    {"timestamp": 2250, "input_length": 300, "output_length": 7, "hash_ids": [4]},
])

FILES = {"azure_2023.csv": AZURE_2023, "azure_2024.csv": AZURE_2024, "burstgpt.csv": BURSTGPT,
         "mooncake.jsonl": MOONCAKE}


@pytest.fixture
def traces(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, content in FILES.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        out[name.split(".")[0]] = path
    return out


def replay(path: Path, seed: int = 0, **options):
    return replay_trace(TraceRequests(path=str(path), **options), seed)


# ----------------------------------------------------------------------------------------- formats
def test_formats_are_told_by_their_first_line(traces):
    assert {name: detect_format(path) for name, path in traces.items()} == {
        "azure_2023": "azure", "azure_2024": "azure", "burstgpt": "burstgpt", "mooncake": "mooncake"}


def test_unknown_format_names_what_was_expected(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time,in,out\n1,2,3\n")
    with pytest.raises(SpecError) as error:
        read_table(path)
    message = str(error.value)
    assert message.startswith(f"{path}: line 1: cannot tell the trace's format from its first line")
    assert "azure (CSV header TIMESTAMP,ContextTokens,GeneratedTokens)" in message
    assert "mooncake (JSON keys timestamp, input_length, output_length, hash_ids)" in message


def test_azure_2023_as_published(traces):
    result = replay(traces["azure_2023"])
    requests = result.requests
    assert [r.request_id for r in requests] == ["2", "4", "5"]  # named by their line; line 3 failed
    assert [r.arrival_s for r in requests] == pytest.approx([0.0, 0.5, 60.0], abs=1e-9)
    assert [(r.prompt_tokens, r.output_tokens) for r in requests] == [(374, 44), (200, 10), (4000, 300)]
    report = result.report
    assert (report.rows, report.replayed, report.skipped["failed"], report.unsorted) == (4, 3, 1, 1)


def test_azure_2024_with_offsets(traces):
    requests = replay(traces["azure_2024"]).requests
    assert [r.request_id for r in requests] == ["2", "4", "3"]
    assert [r.arrival_s for r in requests] == pytest.approx([0.0, 0.5, 1.5], abs=1e-9)


def test_burstgpt_models_failed_and_empty_rows(traces):
    result = replay(traces["burstgpt"])
    assert [(r.request_id, r.arrival_s) for r in result.requests] == [("2", 0.0), ("4", 1.5), ("6", 4.0)]
    assert result.report.skipped == {"zero_prompt": 1, "failed": 1, "other_model": 0, "outside_window": 0,
                                     "sampled_out": 0}
    assert result.report.models == {"ChatGPT": 2, "GPT-4": 3}
    gpt4 = replay(traces["burstgpt"], model="GPT-4")
    assert [r.request_id for r in gpt4.requests] == ["4", "6"]
    # line 5 is an empty prompt and line 3 failed before the model filter is asked; line 2 is ChatGPT
    assert gpt4.report.skipped["other_model"] == 1


def test_burstgpt_unknown_model_lists_the_trace_models(traces):
    with pytest.raises(SpecError, match=r"requests.model: no row of this model, got 'GPT-5' "
                                        r"\(hint: the trace has ChatGPT, GPT-4\)"):
        replay(traces["burstgpt"], model="GPT-5")
    with pytest.raises(SpecError, match="the azure format has no model column"):
        replay(traces["azure_2023"], model="GPT-4")


def test_mooncake_milliseconds_and_hash_ids(traces):
    requests = replay(traces["mooncake"]).requests
    assert [r.arrival_s for r in requests] == [0.0, 1.5, 2.25]
    assert [r.hash_ids.ids() for r in requests] == [(0, 1), (0, 1, 2), (4,)]
    assert {r.hash_block_tokens for r in requests} == {512}
    assert requests[1].hash_ids == BlockHashes.of([0, 1, 2]) and requests[1].hash_ids.blocks == 3


def test_kinsim_format_carries_hash_ids_in_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"request_id": "a", "arrival_s": 0, "prompt_tokens": 20, "output_tokens": 2, '
                     '"hash_ids": [7, 8]}\n')
    csv = tmp_path / "t.csv"
    csv.write_text("request_id,arrival_s,prompt_tokens,output_tokens,hash_ids\na,0,20,2,7;8\nb,1,5,1,9 10\n")
    assert read_trace(jsonl, hash_block_tokens=16)[0].hash_ids.ids() == (7, 8)
    assert [r.hash_ids.ids() for r in read_trace(csv)] == [(7, 8), (9, 10)]


@pytest.mark.parametrize("name, module", [("azure_2023", azure), ("azure_2024", azure), ("burstgpt", burstgpt),
                                          ("mooncake", mooncake)])
def test_fast_path_reads_ordinary_files_and_agrees_with_the_exact_path(traces, name, module):
    path = traces[name]
    wanted = {c.name: c.kind for c in module.COLUMNS}
    jsonl = path.suffix == ".jsonl"
    taken = fast_readers.read_jsonl(path, wanted) if jsonl else fast_readers.read_csv(path, wanted)
    assert taken is not None  # the fast path vouches for a file as published
    line_fast, fast = read_columns(path, module.COLUMNS, jsonl=jsonl)
    line_exact, exact = read_columns(path, module.COLUMNS, jsonl=jsonl, fast_path=False)
    assert line_fast.tolist() == line_exact.tolist()
    assert fast.keys() == exact.keys()
    for key in fast:
        assert fast[key].tolist() == exact[key].tolist(), key


def test_kinsim_format_fast_and_exact_paths_agree(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("request_id,group_id,arrival_s,prompt_tokens,output_tokens,score\n"
                    "a,g,0.5,100,9,1.0\nb,g,0.25,100,3,0.5\n7,7,0,50,5,0\n")
    line_fast, fast = read_columns(path, kinsim_format.COLUMNS, jsonl=False, known=kinsim_format.COLUMNS_NAMES)
    line_exact, exact = read_columns(path, kinsim_format.COLUMNS, jsonl=False, known=kinsim_format.COLUMNS_NAMES,
                                     fast_path=False)
    assert line_fast.tolist() == line_exact.tolist() == [2, 3, 4]
    assert {k: v.tolist() for k, v in fast.items()} == {k: v.tolist() for k, v in exact.items()}


def test_a_blank_line_keeps_line_numbers_exact(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text(BURSTGPT.splitlines()[0] + "\n5,ChatGPT,4,1,5,API log\n\n7,GPT-4,many,1,5,API log\n")
    with pytest.raises(SpecError) as error:
        read_table(path)
    assert str(error.value) == (f"{path}: line 4.Request tokens: expected a whole number of tokens, got 'many'")


# ----------------------------------------------------------------------------------------- options
def test_rate_scale_window_and_failed_rows_replayed(traces):
    assert [r.arrival_s for r in replay(traces["azure_2023"], rate_scale=2).requests] == pytest.approx(
        [0.0, 0.25, 30.0], abs=1e-9)
    window = replay(traces["azure_2023"], start=0.4, duration=60.0)
    # kept: 0.5 s and 60 s (in [0.4, 60.4)); line 2 (0 s) is outside; line 3 failed first
    assert [r.arrival_s for r in window.requests] == pytest.approx([0.1, 59.6], abs=1e-9)
    assert window.report.skipped["outside_window"] == 1 and window.report.skipped["failed"] == 1
    kept = replay(traces["azure_2023"], skip_failed=False)
    assert [(r.request_id, r.output_tokens) for r in kept.requests][2] == ("3", 1)
    assert kept.report.failed_replayed == 1 and kept.report.skipped["failed"] == 0


def test_caps_are_counted(traces):
    result = replay(traces["azure_2023"], max_prompt_tokens=500, max_output_tokens=40)
    assert [(r.prompt_tokens, r.output_tokens) for r in result.requests] == [(374, 40), (200, 10), (500, 40)]
    assert (result.report.capped_prompt, result.report.capped_output) == (1, 2)


def test_sampling_follows_the_seed_row_by_row(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2024-05-10 00:{i // 60:02d}:{i % 60:02d}.000000+00:00,{10 + i},5\n" for i in range(200)))
    kept = [int(r.request_id) for r in replay(path, seed=7, sample=0.3).requests]
    expected = (np.flatnonzero(np.random.default_rng(7).random(200) < 0.3) + 2).tolist()  # line = row + 2
    assert kept == expected and 30 < len(kept) < 90
    assert kept == [int(r.request_id) for r in replay(path, seed=7, sample=0.3).requests]
    assert kept != [int(r.request_id) for r in replay(path, seed=8, sample=0.3).requests]
    # a row's fate does not depend on the window
    windowed = [int(r.request_id) for r in replay(path, seed=7, sample=0.3, start=100.0).requests]
    assert windowed == [line for line in kept if line - 2 >= 100]


def test_nothing_left_is_an_error_naming_what_was_skipped(traces):
    with pytest.raises(SpecError, match=r"mooncake.jsonl: no request left to replay of 4 mooncake rows \(skipped 1 "
                                        r"failed \(no output tokens\), 3 outside the time window\)"):
        replay(traces["mooncake"], start=10.0)


# ----------------------------------------------------------------------------------------- summary
def test_summary_of_a_mooncake_trace(traces):
    source = TraceRequests(path=str(traces["mooncake"]))
    f = summarize_trace(select(read_table(source.path), source))
    assert (f["requests"], f["rows"], f["duration_s"]) == (3, 4, 2.25)
    assert f["rate_mean_per_s"] == pytest.approx(3 / 2.25)
    assert f["rate_mean_per_min"] == pytest.approx(60 * 3 / 2.25)
    assert (f["rate_peak_per_s"], f["rate_peak_per_min"]) == (1, 3)  # 0, 1.5, 2.25 s: one a second
    assert f["prompt_tokens"]["p50"] == 1000 and f["prompt_tokens"]["max"] == 1100
    assert f["output_tokens"]["total"] == 52 + 5 + 7
    # blocks 0 1 | 0 1 2 | 4: six blocks, four distinct, so two seen before
    assert f["shared_prefix_share"] == pytest.approx(2 / 6)


def test_shared_prefix_share_of_a_window(traces):
    source = TraceRequests(path=str(traces["mooncake"]), start=1.0)
    # from 1 s: lines 2 and 5 (line 4 failed): blocks 0 1 2 | 4, all distinct
    assert summarize_trace(select(read_table(source.path), source))["shared_prefix_share"] == 0.0


@pytest.mark.parametrize("chunk", [1, 2, 1 << 16])
def test_block_hashes_are_cut_per_row_whatever_the_chunk(chunk):
    values = np.array([5, 6, 7, 8, 9, 10], dtype=np.int32)
    starts, ends = np.array([3, 0, 5, 5]), np.array([5, 3, 6, 5])
    packed = _block_hashes(values, starts, ends, chunk=chunk)
    assert [h.ids() for h in packed] == [(8, 9), (5, 6, 7), (10,), ()]


def test_info_prints_a_trace_summary_and_plots_it(traces, tmp_path, capsys):
    plot = tmp_path / "t.png"
    assert main(["info", str(traces["burstgpt"]), "--model", "GPT-4", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "burstgpt: 2 requests replayed of 5 rows" in out
    assert "1 with an empty prompt, 1 failed (no output tokens), 1 of other models" in out
    assert "ChatGPT 2 rows, GPT-4 3 rows" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["info", str(traces["azure_2023"]), "--json", "--rate-scale", "2"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert (f["format"], f["requests"], f["duration_s"], f["unsorted"]) == ("azure", 3, 30.0, 1)


def test_info_trace_options_on_bad_values_and_other_files(traces, capsys):
    assert main(["info", str(traces["azure_2023"]), "--rate-scale", "-1"]) == 2
    assert "--rate-scale: must be positive, got -1.0" in capsys.readouterr().err
    assert main(["info", str(HARDWARE / "h100.yaml"), "--model", "GPT-4"]) == 2
    assert "--model: applies to a trace file only" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- replay
@pytest.mark.parametrize("name", ["azure_2023", "azure_2024", "burstgpt", "mooncake"])
def test_fast_forward_equals_exact_steps_on_each_format(traces, name):
    w = workload(requests={"kind": "trace", "path": str(traces[name])})
    fast = simulate(w, H100)
    exact = simulate(w, H100, exact_steps=True)
    assert_same_figures(figures(fast), figures(exact))
    assert fast["requests.completed"] == {"azure_2023": 3, "azure_2024": 3, "burstgpt": 3, "mooncake": 3}[name]
    assert fast.to_dict()["inputs"]["trace"]["format"] == detect_format(traces[name])


def test_run_replays_a_native_trace_and_notes_skipped_rows(traces, tmp_path, capsys):
    wl = tmp_path / "w.yaml"
    wl.write_text(f"name: t\nmodel: Qwen3-0.6B\nrequests: {{kind: trace, path: {traces['burstgpt'].name}, "
                  "format: burstgpt, model: GPT-4}\n")
    out = tmp_path / "r.json"
    assert main(["run", str(wl), "--hw", str(HARDWARE / "h100.yaml"), "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "kinsim: note: trace" in err and "replayed 2 of 5 rows" in err and "1 of other models" in err
    summary = json.loads(out.read_text())
    assert summary["requests"]["completed"] == 2
    assert summary["inputs"]["trace"]["skipped"]["other_model"] == 1


def test_example_replays_an_azure_conversation_trace_given_on_the_command_line(traces, tmp_path, monkeypatch,
                                                                               capsys):
    monkeypatch.chdir(traces["azure_2023"].parent)
    out = tmp_path / "r.json"
    assert main(["run", str(ROOT / "examples" / "replay_azure_conv.yaml"), "--hw", str(HARDWARE / "h100.yaml"),
                 "--set", "requests.path=azure_2023.csv", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["gpus"] == 8 and summary["requests"]["completed"] == 3
    assert summary["inputs"]["trace"]["format"] == "azure"
    assert summary["inputs"]["workload"]["requests"]["rate_scale"] == 2.0
    assert "1 failed (no output tokens)" in capsys.readouterr().err
