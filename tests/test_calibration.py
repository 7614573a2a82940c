"""Calibration without a GPU: the fitter recovers known curves from synthetic measurements, the profile
plugs into the hardware file, and the validator's figures are what they should be."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kinsim import load_hardware
from kinsim.calibration.fit import fit_kernel, fit_profile
from kinsim.calibration.measurements import read_measurements
from kinsim.calibration.rows import predict_kernel
from kinsim.calibration.validate import errors_by_kernel, plot_end_to_end, predictions
from kinsim.cli import main
from kinsim.cost.kernel_model import kernel_time
from kinsim.cost.roofline import RooflineCost
from kinsim.errors import SpecError
from kinsim.hardware.spec import KernelCurveSpec
from kinsim.ops.kernel_work import kernel_work
from kinsim.ops.layers import gemm_op

from .conftest import HARDWARE

# the datasheet H100: fits are shares of its peaks, whatever profile the shipped file references
H100 = load_hardware(HARDWARE / "h100.yaml", {"calibration": None})
PEAK, BANDWIDTH, LAUNCH = H100.peak("bf16"), H100.gpu.memory.bandwidth, H100.gpu.launch_overhead
GEMM = KernelCurveSpec(compute_max=0.75, memory_max=0.85, kernel_floor=3e-6, combine_floor=1.5e-6,
                       item_compute_share=0.9, item_bandwidth=4e10)
DECODE = KernelCurveSpec(compute_max=0.6, memory_max=0.9, kernel_floor=5e-6, combine_floor=1e-6, per_sequence=1e-8,
                         item_cost=2e-6, item_bandwidth=1.5e11)


def gemm_rows() -> pd.DataFrame:
    """Qwen3 projection shapes (N x K) at M from 1 to 16,384: both sides of the ridge."""
    rows = []
    for m in 2 ** np.arange(15):
        for n, k in [(6144, 4096), (4096, 4096), (24576, 4096), (4096, 12288), (1024, 1024), (151936, 4096)]:
            op = gemm_op("g", int(m), n, k, weight_dtype="bf16")
            rows.append({"kernel": "gemm", "impl": "torch.matmul", "dtype": "bf16", "m": int(m), "n": n, "k": k,
                         "flops": op.flops, "bytes": op.bytes})
    return pd.DataFrame(rows)


def decode_rows() -> pd.DataFrame:
    """Decode attention, Qwen3-8B heads (32 query, 8 KV, 128 dims), batch 1-256, 128-131,072 tokens."""
    rows = []
    for batch in (1, 4, 16, 64, 256):
        for context in 2 ** np.arange(7, 18):
            tokens = batch * context
            rows.append({"kernel": "attention_decode", "impl": "triton", "dtype": "bf16", "batch": batch,
                         "context": int(context), "q_heads": 32, "kv_heads": 8, "head_dim": 128,
                         "flops": 4.0 * 32 * 128 * tokens,
                         "bytes": 2 * 8 * 128 * 2.0 * tokens + batch * 2 * 32 * 128 * 2.0})
    return pd.DataFrame(rows)


def synthetic(rows: pd.DataFrame, curve: KernelCurveSpec, noise=0.01, seed=0, hw=H100) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kind = rows["kernel"].iloc[0]
    return rows.assign(time_s=predict_kernel(rows, kind, curve, hw) * rng.lognormal(0.0, noise, len(rows)))


def test_fitter_recovers_gemm_terms():
    fit = fit_kernel("gemm", synthetic(gemm_rows(), GEMM), H100)
    for name in ("compute_max", "memory_max", "kernel_floor"):  # a tile's share shows only in wave steps
        assert getattr(fit.curve, name) == pytest.approx(getattr(GEMM, name), rel=0.05), name
    assert 0 < fit.curve.held_out_mape < 0.02  # 1% noise
    assert fit.curve.points == 90 - 90 // 5 and fit.rejected == []


def test_fitter_recovers_a_memory_bound_kernel_and_says_what_it_could_not_fit():
    fit = fit_kernel("attention_decode", synthetic(decode_rows(), DECODE, seed=1), H100)
    assert fit.curve.memory_max == pytest.approx(DECODE.memory_max, rel=0.03)
    assert fit.curve.kernel_floor == pytest.approx(DECODE.kernel_floor, rel=0.1)
    assert fit.curve.held_out_mape < 0.02
    assert fit.curve.compute_max == H100.efficiency.attention_compute and "compute_max kept" in fit.curve.note


def test_a_term_no_measurement_depends_on_keeps_its_default_and_says_so():
    """Decode rows of 16 sequences or more (16 x 8 KV heads = 128 pairs, above 80% of the H100's 132 SMs):
    FlashAttention-3 never splits them, so no row runs a combine kernel and the fit cannot see its floor. The
    solver would let such a term drift (A100 prefill, where FlashAttention-2 never combines: 99.5 us, at its
    bound); the fit keeps the default and names it, and still recovers the rest."""
    from kinsim.calibration.rows import row_op
    from kinsim.ops.kernel_work import kernel_work

    rows = decode_rows()
    rows = rows[rows["batch"] >= 16].reset_index(drop=True)
    assert not np.any(kernel_work(row_op(rows, "attention_decode"), 132).combines)
    fit = fit_kernel("attention_decode", synthetic(rows, DECODE, seed=2), H100)
    assert fit.curve.combine_floor == 0.0 and "combine_floor: no measurement depends on it" in fit.curve.note
    assert fit.curve.memory_max == pytest.approx(DECODE.memory_max, rel=0.03)
    # with the split rows, the floor is fitted again
    assert fit_kernel("attention_decode", synthetic(decode_rows(), DECODE, seed=2), H100).curve.combine_floor > 0.0


def test_a_prefill_kind_whose_rows_never_split_takes_its_decode_kinds_combine_floor():
    """Prefill rows of 16 prompts or more (16 x ceil(1,024 x 4 / 128) tiles x 8 KV heads fill the SMs) never
    split, so their fit cannot see the combine kernel; the decode rows of 1 and 4 sequences split. The profile's
    prefill kind takes the decode kind's combine floor (FlashAttention's one combine kernel), saying so."""
    from kinsim.calibration.rows import row_op

    prefill = pd.DataFrame([{"kernel": "attention_prefill", "impl": "triton", "dtype": "bf16", "batch": batch,
                             "tokens": tokens, "q_heads": 32, "kv_heads": 8, "head_dim": 128,
                             "flops": 2.0 * 32 * 128 * tokens * tokens * batch,
                             "bytes": 4.0 * 8 * 128 * 2 * tokens * batch}
                            for batch in (16, 32, 64) for tokens in (256, 512, 1024, 2048, 4096)])
    assert not np.any(kernel_work(row_op(prefill, "attention_prefill"), 132).combines)
    frame = pd.concat([synthetic(decode_rows(), DECODE, seed=3), synthetic(prefill, DECODE, seed=4)],
                      ignore_index=True)
    profile, fits = fit_profile(frame, H100, source="synthetic", device="none")
    decode_floor = profile.attention_decode.combine_floor
    assert decode_floor > 0.0
    assert profile.attention_prefill.combine_floor == decode_floor
    assert "combine_floor: attention_decode's" in profile.attention_prefill.note
    assert not next(fit for fit in fits if fit.kernel == "attention_prefill").unused


def test_fp8_kv_attention_rows_include_the_query_quantization_kernel():
    from kinsim.calibration.rows import query_quantize_s

    elementwise = KernelCurveSpec(compute_max=1.0, memory_max=0.5, kernel_floor=2e-6)
    rows = pd.DataFrame([{"kernel": "attention_prefill", "kv_dtype": kv, "batch": 2, "tokens": 100, "q_heads": 8,
                          "head_dim": 128, "flops": 1e9, "bytes": 1e7, "time_s": 1e-4} for kv in ("fp8", "bf16")])
    elements = 2 * 100 * 8 * 128  # batch x prompt tokens x q heads x head dim
    memory = 3.0 * elements / (0.5 * BANDWIDTH)  # bf16 in, fp8 out, at half the HBM bandwidth
    compute = 2.0 * elements / H100.peak("fp32")
    expected = 2e-6 + max(memory, compute)
    assert query_quantize_s(rows, "attention_prefill", H100, elementwise) == pytest.approx([expected, 0.0], rel=1e-12)
    # a decode row quantizes one query row per sequence; the fp8-KV curve kind counts as its op kind
    decode = rows.assign(kernel="attention_decode")
    assert query_quantize_s(decode, "attention_decode_fp8kv", H100, elementwise)[0] == pytest.approx(
        2e-6 + max(3.0 * elements / 100 / (0.5 * BANDWIDTH), 2.0 * elements / 100 / H100.peak("fp32")), rel=1e-12)
    from kinsim.calibration.rows import row_op

    op = row_op(rows, "attention_prefill")
    attention = kernel_time(DECODE, kernel_work(op, H100.gpu.compute.units), op.flops, op.bytes, H100, PEAK)
    quantized = predict_kernel(rows, "attention_prefill", DECODE, H100, elementwise)
    assert quantized == pytest.approx(attention + np.array([expected, 0.0]), rel=1e-12)


def test_a_prefill_measurement_row_has_the_tiles_of_the_op_it_times():
    from kinsim.calibration.rows import row_op
    from kinsim.ops.attention import AttentionDims, PrefillChunk, prefill_attention_op
    from kinsim.ops.sharding import HeadShard
    from kinsim.workload.spec import DenseAttention

    # 3 prompts of 1,000 tokens, 32 query heads over 8 KV heads: 3 x ceil(4,000 / 128) = 96 tiles per KV head
    # (the importer's op, the rows' op and the engine's op count them alike); multi-head rows pack nothing
    rows = pd.DataFrame([{"kernel": "attention_prefill", "batch": 3, "tokens": 1000, "q_heads": q, "kv_heads": kv,
                          "head_dim": 128, "flops": 1e9, "bytes": 1e7, "time_s": 1e-4}
                         for q, kv in ((32, 8), (16, 16))])
    assert list(row_op(rows, "attention_prefill").shape["tiles"]) == [96, 3 * 8]
    op = prefill_attention_op(AttentionDims(HeadShard(32, 8, 128, 1)), DenseAttention(), [PrefillChunk(1000, 0)] * 3)
    assert op.shape["tiles"] == 96


def test_measurements_faster_than_the_ceilings_are_rejected():
    rows = synthetic(gemm_rows(), GEMM)
    rows.loc[3, "time_s"] = rows.loc[3, "bytes"] / (2 * BANDWIDTH)  # twice the HBM bandwidth: impossible
    fit = fit_kernel("gemm", rows, H100)
    assert len(fit.rejected) == 1 and "faster than the ceilings" in fit.rejected[0]
    assert fit.curve.memory_max == pytest.approx(GEMM.memory_max, rel=0.05)


def test_fit_names_a_few_rejected_measurements_and_counts_the_rest(tmp_path: Path, capsys):
    from kinsim.cli.calibrate import REJECTED_SHOWN

    rows = synthetic(gemm_rows(), GEMM)
    impossible = list(range(REJECTED_SHOWN + 3))
    rows.loc[impossible, "time_s"] = rows.loc[impossible, "bytes"] / (2 * BANDWIDTH)  # twice the HBM bandwidth
    directory = tmp_path / "measured"
    directory.mkdir()
    rows.to_csv(directory / "measurements.csv", index=False)
    assert main(["calibrate", "fit", str(directory), "--hw", str(HARDWARE / "h100.yaml"),
                 "-o", str(tmp_path / "p.yaml")]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("kinsim: warning: rejected")]
    assert len(warnings) == REJECTED_SHOWN + 1
    assert warnings[-1].endswith(f"3 more gemm measurements for the same reason ({REJECTED_SHOWN + 3} in all)")


def write_measurements(directory: Path) -> Path:
    directory.mkdir()
    frame = pd.concat([synthetic(gemm_rows(), GEMM, seed=2), synthetic(decode_rows(), DECODE, seed=3)])
    frame.to_csv(directory / "measurements.csv", index=False)
    (directory / "metadata.json").write_text(json.dumps({"device": "NVIDIA H100 (synthetic)", "date": "2026-11-28"}))
    return directory


def test_fit_writes_a_profile_a_hardware_file_uses_and_validate_scores_it(tmp_path: Path, capsys):
    measured = write_measurements(tmp_path / "measured")
    profile = tmp_path / "h100-profile.yaml"
    assert main(["calibrate", "fit", str(measured), "--hw", str(HARDWARE / "h100.yaml"), "-o", str(profile)]) == 0
    out = capsys.readouterr().out
    assert "gemm" in out and "attention_decode" in out and "wrote" in out and "kernel_floor" in out
    hw_file = tmp_path / "h100-calibrated.yaml"
    hw_file.write_text(f"extends: {HARDWARE / 'h100.yaml'}\nname: h100-calibrated\ncalibration: {profile.name}\n")
    hw = load_hardware(hw_file)
    assert hw.calibration.device == "NVIDIA H100 (synthetic)"
    assert hw.calibration.gemm.memory_max == pytest.approx(GEMM.memory_max, rel=0.02)
    assert "measured on NVIDIA H100 (synthetic)" in hw.calibration.source
    # the roofline now prices a GEMM with the fitted terms
    op = gemm_op("qkv_proj", 64, 6144, 4096, weight_dtype="bf16")
    expected = kernel_time(hw.calibration.gemm, kernel_work(op, 132), op.flops, op.bytes, hw, PEAK)
    assert float(RooflineCost(hw).op_cost(op).time_s) == pytest.approx(float(expected), rel=1e-12)
    assert float(RooflineCost(H100).op_cost(op).time_s) != pytest.approx(float(expected), rel=1e-3)
    # validation: predictions from the profile, errors by hand
    table_path = tmp_path / "validation.csv"
    assert main(["calibrate", "validate", str(measured), "--hw", str(hw_file), "--csv", str(table_path),
                 "--plot", str(tmp_path / "validation.png")]) == 0
    table = pd.read_csv(table_path)
    row = table.iloc[8]  # a GEMM: m 2, n 24576, k 4096
    curve = hw.calibration.gemm
    op = gemm_op("g", 2, 24576, 4096, weight_dtype="bf16")
    assert (row["m"], row["n"], row["k"], row["flops"]) == (2, 24576, 4096, op.flops)
    tiles = 1 * 192  # 24576 / 128 output columns, one row tile: the tiles fill the 132 SMs, no split-K
    compute = max(op.flops / (PEAK * curve.compute_max),
                  math.ceil(tiles / 132) * (op.flops / tiles) / (curve.item_compute_share * PEAK / 132))
    memory = op.bytes / (BANDWIDTH * curve.memory_max) + op.bytes / (tiles * curve.item_bandwidth)
    by_hand = (curve.kernel_floor + tiles * curve.item_cost / 132 + max(compute, memory)
               + (curve.overlap_loss or 0.0) * min(compute, memory))
    assert row["predicted_s"] == pytest.approx(by_hand, rel=1e-9)
    assert row["error"] == pytest.approx((by_hand - row["time_s"]) / row["time_s"], rel=1e-6)
    errors = {e.kernel: e for e in errors_by_kernel(predictions(read_measurements(measured), hw))}
    assert errors["gemm"].mape < 0.02 and errors["attention_decode"].mape < 0.02
    assert errors["gemm"].held_points == 90 // 5 and errors["gemm"].held_mape < 0.02
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
    assert load_hardware(HARDWARE / "h100.yaml").calibration.device == "NVIDIA H100 80GB HBM3"


def test_the_quick_grid_gives_every_kernel_kind_enough_rows_to_fit():
    from kinsim.calibration.fit import MIN_POINTS, fit_profile
    from kinsim.calibration.measure import attention_work, gemm_work, grid

    curves = {"gemm": GEMM, "attention_decode": DECODE, "attention_sparse": DECODE,
              "selection": replace(DECODE, item_cost=0.0)}
    rows = []
    shapes = grid(quick=True)
    for kind in ("attention_decode", "attention_sparse"):
        for shape in shapes[kind]:
            rows += [{"kernel": kernel, "flops": flops, "bytes": nbytes, **shape}
                     for kernel, flops, nbytes in attention_work(kind, shape)]
    rows += [{"kernel": "gemm", "flops": gemm_work(shape)[0], "bytes": gemm_work(shape)[1], **shape}
             for shape in shapes["gemm"]]
    frame = pd.DataFrame(rows).assign(impl="triton", dtype="bf16")
    counts = frame["kernel"].value_counts()
    assert set(counts.index) == set(curves) and counts.min() >= MIN_POINTS + 1  # one is held out
    frame = pd.concat([synthetic(part, curves[kind], seed=i) for i, (kind, part) in enumerate(frame.groupby("kernel"))])
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

    fp8_peak = H100.peak("fp8")
    assert fp8_peak == 1979e12 and PEAK == 989e12  # hardware/h100.yaml, from the H100 SXM datasheet (dense)
    frame = synthetic(gemm_rows().assign(dtype="fp8", impl="triton"), GEMM, noise=0.0)
    profile, fits = fit_profile(frame, H100, source="synthetic fp8", device="none")
    assert fits[0].rejected == []  # against the bf16 peak the fast fp8 rows would be impossible
    assert profile.gemm.compute_max == pytest.approx(GEMM.compute_max, rel=0.02)


def test_end_to_end_plot_shows_each_backends_rows_and_mape():
    # vllm: TTFT 100 -> 110 ms and 200 -> 180 ms (10% off each), TPOT 20 -> 21 ms and 10 -> 10 ms (5% and 0%);
    # trtllm: one row, TTFT 50 -> 75 ms (50%), TPOT 8 -> 6 ms (25%)
    points = pd.DataFrame({"backend": ["vllm", "vllm", "trtllm"], "ttft_s": [0.1, 0.2, 0.05],
                           "sim_ttft_s": [0.11, 0.18, 0.075], "tpot_s": [0.02, 0.01, 0.008],
                           "sim_tpot_s": [0.021, 0.01, 0.006]})
    fig = plot_end_to_end(points, "test")
    ttft, tpot = fig.axes
    labels = [[line.get_label() for line in ax.get_lines()] for ax in (ttft, tpot)]
    assert labels[0][:2] == ["trtllm: 1 rows, MAPE 50.0%", "vllm: 2 rows, MAPE 10.0%"]
    assert labels[1][:2] == ["trtllm: 1 rows, MAPE 25.0%", "vllm: 2 rows, MAPE 2.5%"]
    vllm = ttft.get_lines()[1]
    assert list(vllm.get_xdata()) == pytest.approx([100.0, 200.0])  # measured, ms
    assert list(vllm.get_ydata()) == pytest.approx([110.0, 180.0])  # simulated, ms
    assert ttft.get_xlabel() == "measured TTFT (ms)" and tpot.get_ylabel() == "simulated TPOT (ms)"


def test_fitter_recovers_how_much_of_the_shorter_term_does_not_overlap():
    from dataclasses import replace

    truth = replace(GEMM, overlap_loss=0.3)
    fit = fit_kernel("gemm", synthetic(gemm_rows(), truth, seed=2), H100)
    assert fit.curve.overlap_loss == pytest.approx(0.3, abs=0.06)
    assert fit.curve.compute_max == pytest.approx(truth.compute_max, rel=0.05)
    # rows without it fit a loss near 0: the term is not free time
    assert fit_kernel("gemm", synthetic(gemm_rows(), GEMM, seed=2), H100).curve.overlap_loss < 0.05


def test_kinds_a_gpus_tables_lack_are_filled_from_another_profile_transferred():
    from kinsim.calibration.fit import fill_missing
    from kinsim.hardware.spec import CalibrationSpec

    # fitted on a 1,410 MHz FlashAttention-2 GPU: GEMMs only; the other profile: a 1,830 MHz FlashAttention-3 GPU
    own = CalibrationSpec(source="own tables", device="GPU A", clock=1410e6, attention_kernels="flash2", gemm=GEMM)
    moe = replace(GEMM, kernel_floor=5e-6, note="fused experts")
    other = CalibrationSpec(source="other tables", device="GPU H", clock=1830e6, gemm=replace(GEMM, compute_max=0.5),
                            moe=moe, elementwise=replace(GEMM, kernel_floor=2e-6), attention_decode=DECODE)
    filled, kinds = fill_missing(own, other, "h.yaml")
    assert kinds == ["elementwise", "moe"]  # not the GEMMs (measured here), not decode attention (FA3's)
    assert filled.gemm == GEMM and filled.attention_decode is None
    # the fixed terms are counted in the other GPU's cycles, a kernel floor only up to the shortest floor of
    # that profile (its elementwise kernels' 2 us): 5 us there is 2 x 1830 / 1410 + 3 us here; a floor below
    # 2 us (the combine kernel's 1.5 us) is all cycles
    assert filled.moe.kernel_floor == pytest.approx(2e-6 * 1830 / 1410 + 3e-6, rel=1e-12)
    assert filled.moe.combine_floor == pytest.approx(1.5e-6 * 1830 / 1410, rel=1e-12)
    assert filled.moe.per_sequence == pytest.approx(GEMM.per_sequence * 1830 / 1410, rel=1e-12)
    assert filled.moe.compute_max == GEMM.compute_max and filled.moe.item_bandwidth == GEMM.item_bandwidth
    assert filled.moe.note == "transferred from GPU H (h.yaml): no measurements of this kind here; fused experts"
    assert filled.source == "own tables; elementwise, moe transferred from GPU H (h.yaml)"
    # a profile of the same attention kernels lends its attention curves too
    same_family = replace(other, attention_kernels="flash2")
    assert "attention_decode" in fill_missing(own, same_family, "h.yaml")[1]
    # nothing missing: the profile as it was
    assert fill_missing(filled, other, "h.yaml") == (filled, [])


def test_fit_fills_the_missing_kinds_from_a_profile_and_refuses_a_missing_one(tmp_path: Path, capsys):
    measured = write_measurements(tmp_path / "measured")  # GEMMs and decode attention only
    profile = tmp_path / "p.yaml"
    h100_profile = HARDWARE / "calibration" / "h100.yaml"
    assert main(["calibrate", "fit", str(measured), "--hw", str(HARDWARE / "h100.yaml"), "-o", str(profile),
                 "--fill-from", str(h100_profile)]) == 0
    out = capsys.readouterr().out
    assert "moe" in out and "transferred (no measurements of this kind)" in out
    hw = load_hardware(HARDWARE / "h100.yaml", {"calibration": str(profile)})
    shipped = load_hardware(HARDWARE / "h100.yaml")  # the same GPU and clock: the terms as they are
    assert hw.calibration.moe.kernel_floor == shipped.calibration.moe.kernel_floor
    assert hw.calibration.gemm.memory_max == pytest.approx(GEMM.memory_max, rel=0.02)  # fitted here
    lent = hw.calibration.attention_prefill  # same kernels: lent, with a note that says so
    assert replace(lent, note="") == replace(shipped.calibration.attention_prefill, note="")
    assert lent.note.startswith("transferred from NVIDIA H100 80GB HBM3")
    missing = tmp_path / "q.yaml"
    assert main(["calibrate", "fit", str(measured), "--hw", str(HARDWARE / "h100.yaml"), "-o", str(missing),
                 "--fill-from", str(tmp_path / "nowhere.yaml")]) == 2
    err = capsys.readouterr().err
    assert "--fill-from" in err and "calibration profile not found" in err and "Traceback" not in err
    assert not missing.exists()


def test_a_flashattention2_fit_prices_the_copies_with_the_elementwise_curve_the_profile_will_have():
    """Decode rows of a FlashAttention-2 GPU include its two copy kernels (grouped queries, 4 sequences or more
    here): ``fit_profile`` prices them with the elementwise curve it is lent (``calibrate fit --fill-from``),
    as the profile will, and recovers the attention kernel's own floor; priced by the datasheet instead, the
    copies' time goes into the fitted floor."""
    a100 = load_hardware(HARDWARE / "a100.yaml", {"calibration": None})
    assert a100.gpu.attention_kernels == "flash2"
    lent = replace(GEMM, kernel_floor=4e-6)  # an elementwise kernel of 4 us: two of them are 8 us a row
    rows = decode_rows()
    data = rows.assign(time_s=predict_kernel(rows, "attention_decode", DECODE, a100, lent))
    profile, _ = fit_profile(data, a100, source="synthetic", device="none", elementwise=lent)
    assert profile.attention_decode.kernel_floor == pytest.approx(DECODE.kernel_floor, rel=0.05)
    assert profile.elementwise is None  # lent for the fit only; fill_missing adds it to the profile
    assert profile.attention_decode.held_out_mape < 1e-6  # noise-free rows, the model that made them
    blind, _ = fit_profile(data, a100, source="synthetic", device="none")
    assert blind.attention_decode.kernel_floor > 1.15 * DECODE.kernel_floor
    assert blind.attention_decode.held_out_mape > 0.05


def test_calibrate_fit_with_fill_from_lends_its_elementwise_curve_to_a_flashattention2_decode_fit(tmp_path: Path):
    """The CLI path of the test above: decode rows of an A100 made with the H100 profile's elementwise curve
    on the A100's clock pricing the copies; ``calibrate fit --fill-from h100.yaml`` recovers the attention
    kernel's own floor, and the profile it writes carries that elementwise curve."""
    a100 = load_hardware(HARDWARE / "a100.yaml", {"calibration": None})
    lender = load_hardware(HARDWARE / "h100.yaml").calibration
    lent = lender.on_clock(a100.gpu.compute.clock).elementwise
    rows = decode_rows()
    directory = tmp_path / "measured"
    directory.mkdir()
    rows.assign(time_s=predict_kernel(rows, "attention_decode", DECODE, a100, lent)).to_csv(
        directory / "measurements.csv", index=False)
    out = tmp_path / "a100.yaml"
    assert main(["calibrate", "fit", str(directory), "--hw", str(HARDWARE / "a100.yaml"), "-o", str(out),
                 "--fill-from", str(HARDWARE / "calibration" / "h100.yaml")]) == 0
    profile = load_hardware(HARDWARE / "a100.yaml", {"calibration": str(out)}).calibration
    assert profile.attention_decode.kernel_floor == pytest.approx(DECODE.kernel_floor, rel=0.05)
    assert replace(profile.elementwise, note="") == replace(lent, note="")
