"""Backward of the fused ReRoPE / Leaky ReRoPE attention: dq, dk, dv in two Triton kernels.

The math. The forward (``rerope.py``) scores query i against key j ≤ i with one of two
logits, in natural units (c_i = max(1, log_L(i + 1)) / √d, the log-n and softmax scales):

    inside  (i − j < w):  s_ij = ⟨q¹_i, k¹_j⟩,  q¹_i = c_i R_i q_i,   k¹_j = R_j k_j
    outside (i − j ≥ w):  s_ij = ⟨q²_i, k²_j⟩,  q²_i = c_i R²_i q_i,  k²_j = R²_j k_j

with R²_i = R_w and R²_j = I for ReRoPE, R²_i = R_{(i−w)/k+w} and R²_j = R_{j/k} for Leaky.
With P = softmax(s), O = P V and dO the gradient of the output, FlashAttention-2's
backward (Dao 2023, Algorithm 2) gives

    dV_j = Σ_i P_ij dO_i,      dS_ij = P_ij (dO_i·V_j − Δ_i),   Δ_i = dO_i·O_i,

and each logit passes dS_ij to the pair of rotated vectors it was made of:
dq¹_i = Σ_{j inside} dS_ij k¹_j,  dk¹_j = Σ_{i inside} dS_ij q¹_i, and the same for q², k²
over the outside pairs. A rotation is linear, so the gradient w.r.t. the unrotated vectors
is the transposed rotation (R_pᵀ = R_{−p}) of the gradient w.r.t. the rotated ones:

    dq_i = c_i (R_iᵀ dq¹_i + R²_iᵀ dq²_i),      dk_j = R_jᵀ dk¹_j + R²_jᵀ dk²_j.

The kernels accumulate dq¹, dq² (dk¹, dk²) as pair tiles and rotate back once per row at
the end, not once per block.

How the kernels work. P is never stored: the forward saves each row's base-2 logsumexp
and the backward recomputes P block by block, classifying each (query block, key block)
exactly as the forward does: outside the window one product (q² against k², which for
ReRoPE are the raw keys), inside one product (q¹ against k¹), only on the window's edge
both. ``rerope_dkdv_kernel``: one program per key block and kv head walks the query
blocks of every query head of its group (GQA: dk and dv are sums over the group) and
accumulates dK, dV in registers. ``rerope_dq_kernel``: one program per query block and
head walks the key blocks, as the forward does. Δ is one small torch reduction.

Extra memory: the logsumexp (batch · heads · seq floats) and Δ (as many): linear in seq.
Tests: tests/test_kernels_rerope_backward.py against autograd through
:func:`ropekit.attention.rerope_attention`. Lesson 05 shows a fine-tune step through it.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from .common import INTERPRETED, qkv_strides
from .tiles import (load_angles, load_pairs, merged_logits, mma_operand, query_scale, rotate_pairs,
                    rotate_pairs_back, store_pairs)

LOG2E = math.log2(math.e)

# --- the kernels ------------------------------------------------------------------------


@triton.jit
def _dq_blocks(
    dqa1, dqb1, dqa2, dqb2, qa1, qb1, qa2, qb2, do, lse, delta,
    k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
    COS, SIN, COS_K2, SIN_K2, offs_m, seq, window, lo, hi,
    BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, PAPER: tl.constexpr, MODE: tl.constexpr,
    MASKED: tl.constexpr, LEAKY: tl.constexpr, DTYPE: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """dq¹, dq² of one query block over key blocks lo, lo + BN, ... < hi, all of kind MODE."""
    HALF: tl.constexpr = HEAD_DIM // 2
    pair = tl.arange(0, HALF)
    dims = tl.arange(0, HEAD_DIM)
    for n0 in range(lo, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_seq = offs_n < seq
        ka, kb = load_pairs(k_base, offs_n, stride_kn, stride_kd, in_seq, HEAD_DIM, PAPER, MASKED)
        ka = ka.to(tl.float32)
        kb = kb.to(tl.float32)
        ka1, kb1, ka2, kb2 = ka, kb, ka, kb
        if MODE != 0:
            cos, sin = load_angles(COS, SIN, offs_n, HALF, pair, in_seq, HALF, MASKED)
            ka1, kb1 = rotate_pairs(ka, kb, cos, sin)
            ka1 = mma_operand(ka1, DTYPE, UPCAST)
            kb1 = mma_operand(kb1, DTYPE, UPCAST)
        if MODE != 1:
            if LEAKY:
                cos2, sin2 = load_angles(COS_K2, SIN_K2, offs_n, HALF, pair, in_seq, HALF, MASKED)
                ka2, kb2 = rotate_pairs(ka, kb, cos2, sin2)
            ka2 = mma_operand(ka2, DTYPE, UPCAST)
            kb2 = mma_operand(kb2, DTYPE, UPCAST)
        s = merged_logits(qa1, qb1, qa2, qb2, ka1, kb1, ka2, kb2, offs_m, offs_n, window, MODE, PRECISION)
        p = tl.math.exp2(s * 1.4426950408889634 - lse[:, None])
        if MASKED:
            p = tl.where((offs_m[:, None] >= offs_n[None, :]) & in_seq[None, :], p, 0.0)
        v_ptr = v_base + offs_n[:, None] * stride_vn + dims[None, :] * stride_vd
        if MASKED:
            v = tl.load(v_ptr, mask=in_seq[:, None], other=0.0)
        else:
            v = tl.load(v_ptr)
        dp = tl.dot(do, tl.trans(mma_operand(v, DTYPE, UPCAST)), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        if MODE == 2:
            inside = offs_m[:, None] - offs_n[None, :] < window
            ds1 = mma_operand(tl.where(inside, ds, 0.0), DTYPE, UPCAST)
            ds2 = mma_operand(tl.where(inside, 0.0, ds), DTYPE, UPCAST)
        else:
            ds1 = mma_operand(ds, DTYPE, UPCAST)
            ds2 = ds1
        if MODE != 0:
            dqa1 = tl.dot(ds1, ka1, dqa1, input_precision=PRECISION)
            dqb1 = tl.dot(ds1, kb1, dqb1, input_precision=PRECISION)
        if MODE != 1:
            dqa2 = tl.dot(ds2, ka2, dqa2, input_precision=PRECISION)
            dqb2 = tl.dot(ds2, kb2, dqb2, input_precision=PRECISION)
    return dqa1, dqb1, dqa2, dqb2


@triton.jit
def rerope_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,
    COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, COS_K2, SIN_K2,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,  # dO
    stride_gb, stride_gh, stride_gm, stride_gd,  # dQ
    heads, group, seq, window, sm_scale, inv_log_train,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, PAPER: tl.constexpr,
    LEAKY: tl.constexpr, LOG_N: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """One program: dq of queries [m0, m0 + BLOCK_M) of one (batch, head).
    Grid (cdiv(seq, BLOCK_M), batch · heads); key ranges as in the forward kernel."""
    HALF: tl.constexpr = HEAD_DIM // 2
    DTYPE: tl.constexpr = Q.dtype.element_ty
    pid_bh = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    m0 = tl.program_id(0) * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    row_ok = offs_m < seq
    pair = tl.arange(0, HALF)
    dims = tl.arange(0, HEAD_DIM)

    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    qa, qb = load_pairs(q_base, offs_m, stride_qm, stride_qd, row_ok, HEAD_DIM, PAPER, True)
    qa = qa.to(tl.float32)
    qb = qb.to(tl.float32)
    c = query_scale(offs_m, sm_scale, inv_log_train, BLOCK_M, LOG_N)[:, None]
    cos, sin = load_angles(COS, SIN, offs_m, HALF, pair, row_ok, HALF, True)
    cos2, sin2 = load_angles(COS_Q2, SIN_Q2, offs_m, q2_row_stride, pair, row_ok, HALF, True)
    qa1, qb1 = rotate_pairs(qa, qb, cos, sin)
    qa2, qb2 = rotate_pairs(qa, qb, cos2, sin2)
    qa1 = mma_operand(qa1 * c, DTYPE, UPCAST)
    qb1 = mma_operand(qb1 * c, DTYPE, UPCAST)
    qa2 = mma_operand(qa2 * c, DTYPE, UPCAST)
    qb2 = mma_operand(qb2 * c, DTYPE, UPCAST)
    do_ptr = (DO + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
              + offs_m[:, None] * stride_om + dims[None, :] * stride_od)
    do = mma_operand(tl.load(do_ptr, mask=row_ok[:, None], other=0.0), DTYPE, UPCAST)
    lse = tl.load(LSE + pid_bh.to(tl.int64) * seq + offs_m, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * seq + offs_m, mask=row_ok, other=0.0)

    kvh = h // group
    k_base = K + b.to(tl.int64) * stride_kb + kvh.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kvh.to(tl.int64) * stride_vh
    hi = tl.minimum(m0 + BLOCK_M, seq)
    end_out = tl.maximum(m0 - window + 1, 0) // BLOCK_N * BLOCK_N
    start_in = (tl.maximum(m0 + BLOCK_M - window, 0) + BLOCK_N - 1) // BLOCK_N * BLOCK_N
    diag = (m0 + 1) // BLOCK_N * BLOCK_N
    dqa1 = tl.zeros([BLOCK_M, HALF], tl.float32)
    dqb1 = tl.zeros([BLOCK_M, HALF], tl.float32)
    dqa2 = tl.zeros([BLOCK_M, HALF], tl.float32)
    dqb2 = tl.zeros([BLOCK_M, HALF], tl.float32)
    # (first, last, kind, masked): outside, edge, inside, inside on the diagonal
    dqa1, dqb1, dqa2, dqb2 = _dq_blocks(
        dqa1, dqb1, dqa2, dqb2, qa1, qb1, qa2, qb2, do, lse, delta, k_base, v_base,
        stride_kn, stride_kd, stride_vn, stride_vd, COS, SIN, COS_K2, SIN_K2, offs_m, seq, window,
        0, end_out, BLOCK_N, HEAD_DIM, PAPER, 0, False, LEAKY, DTYPE, UPCAST, PRECISION)
    dqa1, dqb1, dqa2, dqb2 = _dq_blocks(
        dqa1, dqb1, dqa2, dqb2, qa1, qb1, qa2, qb2, do, lse, delta, k_base, v_base,
        stride_kn, stride_kd, stride_vn, stride_vd, COS, SIN, COS_K2, SIN_K2, offs_m, seq, window,
        end_out, tl.minimum(start_in, hi), BLOCK_N, HEAD_DIM, PAPER, 2, True, LEAKY, DTYPE, UPCAST, PRECISION)
    dqa1, dqb1, dqa2, dqb2 = _dq_blocks(
        dqa1, dqb1, dqa2, dqb2, qa1, qb1, qa2, qb2, do, lse, delta, k_base, v_base,
        stride_kn, stride_kd, stride_vn, stride_vd, COS, SIN, COS_K2, SIN_K2, offs_m, seq, window,
        start_in, diag, BLOCK_N, HEAD_DIM, PAPER, 1, False, LEAKY, DTYPE, UPCAST, PRECISION)
    dqa1, dqb1, dqa2, dqb2 = _dq_blocks(
        dqa1, dqb1, dqa2, dqb2, qa1, qb1, qa2, qb2, do, lse, delta, k_base, v_base,
        stride_kn, stride_kd, stride_vn, stride_vd, COS, SIN, COS_K2, SIN_K2, offs_m, seq, window,
        tl.maximum(start_in, diag), hi, BLOCK_N, HEAD_DIM, PAPER, 1, True, LEAKY, DTYPE, UPCAST, PRECISION)

    # dq = c (R_iᵀ dq¹ + R²_iᵀ dq²)
    da1, db1 = rotate_pairs_back(dqa1, dqb1, cos, sin)
    da2, db2 = rotate_pairs_back(dqa2, dqb2, cos2, sin2)
    dq_base = DQ + b.to(tl.int64) * stride_gb + h.to(tl.int64) * stride_gh
    out_ty = DQ.dtype.element_ty
    store_pairs(dq_base, offs_m, stride_gm, stride_gd, row_ok,
                ((da1 + da2) * c).to(out_ty), ((db1 + db2) * c).to(out_ty), HEAD_DIM, PAPER)


@triton.jit
def _dkdv_blocks(
    dv, dka1, dkb1, dka2, dkb2, ka1, kb1, ka2, kb2, v,
    q_base, do_base, lse_base, delta_base, stride_qm, stride_qd, stride_om, stride_od,
    COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, offs_n, seq, window, sm_scale, inv_log_train, lo, hi,
    BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, PAPER: tl.constexpr, MODE: tl.constexpr,
    MASKED: tl.constexpr, LOG_N: tl.constexpr, DTYPE: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """dV, dk¹, dk² of one key block over query blocks lo, lo + BM, ... < hi, of kind MODE."""
    HALF: tl.constexpr = HEAD_DIM // 2
    pair = tl.arange(0, HALF)
    dims = tl.arange(0, HEAD_DIM)
    for m0 in range(lo, hi, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        row_ok = offs_m < seq
        qa, qb = load_pairs(q_base, offs_m, stride_qm, stride_qd, row_ok, HEAD_DIM, PAPER, MASKED)
        qa = qa.to(tl.float32)
        qb = qb.to(tl.float32)
        c = query_scale(offs_m, sm_scale, inv_log_train, BLOCK_M, LOG_N)[:, None]
        qa1, qb1, qa2, qb2 = qa, qb, qa, qb
        if MODE != 0:
            cos, sin = load_angles(COS, SIN, offs_m, HALF, pair, row_ok, HALF, MASKED)
            qa1, qb1 = rotate_pairs(qa, qb, cos, sin)
            qa1 = mma_operand(qa1 * c, DTYPE, UPCAST)
            qb1 = mma_operand(qb1 * c, DTYPE, UPCAST)
        if MODE != 1:
            cos2, sin2 = load_angles(COS_Q2, SIN_Q2, offs_m, q2_row_stride, pair, row_ok, HALF, MASKED)
            qa2, qb2 = rotate_pairs(qa, qb, cos2, sin2)
            qa2 = mma_operand(qa2 * c, DTYPE, UPCAST)
            qb2 = mma_operand(qb2 * c, DTYPE, UPCAST)
        s = merged_logits(qa1, qb1, qa2, qb2, ka1, kb1, ka2, kb2, offs_m, offs_n, window, MODE, PRECISION)
        do_ptr = do_base + offs_m[:, None] * stride_om + dims[None, :] * stride_od
        if MASKED:
            lse = tl.load(lse_base + offs_m, mask=row_ok, other=0.0)
            delta = tl.load(delta_base + offs_m, mask=row_ok, other=0.0)
            do = tl.load(do_ptr, mask=row_ok[:, None], other=0.0)
        else:
            lse = tl.load(lse_base + offs_m)
            delta = tl.load(delta_base + offs_m)
            do = tl.load(do_ptr)
        do = mma_operand(do, DTYPE, UPCAST)
        p = tl.math.exp2(s * 1.4426950408889634 - lse[:, None])
        if MASKED:
            p = tl.where((offs_m[:, None] >= offs_n[None, :]) & row_ok[:, None], p, 0.0)
        dv = tl.dot(tl.trans(mma_operand(p, DTYPE, UPCAST)), do, dv, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        if MODE == 2:
            inside = offs_m[:, None] - offs_n[None, :] < window
            ds1 = tl.trans(mma_operand(tl.where(inside, ds, 0.0), DTYPE, UPCAST))
            ds2 = tl.trans(mma_operand(tl.where(inside, 0.0, ds), DTYPE, UPCAST))
        else:
            ds1 = tl.trans(mma_operand(ds, DTYPE, UPCAST))
            ds2 = ds1
        if MODE != 0:
            dka1 = tl.dot(ds1, qa1, dka1, input_precision=PRECISION)
            dkb1 = tl.dot(ds1, qb1, dkb1, input_precision=PRECISION)
        if MODE != 1:
            dka2 = tl.dot(ds2, qa2, dka2, input_precision=PRECISION)
            dkb2 = tl.dot(ds2, qb2, dkb2, input_precision=PRECISION)
    return dv, dka1, dkb1, dka2, dkb2


@triton.jit
def rerope_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV,
    COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, COS_K2, SIN_K2,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,  # dO
    stride_gb, stride_gh, stride_gn, stride_gd,  # dK and dV (both contiguous, same shape)
    heads, kv_heads, group, seq, window, sm_scale, inv_log_train,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, PAPER: tl.constexpr,
    LEAKY: tl.constexpr, LOG_N: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):
    """One program: dk, dv of keys [n0, n0 + BLOCK_N) of one (batch, kv head), summed over
    the `group` query heads that read them. Grid (cdiv(seq, BLOCK_N), batch · kv_heads).

    Query blocks from the key block's point of view, as m0 grows (multiples of BLOCK_M):
    inside while m0 + BM − 1 − n0 < w, outside once m0 − (n0 + BN − 1) ≥ w, the edge
    between. Blocks that cross the diagonal (m0 < diag) or the end of seq (m0 ≥ full) are
    masked; the rest are not."""
    HALF: tl.constexpr = HEAD_DIM // 2
    DTYPE: tl.constexpr = Q.dtype.element_ty
    pid_bh = tl.program_id(1)
    b = pid_bh // kv_heads
    kvh = pid_bh % kv_heads
    n0 = tl.program_id(0) * BLOCK_N
    offs_n = n0 + tl.arange(0, BLOCK_N)
    in_seq = offs_n < seq
    pair = tl.arange(0, HALF)
    dims = tl.arange(0, HEAD_DIM)

    k_base = K + b.to(tl.int64) * stride_kb + kvh.to(tl.int64) * stride_kh
    ka, kb = load_pairs(k_base, offs_n, stride_kn, stride_kd, in_seq, HEAD_DIM, PAPER, True)
    ka = ka.to(tl.float32)
    kb = kb.to(tl.float32)
    cos, sin = load_angles(COS, SIN, offs_n, HALF, pair, in_seq, HALF, True)
    ka1, kb1 = rotate_pairs(ka, kb, cos, sin)
    ka2, kb2 = ka, kb
    if LEAKY:
        cos2, sin2 = load_angles(COS_K2, SIN_K2, offs_n, HALF, pair, in_seq, HALF, True)
        ka2, kb2 = rotate_pairs(ka, kb, cos2, sin2)
    ka1 = mma_operand(ka1, DTYPE, UPCAST)
    kb1 = mma_operand(kb1, DTYPE, UPCAST)
    ka2 = mma_operand(ka2, DTYPE, UPCAST)
    kb2 = mma_operand(kb2, DTYPE, UPCAST)
    v_ptr = (V + b.to(tl.int64) * stride_vb + kvh.to(tl.int64) * stride_vh
             + offs_n[:, None] * stride_vn + dims[None, :] * stride_vd)
    v = mma_operand(tl.load(v_ptr, mask=in_seq[:, None], other=0.0), DTYPE, UPCAST)

    end = tl.cdiv(seq, BLOCK_M) * BLOCK_M
    full = seq // BLOCK_M * BLOCK_M
    first = n0 // BLOCK_M * BLOCK_M
    diag = (n0 + BLOCK_N - 1 + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    start_edge = tl.maximum((tl.maximum(n0 + window - BLOCK_M + 1, 0) + BLOCK_M - 1) // BLOCK_M * BLOCK_M, first)
    start_out = tl.minimum((n0 + BLOCK_N - 1 + window + BLOCK_M - 1) // BLOCK_M * BLOCK_M, end)
    start_edge = tl.minimum(start_edge, start_out)

    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dka1 = tl.zeros([BLOCK_N, HALF], tl.float32)
    dkb1 = tl.zeros([BLOCK_N, HALF], tl.float32)
    dka2 = tl.zeros([BLOCK_N, HALF], tl.float32)
    dkb2 = tl.zeros([BLOCK_N, HALF], tl.float32)
    for g in range(0, group):
        h = kvh * group + g
        bh = b * heads + h
        q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
        do_base = DO + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
        lse_base = LSE + bh.to(tl.int64) * seq
        delta_base = DELTA + bh.to(tl.int64) * seq
        # inside: masked across the diagonal, clean, masked past the last full block
        in_end = start_edge
        dv, dka1, dkb1, dka2, dkb2 = _dkdv_blocks(
            dv, dka1, dkb1, dka2, dkb2, ka1, kb1, ka2, kb2, v, q_base, do_base, lse_base, delta_base,
            stride_qm, stride_qd, stride_om, stride_od, COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, offs_n, seq,
            window, sm_scale, inv_log_train, first, tl.minimum(in_end, diag),
            BLOCK_M, HEAD_DIM, PAPER, 1, True, LOG_N, DTYPE, UPCAST, PRECISION)
        dv, dka1, dkb1, dka2, dkb2 = _dkdv_blocks(
            dv, dka1, dkb1, dka2, dkb2, ka1, kb1, ka2, kb2, v, q_base, do_base, lse_base, delta_base,
            stride_qm, stride_qd, stride_om, stride_od, COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, offs_n, seq,
            window, sm_scale, inv_log_train, tl.maximum(first, diag), tl.minimum(in_end, full),
            BLOCK_M, HEAD_DIM, PAPER, 1, False, LOG_N, DTYPE, UPCAST, PRECISION)
        dv, dka1, dkb1, dka2, dkb2 = _dkdv_blocks(
            dv, dka1, dkb1, dka2, dkb2, ka1, kb1, ka2, kb2, v, q_base, do_base, lse_base, delta_base,
            stride_qm, stride_qd, stride_om, stride_od, COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, offs_n, seq,
            window, sm_scale, inv_log_train, tl.maximum(tl.maximum(first, diag), full), in_end,
            BLOCK_M, HEAD_DIM, PAPER, 1, True, LOG_N, DTYPE, UPCAST, PRECISION)
        # the edge, always masked
        dv, dka1, dkb1, dka2, dkb2 = _dkdv_blocks(
            dv, dka1, dkb1, dka2, dkb2, ka1, kb1, ka2, kb2, v, q_base, do_base, lse_base, delta_base,
            stride_qm, stride_qd, stride_om, stride_od, COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, offs_n, seq,
            window, sm_scale, inv_log_train, start_edge, start_out,
            BLOCK_M, HEAD_DIM, PAPER, 2, True, LOG_N, DTYPE, UPCAST, PRECISION)
        # outside: never crosses the diagonal; clean, then masked past the last full block
        dv, dka1, dkb1, dka2, dkb2 = _dkdv_blocks(
            dv, dka1, dkb1, dka2, dkb2, ka1, kb1, ka2, kb2, v, q_base, do_base, lse_base, delta_base,
            stride_qm, stride_qd, stride_om, stride_od, COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, offs_n, seq,
            window, sm_scale, inv_log_train, start_out, tl.maximum(full, start_out),
            BLOCK_M, HEAD_DIM, PAPER, 0, False, LOG_N, DTYPE, UPCAST, PRECISION)
        dv, dka1, dkb1, dka2, dkb2 = _dkdv_blocks(
            dv, dka1, dkb1, dka2, dkb2, ka1, kb1, ka2, kb2, v, q_base, do_base, lse_base, delta_base,
            stride_qm, stride_qd, stride_om, stride_od, COS, SIN, COS_Q2, SIN_Q2, q2_row_stride, offs_n, seq,
            window, sm_scale, inv_log_train, tl.maximum(full, start_out), end,
            BLOCK_M, HEAD_DIM, PAPER, 0, True, LOG_N, DTYPE, UPCAST, PRECISION)

    # dk = R_jᵀ dk¹ + R²_jᵀ dk²  (R²_j = I for ReRoPE)
    da1, db1 = rotate_pairs_back(dka1, dkb1, cos, sin)
    if LEAKY:
        dka2, dkb2 = rotate_pairs_back(dka2, dkb2, cos2, sin2)
    out_ty = DK.dtype.element_ty
    g_off = b.to(tl.int64) * stride_gb + kvh.to(tl.int64) * stride_gh
    store_pairs(DK + g_off, offs_n, stride_gn, stride_gd, in_seq,
                (da1 + dka2).to(out_ty), (db1 + dkb2).to(out_ty), HEAD_DIM, PAPER)
    dv_ptr = DV + g_off + offs_n[:, None] * stride_gn + dims[None, :] * stride_gd
    tl.store(dv_ptr, dv.to(out_ty), mask=in_seq[:, None])


# --- the launcher -----------------------------------------------------------------------


def backward_block_sizes(head_dim: int, dtype: torch.dtype, interpret: bool):
    """((BLOCK_M, BLOCK_N, num_warps, num_stages) of the dk/dv kernel, the same of the dq
    kernel). Not yet timed on a GPU (benchmarks/gpu_kernels2_bench.py measures the result);
    chosen from sm_90 builds by the installed triton (cuobjdump -res-usage, bf16, d = 128):
    both kernels use all 255 registers, and these tiles spill least of those tried, 1.4 KB
    of stack for dk/dv at 32 × 64 (3.5 KB at 64 × 64) and 72 B for dq at 64 × 32 (256 B
    at 64 × 64); at d = 64 eight warps cut dk/dv's stack from 1.7 KB to 0.6 KB. dk/dv wants
    a tall key block (its accumulators), dq a tall query block.
    Tiny blocks under the interpreter, so that every block kind occurs in small tests."""
    if interpret:
        return (16, 16, 1, 1), (16, 16, 1, 1)
    if dtype == torch.float32:
        return (32, 32, 4, 1), (32, 32, 4, 1)
    return (32, 64, 8, 2), (64, 32, 8 if head_dim == 128 else 4, 2)


def _launch(kernel, grid, args, constants, num_warps, num_stages):
    """Launch, dropping pipeline stages while shared memory does not fit (raised before
    anything is written)."""
    while True:
        try:
            return kernel[grid](*args, **constants, num_warps=num_warps, num_stages=num_stages)
        except OutOfResources:
            if num_stages == 1:
                raise
            num_stages -= 1


def launch_rerope_backward(q, k, v, out, lse, grad_out, tables, window, leaky_factor, log_n_train_length, layout):
    """dq, dk, dv of :func:`ropekit.kernels.rerope_attention` (module docstring).

    Args:
        q, k, v, out: the forward's inputs and output, ``(batch, seq, heads | kv_heads, head_dim)``.
        lse: ``(batch · heads, seq)`` float32, each row's base-2 logsumexp from the forward.
        grad_out: ``(batch, seq, heads, head_dim)``, the gradient of ``out``.
        tables: the forward's angle tables (``ropekit.kernels.rerope.angle_tables``).
        window, leaky_factor, log_n_train_length, layout: as in the forward.

    Returns:
        ``(dq, dk, dv)``, contiguous, in q's dtype, shaped like q, k, v.
    """
    batch, seq, heads, head_dim = q.shape
    kv_heads = k.shape[2]
    cos, sin, cos_q2, sin_q2, cos_k2, sin_k2 = tables
    leaky, log_n = leaky_factor is not None, log_n_train_length is not None
    dkdv_config, dq_config = backward_block_sizes(head_dim, q.dtype, INTERPRETED)
    # Δ_i = dO_i · O_i, laid out like the logsumexp: (batch · heads, seq)
    delta = (grad_out.float() * out.float()).sum(-1).transpose(1, 2).reshape(batch * heads, seq).contiguous()
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=q.dtype, device=q.device)
    dv = torch.empty(v.shape, dtype=q.dtype, device=q.device)
    s = [(t.batch, t.heads, t.seq, t.feature) for t in map(qkv_strides, (q, k, v, grad_out, dq, dk))]
    tables_args = (cos, sin, cos_q2, sin_q2, head_dim // 2 if leaky else 0, cos_k2, sin_k2)
    scalars = (1.0 / math.sqrt(head_dim), 1.0 / math.log(log_n_train_length) if log_n else 1.0)
    constants = dict(HEAD_DIM=head_dim, PAPER=layout == "paper", LEAKY=leaky, LOG_N=log_n,
                     UPCAST=INTERPRETED and q.dtype == torch.bfloat16,
                     PRECISION="ieee" if q.dtype == torch.float32 else "tf32")
    _launch(rerope_dkdv_kernel, (triton.cdiv(seq, dkdv_config[1]), batch * kv_heads),
            (q, k, v, grad_out, lse, delta, dk, dv, *tables_args, *s[0], *s[1], *s[2], *s[3], *s[5],
             heads, kv_heads, heads // kv_heads, seq, window, *scalars),
            dict(constants, BLOCK_M=dkdv_config[0], BLOCK_N=dkdv_config[1]), *dkdv_config[2:])
    _launch(rerope_dq_kernel, (triton.cdiv(seq, dq_config[0]), batch * heads),
            (q, k, v, grad_out, lse, delta, dq, *tables_args, *s[0], *s[1], *s[2], *s[3], *s[4],
             heads, heads // kv_heads, seq, window, *scalars),
            dict(constants, BLOCK_M=dq_config[0], BLOCK_N=dq_config[1]), *dq_config[2:])
    return dq, dk, dv
