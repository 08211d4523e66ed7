"""FLOPs and bytes of each operator of a LLaMA block, per token, from a ModelConfig (lesson 06).

One generated token with ``context`` tokens already in the KV cache, in the spirit of the
operator tables the kit started from. Counting conventions (stated so they can be checked):

* a matrix product of an (m × k) by a (k × n) costs 2·m·k·n FLOPs (one multiply, one add);
* element-wise work counts the arithmetic of its formula: RMSNorm ≈ 4·dim (square, sum,
  scale, gain), RoPE 3 per rotated feature (x·cos + rotate(x)·sin), softmax ≈ 5 per logit
  (max, subtract, exp, sum, divide), SiLU-gate ≈ 5 per hidden unit (exp, add, divide, multiply
  by x, multiply by the up projection);
* bytes are what the operator must move through memory at ``bytes_per_value`` each:
  weights once, activations read and written, the KV cache read by attention.

Per token the matrix products cost 2 × (parameters of the linear layers), the rule of thumb
"2N FLOPs per token"; attention adds 4 · heads · head_dim · context FLOPs per layer.
"""

from __future__ import annotations

__all__ = ["operator_costs"]


def operator_costs(config, context: int, bytes_per_value: int = 2):
    """One row per operator of the forward pass of one token.

    Args:
        config: a ``ropekit.model.ModelConfig``.
        context: tokens in the KV cache that attention reads (≥ 1).
        bytes_per_value: 2 for bf16/fp16 weights and activations, 4 for float32.

    Returns:
        list of dicts ``{"operator", "per_layer", "count", "flops", "bytes"}``: ``count`` is how
        many times it runs per token (``n_layers`` for block operators), ``flops`` and
        ``bytes`` are per run. Totals are Σ count · flops and Σ count · bytes. Lesson 06.
    """
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise ValueError(f"context must be a positive integer, got {context!r}")
    if bytes_per_value not in (1, 2, 4, 8):
        raise ValueError(f"bytes_per_value must be 1, 2, 4 or 8, got {bytes_per_value!r}")
    c, b = config, bytes_per_value
    d, hd, h, kv, f, n = c.dim, c.head_dim, c.n_heads, c.n_kv_heads, c.hidden_dim, context
    qkv = (h + 2 * kv) * hd

    def row(name, per_layer, flops, moved):
        return {"operator": name, "per_layer": per_layer, "count": c.n_layers if per_layer else 1,
                "flops": flops, "bytes": moved * b}

    return [
        row("embedding lookup", False, 0, 2 * d),
        row("RMSNorm (before attention)", True, 4 * d, 3 * d),
        row("q, k, v projections (GQA)", True, 2 * d * qkv, d * qkv + d + qkv),
        row("RoPE on q and k", True, 3 * (h + kv) * c.rotary_dim, 2 * (h + kv) * hd + c.rotary_dim),
        row("attention q·K, softmax, ·V", True, 4 * h * hd * n + 5 * h * n, 2 * n * kv * hd + 2 * h * hd),
        row("output projection", True, 2 * h * hd * d, h * hd * d + h * hd + d),
        row("residual add (attention)", True, d, 3 * d),
        row("RMSNorm (before MLP)", True, 4 * d, 3 * d),
        row("SwiGLU gate and up projections", True, 2 * 2 * d * f, 2 * d * f + d + 2 * f),
        row("SiLU(gate) ⊙ up", True, 5 * f, 3 * f),
        row("SwiGLU down projection", True, 2 * f * d, f * d + f + d),
        row("residual add (MLP)", True, d, 3 * d),
        row("final RMSNorm", False, 4 * d, 3 * d),
        row("LM head", False, 2 * d * c.vocab_size, d * c.vocab_size + d + c.vocab_size),
    ]
