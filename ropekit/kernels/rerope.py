"""Fused causal ReRoPE and Leaky ReRoPE attention: one Triton kernel, no (seq, seq) matrix.

The math (Su Jianlin, "Rectified Rotary Position Embeddings", kexue.fm 2023; lesson 04).
With R^p the RoPE rotation by position p (RoFormer eq. 15), query i and key j ≤ i get two logits,
    a¹_ij = ⟨R^i q_i, R^j k_j⟩                        relative position i − j
    a²_ij = ⟨R^w q_i, k_j⟩                            ReRoPE: relative position w
    a²_ij = ⟨R^{(i−w)/k + w} q_i, R^{j/k} k_j⟩        Leaky: w + (i − j − w)/k

and the score is a¹ inside the window (i − j < w) and a² beyond it, then softmax(· /√d)
and V as usual. ``log_n_train_length=L`` first multiplies query i by max(1, log_L(i + 1)).
The plain-torch specification is :func:`ropekit.attention.rerope_attention`, which builds
both (seq, seq) logit matrices; this kernel never does.

How the kernel works (FlashAttention-2 forward, Dao 2023, Algorithm 1).
One program owns BLOCK_M queries of one (batch, head) and walks the key blocks
0 .. its diagonal with an online softmax (running max m, running sum l, float32
accumulator). The queries are rotated once, in registers, two ways (R^i q and the
second rotation), and the log-n scale and the softmax scale (times log2 e, so the kernel
can use exp2) are folded into them. For each key block the raw K tile is loaded once and
rotated only as that block needs. A query block [m0, m0+BM) and key block [n0, n0+BN) is

    outside the window   if m0 − (n0 + BN − 1) ≥ w   → only a²  (ReRoPE: raw K, no rotation)
    inside the window    if (m0 + BM − 1) − n0 < w   → only a¹
    on the window's edge otherwise                   → both, merged by i − j < w

so the rotated-twice work is confined to the few blocks along the band i − j ≈ w, and
for ReRoPE the bulk of the work (outside blocks) is a plain attention with raw keys.
Only the diagonal and the edge blocks are masked (causal mask and seq bounds).

Feature pairs as two half-width tiles. A rotation mixes feature a_p with its partner
b_p. The kernel holds the two members of every pair as two (rows, d/2) tiles, a and b,
rotates them element-wise (a' = a cos − b sin, b' = b cos + a sin) and takes the logit as
two half-width dots, q_a'·k_a'ᵀ + q_b'·k_b'ᵀ. For ``layout="half"`` a and b are the two halves of
the row, loaded as they lie. For ``layout="paper"`` the row is loaded whole and split into
its even (a) and odd (b) features in registers. Both give the true score: ⟨q, k⟩ is a sum
over features, so reading q and k with the same permutation of columns leaves it
unchanged. V is not rotated and is read whole.

Angles. cos and sin come from small float32 tables made once per call by
:func:`ropekit.rope_cos_sin` (positions 0..seq−1; for Leaky also (i − w)/k + w and j/k;
for ReRoPE the single row at position w, read with row stride 0). The tables are
(seq, d/2), shared by every head and batch, and stay in L2: reading them costs less than
evaluating sin and cos for every key tile, and the angles are bit-identical to the ones
``rope_cos_sin`` gives the reference. Rotated tiles are rounded to the input dtype
before the tensor-core dots (as pre-rotated q and k would be); all softmax arithmetic
and the accumulator are float32.

Speed: benchmarks/results/ (the committed runs; lesson 05 reads them).

Backward: with q, k or v requiring grad, the forward also stores each row's logsumexp
(O(seq) floats) and ``.backward()`` runs the two kernels of
:mod:`ropekit.kernels.rerope_backward` (FlashAttention-2's backward with the same block
classification; lesson 05).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from triton.runtime.errors import OutOfResources

from ..checks import check_layout, check_leaky_factor, check_log_n_train_length, check_qkv, check_window, describe
from ..reference import rope_cos_sin
from .common import INTERPRETED, KERNEL_DTYPES, qkv_strides
from .rerope_backward import launch_rerope_backward
from .tiles import load_angles, load_pairs, mma_operand, rotate_pairs

_HEAD_DIMS = (32, 64, 128)

# --- the kernel -----------------------------------------------------------------------


@triton.jit
def _attend_blocks(
    acc, l_i, m_i,
    q1a, q1b, q2a, q2b,
    k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
    cos_ptr, sin_ptr, cos_k2_ptr, sin_k2_ptr,
    offs_m, seq, window, lo, hi,
    BLOCK_N: tl.constexpr, HALF: tl.constexpr, HEAD_DIM: tl.constexpr, PAPER: tl.constexpr,
    MODE: tl.constexpr, MASKED: tl.constexpr, LEAKY: tl.constexpr,
    DTYPE: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr, STAGES: tl.constexpr,
):
    """Online-softmax update of one query block over key blocks n0 = lo, lo+BN, ... < hi,
    all of the same kind MODE (0 outside the window, 1 inside, 2 on its edge). MASKED blocks apply the causal
    mask and the seq bound; the others are known to need neither. STAGES: how many key
    blocks the software pipeline keeps in flight (shared memory per stage: K, V and the
    angle tiles the block kind reads)."""
    pair = tl.arange(0, HALF)
    dims = tl.arange(0, HEAD_DIM)
    for n0 in tl.range(lo, hi, BLOCK_N, num_stages=STAGES):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_seq = offs_n < seq
        ka, kb = load_pairs(k_base, offs_n, stride_kn, stride_kd, in_seq, HEAD_DIM, PAPER, MASKED)
        ka = ka.to(tl.float32)
        kb = kb.to(tl.float32)
        if MODE != 0:  # inside or edge: a¹ = ⟨R^i q, R^j k⟩
            cos, sin = load_angles(cos_ptr, sin_ptr, offs_n, HALF, pair, in_seq, HALF, MASKED)
            k1a, k1b = rotate_pairs(ka, kb, cos, sin)
            s1 = tl.dot(q1a, tl.trans(mma_operand(k1a, DTYPE, UPCAST)), input_precision=PRECISION)
            s1 = tl.dot(q1b, tl.trans(mma_operand(k1b, DTYPE, UPCAST)), s1, input_precision=PRECISION)
        if MODE != 1:  # outside or edge: a² with raw K (ReRoPE) or R^{j/k} K (Leaky)
            if LEAKY:
                cos2, sin2 = load_angles(cos_k2_ptr, sin_k2_ptr, offs_n, HALF, pair, in_seq, HALF, MASKED)
                k2a, k2b = rotate_pairs(ka, kb, cos2, sin2)
            else:
                k2a, k2b = ka, kb
            s2 = tl.dot(q2a, tl.trans(mma_operand(k2a, DTYPE, UPCAST)), input_precision=PRECISION)
            s2 = tl.dot(q2b, tl.trans(mma_operand(k2b, DTYPE, UPCAST)), s2, input_precision=PRECISION)
        if MODE == 0:
            s = s2
        elif MODE == 1:
            s = s1
        else:
            s = tl.where(offs_m[:, None] - offs_n[None, :] < window, s1, s2)
        if MASKED:
            keep = (offs_m[:, None] >= offs_n[None, :]) & in_seq[None, :]
            s = tl.where(keep, s, float("-inf"))
        # FlashAttention-2 online softmax in base 2 (log2 e is folded into q).
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v_ptr = v_base + offs_n[:, None] * stride_vn + dims[None, :] * stride_vd
        if MASKED:
            v = tl.load(v_ptr, mask=in_seq[:, None], other=0.0)
        else:
            v = tl.load(v_ptr)
        if UPCAST:
            v = v.to(tl.float32)
        acc = tl.dot(mma_operand(p, DTYPE, UPCAST), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def rerope_fwd_kernel(
    Q, K, V, Out, LSE,  # LSE: (batch · heads, seq) float32, written when STORE_LSE
    COS, SIN,  # (seq, d/2): angles of positions 0..seq−1, for R^i q and R^j k
    COS_Q2, SIN_Q2, q2_row_stride,  # second query rotation: (seq, d/2), or one row (stride 0)
    COS_K2, SIN_K2,  # Leaky only: (seq, d/2) angles of positions j/k
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    heads, group, seq, window, qk_scale, inv_log_train,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, PAPER: tl.constexpr,
    LEAKY: tl.constexpr, LOG_N: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
    STAGES: tl.constexpr, EDGE_STAGES: tl.constexpr, STORE_LSE: tl.constexpr,
):
    """One program: queries [m0, m0 + BLOCK_M) of one (batch, head), all their keys.

    Grid: (cdiv(seq, BLOCK_M), batch · heads). Query blocks are taken last-first, so the
    longest rows (most key blocks under the causal mask) start first. Under GQA, head h
    reads kv head h // group.
    """
    HALF: tl.constexpr = HEAD_DIM // 2
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    m0 = pid_m * BLOCK_M
    offs_m = m0 + tl.arange(0, BLOCK_M)
    pair = tl.arange(0, HALF)
    row_ok = offs_m < seq

    # The query tile, rotated two ways and scaled, stays in registers for the whole loop.
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    qa, qb = load_pairs(q_base, offs_m, stride_qm, stride_qd, row_ok, HEAD_DIM, PAPER, True)
    qa = qa.to(tl.float32)
    qb = qb.to(tl.float32)
    cos, sin = load_angles(COS, SIN, offs_m, HALF, pair, row_ok, HALF, True)
    q1a, q1b = rotate_pairs(qa, qb, cos, sin)
    cos2, sin2 = load_angles(COS_Q2, SIN_Q2, offs_m, q2_row_stride, pair, row_ok, HALF, True)
    q2a, q2b = rotate_pairs(qa, qb, cos2, sin2)
    scale = tl.full([BLOCK_M], qk_scale, tl.float32)
    if LOG_N:  # query i scaled by max(1, log_L(i + 1))
        scale = scale * tl.maximum(tl.log((offs_m + 1).to(tl.float32)) * inv_log_train, 1.0)
    DTYPE: tl.constexpr = Q.dtype.element_ty
    q1a = mma_operand(q1a * scale[:, None], DTYPE, UPCAST)
    q1b = mma_operand(q1b * scale[:, None], DTYPE, UPCAST)
    q2a = mma_operand(q2a * scale[:, None], DTYPE, UPCAST)
    q2b = mma_operand(q2b * scale[:, None], DTYPE, UPCAST)

    kvh = h // group
    k_base = K + b.to(tl.int64) * stride_kb + kvh.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + kvh.to(tl.int64) * stride_vh

    # Key ranges, in order from key 0 (every row's first valid key comes first, so the
    # running max is finite before any fully masked row of a block is met):
    #   [0, end_out)               outside the window, below the diagonal: a² only, no mask
    #   [end_out, min(start_in, hi))  the window's edge: both products, masked
    #   [start_in, diag)           inside, below the diagonal: a¹ only, no mask
    #   [max(start_in, diag), hi)  inside, on the diagonal or past seq: a¹ only, masked
    # (operands of // are kept non-negative: Triton and Python round negatives differently)
    hi = tl.minimum(m0 + BLOCK_M, seq)
    end_out = tl.maximum(m0 - window + 1, 0) // BLOCK_N * BLOCK_N
    start_in = (tl.maximum(m0 + BLOCK_M - window, 0) + BLOCK_N - 1) // BLOCK_N * BLOCK_N
    diag = (m0 + 1) // BLOCK_N * BLOCK_N

    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    acc, l_i, m_i = _attend_blocks(  # outside
        acc, l_i, m_i, q1a, q1b, q2a, q2b, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
        COS, SIN, COS_K2, SIN_K2, offs_m, seq, window, 0, end_out,
        BLOCK_N, HALF, HEAD_DIM, PAPER, 0, False, LEAKY, DTYPE, UPCAST, PRECISION, STAGES)
    acc, l_i, m_i = _attend_blocks(  # edge
        acc, l_i, m_i, q1a, q1b, q2a, q2b, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
        COS, SIN, COS_K2, SIN_K2, offs_m, seq, window, end_out, tl.minimum(start_in, hi),
        BLOCK_N, HALF, HEAD_DIM, PAPER, 2, True, LEAKY, DTYPE, UPCAST, PRECISION, EDGE_STAGES)
    acc, l_i, m_i = _attend_blocks(  # inside
        acc, l_i, m_i, q1a, q1b, q2a, q2b, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
        COS, SIN, COS_K2, SIN_K2, offs_m, seq, window, start_in, diag,
        BLOCK_N, HALF, HEAD_DIM, PAPER, 1, False, LEAKY, DTYPE, UPCAST, PRECISION, STAGES)
    acc, l_i, m_i = _attend_blocks(  # inside, on the diagonal
        acc, l_i, m_i, q1a, q1b, q2a, q2b, k_base, v_base, stride_kn, stride_kd, stride_vn, stride_vd,
        COS, SIN, COS_K2, SIN_K2, offs_m, seq, window, tl.maximum(start_in, diag), hi,
        BLOCK_N, HALF, HEAD_DIM, PAPER, 1, True, LEAKY, DTYPE, UPCAST, PRECISION, STAGES)

    out = acc / l_i[:, None]
    dims = tl.arange(0, HEAD_DIM)
    o_ptr = (Out + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
             + offs_m[:, None] * stride_om + dims[None, :] * stride_od)
    tl.store(o_ptr, out.to(Out.dtype.element_ty), mask=row_ok[:, None])
    if STORE_LSE:  # log2 Σ_j 2^{s_ij}: the backward recomputes every P_ij from it
        tl.store(LSE + pid_bh.to(tl.int64) * seq + offs_m, m_i + tl.log2(l_i), mask=row_ok)


# --- the launcher ---------------------------------------------------------------------


def block_sizes(head_dim: int, dtype: torch.dtype, leaky: bool, paper: bool, interpret: bool):
    """(BLOCK_M, BLOCK_N, num_warps, num_stages). Tuned on an H100 for bf16
    (benchmarks/gpu_rerope_tune.py); tiny blocks under the interpreter, where every tile op
    is a numpy call and small blocks make inside/edge/outside blocks all occur in tests.
    Paper-layout ReRoPE at head_dim 128 needs 232 KB of shared memory with three stages
    (an H100 has 227 KB), so it gets two."""
    if interpret:
        return 16, 16, 1, 1
    if dtype == torch.float32:
        return 64, 32, 4, 2
    if head_dim == 128:
        return 128, 64, 8, 2 if paper and not leaky else 3
    return 128, 64, 4, 2 if leaky else 3


# num_stages that fit in this GPU's shared memory, found on first launch, per kernel variant
_FITTED_STAGES: dict = {}


def _check_inputs(q, k, v, inv_freq, window, leaky_factor, causal, log_n_train_length, layout):
    check_qkv(q, k, v)
    if not causal:
        raise NotImplementedError(
            "ropekit.kernels.rerope_attention fuses causal attention only; for causal=False use "
            "the reference ropekit.attention.rerope_attention"
        )
    if q.device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            f"ropekit.kernels.rerope_attention needs CUDA tensors, got q on {q.device}; on a CPU use "
            "ropekit.attention.rerope_attention (or set TRITON_INTERPRET=1 before importing triton "
            "to run the kernel in the Triton interpreter)"
        )
    if q.dtype not in KERNEL_DTYPES:
        raise TypeError(f"q must be float16, bfloat16 or float32, got {q.dtype}")
    batch, seq, heads, head_dim = q.shape
    if head_dim not in _HEAD_DIMS:
        raise ValueError(f"head_dim must be one of {_HEAD_DIMS} for the fused kernel, got {head_dim}")
    if v.shape[-1] != head_dim:
        raise ValueError(f"v must have q's head_dim = {head_dim} for the fused kernel, got v {tuple(v.shape)}")
    if seq == 0 or batch == 0 or heads == 0:
        raise ValueError(f"q must have non-empty batch, seq and heads, got {tuple(q.shape)}")
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.shape != (head_dim // 2,):
        raise ValueError(f"inv_freq must have shape (head_dim // 2,) = ({head_dim // 2},) (the fused kernel rotates "
                         f"every feature), got {describe(inv_freq)}")
    check_window(window)
    check_leaky_factor(leaky_factor)
    check_log_n_train_length(log_n_train_length)
    check_layout(layout)


def angle_tables(seq, inv_freq, window, leaky_factor, device):
    """float32 cos/sin tables (rows, head_dim // 2) for the kernel; see the module docstring."""
    inv_freq = inv_freq.to(device=device, dtype=torch.float32)
    positions = torch.arange(seq, device=device)
    cos, sin = rope_cos_sin(positions, inv_freq)
    if leaky_factor is None:
        cos_q2, sin_q2 = rope_cos_sin(torch.tensor([window], device=device), inv_freq)  # R^w, one row
        cos_k2, sin_k2 = cos, sin  # unused: ReRoPE's a² reads raw keys
    else:
        # the same float32 positions as the reference, so the angles agree bit for bit
        cos_q2, sin_q2 = rope_cos_sin((positions - window) / leaky_factor + window, inv_freq)
        cos_k2, sin_k2 = rope_cos_sin(positions / leaky_factor, inv_freq)
    return cos, sin, cos_q2.contiguous(), sin_q2.contiguous(), cos_k2, sin_k2


def launch_rerope(q, k, v, inv_freq, window, leaky_factor, log_n_train_length, layout, config=None, lse=None):
    """Launch the kernel on checked inputs. ``config`` = (BLOCK_M, BLOCK_N, num_warps,
    num_stages) overrides the tuned choice (benchmarks/gpu_rerope_tune.py sweeps it).
    ``lse``: a ``(batch · heads, seq)`` float32 tensor that receives each row's base-2
    logsumexp (for the backward).

    Without ``config``, a GPU whose shared memory cannot hold the tuned number of
    pipeline stages (an A100 has 164 KB, an H100 227 KB) gets one stage fewer, and so on;
    the number that fits is remembered per kernel variant.
    """
    batch, seq, heads, head_dim = q.shape
    interpret = INTERPRETED
    leaky, paper = leaky_factor is not None, layout == "paper"
    block_m, block_n, num_warps, num_stages = config or block_sizes(head_dim, q.dtype, leaky, paper, interpret)
    cos, sin, cos_q2, sin_q2, cos_k2, sin_k2 = angle_tables(seq, inv_freq, window, leaky_factor, q.device)
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    log_n = log_n_train_length is not None
    grid = (triton.cdiv(seq, block_m), batch * heads)
    # the kernel walks (batch, heads, seq, feature) strides; the tensors are (batch, seq, heads, head_dim)
    strides = [(s.batch, s.heads, s.seq, s.feature) for s in map(qkv_strides, (q, k, v, out))]
    variant = (q.device, q.dtype, head_dim, leaky, paper, log_n)
    stages = num_stages if config else _FITTED_STAGES.get(variant, num_stages)
    while True:
        try:
            rerope_fwd_kernel[grid](
                q, k, v, out, out if lse is None else lse,
                cos, sin, cos_q2, sin_q2, head_dim // 2 if leaky else 0, cos_k2, sin_k2,
                *strides[0], *strides[1], *strides[2], *strides[3],
                heads, heads // k.shape[2], seq, window,
                math.log2(math.e) / math.sqrt(head_dim), 1.0 / math.log(log_n_train_length) if log_n else 1.0,
                BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=head_dim, PAPER=paper,
                LEAKY=leaky, LOG_N=log_n, UPCAST=interpret and q.dtype == torch.bfloat16,
                PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
                # Leaky edge blocks stream four float32 angle tiles besides K and V: at
                # most two stages of them fit in an H100's shared memory with 128 × 64 blocks.
                STAGES=stages, EDGE_STAGES=min(stages, 2) if leaky else stages, STORE_LSE=lse is not None,
                num_warps=num_warps, num_stages=stages,
            )
        except OutOfResources:
            if config or stages == 1:
                raise
            stages -= 1  # raised before launch: nothing was written yet
            continue
        _FITTED_STAGES[variant] = stages
        return out


# --- autograd and torch.compile: one custom op, its fake and its backward ---------------


@torch.library.custom_op("ropekit::rerope_attention", mutates_args=())
def _rerope_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inv_freq: torch.Tensor, window: int,
               leaky_factor: Optional[float], log_n_train_length: Optional[float], layout: str
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse): the forward also keeps each row's logsumexp (O(seq) floats), from which
    the backward (:mod:`ropekit.kernels.rerope_backward`) recomputes P block by block."""
    lse = torch.empty(q.shape[0] * q.shape[2], q.shape[1], dtype=torch.float32, device=q.device)
    out = launch_rerope(q, k, v, inv_freq, window, leaky_factor, log_n_train_length, layout, lse=lse)
    return out, lse


@_rerope_op.register_fake
def _(q, k, v, inv_freq, window, leaky_factor, log_n_train_length, layout):
    return torch.empty_like(q), q.new_empty(q.shape[0] * q.shape[2], q.shape[1], dtype=torch.float32)


def _setup_context(ctx, inputs, output):
    q, k, v, inv_freq, *options = inputs
    ctx.save_for_backward(q, k, v, inv_freq, *output)
    ctx.options = options


@torch.library.custom_op("ropekit::rerope_attention_backward", mutates_args=())
def _rerope_backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                        grad_out: torch.Tensor, inv_freq: torch.Tensor, window: int, leaky_factor: Optional[float],
                        log_n_train_length: Optional[float], layout: str
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tables = angle_tables(q.shape[1], inv_freq, window, leaky_factor, q.device)
    return launch_rerope_backward(q, k, v, out, lse, grad_out, tables, window, leaky_factor, log_n_train_length,
                                  layout)


@_rerope_backward_op.register_fake
def _(q, k, v, out, lse, grad_out, inv_freq, window, leaky_factor, log_n_train_length, layout):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _backward(ctx, grad_out, _grad_lse):
    q, k, v, inv_freq, out, lse = ctx.saved_tensors
    dq, dk, dv = torch.ops.ropekit.rerope_attention_backward(q, k, v, out, lse, grad_out.contiguous(), inv_freq,
                                                            *ctx.options)
    return dq, dk, dv, None, None, None, None, None


_rerope_op.register_autograd(_backward, setup_context=_setup_context)


def rerope_attention(q, k, v, inv_freq, window, leaky_factor=None, causal=True, log_n_train_length=None,
                     layout="half"):
    """Causal ReRoPE / Leaky ReRoPE attention in one fused Triton kernel, with its backward.

    Same arguments and result as the reference :func:`ropekit.attention.rerope_attention`,
    from unrotated q and k; memory is O(seq), never (seq, seq).

    Args:
        q: ``(batch, seq, q_heads, head_dim)`` unrotated queries, float16/bfloat16/float32
            on CUDA (or CPU under ``TRITON_INTERPRET=1``); head_dim 32, 64 or 128.
        k, v: ``(batch, seq, kv_heads, head_dim)`` unrotated keys and values, q's dtype;
            kv_heads divides q_heads (grouped-query attention: head h reads kv head
            h // (q_heads // kv_heads)).
        inv_freq: ``(head_dim // 2,)`` from :func:`ropekit.rope_frequencies` (every feature
            is rotated).
        window: w ≥ 1. Keys with i − j < w get the RoPE logit ⟨R^i q_i, R^j k_j⟩, the rest
            ReRoPE's ⟨R^w q_i, k_j⟩ (relative position clamped to w).
        leaky_factor: None for ReRoPE, or k > 1 for Leaky ReRoPE, whose logit beyond the
            window is ⟨R^{(i−w)/k+w} q_i, R^{j/k} k_j⟩ (relative position w + (i − j − w)/k).
        causal: must be True (the kernel is causal); causal=False raises
            NotImplementedError: use the reference.
        log_n_train_length: None, or the training length L: query i is multiplied by
            max(1, log_L(i + 1)) before both products (Su's log-n scaling).
        layout: ``"half"`` pairs (i, i + d/2) or ``"paper"`` pairs (2i, 2i + 1).

    Returns:
        ``(batch, seq, q_heads, head_dim)`` in q's dtype: softmax(a / √head_dim) · v with a
        the merged logits of the module docstring (Su 2023; lesson 04).

    Gradients w.r.t. q, k and v come from fused Triton kernels
    (:mod:`ropekit.kernels.rerope_backward`); k's and v's are summed over each GQA group.
    """
    _check_inputs(q, k, v, inv_freq, window, leaky_factor, causal, log_n_train_length, layout)
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))):
        leaky_factor = None if leaky_factor is None else float(leaky_factor)
        log_n = None if log_n_train_length is None else float(log_n_train_length)
        return torch.ops.ropekit.rerope_attention(q, k, v, inv_freq, int(window), leaky_factor, log_n, layout)[0]
    return launch_rerope(q, k, v, inv_freq, window, leaky_factor, log_n_train_length, layout)
