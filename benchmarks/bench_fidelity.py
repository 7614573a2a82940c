"""How close kinsim's figures are to real GPUs: kernels, transfer to a GPU never fitted, end to end.

    python benchmarks/bench_fidelity.py [--data DIR] [--rows-every N] [--fit-overheads]

Needs the public silicon measurements of the aiconfigurator-core package (``pip install 'kinsim[aic]'``;
or ``--data`` pointing at its ``systems`` folder). Only the H100 and A100 tables and the H100 rows of
``silicon_sample.csv`` are read; every other system is held out to judge kinsim independently.

Prints:

1. **Kernels, H100** (the committed profile ``hardware/calibration/h100.yaml`` against the imported vLLM
   tables): MAPE per kernel kind on the rows the fit held out (every fifth in order of work), on every
   fitted row, and of the plain datasheet roofline for comparison; then the attention rows of head
   dimensions other than the fit's 128, per kind, KV type and head dimension.
2. **Transfer H100 -> A100**: the H100 profile applied to ``hardware/a100.yaml`` (no A100 data in the
   fit), scored on the A100 tables; beside it the held-out error of a profile fitted on the A100 itself,
   which is what the model's structure alone costs, so the difference is what the transfer costs (the
   A100 tables also come from older kernels: FlashAttention-2 and vLLM 0.14 against FlashAttention-3 and
   vLLM 0.24). That own fit is what ``hardware/calibration/a100.yaml`` holds, which ``hardware/a100.yaml``
   references; the transfer is how a GPU without tables is priced.
3. **End to end, H100**: TPOT and TTFT of the ``silicon_sample.csv`` rows kinsim can express (see
   :mod:`kinsim.calibration.silicon`), per backend, as MAPE with the number of rows: aggregated rows on
   the rows held out of the engine-overhead fit (every fifth) and on all of them; disaggregated rows
   (prefill and decode workers, ``deployment.disaggregation``) as their own group, none of them in any
   fit, with the signed mean errors and the TTFT kinsim counts at the prefill replica beside the
   client's; and per (backend, model, weight type) for the aggregated rows.

``--fit-overheads`` fits the per-backend engine overheads (simulating without them) and prints the
constants for :mod:`kinsim.cost.engine_overhead`. ``--system NAME`` scores the end-to-end section on
another system's rows of ``silicon_sample.csv`` (only that section runs, with the MLA and sliding-window
kernel checks), on the hardware file that describes that system (:func:`hardware_of`: its name without
``_sxm``; ``--hw FILE`` another): it is how someone else judges kinsim on the GPUs this project holds
out, and this project never runs it (nor fits anything to those rows: ``--fit-overheads`` takes the H100
rows only). ``--plot DIR`` also
writes the three comparisons as figures: the H100 held-out kernel rows, the A100 transfer, and the
end-to-end rows (simulated against measured TTFT and TPOT, per backend, with the targets' bands).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
H100 = ROOT / "hardware" / "h100.yaml"
sys.path.insert(0, str(ROOT))

from kinsim import load_hardware, simulate  # noqa: E402
from kinsim.calibration.aiconfigurator import import_tables, package_data_dir  # noqa: E402
from kinsim.calibration.fit import fill_missing, fit_profile  # noqa: E402
from kinsim.calibration.measurements import read_measurements  # noqa: E402
from kinsim.calibration.mla_tables import score_system  # noqa: E402
from kinsim.calibration.silicon import (  # noqa: E402
    client_figures,
    consistent,
    decode_floor_s,
    expressible,
    fit_frontend_s,
    frontend_of,
    kv_dtype_of,
    least_absolute_deviations,
    nodes_needed,
    with_stated_roles,
    workload_of,
)
from kinsim.calibration.validate import plot_end_to_end, plot_validation, predictions  # noqa: E402
from kinsim.cost.engine_overhead import VLLM_ASYNC, engine_overhead  # noqa: E402
from kinsim.cost.registry import make_cost_model  # noqa: E402
from kinsim.errors import KinsimError  # noqa: E402
from kinsim.schema import with_overrides  # noqa: E402
from kinsim.workload.load import workload_from_raw  # noqa: E402

KINDS = [("attention_decode", None), ("attention_prefill", None), ("gemm", None), ("elementwise", None),
         ("moe", None), ("allreduce", "nccl"), ("allreduce", "custom")]
TARGETS = {"attention_decode": 0.08, "attention_prefill": 0.08, "gemm": 0.08, "allreduce/nccl": 0.10,
           "allreduce/custom": 0.10}


def mape(error) -> float:
    return float(np.mean(np.abs(error))) if len(error) else float("nan")


def kernel_table(table, label: str, reference=None) -> dict[str, float]:
    """Per kind: MAPE on held-out rows, on fitted rows, on the datasheet roofline."""
    out = {}
    for kernel, impl in KINDS:
        rows = table[(table["kernel"] == kernel) & table["in_fit"]]
        if impl:
            rows = rows[rows["impl"] == impl]
        name = f"{kernel}/{impl}" if impl else kernel
        if not len(rows):
            continue
        held = rows[rows["held_out"]]
        line = (f"  {name:<20} {len(held):>6} {mape(held['error']):>8.2%}   {len(rows):>6} {mape(rows['error']):>8.2%}")
        if reference is not None:
            ref = reference.loc[rows.index]
            line += f"   {mape(ref['error']):>10.2%}"
        if name in TARGETS:
            line += f"   target <= {TARGETS[name]:.0%}"
        print(line)
        out[name] = mape(held["error"])
    return out


def section_kernels(data: Path | None, scratch: Path, plots: Path | None = None) -> None:
    print("1. Kernels on H100: hardware/calibration/h100.yaml against aiconfigurator-core's vLLM tables")
    directory = scratch / "h100_vllm"
    meta = import_tables("h100_sxm", "vllm", directory, data=data)
    print("   tables: " + ", ".join(f"{t['table']} ({t['rows']} rows)" for t in meta["tables"]))
    hw = load_hardware(H100)
    frame = read_measurements(directory)
    table = predictions(frame, hw)
    plain = predictions(frame, hw, datasheet=True)
    print(f"  {'kind':<20} {'held':>6} {'MAPE':>8}   {'fitted':>6} {'MAPE':>8}   {'datasheet':>10}")
    kernel_table(table, "h100", plain)
    print_other_head_dims(table)
    if plots is not None:
        held = table[table["in_fit"] & table["held_out"]]
        save_figure(plot_validation(held, "H100 held-out rows, committed profile"), plots, "kernels_h100.png")


def print_other_head_dims(table) -> None:
    """Attention rows of head dimensions the fit does not read (it reads 128's), per kind, KV type and head
    dimension: MAPE and signed median. They check the terms that carry a kernel to another head size
    (``kernel_work.head_dim_scale`` for decode, ``prefill_exp_scale`` for prefill)."""
    rows = table[table["kernel"].isin(["attention_decode", "attention_prefill"]) & (table["head_dim"] != 128)]
    if not len(rows):
        return
    print("   attention rows of other head dimensions (not in the fit; its head-dimension terms were chosen on "
          "them): MAPE (median error), rows")
    for (kernel, kv_dtype), group in rows.groupby(["kernel", "kv_dtype"]):
        cells = [f"{int(d)}: {mape(g['error']):.1%} ({np.median(g['error']):+.1%}), {len(g):,}"
                 for d, g in group.groupby("head_dim")]
        print(f"     {kernel:<18} {kv_dtype:<5} " + "; ".join(cells))


def section_transfer(data: Path | None, scratch: Path, plots: Path | None = None) -> None:
    print("\n2. Transfer H100 -> A100: the H100 profile on hardware/a100.yaml, scored on the A100 tables")
    directory = scratch / "a100_vllm"
    meta = import_tables("a100_sxm", "vllm", directory, data=data)
    print("   tables: " + ", ".join(f"{t['table']} ({t['rows']} rows)" for t in meta["tables"]))
    frame = read_measurements(directory)
    transferred = load_hardware(ROOT / "hardware" / "a100.yaml",
                                {"calibration": {"from": str(ROOT / "hardware" / "calibration" / "h100.yaml")}})
    table = predictions(frame, transferred)
    bare = load_hardware(ROOT / "hardware" / "a100.yaml", {"calibration": None})
    # as the committed A100 profile is made: the kinds its tables lack (elementwise, MoE) lent by the H100's
    lender = load_hardware(H100).calibration
    own, _ = fit_profile(frame, bare, source="A100 tables (for comparison only, never committed)", device="A100",
                         elementwise=lender.on_clock(bare.gpu.compute.clock).elementwise)
    own, _ = fill_missing(own, lender, "hardware/calibration/h100.yaml")
    own_table = predictions(frame, _with_profile(bare, own))
    print(f"  {'kind':<20} {'rows':>6} {'transfer':>9}   {'A100 own fit, held out':>22}   difference")
    for kernel, impl in KINDS:
        rows = table[(table["kernel"] == kernel) & table["in_fit"]]
        if impl:
            rows = rows[rows["impl"] == impl]
        if not len(rows):
            continue
        name = f"{kernel}/{impl}" if impl else kernel
        own_rows = own_table.loc[rows.index]
        own_held = own_rows[own_rows["held_out"]]
        t, o = mape(rows["error"]), mape(own_held["error"])
        print(f"  {name:<20} {len(rows):>6} {t:>9.2%}   {o:>22.2%}   {t - o:>+9.2%}   target <= 15%")
    if plots is not None:
        save_figure(plot_validation(table[table["in_fit"]], "A100 rows, the H100 profile transferred"), plots,
                    "kernels_a100_transfer.png")


def section_mla(data: Path | None, system: str = "h100_sxm", hw_path: Path = H100) -> None:
    """DeepSeek-V3's multi-head latent attention kernels of ``system``'s MLA tables (SGLang's and
    TensorRT-LLM's), priced with the hardware file's profile, whose attention curves were fitted to
    grouped-query kernels only: every row is held out (:mod:`kinsim.calibration.mla_tables`)."""
    print(f"\n2b. Multi-head latent attention (DeepSeek-V3) on {system} ({hw_path.name}): the grouped-query curves, "
          "never fitted to MLA")
    base = data if data is not None else package_data_dir()[0]
    scores = score_system(base, system, make_cost_model("roofline", load_hardware(hw_path)))
    if not scores:
        print(f"   no MLA kernel table for {system}")
        return
    print(f"  {'table':<52} {'rows':>6} {'MAPE':>8} {'bias':>8}   per KV type: MAPE (bias)")
    for score in scores:
        frame = score.frame
        per_kv = ", ".join(f"{kv} {mape(group['error']):.1%} ({group['error'].mean():+.1%})"
                           for kv, group in frame.groupby("kv_cache_dtype"))
        name = str(score.path.relative_to(base / system))
        print(f"  {name:<52} {len(frame):>6} {score.mape:>8.2%} {frame['error'].mean():>+8.2%}   {per_kv}")


def window_rows(data: Path | None, system: str, hw):
    """The sliding-window rows (``window_size`` > 0) of ``system``'s newest vLLM context-attention table,
    each with kinsim's price of its op (a model's window layer: ``prefill_attention_op`` over the window,
    the query's quantization for an fp8 cache as the dense rows include it); the fit reads only the dense
    rows, so these are held out. A DataFrame, or None without such a table."""
    from kinsim.calibration.aiconfigurator import KV_DTYPES, TableChoice, find_table
    from kinsim.ops.attention import AttentionDims, PrefillChunk, prefill_attention_op
    from kinsim.ops.lower import query_quantize
    from kinsim.ops.sharding import HeadShard
    from kinsim.workload.spec import SlidingWindowAttention

    base = data if data is not None else package_data_dir()[0]
    path = find_table(base, system, TableChoice("attention", "vllm", "context_attention_perf"), None)
    if path is None:
        return None
    frame = pd.read_parquet(path)
    if "window_size" not in frame.columns:
        return None
    cost = make_cost_model("roofline", hw)
    out = []
    for r in frame[frame["window_size"] > 0].itertuples(index=False):
        kv = KV_DTYPES.get(str(r.kv_cache_dtype))
        if kv is None:
            continue
        batch, isl, heads, head_dim = int(r.batch_size), int(r.isl), int(r.num_heads), int(r.head_dim)
        dims = AttentionDims(HeadShard(heads, int(r.num_key_value_heads), head_dim, 1), kv_dtype=kv)
        ops = [prefill_attention_op(dims, SlidingWindowAttention(window=int(r.window_size)),
                                    [PrefillChunk(isl)] * batch, model_window=True)]
        ops += query_quantize(kv, batch * isl * heads * head_dim)
        predicted = sum(float(cost.op_cost(op).time_s) for op in ops)
        out.append({"window": int(r.window_size), "kv_dtype": kv, "measured_s": float(r.latency) * 1e-3,
                    "predicted_s": predicted})
    table = pd.DataFrame(out)
    table["error"] = table["predicted_s"] / table["measured_s"] - 1.0
    return table


def section_window(data: Path | None, system: str = "h100_sxm", hw_path: Path = H100) -> None:
    print(f"\n2c. Sliding-window prefill attention on {system}: the context table's window rows, never fitted")
    table = window_rows(data, system, load_hardware(hw_path))
    if table is None or not len(table):
        print(f"   no window rows for {system}")
        return
    for window, group in [*table.groupby("window"), ("all", table)]:
        print(f"   window {window!s:<6} {len(group):>6} rows  MAPE {mape(group['error']):.2%}  "
              f"bias {group['error'].mean():+.2%}")


def _with_profile(hw, profile):
    from dataclasses import replace

    return replace(hw, calibration=profile)


#: The system of ``silicon_sample.csv`` whose rows are ours to use (the default, and the only one fitted to).
OWN_SYSTEM = "h100_sxm"

#: The suffix of aiconfigurator-core's system names that names a form factor, not a GPU (``h100_sxm``); a
#: system's hardware file here is its name without it (``h100_sxm``: ``hardware/h100.yaml``; other suffixes stay).
FORM_FACTOR_SUFFIX = "_sxm"


def hardware_of(system: str, hw: Path | None, directory: Path = ROOT / "hardware") -> Path:
    """The hardware file the end-to-end section simulates ``system`` on: ``hw`` if given, else the file of
    ``directory`` named as the system without :data:`FORM_FACTOR_SUFFIX`; :class:`ValueError` naming the
    system where there is none."""
    if hw is not None:
        return hw
    name = system.removesuffix(FORM_FACTOR_SUFFIX)
    path = directory / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"--system {system}: no hardware file here describes it ({path.name} is not in "
                         f"{directory}); write one and pass it with --hw FILE")
    return path


def silicon_rows(data: Path | None, system: str = OWN_SYSTEM):
    """(aggregated rows, disaggregated rows, {(mode, why not): count} of the rest, rows of ``system``) of
    ``silicon_sample.csv``, the rows of ``system`` only (the H100's unless told)."""
    base = (data if data is not None else package_data_dir()[0]).parent
    frame = pd.read_csv(base / "silicon_sample.csv")
    frame = frame[frame["system"] == system]
    agg, disagg, skipped = [], [], {}
    configs = base.parent / "model_configs"  # the config.json files of models without a preset
    for raw in with_stated_roles(frame.to_dict("records")):
        row, why = expressible(raw, configs)
        if row is None:
            key = (str(raw.get("mode")), why)
            skipped[key] = skipped.get(key, 0) + 1
        else:
            (disagg if row.disaggregated else agg).append(row)
    return agg, disagg, skipped, len(frame)


def simulate_rows(rows, hw, engine: str | None, extra: bool = False):
    """Per row (row, TTFT, TPOT, why it failed or "") with the client's means in seconds
    (:func:`~kinsim.calibration.silicon.client_figures`); with ``extra``, a fifth item: kinsim's TTFT, which
    ends at the prefill replica's first token. A deployment over more GPUs than ``hw``'s node has runs on as
    many of its nodes as it needs (``cluster.nodes``; a file without a cluster cannot, and says why)."""
    out, by_nodes = [], {1: hw}
    for row in rows:
        nodes = nodes_needed(row, hw.node.gpus)
        try:
            if nodes not in by_nodes:
                by_nodes[nodes] = with_overrides(hw, {"cluster.nodes": nodes})
            raw = workload_of(row, engine=engine, gpu=hw.gpu)
            result = simulate(workload_from_raw(raw, ROOT), by_nodes[nodes])
        except KinsimError as error:
            out.append((row, None, None, str(error), None)[:5 if extra else 4])
            continue
        ttft, tpot = client_figures(result, row)
        out.append((row, ttft, tpot, "", result["latency.request.ttft.mean"])[:5 if extra else 4])
    return out


#: The models whose rows the engine overheads are fitted to (kinsim.cost.engine_overhead); the rows of models
#: added since (MiniMax-M2.5, gpt-oss-120b, of other engine versions) are scored, never fitted.
OVERHEAD_FIT_MODELS = ("Qwen3-32B", "Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-235B-A22B")


def overhead_preset_of(row) -> str:
    """Which engine-overhead preset a row's fit belongs to: the backend's, or vLLM's asynchronous scheduling
    (``kinsim.cost.engine_overhead.VLLM_ASYNC``) for vLLM rows of 0.14 and later."""
    async_vllm = engine_overhead(row.backend, row.version) is VLLM_ASYNC
    return f"{row.backend} >= 0.14" if async_vllm else row.backend


def fit_overheads(results) -> None:
    """Least absolute deviations of (measured - simulated) TPOT against (1, batch), relative, non-negative,
    over 4 of 5 rows of each preset (:func:`overhead_preset_of`; a backend's own preset from the rows of
    :data:`OVERHEAD_FIT_MODELS`, vLLM's asynchronous one from every vLLM row of 0.14 and later); the
    least-squares fit beside it."""
    from scipy.optimize import nnls

    print("\n   engine overheads (fit on 4 of 5 rows, TPOT simulated without overhead):")
    by_backend: dict[str, list] = {}
    for i, (row, _, tpot, _why) in enumerate(results):
        preset = overhead_preset_of(row)
        if tpot is not None and i % 5 != 4 and (row.model in OVERHEAD_FIT_MODELS or preset != row.backend):
            by_backend.setdefault(preset, []).append((row, tpot))
    for backend, items in sorted(by_backend.items()):
        a = np.array([[1.0 / r.tpot_s, r.concurrency / r.tpot_s] for r, _ in items])
        b = np.array([(r.tpot_s - t) / r.tpot_s for r, t in items])
        step, per_seq = least_absolute_deviations(a, b)
        (step_ls, per_seq_ls), _ = nnls(a, b)
        print(f"   {backend:<8} step_s {step * 1e3:.3f} ms, per_sequence_s {per_seq * 1e6:.2f} us ({len(items)} rows; "
              f"least squares: {step_ls * 1e3:.3f} ms, {per_seq_ls * 1e6:.2f} us)")


def rows_frame(results) -> pd.DataFrame:
    """One row per simulated silicon row (:func:`simulate_rows`'s results, in their order): what identifies
    it, whether it is one of the held-out fifth (``held_out``), measured and simulated TTFT and TPOT in
    seconds with the relative errors, and why it could not be simulated (empty when it was)."""
    out = []
    for i, (row, ttft, tpot, why) in enumerate(results):
        out.append({"id": row.id, "backend": row.backend, "stack": row.stack, "model": row.model,
                    "weight_dtype": row.weight_dtype, "isl": row.isl, "osl": row.osl, "tp": row.tp,
                    "expert_parallel": row.expert_parallel, "concurrency": row.concurrency,
                    "held_out": i % 5 == 4, "ttft_s": row.ttft_s, "sim_ttft_s": ttft,
                    "ttft_error": None if why else ttft / row.ttft_s - 1, "tpot_s": row.tpot_s, "sim_tpot_s": tpot,
                    "tpot_error": None if why else tpot / row.tpot_s - 1, "why": why})
    return pd.DataFrame(out)


def section_end_to_end(data: Path | None, every: int, fit: bool, plots: Path | None = None,
                       system: str = OWN_SYSTEM, hw_path: Path = H100, rows_csv: Path | None = None) -> None:
    print(f"\n3. End to end on {system} ({hw_path.name}): silicon_sample.csv rows kinsim can express "
          "(aggregated and disaggregated serving; presets, or the config.json the package ships)")
    rows, disagg, skipped, total = silicon_rows(data, system)
    if not total:
        print(f"   silicon_sample.csv has no row of system {system!r}")
        return
    rows, disagg = rows[::every], disagg[::every]
    hw = load_hardware(hw_path)
    rows, below = split_consistent(rows, hw)
    disagg, below_disagg = split_consistent(disagg, hw)
    unrecorded = [r for r in rows if not r.concurrency_recorded]
    rows = [r for r in rows if r.concurrency_recorded]
    print(f"   {total} {system} rows; {len(rows)} aggregated and {len(disagg)} disaggregated simulated; "
          "not expressible: " + ", ".join(f"{mode} {why} {n}" for (mode, why), n in sorted(skipped.items())))
    print_below_floor(below + below_disagg, hw)
    started = time.perf_counter()
    results = simulate_rows(rows, hw, "none" if fit else None)
    print(f"   simulated in {time.perf_counter() - started:.1f} s")
    if fit:
        fit_overheads(results)  # aggregated rows only: the constants of kinsim.cost.engine_overhead
        return
    print_unrecorded(unrecorded, hw)
    if rows_csv is not None:
        rows_frame(results).to_csv(rows_csv, index=False)
        print(f"   wrote {rows_csv} (one line per aggregated row)")
    failed = [(r.id, why) for r, _, _, why in results if why]
    if failed:
        print(f"   {len(failed)} rows could not be simulated, e.g. {failed[0][1][:100]}")
    print(f"  {'backend':<8} {'rows':>5} {'TPOT MAPE':>10} {'held out':>9} {'(rows)':>6} {'TTFT MAPE':>10} "
          f"{'held out':>9}"
          f"  {'TPOT bias':>9}")
    backends = sorted({r.backend for r, *_ in results})
    for backend in [*backends, "all"]:
        items = [(i, r, ttft, tpot) for i, (r, ttft, tpot, why) in enumerate(results)
                 if not why and (backend == "all" or r.backend == backend)]
        if not items:
            continue
        tpot_e = np.array([tpot / r.tpot_s - 1 for _, r, _, tpot in items])
        ttft_e = np.array([ttft / r.ttft_s - 1 for _, r, ttft, _ in items])
        held = np.array([i % 5 == 4 for i, *_ in items])
        print(f"  {backend:<8} {len(items):>5} {mape(tpot_e):>10.2%} {mape(tpot_e[held]):>9.2%} {held.sum():>6} "
              f"{mape(ttft_e):>10.2%} {mape(ttft_e[held]):>9.2%}  {np.mean(tpot_e):>+9.2%}")
    print("   targets: TPOT MAPE <= 10%, TTFT MAPE <= 20%")
    print_frontend_fit(results)
    if plots is not None:
        points = pd.DataFrame([{"backend": r.backend, "ttft_s": r.ttft_s, "tpot_s": r.tpot_s, "sim_ttft_s": ttft,
                                "sim_tpot_s": tpot} for r, ttft, tpot, why in results if not why])
        save_figure(plot_end_to_end(points, f"{system} rows of silicon_sample.csv, aggregated serving ({len(points)} "
                                            "rows)"), plots, "end_to_end.png")
    print_per_model(results)
    section_disaggregated(disagg, hw)


def print_unrecorded(rows, hw) -> None:
    """Aggregated rows that do not record their benchmark's concurrency (no ``c<N>`` in the id, no
    ``silicon_concurrency`` in the source: a Dynamo deployment's, whose ``batch_size`` is aiconfigurator's
    model of the batch, not the clients), simulated at ``batch_size`` clients and shown apart, out of the
    figures: they judge the guess of the concurrency more than the model."""
    if not rows:
        return
    print(f"   {len(rows)} aggregated rows scored apart, their concurrency not recorded (simulated at batch_size "
          "clients; measured -> kinsim):")
    for r, ttft, tpot, why in simulate_rows(rows, hw, None):
        figures = why[:60] if why else (f"TTFT {r.ttft_s * 1e3:,.0f} -> {ttft * 1e3:,.0f} ms, "
                                        f"TPOT {r.tpot_s * 1e3:.1f} -> {tpot * 1e3:.1f} ms")
        print(f"     {r.backend:<7} {r.model:<15} {r.isl}/{r.osl} TP{r.tp} x {r.concurrency}: {figures}")


def print_frontend_fit(results) -> None:
    """Per backend, serving stack (:func:`kinsim.calibration.silicon.stack_of`) and overhead preset
    (:func:`overhead_preset_of`), the serving frontend's time per request that fits the TTFTs of the rows of
    :func:`fit_overheads` best, every fifth row held out, beside the one the rows ran with
    (``silicon.FRONTEND_S``, else the engine's preset of the row's release)."""
    groups = sorted({(r.backend, r.stack, overhead_preset_of(r)) for r, *_ in results})
    for backend, stack, preset in groups:
        items = [(i, r, ttft) for i, (r, ttft, _, why) in enumerate(results)
                 if not why and (r.backend, r.stack, overhead_preset_of(r)) == (backend, stack, preset)
                 and (r.model in OVERHEAD_FIT_MODELS or preset != backend) and i % 5 != 4]
        if items:
            row = items[0][1]
            current = frontend_of(row)
            current = engine_overhead(backend, row.version).frontend_s if current is None else current
            fitted = fit_frontend_s([t for *_, t in items], [r.ttft_s for _, r, _ in items], current)
            print(f"   frontend_s fit ({preset} behind {stack}, {len(items)} rows): {fitted * 1e3:.1f} ms "
                  f"(ran with {current * 1e3:.1f} ms)")


def print_per_model(results) -> None:
    """TPOT and TTFT per (backend, model, weight type, KV cache's type): MAPE and signed mean, over every row
    of the group. The KV cache's type is the one the replay gives the row (:func:`kv_dtype_of`: its server's
    default, or aiconfigurator's reading of a quantized checkpoint)."""
    groups: dict[tuple[str, str, str, str], list] = {}
    for r, ttft, tpot, why in results:
        if not why:
            groups.setdefault((r.backend, r.model, r.weight_dtype, kv_dtype_of(r)), []).append((r, ttft, tpot))
    print(f"\n   per model:  {'backend':<8} {'model':<18} {'weights':<7} {'KV':<5} {'rows':>5} {'TPOT MAPE':>10} "
          f"{'TPOT bias':>10} {'TTFT MAPE':>10} {'TTFT bias':>10}")
    for (backend, model, weights, kv), items in sorted(groups.items()):
        tpot_e = np.array([tpot / r.tpot_s - 1 for r, _, tpot in items])
        ttft_e = np.array([ttft / r.ttft_s - 1 for r, ttft, _ in items])
        print(f"               {backend:<8} {model:<18} {weights:<7} {kv:<5} {len(items):>5} {mape(tpot_e):>10.2%} "
              f"{np.mean(tpot_e):>+10.2%} {mape(ttft_e):>10.2%} {np.mean(ttft_e):>+10.2%}")


def split_consistent(rows, hw):
    """(rows whose measured TPOT is at least their decode floor, rows below it): a TPOT below what reading
    the step's weights and KV once at full HBM bandwidth takes says the stated batch did not run
    (:func:`kinsim.calibration.silicon.consistent`), so those rows are left out of the figures and listed."""
    kept, below = [], []
    for row in rows:
        try:
            model = row_model(row)
        except KinsimError:  # a workload kinsim refuses: simulate_rows reports why
            kept.append(row)
            continue
        (kept if consistent(row, model, hw.gpu.memory.bandwidth) else below).append(row)
    return kept, below


def row_model(row):
    """The :class:`~kinsim.model.ModelSpec` a row runs (its preset, weight and KV types)."""
    return workload_from_raw(workload_of(row), ROOT).model


def print_below_floor(rows, hw) -> None:
    if not rows:
        return
    print(f"   {len(rows)} rows left out, their measured TPOT below the decode floor of their stated batch "
          "(the weights a step uses and its KV read once at the datasheet HBM bandwidth: that batch did not run):")
    for r in rows:
        batch = r.decode.batch_size if r.decode is not None else r.concurrency
        floor = decode_floor_s(r, row_model(r), hw.gpu.memory.bandwidth)
        print(f"     {r.backend:<7} {r.model:<14} {r.isl}/{r.osl} TP{r.decode.tp if r.decode else r.tp} x {batch}: "
              f"TPOT {r.tpot_s * 1e3:.1f} ms, floor {floor * 1e3:.1f} ms")


def section_disaggregated(rows, hw) -> None:
    """The disaggregated rows as their own group: per backend and model, MAPE and signed mean error of the client's
    TTFT and TPOT, and the MAPE of kinsim's TTFT at the prefill replica. No engine overhead nor any other
    term was fitted to them; their clients' mode (a closed loop, never SGLang's rounds:
    :func:`~kinsim.calibration.silicon.client_of`) was chosen with them in view."""
    print("\n   disaggregated serving (prefill and decode workers; no term fitted to them, their clients a closed "
          "loop):")
    if not rows:
        print("   no disaggregated row kinsim can express")
        return
    started = time.perf_counter()
    results = simulate_rows(rows, hw, None, extra=True)
    print(f"   simulated in {time.perf_counter() - started:.1f} s")
    failed = [(r.id, why) for r, _, _, why, _ in results if why]
    if failed:
        print(f"   {len(failed)} rows could not be simulated, e.g. {failed[0][1][:100]}")
    print(f"  {'backend':<8} {'model':<12} {'rows':>5} {'TTFT MAPE':>10} {'TTFT bias':>10} {'TPOT MAPE':>10} "
          f"{'TPOT bias':>10}   {'TTFT at prefill, MAPE':>21}")
    groups = sorted({(r.backend, r.model) for r, *_ in results})
    for backend, model in [*groups, ("all", "")]:
        items = [(r, ttft, tpot, first) for r, ttft, tpot, why, first in results
                 if not why and (backend == "all" or (r.backend, r.model) == (backend, model))]
        if not items:
            continue
        ttft_e = np.array([ttft / r.ttft_s - 1 for r, ttft, _, _ in items])
        tpot_e = np.array([tpot / r.tpot_s - 1 for r, _, tpot, _ in items])
        first_e = np.array([first / r.ttft_s - 1 for r, _, _, first in items])
        print(f"  {backend:<8} {model:<12} {len(items):>5} {mape(ttft_e):>10.2%} {np.mean(ttft_e):>+10.2%} "
              f"{mape(tpot_e):>10.2%} {np.mean(tpot_e):>+10.2%}   {mape(first_e):>21.2%}")
    print("   per row (measured -> client's figure in kinsim; floor: a decode step's HBM reads at decode_batch_size):")
    for r, ttft, tpot, why, _ in results:
        if not why:
            print(f"   {r.backend:<7} {r.model:<10} {r.isl}/{r.osl} P {r.prefill.workers}x TP{r.prefill.tp}, "
                  f"D {r.decode.workers}x TP{r.decode.tp} x {r.decode.batch_size}: TTFT {r.ttft_s * 1e3:,.0f} -> "
                  f"{ttft * 1e3:,.0f} ms, TPOT {r.tpot_s * 1e3:.1f} -> {tpot * 1e3:.1f} ms "
                  f"(floor {decode_floor_s(r, row_model(r), hw.gpu.memory.bandwidth) * 1e3:.1f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="aiconfigurator-core's systems/data folder (default: the installed package)")
    parser.add_argument("--rows-every", type=int, default=1, help="simulate every Nth silicon row (default 1)")
    parser.add_argument("--fit-overheads", action="store_true", help="fit the engine overheads instead")
    parser.add_argument("--skip-kernels", action="store_true", help="only the end-to-end section")
    parser.add_argument("--system", default=OWN_SYSTEM,
                        help=f"the system whose silicon_sample.csv rows the end-to-end section scores (default "
                             f"{OWN_SYSTEM}; another one runs that section only, for judging kinsim on it)")
    parser.add_argument("--hw", type=Path, default=None,
                        help="hardware file of that system (default: the file of hardware/ that describes it, "
                             "hardware/h100.yaml for h100_sxm)")
    parser.add_argument("--plot", type=Path, default=None, metavar="DIR",
                        help="also write the figures as PNG files into DIR: kernels_h100.png (held-out rows), "
                             "kernels_a100_transfer.png, end_to_end.png (aggregated rows)")
    parser.add_argument("--rows-csv", type=Path, default=None, metavar="PATH",
                        help="also write the end-to-end section's aggregated rows to PATH: each row's identity, "
                             "measured and simulated TTFT and TPOT, errors, held out or not")
    args = parser.parse_args(argv)
    data = args.data
    own = args.system == OWN_SYSTEM
    try:
        hw_path = hardware_of(args.system, args.hw).resolve()
    except ValueError as error:
        parser.error(str(error))
    if args.fit_overheads and not own:
        parser.error(f"--fit-overheads fits to {OWN_SYSTEM} rows only: the other systems' rows are held out")
    if args.plot is not None:
        args.plot.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        if own and not args.skip_kernels and not args.fit_overheads:
            section_kernels(data, Path(scratch), args.plot)
            section_transfer(data, Path(scratch), args.plot)
        if not args.skip_kernels and not args.fit_overheads:
            section_mla(data, args.system, hw_path)
            section_window(data, args.system, hw_path)
        section_end_to_end(data, args.rows_every, args.fit_overheads, args.plot, args.system, hw_path, args.rows_csv)
    return 0


def save_figure(fig, directory: Path | None, name: str) -> None:
    """Write ``fig`` as ``directory/name`` (PNG) when a plot directory was given."""
    if directory is None:
        return
    fig.savefig(directory / name, dpi=120)
    print(f"   wrote {directory / name}")


if __name__ == "__main__":
    sys.exit(main())
