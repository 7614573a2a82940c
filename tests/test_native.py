"""The lean engine compiled by Cython (:mod:`kinsim.engine.native`) against the same source run as Python: every
record the same to the bit, on the runs of ``tests/test_lean.py`` and on random ones.

The compiled module is built here from the checkout's ``lean.py``, with the options ``setup.py`` uses, once per
source (a copy per Cython release and source, shared by pytest-xdist's workers behind a lock); the Python one is
the same file loaded as source, whether or not an installed build sits beside it."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kinsim.engine import native
from kinsim.engine.records import SEGMENT_COLUMNS
from kinsim.engine.simulation import Simulation

from .test_lean import H100, best_of_n, chat

SOURCE = Path(native.__file__).with_name("lean.py")
REQUEST_COLUMNS = ("arrival_s", "admitted_s", "first_token_s", "finish_s", "generated", "preemptions", "gpu_s",
                   "replica", "state", "reason")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """(the lean module compiled, the same source as Python)."""
    cython = pytest.importorskip("Cython", reason="Cython compiles the lean engine (pip install '.[dev]')")
    shared = tmp_path_factory.getbasetemp().parent  # (the workers' common directory under pytest-xdist)
    digest = hashlib.sha256(SOURCE.read_bytes() + Path(native.__file__).read_bytes()
                            + cython.__version__.encode()).hexdigest()[:16]
    target = shared / f"lean-compiled-{digest}"
    with open(shared / "lean-compiled.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = sorted(target.glob("lean.*.so"))
        extension = built[0] if built else native.build_copy(SOURCE, target)
    compiled = _load("lean", extension)
    python = _load("lean_as_python", SOURCE)
    assert compiled.COMPILED and not python.COMPILED
    return compiled, python


def assert_identical(a, b):
    for column in REQUEST_COLUMNS:
        assert np.array_equal(getattr(a.sequences, column), getattr(b.sequences, column), equal_nan=True), column
    assert len(a.segments) == len(b.segments)
    for column in SEGMENT_COLUMNS:
        assert np.array_equal(a.segments.column(column), b.segments.column(column), equal_nan=True), column
    assert a.memory == b.memory


def run_both(engines, workload):
    """Each engine's records of ``workload``, or None where the lean engine hands it back (both must)."""
    results = []
    for module in engines:
        try:
            results.append(module.LeanRun(Simulation(workload, H100, cost_model="roofline")).run())
        except module.Unsupported:
            results.append(None)
    assert (results[0] is None) == (results[1] is None)
    return results


@pytest.mark.parametrize("deployment", [
    {},
    {"chunked_prefill": False},
    {"max_num_batched_tokens": 700},
    {"max_num_seqs": 3},
    {"kv_cache_memory": "2 GB"},
    {"schedule_ahead": True},
    {"admission": "no_evict", "kv_cache_memory": "2 GB"},
], ids=["defaults", "whole_prompts", "small_budget", "few_seats", "small_kv", "ahead", "no_evict"])
def test_compiled_chat_runs_are_the_python_runs_to_the_bit(engines, deployment):
    compiled, python = run_both(engines, chat(problems=80, rate="40 /s", deployment=deployment))
    assert_identical(compiled, python)


@pytest.mark.parametrize("arrival", [
    {"process": "closed_loop", "concurrency": 8, "stagger": True},
    {"process": "closed_loop", "concurrency": 5, "rounds": True},
], ids=["staggered", "rounds"])
def test_compiled_closed_loops_are_the_python_runs_to_the_bit(engines, arrival):
    compiled, python = run_both(engines, chat(problems=40, arrival=arrival, deployment={"frontend_s": "20 ms"}))
    assert_identical(compiled, python)


@pytest.mark.parametrize("deployment", [
    {},
    {"kv_cache_memory": "1 GB"},  # preemptions, and runs of hundreds of steps summed as arrays
    {"router": "least_loaded", "admission": "no_evict", "kv_cache_memory": "3 GB"},
], ids=["affinity", "preempting", "no_evict"])
def test_compiled_best_of_n_runs_are_the_python_runs_to_the_bit(engines, deployment):
    compiled, python = run_both(engines, best_of_n(deployment=deployment, output_median=1200))
    assert_identical(compiled, python)
    if deployment.get("kv_cache_memory") == "1 GB":  # (the paths these runs are here for were taken)
        assert compiled.memory["preempt_recompute"] > 0
        assert compiled.segments.column("steps").max() >= engines[1]._ARRAY_END_STEPS


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(replicas=st.integers(1, 3), rate=st.sampled_from(["5 /s", "50 /s"]),
       budget=st.sampled_from([256, 8192]), seats=st.sampled_from([2, 256]), chunked=st.booleans(),
       ahead=st.booleans(), admission=st.sampled_from(["greedy", "no_evict"]),
       memory=st.sampled_from([None, "1.5 GB"]), samples=st.sampled_from([1, 4]), seed=st.integers(0, 1000))
def test_compiled_random_runs_are_the_python_runs_to_the_bit(engines, replicas, rate, budget, seats, chunked, ahead,
                                                           admission, memory, samples, seed):
    deployment = {"max_num_batched_tokens": budget, "max_num_seqs": seats, "chunked_prefill": chunked,
                  "schedule_ahead": ahead, "admission": admission, "kv_cache_memory": memory}
    if samples == 1:
        workload = chat(problems=30, rate=rate, replicas=replicas, seed=seed, deployment=deployment)
    else:
        workload = best_of_n(problems=3, samples=samples, replicas=replicas, seed=seed, deployment=deployment,
                             arrival={"process": "poisson", "rate": rate})
    compiled, python = run_both(engines, workload)
    if compiled is not None:
        assert_identical(compiled, python)


def test_a_build_older_than_its_edited_source_is_named(tmp_path):
    # an in-place build runs itself, not the source edited since (the interpreter prefers the extension)
    extension, source = tmp_path / "lean.cpython-311-x86_64-linux-gnu.so", tmp_path / "lean.py"
    extension.write_bytes(b"")
    source.write_text("")
    os.utime(extension, (1000.0, 1000.0))
    os.utime(source, (1001.5, 1001.5))  # written a moment apart, as an install writes them
    assert native.stale_build(extension, source) == ""
    os.utime(source, (1060.0, 1060.0))  # edited a minute after the build
    message = native.stale_build(extension, source)
    assert "changed 60 s after its compiled build lean.cpython-311-x86_64-linux-gnu.so" in message
    assert "rebuild" in message
    assert native.stale_build(extension, tmp_path / "other.py") == ""  # no source beside it: nothing to say
