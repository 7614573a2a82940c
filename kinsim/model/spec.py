"""Decoder-only transformer architectures (dense and mixture-of-experts) and the sizes that follow.

Parameter counting (all weights, with embeddings; biases only where ``attention_bias``):

* attention per layer: Q ``h x (q_heads x d)``, K and V ``h x (kv_heads x d)`` each, O ``(q_heads x d) x h``;
  QK-norm adds two weight vectors of ``d``; the two RMSNorms add ``2h``;
* dense MLP per layer: gate, up and down, ``3 x h x i`` (SiLU-gated);
* MoE per layer: router ``h x experts``, each expert ``3 x h x i_expert``, each shared expert
  ``3 x h x i_shared``; *active* parameters count ``active_experts`` routed experts plus the shared ones;
* embeddings ``vocab x h``, LM head another ``vocab x h`` unless tied, final norm ``h``.

Routed experts are stored in ``moe.expert_weight_dtype`` where it is given (gpt-oss ships its experts in
MXFP4 and everything else in bf16), the rest in ``weight_dtype``.

Multi-head latent attention (``mla``, DeepSeek-V2/V3) replaces Q, K, V and O per layer by: Q down
``h x q_lora`` and up ``q_lora x (q_heads x (nope + rope))`` (or one ``h x (q_heads x (nope + rope))``
without ``q_lora_rank``), a joint KV down-projection ``h x (kv_lora + rope)``, the KV up-projection
``kv_lora x (q_heads x (nope + v))``, O ``(q_heads x v) x h``, and RMSNorms of ``q_lora`` and ``kv_lora``.
A token caches its ``kv_lora + rope`` latent per layer, once (one "KV head" that is both K and V).

An MoE model's first ``moe.dense_layers`` layers keep the dense MLP of ``intermediate_size``
(DeepSeek-V3's ``first_k_dense_replace``).

KV cache bytes per token = 2 (K and V) x kv_heads x head_dim x full-attention layers x bytes per element of
kv_dtype (with ``mla``: ``kv_lora + rope`` per full-attention layer). A model with
``sliding_window_layers`` (gpt-oss alternates sliding-window and full-attention layers) keeps at most
``sliding_window`` tokens in each of those layers, a bounded amount per sequence
(:attr:`ModelSpec.window_kv_bytes`), so a token's lasting KV is that of the other layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinsim.dtypes import DTYPES, bytes_per_element
from kinsim.errors import SpecError
from kinsim.schema import at_least, check_fields, non_empty, non_negative, spec_field


def _optional_dtype(value: object) -> str | None:
    return None if value is None or value in DTYPES else "must be one of " + ", ".join(DTYPES)


@dataclass(frozen=True, kw_only=True)
class MoESpec:
    """Mixture-of-experts MLP replacing the dense MLP in every layer."""

    experts: int = spec_field("Routed experts per layer.", check=at_least(1))
    active_experts: int = spec_field("Routed experts each token is sent to (top-k).", check=at_least(1))
    expert_intermediate_size: int = spec_field("Hidden width of one expert's MLP.", check=at_least(1))
    shared_experts: int = spec_field("Experts every token passes through.", default=0, check=non_negative)
    shared_expert_intermediate_size: int = spec_field(
        "Hidden width of each shared expert's MLP (0: same as a routed expert).", default=0,
        check=non_negative)
    routing_skew: float = spec_field(
        "Power-law exponent of the routing: a token chooses the expert of popularity rank i with probability "
        "proportional to i^-routing_skew (k choices, each at most certain), so a batch's tokens touch fewer "
        "distinct experts, and read fewer weights, than uniform routing (0). Default 1.2, the exponent of "
        "aiconfigurator-core's power-law expert loads for MoE models (sdk/models/moe.py; 1.01 for "
        "DeepSeek's family), applied to this rank law.",
        default=1.2, check=non_negative)
    expert_weight_dtype: str | None = spec_field(
        "Data type of the routed experts' weights, where it differs from the model's weight_dtype (gpt-oss: "
        "mxfp4 experts, bf16 attention). Absent: weight_dtype.", default=None, check=_optional_dtype,
        words="one of the data types, or absent")
    dense_layers: int = spec_field(
        "The first layers, which keep a dense MLP of the model's intermediate_size instead of the experts "
        "(DeepSeek-V3: 3, its first_k_dense_replace).", default=0, check=non_negative)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.active_experts > self.experts:
            raise SpecError(f"must not exceed experts ({self.experts})", path="active_experts",
                            value=self.active_experts)

    @property
    def shared_width(self) -> int:
        """Hidden width of a shared expert."""
        return self.shared_expert_intermediate_size or self.expert_intermediate_size


@dataclass(frozen=True, kw_only=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V2, V3 and R1): keys and values are cached as one compressed
    latent per token and layer, ``kv_lora_rank`` wide, plus ``qk_rope_head_dim`` of rotary key shared by
    every head. Each query head has ``qk_nope_head_dim + qk_rope_head_dim`` dimensions (the model's
    ``head_dim``) and each value head ``v_head_dim``."""

    kv_lora_rank: int = spec_field("Width of the cached KV latent (512 in DeepSeek-V3).", check=at_least(1))
    qk_rope_head_dim: int = spec_field("Rotary dimensions of a query head and of the shared rotary key (64).",
                                       check=at_least(1))
    qk_nope_head_dim: int = spec_field("Dimensions of a query head without rotary embedding (128).",
                                       check=at_least(1))
    v_head_dim: int = spec_field("Dimensions of a value head (128).", check=at_least(1))
    q_lora_rank: int = spec_field("Width of the compressed query (1536 in DeepSeek-V3; 0: queries projected "
                                  "from the residual stream directly).", default=0, check=non_negative)

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def latent_width(self) -> int:
        """Elements a token caches per layer: the KV latent and the shared rotary key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def qk_head_dim(self) -> int:
        """Dimensions of one query head (and of one key head once the latent is projected up)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A decoder-only transformer with grouped-query (or multi-head latent) attention and a SiLU-gated MLP
    or MoE."""

    name: str = spec_field("Model name.", check=non_empty)
    layers: int = spec_field("Decoder layers.", check=at_least(1))
    hidden_size: int = spec_field("Residual stream width h.", check=at_least(1))
    attention_heads: int = spec_field("Query heads.", check=at_least(1))
    kv_heads: int = spec_field("Key/value heads (grouped-query attention).", check=at_least(1))
    head_dim: int = spec_field("Width of one attention head.", check=at_least(1))
    intermediate_size: int = spec_field("Hidden width of the dense MLP (0 for a pure MoE model).",
                                        check=non_negative)
    vocab_size: int = spec_field("Vocabulary size.", check=at_least(1))
    tie_embeddings: bool = spec_field("The LM head shares the embedding matrix.", default=False)
    qk_norm: bool = spec_field("RMSNorm on queries and keys per head (Qwen3).", default=False)
    qk_norm_type: str = spec_field(
        "What the QK norm (`qk_norm`) normalizes over, as Hugging Face configs name it: `per_head`, each head's "
        "dimensions (Qwen3); `per_layer`, all heads' of a token at once (MiniMax-M2), so that under tensor "
        "parallelism, where each GPU holds some of the heads, the GPUs all-reduce every token's sums of squares "
        "before they normalize.", default="per_head", choices=("per_head", "per_layer"))
    attention_bias: bool = spec_field("Q, K and V projections have biases (Qwen2).", default=False)
    moe: MoESpec | None = spec_field("Mixture of experts; absent for a dense model.", default=None)
    mla: MLASpec | None = spec_field("Multi-head latent attention (DeepSeek-V3); absent for grouped-query "
                                     "attention.", default=None)
    max_position_embeddings: int = spec_field("Longest context the model supports, tokens.",
                                              default=131072, check=at_least(1))
    sliding_window: int = spec_field(
        "Tokens a sliding-window layer attends to and keeps: each query sees itself and the tokens before it, "
        "at most this many in all (0: no sliding-window layers).", default=0, check=non_negative)
    sliding_window_layers: int = spec_field(
        "Layers that attend over the sliding window (gpt-oss: every other one); the others, at least one, "
        "attend over the whole context. Their order does not change a step's cost.", default=0,
        check=non_negative)
    weight_dtype: str = spec_field("Data type of the weights.", default="bf16", choices=DTYPES)
    kv_dtype: str = spec_field("Data type of the KV cache.", default="bf16", choices=DTYPES)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.attention_heads % self.kv_heads:
            raise SpecError(f"must divide attention_heads ({self.attention_heads})", path="kv_heads",
                            value=self.kv_heads)
        if self.sliding_window_layers >= self.layers:
            raise SpecError(f"must be less than layers ({self.layers})", path="sliding_window_layers",
                            value=self.sliding_window_layers,
                            hint="a model whose every layer slides a window is attention: {policy: sliding_window}")
        if (self.sliding_window_layers > 0) != (self.sliding_window > 0):
            raise SpecError("give both sliding_window and sliding_window_layers, or neither",
                            path="sliding_window" if self.sliding_window_layers else "sliding_window_layers",
                            value=0)
        if self.moe is None and self.intermediate_size == 0:
            raise SpecError("must be positive for a dense model (or give a moe section)",
                            path="intermediate_size", value=0)
        if self.moe is not None and self.moe.dense_layers:
            if self.moe.dense_layers >= self.layers:
                raise SpecError(f"must be less than layers ({self.layers})", path="moe.dense_layers",
                                value=self.moe.dense_layers)
            if self.intermediate_size == 0:
                raise SpecError("must be positive when moe.dense_layers keep a dense MLP",
                                path="intermediate_size", value=0)
        if self.mla is not None:
            if self.head_dim != self.mla.qk_head_dim:
                raise SpecError(f"must equal mla.qk_nope_head_dim + mla.qk_rope_head_dim ({self.mla.qk_head_dim})",
                                path="head_dim", value=self.head_dim)
            if self.kv_heads != self.attention_heads:
                raise SpecError(f"must equal attention_heads ({self.attention_heads}) with mla: the latent is "
                                "projected up to a key and a value per query head", path="kv_heads",
                                value=self.kv_heads)
            if self.sliding_window_layers:
                raise SpecError("sliding-window layers are not modelled with mla", path="sliding_window_layers",
                                value=self.sliding_window_layers)

    # ----------------------------------------------------------------- parameter counts per part
    @property
    def gqa_ratio(self) -> int:
        """Query heads per KV head."""
        return self.attention_heads // self.kv_heads

    @property
    def attention_params_per_layer(self) -> int:
        """Weights of Q, K, V, O (plus biases and QK-norm) of one layer; with ``mla``, its projections and
        the two latent norms."""
        h, d = self.hidden_size, self.head_dim
        mla = self.mla
        if mla is not None:
            heads = self.attention_heads
            q_up = heads * mla.qk_head_dim
            q = h * q_up if not mla.q_lora_rank else h * mla.q_lora_rank + mla.q_lora_rank + mla.q_lora_rank * q_up
            kv = h * mla.latent_width + mla.kv_lora_rank + mla.kv_lora_rank * heads * (mla.qk_nope_head_dim
                                                                                        + mla.v_head_dim)
            return q + kv + heads * mla.v_head_dim * h
        q, kv = self.attention_heads * d, self.kv_heads * d
        params = h * q + 2 * h * kv + q * h
        if self.attention_bias:
            params += q + 2 * kv
        if self.qk_norm:  # one weight per dimension of a head, or per dimension of all heads
            params += 2 * d if self.qk_norm_type == "per_head" else q + kv
        return params

    @property
    def dense_mlp_layers(self) -> int:
        """Layers with the dense MLP: all of a dense model's, an MoE model's ``moe.dense_layers``."""
        return self.layers if self.moe is None else self.moe.dense_layers

    @property
    def moe_layers(self) -> int:
        """Layers with the mixture of experts (0 for a dense model)."""
        return self.layers - self.dense_mlp_layers

    @property
    def dense_mlp_params_per_layer(self) -> int:
        """Weights of the dense SiLU-gated MLP of one layer that has it."""
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def expert_params(self) -> int:
        """Weights of one routed expert."""
        return 3 * self.hidden_size * self.moe.expert_intermediate_size if self.moe else 0

    def _moe_params_per_layer(self, experts_counted: int) -> int:
        moe = self.moe
        if moe is None:
            return 0
        router = self.hidden_size * moe.experts
        shared = moe.shared_experts * 3 * self.hidden_size * moe.shared_width
        return router + experts_counted * self.expert_params + shared

    @property
    def norm_params_per_layer(self) -> int:
        """Input and post-attention RMSNorm weights of one layer."""
        return 2 * self.hidden_size

    @property
    def embedding_params(self) -> int:
        """Token embeddings plus the LM head (unless tied) plus the final norm."""
        embed = self.vocab_size * self.hidden_size
        return embed * (1 if self.tie_embeddings else 2) + self.hidden_size

    # ----------------------------------------------------------------- totals
    def _params_with_experts(self, routed_experts: int) -> int:
        per_layer = self.attention_params_per_layer + self.norm_params_per_layer
        return (self.layers * per_layer + self.dense_mlp_layers * self.dense_mlp_params_per_layer
                + self.moe_layers * self._moe_params_per_layer(routed_experts) + self.embedding_params)

    @property
    def params_total(self) -> int:
        """All parameters, embeddings included."""
        return self._params_with_experts(self.moe.experts if self.moe else 0)

    @property
    def params_active(self) -> int:
        """Parameters one token uses: for MoE only the active routed experts (embeddings included)."""
        return self._params_with_experts(self.moe.active_experts if self.moe else 0)

    @property
    def expert_weight_dtype(self) -> str:
        """Data type of the routed experts' weights (``moe.expert_weight_dtype``, else ``weight_dtype``)."""
        moe = self.moe
        return moe.expert_weight_dtype if moe is not None and moe.expert_weight_dtype else self.weight_dtype

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights: the routed experts in :attr:`expert_weight_dtype`, the rest in
        ``weight_dtype``."""
        experts = self.moe_layers * self.moe.experts * self.expert_params if self.moe else 0
        return ((self.params_total - experts) * bytes_per_element(self.weight_dtype)
                + experts * bytes_per_element(self.expert_weight_dtype))

    @property
    def full_attention_layers(self) -> int:
        """Layers that attend over the whole context (all but ``sliding_window_layers``)."""
        return self.layers - self.sliding_window_layers

    @property
    def window_kv_bytes(self) -> float:
        """Most KV-cache bytes one sequence keeps in its sliding-window layers (``sliding_window`` tokens
        each); 0 without them."""
        return (2 * self.kv_heads * self.head_dim * self.sliding_window_layers * self.sliding_window
                * bytes_per_element(self.kv_dtype))

    @property
    def kv_elements_per_token(self) -> int:
        """K and V elements stored per token over the full-attention layers (the Kinetics paper's D; all
        layers unless some slide a window)."""
        if self.mla is not None:
            return self.mla.latent_width * self.full_attention_layers
        return 2 * self.kv_heads * self.head_dim * self.full_attention_layers

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token occupies, over the full-attention layers, in ``kv_dtype``."""
        return self.kv_elements_per_token * bytes_per_element(self.kv_dtype)
