"""Shared test fixtures: paths of the shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARDWARE = ROOT / "hardware"
WORKLOADS = ROOT / "workloads"


@pytest.fixture
def root() -> Path:
    return ROOT
