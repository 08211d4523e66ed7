"""DeepSeek's Multi-head Latent Attention (MLA) and its decoupled RoPE.

MLA (DeepSeek-V2, §2.1; kept in DeepSeek-V3) caches, per token, one compressed latent
c = W_DKV h of ``kv_lora_rank`` numbers instead of every head's key and value. Keys and
values are expanded from it, k_h^C = W_UK,h c and v_h = W_UV,h c, and at inference
W_UK can be absorbed into the query: q_h·k_h^C = (W_UK,hᵀ q_h)·c, so the keys never
need to be expanded at all.

RoPE breaks that absorption: R_m q · R_n W_UK c = q · R_{n−m} W_UK c puts a
position-dependent rotation between W_UK and c. DeepSeek-V2 §2.1.3 therefore *decouples*
RoPE: each query head gets an extra part q_h^R of ``qk_rope_head_dim`` features that is
rotated, and all heads share ONE extra key k^R = W_KR h of the same size, rotated once and
cached beside c:

    q_h = [q_h^C ; R_m q_h^R]      k_h = [k_h^C ; R_n k^R]      (eq. 14-19)
    q_h·k_h = q_h^C·W_UK,h c + (R_m q_h^R)·(R_n k^R)

The first term has no rotation (absorbable), the second carries the position. The cache
holds kv_lora_rank + qk_rope_head_dim numbers per token and layer (512 + 64 = 576 in
DeepSeek-V3), instead of 2 · heads · head_dim for multi-head attention.
Lesson 08 computes the bytes.
"""

from __future__ import annotations

import torch

from .checks import describe, integer
from .reference import apply_rope


def decoupled_rope_qk(q: torch.Tensor, k_nope: torch.Tensor, k_rope: torch.Tensor, cos: torch.Tensor,
                      sin: torch.Tensor, layout: str = "paper"):
    """Assemble MLA's queries and keys: rotate only the RoPE parts, share the RoPE key.

    Args:
        q: ``(batch, seq, heads, qk_nope_head_dim + qk_rope_head_dim)``: each head's no-RoPE
            part first, then its RoPE part (DeepSeek-V3's order).
        k_nope: ``(batch, seq, heads, qk_nope_head_dim)``: W_UK c, no position.
        k_rope: ``(batch, seq, 1, qk_rope_head_dim)``: the one shared RoPE key head.
        cos, sin: ``(seq, r/2)`` or ``(batch, seq, r/2)`` with r = qk_rope_head_dim, from
            :func:`ropekit.rope_cos_sin` (YaRN's attention factor included there).
        layout: ``"paper"`` pairs (2i, 2i+1), as DeepSeek's checkpoints store them
            (transformers' ``rope_interleave=True``); ``"half"`` for the other form.

    Returns:
        ``(q_out, k_out)``, both ``(batch, seq, heads, qk_nope_head_dim + qk_rope_head_dim)``;
        k_out's RoPE part is the rotated shared head, the same for every head.

    Lesson 08.
    """
    for name, t in (("q", q), ("k_nope", k_nope), ("k_rope", k_rope)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point 4-D (batch, seq, heads, dim) tensor, got {t!r:.60}")
    batch, seq, heads, qk_head_dim = q.shape
    nope, rope = k_nope.shape[-1], k_rope.shape[-1]
    if k_nope.shape[:3] != (batch, seq, heads):
        raise ValueError(f"k_nope must have shape ({batch}, {seq}, {heads}, qk_nope_head_dim), got {tuple(k_nope.shape)}")
    if k_rope.shape[:3] != (batch, seq, 1):
        raise ValueError(f"k_rope must be the one shared head, shape ({batch}, {seq}, 1, qk_rope_head_dim), "
                         f"got {tuple(k_rope.shape)}")
    if nope + rope != qk_head_dim:
        raise ValueError(f"q's head_dim ({qk_head_dim}) must be qk_nope_head_dim + qk_rope_head_dim = {nope} + {rope}")
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # a heads axis: (..., seq, 1, r/2)
    q_rope = apply_rope(q[..., nope:], cos, sin, layout)
    k_rope = apply_rope(k_rope, cos, sin, layout)
    q_out = torch.cat((q[..., :nope], q_rope), dim=-1)
    k_out = torch.cat((k_nope, k_rope.expand(-1, -1, heads, -1)), dim=-1)
    return q_out, k_out


def mla_expand_latent(latent: torch.Tensor, w_kv_b: torch.Tensor, heads: int, qk_nope_head_dim: int,
                      v_head_dim: int):
    """Expand the cached latent c into every head's no-RoPE key and value.

    Args:
        latent: ``(batch, seq, kv_lora_rank)``, the compressed c (after its RMSNorm).
        w_kv_b: ``(heads · (qk_nope_head_dim + v_head_dim), kv_lora_rank)``: [W_UK; W_UV]
            stacked per head, as DeepSeek-V3's ``kv_b_proj.weight``.

    Returns:
        ``(k_nope, v)``: ``(batch, seq, heads, qk_nope_head_dim)`` and
        ``(batch, seq, heads, v_head_dim)``.

    Lesson 08.
    """
    if w_kv_b.dim() != 2 or w_kv_b.shape != (heads * (qk_nope_head_dim + v_head_dim), latent.shape[-1]):
        raise ValueError(f"w_kv_b must have shape (heads·(qk_nope_head_dim + v_head_dim), kv_lora_rank) = "
                         f"({heads * (qk_nope_head_dim + v_head_dim)}, {latent.shape[-1]}), got {tuple(w_kv_b.shape)}")
    kv = (latent @ w_kv_b.T).unflatten(-1, (heads, qk_nope_head_dim + v_head_dim))
    return kv[..., :qk_nope_head_dim], kv[..., qk_nope_head_dim:]


def mla_absorbed_scores(q: torch.Tensor, latent: torch.Tensor, k_rope: torch.Tensor, w_kv_b: torch.Tensor,
                        v_head_dim: int):
    """Attention logits (before scaling) straight from the cache, with W_UK absorbed into q.

    q_h·k_h = (W_UK,hᵀ q_h^C)·c + q_h^R·k^R, where q's RoPE part and k_rope are already
    rotated (e.g. by :func:`decoupled_rope_qk`). No per-head key is ever built.

    Args:
        q: ``(batch, seq_q, heads, qk_nope_head_dim + r)``, RoPE part rotated.
        latent: ``(batch, seq_k, kv_lora_rank)``; k_rope: ``(batch, seq_k, 1, r)``, rotated.
        w_kv_b: as in :func:`mla_expand_latent`.

    Returns:
        ``(batch, heads, seq_q, seq_k)``.

    Lesson 08 checks it against the expanded keys.
    """
    if q.dim() != 4 or latent.dim() != 3 or k_rope.dim() != 4 or k_rope.shape[2] != 1:
        raise ValueError(f"q must be (batch, seq_q, heads, dim), latent (batch, seq_k, kv_lora_rank) and k_rope "
                         f"(batch, seq_k, 1, r), got {describe(q)}, {describe(latent)}, {describe(k_rope)}")
    if latent.shape[:2] != k_rope.shape[:2] or latent.shape[0] != q.shape[0]:
        raise ValueError(f"latent {tuple(latent.shape)} and k_rope {tuple(k_rope.shape)} must share batch and "
                         f"seq_k, and q {tuple(q.shape)} the batch")
    heads, rope = q.shape[2], k_rope.shape[-1]
    nope = q.shape[-1] - rope
    if w_kv_b.shape != (heads * (nope + v_head_dim), latent.shape[-1]):
        raise ValueError(f"w_kv_b must have shape (heads·(qk_nope_head_dim + v_head_dim), kv_lora_rank) = "
                         f"({heads * (nope + v_head_dim)}, {latent.shape[-1]}), got {tuple(w_kv_b.shape)}")
    w_uk = w_kv_b.unflatten(0, (heads, nope + v_head_dim))[:, :nope]  # (heads, nope, rank)
    q_latent = torch.einsum("bqhn,hnr->bqhr", q[..., :nope], w_uk)
    return (torch.einsum("bqhr,bkr->bhqk", q_latent, latent)
            + torch.einsum("bqhd,bkd->bhqk", q[..., nope:], k_rope[:, :, 0]))


def mla_cache_bytes_per_token(kv_lora_rank: int, qk_rope_head_dim: int, n_layers: int = 1,
                              bytes_per_element: int = 2) -> int:
    """Bytes MLA caches per token: (kv_lora_rank + qk_rope_head_dim) · n_layers · bytes.

    DeepSeek-V3 (512 + 64, 61 layers, bf16): 70,272 bytes. Compare with
    :func:`mha_cache_bytes_per_token`. Lesson 08.
    """
    sizes = (integer(kv_lora_rank, "kv_lora_rank", 1), integer(qk_rope_head_dim, "qk_rope_head_dim", 0),
             integer(n_layers, "n_layers", 1), integer(bytes_per_element, "bytes_per_element", 1))
    return (sizes[0] + sizes[1]) * sizes[2] * sizes[3]


def mha_cache_bytes_per_token(kv_heads: int, k_head_dim: int, v_head_dim: int | None = None, n_layers: int = 1,
                              bytes_per_element: int = 2) -> int:
    """Bytes a standard (or grouped-query) KV cache holds per token:
    kv_heads · (k_head_dim + v_head_dim) · n_layers · bytes. Lesson 08."""
    v_head_dim = k_head_dim if v_head_dim is None else v_head_dim
    sizes = [integer(v, name, 1) for v, name in ((kv_heads, "kv_heads"), (k_head_dim, "k_head_dim"),
             (v_head_dim, "v_head_dim"), (n_layers, "n_layers"), (bytes_per_element, "bytes_per_element"))]
    return sizes[0] * (sizes[1] + sizes[2]) * sizes[3] * sizes[4]
