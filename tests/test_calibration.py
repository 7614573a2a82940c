"""Calibration without a GPU: the fitter recovers known curves from synthetic measurements, the profile
plugs into the hardware file, and the validator's figures are what they should be."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kinsim import load_hardware
from kinsim.calibration.fit import fit_kernel
from kinsim.calibration.measurements import read_measurements
from kinsim.calibration.validate import errors_by_kernel, predictions
from kinsim.cli import main
from kinsim.cost.efficiency import predict_time
from kinsim.cost.roofline import RooflineCost
from kinsim.errors import SpecError
from kinsim.hardware.spec import KernelCurveSpec
from kinsim.ops.layers import gemm_op

from .conftest import HARDWARE

H100 = load_hardware(HARDWARE / "h100.yaml")
PEAK, BANDWIDTH, LAUNCH = H100.peak("bf16"), H100.gpu.memory.bandwidth, H100.gpu.launch_overhead
GEMM = KernelCurveSpec(compute_max=0.75, flops_half=2e9, memory_max=0.85, bytes_half=4e6)
DECODE = KernelCurveSpec(compute_max=0.6, flops_half=0.0, memory_max=0.88, bytes_half=2.5e7)


def gemm_shapes():
    """Qwen3 projection shapes (N x K) at M from 1 to 16,384: both sides of the ridge."""
    rows = []
    for m in 2 ** np.arange(15):
        for n, k in [(6144, 4096), (4096, 4096), (24576, 4096), (4096, 12288), (1024, 1024), (151936, 4096)]:
            rows.append((2.0 * m * n * k, 2.0 * (n * k + m * k + m * n)))
    return np.array(rows).T


def decode_shapes():
    """Decode attention, Qwen3-8B heads (32 query, 8 KV, 128 dims), batch 1-256, context 128-131,072."""
    rows = []
    for batch in (1, 4, 16, 64, 256):
        for context in 2 ** np.arange(7, 18):
            tokens = batch * context
            rows.append((4.0 * 32 * 128 * tokens, 2 * 8 * 128 * 2.0 * tokens + batch * 2 * 32 * 128 * 2.0))
    return np.array(rows).T


def synthetic(curve, flops, nbytes, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return predict_time(curve, flops, nbytes, PEAK, BANDWIDTH, LAUNCH) * rng.lognormal(0.0, noise, len(flops))


def test_fitter_recovers_gemm_curves_within_2_percent():
    flops, nbytes = gemm_shapes()
    fit = fit_kernel("gemm", flops, nbytes, synthetic(GEMM, flops, nbytes), H100)
    for name in ("compute_max", "flops_half", "memory_max", "bytes_half"):
        assert getattr(fit.curve, name) == pytest.approx(getattr(GEMM, name), rel=0.02), name
    assert 0 < fit.curve.held_out_mape < 0.02  # 1% noise
    assert fit.curve.points == len(flops) - len(flops) // 5 and fit.rejected == []


def test_fitter_recovers_a_memory_bound_kernel_and_says_what_it_could_not_fit():
    flops, nbytes = decode_shapes()
    fit = fit_kernel("attention_decode", flops, nbytes, synthetic(DECODE, flops, nbytes, seed=1), H100)
    assert fit.curve.memory_max == pytest.approx(DECODE.memory_max, rel=0.02)
    assert fit.curve.bytes_half == pytest.approx(DECODE.bytes_half, rel=0.02)
    assert fit.curve.compute_max == H100.efficiency.attention_compute and fit.curve.flops_half == 0
    assert "compute side never bound" in fit.curve.note


def test_measurements_faster_than_the_ceilings_are_rejected():
    flops, nbytes = gemm_shapes()
    times = synthetic(GEMM, flops, nbytes)
    times[3] = LAUNCH + nbytes[3] / (2 * BANDWIDTH)  # twice the HBM bandwidth: impossible
    fit = fit_kernel("gemm", flops, nbytes, times, H100)
    assert len(fit.rejected) == 1 and "faster than the ceilings" in fit.rejected[0]
    assert fit.curve.memory_max == pytest.approx(GEMM.memory_max, rel=0.02)


def write_measurements(directory: Path) -> Path:
    directory.mkdir()
    g_flops, g_bytes = gemm_shapes()
    d_flops, d_bytes = decode_shapes()
    frame = pd.concat([
        pd.DataFrame({"kernel": "gemm", "impl": "torch.matmul", "flops": g_flops, "bytes": g_bytes,
                      "time_s": synthetic(GEMM, g_flops, g_bytes, seed=2)}),
        pd.DataFrame({"kernel": "attention_decode", "impl": "triton", "flops": d_flops, "bytes": d_bytes,
                      "time_s": synthetic(DECODE, d_flops, d_bytes, seed=3)}),
    ])
    frame.to_csv(directory / "measurements.csv", index=False)
    (directory / "metadata.json").write_text(json.dumps({"device": "NVIDIA H100 (synthetic)", "date": "2026-11-28"}))
    return directory


def test_fit_writes_a_profile_a_hardware_file_uses_and_validate_scores_it(tmp_path: Path, capsys):
    measured = write_measurements(tmp_path / "measured")
    profile = tmp_path / "h100-profile.yaml"
    assert main(["calibrate", "fit", str(measured), "--hw", str(HARDWARE / "h100.yaml"), "-o", str(profile)]) == 0
    out = capsys.readouterr().out
    assert "gemm" in out and "attention_decode" in out and "wrote" in out
    hw_file = tmp_path / "h100-calibrated.yaml"
    hw_file.write_text(f"extends: {HARDWARE / 'h100.yaml'}\nname: h100-calibrated\ncalibration: {profile.name}\n")
    hw = load_hardware(hw_file)
    assert hw.calibration.device == "NVIDIA H100 (synthetic)"
    assert hw.calibration.gemm.memory_max == pytest.approx(GEMM.memory_max, rel=0.02)
    assert "measured on NVIDIA H100 (synthetic)" in hw.calibration.source
    # the roofline now prices a GEMM with the fitted curve
    op = gemm_op("qkv_proj", 64, 6144, 4096, weight_dtype="bf16")
    expected = predict_time(hw.calibration.gemm, op.flops, op.bytes, PEAK, BANDWIDTH, LAUNCH)
    assert float(RooflineCost(hw).op_cost(op).time_s) == pytest.approx(float(expected), rel=1e-12)
    assert float(RooflineCost(H100).op_cost(op).time_s) != pytest.approx(float(expected), rel=1e-3)
    # validation: predictions from the profile, errors by hand
    table_path = tmp_path / "validation.csv"
    assert main(["calibrate", "validate", str(measured), "--hw", str(hw_file), "--csv", str(table_path),
                 "--plot", str(tmp_path / "validation.png")]) == 0
    table = pd.read_csv(table_path)
    row = table.iloc[10]
    curve = hw.calibration.curve(row["kernel"])
    by_hand = float(predict_time(curve, row["flops"], row["bytes"], PEAK, BANDWIDTH, LAUNCH))
    assert row["predicted_s"] == pytest.approx(by_hand, rel=1e-9)
    assert row["error"] == pytest.approx((by_hand - row["time_s"]) / row["time_s"], rel=1e-6)
    errors = {e.kernel: e for e in errors_by_kernel(predictions(read_measurements(measured), hw))}
    assert errors["gemm"].mape < 0.02 and errors["attention_decode"].mape < 0.02
    assert errors["gemm"].worst >= errors["gemm"].mape
    assert (tmp_path / "validation.png").read_bytes()[:4] == b"\x89PNG"


def test_validation_of_constant_efficiencies_shows_their_error(tmp_path: Path):
    measured = write_measurements(tmp_path / "measured")
    errors = {e.kernel: e for e in errors_by_kernel(predictions(read_measurements(measured), H100))}
    assert errors["gemm"].mape > 0.05  # the constants miss the small-kernel fixed costs


@pytest.mark.parametrize("csv, words", [
    ("kernel,flops,bytes,time_s\ngemm,1e9,1e6,-1\n", ["row 2.time_s", "positive"]),
    ("kernel,flops,bytes,time_s\nconv,1e9,1e6,1e-3\n", ["row 2.kernel", "must be one of", "conv"]),
    ("kernel,flops,time_s\ngemm,1e9,1e-3\n", ["bytes", "missing column"]),
])
def test_bad_measurement_files_are_exit_2(tmp_path: Path, capsys, csv, words):
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "measurements.csv").write_text(csv)
    out = tmp_path / "p.yaml"
    assert main(["calibrate", "fit", str(directory), "--hw", str(HARDWARE / "h100.yaml"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words), err
    assert not out.exists()


def test_a_missing_profile_is_named(tmp_path: Path):
    hw_file = tmp_path / "hw.yaml"
    hw_file.write_text(f"extends: {HARDWARE / 'h100.yaml'}\ncalibration: nowhere.yaml\n")
    with pytest.raises(SpecError, match="calibration profile not found") as error:
        load_hardware(hw_file)
    assert error.value.path == "calibration"


def test_a_profile_is_found_from_the_file_that_names_it_or_from_an_override(tmp_path: Path, monkeypatch):
    measured = write_measurements(tmp_path / "measured")
    (tmp_path / "profiles").mkdir()
    profile = tmp_path / "profiles" / "p.yaml"
    assert main(["calibrate", "fit", str(measured), "--hw", str(HARDWARE / "h100.yaml"), "-o", str(profile)]) == 0
    # named in a parent file, relative to the parent's folder; the child lives elsewhere
    parent = tmp_path / "profiles" / "parent.yaml"
    parent.write_text(f"extends: {HARDWARE / 'h100.yaml'}\ncalibration: p.yaml\n")
    (tmp_path / "child").mkdir()
    child = tmp_path / "child" / "child.yaml"
    child.write_text(f"extends: {parent}\nname: child\n")
    assert load_hardware(child).calibration.device == "NVIDIA H100 (synthetic)"
    # given as an override (as with --set hw.calibration=...), relative to the working directory
    monkeypatch.chdir(tmp_path)
    hw = load_hardware(HARDWARE / "h100.yaml", {"calibration": "profiles/p.yaml"})
    assert hw.calibration.device == "NVIDIA H100 (synthetic)"
    assert load_hardware(HARDWARE / "h100.yaml").calibration is None


def test_the_quick_grid_gives_every_kernel_kind_enough_rows_to_fit():
    from kinsim.calibration.fit import MIN_POINTS, fit_profile
    from kinsim.calibration.measure import attention_work, gemm_work, grid

    curves = {"gemm": GEMM, "attention_decode": DECODE, "attention_sparse": DECODE, "selection": DECODE}
    rows = []
    shapes = grid(quick=True)
    for kind in ("attention_decode", "attention_sparse"):
        for shape in shapes[kind]:
            rows += [(kernel, flops, nbytes) for kernel, flops, nbytes in attention_work(kind, shape)]
    rows += [("gemm", *gemm_work(shape)) for shape in shapes["gemm"]]
    frame = pd.DataFrame(rows, columns=["kernel", "flops", "bytes"]).assign(impl="triton")
    counts = frame["kernel"].value_counts()
    assert set(counts.index) == set(curves) and counts.min() >= MIN_POINTS + 1  # one is held out
    frame["time_s"] = [float(synthetic(curves[k], np.array([f]), np.array([b]), seed=i)[0])
                       for i, (k, f, b) in enumerate(zip(frame["kernel"], frame["flops"], frame["bytes"]))]
    profile, fits = fit_profile(frame, H100, source="synthetic quick grid", device="none")
    assert [fit.skipped for fit in fits] == [""] * 4
    assert all(profile.curve(kind) is not None for kind in curves)


def test_a_kernel_kind_with_too_few_rows_keeps_the_constants_and_the_rest_is_fitted(tmp_path: Path, capsys):
    measured = write_measurements(tmp_path / "measured")
    frame = pd.read_csv(measured / "measurements.csv")
    extra = pd.DataFrame({"kernel": "selection", "impl": "triton", "flops": [1e6, 2e6], "bytes": [1e7, 2e7],
                          "time_s": [3e-5, 5e-5]})
    pd.concat([frame, extra]).to_csv(measured / "measurements.csv", index=False)
    profile = tmp_path / "p.yaml"
    assert main(["calibrate", "fit", str(measured), "--hw", str(HARDWARE / "h100.yaml"), "-o", str(profile)]) == 0
    out = capsys.readouterr().out
    assert "not fitted: selection: 2 usable measurements, at least 4 are needed" in out
    hw = load_hardware(HARDWARE / "h100.yaml", {"calibration": str(profile)})
    assert hw.calibration.curve("selection") is None and hw.calibration.curve("gemm") is not None


def test_each_row_is_fitted_against_the_peak_of_its_own_data_type():
    from kinsim.calibration.fit import fit_profile

    flops, nbytes = gemm_shapes()
    fp8_peak = H100.peak("fp8")
    assert fp8_peak == 1979e12 and PEAK == 989e12  # hardware/h100.yaml, from the H100 SXM datasheet (dense)
    times = predict_time(GEMM, flops, nbytes, fp8_peak, BANDWIDTH, LAUNCH)
    frame = pd.DataFrame({"kernel": "gemm", "impl": "triton", "dtype": "fp8", "flops": flops, "bytes": nbytes,
                          "time_s": times})
    profile, fits = fit_profile(frame, H100, source="synthetic fp8", device="none")
    assert fits[0].rejected == []  # against the bf16 peak the fast fp8 rows would be impossible
    assert profile.gemm.compute_max == pytest.approx(GEMM.compute_max, rel=0.02)
    assert profile.gemm.flops_half == pytest.approx(GEMM.flops_half, rel=0.02)
