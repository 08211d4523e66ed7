"""Decoding with RoPE: what a decoder caches, what it rotates, and when.

A decoder keeps the keys and values of every token it has seen and, at each step, attends
from the new tokens' queries to all of them. With RoPE there is a choice to make: cache
the keys after rotation (every model library does this for plain RoPE) or before (ReRoPE's
one-product decode step needs the unrotated keys of the tokens beyond its window; caching
both forms also works, at twice the key memory). Everything about that choice lives here:

* :func:`rope_decode_step`: new queries at positions offset, offset + 1, ... against
  keys cached after rotation. Only the new queries (and the new keys, before they join
  the cache) are rotated; the result is exactly the matching rows of full attention.
* :func:`rerope_decode_step`: ReRoPE's decode step over keys cached before rotation,
  one product per key (Su, "Rectified Rotary Position Embeddings", 2023).
* :func:`rotate_as_if_first`: keys rotated as if they sat at position 0, as LongLLaMA's
  memory layers (the Focused Transformer, Tworkowski et al. 2023) store them. Then
  ⟨R_n q, R_0 k⟩ = qᵀ R_{−n} k: the logit depends on the query's own position only, not
  on where the key once was, which lets a memory hold keys from any distance.

Tensors are ``(batch, seq, heads, head_dim)``, as everywhere in ropekit. Where the lessons
use them: lesson 04 §8 derives and checks :func:`rerope_decode_step` (and its exercise 6
rebuilds it over an unrotated cache); lesson 03 §7 checks :func:`rope_decode_step` against
rotary-embedding-torch's ``rotate_queries_with_cached_keys``. No lesson uses
:func:`rotate_as_if_first`; ``tests/test_decode.py`` checks it.
"""

from __future__ import annotations

import torch

from .attention import attend, compute_dtype, log_n_scale, rotate, scores
from .checks import (
    UNSIGNED_DTYPES,
    check_inv_freq,
    check_layout,
    check_leaky_factor,
    check_log_n_train_length,
    check_qkv,
    check_window,
    describe,
    integer,
    positions_or_arange,
)


def rope_decode_step(q, k_cache, v_cache, offset, inv_freq, attention_factor=1.0, layout="half"):
    """Attention of new queries at positions offset .. offset + new − 1 over a RoPE KV cache.

        out_t = Σ_{j ≤ offset + t} softmax_j(⟨R_{offset+t} q_t, k̃_j⟩ / √head_dim) v_j,
        with k̃_j = R_j k_j already in the cache.

    What a decoder does each step: rotate the new keys at their positions, append them to
    the cache, rotate the new queries at the same positions (this function), attend.
    Since ⟨R_{offset+t} q, R_j k⟩ depends on offset + t − j only, the answer equals rows
    offset .. offset + new − 1 of :func:`ropekit.rope_attention` over the whole sequence.

    Args:
        q: ``(batch, new, heads, head_dim)``, the new queries, not rotated.
        k_cache: ``(batch, offset + new, kv_heads, head_dim)``, keys already rotated at
            their positions 0 .. offset + new − 1 (the new ones included).
        v_cache: ``(batch, offset + new, kv_heads, v_dim)``.
        offset: how many tokens were cached before this step (the first new position).
        inv_freq: ``(rotary_dim // 2,)``; attention_factor and layout as in
            :func:`ropekit.rope_attention` (the cached keys must have been rotated with them).

    Returns:
        ``(batch, new, heads, v_dim)`` in q's dtype; query t sees keys 0 .. offset + t.
    """
    check_qkv(q, k_cache, v_cache, same_length=False)
    check_layout(layout)
    check_inv_freq(inv_freq, q.shape[-1])
    offset = integer(offset, "offset", minimum=0, what=" (tokens cached before this step)")
    new = q.shape[1]
    if k_cache.shape[1] != offset + new:
        raise ValueError(
            f"k_cache must hold offset + new = {offset} + {new} = {offset + new} rotated keys "
            f"(the new ones appended), got {k_cache.shape[1]}"
        )
    compute = compute_dtype(q)
    positions = torch.arange(offset, offset + new, device=q.device)
    q = rotate(q.to(compute), positions, inv_freq, layout, attention_factor)
    return attend(scores(q, k_cache.to(compute)), v_cache, causal=True)


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
        k: ``(batch, seq, kv_heads, head_dim)`` keys.
        inv_freq: ``(rotary_dim // 2,)``.
        rotated_at: None if k is not rotated; else the ``(seq,)`` or ``(batch, seq)``
            positions at which k was rotated (signed integer or float: bool and unsigned
            tensors are refused). Only the rotation is undone: an attention
            factor already in the cached keys stays in them.
        layout: ``"half"`` or ``"paper"``.

    Returns:
        A tensor of k's shape and dtype (math in float32, float64 for float64 keys).
    """
    if not isinstance(k, torch.Tensor) or k.dim() != 4 or not k.is_floating_point():
        raise ValueError(f"k must be a floating-point tensor of shape (batch, seq, kv_heads, head_dim), got {describe(k)}")
    check_layout(layout)
    check_inv_freq(inv_freq, k.shape[-1])
    batch, seq = k.shape[:2]
    if rotated_at is None:  # unrotated keys: R_0 = I, a copy
        rotated_at = torch.zeros(seq, device=k.device)
    rotated_at = positions_or_arange(rotated_at, "rotated_at", batch, seq, k.device)
    if rotated_at.dtype in UNSIGNED_DTYPES:  # bool is refused by positions_or_arange
        raise ValueError(f"rotated_at must be a signed integer or floating-point tensor, got {rotated_at.dtype}: "
                         "undoing the rotation negates positions, which unsigned integers cannot hold")
    return rotate(k, -rotated_at.to(k.device), inv_freq, layout)  # R_{−p}: back to position 0


def rerope_decode_step(
    q, k_cache, v_cache, position, inv_freq, window, leaky_factor=None, layout="half", log_n_train_length=None
):
    """One new query against keys cached *before* rotation: the single-product form of ReRoPE.

    With one query there is nothing to merge: each key needs one product. Writing
    ⟨R_i q, R_j k⟩ = qᵀ R_{j−i} k and the effective position of
    :func:`relative_position_matrix`, the blog's decode formula is

        ReRoPE: a_ij = q_iᵀ R_{max(j−i, −w)} k_j
        Leaky:  a_ij = q_iᵀ R_{max(j−i, (j−i+w)/k − w)} k_j

    The w keys inside the window (i − w < j ≤ i) each need their own rotation R_{j−i}.
    Every older key shares one rotation, which moves onto the query instead:
    q_iᵀ R_{−w} k_j = ⟨R_w q_i, k_j⟩, so ReRoPE rotates q once by +w and dots it with the
    raw cached keys. For Leaky, q_iᵀ R_{(j−i+w)/k − w} k_j = ⟨R_{(i−w)/k + w} q_i, R_{j/k} k_j⟩:
    q is rotated once, and the old keys by j/k (a decoder that keeps a second cache of
    R_{j/k} k_j skips that too). This is why this step takes keys cached unrotated: a cache
    of R_j k_j alone would have to be rotated back at every step. A decoder may instead
    cache both R_j k_j (for ⟨R_i q_i, R_j k_j⟩ inside the window) and k_j (beyond it):
    no key is rotated at decode time, at twice the key memory (lesson 04 §8).

    Args:
        q: ``(batch, 1, heads, head_dim)``, the new query, not rotated.
        k_cache: ``(batch, position + 1, kv_heads, head_dim)``, keys at positions
            0 .. position (the new key included), not rotated.
        v_cache: ``(batch, position + 1, kv_heads, v_dim)``.
        position: i, the 0-based position of the new query.
        inv_freq, window, leaky_factor, layout, log_n_train_length: as in
            :func:`rerope_attention` (log-n multiplies q by max(1, ln(i + 1) / ln L)).

    Returns:
        ``(batch, 1, heads, v_dim)``, equal (up to rounding) to the last row of
        :func:`rerope_attention` over the whole sequence. Lesson 04 checks that.
    """
    check_qkv(q, k_cache, v_cache, same_length=False)
    check_layout(layout)
    check_inv_freq(inv_freq, q.shape[-1])
    check_window(window)
    leaky_factor = check_leaky_factor(leaky_factor)
    check_log_n_train_length(log_n_train_length)
    if q.shape[1] != 1:
        raise ValueError(f"q must hold one new query, shape (batch, 1, heads, head_dim), got {tuple(q.shape)}")
    position = integer(position, "position", minimum=0, what=" (the new query's index)")
    if k_cache.shape[1] != position + 1:
        raise ValueError(
            f"k_cache must hold the keys of positions 0 .. position = {position} (position + 1 tokens), "
            f"got {k_cache.shape[1]} tokens"
        )
    compute = compute_dtype(q)
    q, k = q.to(compute), k_cache.to(compute)
    if log_n_train_length is not None:
        q = q * float(log_n_scale(torch.tensor(position), log_n_train_length))
    first_near = max(0, position - window + 1)  # keys j >= first_near have i − j < w
    device = q.device
    near_offsets = torch.arange(first_near - position, 1, device=device)  # j − i, in (−w, 0]
    near = scores(q, rotate(k[:, first_near:], near_offsets, inv_freq, layout))
    old = k[:, :first_near]
    if leaky_factor is None:
        far = scores(rotate(q, torch.tensor([window], device=device), inv_freq, layout), old)
    else:
        q_line = torch.tensor([(position - window) / leaky_factor + window], device=device)
        k_line = torch.arange(first_near, device=device) / leaky_factor
        far = scores(rotate(q, q_line, inv_freq, layout), rotate(old, k_line, inv_freq, layout))
    return attend(torch.cat((far, near), dim=-1), v_cache, causal=False)


# --- the fused decode step's write: rotate the new tokens, append them to the cache -----


def check_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache, unrotated_k_cache, layout,
                        block_table):
    """Shapes, dtypes and devices of :func:`rope_decode_append` (shared with its kernel,
    ``ropekit.kernels.decode``). Reads no tensor values, so it costs no host sync."""
    check_qkv(q, k, v, same_length=True)
    check_layout(layout)
    batch, new, heads, head_dim = q.shape
    if head_dim % 2:
        raise ValueError(f"q's head_dim must be even, got {head_dim}")
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.shape != (head_dim // 2,):
        raise ValueError(f"inv_freq must have shape (head_dim // 2,) = ({head_dim // 2},) (every feature is "
                         f"rotated), got {describe(inv_freq)}")
    if rotated_k_cache is None and unrotated_k_cache is None:
        raise ValueError("pass rotated_k_cache, unrotated_k_cache or both: the new keys must go somewhere")
    if not isinstance(positions, torch.Tensor) or positions.shape != (batch,) or positions.is_floating_point():
        raise ValueError(f"positions must be an integer tensor of shape (batch,) = ({batch},): each sequence's "
                         f"first new position, got {describe(positions)}")
    paged = block_table is not None
    if paged and (not isinstance(block_table, torch.Tensor) or block_table.dim() != 2
                  or block_table.shape[0] != batch or block_table.is_floating_point()):
        raise ValueError(f"block_table must be an integer tensor (batch, max_blocks) = ({batch}, ...), got "
                         f"{describe(block_table)}")
    caches = {"v_cache": (v_cache, v.shape[2:]), "rotated_k_cache": (rotated_k_cache, k.shape[2:]),
              "unrotated_k_cache": (unrotated_k_cache, k.shape[2:])}
    for name, (cache, row) in caches.items():
        if cache is None:
            continue
        lead = "(num_blocks, block_size" if paged else f"(batch = {batch}, max_seq"
        if (not isinstance(cache, torch.Tensor) or cache.dim() != 4 or tuple(cache.shape[2:]) != tuple(row)
                or (not paged and cache.shape[0] != batch)):
            raise ValueError(f"{name} must have shape {lead}, {', '.join(map(str, row))}), got {describe(cache)}")
        if cache.dtype != k.dtype or cache.device != k.device:
            raise ValueError(f"{name} must have k's dtype and device ({k.dtype}, {k.device}), got "
                             f"{cache.dtype} on {cache.device}")
    if paged and len({c.shape[1] for c, _ in caches.values() if c is not None}) != 1:
        raise ValueError("the paged caches must share one block_size (their dim 1)")


def rope_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache=None, unrotated_k_cache=None,
                       layout="half", block_table=None):
    """The write half of a decode step: rotate the new tokens' q and k at their positions
    and append k and v to the KV cache. Returns the rotated q, ready to attend.

    Token t of sequence b sits at position p = positions[b] + t; with R_p the RoPE rotation
    (RoFormer eq. 15, float32 angles p·θ_i as :func:`ropekit.rope_cos_sin` makes them)

        returned q[b, t] = R_p q[b, t]
        rotated_k_cache[b, p] = R_p k[b, t]      (a RoPE cache: what :func:`rope_decode_step` reads)
        unrotated_k_cache[b, p] = k[b, t]        (ReRoPE's cache: :func:`rerope_decode_step`)
        v_cache[b, p] = v[b, t]

    Give either k cache or both (ReRoPE with a second, rotated cache: twice the memory,
    one product per key for the keys inside the window; lesson 04). With ``block_table``
    the caches are paged, as in vLLM's PagedAttention (Kwon et al. 2023): they have shape
    ``(num_blocks, block_size, kv_heads, head_dim)`` and position p of sequence b lives in
    block ``block_table[b, p // block_size]`` at slot ``p % block_size``.

    This is the plain-torch twin of ``ropekit.kernels.rope_decode_append``, which does it
    all in one launch. Positions are not range-checked (that would cost the GPU path a host
    sync): the caller keeps p below max_seq (or within the sequence's blocks).

    Args:
        q: ``(batch, new, heads, head_dim)``, the new queries, not rotated.
        k, v: ``(batch, new, kv_heads, head_dim | v_dim)``, the new keys (not rotated) and values.
        v_cache: ``(batch, max_seq, kv_heads, v_dim)``, or paged ``(num_blocks, block_size, ...)``.
        positions: ``(batch,)`` integers, each sequence's first new position (its cache length).
        inv_freq: ``(head_dim // 2,)`` from :func:`ropekit.rope_frequencies`.
        rotated_k_cache, unrotated_k_cache: ``(batch, max_seq, kv_heads, head_dim)`` (or paged), k's dtype.
        layout: ``"half"`` or ``"paper"``.
        block_table: None for contiguous caches, or ``(batch, max_blocks)`` integers.

    Returns:
        ``(batch, new, heads, head_dim)`` in q's dtype: the rotated queries. The caches are
        written in place.
    """
    check_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache, unrotated_k_cache, layout,
                        block_table)
    batch, new = q.shape[:2]
    pos = positions[:, None] + torch.arange(new, device=q.device)  # (batch, new)
    compute = compute_dtype(q)
    if block_table is None:
        rows, slots = torch.arange(batch, device=q.device)[:, None].expand(batch, new), pos
    else:
        block_size = v_cache.shape[1]
        rows, slots = block_table.gather(1, torch.div(pos, block_size, rounding_mode="floor")), pos % block_size
    if rotated_k_cache is not None:
        rotated_k_cache[rows, slots] = rotate(k.to(compute), pos, inv_freq, layout).to(k.dtype)
    if unrotated_k_cache is not None:
        unrotated_k_cache[rows, slots] = k
    v_cache[rows, slots] = v
    return rotate(q.to(compute), pos, inv_freq, layout).to(q.dtype)
