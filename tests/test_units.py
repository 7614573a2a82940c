import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinsim.errors import SpecError
from kinsim.units import (
    UNITS,
    axis_unit,
    exact_quantity,
    format_figure,
    format_number,
    format_quantity,
    parse_quantity,
    quantity_kind,
    readable_quantity,
)


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
        ("time", "4", "a time needs a unit"),
        ("bytes", "1e9", 'a size needs a unit, got \'1e9\' (hint: write its unit after the number, e.g. "1e9 B")'),
        ("bytes", "1,5 GB", "unknown unit ',5GB'"),  # a decimal comma is not a thousands separator
        ("bytes", "12,34 GB", "unknown unit ',34GB'"),
        ("bytes", "1e9 e9", "unknown unit 'e9'"),
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


@pytest.mark.parametrize(
    "kind, text, expected",
    [
        ("bytes", "1e9 B", 1e9),
        ("bytes", "1.5E+3 GB", 1.5e12),
        ("bytes", "2e-3 GiB", 2e-3 * 2**30),
        ("bytes", "1e3KiB", 1024e3),
        ("bandwidth", "3.35e3 GB/s", 3.35e12),
        ("bandwidth", "4E12 B/s", 4e12),
        ("bandwidth", "4e2 Gbit/s", 400e9 / 8),
        ("time", "2e-3 s", 2e-3),
        ("time", "5E-6 s", 5e-6),
        ("time", "1.5e+3 ms", 1.5),
        ("frequency", "1.83e3 MHz", 1.83e9),
        ("frequency", "5e-1 /s", 0.5),
        ("flop_rate", "9.89E+14 FLOP/s", 989e12),
        ("flop_rate", "1e3 TFLOP/s", 1e15),
        ("power", "7e2 W", 700.0),
        ("price", "2.5e0 $/h", 2.5 / 3600),
        ("bytes", "1,000 GB", 1e12),  # thousands separators, as tables print them
        ("bandwidth", "-1,234.5 GB/s", -1234.5e9),
    ],
)
def test_parse_quantity_scientific_notation(kind, text, expected):
    assert parse_quantity(kind, text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", sorted(UNITS))
@pytest.mark.parametrize("text, expected", [("1e9", 1e9), ("1.5E+3", 1500.0), ("2e-3", 0.002), ("42", 42.0),
                                            ("  7.25 ", 7.25)])
def test_a_bare_number_is_the_base_unit_where_allowed_and_needs_a_unit_elsewhere(kind, text, expected):
    assert parse_quantity(kind, text, bare=True) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(SpecError) as caught:
        parse_quantity(kind, text, path="k")
    assert f"needs a unit, got {text!r}" in str(caught.value)
    assert f'"{text.strip()} {UNITS[kind][0]}"' in str(caught.value)


@pytest.mark.parametrize("value, expected", [
    (11637.4, "11,637"), (1032.4, "1,032"), (123456789, "123,456,789"), (0.012346, "0.01235"), (2.5, "2.5"),
    (999.96, "1,000"), (12, "12"), (0, "0"), (-3.5, "-3.5"), (-0.00001, "-0.00001"), (1.5e-9, "1.5e-09"),
    (float("nan"), "nan"),
])
def test_format_number(value, expected):
    assert format_number(value) == expected


@pytest.mark.parametrize("kind, value, expected", [
    ("bytes", 5.483e10, "54.83 GB"),
    ("bytes", 999.96e9, "1 TB"),  # rounds up into the next prefix, not "1,000 GB"
    ("bytes", 5e16, "50 PB"),
    ("bytes", 3e19, "30,000 PB"),
    ("bytes", 0.0, "0 B"),
    ("time", 4.9999999999999996e-06, "5 us"),
    ("time", 7200.0, "7,200 s"),
    ("time", 2.5e-10, "0.25 ns"),
    ("flop_rate", 989000000000000.0, "989 TFLOP/s"),
    ("frequency", 0.5, "0.5 Hz"),
    ("bandwidth", -3.35e12, "-3.35 TB/s"),
    ("energy", 5e6, "1.389 kWh"),  # 5e6 J / 3.6e6 J per kWh
    ("flop", 1.23456e15, "1.235 PFLOP"),
])
def test_format_quantity_hand_worked(kind, value, expected):
    assert format_quantity(kind, value) == expected


@pytest.mark.parametrize("kind, value, expected", [
    ("bytes", 80 * 2**30, "80 GiB"),
    ("bytes", 80e9, "80 GB"),  # also 78,125,000 KiB, but the decimal form is shorter
    ("bytes", 50 * 2**20, "50 MiB"),
    ("bytes", 50e6, "50 MB"),
    ("time", 4.9999999999999996e-06, "5 us"),
    ("flop_rate", 989000000000000.0, "989 TFLOP/s"),
    ("bandwidth", 3.35e12, "3.35 TB/s"),
    ("price", 2.5 / 3600, "2.5 $/h"),
    ("bytes", 123456789012.0, "123.456789012 GB"),  # 12 digits: nothing rounded away
])
def test_readable_quantity(kind, value, expected):
    assert readable_quantity(kind, value) == expected
    assert parse_quantity(kind, expected) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("unit, value, expected", [
    ("s", 0.0456, "45.6 ms"), ("B", 5.483e10, "54.83 GB"), ("J", 5e6, "1.389 kWh"), ("FLOP", 2e12, "2 TFLOP"),
    ("fraction", 0.4567, "45.7%"), ("fraction", 1.0, "100%"), ("$", 12.345, "$12.35"),
    ("tokens/s", 11637.4, "11,637 tokens/s"), ("tasks/s", 0.0123, "0.0123 tasks/s"), ("count", 1032, "1,032"),
    ("requests", 7, "7"), ("replica-seconds", 90.0, "90 s"), ("s", None, "-"),
])
def test_format_figure(unit, value, expected):
    assert format_figure(unit, value) == expected


def test_each_unit_names_one_kind():
    tables = [set(table) for _, _, table in UNITS.values()]
    assert all(not a & b for i, a in enumerate(tables) for b in tables[i + 1:])
    assert [quantity_kind(t) for t in ("4 TB/s", "80 GiB", "2 s", "0.5 /s", "989 TFLOPS", "dense", "16", 16)] == [
        "bandwidth", "bytes", "time", "frequency", "flop_rate", None, None, None]
    assert axis_unit("bandwidth", [2e12, 5e12]) == ("TB/s", 1e12)
    assert axis_unit("bytes", [5e8, 2e9]) == ("GB", 1e9)
    assert axis_unit("time", []) == ("s", 1.0)  # nothing to scale: the base unit


def _op_json(capsys, *args) -> dict:
    import json

    from kinsim.cli import main

    from .conftest import HARDWARE

    assert main(["op", "allreduce", "--hw", str(HARDWARE / "h100.yaml"), "--gpus", "8", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("written, nbytes", [("1e9", 1e9), ("1.5E+3 MB", 1.5e9), ("2e-3 GiB", 2e-3 * 2**30),
                                              ("16MiB", 16 * 2**20), ("1000000000", 1e9)])
def test_op_bytes_takes_scientific_notation_with_and_without_a_unit(capsys, written, nbytes):
    assert _op_json(capsys, "--bytes", written)["params"]["bytes"] == pytest.approx(nbytes, rel=1e-12)


def test_op_shapes_csv_takes_scientific_notation(tmp_path, capsys):
    import json

    from kinsim.cli import main

    from .conftest import HARDWARE

    shapes = tmp_path / "shapes.csv"
    shapes.write_text("bytes,gpus\n1e9,8\n2.5E+2 MB,4\n")
    assert main(["op", "allreduce", "--hw", str(HARDWARE / "h100.yaml"), "--shapes", str(shapes), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["params"]["bytes"] for r in rows] == [1e9, 250e6]


def test_a_quantity_override_in_scientific_notation_is_the_same_figure(capsys):
    base = _op_json(capsys, "--bytes", "1 GB")
    for written in ("3.35e3 GB/s", "3.35E+12 B/s"):
        same = _op_json(capsys, "--bytes", "1 GB", "--set", f"node.gpu_link.bandwidth={written}")
        assert same["time_s"] == _op_json(capsys, "--bytes", "1 GB", "--set",
                                          "node.gpu_link.bandwidth=3.35 TB/s")["time_s"]
        assert same["time_s"] != base["time_s"]  # the override took effect


def test_a_quantity_without_unit_in_a_file_is_one_line_naming_the_key(capsys):
    from kinsim.cli import main

    from .conftest import HARDWARE

    assert main(["op", "allreduce", "--hw", str(HARDWARE / "h100.yaml"), "--bytes", "1e9", "--gpus", "8",
                 "--set", "node.gpu_link.bandwidth=4.5e11"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "node.gpu_link.bandwidth: a bandwidth needs a unit, got '4.5e11'" in err
    assert '"4.5e11 B/s"' in err
