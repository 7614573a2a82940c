"""The reference Triton kernels against float64 references, on the CPU in Triton's interpreter.

Runs with the ``calibrate`` extra (torch, Triton). Triton's interpreter does not handle bf16, so the
kernels run in fp16 and fp32 here; on a GPU the harness runs them in bf16.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch", reason="the kernel tests need the calibrate extra: pip install '.[calibrate]'")
pytest.importorskip("triton", reason="the kernel tests need the calibrate extra: pip install '.[calibrate]'")

from kinsim.calibration.kernels.attention import (  # noqa: E402
    block_topk_decode_attention,
    page_summaries,
    paged_decode_attention,
)
from kinsim.calibration.kernels.gemm import gemm  # noqa: E402

TOLERANCE = {torch.float16: 2e-2, torch.float32: 1e-4}


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("m, n, k", [(1, 48, 40), (33, 70, 96), (64, 64, 64)])
def test_gemm_matches_float64(m, n, k, dtype):
    gen = torch.Generator().manual_seed(m * 1000 + n + k)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    expected = a.double() @ b.double()
    got = gemm(a, b, block_m=16, block_n=32, block_k=16).double()
    assert torch.allclose(got, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * np.sqrt(k))


def paged_case(batch, q_heads, kv_heads, head_dim, page, lengths, dtype, seed):
    """Random q and KV cache laid out in shuffled pages, with the block table and lengths."""
    gen = torch.Generator().manual_seed(seed)
    max_pages = max(-(-n // page) for n in lengths)
    total = batch * max_pages + 3
    order = torch.randperm(total, generator=gen)
    table = order[:batch * max_pages].reshape(batch, max_pages).to(torch.int32)
    q = torch.randn(batch, q_heads, head_dim, generator=gen).to(dtype)
    k_cache = torch.randn(total, page, kv_heads, head_dim, generator=gen).to(dtype)
    v_cache = torch.randn(total, page, kv_heads, head_dim, generator=gen).to(dtype)
    return q, k_cache, v_cache, table, torch.tensor(lengths, dtype=torch.int32)


def reference(q, k_cache, v_cache, table, lengths, pages_of=None):
    """float64 attention of each query head over its sequence's tokens (or over chosen pages only)."""
    batch, q_heads, head_dim = q.shape
    _, page, kv_heads, _ = k_cache.shape
    group = q_heads // kv_heads
    out = np.zeros((batch, q_heads, head_dim))
    for b in range(batch):
        n = int(lengths[b])
        for h in range(q_heads):
            kv = h // group
            indices = range(-(-n // page)) if pages_of is None else [i for i in pages_of(b, kv) if i >= 0]
            keys, values = [], []
            for i in indices:
                page_id = int(table[b, i])
                valid = min(page, n - i * page)
                keys.append(k_cache[page_id, :valid, kv].double().numpy())
                values.append(v_cache[page_id, :valid, kv].double().numpy())
            keys, values = np.concatenate(keys), np.concatenate(values)
            scores = keys @ q[b, h].double().numpy() / np.sqrt(head_dim)
            weights = np.exp(scores - scores.max())
            out[b, h] = weights @ values / weights.sum()
    return out


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("pages_per_split", [None, 1, 2])
def test_paged_decode_attention_matches_float64(dtype, pages_per_split):
    # GQA group of 4 (Qwen3-8B's 32:8), pages of 16, lengths that end mid-page, split or not
    q, k_cache, v_cache, table, lengths = paged_case(3, 8, 2, 32, 16, [5, 37, 64], dtype, seed=1)
    got = paged_decode_attention(q, k_cache, v_cache, table, lengths, pages_per_split=pages_per_split)
    expected = reference(q, k_cache, v_cache, table, lengths)
    assert np.allclose(got.double().numpy(), expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("lengths", [[150, 100], [600, 300]])  # 38 pages: the scores split over 3 programs
def test_block_topk_attends_over_the_best_pages_and_the_local_window(dtype, lengths):
    from kinsim.calibration.kernels.attention import TARGET_PROGRAMS, _pages_per_program

    if max(lengths) == 600:
        assert -(-38 // _pages_per_program(38, 2 * 2, TARGET_PROGRAMS, multiple=16)) == 3
    q, k_cache, v_cache, table, lengths = paged_case(2, 8, 2, 32, 16, lengths, dtype, seed=2)
    summaries = page_summaries(k_cache)
    top_k, local = 3, 1
    out, selected = block_topk_decode_attention(q, k_cache, v_cache, table, lengths, summaries, top_k, local)
    group = 4
    for b in range(2):
        n = int(lengths[b])
        pages, complete = -(-n // 16), n // 16
        candidates = list(range(min(complete, pages - local)))
        for kv in range(2):
            chosen = [int(i) for i in selected[b, kv, :top_k] if i >= 0]
            window = [int(i) for i in selected[b, kv, top_k:] if i >= 0]
            assert window == list(range(pages - local, pages))
            # the chosen pages are the best by summed query . mean-key score (float64), up to rounding
            queries = q[b, kv * group:(kv + 1) * group].double().numpy()
            score = {i: float((queries @ summaries[int(table[b, i]), kv].double().numpy()).sum()) for i in candidates}
            assert len(chosen) == min(top_k, len(candidates)) and set(chosen) <= set(candidates)
            unchosen = [score[i] for i in candidates if i not in chosen]
            if unchosen:
                assert min(score[i] for i in chosen) >= max(unchosen) - 1e-2
    expected = reference(q, k_cache, v_cache, table, lengths,
                         pages_of=lambda b, kv: [int(i) for i in selected[b, kv]])
    assert np.allclose(out.double().numpy(), expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def test_harness_smoke_run_writes_what_the_fitter_reads(tmp_path):
    import subprocess
    import sys

    import yaml

    from kinsim.calibration.measurements import read_measurements
    from kinsim.cli import main

    from .conftest import HARDWARE, ROOT

    # The harness must run where only torch, Triton, numpy and pyyaml exist: block the rest.
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('simpy', 'pandas', 'matplotlib', 'networkx', 'scipy'):\n"
        "            raise ImportError(f'{name} is not on the GPU machine')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from kinsim.calibration.measure import main\n"
        f"sys.exit(main(['--out', {str(tmp_path / 'smoke')!r}, '--cpu-smoke']))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = read_measurements(tmp_path / "smoke")
    assert set(frame["kernel"]) == {"attention_decode", "selection", "attention_sparse", "gemm"}
    assert set(frame[frame["kernel"] == "gemm"]["impl"]) == {"triton", "torch.matmul"}
    # work by hand: 1 sequence, 16 tokens, 8 query and 2 KV heads of 32 dims, fp16
    row = frame[(frame["kernel"] == "attention_decode") & (frame["batch"] == 1) & (frame["context"] == 16)].iloc[0]
    assert row["flops"] == 4 * 8 * 32 * 16
    assert row["bytes"] == 2 * 2 * 32 * 2 * 16 + 2 * 8 * 32 * 2 + 2 * 2 * 32 * 2
    gemm_row = frame[(frame["kernel"] == "gemm") & (frame["m"] == 8) & (frame["n"] == 64)].iloc[0]
    assert gemm_row["flops"] == 2 * 8 * 64 * 32 and gemm_row["bytes"] == 2 * (64 * 32 + 8 * 32 + 8 * 64)
    profile = tmp_path / "profile.yaml"
    assert main(["calibrate", "fit", str(tmp_path / "smoke"), "--hw", str(HARDWARE / "h100.yaml"),
                 "-o", str(profile)]) == 0
    written = yaml.safe_load(profile.read_text())
    assert {"gemm", "attention_decode", "attention_sparse", "selection"} <= set(written)
    assert "CPU (Triton interpreter" in written["device"]


def test_the_cpu_smoke_measurement_runs_through_the_kinsim_command(tmp_path):
    """``kinsim calibrate measure --cpu-smoke`` as a user types it, in a fresh process where TRITON_INTERPRET
    is not set: the command sets it before importing Triton, so kernels run in the interpreter (it crashed
    when Triton was imported first). The grid itself is the harness test's (above); here the measurement is
    one Triton GEMM of 8 x 16 by 16 x 8 ones, whose every entry is 16."""
    import subprocess
    import sys

    from .conftest import ROOT

    script = (
        "import sys\n"
        "import kinsim.calibration.measure as measure\n"
        "def one_gemm(out, quick, cpu_smoke, log=print):\n"
        "    import torch\n"
        "    from kinsim.calibration.kernels.gemm import gemm\n"
        "    c = gemm(torch.ones(8, 16), torch.ones(16, 8))\n"
        "    (out / 'measurements.csv').write_text(f'{float(c.sum())}\\n')\n"
        "    return out / 'measurements.csv'\n"
        "measure.run = one_gemm\n"
        "from kinsim.cli import main\n"
        f"sys.exit(main(['calibrate', 'measure', '--cpu-smoke', '--out', {str(tmp_path / 'smoke')!r}]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float((tmp_path / "smoke" / "measurements.csv").read_text()) == 8 * 8 * 16
