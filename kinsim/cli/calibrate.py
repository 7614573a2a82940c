"""``kinsim calibrate measure|import|fit|validate``: time reference kernels or import public measurements,
fit a calibration profile, check it.

``measure --out DIR [--quick]``: on a GPU machine, time the reference kernels (see
:mod:`kinsim.calibration.measure`; also ``python -m kinsim.calibration.measure`` where kinsim is not
installed).

``import aiconfigurator --system SYSTEM --framework FW [--version V] --out DIR``: convert the silicon
measurements shipped in the aiconfigurator-core package (pip install kinsim[aic]) into the same format
(see :mod:`kinsim.calibration.aiconfigurator`).

``fit DIR --hw HW -o PROFILE``: read ``DIR/measurements.csv`` (and ``metadata.json``), fit per kernel kind,
write a calibration profile YAML with its provenance. Reference it from a hardware file with
``calibration: PROFILE`` (a path relative to that file) and ``kinsim op`` and ``kinsim run`` use it.

``validate DIR --hw HW``: predicted against measured time per kernel and shape with the hardware's
calibration (or its constants when it has none): MAPE and worst case per kernel, optionally a CSV and a
plot.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from kinsim.errors import SpecError
from kinsim.outputs import Outputs

#: Rejected measurements named one by one per kernel kind; the rest are counted.
REJECTED_SHOWN = 5


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("calibrate", help="fit and validate kernel efficiency curves",
                                   description=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="calibrate_command", metavar="STEP", required=True)
    measure = commands.add_parser("measure", help="time the reference kernels on this machine's GPU",
                                  description="Time the reference Triton kernels over a grid of shapes with "
                                              "triton.testing.do_bench; write measurements.csv and metadata.json. "
                                              "Needs the calibrate extra and a CUDA GPU (or --cpu-smoke).")
    from kinsim.calibration.measure import add_arguments

    add_arguments(measure)
    measure.set_defaults(run=run_measure)
    imported = commands.add_parser("import", help="convert public silicon measurements into measurements.csv",
                                   description="Convert the measured kernel tables of the aiconfigurator-core "
                                               "package (one system and framework) into measurements.csv and "
                                               "metadata.json, with provenance. Needs pip install 'kinsim[aic]'.")
    imported.add_argument("source", choices=("aiconfigurator",), help="where the measurements come from")
    imported.add_argument("--system", required=True, help="system folder, e.g. h100_sxm")
    imported.add_argument("--framework", default="vllm", choices=("vllm", "sglang", "trtllm"),
                          help="serving framework whose kernels were measured (default vllm)")
    imported.add_argument("--version", default=None,
                          help="framework version of the attention and GEMM tables (default: the newest per op)")
    imported.add_argument("--data", default=None, metavar="DIR",
                          help="a folder in the package's systems/data layout instead of the installed package")
    imported.add_argument("--out", required=True, metavar="DIR", help="directory to write")
    imported.set_defaults(run=run_import)
    fit = commands.add_parser("fit", help="fit a calibration profile to measurements")
    fit.add_argument("directory", metavar="DIR", help="directory with measurements.csv (and metadata.json)")
    fit.add_argument("--hw", required=True, metavar="HW", help="hardware file of the measured GPU")
    fit.add_argument("-o", "--output", required=True, metavar="PROFILE", help="calibration profile YAML to write")
    fit.add_argument("--fill-from", metavar="PROFILE", default=None,
                     help="a profile fitted on another GPU: the kernel kinds these measurements lack take its "
                          "terms, transferred to this GPU (attention kinds only from the same attention kernels)")
    fit.set_defaults(run=run_fit)
    validate = commands.add_parser("validate", help="predicted against measured kernel times")
    validate.add_argument("directory", metavar="DIR", help="directory with measurements.csv")
    validate.add_argument("--hw", required=True, metavar="HW", help="hardware file (with its calibration)")
    validate.add_argument("--csv", metavar="PATH", default=None, help="write every row with its prediction")
    validate.add_argument("--plot", metavar="PATH", default=None, help="write predicted against measured (PNG/SVG)")
    validate.set_defaults(run=run_validate)


def run_measure(args: argparse.Namespace) -> int:
    from kinsim.calibration.measure import run

    with Outputs() as outputs:
        out = outputs.directory("--out", args.out)
        if args.cpu_smoke:  # Triton reads it when imported: set it before the import below
            os.environ.setdefault("TRITON_INTERPRET", "1")
        try:
            import torch  # noqa: F401
            import triton  # noqa: F401
        except ImportError as error:
            raise SpecError(f"needs torch and Triton ({error.name} is missing)", path="calibrate measure",
                            hint='pip install "kinsim[calibrate]"') from None
        outputs.write("--out", lambda directory: run(directory, args.quick, args.cpu_smoke))
    print(f"wrote {out / 'measurements.csv'}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    import sys

    from kinsim.calibration.aiconfigurator import import_tables

    with Outputs() as outputs:
        outputs.directory("--out", args.out)
        metadata = outputs.write("--out", lambda directory: import_tables(
            args.system, args.framework, directory, version=args.version, data=args.data,
            progress=lambda line: print(f"  {line}", file=sys.stderr)))
    rows = sum(t["rows"] for t in metadata["tables"])
    print(f"wrote {rows} rows from {len(metadata['tables'])} tables of {metadata['source']} to {args.out}")
    return 0


def run_fit(args: argparse.Namespace) -> int:
    with Outputs() as outputs:
        outputs.file("--output", args.output)
        fits, filled = _fit(args, outputs)
    print(f"{'kernel':<18} {'points':>6} {'held-out MAPE':>13}  terms")
    for fit in (fit for fit in fits if fit.curve is not None):
        c = fit.curve
        note = f"  ({c.note})" if c.note else ""
        print(f"{fit.kernel:<18} {c.points:>6} {c.held_out_mape:>12.2%}  {_terms(c)}{note}")
    for kind in filled:
        print(f"{kind:<18} {'-':>6} {'-':>13}  from {args.fill_from}, transferred (no measurements of this kind)")
    print(f"wrote {args.output}")
    return 0


def _fit(args: argparse.Namespace, outputs: Outputs) -> tuple[list, list[str]]:
    """Fit the measurements of ``args.directory`` and produce the profile (committed by the caller); return
    the fits and the kinds filled from ``--fill-from``."""
    from kinsim.calibration.fit import fill_missing, fit_profile
    from kinsim.calibration.measurements import read_measurements, read_metadata
    from kinsim.hardware.load import load_hardware
    from kinsim.schema import to_raw

    hw = load_hardware(args.hw)
    other = _profile_of(args.fill_from) if args.fill_from else None
    frame = read_measurements(args.directory)
    meta = read_metadata(args.directory)
    device = str(meta.get("device", hw.gpu.name))
    details = ", ".join(f"{k} {meta[k]}" for k in ("source", "driver", "torch", "triton", "date", "imported",
                                                   "copy_bandwidth", "gemm_flop_rate") if k in meta)
    if meta.get("tables"):
        details += "; tables: " + ", ".join(t["table"] for t in meta["tables"])
    source = f"kinsim calibrate fit of {Path(args.directory)} measured on {device}"
    source += f" ({details})" if details else ""
    try:
        lent = other.on_clock(hw.gpu.compute.clock).elementwise if other is not None else None
        profile, fits = fit_profile(frame, hw, source=source, device=device, elementwise=lent)
    except ValueError as error:
        raise SpecError(str(error), file=str(Path(args.directory) / "measurements.csv")) from None
    for fit in fits:
        for line in fit.rejected[:REJECTED_SHOWN]:
            print(f"kinsim: warning: rejected {line}")
        if len(fit.rejected) > REJECTED_SHOWN:
            print(f"kinsim: warning: rejected {len(fit.rejected) - REJECTED_SHOWN:,} more {fit.kernel} measurements "
                  f"for the same reason ({len(fit.rejected):,} in all)")
        if fit.skipped:
            print(f"kinsim: warning: not fitted: {fit.skipped}")
    filled = []
    if other is not None:
        profile, filled = fill_missing(profile, other, args.fill_from)
    text = ("# Written by kinsim calibrate fit: the terms of kinsim.cost.kernel_model per kernel kind and of\n"
            "# kinsim.cost.collective_model per all-reduce; shares are of the hardware file's peaks.\n")
    text += yaml.safe_dump(to_raw(profile), sort_keys=False)
    outputs.write_text("--output", text)
    return fits, filled


def _profile_of(path: str):
    """The calibration profile at ``path`` (``--fill-from``), validated; exit 2 naming it when it is not one."""
    from kinsim.hardware.spec import CalibrationSpec
    from kinsim.schema import build
    from kinsim.yamlio import read_with_extends

    if not Path(path).is_file():
        raise SpecError("calibration profile not found", path="--fill-from", value=path,
                        hint="a profile written by kinsim calibrate fit")
    raw = read_with_extends(path)
    if not isinstance(raw, dict):
        raise SpecError("expected a mapping (a profile written by kinsim calibrate fit)", file=path)
    return build(CalibrationSpec, raw, file=path)


#: How ``fit`` prints each term: (scale, unit).
_TERM_UNITS = {"kernel_floor": (1e6, "us"), "combine_floor": (1e6, "us"), "per_sequence": (1e9, "ns"),
               "item_cost": (1e6, "us"), "item_bandwidth": (1e-9, "GB/s"), "small_latency": (1e6, "us"),
               "small_per_peer": (1e6, "us"), "large_latency": (1e6, "us"), "large_per_peer": (1e6, "us")}


def _terms(curve) -> str:
    """The fitted terms of a curve, one line, with units."""
    from dataclasses import fields

    parts = []
    for f in fields(curve):
        value = getattr(curve, f.name)
        if f.name in ("points", "held_out_mape", "note") or not isinstance(value, float) or value == 0.0:
            continue
        scale, unit = _TERM_UNITS.get(f.name, (1.0, ""))
        parts.append(f"{f.name} {value * scale:.3g}{' ' + unit if unit else ''}")
    return ", ".join(parts)


def run_validate(args: argparse.Namespace) -> int:
    with Outputs() as outputs:
        outputs.file("--csv", args.csv)
        outputs.file("--plot", args.plot, figure=True)
        lines = _validate(args, outputs)
    print("\n".join(lines))  # after the outputs are in place: a failed write prints only its error
    return 0


def _validate(args: argparse.Namespace, outputs: Outputs) -> list[str]:
    """The table of errors per kernel; produces the outputs (committed by the caller)."""
    from kinsim.calibration.measurements import read_measurements
    from kinsim.calibration.validate import errors_by_kernel, plot_validation, predictions
    from kinsim.hardware.load import load_hardware

    hw = load_hardware(args.hw)
    table = predictions(read_measurements(args.directory), hw)
    source = "calibration profile" if hw.calibration is not None else "constant efficiencies (no calibration)"
    header = (f"{'kernel':<18} {'impl':<24} {'points':>6} {'MAPE':>7} {'worst':>8}  "
              f"{'held out':>8} {'MAPE':>7}  worst row")
    lines = [f"{hw.name} with its {source}", header]
    for e in errors_by_kernel(table):
        held = f"{e.held_points:>8} {e.held_mape:>7.2%}" if e.held_mape is not None else f"{'-':>8} {'-':>7}"
        lines.append(f"{e.kernel:<18} {e.impl:<24} {e.points:>6} {e.mape:>7.2%} {e.worst:>8.2%}  {held}  "
                     f"{e.worst_row + 2}")
    if args.csv:
        outputs.write("--csv", lambda p: table.to_csv(p, index=False))
    if args.plot:
        outputs.write_figure("--plot", plot_validation(table, f"{hw.name}: predicted against measured ({source})"))
    return lines
