"""The examples of the file-format reference: each parses as its key's kind and is of the size that key
has in the shipped files (no "1830 MHz" for an arrival rate, no "80 GiB" for an L2 cache)."""

from __future__ import annotations

import re

import pytest

from kinsim.docgen import SECTIONS, example_of, section_keys
from kinsim.hardware import load_hardware
from kinsim.schema import KeyDoc, to_raw
from kinsim.units import UNITS, parse_quantity
from kinsim.workload.load import load_workload

from .conftest import ROOT

DOC = (ROOT / "docs" / "file-formats.md").read_text(encoding="utf-8")

#: Each quantity key of the reference and its kind (a path may appear once per variant, always one kind).
KINDS = {key.path: key.unit for _, cls in SECTIONS for key in section_keys(cls) if key.unit}

#: How far an example may be from the values the shipped files give its key.
FACTOR = 20


def _field(path: str) -> str:
    """The key an example is declared for: one field of a calibration curve shares its example across
    kernel kinds (``calibration.gemm.item_cost`` and ``calibration.selection.item_cost``)."""
    return re.sub(r"^calibration\.[^.]+\.", "calibration.*.", path)


def _shipped_values() -> dict[str, list[float]]:
    """Every quantity of the shipped hardware and workload files (resolved, so calibration profiles and
    presets are in), by dotted key as the reference writes it, in SI units."""
    values: dict[str, list[float]] = {}

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
        elif isinstance(node, str) and path in KINDS:
            values.setdefault(_field(path), []).append(parse_quantity(KINDS[path], node))

    for file in sorted((ROOT / "hardware").glob("*.yaml")):
        walk(to_raw(load_hardware(file)), "")
    for file in sorted((ROOT / "workloads").glob("*.yaml")):
        walk(to_raw(load_workload(file)), "")
    return values


SHIPPED = _shipped_values()


def test_the_shipped_files_cover_the_main_keys():
    # the size check below is only as good as the keys it sees
    assert {"gpu.l2_cache", "gpu.memory.capacity", "node.host_memory", "requests.arrival.rate",
            "cluster.network.bandwidth_per_gpu", "calibration.*.kernel_floor"} <= set(SHIPPED)


def test_the_reference_shows_the_generated_examples():
    rows = re.findall(r"^\| `([^`]+)` \| [^|]*?, e\.g\. `([^`]+)` \|", DOC, flags=re.MULTILINE)
    assert len(rows) >= len(KINDS)
    assert {path for path, _ in rows} == set(KINDS)
    assert ("gpu.l2_cache", "50 MB") in rows and ("requests.arrival.rate", "10 /s") in rows


@pytest.mark.parametrize("path, example", sorted(set(re.findall(r"^\| `([^`]+)` \| [^|]*?, e\.g\. `([^`]+)` \|",
                                                                  DOC, flags=re.MULTILINE))))
def test_every_example_parses_as_its_kind_and_has_the_size_of_the_shipped_values(path, example):
    kind = KINDS[path]
    value = parse_quantity(kind, example, path=path)
    assert value > 0
    shipped = [v for v in SHIPPED.get(_field(path), []) if v > 0]
    if shipped:
        low, high = min(shipped) / FACTOR, max(shipped) * FACTOR
        assert low <= value <= high, f"{path}: e.g. {example} is far from the shipped values {shipped}"


@pytest.mark.parametrize("unit, wrong, shipped", [
    ("frequency", "1830 MHz", [40.0]),  # an arrival rate of 40 /s
    ("bytes", "80 GiB", [50e6, 40e6]),  # L2 caches of 40-50 MB
    ("bandwidth", "3.35 TB/s", [50e9]),  # a NIC of 400 Gbit/s
])
def test_the_size_check_refuses_an_example_of_the_wrong_kind(unit, wrong, shipped):
    value = parse_quantity(unit, wrong)
    assert not min(shipped) / FACTOR <= value <= max(shipped) * FACTOR


def test_a_key_without_its_own_example_shows_its_kinds():
    key = KeyDoc("x", "time", "time", True, None, "doc")
    assert example_of(key) == UNITS["time"][1].strip('"') == "4 us"
    assert example_of(KeyDoc("x", "bytes", "bytes", True, None, "doc", "50 MB")) == "50 MB"
