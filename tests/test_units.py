import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinsim.errors import SpecError
from kinsim.units import UNITS, exact_quantity, format_quantity, parse_quantity


@pytest.mark.parametrize(
    "kind, text, expected",
    [
        ("bytes", "80 GB", 80e9),
        ("bytes", "80 GiB", 80 * 1024**3),
        ("bytes", "50MB", 50e6),
        ("bytes", "1.5 KiB", 1536.0),
        ("bandwidth", "3.35 TB/s", 3.35e12),
        ("bandwidth", "400 Gbit/s", 400e9 / 8),
        ("bandwidth", "100 Gbps", 100e9 / 8),
        ("bandwidth", "1 GiB/s", 1024.0**3),
        ("flop_rate", "989 TFLOP/s", 989e12),
        ("flop_rate", "2.25 PFLOPS", 2.25e15),
        ("time", "4 us", 4e-6),
        ("time", "4 µs", 4e-6),
        ("time", "250 ns", 250e-9),
        ("time", "1.5 ms", 1.5e-3),
        ("frequency", "1830 MHz", 1.83e9),
        ("frequency", "0.5 /s", 0.5),
        ("frequency", "30 /min", 0.5),
        ("power", "700 W", 700.0),
        ("price", "3.6 $/h", 0.001),
        ("bytes", "1e3 B", 1000.0),
    ],
)
def test_parse_quantity_examples(kind, text, expected):
    assert parse_quantity(kind, text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "kind, value, rule",
    [
        ("bandwidth", 3350, 'expected a bandwidth like "3.35 TB/s"'),
        ("bandwidth", "3.35 TFLOP/s", "unknown unit 'TFLOP/s' for a bandwidth"),
        ("bytes", "eighty GB", "expected a size"),
        ("time", "4", "expected a time"),
        ("bytes", True, "expected a size"),
        ("bytes", "1e999 B", "must be finite"),
    ],
)
def test_parse_quantity_rejects(kind, value, rule):
    with pytest.raises(SpecError) as caught:
        parse_quantity(kind, value, path="gpu.x", file="f.yaml")
    message = str(caught.value)
    assert message.startswith("f.yaml: gpu.x: ")
    assert rule in message


def test_format_quantity_picks_readable_unit():
    assert format_quantity("bandwidth", 3.35e12) == "3.35 TB/s"
    assert format_quantity("bytes", 80e9) == "80 GB"
    assert format_quantity("time", 4e-6) == "4 us"
    assert format_quantity("flop_rate", 989e12) == "989 TFLOP/s"
    assert format_quantity("price", 2.5 / 3600) == "2.5 $/h"


@given(kind=st.sampled_from(sorted(UNITS)), value=st.floats(min_value=-1e20, max_value=1e20,
                                                          allow_nan=False, allow_infinity=False))
def test_exact_quantity_round_trips(kind, value):
    assert parse_quantity(kind, exact_quantity(kind, value)) == value


@given(value=st.floats(min_value=1e-9, max_value=1e18))
def test_format_then_parse_is_close(value):
    text = format_quantity("bandwidth", value, digits=12)
    assert math.isclose(parse_quantity("bandwidth", text), value, rel_tol=1e-10)
