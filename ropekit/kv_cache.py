"""RoPE and the KV cache: what a decoder rotates, and when.

A decoder keeps the keys and values of every token it has seen and, at each step, attends
from the new tokens' queries to all of them. With RoPE there is a choice to make: cache
the keys after rotation (every model library does this for plain RoPE) or before (ReRoPE's
decode step needs this, see :func:`ropekit.attention.rerope_decode_step`). This module is
the plain-RoPE side:

* :func:`rope_decode_step`: new queries at positions offset, offset + 1, ... against
  keys cached after rotation. Only the new queries (and the new keys, before they join
  the cache) are rotated; the result is exactly the matching rows of full attention.
* :func:`rotate_as_if_first`: keys rotated as if they sat at position 0, as LongLLaMA's
  memory layers (the Focused Transformer, Tworkowski et al. 2023) store them. Then
  ⟨R_n q, R_0 k⟩ = qᵀ R_{−n} k: the logit depends on the query's own position only, not
  on where the key once was, which lets a memory hold keys from any distance.

Lesson 04 uses both. Split from ``ropekit.attention`` to keep each file one sitting long.
"""

from __future__ import annotations

import torch

from .attention import _attend, _check_inv_freq, _check_qkv, _compute_dtype, _logits, _positions_or_arange, _rotate
from .reference import _check_layout, _shape


def rope_decode_step(q, k_cache, v_cache, offset, inv_freq, attention_factor=1.0, layout="half"):
    """Attention of new queries at positions offset .. offset + new − 1 over a RoPE KV cache.

        out_t = Σ_{j ≤ offset + t} softmax_j(⟨R_{offset+t} q_t, k̃_j⟩ / √head_dim) v_j,
        with k̃_j = R_j k_j already in the cache.

    What a decoder does each step: rotate the new keys at their positions, append them to
    the cache, rotate the new queries at the same positions (this function), attend.
    Since ⟨R_{offset+t} q, R_j k⟩ depends on offset + t − j only, the answer equals rows
    offset .. offset + new − 1 of :func:`ropekit.rope_attention` over the whole sequence.

    Args:
        q: ``(batch, heads, new, head_dim)``, the new queries, not rotated.
        k_cache: ``(batch, kv_heads, offset + new, head_dim)``, keys already rotated at
            their positions 0 .. offset + new − 1 (the new ones included).
        v_cache: ``(batch, kv_heads, offset + new, v_dim)``.
        offset: how many tokens were cached before this step (the first new position).
        inv_freq: ``(rotary_dim // 2,)``; attention_factor and layout as in
            :func:`ropekit.rope_attention` (the cached keys must have been rotated with them).

    Returns:
        ``(batch, heads, new, v_dim)`` in q's dtype; query t sees keys 0 .. offset + t.
    """
    _check_qkv(q, k_cache, v_cache, same_length=False)
    _check_layout(layout)
    _check_inv_freq(inv_freq, q.shape[-1])
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer (tokens cached before this step), got {offset!r}")
    new = q.shape[2]
    if k_cache.shape[2] != offset + new:
        raise ValueError(
            f"k_cache must hold offset + new = {offset} + {new} = {offset + new} rotated keys "
            f"(the new ones appended), got {k_cache.shape[2]}"
        )
    compute = _compute_dtype(q)
    positions = torch.arange(offset, offset + new, device=q.device)
    q = _rotate(q.to(compute), positions, inv_freq, layout, attention_factor)
    return _attend(_logits(q, k_cache.to(compute)), v_cache, causal=True)


def rotate_as_if_first(k, inv_freq, rotated_at=None, layout="half"):
    """Keys as if every one of them sat at position 0: R_0 k, for a memory of old keys.

    The Focused Transformer / LongLLaMA (Tworkowski et al. 2023, §3 and its released
    code) stores memory keys this way, and rotates local queries by their position n in
    the local context, so a memory logit is ⟨R_n q, R_0 k⟩ = qᵀ R_{−n} k: it depends on
    the query's position alone, and a key retrieved from a million tokens back looks no
    farther away than one from the start of the window.

    R_0 is the identity, so for keys not yet rotated this is a copy; the work is in
    ``rotated_at``: keys taken from a standard cache were rotated at their positions p,
    and R_{−p} R_p k = R_0 k turns them back.

    Args:
        k: ``(batch, kv_heads, seq, head_dim)`` keys.
        inv_freq: ``(rotary_dim // 2,)``.
        rotated_at: None if k is not rotated; else the ``(seq,)`` or ``(batch, seq)``
            positions at which k was rotated. Only the rotation is undone: an attention
            factor already in the cached keys stays in them.
        layout: ``"half"`` or ``"paper"``.

    Returns:
        A tensor of k's shape and dtype (math in float32, float64 for float64 keys).
    """
    if not isinstance(k, torch.Tensor) or k.dim() != 4:
        raise ValueError(f"k must be a tensor of shape (batch, kv_heads, seq, head_dim), got {_shape(k)}")
    _check_layout(layout)
    _check_inv_freq(inv_freq, k.shape[-1])
    batch, _, seq, _ = k.shape
    if rotated_at is None:  # unrotated keys: R_0 = I, a copy
        rotated_at = torch.zeros(seq, device=k.device)
    rotated_at = _positions_or_arange(rotated_at, "rotated_at", batch, seq, k.device)
    return _rotate(k, -rotated_at.to(k.device), inv_freq, layout)  # R_{−p}: back to position 0
