"""``kinsim op KIND --hw HW ...``: price one operator, or many shapes from a CSV, on one GPU."""

from __future__ import annotations

import argparse
import csv
import json
from typing import Any

from kinsim.cli.options import add_set_option, overrides_of
from kinsim.cost.registry import COST_MODELS
from kinsim.errors import SpecError
from kinsim.hardware import load_hardware
from kinsim.pricing import OP_KINDS, price_resolved, resolve_params
from kinsim.reading import csv_rows_checked, read_text
from kinsim.units import format_quantity as fq


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "op", help="price one operator (or a whole decode step) on one GPU",
        description="Price an operator with the roofline or Kinetics cost model. Flags give one shape; "
                    "--shapes FILE.csv prices many (columns are the flag names with _ for -; flags on the "
                    "command line fill columns a row leaves out).")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind in OP_KINDS.values():
        sub = kinds.add_parser(kind.name, help=kind.help, description=kind.help)
        sub.add_argument("--hw", required=True, metavar="HW", help="hardware file")
        for param in kind.params:
            default = "" if param.default in (None, "", 0) and param.kind != "size" else param.default
            suffix = f" (default {default})" if default not in ("", None) else ""
            sub.add_argument(param.flag, dest=param.name, metavar=param.name.upper(), default=None,
                             help=param.help + suffix)
        sub.add_argument("--shapes", metavar="CSV", help="price every row of a CSV of shapes")
        sub.add_argument("--cost-model", default="roofline", choices=sorted(COST_MODELS),
                         help="cost model (default roofline)")
        sub.add_argument("--json", action="store_true", help="print JSON (one object per line with --shapes)")
        add_set_option(sub)
        sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    hw = load_hardware(args.hw, overrides_of(args))
    spec = OP_KINDS[args.kind]
    given = {p.name: getattr(args, p.name) for p in spec.params if getattr(args, p.name) is not None}
    if args.shapes:
        results = [price_resolved(args.kind, params, hw, args.cost_model)
                   for params in _shape_rows(args.kind, args.shapes, given, hw)]
    else:
        results = [price_resolved(args.kind, resolve_params(args.kind, given, hw=hw), hw, args.cost_model)]
    if args.json:
        for result in results:
            print(json.dumps(result))
    elif args.shapes:
        print("\n".join(_table(results)))
    else:
        print("\n".join(_lines(results[0])))
    return 0


def _shape_rows(kind: str, path: str, given: dict[str, Any], hw) -> list[dict[str, Any]]:
    text = read_text(path, "csv")
    reader = csv.DictReader(text.splitlines())
    try:
        header = reader.fieldnames
    except csv.Error as error:
        raise SpecError(f"is not valid CSV ({error})", path="line 1", file=path) from None
    if not header:
        raise SpecError("is empty, expected a header row", file=path)
    rows = []
    for number, row in enumerate(csv_rows_checked(reader, path), start=2):
        if None in row:
            raise SpecError("has more cells than the header", path=f"line {number}", file=path)
        values = {**given, **{k.strip(): v.strip() for k, v in row.items() if v is not None and v.strip()}}
        rows.append(resolve_params(kind, values, file=path, where=f"line {number}.", flag_names=False, hw=hw))
    if not rows:
        raise SpecError("holds no shapes", file=path)
    return rows


def _lines(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r['kind']} on {r['hardware']} ({r['cost_model']}): {fq('time', r['time_s'])}, {r['bound']}-bound",
        f"  FLOPs {fq('flop', r['flops'])}, HBM bytes {fq('bytes', r['bytes'])}, "
        f"link bytes {fq('bytes', r['link_bytes'])}",
        "  terms: " + ", ".join(f"{t} {fq('time', r[t + '_s'])}" for t in ("compute", "memory", "network", "latency")),
    ]
    if "ops" in r:
        lines.append("  by class: " + ", ".join(f"{c} {fq('time', t)}" for c, t in r["by_class"].items() if t))
        width = max(len(o["name"]) for o in r["ops"])
        for o in r["ops"]:
            lines.append(f"    {o['name']:<{width}}  x{o['count']:<3} {fq('time', o['time_s']):>10}  {o['bound']}")
    return lines


def _table(results: list[dict[str, Any]]) -> list[str]:
    names = list(results[0]["params"])
    header = names + ["time", "bound"]
    rows = [[str(r["params"][n]) for n in names] + [fq("time", r["time_s"]), r["bound"]] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return out
