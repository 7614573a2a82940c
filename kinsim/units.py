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

_NUMBER_THEN_UNIT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S.*?)\s*$")


def parse_quantity(kind: str, text: object, *, path: str = "", file: str | None = None) -> float:
    """Parse ``text`` such as ``"3.35 TB/s"`` into a float in the base unit of ``kind``.

    Raises :class:`SpecError` naming ``path`` and ``file`` when ``text`` is not a string, has no or an
    unknown unit, or is not finite. The sign is not checked here; the spec's rules do that.
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
    if unit not in table:
        raise SpecError(
            f"unknown unit {unit!r} for {_NOUN[kind]}", path=path, value=text, file=file,
            hint="use one of " + ", ".join(_preferred_units(kind)),
        )
    value = float(number) * table[unit]
    if not math.isfinite(value):
        raise SpecError(f"{_NOUN[kind]} must be finite", path=path, value=text, file=file)
    return value


def _preferred_units(kind: str) -> list[str]:
    table = UNITS[kind][2]
    return [u for u in table if not u.endswith("FLOPS") and "b/s" not in u and u != "kB"]


#: Units used when formatting, largest first; a value is shown in the largest that keeps it >= 1.
_FORMAT_LADDER = {
    # Decimal, as datasheets quote HBM ("80 GB"); exact_quantity keeps every byte for round trips.
    "bytes": [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1.0)],
    "bandwidth": [("TB/s", 1e12), ("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3), ("B/s", 1.0)],
    "flop_rate": [("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6),
                  ("FLOP/s", 1.0)],
    "time": [("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)],
    "frequency": [("GHz", 1e9), ("MHz", 1e6), ("kHz", 1e3), ("Hz", 1.0)],
    "power": [("kW", 1e3), ("W", 1.0), ("mW", 1e-3)],
    "price": [("$/h", 1 / 3600)],
}


def format_quantity(kind: str, value: float, digits: int = 4) -> str:
    """Format an SI ``value`` of ``kind`` for people: ``format_quantity("bandwidth", 3.35e12)`` is
    ``"3.35 TB/s"``. Uses ``digits`` significant digits; trailing zeros are dropped."""
    ladder = _FORMAT_LADDER[kind]
    unit, factor = ladder[-1]
    for unit_name, unit_factor in ladder:
        if abs(value) >= unit_factor * (1 - 1e-12):
            unit, factor = unit_name, unit_factor
            break
    scaled = value / factor
    return f"{scaled:.{digits}g} {unit}"


def exact_quantity(kind: str, value: float) -> str:
    """A lossless string for an SI ``value``: ``parse_quantity(kind, exact_quantity(kind, v)) == v``.

    Used when a spec is written back to a mapping (overrides, content hashes), where no digit may be
    lost."""
    return f"{value!r} {UNITS[kind][0]}"
