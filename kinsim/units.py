"""Physical quantities: parsed once at the edge into SI floats, formatted back with units for people.

YAML files write quantities as strings with a unit (``"3.35 TB/s"``, ``"80 GiB"``, ``"989 TFLOP/s"``).
:func:`parse_quantity` turns such a string into a float in the kind's base unit and everything inside
kinsim works in those base units:

=========== ============ =========================================================================
kind        base unit    accepted units
=========== ============ =========================================================================
bytes       B            B, KB, MB, GB, TB, PB (powers of 1000); KiB, MiB, GiB, TiB (powers of 1024)
bandwidth   B/s          the byte units per second (GB/s, TiB/s, ...); bit/s, Kbit/s ... Tbit/s, Gbps
flop_rate   FLOP/s       FLOP/s, KFLOP/s, MFLOP/s, GFLOP/s, TFLOP/s, PFLOP/s (also written TFLOPS)
time        s            ns, us (or µs), ms, s, min, h
frequency   Hz (1/s)     Hz, kHz, MHz, GHz, /s, /min, /h (so an arrival rate reads "0.5 /s")
power       W            mW, W, kW
price       $/s          $/h, $/hour, $/s
=========== ============ =========================================================================

Decimal prefixes mean powers of 1000 and binary prefixes powers of 1024, as in IEC 80000-13: vendors
quote HBM capacity in decimal GB on some datasheets and binary GiB on others, so each hardware file
writes the unit its source uses.
"""

from __future__ import annotations

import math
import re

from kinsim.errors import SpecError

_DECIMAL = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}


def _byte_units() -> dict[str, float]:
    units = {f"{p}B": f for p, f in _DECIMAL.items()}
    units.update({f"{p}B": f for p, f in _BINARY.items()})
    units["kB"] = 1e3
    return units


def _bandwidth_units() -> dict[str, float]:
    units = {f"{u}/s": f for u, f in _byte_units().items()}
    for p, f in _DECIMAL.items():
        units[f"{p}bit/s"] = f / 8
        units[f"{p}b/s"] = f / 8
        if p:
            units[f"{p}bps"] = f / 8
    return units


def _flop_rate_units() -> dict[str, float]:
    units = {}
    for p, f in _DECIMAL.items():
        units[f"{p}FLOP/s"] = f
        units[f"{p}FLOPS"] = f
    return units


#: For each kind: its base unit, an example shown in error messages, and unit -> factor to base unit.
UNITS: dict[str, tuple[str, str, dict[str, float]]] = {
    "bytes": ("B", '"80 GiB"', _byte_units()),
    "bandwidth": ("B/s", '"3.35 TB/s"', _bandwidth_units()),
    "flop_rate": ("FLOP/s", '"989 TFLOP/s"', _flop_rate_units()),
    "time": ("s", '"4 us"', {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0,
                             "h": 3600.0}),
    "frequency": ("Hz", '"1830 MHz"', {"Hz": 1.0, "kHz": 1e3, "MHz": 1e6, "GHz": 1e9, "/s": 1.0,
                                       "/min": 1 / 60, "/h": 1 / 3600}),
    "power": ("W", '"700 W"', {"mW": 1e-3, "W": 1.0, "kW": 1e3}),
    "price": ("$/s", '"2.50 $/h"', {"$/h": 1 / 3600, "$/hour": 1 / 3600, "$/s": 1.0}),
}

#: Words used in messages ("expected a bandwidth like ...").
_NOUN = {
    "bytes": "a size",
    "bandwidth": "a bandwidth",
    "flop_rate": "a compute rate",
    "time": "a time",
    "frequency": "a frequency",
    "power": "a power",
    "price": "a price",
}

#: A number (decimal or scientific notation: ``1e9``, ``1.5E+3``, ``2e-3``; thousands separated by commas
#: in groups of three, as reports print them: ``1,000``), then an optional unit. The number is matched
#: greedily first, so ``1e9`` is the number 10^9 and never 1 with a unit ``e9``.
_NUMBER_THEN_UNIT = re.compile(
    r"^\s*([+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$")


def parse_quantity(kind: str, text: object, *, path: str = "", file: str | None = None,
                   bare: bool = False) -> float:
    """Parse ``text`` such as ``"3.35 TB/s"`` or ``"1.5e3 GB"`` into a float in the base unit of ``kind``.

    The number may be written in scientific notation. A number without a unit is the base unit only
    where ``bare`` is true (a command-line size such as ``kinsim op --bytes 1e9``); in files a quantity
    needs its unit, since ``3350`` could mean GB/s or MB/s. Raises :class:`SpecError` naming ``path`` and
    ``file`` when ``text`` is not a string, has no or an unknown unit, or is not finite. The sign is not
    checked here; the spec's rules do that.
    """
    if kind not in UNITS:
        raise ValueError(f"unknown quantity kind {kind!r}")
    base, example, table = UNITS[kind]
    rule = f"expected {_NOUN[kind]} like {example}"
    if isinstance(text, bool) or not isinstance(text, str):
        raise SpecError(rule, path=path, value=text, file=file,
                        hint="write the number and its unit as one string")
    match = _NUMBER_THEN_UNIT.match(text)
    if not match:
        raise SpecError(rule, path=path, value=text, file=file)
    number, unit = match.groups()
    unit = unit.replace(" ", "")
    if not unit and bare:
        unit = base
    elif not unit:
        raise SpecError(f"{_NOUN[kind]} needs a unit", path=path, value=text, file=file,
                        hint=f'write its unit after the number, e.g. "{number} {base}"')
    if unit not in table:
        raise SpecError(
            f"unknown unit {unit!r} for {_NOUN[kind]}", path=path, value=text, file=file,
            hint="use one of " + ", ".join(_preferred_units(kind)),
        )
    value = float(number.replace(",", "")) * table[unit]
    if not math.isfinite(value):
        raise SpecError(f"{_NOUN[kind]} must be finite", path=path, value=text, file=file)
    return value


def _preferred_units(kind: str) -> list[str]:
    table = UNITS[kind][2]
    return [u for u in table if not u.endswith("FLOPS") and "b/s" not in u and u != "kB"]


#: Units used when formatting, largest first; a value is shown in the largest that keeps it >= 1. Besides
#: the kinds of :data:`UNITS`, ``energy`` (J) and ``flop`` (a count of FLOPs) are formatted for reports.
_FORMAT_LADDER = {
    # Decimal, as datasheets quote HBM ("80 GB"); exact_quantity keeps every byte for round trips.
    "bytes": [("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1.0)],
    "bandwidth": [("PB/s", 1e15), ("TB/s", 1e12), ("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3), ("B/s", 1.0)],
    "flop_rate": [("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6),
                  ("FLOP/s", 1.0)],
    "flop": [("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("FLOP", 1.0)],
    "time": [("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)],
    "frequency": [("GHz", 1e9), ("MHz", 1e6), ("kHz", 1e3), ("Hz", 1.0)],
    "power": [("kW", 1e3), ("W", 1.0), ("mW", 1e-3)],
    "price": [("$/h", 1 / 3600)],
    "energy": [("MWh", 3.6e9), ("kWh", 3.6e6), ("Wh", 3600.0)],
}


def format_number(value: float, digits: int = 4) -> str:
    """A plain number for people: thousands separators, ``digits`` significant digits after the point but
    every digit before it, trailing zeros dropped. ``format_number(11637.4)`` is ``"11,637"``,
    ``format_number(0.012346)`` is ``"0.01235"``; never exponent notation above 10^-6."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -6:
        return f"{value:.{digits}g}"
    text = f"{value:,.{max(0, digits - 1 - magnitude)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _ladder_unit(kind: str, value: float, digits: int) -> tuple[str, float]:
    ladder = _FORMAT_LADDER[kind]
    rounded = abs(float(f"{value:.{digits}g}"))  # 999.96 GB rounds to 1 TB, not "1,000 GB"
    if rounded == 0:  # "0 s", not "0 ns"
        return next(((u, f) for u, f in ladder if f == 1.0), ladder[-1])
    for unit, factor in ladder:
        if rounded >= factor * (1 - 1e-12):
            return unit, factor
    return ladder[-1]


def format_quantity(kind: str, value: float, digits: int = 4) -> str:
    """Format an SI ``value`` of ``kind`` for people: ``format_quantity("bandwidth", 3.35e12)`` is
    ``"3.35 TB/s"``. The largest prefix that keeps the number at least 1, ``digits`` significant digits
    (:func:`format_number`)."""
    if not math.isfinite(value):
        return f"{value} {UNITS[kind][0] if kind in UNITS else _FORMAT_LADDER[kind][-1][0]}"
    unit, factor = _ladder_unit(kind, value, digits)
    return f"{format_number(value / factor, digits)} {unit}"


def readable_quantity(kind: str, value: float) -> str:
    """An SI ``value`` as a person would write it in a file, without rounding away a figure: 12
    significant digits, and binary prefixes for a size that is a whole number of them
    (85899345920 B is ``"80 GiB"``, 8e10 B ``"80 GB"``). For reports that show a run's inputs."""
    text = format_quantity(kind, value, digits=12).replace(",", "")
    if kind == "bytes" and value > 0 and value == int(value):
        for prefix, factor in reversed(list(_BINARY.items())):
            if value >= factor and value % factor == 0:
                binary = f"{int(value // factor)} {prefix}B"
                return binary if len(binary) < len(text) else text
    return text


#: How figures measured in each unit of the metric reference (``kinsim.metrics.METRIC_DOCS``) are shown.
_FIGURE_KINDS = {"s": "time", "replica-seconds": "time", "B": "bytes", "B/s": "bandwidth", "FLOP/s": "flop_rate",
                 "FLOP": "flop", "J": "energy", "W": "power", "Hz": "frequency"}


def figure_kind(unit: str) -> str | None:
    """The quantity kind :func:`format_quantity` shows a figure in ``unit`` as (``"B"``: ``"bytes"``), or
    ``None`` for counts, rates of things and fractions."""
    return _FIGURE_KINDS.get(unit)


def format_figure(unit: str, value: float | None, digits: int = 4) -> str:
    """A figure of a run (or any value) in ``unit`` for tables and reports, ``"-"`` for ``None``: quantities
    with SI prefixes (``"54.83 GB"``, ``"45.6 ms"``, ``"1.2 kWh"``), fractions as percentages, dollars
    with a ``$``, rates per second with their unit (``"11,637 tokens/s"``), counts as plain numbers."""
    if value is None:
        return "-"
    if unit in _FIGURE_KINDS:
        return format_quantity(_FIGURE_KINDS[unit], value, digits)
    if unit == "fraction":
        return f"{format_number(value * 100, digits - 1)}%"
    if unit == "$":
        return f"${format_number(value, digits)}"
    if unit.endswith("/s"):
        return f"{format_number(value, digits)} {unit}"
    return format_number(value, digits)


def quantity_kind(text: object) -> str | None:
    """The kind whose unit ``text`` (``"4 TB/s"``) is written in, or ``None`` when it is no quantity."""
    if not isinstance(text, str):
        return None
    match = _NUMBER_THEN_UNIT.match(text)
    if not match or not match.group(2):
        return None
    unit = match.group(2).replace(" ", "")
    return next((kind for kind, (_, _, table) in UNITS.items() if unit in table), None)


def axis_unit(kind: str, values: list[float]) -> tuple[str, float]:
    """The unit and its factor to label an axis of ``values`` of ``kind``: the one the largest value is
    shown in (``[2e12, 5e12]`` bandwidths: ``("TB/s", 1e12)``)."""
    largest = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    return _ladder_unit(kind, largest, 4)


def exact_quantity(kind: str, value: float) -> str:
    """A lossless string for an SI ``value``: ``parse_quantity(kind, exact_quantity(kind, v)) == v``.

    Used when a spec is written back to a mapping (overrides, content hashes), where no digit may be
    lost."""
    return f"{value!r} {UNITS[kind][0]}"
