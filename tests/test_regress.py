"""``kinsim regress``: a slower GPU fails the gate, a faster one is a change to accept, --update round-trips."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from kinsim import __version__
from kinsim.cli import main
from kinsim.result import metric_at
from kinsim.runner import simulate

from .conftest import HARDWARE, WORKLOADS

SMALL = "{requests.problems: 2, requests.samples: 4, requests.max_output_tokens: 400}"


def write_suite(directory: Path, hardware: Path, name: str = "suite.yaml") -> Path:
    path = directory / name
    path.write_text(f"name: test\nmetrics:\n  throughput.tasks_per_s: 0.001\n  latency.task.e2e.p99: 0.001\n"
                    f"cases:\n  small:\n    workload: {WORKLOADS / 'aime_bon32.yaml'}\n    hardware: {hardware}\n"
                    f"    overrides: {SMALL}\n")
    return path


def variant(directory: Path, bandwidth: str) -> Path:
    path = directory / f"h100-{bandwidth.split()[0]}.yaml"
    path.write_text(f"extends: {HARDWARE / 'h100.yaml'}\nname: h100-variant\ngpu:\n  memory:\n"
                    f"    bandwidth: {bandwidth}\n")
    return path


def test_update_writes_the_run_figures_and_a_rerun_passes(tmp_path: Path, capsys):
    suite = write_suite(tmp_path, HARDWARE / "h100.yaml")
    assert main(["regress", str(suite), "--update"]) == 0
    baseline = json.loads((tmp_path / "suite.baseline.json").read_text())
    expected = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml",
                        {"requests.problems": 2, "requests.samples": 4, "requests.max_output_tokens": 400})
    assert baseline["kinsim"] == __version__
    assert baseline["cases"]["small"]["throughput.tasks_per_s"] == expected["throughput.tasks_per_s"]
    capsys.readouterr()
    assert main(["regress", str(suite)]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("regress PASS: 2 checks, 2 within tolerance")


def test_a_slowed_gpu_fails_the_gate_with_junit_and_markdown(tmp_path: Path, capsys):
    write_suite(tmp_path, HARDWARE / "h100.yaml")
    assert main(["regress", str(tmp_path / "suite.yaml"), "--update"]) == 0
    slow = write_suite(tmp_path, variant(tmp_path, "2.5 TB/s"), name="slow.yaml")
    junit, md = tmp_path / "junit.xml", tmp_path / "report.md"
    capsys.readouterr()
    code = main(["regress", str(slow), "--baseline", str(tmp_path / "suite.baseline.json"), "--junit", str(junit),
                 "--markdown", str(md)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("REGRESSION") == 2  # tasks/s fell and task latency rose
    assert "regress FAIL: 2 checks, 0 within tolerance, 2 regressed" in out
    root = ElementTree.parse(junit).getroot()
    assert root.get("tests") == "2" and root.get("failures") == "2"
    assert len(root.findall("testcase/failure")) == 2
    assert md.read_text().count("**regression**") == 2


def test_a_faster_gpu_is_a_change_to_accept_and_fails_only_when_strict(tmp_path: Path, capsys):
    write_suite(tmp_path, HARDWARE / "h100.yaml")
    assert main(["regress", str(tmp_path / "suite.yaml"), "--update"]) == 0
    fast = write_suite(tmp_path, variant(tmp_path, "5 TB/s"), name="fast.yaml")
    baseline = ["--baseline", str(tmp_path / "suite.baseline.json")]
    capsys.readouterr()
    assert main(["regress", str(fast), *baseline]) == 0
    out = capsys.readouterr().out
    assert out.count("improved") >= 2 and "rerun with --update" in out
    assert main(["regress", str(fast), *baseline, "--strict"]) == 1


def test_missing_cases_and_other_versions_are_reported(tmp_path: Path, capsys):
    suite = write_suite(tmp_path, HARDWARE / "h100.yaml")
    baseline = tmp_path / "suite.baseline.json"
    baseline.write_text(json.dumps({"kinsim": "0.0.1", "suite": "test", "cases": {"gone": {}}}))
    assert main(["regress", str(suite)]) == 1
    out = capsys.readouterr().out
    assert "written by kinsim 0.0.1" in out
    assert "baseline has case 'gone'" in out
    assert out.count(" new") >= 2
    assert main(["regress", str(tmp_path / "suite.yaml"), "--baseline", str(tmp_path / "none.json")]) == 2
    assert "baseline not found" in capsys.readouterr().err


def test_the_projects_own_suite_is_current():
    # .ci/run runs the same gate; this keeps the test suite honest about it too
    root = Path(__file__).resolve().parents[1]
    assert main(["regress", str(root / "regress" / "suite.yaml")]) == 0


def test_the_example_workflow_runs_the_gate_with_its_reports():
    import yaml

    root = Path(__file__).resolve().parents[1]
    workflow = yaml.safe_load((root / "examples" / "ci" / "kinsim-regress.yml").read_text())
    commands = [step.get("run", "") for step in workflow["jobs"]["regress"]["steps"]]
    gate = next(c for c in commands if c.startswith("kinsim regress"))
    assert "--junit" in gate and "--markdown" in gate
    # the options it passes exist
    from kinsim.cli import build_parser

    args = build_parser().parse_args(gate.split()[1:])
    assert args.junit == "regress-junit.xml" and args.markdown == "regress.md"


def test_a_key_that_is_not_a_figure_is_refused_before_any_run(tmp_path: Path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"metrics:\n  latency.task.p99: 0.01\ncases:\n  a:\n"
                     f"    workload: {WORKLOADS / 'aime_bon32.yaml'}\n    hardware: {HARDWARE / 'h100.yaml'}\n")
    assert main(["regress", str(suite), "--update"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "suite.yaml: metrics.latency.task.p99: not a figure a run reports" in err
    assert "latency.task.e2e.p99" in err  # the nearest real key is offered
    assert not (tmp_path / "suite.baseline.json").exists()


def test_every_guardable_key_is_in_a_real_run_and_numeric():
    from kinsim.metrics import FIGURE_KEYS, OPTIONAL_SECTIONS, figure_of
    from kinsim.metrics import better_direction as direction

    summary = simulate(WORKLOADS / "aime_bon32.yaml", HARDWARE / "h100.yaml",
                       {"requests.problems": 2, "requests.samples": 4, "requests.max_output_tokens": 400}).to_dict()
    for key in FIGURE_KEYS:
        if key.split(".")[0] in OPTIONAL_SECTIONS:  # present only with their feature on
            assert figure_of(summary, key) is None
            continue
        value = metric_at(summary, key)
        assert value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)), key
    assert direction("kv.capacity_bytes") == 1 and direction("kv.peak_bytes") == -1
    assert direction("tokens.prefill_computed") == -1 and direction("requests.unfinished") == -1


def test_a_figure_that_is_null_then_and_now_passes_after_update(tmp_path: Path, capsys):
    # cost_usd is null when the hardware file gives no GPU price (none of the shipped ones does).
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"metrics:\n  cost_usd: 0.01\n  throughput.tasks_per_s: 0.01\ncases:\n  small:\n"
                     f"    workload: {WORKLOADS / 'aime_bon32.yaml'}\n    hardware: {HARDWARE / 'h100.yaml'}\n"
                     f"    overrides: {SMALL}\n")
    assert main(["regress", str(suite), "--update"]) == 0
    assert json.loads((tmp_path / "suite.baseline.json").read_text())["cases"]["small"]["cost_usd"] is None
    assert main(["regress", str(suite)]) == 0
    assert "2 within tolerance" in capsys.readouterr().out


def test_a_bad_case_is_named_before_any_case_runs(tmp_path: Path, capsys, monkeypatch):
    import kinsim.runner

    def must_not_run(*_, **__):
        raise AssertionError("a case ran before the suite was checked")

    monkeypatch.setattr(kinsim.runner, "simulate", must_not_run)
    suite = tmp_path / "suite.yaml"
    case = f"    workload: {WORKLOADS / 'aime_bon32.yaml'}\n    hardware: {HARDWARE / 'h100.yaml'}\n"
    suite.write_text(f"cases:\n  good:\n{case}  bad:\n{case}    overrides: {{deployment.max_num_seqs: 0}}\n")
    assert main(["regress", str(suite), "--update"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "suite.yaml: cases.bad.overrides:" in err and "deployment.max_num_seqs: must be at least 1" in err


@pytest.mark.parametrize("baseline, words", [
    ('{"cases": {"small": [1, 2]}}', ["cases.small", "expected a mapping"]),
    ('{"cases": {"small": {"throughput.tasks_per_s": "fast"}}}', ["cases.small.throughput.tasks_per_s",
                                                                   "expected a finite number or null", "'fast'"]),
    (b"\xff\xfe{}", ["not JSON"]),
])
def test_a_malformed_baseline_is_one_line_exit_2(tmp_path: Path, capsys, baseline, words):
    suite = write_suite(tmp_path, HARDWARE / "h100.yaml")
    target = tmp_path / "suite.baseline.json"
    target.write_bytes(baseline if isinstance(baseline, bytes) else baseline.encode())
    assert main(["regress", str(suite)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "suite.baseline.json" in err
    for word in words:
        assert word in err


def test_table_shows_each_figure_in_its_unit():
    from kinsim.regress.gate import Verdict, table_lines

    verdicts = [Verdict("a", "kv.peak_bytes", 5.483e10, 5.49e10, 0.0012767, 0.01, "pass"),
                Verdict("a", "throughput.output_tokens_per_s", 11637.4, None, None, 0.01, "missing"),
                Verdict("a", "latency.task.e2e.p99", 0.0456, 0.04561234, 0.0002706, 0.01, "pass")]
    header, peak, tokens, e2e = table_lines(verdicts)
    assert peak.split() == ["a", "kv.peak_bytes", "54.83", "GB", "54.9", "GB", "+0.1277%", "pass"]
    assert tokens.split() == ["a", "throughput.output_tokens_per_s", "11,637.4", "tokens/s", "-", "-", "missing"]
    assert e2e.split() == ["a", "latency.task.e2e.p99", "45.6", "ms", "45.6123", "ms", "+0.0271%", "pass"]
