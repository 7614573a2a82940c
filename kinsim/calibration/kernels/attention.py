"""Decode attention over a paged KV cache in Triton: dense (split over the context for long sequences,
then merged) and block top-k sparse.

Layout: ``q`` is ``(batch, q_heads, head_dim)``; ``k_cache`` and ``v_cache`` are ``(pages, page_size,
kv_heads, head_dim)``; ``block_table`` is ``(batch, max_pages)`` of page numbers; ``seq_lens`` is
``(batch,)`` tokens cached per sequence. Query heads ``h * group ... h * group + group - 1`` share KV head
``h`` (grouped-query attention). One program handles one KV head and its whole group of query heads, so
the KV of a page is read once for the group.

Block top-k (the selection block is one page): every complete page outside the local window has a
summary, the mean of its keys; a score kernel rates each page by the summed dot product of the group's
queries with the summary; ``torch.topk`` keeps the ``top_k`` best; the local window (the last
``local_pages`` pages) is always kept; a last kernel attends over the kept pages only.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

#: Programs per streaming multiprocessor a launch aims for when it splits long contexts (several per SM
#: hide memory latency); without a CUDA device (the interpreter), this many programs in all.
PROGRAMS_PER_SM = 4
TARGET_PROGRAMS = 128


def target_programs(device: torch.device) -> int:
    """Programs a decode launch aims for on ``device``: :data:`PROGRAMS_PER_SM` per SM on a GPU."""
    if device.type == "cuda":
        return PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count
    return TARGET_PROGRAMS


def _pages_per_program(max_pages: int, programs_per_page_run: int, target: int, multiple: int = 1) -> int:
    """Pages each program takes so that ``programs_per_page_run`` x runs is about ``target`` programs
    (a multiple of ``multiple``; at least one run)."""
    runs = min(max(math.ceil(target / programs_per_page_run), 1), max_pages)
    pages = math.ceil(max_pages / runs)
    return multiple * math.ceil(pages / multiple)


@triton.jit
def _group_queries(q_ptr, b, h, stride_qb, stride_qh, GROUP: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr):
    """The queries of KV head ``h``'s group in sequence ``b``, padded with zero rows to ``BLOCK_G``."""
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    return tl.load(q_ptr + b * stride_qb + (h * GROUP + g)[:, None] * stride_qh + d[None, :],
                   mask=g[:, None] < GROUP, other=0.0)


@triton.jit
def _attend_pages(q, k_ptr, v_ptr, page, first_pos, seq_len, head, m_i, l_i, acc, scale,
                  stride_kp, stride_ks, stride_kh, stride_vp, stride_vs, stride_vh,
                  PAGE: tl.constexpr, D: tl.constexpr):
    """One page of online softmax: update (max, sum, accumulator) of a group of query heads."""
    page = page.to(tl.int64)  # page x page stride passes 2**31 on the largest shapes (2**21 tokens of KV)
    t = tl.arange(0, PAGE)
    d = tl.arange(0, D)
    k = tl.load(k_ptr + page * stride_kp + t[:, None] * stride_ks + head * stride_kh + d[None, :])
    scores = tl.dot(q.to(k.dtype), tl.trans(k)).to(tl.float32) * scale
    scores = tl.where((first_pos + t)[None, :] < seq_len, scores, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(scores, axis=1))
    alpha = tl.exp(m_i - m_new)
    p = tl.exp(scores - m_new[:, None])
    v = tl.load(v_ptr + page * stride_vp + t[:, None] * stride_vs + head * stride_vh + d[None, :])
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
    return m_new, l_i * alpha + tl.sum(p, axis=1), acc


@triton.jit
def _paged_decode_split_kernel(q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, po_ptr, pm_ptr, pl_ptr, scale,
                               pages_per_split, splits, stride_qb, stride_qh, stride_kp, stride_ks, stride_kh,
                               stride_vp, stride_vs, stride_vh, stride_tb,
                               GROUP: tl.constexpr, BLOCK_G: tl.constexpr, PAGE: tl.constexpr, D: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    s = tl.program_id(2)
    heads = tl.num_programs(1)
    seq_len = tl.load(lens_ptr + b)
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    q = _group_queries(q_ptr, b, h, stride_qb, stride_qh, GROUP, BLOCK_G, D)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, D], tl.float32)
    start = s * pages_per_split
    end = tl.minimum(start + pages_per_split, tl.cdiv(seq_len, PAGE))
    for i in range(start, end):
        page = tl.load(table_ptr + b * stride_tb + i)
        m_i, l_i, acc = _attend_pages(q, k_ptr, v_ptr, page, i * PAGE, seq_len, h, m_i, l_i, acc, scale,
                                      stride_kp, stride_ks, stride_kh, stride_vp, stride_vs, stride_vh, PAGE, D)
    base = ((b * heads + h) * splits + s) * BLOCK_G
    tl.store(pm_ptr + base + g, m_i)
    tl.store(pl_ptr + base + g, l_i)
    tl.store(po_ptr + (base + g)[:, None] * D + d[None, :], acc)


@triton.jit
def _merge_splits_kernel(po_ptr, pm_ptr, pl_ptr, o_ptr, splits, stride_ob, stride_oh,
                         GROUP: tl.constexpr, BLOCK_G: tl.constexpr, D: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    heads = tl.num_programs(1)
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    m_max = tl.full([BLOCK_G], float("-inf"), tl.float32)
    for s in range(0, splits):
        m_max = tl.maximum(m_max, tl.load(pm_ptr + ((b * heads + h) * splits + s) * BLOCK_G + g))
    total = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, D], tl.float32)
    for s in range(0, splits):
        base = ((b * heads + h) * splits + s) * BLOCK_G
        m_s = tl.load(pm_ptr + base + g)
        weight = tl.where(m_s == float("-inf"), 0.0, tl.exp(m_s - m_max))
        total += weight * tl.load(pl_ptr + base + g)
        acc += weight[:, None] * tl.load(po_ptr + (base + g)[:, None] * D + d[None, :])
    out = acc / total[:, None]
    tl.store(o_ptr + b * stride_ob + (h * GROUP + g)[:, None] * stride_oh + d[None, :],
             out.to(o_ptr.dtype.element_ty), mask=g[:, None] < GROUP)


def _group_block(group: int) -> int:
    return max(16, triton.next_power_of_2(group))  # tl.dot needs at least 16 rows


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_table: torch.Tensor,
                           seq_lens: torch.Tensor, pages_per_split: int | None = None,
                           scale: float | None = None) -> torch.Tensor:
    """Dense decode attention; the context is split into runs of ``pages_per_split`` pages handled by
    separate programs and merged (default: enough splits for about :func:`target_programs` programs)."""
    batch, q_heads, head_dim = q.shape
    _, page_size, kv_heads, _ = k_cache.shape
    group = q_heads // kv_heads
    max_pages = block_table.shape[1]
    if pages_per_split is None:
        pages_per_split = _pages_per_program(max_pages, batch * kv_heads, target_programs(q.device))
    splits = math.ceil(max_pages / pages_per_split)
    block_g = _group_block(group)
    scale = head_dim ** -0.5 if scale is None else scale
    f32 = dict(dtype=torch.float32, device=q.device)
    part_o = torch.empty((batch, kv_heads, splits, block_g, head_dim), **f32)
    part_m = torch.empty((batch, kv_heads, splits, block_g), **f32)
    part_l = torch.empty((batch, kv_heads, splits, block_g), **f32)
    _paged_decode_split_kernel[(batch, kv_heads, splits)](
        q, k_cache, v_cache, block_table, seq_lens, part_o, part_m, part_l, scale, pages_per_split, splits,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_table.stride(0),
        GROUP=group, BLOCK_G=block_g, PAGE=page_size, D=head_dim)
    out = torch.empty_like(q)
    _merge_splits_kernel[(batch, kv_heads)](part_o, part_m, part_l, out, splits, out.stride(0), out.stride(1),
                                            GROUP=group, BLOCK_G=block_g, D=head_dim)
    return out


@triton.jit
def _page_scores_kernel(q_ptr, summary_ptr, table_ptr, lens_ptr, scores_ptr, local_pages, max_pages,
                        pages_per_program, stride_qb, stride_qh, stride_sp, stride_sh, stride_tb,
                        GROUP: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_P: tl.constexpr, PAGE: tl.constexpr,
                        D: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    first = tl.program_id(2) * pages_per_program  # a multiple of BLOCK_P: runs never overlap
    heads = tl.num_programs(1)
    seq_len = tl.load(lens_ptr + b)
    d = tl.arange(0, D)
    q = _group_queries(q_ptr, b, h, stride_qb, stride_qh, GROUP, BLOCK_G, D)
    pages = tl.cdiv(seq_len, PAGE)
    scored = tl.maximum(tl.minimum(seq_len // PAGE, pages - local_pages), 0)  # complete, outside the window
    for p0 in range(first, tl.minimum(first + pages_per_program, max_pages), BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        valid = p < scored
        page = tl.load(table_ptr + b * stride_tb + p, mask=valid, other=0)
        summary = tl.load(summary_ptr + page[:, None] * stride_sp + h * stride_sh + d[None, :],
                          mask=valid[:, None], other=0.0)
        score = tl.sum(tl.dot(q.to(summary.dtype), tl.trans(summary)).to(tl.float32), axis=0)
        tl.store(scores_ptr + (b * heads + h) * max_pages + p, tl.where(valid, score, float("-inf")),
                 mask=p < max_pages)


@triton.jit
def _selected_attention_kernel(q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, selected_ptr, o_ptr, scale, kept,
                               stride_qb, stride_qh, stride_kp, stride_ks, stride_kh, stride_vp, stride_vs,
                               stride_vh, stride_tb, stride_ob, stride_oh,
                               GROUP: tl.constexpr, BLOCK_G: tl.constexpr, PAGE: tl.constexpr, D: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    heads = tl.num_programs(1)
    seq_len = tl.load(lens_ptr + b)
    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, D)
    q = _group_queries(q_ptr, b, h, stride_qb, stride_qh, GROUP, BLOCK_G, D)
    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, D], tl.float32)
    for i in range(0, kept):
        index = tl.load(selected_ptr + (b * heads + h) * kept + i)
        if index >= 0:
            page = tl.load(table_ptr + b * stride_tb + index)
            m_i, l_i, acc = _attend_pages(q, k_ptr, v_ptr, page, index * PAGE, seq_len, h, m_i, l_i, acc, scale,
                                          stride_kp, stride_ks, stride_kh, stride_vp, stride_vs, stride_vh, PAGE, D)
    out = acc / l_i[:, None]
    tl.store(o_ptr + b * stride_ob + (h * GROUP + g)[:, None] * stride_oh + d[None, :],
             out.to(o_ptr.dtype.element_ty), mask=g[:, None] < GROUP)


def page_summaries(k_cache: torch.Tensor) -> torch.Tensor:
    """Mean key of every page, ``(pages, kv_heads, head_dim)`` (kept up to date at KV write time by a real
    engine; not part of the measured decode step)."""
    return k_cache.mean(dim=1, dtype=torch.float32).to(k_cache.dtype)  # no full fp32 copy of the cache


def page_scores(q: torch.Tensor, summaries: torch.Tensor, block_table: torch.Tensor, seq_lens: torch.Tensor,
                top_k: int, local_pages: int = 1, page_size: int = 16) -> torch.Tensor:
    """The selection of block top-k: the kept pages per (sequence, KV head), as sequence page indices
    (``-1`` where fewer were kept): the ``top_k`` best-scoring complete pages outside the local window,
    then the window's ``local_pages`` pages."""
    batch, q_heads, head_dim = q.shape
    kv_heads = summaries.shape[1]
    group = q_heads // kv_heads
    max_pages = block_table.shape[1]
    scores = torch.empty((batch, kv_heads, max_pages), dtype=torch.float32, device=q.device)
    block_p = 16
    per_program = _pages_per_program(max_pages, batch * kv_heads, target_programs(q.device), multiple=block_p)
    _page_scores_kernel[(batch, kv_heads, math.ceil(max_pages / per_program))](
        q, summaries, block_table, seq_lens, scores, local_pages, max_pages, per_program, q.stride(0), q.stride(1),
        summaries.stride(0), summaries.stride(1), block_table.stride(0),
        GROUP=group, BLOCK_G=_group_block(group), BLOCK_P=block_p, PAGE=page_size, D=head_dim)
    best, chosen = torch.topk(scores, min(top_k, max_pages), dim=-1)
    chosen = torch.where(torch.isfinite(best), chosen, torch.full_like(chosen, -1))
    pages = (seq_lens + page_size - 1) // page_size
    window = pages[:, None] - local_pages + torch.arange(local_pages, device=q.device)[None, :]
    window = torch.where(window >= 0, window, torch.full_like(window, -1))
    selected = torch.cat([chosen, window[:, None, :].expand(batch, kv_heads, local_pages)], dim=-1)
    return selected.to(torch.int32).contiguous()


def selected_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_table: torch.Tensor,
                       seq_lens: torch.Tensor, selected: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Attention of each group of query heads over its KV head's ``selected`` pages only."""
    batch, q_heads, head_dim = q.shape
    _, page_size, kv_heads, _ = k_cache.shape
    group = q_heads // kv_heads
    scale = head_dim ** -0.5 if scale is None else scale
    out = torch.empty_like(q)
    _selected_attention_kernel[(batch, kv_heads)](
        q, k_cache, v_cache, block_table, seq_lens, selected, out, scale, selected.shape[-1],
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_table.stride(0), out.stride(0), out.stride(1),
        GROUP=group, BLOCK_G=_group_block(group), PAGE=page_size, D=head_dim)
    return out


def block_topk_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                block_table: torch.Tensor, seq_lens: torch.Tensor, summaries: torch.Tensor,
                                top_k: int, local_pages: int = 1,
                                scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Block top-k sparse decode attention: :func:`page_scores` then :func:`selected_attention`. Returns
    the output and the kept pages."""
    selected = page_scores(q, summaries, block_table, seq_lens, top_k, local_pages, page_size=k_cache.shape[1])
    return selected_attention(q, k_cache, v_cache, block_table, seq_lens, selected, scale), selected
