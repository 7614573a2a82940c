"""The examples run and say what their docstrings claim."""

import importlib.util

import pytest

from .conftest import ROOT


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hbm_bandwidth_what_if(capsys):
    speedups = load_example("hbm_bandwidth_what_if").main()
    # Memory-bound steps: doubling bandwidth approaches 2x, held back by launch gaps and compute.
    assert 1.6 < speedups[(1, 1000)] < 2.0
    assert speedups[(64, 16384)] == pytest.approx(2.0, abs=0.1)
    assert speedups[(64, 16384)] > speedups[(1, 1000)]
    assert capsys.readouterr().out.count("\n") == 2
