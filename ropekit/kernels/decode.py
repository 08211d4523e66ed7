"""The write half of a decode step in one Triton launch: rotate the new tokens' q and k,
append k (rotated, unrotated or both) and v to the KV cache, return the rotated q.

The math (RoFormer eq. 34, one pair at a time). Token t of sequence b sits at position
p = positions[b] + t. For every feature pair (a, b) and frequency θ_i

    a' = a cos(p θ_i) − b sin(p θ_i),    b' = b cos(p θ_i) + a sin(p θ_i)

applied to q (returned) and to k (into ``rotated_k_cache``); the raw k goes into
``unrotated_k_cache``, v into ``v_cache``, all at the token's cache slot (row p of a
contiguous cache, or slot p % block_size of block ``block_table[b, p // block_size]`` of a
paged one). The plain-torch twin is :func:`ropekit.decode.rope_decode_append`.

Why fuse. Unfused, a step launches the RoPE kernel (reads q, k; writes rotated q, k) and
then one copy per cache (reads the rotated k again, and v). At decode the tensors are a
few hundred kilobytes, so every launch costs more host time than GPU time; one launch
that reads q, k, v once and writes each output once is the least a step can move.

How the kernel works. One program per (token, kv head): it computes the angles p·θ_i
once (float32 product, as :func:`ropekit.rope_cos_sin`), rotates its key, writes the
cache rows, copies the value, and rotates the ``group`` query heads that read this kv
head (GQA) as one (group, head_dim / 2) tile. Grid: (batch · new, kv_heads). Pairs are
read as two half-row vectors: contiguous halves for ``layout="half"``, even and odd
features (stride 2) for ``"paper"``; at one row per program the strided load costs
nothing measurable next to the launch.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ..decode import check_decode_append
from .common import INTERPRETED, KERNEL_DTYPES, qkv_strides


@triton.jit
def _pair_offsets(pair, HALF: tl.constexpr, PAPER: tl.constexpr):
    """Feature index of the first and second member of every pair."""
    if PAPER:
        return 2 * pair, 2 * pair + 1
    return pair, pair + HALF


@triton.jit
def rope_decode_append_kernel(
    Q, K, V, QO, KC, KU, VC, POS, BT, INV_FREQ,
    stride_qb, stride_qt, stride_qh, stride_qd,
    stride_kb, stride_kt, stride_kh, stride_kd,
    stride_vb, stride_vt, stride_vh, stride_vd,
    stride_ob, stride_ot, stride_oh, stride_od,  # returned q
    stride_cb, stride_cs, stride_ch, stride_cd,  # rotated k cache
    stride_ub, stride_us, stride_uh, stride_ud,  # unrotated k cache
    stride_wb, stride_ws, stride_wh, stride_wd,  # v cache
    stride_bt, new, group, block_size, max_slot,
    HALF: tl.constexpr, HALF_P: tl.constexpr, V_DIM: tl.constexpr, V_DIM_P: tl.constexpr,
    GROUP_P: tl.constexpr, PAPER: tl.constexpr, ROTATED: tl.constexpr, UNROTATED: tl.constexpr,
    PAGED: tl.constexpr,
):
    """One program: token t of sequence b (program_id 0 = b · new + t), kv head kvh
    (program_id 1), and its group of query heads kvh · group .. kvh · group + group − 1."""
    b = tl.program_id(0) // new
    t = tl.program_id(0) % new
    kvh = tl.program_id(1)
    pos = tl.load(POS + b).to(tl.int64) + t
    if PAGED:
        row = tl.load(BT + b * stride_bt + pos // block_size).to(tl.int64)
        slot = pos % block_size
    else:
        row = b.to(tl.int64)
        slot = pos
    tl.device_assert(slot < max_slot, "position beyond the cache")
    pair = tl.arange(0, HALF_P)
    in_pair = pair < HALF
    theta = pos.to(tl.float32) * tl.load(INV_FREQ + pair, mask=in_pair, other=0.0)
    cos = tl.cos(theta)
    sin = tl.sin(theta)
    first, second = _pair_offsets(pair, HALF, PAPER)

    k_row = K + b * stride_kb + t * stride_kt + kvh * stride_kh
    ka = tl.load(k_row + first * stride_kd, mask=in_pair)
    kb = tl.load(k_row + second * stride_kd, mask=in_pair)
    if UNROTATED:
        u_row = KU + row * stride_ub + slot * stride_us + kvh * stride_uh
        tl.store(u_row + first * stride_ud, ka, mask=in_pair)
        tl.store(u_row + second * stride_ud, kb, mask=in_pair)
    if ROTATED:
        ka32 = ka.to(tl.float32)
        kb32 = kb.to(tl.float32)
        c_row = KC + row * stride_cb + slot * stride_cs + kvh * stride_ch
        tl.store(c_row + first * stride_cd, (ka32 * cos - kb32 * sin).to(KC.dtype.element_ty), mask=in_pair)
        tl.store(c_row + second * stride_cd, (kb32 * cos + ka32 * sin).to(KC.dtype.element_ty), mask=in_pair)

    dims = tl.arange(0, V_DIM_P)
    value = tl.load(V + b * stride_vb + t * stride_vt + kvh * stride_vh + dims * stride_vd, mask=dims < V_DIM)
    tl.store(VC + row * stride_wb + slot * stride_ws + kvh * stride_wh + dims * stride_wd, value, mask=dims < V_DIM)

    # the group's query heads as one (GROUP_P, HALF_P) tile
    g = tl.arange(0, GROUP_P)
    heads = kvh * group + g
    mask = (g < group)[:, None] & in_pair[None, :]
    q_rows = Q + b * stride_qb + t * stride_qt + heads[:, None] * stride_qh
    qa = tl.load(q_rows + first[None, :] * stride_qd, mask=mask).to(tl.float32)
    qb = tl.load(q_rows + second[None, :] * stride_qd, mask=mask).to(tl.float32)
    o_rows = QO + b * stride_ob + t * stride_ot + heads[:, None] * stride_oh
    out_ty = QO.dtype.element_ty
    tl.store(o_rows + first[None, :] * stride_od, (qa * cos[None, :] - qb * sin[None, :]).to(out_ty), mask=mask)
    tl.store(o_rows + second[None, :] * stride_od, (qb * cos[None, :] + qa * sin[None, :]).to(out_ty), mask=mask)


def rope_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache=None, unrotated_k_cache=None,
                       layout="half", block_table=None):
    """One-launch twin of :func:`ropekit.decode.rope_decode_append` (same arguments, same
    result): rotated q returned, k (rotated / unrotated / both) and v written into the
    cache at each sequence's positions.

    Args:
        q: ``(batch, new, heads, head_dim)``; k, v: ``(batch, new, kv_heads, head_dim | v_dim)``,
            float16 / bfloat16 / float32 on CUDA (or CPU under ``TRITON_INTERPRET=1``).
        v_cache, rotated_k_cache, unrotated_k_cache: ``(batch, max_seq, kv_heads, ·)``, or
            ``(num_blocks, block_size, kv_heads, ·)`` with ``block_table``.
        positions: ``(batch,)`` integers on q's device, the first new position per sequence.
        inv_freq: ``(head_dim // 2,)``. layout: ``"half"`` or ``"paper"``.
        block_table: None, or ``(batch, max_blocks)`` integers (paged caches).

    Returns:
        ``(batch, new, heads, head_dim)``: R_p q in q's dtype (RoFormer eq. 34; lesson 04 derives the decode step).

    No host sync: positions are read by the kernel only (a position past the cache trips
    a device assertion when Triton's debug mode is on).
    """
    check_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache, unrotated_k_cache, layout,
                        block_table)
    if q.dtype not in KERNEL_DTYPES:
        raise TypeError(f"q must be float16, bfloat16 or float32, got {q.dtype}")
    if q.device.type != "cuda" and not INTERPRETED:
        raise ValueError(f"ropekit.kernels.rope_decode_append needs CUDA tensors, got q on {q.device}; on a CPU "
                         "use ropekit.decode.rope_decode_append (or set TRITON_INTERPRET=1 before importing triton)")
    for name, t in (("positions", positions), ("inv_freq", inv_freq), ("block_table", block_table)):
        if t is not None and t.device != q.device:
            raise ValueError(f"{name} must be on q's device {q.device}, got {t.device}")
    if torch.compiler.is_compiling():
        return torch.ops.ropekit.rope_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache,
                                                    unrotated_k_cache, layout, block_table)
    return launch_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache, unrotated_k_cache, layout,
                                block_table)


def launch_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache, unrotated_k_cache, layout,
                         block_table):
    """Launch the kernel on checked inputs (one launch; returns the rotated q)."""
    batch, new, heads, head_dim = q.shape
    kv_heads, v_dim = k.shape[2], v.shape[3]
    group = heads // kv_heads
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    paged = block_table is not None
    # an absent cache is never touched (its constexpr flag is off): any tensor fills the slot
    k_rot = rotated_k_cache if rotated_k_cache is not None else unrotated_k_cache
    k_raw = unrotated_k_cache if unrotated_k_cache is not None else rotated_k_cache
    strides = [qkv_strides(t) for t in (q, k, v, out, k_rot, k_raw, v_cache)]
    grid = (batch * new, kv_heads)
    rope_decode_append_kernel[grid](
        q, k, v, out, k_rot, k_raw, v_cache, positions, block_table if paged else positions,
        inv_freq.to(torch.float32),
        *[x for s in strides for x in s],
        block_table.stride(0) if paged else 0, new, group, v_cache.shape[1], v_cache.shape[1],
        HALF=head_dim // 2, HALF_P=triton.next_power_of_2(head_dim // 2), V_DIM=v_dim,
        V_DIM_P=triton.next_power_of_2(v_dim), GROUP_P=triton.next_power_of_2(group), PAPER=layout == "paper",
        ROTATED=rotated_k_cache is not None, UNROTATED=unrotated_k_cache is not None, PAGED=paged,
        num_warps=1 if head_dim * group <= 1024 else 4,
    )
    return out


# torch.compile sees one custom op that mutates the caches, so the step stays in one graph
# (and in one CUDA graph under mode="reduce-overhead").
@torch.library.custom_op("ropekit::rope_decode_append",
                         mutates_args=("v_cache", "rotated_k_cache", "unrotated_k_cache"))
def _decode_append_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, v_cache: torch.Tensor,
                      positions: torch.Tensor, inv_freq: torch.Tensor, rotated_k_cache: Optional[torch.Tensor],
                      unrotated_k_cache: Optional[torch.Tensor], layout: str,
                      block_table: Optional[torch.Tensor]) -> torch.Tensor:
    return launch_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache, unrotated_k_cache, layout,
                                block_table)


@_decode_append_op.register_fake
def _(q, k, v, v_cache, positions, inv_freq, rotated_k_cache, unrotated_k_cache, layout, block_table):
    return q.new_empty(q.shape)
