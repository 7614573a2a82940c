"""deployment.engine_version: release numbers, the overhead preset a release selects, and the silicon rows'
releases carried into their replays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kinsim import load_hardware
from kinsim.calibration.silicon import expressible, version_of, workload_of
from kinsim.cli import main
from kinsim.cost.engine_overhead import ENGINE_OVERHEADS, VLLM_ASYNC, engine_overhead
from kinsim.errors import SpecError
from kinsim.releases import release_of
from kinsim.runner import simulate
from kinsim.workload.load import workload_from_raw
from kinsim.workload.spec import DeploymentSpec

from .conftest import HARDWARE, ROOT, WORKLOADS
from .test_aiconfigurator import SILICON
from .test_engine import workload

H100 = load_hardware(HARDWARE / "h100.yaml")


@pytest.mark.parametrize("text, expected", [
    ("0.18.0", (0, 18)), ("0.11.2", (0, 11)), ("1.0.0rc3", (1, 0)), ("0.5.1.post1", (0, 5)), ("v0.14", (0, 14)),
    ("0.12.0+cu129", (0, 12)), (" 0.13.1 ", (0, 13)),
    ("abc", None), ("1", None), ("0.18.0 x", None), ("", None), ("0..1", None), ("0.1" + "a" * 2000 + "!", None),
])
def test_release_numbers_read_as_major_and_minor(text, expected):
    assert release_of(text) == expected


def test_vllm_from_0_14_takes_the_asynchronous_preset_and_nothing_else_moves():
    sync = ENGINE_OVERHEADS["vllm"]
    # v0.14.0's release notes: async scheduling on by default; 0.13 and earlier schedule synchronously
    assert engine_overhead("vllm", "0.14.0") is VLLM_ASYNC and engine_overhead("vllm", "0.18.0") is VLLM_ASYNC
    assert engine_overhead("vllm", "1.2") is VLLM_ASYNC
    assert engine_overhead("vllm", "0.13.9") is sync and engine_overhead("vllm", "0.12.0") is sync
    assert engine_overhead("vllm") is sync  # absent: the release the preset's rows ran
    for engine in ("sglang", "trtllm", "none"):
        assert engine_overhead(engine, "9.9.9") is ENGINE_OVERHEADS[engine]
    # the host work that async scheduling hides is the fixed time a step waits for
    assert VLLM_ASYNC.step_s < sync.step_s


def one_request(**deployment):
    raw = {"name": "one", "model": "Qwen3-0.6B", "deployment": {"tensor_parallel": 1, **deployment},
           "requests": {"kind": "best_of_n", "problems": 1, "samples": 1, "prompt_tokens": 100,
                        "output_tokens": 5, "max_output_tokens": 1000}}
    return simulate(workload_from_raw(raw, base_dir=ROOT), H100)


def test_a_release_changes_each_step_by_the_difference_of_the_presets():
    sync, fast = ENGINE_OVERHEADS["vllm"], VLLM_ASYNC
    plain, newer = one_request(), one_request(engine_version="0.18.0")
    assert one_request(engine_version="0.13.0")["sim_time_s"] == plain["sim_time_s"]
    # five steps (the prefill, then four decode steps), each with one sequence getting a token: each step's
    # host time is step_s + 1 x per_sequence_s, the kernels the same
    per_step = (sync.step_s - fast.step_s) + (sync.per_sequence_s - fast.per_sequence_s)
    # and the request reaches the engine after the release's frontend time
    frontend = sync.frontend_s - fast.frontend_s
    assert plain["sim_time_s"] - newer["sim_time_s"] == pytest.approx(5 * per_step + frontend, abs=7 * 1e-9)
    assert plain["latency.request.ttft.p50"] - newer["latency.request.ttft.p50"] == pytest.approx(
        per_step + frontend, abs=3e-9)


def test_a_release_that_is_not_one_is_exit_2_naming_the_key(tmp_path: Path, capsys):
    out = tmp_path / "run.json"
    code = main(["run", str(WORKLOADS / "aime_bon32.yaml"), "--hw", str(HARDWARE / "h100.yaml"),
                 "--set", "deployment.engine_version=latest", "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "deployment.engine_version" in err and "release number" in err and "latest" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SpecError, match="expected a string") as error:  # YAML's 0.18 is a number: quote it
        workload_from_raw({"name": "x", "model": "Qwen3-0.6B", "deployment": {"engine_version": 0.18},
                           "requests": {"kind": "best_of_n", "problems": 1, "prompt_tokens": 10,
                                        "output_tokens": 2}}, base_dir=ROOT)
    assert error.value.path == "deployment.engine_version"


def test_a_silicon_row_replays_with_its_release():
    row, _ = expressible({**SILICON, "backend": "vllm", "backend_version": "0.18.0"})
    assert row.version == "0.18.0"
    assert workload_of(row)["deployment"]["engine_version"] == "0.18.0"
    assert "engine_version" not in workload_of(row, engine="none")["deployment"]  # the overheads' fit: none
    # behind vLLM's own API server the frontend is the release's preset (26.8 ms from 0.14, 6.8 ms before)
    own = {**SILICON, "backend": "vllm", "silicon_data_source": "image=vllm/vllm-openai:v0.18.0"}
    for version, preset in (("0.18.0", VLLM_ASYNC), ("0.12.0", ENGINE_OVERHEADS["vllm"])):
        row, _ = expressible({**own, "backend_version": version})
        deployment = workload_from_raw(workload_of(row), ROOT).deployment
        assert row.stack == "engine" and deployment.frontend_s is None
        assert engine_overhead(deployment.engine, deployment.engine_version).frontend_s == preset.frontend_s
    for missing in ("", float("nan"), "unknown"):
        assert version_of({**SILICON, "backend_version": missing}) is None
        row, _ = expressible({**SILICON, "backend": "vllm", "backend_version": missing})
        assert "engine_version" not in workload_of(row)["deployment"]


def test_info_names_the_engine_release_and_its_preset(capsys):
    code = main(["info", str(WORKLOADS / "aime_bon32.yaml"), "--set", "deployment.engine_version=0.18.0"])
    out = capsys.readouterr().out
    # VLLM_ASYNC: 0.137e-3 s a step, 49.36e-6 s a sequence, 26.8e-3 s of frontend, at 3 significant digits;
    # from 0.14 vLLM plans each step while the previous one runs
    assert code == 0 and ("vllm 0.18.0: 0.137 ms + 49.4 us a sequence each step, frontend 26.8 ms, plans a step "
                          "ahead") in out
    main(["info", str(WORKLOADS / "aime_bon32.yaml"), "--set", "deployment.frontend_s=20 ms"])
    assert "vllm: 0.834 ms + 52.5 us a sequence each step, frontend 20 ms\n" in capsys.readouterr().out


@pytest.mark.parametrize("engine, version, ahead", [
    ("vllm", None, False), ("vllm", "0.12.0", False), ("vllm", "0.14.0", True), ("vllm", "0.18.0", True),
    ("sglang", None, True), ("trtllm", "1.0.0rc3", True), ("none", None, False),
])
def test_which_engines_plan_a_step_ahead(engine, version, ahead):
    deployment = DeploymentSpec(engine=engine, engine_version=version)
    assert deployment.schedule_ahead is ahead
    assert DeploymentSpec(engine=engine, engine_version=version, schedule_ahead=not ahead).schedule_ahead is not ahead


def test_a_silicon_row_schedules_as_its_backend_release_did_whatever_prices_its_host_time():
    for backend, version, ahead in (("vllm", "0.18.0", True), ("vllm", "0.12.0", False), ("trtllm", "1.0.0rc3", True)):
        row, _ = expressible({**SILICON, "backend": backend, "backend_version": version})
        for engine in (None, "none"):  # none: the overheads' fit, on the backend's own batches
            assert workload_of(row, engine=engine)["deployment"]["schedule_ahead"] is ahead


def test_an_arrival_during_a_step_joins_a_step_later_when_the_engine_plans_ahead(tmp_path: Path):
    # Request a alone (no serving engine: no host time, no frontend); b arrives in the middle of a's fourth
    # step. Planning at the end of each step, b joins at the end of that fourth step; an engine that planned
    # the fifth step while the fourth ran has not seen b: b joins at the end of the fifth. a, arriving at an
    # idle engine, is admitted at once either way. The same in fast-forward and in exact steps.
    lone = {"deployment.engine": "none", "requests.problems": 1, "requests.samples": 1, "requests.output_tokens": 50}
    ends = [seg.end_s for seg in simulate(workload(**lone), H100, exact_steps=True).records.segments]
    arrival = (ends[2] + ends[3]) / 2
    trace = tmp_path / "trace.jsonl"
    rows = [{"request_id": "a", "arrival_s": 0.0, "prompt_tokens": 100, "output_tokens": 50},
            {"request_id": "b", "arrival_s": arrival, "prompt_tokens": 100, "output_tokens": 50}]
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for ahead, joins in ((False, ends[3]), (True, ends[4])):
        w = workload(**{"deployment.engine": "none", "deployment.schedule_ahead": ahead},
                     requests={"kind": "trace", "path": str(trace)})
        for exact in (False, True):
            a, b = simulate(w, H100, exact_steps=exact).records.sequences
            assert a.admitted_s == 0.0 and b.arrival_s == arrival
            assert b.admitted_s == joins, (ahead, exact)
