"""The Triton kernel behind :func:`ropekit.kernels.apply_rope_qk` and its launcher.

The math and the public function are in :mod:`ropekit.kernels.rope`; this module is how
it runs on the GPU: the ``@triton.jit`` kernel (one program per block of tokens, every
head of q and k), the block sizes, and a launcher that skips Triton's argument binder
once a variant is compiled.
"""

from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl

from .angles import exact_cos_sin, float32_angle, float32_cos_sin
from .common import INTERPRETED, qkv_strides, rotate_heads, token_block, vector_aligned

# --- the kernel ------------------------------------------------------------------------


# Every integer argument is left unspecialised: Triton would otherwise compile a new
# variant whenever a length, offset or stride happens to be 1 or a multiple of 16, e.g.
# for each new batch size. Alignment of the q/k strides, which 16-byte vector loads need,
# is told to the compiler instead through ALIGN (checked on the host; see the kernel).
_INT_ARGS = ["seq_len", "n_rows", "offset", "n_seqs", "stride_qb", "stride_qs", "stride_qh", "stride_qob", "stride_qos", "stride_qoh",
             "stride_kb", "stride_ks", "stride_kh", "stride_kob", "stride_kos", "stride_koh", "stride_cos_b", "stride_cos_s", "stride_pos_b", "stride_pos_s"]


@triton.jit(do_not_specialize=_INT_ARGS)
def rope_qk_kernel(
    q_ptr, k_ptr, qo_ptr, ko_ptr, cos_ptr, sin_ptr, pos_ptr, inv_freq_ptr, cu_ptr,
    seq_len, n_rows, offset, n_seqs, cos_scale, sin_scale,
    stride_qb, stride_qs, stride_qh, stride_qob, stride_qos, stride_qoh,
    stride_kb, stride_ks, stride_kh, stride_kob, stride_kos, stride_koh,
    stride_cos_b, stride_cos_s, stride_pos_b, stride_pos_s,
    Q_HEADS: tl.constexpr, K_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    HALF: tl.constexpr, HALF_PAD: tl.constexpr, PASS_PAD: tl.constexpr,
    PAPER: tl.constexpr, TABLE: tl.constexpr, EXACT: tl.constexpr, POS_MODE: tl.constexpr, VARLEN: tl.constexpr,
    COPY_PASS: tl.constexpr, ALIGN: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr,
):
    """One program: BLOCK_S consecutive tokens of one sequence, all heads of q and of k.

    The grid is 1-D: program p takes batch row p // n_blocks and tokens
    (p % n_blocks)·BLOCK_S ... + BLOCK_S − 1 of it. Packed (varlen) input is one batch
    row of seq_len = total tokens, and each token finds its sequence in cu_seqlens.
    Offsets are int64 from the start: a million tokens × heads × head_dim overflows int32.

    POS_MODE: 0 position = index in sequence + offset; 1 + a per-sequence offset read
    from pos_ptr; 2 position = pos_ptr[b, s] (position_ids). TABLE: cos/sin are read
    from row `position` of a table (NaN for a row outside it, so a bad index is loud);
    else they are computed from inv_freq in float32, exactly as rope_cos_sin does, or with
    EXACT from the int64 fixed-point turns at inv_freq_ptr (m·F_i wraps modulo 2^64, so
    positions are int64 all the way: see ropekit.kernels.angles).
    ALIGN: the token and head strides of q, k and the outputs are passed divided by
    ALIGN (16 bytes' worth of elements when they all allow it, else 1).
    """
    # The q/k strides arrive in units of ALIGN elements; multiplying by the constant tells
    # the compiler that every row starts on a vector boundary (16-byte loads and stores).
    stride_qb, stride_qs, stride_qh = stride_qb.to(tl.int64) * ALIGN, stride_qs.to(tl.int64) * ALIGN, stride_qh.to(tl.int64) * ALIGN
    stride_qob, stride_qos, stride_qoh = stride_qob.to(tl.int64) * ALIGN, stride_qos.to(tl.int64) * ALIGN, stride_qoh.to(tl.int64) * ALIGN
    stride_kb, stride_ks, stride_kh = stride_kb.to(tl.int64) * ALIGN, stride_ks.to(tl.int64) * ALIGN, stride_kh.to(tl.int64) * ALIGN
    stride_kob, stride_kos, stride_koh = stride_kob.to(tl.int64) * ALIGN, stride_kos.to(tl.int64) * ALIGN, stride_koh.to(tl.int64) * ALIGN
    b, s, tok_mask = token_block(seq_len, BLOCK_S)

    # Each token's position m (and, for packed input, whether it lies in any sequence).
    if VARLEN:
        # Binary search: the largest j with cu_seqlens[j] <= s is the token's sequence.
        seq = tl.zeros([BLOCK_S], dtype=tl.int64)
        step = 1
        while 2 * step < n_seqs:
            step = 2 * step
        while step > 0:
            cand = seq + step
            start = tl.load(cu_ptr + cand, mask=cand < n_seqs, other=0)
            seq = tl.where((cand < n_seqs) & (start <= s), cand, seq)
            step = step // 2
        in_seq = (s >= tl.load(cu_ptr)) & (s < tl.load(cu_ptr + n_seqs))
        m = s - tl.load(cu_ptr + seq)
    else:
        seq = b
        m = s
    if POS_MODE == 1:
        m = m + tl.load(pos_ptr + seq * stride_pos_b)
    if POS_MODE == 2:
        m = tl.load(pos_ptr + b * stride_pos_b + s * stride_pos_s, mask=tok_mask, other=0).to(tl.int64)
    m = m + offset

    # cos/sin of the BLOCK_S tokens: (BLOCK_S, HALF_PAD), reused by every head below.
    f = tl.arange(0, HALF_PAD)
    if TABLE:
        valid = tok_mask & (m >= 0) & (m < n_rows)
        row = (b * stride_cos_b + m * stride_cos_s)[:, None] + f[None, :]
        mask = valid[:, None] & (f < HALF)[None, :]
        cos = tl.load(cos_ptr + row, mask=mask, other=float("nan")).to(tl.float32)
        sin = tl.load(sin_ptr + row, mask=mask, other=float("nan")).to(tl.float32)
    elif EXACT:
        cos, sin = exact_cos_sin(m, tl.load(inv_freq_ptr + f, mask=f < HALF, other=0))
    else:
        inv_freq = tl.load(inv_freq_ptr + f, mask=f < HALF, other=0.0).to(tl.float32)
        cos, sin = float32_cos_sin(float32_angle(m.to(tl.float32)[:, None], inv_freq[None, :]))
    if VARLEN:
        # Padding tokens after the last sequence pass through unchanged.
        cos = tl.where(in_seq[:, None], cos, 1.0)
        sin = tl.where(in_seq[:, None], sin, 0.0)
    cos = (cos * cos_scale)[:, None, :]
    sin = (sin * sin_scale)[:, None, :]

    rotate_heads(q_ptr, qo_ptr, b * stride_qb + s * stride_qs, b * stride_qob + s * stride_qos, stride_qh, stride_qoh, tok_mask, cos, sin,
                 Q_HEADS, BLOCK_S, BLOCK_HQ, HALF, HALF_PAD, HEAD_DIM, PASS_PAD, PAPER, COPY_PASS)
    rotate_heads(k_ptr, ko_ptr, b * stride_kb + s * stride_ks, b * stride_kob + s * stride_kos, stride_kh, stride_koh, tok_mask, cos, sin,
                 K_HEADS, BLOCK_S, BLOCK_HK, HALF, HALF_PAD, HEAD_DIM, PASS_PAD, PAPER, COPY_PASS)


# --- the launcher ----------------------------------------------------------------------

BLOCK_SIZE_CACHE: dict = {}
COMPILED_LAUNCHERS: dict = {}


def pick_block_sizes(q_heads, k_heads, head_dim, rotary_dim, itemsize, paper, angles, heads_outer):
    """Block sizes and warps for one (heads, head_dim, rotary_dim, dtype, layout, angles,
    memory order) family; angles: "table", "float32" or "exact" (where cos/sin come from);
    heads_outer: the (batch, heads, seq, head_dim) memory of HF.

    Never from batch or sequence length: a new batch size must reuse the compiled kernel.
    Tiles of 4096 elements at 4 warps (32 per thread, 16-byte vectors, no spills). A
    program moves about 16 KB of q and k: one token × all heads of a 32-head model, a
    block of tokens of a smaller one; when heads are the outer dimension in memory, at
    least 4 tokens, so each head is read in runs of 1 KB or more. With these sizes the
    committed H100 run (benchmarks/results/h100/; bf16, 32 + 8 heads, head_dim 128,
    (batch, seq, heads, head_dim) memory) reaches 0.97× (half) and 0.98× (paper) the
    speed of q.clone(); k.clone() at B4 S8192 and S16384. HF's (batch, heads, seq,
    head_dim) memory is slower (0.92-0.96× in tuning runs of benchmarks/gpu_rope_tune.py,
    not committed). More warps on the same tile spread it thinner: each thread holds fewer
    heads of a token and recomputes cos/sin more often.

    Angles computed in the kernel, half layout: see :func:`_computed_angle_block_sizes`.
    In the paper layout they keep the table's sizes (1.00× of a copy for float32 and
    exact angles in the H200 sweep of benchmarks/results/h200-block-tune/).
    """
    row = 2 * triton.next_power_of_2(rotary_dim // 2)
    if not paper and (angles == "float32" or (angles == "exact" and not heads_outer)):
        return _computed_angle_block_sizes(q_heads, k_heads, row, heads_outer)
    bytes_per_token = (q_heads + k_heads) * head_dim * itemsize
    block_s = min(64, _prev_power_of_2(max(1, 16384 // bytes_per_token)))
    if heads_outer:
        block_s = max(block_s, 4)
    block_h = max(1, 4096 // (row * block_s))
    block_hq = min(triton.next_power_of_2(q_heads), block_h)
    block_hk = min(triton.next_power_of_2(k_heads), block_h)
    return block_s, block_hq, block_hk, 4


def _computed_angle_block_sizes(q_heads, k_heads, row, heads_outer):
    """Block sizes for cos/sin computed in the kernel, half layout (see pick_block_sizes):
    head blocks of at most 16 heads and 4096-element tiles, so a 32 + 8 head model with
    head_dim 128 takes 2 tokens × 16 q heads (and 2 × 8 k heads) per step, at 4 warps.

    Why not the table's sizes (one token, all 32 q heads). cos/sin live in registers laid
    out like the tile that uses them, and each thread computes the entries of the columns
    it holds: with one token per program, every (token, pair) is computed by all the
    threads that hold other heads of that token, and the position of a program's single
    token (read from memory with position_ids or M-RoPE's three axes) is one more load the
    whole program waits for. Two tokens per program halve both (our reading; the sweep is
    the evidence). The H200 sweep
    (benchmarks/results/h200-block-tune/, bf16, B4 S8192, forward, fraction of copy speed)
    measured 2 × 16 × 8 at 0.99-1.00× for float32 and exact angles in this kernel and
    0.97-1.00× in the M-RoPE kernel (Qwen2-VL and Qwen3-VL shapes), against 0.89-0.99× with
    the table's sizes (0.94× for exact M-RoPE at the Qwen3-VL shape) and
    0.93-0.95× with the 4-head blocks used before for float32 angles. k blocks hold at
    least 8 heads, masked beyond the model's: with Qwen2-VL's 4 kv heads, 2 × 16 × 8
    measured 0.996× against 0.987× for 2 × 16 × 4 (exact angles). We did not time every
    head count.

    HF's (batch, heads, seq, head_dim) memory (heads_outer) was not in that sweep and keeps
    the earlier choices: 4-head blocks of 8+ tokens for float32 angles, the table's sizes
    for exact ones (the bhsd rows of benchmarks/results/h200-angles-before/).
    """
    if heads_outer:  # float32 angles only (exact ones take the table's sizes there)
        block_h = min(4, triton.next_power_of_2(min(q_heads, k_heads)))
        return min(64, max(1, 4096 // (row * block_h))), block_h, block_h, 4
    block_hq = min(16, triton.next_power_of_2(q_heads))
    block_hk = min(block_hq, max(8, triton.next_power_of_2(k_heads)))
    block_s = min(64, max(1, 4096 // (row * block_hq)))
    return block_s, block_hq, block_hk, 4


def _prev_power_of_2(n):
    return 1 << (n.bit_length() - 1)


class RopeLaunch(NamedTuple):
    """What one launch rotates by, checked and normalised by :func:`check_arguments`. The field
    order is the custom ops' argument order (after q and k)."""

    # angles: a table (cos, sin), or inv_freq for angles computed in the kernel (float
    # frequencies; int64 fixed-point turns for exact angles)
    cos: Optional[torch.Tensor]
    sin: Optional[torch.Tensor]
    # positions: a tensor (offsets or position_ids) or None, plus an int offset
    positions: Optional[torch.Tensor]
    inv_freq: Optional[torch.Tensor]
    cu_seqlens: Optional[torch.Tensor]
    offset: int
    attention_factor: float
    # features
    layout: str
    rotary_dim: int
    # direction: the backward rotates by −φ
    inverse: bool = False


def launch_kernel(q, k, q_out, k_out, launch: RopeLaunch):
    """Run the kernel: q_out, k_out = rotation of q, k (by −φ when launch.inverse).
    Arguments are already checked by :func:`check_arguments`; q_out/k_out may be q/k themselves
    (in place)."""
    cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout, rotary_dim, inverse = launch
    varlen = cu_seqlens is not None
    q_heads, k_heads, head_dim = q.shape[-2], k.shape[-2], q.shape[-1]
    if varlen:
        batch, seq_len, n_seqs = 1, q.shape[0], cu_seqlens.shape[0] - 1
    else:
        batch, seq_len, n_seqs, cu_seqlens = q.shape[0], q.shape[1], 0, q
    qs, qos, ks, kos = qkv_strides(q), qkv_strides(q_out), qkv_strides(k), qkv_strides(k_out)
    stride_qb, stride_qs, stride_qh = qs.batch, qs.seq, qs.heads
    stride_qob, stride_qos, stride_qoh = qos.batch, qos.seq, qos.heads
    stride_kb, stride_ks, stride_kh = ks.batch, ks.seq, ks.heads
    stride_kob, stride_kos, stride_koh = kos.batch, kos.seq, kos.heads
    if batch * seq_len == 0:
        return

    paper, table = layout == "paper", cos is not None
    exact = not table and inv_freq.dtype == torch.int64  # fixed-point turns: exact angles
    angles = "table" if table else "exact" if exact else "float32"
    key = (q_heads, k_heads, head_dim, rotary_dim, q.element_size(), paper, angles, stride_qh > stride_qs)
    config = BLOCK_SIZE_CACHE.get(key)
    if config is None:
        config = BLOCK_SIZE_CACHE[key] = pick_block_sizes(*key)
    block_s, block_hq, block_hk, num_warps = config

    if table:
        cos_scale, sin_scale = 1.0, -1.0 if inverse else 1.0
        n_rows, stride_cos_s = cos.shape[-2], cos.stride(-2)
        stride_cos_b = cos.stride(0) if cos.dim() == 3 and cos.shape[0] > 1 else 0
        inv_freq = q
    else:
        cos = sin = inv_freq
        cos_scale, sin_scale = attention_factor, -attention_factor if inverse else attention_factor
        n_rows = stride_cos_b = stride_cos_s = 0
    if positions is None:
        pos_mode, stride_pos_b, stride_pos_s, positions = 0, 0, 0, q
    else:
        pos_mode = positions.dim()
        stride_pos_b = positions.stride(0) if positions.shape[0] > 1 else 0
        stride_pos_s = positions.stride(1) if pos_mode == 2 else 0

    strides = (stride_qb, stride_qs, stride_qh, stride_qob, stride_qos, stride_qoh, stride_kb, stride_ks, stride_kh, stride_kob, stride_kos, stride_koh)
    align, strides = vector_aligned(strides, q.element_size())
    half = rotary_dim // 2
    constexprs = (q_heads, k_heads, head_dim, half, triton.next_power_of_2(half),
                  triton.next_power_of_2(max(1, head_dim - rotary_dim)), paper, table, exact, pos_mode, varlen,
                  rotary_dim < head_dim and q_out is not q, align, block_s, block_hq, block_hk)
    ints = (seq_len, n_rows, offset, n_seqs, *strides, stride_cos_b, stride_cos_s, stride_pos_b, stride_pos_s)
    pointers = (q, k, q_out, k_out, cos, sin, positions, inv_freq, cu_seqlens)
    args = (*pointers, seq_len, n_rows, offset, n_seqs, cos_scale, sin_scale, *strides, stride_cos_b, stride_cos_s, stride_pos_b,
            stride_pos_s, *constexprs)
    grid = (batch * triton.cdiv(seq_len, block_s), 1, 1)

    # Fast path. Triton's own launcher spends tens of microseconds per call binding and
    # specialising ~50 arguments. With every integer unspecialised, a compiled kernel
    # depends only on the constexprs, the pointers' dtypes and 16-byte alignment, and the
    # integers' width (32 or 64 bit); when all pointers are aligned and all integers fit
    # in 32 bits, that is fully described by `fast_key`, and the kernel compiled for it is
    # launched directly. Anything else takes Triton's normal (always correct) path.
    fast = (not INTERPRETED and all(t.data_ptr() % 16 == 0 for t in pointers)
            and -2**31 <= min(ints) and max(ints) < 2**31)
    if fast:
        fast_key = (constexprs, num_warps, q.device.index, q.dtype, cos.dtype, sin.dtype, positions.dtype,
                    inv_freq.dtype, cu_seqlens.dtype)
        compiled = COMPILED_LAUNCHERS.get(fast_key)
        if compiled is not None:
            compiled[grid](*args)
            return
    compiled = rope_qk_kernel[grid](*args, num_warps=num_warps)
    if fast:
        COMPILED_LAUNCHERS[fast_key] = compiled
