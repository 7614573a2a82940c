"""Step times for the engine: what a step (or a segment of decode steps) costs on one GPU of a replica.

Every step also pays the serving engine's host time (:mod:`kinsim.cost.engine_overhead`): its per-step
part is added with the token part, its per-sequence part with the logit rows (one per sequence that gets a
token). A step's operators depend on the batch only through its token count (most of them) or its logit rows
(LM head and sampling), except attention (and block selection), which depend on each sequence's context.
:class:`StepPricer` therefore prices the former once per token count and per row count, 256 consecutive
counts at a time (:class:`_CountTable`), and the attention operators per step, for a whole segment of
decode steps at once as arrays with one entry per step. Both come from :mod:`kinsim.ops.lower` and the
same cost model, so the figures equal those of pricing ``lower_step`` step by step
(``tests/test_engine.py::test_pricer_matches_lower_step_priced_step_by_step``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinsim.cost.base import CostModel
from kinsim.cost.engine_overhead import engine_overhead
from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import (
    PrefillChunk,
    decode_attention_ops_of,
    decode_run_totals,
    model_attention_dims,
    prefill_attention_op,
)
from kinsim.ops.kernel_work import ATTENTION_KV_BLOCK, MAX_SPLITS, head_dim_scale
from kinsim.ops.lower import ACT_DTYPE, StepBatch, attention_ops, logit_ops, lower_step, window_layers_of
from kinsim.ops.offload import (
    fetch_bytes,
    fetch_seconds,
    host_link_busy_s,
    offloads,
    replica_gpus_per_host_link,
    selected_blocks,
    selected_blocks_run,
)
from kinsim.ops.op import OP_CLASSES, Op
from kinsim.workload.spec import AttentionPolicy, DeploymentSpec

#: Rows of :attr:`StepFigures.matrix`: step time; per op class its seconds, FLOPs and HBM bytes; then the
#: busy terms; then the host link's busy seconds and bytes (KV fetched from host memory).
ROWS = ("time_s", *(f"{c}_s" for c in OP_CLASSES), *(f"{c}_flops" for c in OP_CLASSES),
        *(f"{c}_bytes" for c in OP_CLASSES), "compute_s", "memory_s", "network_s", "host_link_s",
        "host_link_bytes")
_ROW = {name: i for i, name in enumerate(ROWS)}
_CLASS_ROW = {c: _ROW[f"{c}_s"] for c in OP_CLASSES}
_CLASS_FLOPS = {c: _ROW[f"{c}_flops"] for c in OP_CLASSES}
_CLASS_BYTES = {c: _ROW[f"{c}_bytes"] for c in OP_CLASSES}
_COMPUTE, _MEMORY, _NETWORK = (_ROW[k] for k in ("compute_s", "memory_s", "network_s"))
_HOST, _HOST_BYTES = _ROW["host_link_s"], _ROW["host_link_bytes"]
_ATTENTION_S, _ATTENTION_FLOPS, _ATTENTION_BYTES = (_CLASS_ROW["attention"], _CLASS_FLOPS["attention"],
                                                    _CLASS_BYTES["attention"])


def add_attention(rows, layers: int, time, flops, nbytes, compute, memory) -> None:
    """Add a decode attention op's figures to ``rows`` (a column as a list, or a matrix: indexed by the row
    numbers of :data:`ROWS`): ``time`` seconds of all ``layers`` layers (to the step's time and to attention's),
    and the ``flops``, HBM bytes, compute and memory seconds of one layer, ``layers`` times."""
    rows[0] += time
    rows[_ATTENTION_S] += time
    rows[_ATTENTION_FLOPS] += layers * flops
    rows[_ATTENTION_BYTES] += layers * nbytes
    rows[_COMPUTE] += layers * compute
    rows[_MEMORY] += layers * memory


@dataclass
class StepFigures:
    """Figures of consecutive steps, per GPU of the replica: ``matrix`` has one row per entry of
    :data:`ROWS` and one column per step.

    Rows: ``time_s`` (duration of each step, seconds); per op class ``<class>_s`` (seconds),
    ``<class>_flops`` (FLOPs executed) and ``<class>_bytes`` (bytes read from and written to HBM; a
    collective's link bytes are not HBM bytes); ``compute_s``,
    ``memory_s``, ``network_s`` (busy seconds of the compute units at their achievable rate, of HBM and of
    the links: the cost model's terms summed over the step's ops); ``host_link_s`` and ``host_link_bytes``
    (busy seconds of the GPU's host link, host to GPU, and the bytes it carried for this GPU: KV fetched by
    block top-k with offload, :mod:`kinsim.ops.offload`; 0 otherwise). The fetch's time on the critical
    path (busy seconds plus a latency per layer) is in ``time_s`` and ``attention_s``.

    ``draft_s``: for speculative steps, the seconds of each step's draft passes (part of ``time_s``); else
    None. ``attended``: for a decode run, the tokens attended per step over the batch; else None.
    """

    matrix: np.ndarray
    draft_s: np.ndarray | None = None
    #: For a decode run: tokens attended per step, summed over the sequences (float, shape ``(steps,)``).
    attended: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return self.matrix.shape[1]

    @property
    def time_s(self) -> np.ndarray:
        return self.matrix[0]

    def row(self, name: str) -> np.ndarray:
        return self.matrix[_ROW[name]]

    def class_s(self, op_class: str) -> np.ndarray:
        return self.matrix[_CLASS_ROW[op_class]]

    def totals(self, steps: int) -> dict[str, float]:
        """Each row summed over the first ``steps`` steps."""
        return dict(zip(ROWS, self.matrix[:, :steps].sum(axis=1).tolist()))


def _accumulate(ops: tuple[Op, ...] | list[Op], cost_model: CostModel, steps: int) -> StepFigures:
    """Sum the ops' figures; ``steps`` is the length of their per-step arrays (1 for scalar figures)."""
    if steps == 1:
        return StepFigures(np.array(_accumulate_scalar(ops, cost_model))[:, None])
    matrix = np.zeros((len(ROWS), steps))
    for op in ops:
        cost = cost_model.op_cost(op)
        n = op.count
        time = n * cost.time_s
        matrix[0] += time
        matrix[_CLASS_ROW[op.op_class]] += time
        matrix[_CLASS_FLOPS[op.op_class]] += n * op.flops
        if op.collective is None:
            matrix[_CLASS_BYTES[op.op_class]] += n * op.bytes
        matrix[_COMPUTE] += n * cost.compute_s
        matrix[_MEMORY] += n * cost.memory_s
        matrix[_NETWORK] += n * cost.network_s
    return StepFigures(matrix)


def _f(value) -> float:
    """A float from a float, an int or a one-element array."""
    if isinstance(value, float):
        return value
    return value.item() if hasattr(value, "item") else float(value)


def _accumulate_scalar(ops, cost_model: CostModel) -> list[float]:
    """:func:`_accumulate` for one step in Python floats: the same operations in the same order, so the
    same bits, without the overhead of tiny arrays."""
    row = [0.0] * len(ROWS)
    for op in ops:
        cost = cost_model.op_cost(op)
        n = op.count
        time = n * _f(cost.time_s)
        row[0] += time
        row[_CLASS_ROW[op.op_class]] += time
        row[_CLASS_FLOPS[op.op_class]] += n * _f(op.flops)
        if op.collective is None:
            row[_CLASS_BYTES[op.op_class]] += n * _f(op.bytes)
        row[_COMPUTE] += n * _f(cost.compute_s)
        row[_MEMORY] += n * _f(cost.memory_s)
        row[_NETWORK] += n * _f(cost.network_s)
    return row


class StepPricer:
    """Prices steps of one replica's batches.

    A step's ops other than attention (:func:`kinsim.ops.lower.attention_ops`) depend only on its token
    count, except the logit ops (:func:`kinsim.ops.lower.logit_ops`), which depend only on its logit rows;
    both parts are priced once per value and cached. Attention is priced per step, for a whole segment of
    decode steps at once.
    """

    #: Most cached sets of prefill chunks before that cache is cleared (bounds its memory; the token-count
    #: and logit-row tables bound theirs with :attr:`_CountTable.LIMIT`).
    CACHE_LIMIT = 65536

    def __init__(self, model: ModelSpec, deployment: DeploymentSpec, policy: AttentionPolicy,
                 cost_model: CostModel) -> None:
        self.model, self.deployment, self.policy, self.cost_model = model, deployment, policy, cost_model
        self.dims = model_attention_dims(model, deployment.tensor_parallel, act_dtype=ACT_DTYPE,
                                         ranks=deployment.attention_data_parallel)
        self._by_tokens = _CountTable(self._token_figures)
        self._by_rows = _CountTable(self._rows_figures)
        self._by_chunks: dict[tuple, np.ndarray] = {}
        self._by_chunks_list: dict[tuple, list[float]] = {}  # the same columns as lists (dense_column)
        self.overhead = engine_overhead(deployment.engine, deployment.engine_version)
        self._direct: dict[int, _DirectDecodeAttention | None] = {}  # per batch size; None: not applicable
        self._decode_static: dict[int, np.ndarray] = {}  # per batch size: a decode step's ops but attention
        self.offload = offloads(policy)  # decode steps fetch selected KV blocks over the host link
        #: The model's own sliding window and the layers that use it, or None (every layer full); the workload
        #: refuses such a model with speculative decoding or offloaded KV (WorkloadSpec).
        self.window = window_layers_of(model)
        #: Speculative steps' pricer (``deployment.speculative``), or None.
        self.speculative = None
        if deployment.speculative is not None:
            from kinsim.engine.speculation import SpeculativePricer

            self.speculative = SpeculativePricer(model, deployment, policy, cost_model)

    def host_s(self, rows: int) -> float:
        """The serving engine's host time of a step in which ``rows`` sequences get a token, seconds."""
        return self.overhead.step_s + rows * self.overhead.per_sequence_s

    def step(self, batch: StepBatch) -> StepFigures:
        """One step of any batch (decode and prefill mixed).

        Where the decode attention has a direct form (:class:`_DirectDecodeAttention`), it is priced from
        the batch's totals and the prefill attention op is priced once per set of chunks; the figures are
        the same bits as pricing the step's attention ops one by one (the same operations in the same
        order: ``tests/test_engine_scale.py``)."""
        n = batch.n_decode
        direct = self._direct_of(n) if n and not self.offload else None
        if direct is None:
            return self._price(batch, 1)
        context = np.asarray(batch.decode_context).astype(np.int64)
        attended, read, _ = decode_run_totals(self.policy, context, 1, shared_prefix=batch.shared_prefix,
                                              group_index=batch.group_index,
                                              prefix_shared_read=self.deployment.prefix_shared_read)
        return StepFigures(self._direct_step(direct, attended, read, batch.prefill, n))

    def dense_column(self, n: int, cached: int, chunks: tuple[tuple[int, int, bool], ...] = ()) -> list[float]:
        """The figures (a column, as a list in the order of :data:`ROWS`) of :meth:`step` for ``n`` >= 1 decoding
        sequences that hold ``cached`` tokens in all under dense attention without the shared-prompt read, where
        :meth:`direct_of` prices them, and the prefill ``chunks``, each ``(tokens, cached, completes_prompt)``
        as :class:`~kinsim.ops.attention.PrefillChunk` holds them (the lean engine's mixed steps,
        :mod:`kinsim.engine.lean`): from the sums, the same bits. :meth:`_direct_step`'s additions on Python
        floats (attention, plus the prefill attention op, plus the token and logit-row parts' sum), from lists
        the tables keep per value: 3 us a step against about 7 us for the array form (on this project's
        2-core machine)."""
        direct = self._direct_of(n)
        first = float(cached + n)
        tokens, rows = n, n
        if chunks:  # the prefill column plus the attention's rows (where they are 0, 0 + x is x; a + b is b + a)
            column = list(self._prefill_list(chunks))
            for chunk_tokens, _, completes in chunks:
                tokens += chunk_tokens
                rows += completes
        else:
            column = [0.0] * len(ROWS)
        add_attention(column, direct.layers, *direct.step_terms(first, first))
        return [a + (t + r) for a, t, r in zip(column, self._by_tokens.values(tokens), self._by_rows.values(rows))]

    def _direct_step(self, direct: _DirectDecodeAttention, attended, read, prefill: tuple[PrefillChunk, ...],
                     n: int) -> np.ndarray:
        """One step's figures from the decode attention's tokens attended and read (one entry each), the
        prefill chunks and the ``n`` decoding sequences."""
        matrix = direct.matrix(attended, read, 1)
        if prefill:
            matrix += self._prefill_part(prefill)
        matrix += self._static_part(n + sum(c.tokens for c in prefill),
                                    n + sum(1 for c in prefill if c.completes_prompt))
        return matrix

    def decode_static(self, n: int) -> np.ndarray:
        """Figures (a column) of a decode step's ops other than attention for ``n`` sequences, priced once per
        ``n``."""
        static = self._decode_static.get(n)
        if static is None:
            static = self._decode_static[n] = self._static_part(n, n)
        return static

    def direct_of(self, n: int) -> _DirectDecodeAttention | None:
        """The direct decode-attention pricing of a batch of ``n`` sequences, or None where the generic path
        prices it (:class:`_DirectDecodeAttention`)."""
        return self._direct_of(n)

    def _direct_of(self, n: int) -> _DirectDecodeAttention | None:
        """The direct decode-attention pricing of a batch of ``n`` sequences, or None (built once per n)."""
        direct = self._direct.get(n, False)
        if direct is False:
            direct = self._direct[n] = _DirectDecodeAttention.of(self, n)
        return direct

    def _prefill_list(self, chunks: tuple[tuple[int, int, bool], ...]) -> list[float]:
        """:meth:`_prefill_part`'s figures of ``chunks`` (``(tokens, cached, completes_prompt)`` each) as a list,
        kept per set of chunks in a cache of its own (the lean engine's; the arrays' cache is the general
        engine's, so a run fills one of the two)."""
        # (tokens, cached) of the one chunk, or of each: the op depends on nothing else
        key = chunks[0][:2] if len(chunks) == 1 else tuple(chunk[:2] for chunk in chunks)
        values = self._by_chunks_list.get(key)
        if values is None:
            if len(self._by_chunks_list) >= self.CACHE_LIMIT:
                self._by_chunks_list.clear()
            prefill = tuple(PrefillChunk(tokens, cached, completes) for tokens, cached, completes in chunks)
            op = prefill_attention_op(self.dims, self.policy, prefill, count=self.model.layers)
            values = self._by_chunks_list[key] = _accumulate_scalar((op,), self.cost_model)
        return values

    def _prefill_part(self, chunks: tuple[PrefillChunk, ...]) -> np.ndarray:
        """Figures (a column) of the prefill attention op of ``chunks``, priced once per set of chunks."""
        key = tuple((c.tokens, c.cached) for c in chunks)
        column = self._by_chunks.get(key)
        if column is None:
            if len(self._by_chunks) >= self.CACHE_LIMIT:
                self._by_chunks.clear()
            op = prefill_attention_op(self.dims, self.policy, chunks, count=self.model.layers)
            column = self._by_chunks[key] = np.array(_accumulate_scalar((op,), self.cost_model))[:, None]
        return column

    def decode_segment(self, context: np.ndarray, shared_prefix: np.ndarray | None = None,
                       group_index: np.ndarray | None = None) -> StepFigures:
        """Decode-only steps; ``context`` has shape ``(steps, n)``: tokens cached per sequence per step."""
        batch = StepBatch(decode_context=context, shared_prefix=shared_prefix, group_index=group_index)
        return self._price(batch, context.shape[0])

    def decode_run(self, context: np.ndarray, steps: int, shared_prefix: np.ndarray | None = None,
                   group_index: np.ndarray | None = None) -> StepFigures:
        """``steps`` decode steps of a fixed batch from ``context`` (whole numbers, shape ``(n,)``): at step
        ``k`` each sequence has ``context + k`` tokens cached. The figures of :meth:`decode_segment` on that
        ``(steps, n)`` matrix, from the attention totals in closed form
        (:func:`kinsim.ops.attention.decode_run_totals`): ``O(n + steps)`` work, not ``O(n x steps)``."""
        n = int(np.shape(context)[0])
        attended, read, blocks = decode_run_totals(self.policy, context, steps, shared_prefix=shared_prefix,
                                                   group_index=group_index,
                                                   prefix_shared_read=self.deployment.prefix_shared_read)
        direct = self._direct_of(n)
        static = self.decode_static(n)
        if direct is not None:
            fig = StepFigures(direct.matrix(attended, read, steps, static))
        elif self.window is None:
            ops = decode_attention_ops_of(self.dims, self.policy, n, attended, read, blocks, count=self.model.layers)
            fig = _accumulate(ops, self.cost_model, steps)
        else:  # the full-attention layers, then the sliding-window ones, as lower.attention_ops orders them
            window, window_layers = self.window
            ops = decode_attention_ops_of(self.dims, self.policy, n, attended, read, blocks,
                                          count=self.model.layers - window_layers)
            windowed, _, _ = decode_run_totals(window, context, steps)
            ops += decode_attention_ops_of(self.dims, window, n, windowed, windowed, None, count=window_layers,
                                           model_window=True)
            fig = _accumulate(ops, self.cost_model, steps)
        if direct is None:
            fig.matrix += static
        fig.attended = attended
        if self.offload:
            self._add_fetch(fig.matrix, selected_blocks_run(self.policy, context, steps))
        return fig

    def _price(self, batch: StepBatch, steps: int) -> StepFigures:
        fig = _accumulate(attention_ops(self.dims, self.deployment, self.policy, batch, self.model.layers,
                                        window=self.window), self.cost_model, steps)
        fig.matrix += self._static_part(batch.tokens, batch.logit_rows)
        if self.offload and batch.n_decode:
            self._add_fetch(fig.matrix, selected_blocks(self.policy, batch.decode_context).sum(axis=-1))
        return fig

    def fetch_s(self, decode_context: np.ndarray) -> float:
        """Seconds the host-link fetch adds to a step whose decoding sequences have ``decode_context`` tokens
        cached (shape ``(n,)``); 0 unless the policy offloads the KV."""
        if not self.offload or not np.size(decode_context):
            return 0.0
        return float(self._fetch(selected_blocks(self.policy, decode_context).sum(axis=-1))[0])

    def _fetch(self, blocks):
        """Critical-path seconds, host-link busy seconds and bytes per GPU of fetching ``blocks`` selected
        blocks (per step, summed over the batch; :mod:`kinsim.ops.offload`)."""
        hw = self.cost_model.hw
        share = replica_gpus_per_host_link(hw, self.deployment.tensor_parallel)
        nbytes = fetch_bytes(self.dims, self.policy, self.model.layers, blocks)
        return fetch_seconds(hw, self.model.layers, nbytes, share), host_link_busy_s(hw, nbytes, share), nbytes

    def _add_fetch(self, matrix: np.ndarray, blocks) -> None:
        """Add the host-link fetch of ``blocks`` selected blocks per step (summed over the batch) to the
        figures: its time to the step and to attention, its busy time and bytes to the host rows."""
        time, busy, nbytes = self._fetch(blocks)
        matrix[0] += time
        matrix[_CLASS_ROW["attention"]] += time
        matrix[_HOST] += busy
        matrix[_HOST_BYTES] += nbytes

    def _static_part(self, tokens: int, rows: int) -> np.ndarray:
        """Figures (a column) of the ops other than attention: those that depend on the token count alone
        (``tokens`` through the linear layers), priced once per count, plus the logit ops of ``rows``
        sequences, priced once per number of rows."""
        return self._token_part(tokens) + self._rows_part(rows)

    def _token_part(self, tokens: int) -> np.ndarray:
        """Figures (a column) of the ops that depend on the token count alone, with the engine's host time
        per step (:class:`_CountTable`)."""
        return self._by_tokens.column(tokens)

    def _rows_part(self, rows: int) -> np.ndarray:
        """Figures (a column) of the logit ops of ``rows`` sequences, with the engine's host time per
        sequence that gets a token (:class:`_CountTable`)."""
        return self._by_rows.column(rows)

    def _token_figures(self, tokens) -> np.ndarray:
        """:meth:`_token_part` of a token count (an int: shape ``(len(ROWS),)``) or of an array of positive
        counts (shape ``(len(ROWS), counts)``, the ops' fields as arrays over the counts)."""
        if np.ndim(tokens):
            ops = lower_step(self.model, self.deployment, self.policy, StepBatch(), attention=False,
                             tokens=tokens.astype(float)).ops
            figures = _accumulate(ops, self.cost_model, len(tokens)).matrix
        else:  # one count (no op for 0): a prefill chunk of that many tokens that gives no logit row
            batch = StepBatch(prefill=(PrefillChunk(tokens, 0, completes_prompt=False),) if tokens else ())
            ops = lower_step(self.model, self.deployment, self.policy, batch, attention=False).ops
            figures = _accumulate(ops, self.cost_model, 1).matrix[:, 0]
        figures[0] += self.overhead.step_s  # the serving engine's host time, once per step, in class other
        figures[_CLASS_ROW["other"]] += self.overhead.step_s
        return figures

    def _rows_figures(self, rows) -> np.ndarray:
        """:meth:`_rows_part` of a number of rows (an int) or of an array of positive numbers."""
        if np.ndim(rows):
            figures = _accumulate(logit_ops(self.model, self.deployment, rows.astype(float)), self.cost_model,
                                  len(rows)).matrix
        else:  # no op for 0 rows
            figures = _accumulate(logit_ops(self.model, self.deployment, rows), self.cost_model, 1).matrix[:, 0]
        host = rows * self.overhead.per_sequence_s  # the engine's host time per sequence that gets a token
        figures[0] += host
        figures[_CLASS_ROW["other"]] += host
        return figures


class _CountTable:
    """Figures of ops that depend on one count (a step's tokens, its logit rows), one column per count,
    priced :data:`BLOCK` consecutive counts at once.

    ``price(count)`` gives one count's column; ``price(counts)`` an array of positive counts' columns in
    one evaluation (the ops' fields as arrays): a few dozen array operations instead of a few thousand
    scalar ones per count (a new count cost about 160 us and a run meets thousands). A block is kept when
    its first and last counts equal their prices one by one to the bit, else it is priced count by count:
    the one rule a block can break is a choice made per op over its whole array (``auto`` all-reduce picks
    by the largest buffer), which the two ends see; ``tests/test_engine_scale.py`` checks whole blocks
    for every kind of model and cost model."""

    #: Counts priced together.
    BLOCK = 256
    #: Most blocks kept before the table is cleared (bounds its memory: 256 blocks are 16 MB).
    LIMIT = 256
    #: Most counts kept as lists (:meth:`values`) before those are cleared (8,192 lists of 24 floats: about
    #: 8 MB).
    LIST_LIMIT = 8192

    def __init__(self, price) -> None:
        self._price = price
        self._blocks: dict[int, np.ndarray] = {}
        self._lists: dict[int, list[float]] = {}

    def column(self, count: int) -> np.ndarray:
        """The figures of ``count`` (a column, shape ``(len(ROWS), 1)``; a view: do not write to it)."""
        block, at = divmod(count, self.BLOCK)
        table = self._blocks.get(block)
        if table is None:
            if len(self._blocks) >= self.LIMIT:
                self._blocks.clear()
            table = self._blocks[block] = self.block(block * self.BLOCK)
        return table[:, at:at + 1]

    def values(self, count: int) -> list[float]:
        """:meth:`column` of ``count`` as a list (Python floats), kept per count, at most :attr:`LIST_LIMIT`."""
        values = self._lists.get(count)
        if values is None:
            if len(self._lists) >= self.LIST_LIMIT:
                self._lists.clear()
            values = self._lists[count] = self.column(count)[:, 0].tolist()
        return values

    def block(self, first: int) -> np.ndarray:
        """The figures of the counts ``first .. first + BLOCK - 1``."""
        table = np.zeros((len(ROWS), self.BLOCK))
        start = 1 if first == 0 else 0  # a count of 0 prices no op
        table[:, start:] = self._price(np.arange(first + start, first + self.BLOCK))
        if start:
            table[:, 0] = self._price(0)
        if not all(np.array_equal(table[:, i], self._price(first + i)) for i in (start, self.BLOCK - 1)):
            for i in range(self.BLOCK):
                table[:, i] = self._price(first + i)
        return table


class _DirectDecodeAttention:
    """Decode attention of a batch of ``n`` sequences priced without building ops: the kernel model's
    formula (:func:`kinsim.cost.kernel_model.kernel_terms`) and kernel structure
    (:func:`kinsim.ops.kernel_work.kernel_work`) written out, with the constants of a batch size computed
    once.

    That case: the roofline cost model with a calibration profile whose decode-attention curve has the
    serving-grade terms, no half-saturation points and no per-item compute share, and a policy other than
    block top-k (whose selection op is a second op). Per step only the FLOPs and bytes change, affinely in
    the tokens attended and read, and, where ``n x kv_heads`` is below 80% of the SMs, FlashAttention's
    split of each sequence's KV (``min(ceil(SMs / pairs), ceil(tokens per sequence / 128), 128)`` parts, a
    combine kernel when more than one), which the figures evaluate per step as arrays. That is a handful of
    array operations instead of an op, its kernel structure and its terms per segment. Every operation is
    the generic path's, in its order, so the figures are the same bits (``tests/test_engine_scale.py``
    checks it against the ops priced one by one, split and unsplit).
    """

    def __init__(self, layers: int, n: int, pairs: float, sms: int, flops_per_key: float, kv_bytes_per_token: float,
                 fixed_bytes: tuple[float, float], curve, peak_rate: float, memory_rate: float,
                 item_scale: float = 1.0) -> None:
        self.layers, self.n, self.pairs, self.sms = layers, n, pairs, sms
        self.flops_per_key, self.kv_bytes_per_token = flops_per_key, kv_bytes_per_token
        self.query_bytes, self.written_bytes = fixed_bytes
        self.peak_rate, self.memory_rate = peak_rate, memory_rate
        self.kernel_floor = 2.0 * curve.kernel_floor  # two launches: the attention kernel and the KV write
        self.combine_floor, self.item_cost, self.item_bandwidth = (curve.combine_floor, curve.item_cost * item_scale,
                                                                   curve.item_bandwidth)
        self.sequences_s = float(n) * (curve.per_sequence * item_scale)
        self.split = pairs < 0.8 * sms  # FlashAttention splits the KV (kinsim.ops.kernel_work)
        self.fill = float(math.ceil(sms / (pairs if pairs > 1.0 else 1.0)))  # splits that would fill the SMs
        if not self.split:  # one item per (sequence, KV head), no combine: the fixed terms are constants
            self.fixed_s = (self.kernel_floor + 0.0 * self.combine_floor + self.sequences_s
                            + pairs * 1.0 * self.item_cost / sms)
            self.in_flight_rate = max(pairs * 1.0, 1.0) * self.item_bandwidth

    @classmethod
    def of(cls, pricer: StepPricer, n: int) -> _DirectDecodeAttention | None:
        from kinsim.cost.roofline import RooflineCost
        from kinsim.workload.spec import BlockTopKAttention

        cost_model, dims = pricer.cost_model, pricer.dims
        if type(cost_model) is not RooflineCost or cost_model.profile is None or n < 1:
            return None
        if isinstance(pricer.policy, BlockTopKAttention) or pricer.window is not None:
            return None  # a second op (block selection; the sliding-window layers' attention): the generic path
        if dims.ranks > 1:
            return None  # data-parallel attention prices a group's share: the generic path
        kernels = (cost_model.hw.gpu.attention_kernels, cost_model.profile.attention_kernels or "flash3")
        if kernels != ("flash3", "flash3"):
            return None  # FlashAttention-3's split rule is written out here; other kernels take the generic path
        probe = decode_attention_ops_of(dims, pricer.policy, n, 1.0, 1.0, None)[0]
        curve = cost_model.profile.curve_for(probe.kernel, probe.shape.get("kv_bytes_per_element"))
        if (curve is None or curve.kernel_floor is None or curve.item_compute_share is not None
                or curve.flops_half or curve.bytes_half or curve.item_bandwidth is None or curve.overlap_loss):
            return None
        hw = cost_model.hw
        pairs = float(n) * float(dims.shard.kv_heads)
        return cls(pricer.model.layers, n, pairs, hw.gpu.compute.units, dims.flops_per_key, dims.kv_bytes_per_token,
                   (n * dims.q_bytes_per_token, n * (dims.q_bytes_per_token + dims.kv_bytes_per_token)),
                   curve, hw.peak(probe.dtype) * curve.compute_max, hw.gpu.memory.bandwidth * curve.memory_max,
                   head_dim_scale(dims.shard.head_dim))

    def _structure(self, read):
        """(fixed seconds, in-flight bandwidth) of each step from the tokens read (``kernel_work`` and
        ``kernel_terms``' fixed and per-item terms, in their order of operations)."""
        if not self.split:
            return self.fixed_s, self.in_flight_rate
        tokens = read / float(self.n)
        if isinstance(read, float):
            blocks = float(math.ceil((tokens if tokens > 1.0 else 1.0) / ATTENTION_KV_BLOCK))
            splits = min(min(self.fill, blocks), float(MAX_SPLITS))
            splits = splits if splits > 1.0 else 1.0
            combines = 1.0 if splits > 1 else 0.0
        else:
            blocks = np.ceil(np.maximum(tokens, 1.0) / ATTENTION_KV_BLOCK)
            splits = np.maximum(np.minimum(np.minimum(self.fill, blocks), MAX_SPLITS), 1.0)
            combines = np.where(splits > 1, 1.0, 0.0)
        items = self.pairs * splits
        fixed = (self.kernel_floor + combines * self.combine_floor + self.sequences_s
                 + items * self.item_cost / self.sms)
        if isinstance(items, float):
            return fixed, (items if items > 1.0 else 1.0) * self.item_bandwidth
        return fixed, np.maximum(items, 1.0) * self.item_bandwidth

    def step_terms(self, attended: float, read: float, structure: tuple | None = None
                   ) -> tuple[float, float, float, float, float]:
        """One step's attention from its tokens attended and read (whole numbers, as floats): (seconds of all
        layers, FLOPs, HBM bytes, compute seconds, memory seconds, the last four of one layer). The operations
        of :meth:`matrix` on Python floats, so the same bits as its columns (the lean engine,
        :mod:`kinsim.engine.lean`, prices decode steps with it one at a time). ``structure``: ``_structure(read)``
        where the caller has it already."""
        fixed, in_flight = self._structure(read) if structure is None else structure
        flops = self.flops_per_key * attended
        nbytes = (self.kv_bytes_per_token * read + self.query_bytes) + self.written_bytes
        compute = flops / self.peak_rate
        memory = nbytes / self.memory_rate + nbytes / in_flight
        return self.layers * (fixed + (compute if compute >= memory else memory)), flops, nbytes, compute, memory

    def matrix(self, attended: np.ndarray, read: np.ndarray, steps: int, base: np.ndarray | None = None) -> np.ndarray:
        """The :data:`ROWS` x ``steps`` figures of the attention op, as :func:`_accumulate` would give them;
        with ``base`` (a column), that column plus them (the same bits as adding it after: ``0 + x + b`` is
        ``b + x``)."""
        layers = self.layers
        if steps == 1:  # one step (every mixed step): the same operations on Python floats, the same bits
            time, flops, nbytes, compute, memory = self.step_terms(float(attended[0]), float(read[0]))
            column = [0.0] * len(ROWS)  # rows added to zeros: 0 + x is x, the same bits as assigned
            add_attention(column, layers, time, flops, nbytes, compute, memory)
            if base is not None:
                return np.array(column)[:, None] + base
            return np.array(column)[:, None]
        fixed, in_flight = self._structure(read)
        flops = self.flops_per_key * attended
        nbytes = (self.kv_bytes_per_token * read + self.query_bytes) + self.written_bytes
        compute = flops / self.peak_rate
        memory = nbytes / self.memory_rate + nbytes / in_flight
        time = layers * (fixed + np.maximum(compute, memory))
        matrix = np.zeros((len(ROWS), steps)) if base is None else np.repeat(base, steps, axis=1)
        add_attention(matrix, layers, time, flops, nbytes, compute, memory)
        return matrix
