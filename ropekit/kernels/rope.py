"""RoPE for queries and keys in one Triton launch, forward and backward.

The math (RoFormer eq. 34, lesson 02). Each feature pair (a, b) of a query or key at
position m is turned by the angle φ = m·θ_i of its pair i:

    a' = a·cos φ − b·sin φ
    b' = b·cos φ + a·sin φ

``layout="half"`` pairs feature i with feature i + r/2 (GPT-NeoX, Hugging Face LLaMA);
``layout="paper"`` pairs 2i with 2i+1 (RoFormer, GPT-J, Meta LLaMA). Features past the
rotary dimension r pass through unchanged (partial rotary). With an attention factor s
(YaRN) cos and sin are both multiplied by s.

Backward. The map is linear, y = s·R(φ)·x with R a rotation, so the gradient is the
transposed map, and a rotation's transpose is the rotation by −φ:

    da = dy_a·cos φ + dy_b·sin φ
    db = dy_b·cos φ − dy_a·sin φ

which is the forward kernel run on the incoming gradient with sin negated. Same kernel,
same speed, same code path to test.

Why one kernel for q and k. RoPE does two multiplies and an add per element: it is
limited by memory, and the best it can do is read q and k once and write them once,
as fast as a copy. One program takes a block of tokens and every head of both q and k,
so the cos/sin of those tokens are loaded (or computed) once and reused by all heads.

Plain-torch specification: :func:`ropekit.apply_rope` (and :func:`ropekit.rope_cos_sin`
for the angles). The tests compare the two.
"""

from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from ..reference import LAYOUTS

# --- the kernel ------------------------------------------------------------------------


@triton.jit
def _rotate_heads(
    x_ptr, o_ptr, x_tok, o_tok, x_sh, o_sh, tok_mask, cos, sin,
    HEADS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr,
    HALF: tl.constexpr, HALF_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, PASS_PAD: tl.constexpr,
    PAPER: tl.constexpr, COPY_PASS: tl.constexpr,
):
    """Rotate every head of BLOCK_S tokens of one tensor (q or k), BLOCK_H heads at a time.

    x_tok / o_tok: (BLOCK_S,) int64 offsets of each token's first head in x and out.
    cos, sin: (BLOCK_S, 1, HALF_PAD) float32, broadcast over the heads.
    """
    for h0 in tl.static_range(0, HEADS, BLOCK_H):
        h = h0 + tl.arange(0, BLOCK_H).to(tl.int64)
        x_row = (x_tok[:, None] + h[None, :] * x_sh)[:, :, None]  # (BLOCK_S, BLOCK_H, 1)
        o_row = (o_tok[:, None] + h[None, :] * o_sh)[:, :, None]
        row_mask = (tok_mask[:, None] & (h < HEADS)[None, :])[:, :, None]
        if PAPER:
            # One contiguous load of the rotary features; the pairs (2i, 2i+1) are split
            # apart in registers (reshape to (..., r/2, 2), then split the last axis),
            # so memory sees only full-width loads, never stride-2 ones.
            f = tl.arange(0, 2 * HALF_PAD)
            mask = row_mask & (f < 2 * HALF)[None, None, :]
            x = tl.load(x_ptr + x_row + f[None, None, :], mask=mask, other=0.0).to(tl.float32)
            a, b = tl.split(tl.reshape(x, (BLOCK_S, BLOCK_H, HALF_PAD, 2)))
            y = tl.join(a * cos - b * sin, b * cos + a * sin)
            y = tl.reshape(y, (BLOCK_S, BLOCK_H, 2 * HALF_PAD))
            tl.store(o_ptr + o_row + f[None, None, :], y.to(o_ptr.dtype.element_ty), mask=mask)
        else:
            # The two halves are two contiguous runs of r/2 features each.
            f = tl.arange(0, HALF_PAD)[None, None, :]
            mask = row_mask & (f < HALF)
            a = tl.load(x_ptr + x_row + f, mask=mask, other=0.0).to(tl.float32)
            b = tl.load(x_ptr + x_row + HALF + f, mask=mask, other=0.0).to(tl.float32)
            tl.store(o_ptr + o_row + f, (a * cos - b * sin).to(o_ptr.dtype.element_ty), mask=mask)
            tl.store(o_ptr + o_row + HALF + f, (b * cos + a * sin).to(o_ptr.dtype.element_ty), mask=mask)
        if COPY_PASS:
            # Partial rotary, out of place: features r .. head_dim-1 are copied through.
            f = 2 * HALF + tl.arange(0, PASS_PAD)[None, None, :]
            mask = row_mask & (f < HEAD_DIM)
            tl.store(o_ptr + o_row + f, tl.load(x_ptr + x_row + f, mask=mask), mask=mask)


# Every integer argument is left unspecialised: Triton would otherwise compile a new
# variant whenever a length, offset or stride happens to be 1 or a multiple of 16, e.g.
# for each new batch size. Alignment of the q/k strides, which 16-byte vector loads need,
# is told to the compiler instead through ALIGN (checked on the host; see the kernel).
_INT_ARGS = ["seq_len", "n_rows", "offset", "n_seqs", "q_sb", "q_ss", "q_sh", "qo_sb", "qo_ss", "qo_sh",
             "k_sb", "k_ss", "k_sh", "ko_sb", "ko_ss", "ko_sh", "cos_sb", "cos_ss", "pos_sb", "pos_ss"]


@triton.jit(do_not_specialize=_INT_ARGS)
def _rope_qk_kernel(
    q_ptr, k_ptr, qo_ptr, ko_ptr, cos_ptr, sin_ptr, pos_ptr, inv_freq_ptr, cu_ptr,
    seq_len, n_rows, offset, n_seqs, cos_scale, sin_scale,
    q_sb, q_ss, q_sh, qo_sb, qo_ss, qo_sh,
    k_sb, k_ss, k_sh, ko_sb, ko_ss, ko_sh,
    cos_sb, cos_ss, pos_sb, pos_ss,
    Q_HEADS: tl.constexpr, K_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    HALF: tl.constexpr, HALF_PAD: tl.constexpr, PASS_PAD: tl.constexpr,
    PAPER: tl.constexpr, TABLE: tl.constexpr, POS_MODE: tl.constexpr, VARLEN: tl.constexpr,
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
    else they are computed from inv_freq in float32, exactly as rope_cos_sin does.
    ALIGN: the token and head strides of q, k and the outputs are passed divided by
    ALIGN (16 bytes' worth of elements when they all allow it, else 1).
    """
    # The q/k strides arrive in units of ALIGN elements; multiplying by the constant tells
    # the compiler that every row starts on a vector boundary (16-byte loads and stores).
    q_sb, q_ss, q_sh = q_sb.to(tl.int64) * ALIGN, q_ss.to(tl.int64) * ALIGN, q_sh.to(tl.int64) * ALIGN
    qo_sb, qo_ss, qo_sh = qo_sb.to(tl.int64) * ALIGN, qo_ss.to(tl.int64) * ALIGN, qo_sh.to(tl.int64) * ALIGN
    k_sb, k_ss, k_sh = k_sb.to(tl.int64) * ALIGN, k_ss.to(tl.int64) * ALIGN, k_sh.to(tl.int64) * ALIGN
    ko_sb, ko_ss, ko_sh = ko_sb.to(tl.int64) * ALIGN, ko_ss.to(tl.int64) * ALIGN, ko_sh.to(tl.int64) * ALIGN

    n_blocks = tl.cdiv(seq_len, BLOCK_S)
    pid = tl.program_id(0).to(tl.int64)
    b = pid // n_blocks
    s = (pid % n_blocks) * BLOCK_S + tl.arange(0, BLOCK_S)
    tok_mask = s < seq_len

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
        m = m + tl.load(pos_ptr + seq * pos_sb)
    if POS_MODE == 2:
        m = tl.load(pos_ptr + b * pos_sb + s * pos_ss, mask=tok_mask, other=0).to(tl.int64)
    m = m + offset

    # cos/sin of the BLOCK_S tokens: (BLOCK_S, HALF_PAD), reused by every head below.
    f = tl.arange(0, HALF_PAD)
    if TABLE:
        valid = tok_mask & (m >= 0) & (m < n_rows)
        row = (b * cos_sb + m * cos_ss)[:, None] + f[None, :]
        mask = valid[:, None] & (f < HALF)[None, :]
        cos = tl.load(cos_ptr + row, mask=mask, other=float("nan")).to(tl.float32)
        sin = tl.load(sin_ptr + row, mask=mask, other=float("nan")).to(tl.float32)
    else:
        inv_freq = tl.load(inv_freq_ptr + f, mask=f < HALF, other=0.0).to(tl.float32)
        angle = m.to(tl.float32)[:, None] * inv_freq[None, :]
        cos = tl.cos(angle)
        sin = tl.sin(angle)
    if VARLEN:
        # Padding tokens after the last sequence pass through unchanged.
        cos = tl.where(in_seq[:, None], cos, 1.0)
        sin = tl.where(in_seq[:, None], sin, 0.0)
    cos = (cos * cos_scale)[:, None, :]
    sin = (sin * sin_scale)[:, None, :]

    _rotate_heads(q_ptr, qo_ptr, b * q_sb + s * q_ss, b * qo_sb + s * qo_ss, q_sh, qo_sh, tok_mask, cos, sin,
                  Q_HEADS, BLOCK_S, BLOCK_HQ, HALF, HALF_PAD, HEAD_DIM, PASS_PAD, PAPER, COPY_PASS)
    _rotate_heads(k_ptr, ko_ptr, b * k_sb + s * k_ss, b * ko_sb + s * ko_ss, k_sh, ko_sh, tok_mask, cos, sin,
                  K_HEADS, BLOCK_S, BLOCK_HK, HALF, HALF_PAD, HEAD_DIM, PASS_PAD, PAPER, COPY_PASS)


# --- the launcher ----------------------------------------------------------------------

# Triton's interpreter (TRITON_INTERPRET=1 before triton is imported) runs kernels on CPU
# tensors with numpy; the compiled path needs a GPU.
_INTERPRETED = type(_rope_qk_kernel).__name__ == "InterpretedFunction"

_CONFIGS: dict = {}
_COMPILED: dict = {}


def _pick_config(q_heads, k_heads, head_dim, rotary_dim, itemsize, paper, table, heads_outer):
    """Block sizes and warps for one (heads, head_dim, rotary_dim, dtype, layout, mode,
    memory order) family; heads_outer: the (batch, heads, seq, head_dim) memory of HF.

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
    """
    row = 2 * triton.next_power_of_2(rotary_dim // 2)
    bytes_per_token = (q_heads + k_heads) * head_dim * itemsize
    block_s = min(64, _prev_power_of_2(max(1, 16384 // bytes_per_token)))
    if heads_outer:
        block_s = max(block_s, 4)
    block_h = max(1, 4096 // (row * block_s))
    block_hq = min(triton.next_power_of_2(q_heads), block_h)
    block_hk = min(triton.next_power_of_2(k_heads), block_h)
    return block_s, block_hq, block_hk, 4


def _prev_power_of_2(n):
    return 1 << (n.bit_length() - 1)


def _launch(q, k, q_out, k_out, cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor,
            layout, rotary_dim, inverse):
    """Run the kernel: q_out, k_out = rotation of q, k (by −φ when inverse). Arguments are
    already checked by :func:`_check`; q_out/k_out may be q/k themselves (in place)."""
    varlen = cu_seqlens is not None
    if varlen:
        batch, seq_len, q_heads = 1, q.shape[0], q.shape[1]
        k_heads, head_dim = k.shape[1], q.shape[2]
        q_sb = qo_sb = k_sb = ko_sb = 0
        (q_ss, q_sh, _), (qo_ss, qo_sh, _) = q.stride(), q_out.stride()
        (k_ss, k_sh, _), (ko_ss, ko_sh, _) = k.stride(), k_out.stride()
        n_seqs = cu_seqlens.shape[0] - 1
    else:
        batch, seq_len, q_heads, head_dim = q.shape
        k_heads, n_seqs, cu_seqlens = k.shape[2], 0, q
        (q_sb, q_ss, q_sh, _), (qo_sb, qo_ss, qo_sh, _) = q.stride(), q_out.stride()
        (k_sb, k_ss, k_sh, _), (ko_sb, ko_ss, ko_sh, _) = k.stride(), k_out.stride()
    if batch * seq_len == 0:
        return

    paper, table = layout == "paper", cos is not None
    key = (q_heads, k_heads, head_dim, rotary_dim, q.element_size(), paper, table, q_sh > q_ss)
    config = _CONFIGS.get(key)
    if config is None:
        config = _CONFIGS[key] = _pick_config(*key)
    block_s, block_hq, block_hk, num_warps = config

    if table:
        cos_scale, sin_scale = 1.0, -1.0 if inverse else 1.0
        n_rows, cos_ss = cos.shape[-2], cos.stride(-2)
        cos_sb = cos.stride(0) if cos.dim() == 3 and cos.shape[0] > 1 else 0
        inv_freq = q
    else:
        cos = sin = inv_freq
        cos_scale, sin_scale = attention_factor, -attention_factor if inverse else attention_factor
        n_rows = cos_sb = cos_ss = 0
    if positions is None:
        pos_mode, pos_sb, pos_ss, positions = 0, 0, 0, q
    else:
        pos_mode = positions.dim()
        pos_sb = positions.stride(0) if positions.shape[0] > 1 else 0
        pos_ss = positions.stride(1) if pos_mode == 2 else 0

    strides = (q_sb, q_ss, q_sh, qo_sb, qo_ss, qo_sh, k_sb, k_ss, k_sh, ko_sb, ko_ss, ko_sh)
    vector = 16 // q.element_size()
    if all(x % vector == 0 for x in strides):
        align, strides = vector, tuple(x // vector for x in strides)
    else:
        align = 1
    half = rotary_dim // 2
    constexprs = (q_heads, k_heads, head_dim, half, triton.next_power_of_2(half),
                  triton.next_power_of_2(max(1, head_dim - rotary_dim)), paper, table, pos_mode, varlen,
                  rotary_dim < head_dim and q_out is not q, align, block_s, block_hq, block_hk)
    ints = (seq_len, n_rows, offset, n_seqs, *strides, cos_sb, cos_ss, pos_sb, pos_ss)
    pointers = (q, k, q_out, k_out, cos, sin, positions, inv_freq, cu_seqlens)
    args = (*pointers, seq_len, n_rows, offset, n_seqs, cos_scale, sin_scale, *strides, cos_sb, cos_ss, pos_sb,
            pos_ss, *constexprs)
    grid = (batch * triton.cdiv(seq_len, block_s), 1, 1)

    # Fast path. Triton's own launcher spends tens of microseconds per call binding and
    # specialising ~50 arguments. With every integer unspecialised, a compiled kernel
    # depends only on the constexprs, the pointers' dtypes and 16-byte alignment, and the
    # integers' width (32 or 64 bit); when all pointers are aligned and all integers fit
    # in 32 bits, that is fully described by `fast_key`, and the kernel compiled for it is
    # launched directly. Anything else takes Triton's normal (always correct) path.
    fast = (not _INTERPRETED and all(t.data_ptr() % 16 == 0 for t in pointers)
            and -2**31 <= min(ints) and max(ints) < 2**31)
    if fast:
        fast_key = (constexprs, num_warps, q.device.index, q.dtype, cos.dtype, sin.dtype, positions.dtype,
                    inv_freq.dtype, cu_seqlens.dtype)
        compiled = _COMPILED.get(fast_key)
        if compiled is not None:
            compiled[grid](*args)
            return
    compiled = _rope_qk_kernel[grid](*args, num_warps=num_warps)
    if fast:
        _COMPILED[fast_key] = compiled


# --- the public function -----------------------------------------------------------------


def apply_rope_qk(q, k, cos=None, sin=None, layout="half", inplace=False, rotary_dim=None, *,
                  positions=None, inv_freq=None, attention_factor=1.0, cu_seqlens=None):
    """Rotate queries and keys by their positions (RoFormer eq. 34) in one Triton launch.

    Args:
        q: ``(batch, seq, q_heads, head_dim)``, or any strided view of that shape with unit
            stride along head_dim, e.g. ``q.transpose(1, 2)`` of the ``(batch, heads, seq,
            head_dim)`` tensor that Hugging Face models pass (no copy is made).
            With ``cu_seqlens``: ``(total_tokens, q_heads, head_dim)``.
        k: the same with ``kv_heads`` heads (grouped-query attention: any head count).
        cos, sin: angles read from a table, as made by :func:`ropekit.rope_cos_sin`:
            ``(n_positions, rotary_dim // 2)`` (row m is position m), or
            ``(batch or 1, seq, rotary_dim // 2)`` already gathered per token (HF style;
            then ``positions`` must be None). Any float dtype; the math is float32.
        layout: ``"half"`` pairs (i, i + r/2), ``"paper"`` pairs (2i, 2i+1).
        inplace: write the result into q and k and return them (declared to autograd).
        rotary_dim: rotate the first rotary_dim features and pass the rest through
            (partial rotary); must equal 2 · cos.shape[-1] (or 2 · len(inv_freq)).
        positions: the position m of each token, in one of three forms:
            None (m = index in the sequence), an int p (m = p + index: decoding after p
            cached tokens), an integer tensor ``(batch,)`` (``(n_seqs,)`` with
            cu_seqlens) of per-sequence offsets, or an integer ``(batch or 1, seq)``
            position_ids tensor (not with cu_seqlens). With cos/sin, m selects the table
            row (a row outside the table gives NaN, never a silent wrong answer).
        inv_freq: ``(rotary_dim // 2,)`` from :func:`ropekit.rope_frequencies`, instead of
            cos/sin: the kernel computes cos(m·θ_i) and sin(m·θ_i) itself, exactly as
            :func:`ropekit.rope_cos_sin` does (float32 angle), and reads no table at all.
        attention_factor: with inv_freq, multiplies cos and sin (YaRN, LongRoPE).
        cu_seqlens: int32 ``(n_seqs + 1,)`` offsets of packed sequences (flash-attention's
            varlen format); each sequence's positions restart at 0 (plus its offset).
            Tokens after ``cu_seqlens[-1]`` pass through unchanged.

    Returns:
        ``(q_out, k_out)`` with the shapes, dtype and strides of q and k (new tensors, or
        q and k themselves when ``inplace``). Differentiable: the backward pass is the
        same kernel rotating the gradient by −φ, and dq/dk have q's/k's strides.

    The kernels need CUDA tensors; CPU tensors work under ``TRITON_INTERPRET=1``
    (slowly). Otherwise use :func:`ropekit.apply_rope`, the reference this kernel is
    tested against. Lesson 02 derives the rotation; lesson 05 shows the kernel.
    """
    q, k, *spec = _check(q, k, cos, sin, layout, inplace, rotary_dim, positions, inv_freq, attention_factor,
                         cu_seqlens)
    if torch.compiler.is_compiling():
        return _compiled_call(q, k, spec, inplace)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        return _RopeQK.apply(q, k, inplace, *spec, False)
    if inplace:
        _launch(q, k, q, k, *spec, False)
        # Bump the version counters, so autograd still catches a later backward that
        # would need the old values of q or k.
        torch.autograd.graph.increment_version(q)
        torch.autograd.graph.increment_version(k)
        return q, k
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    _launch(q, k, q_out, k_out, *spec, False)
    return q_out, k_out


# --- autograd ----------------------------------------------------------------------------
# Eager mode calls the launcher directly (inference) or through a torch.autograd.Function
# (training): a few microseconds on the host. torch.compile sees custom ops instead
# (further down), which Dynamo can put into a graph without breaking it.


class _RopeQK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, inplace, *spec):
        q_out, k_out = (q, k) if inplace else (torch.empty_like(q), torch.empty_like(k))
        _launch(q, k, q_out, k_out, *spec)
        if inplace:
            ctx.mark_dirty(q, k)
        ctx.spec = spec
        ctx.strides = (_dense_stride(q_out), _dense_stride(k_out)) if inplace else (q_out.stride(), k_out.stride())
        return q_out, k_out

    @staticmethod
    def backward(ctx, dq_out, dk_out):
        # The gradient goes to a new tensor with the input's strides, never over the
        # incoming one: autograd can hand one gradient tensor to several nodes (AddBackward
        # does) and passes a user's grad_outputs through as they are, so overwriting it is
        # not safe in general. The bytes moved are the same either way.
        spec = (*ctx.spec[:-1], not ctx.spec[-1])  # the rotation by −φ
        if torch.is_grad_enabled():  # create_graph=True: keep the backward differentiable
            dq, dk = _RopeQK.apply(dq_out, dk_out, False, *spec)
        else:
            dq_out, dk_out = _unit_feature_stride(dq_out), _unit_feature_stride(dk_out)
            dq, dk = _new_like(dq_out, ctx.strides[0]), _new_like(dk_out, ctx.strides[1])
            _launch(dq_out, dk_out, dq, dk, *spec)
        return dq, dk, None, *(None for _ in spec)


def _new_like(t, stride):
    """An empty tensor like t, with the given strides (those of the input it is the
    gradient of), or t's own layout when stride is None."""
    if stride is None:
        return torch.empty_like(t)
    return torch.empty_strided(t.shape, stride, dtype=t.dtype, device=t.device)


def _unit_feature_stride(t):
    # The kernel reads features contiguously. A gradient can arrive expanded (the
    # backward of .sum() is a stride-0 tensor of ones): materialise only then.
    return t if t.stride(-1) == 1 else t.contiguous()


def _dense_stride(t):
    """t.stride() if t covers its memory without gaps or overlaps, else None."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda pair: pair[1]):
        if size != 1 and stride != expected:
            return None
        expected *= size
    return t.stride()


# --- custom ops for torch.compile ------------------------------------------------------------


@torch.library.custom_op("ropekit::rope_qk", mutates_args=())
def _rope_qk_op(
    q: torch.Tensor, k: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
    positions: Optional[torch.Tensor], inv_freq: Optional[torch.Tensor], cu_seqlens: Optional[torch.Tensor],
    offset: int, attention_factor: float, layout: str, rotary_dim: int, inverse: bool,
    q_stride: Optional[Sequence[int]], k_stride: Optional[Sequence[int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    q_out, k_out = _new_like(q, q_stride), _new_like(k, k_stride)
    _launch(q, k, q_out, k_out, cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout,
            rotary_dim, inverse)
    return q_out, k_out


@_rope_qk_op.register_fake
def _(q, k, cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout, rotary_dim, inverse,
      q_stride, k_stride):
    return _new_like(q, q_stride), _new_like(k, k_stride)


def _op_setup_context(ctx, inputs, output):
    ctx.spec = inputs[2:12]
    ctx.strides = (output[0].stride(), output[1].stride())


def _op_backward(ctx, dq_out, dk_out):
    *spec, inverse = ctx.spec
    dq, dk = torch.ops.ropekit.rope_qk(_unit_feature_stride(dq_out), _unit_feature_stride(dk_out), *spec,
                                       not inverse, *ctx.strides)
    return (dq, dk) + (None,) * 12


_rope_qk_op.register_autograd(_op_backward, setup_context=_op_setup_context)


@torch.library.custom_op("ropekit::rope_qk_", mutates_args=("q", "k"))
def _rope_qk_inplace_op(
    q: torch.Tensor, k: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
    positions: Optional[torch.Tensor], inv_freq: Optional[torch.Tensor], cu_seqlens: Optional[torch.Tensor],
    offset: int, attention_factor: float, layout: str, rotary_dim: int,
) -> None:
    _launch(q, k, q, k, cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout, rotary_dim,
            False)


@_rope_qk_inplace_op.register_fake
def _(q, k, cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout, rotary_dim):
    return None


def _compiled_call(q, k, spec, inplace):
    """What torch.compile traces: one custom op, so the graph has no break."""
    if not inplace:
        return torch.ops.ropekit.rope_qk(q, k, *spec, False, None, None)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        # A mutating custom op cannot carry an autograd formula: rotate out of place and
        # copy back, which autograd and the compiler both understand.
        q_out, k_out = torch.ops.ropekit.rope_qk(q, k, *spec, False, None, None)
        return q.copy_(q_out), k.copy_(k_out)
    torch.ops.ropekit.rope_qk_(q, k, *spec)
    return q, k


# --- argument checks ---------------------------------------------------------------------
# Cheap on purpose: only Python attributes of the tensors (shape, stride, dtype, device),
# no .item(), no synchronisation, no allocation (except a copy for inputs whose features
# are not contiguous). Out-of-range positions are caught in the kernel (NaN output).

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_INT_DTYPES = (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8)


def _check(q, k, cos, sin, layout, inplace, rotary_dim, positions, inv_freq, attention_factor, cu_seqlens):
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError(f"q and k must be tensors, got {type(q).__name__} and {type(k).__name__}")
    dtype = q.dtype
    if dtype not in _DTYPES or k.dtype != dtype:
        if dtype not in _DTYPES:
            raise TypeError(
                f"q must be float16, bfloat16 or float32 (the kernel computes in float32), got {dtype}; "
                "for float64 use the reference ropekit.apply_rope"
            )
        raise TypeError(f"q and k must have the same dtype, got {dtype} and {k.dtype}")
    device = q.device
    if not q.is_cuda and not (_INTERPRETED and q.is_cpu):
        raise ValueError(
            f"ropekit.kernels.apply_rope_qk runs Triton kernels on CUDA tensors, got q on {device}. "
            "Use the reference ropekit.apply_rope on this device, or set TRITON_INTERPRET=1 before "
            "triton is imported to run the kernel in Triton's (slow) interpreter on the CPU."
        )
    if k.device != device:
        raise ValueError(f"q and k must be on the same device, got {device} and {k.device}")
    q_shape, k_shape = q.shape, k.shape
    varlen = cu_seqlens is not None
    if varlen:
        if len(q_shape) != 3 or len(k_shape) != 3 or k_shape[0] != q_shape[0] or k_shape[2] != q_shape[2]:
            raise ValueError(
                "with cu_seqlens, q must be (total_tokens, q_heads, head_dim) and k (total_tokens, kv_heads, "
                f"head_dim), got {tuple(q_shape)} and {tuple(k_shape)}"
            )
        seq = q_shape[0]
    elif (len(q_shape) != 4 or len(k_shape) != 4 or k_shape[0] != q_shape[0] or k_shape[1] != q_shape[1]
          or k_shape[3] != q_shape[3]):
        raise ValueError(
            "q must be (batch, seq, q_heads, head_dim) and k (batch, seq, kv_heads, head_dim), "
            f"got {tuple(q_shape)} and {tuple(k_shape)} (for (batch, heads, seq, head_dim) tensors pass "
            "q.transpose(1, 2); for packed sequences pass cu_seqlens)"
        )
    else:
        seq = q_shape[1]
    head_dim = q_shape[-1]
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'paper' or 'half', got {layout!r}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")

    if cos is not None or sin is not None:
        half = _check_table(cos, sin, q, seq, varlen, positions, inv_freq, attention_factor)
        if cos.stride(-1) != 1 or sin.stride() != cos.stride():
            cos, sin = cos.contiguous(), sin.contiguous()
    else:
        if not isinstance(inv_freq, torch.Tensor):
            raise ValueError("pass either cos and sin (a table) or inv_freq (angles computed in the kernel)")
        if inv_freq.dim() != 1 or not inv_freq.is_floating_point() or inv_freq.device != device:
            raise ValueError(
                f"inv_freq must be a floating-point (rotary_dim // 2,) tensor on {device}, got "
                f"{tuple(inv_freq.shape)} {inv_freq.dtype} on {inv_freq.device}"
            )
        if inv_freq.requires_grad and torch.is_grad_enabled():
            raise ValueError("apply_rope_qk gives no gradient for inv_freq: pass inv_freq.detach()")
        if isinstance(attention_factor, bool) or not isinstance(attention_factor, (int, float)):
            raise TypeError(f"attention_factor must be a float, got {attention_factor!r}")
        half = inv_freq.shape[0]
        inv_freq = inv_freq if inv_freq.stride(0) == 1 else inv_freq.contiguous()

    if rotary_dim is None:
        rotary_dim = 2 * half
    elif isinstance(rotary_dim, bool) or not isinstance(rotary_dim, int) or rotary_dim != 2 * half:
        raise ValueError(
            f"rotary_dim must be 2 * {'cos.shape[-1]' if inv_freq is None else 'len(inv_freq)'} = {2 * half}, "
            f"got {rotary_dim!r}"
        )
    if not 0 < rotary_dim <= head_dim:
        raise ValueError(f"rotary_dim ({rotary_dim}) must be between 2 and head_dim ({head_dim})")

    offset = 0
    if isinstance(positions, torch.Tensor):
        _check_positions(positions, q, seq, varlen)
    elif isinstance(positions, int) and not isinstance(positions, bool):
        offset, positions = positions, None
    elif positions is not None:
        raise TypeError(f"positions must be None, an int or an integer tensor, got {type(positions).__name__}")

    if varlen:
        if (not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dim() != 1 or cu_seqlens.shape[0] < 2
                or cu_seqlens.dtype not in (torch.int32, torch.int64) or cu_seqlens.device != device):
            raise ValueError(
                f"cu_seqlens must be an int32 (n_seqs + 1,) tensor on {device}, got {_describe(cu_seqlens)}"
            )
        cu_seqlens = cu_seqlens if cu_seqlens.stride(0) == 1 else cu_seqlens.contiguous()

    if inplace:
        if q is k:
            raise ValueError("inplace=True needs q and k to be different tensors")
        for name, t in (("q", q), ("k", k)):
            if t.stride(-1) != 1 or 0 in t.stride():
                raise ValueError(
                    f"inplace=True needs {name} with unit stride along head_dim and no broadcast (stride-0) "
                    f"dimension, got strides {t.stride()}; use inplace=False"
                )
    else:
        q = q if q.stride(-1) == 1 else q.contiguous()
        k = k if k.stride(-1) == 1 else k.contiguous()
    return q, k, cos, sin, positions, inv_freq, cu_seqlens, offset, float(attention_factor), layout, rotary_dim


def _check_table(cos, sin, q, seq, varlen, positions, inv_freq, attention_factor):
    """Check a cos/sin table; return rotary_dim // 2."""
    for name, t in (("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.device != q.device:
            raise ValueError(f"{name} must be a floating-point tensor on {q.device}, got {_describe(t)}")
        if t.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"apply_rope_qk gives no gradient for {name}: pass {name}.detach()")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if inv_freq is not None:
        raise ValueError("pass either cos and sin or inv_freq, not both")
    if attention_factor != 1.0:
        raise ValueError("attention_factor applies to inv_freq; a cos/sin table already includes it")
    if cos.dim() == 3 and not varlen:
        batch = q.shape[0]
        if cos.shape[0] not in (1, batch) or cos.shape[1] != seq:
            raise ValueError(
                f"cos/sin of shape (batch, seq, rotary_dim // 2) must be ({batch} or 1, {seq}, ...), "
                f"got {tuple(cos.shape)}"
            )
        if positions is not None:
            raise ValueError("cos/sin of shape (batch, seq, rotary_dim // 2) are already per token: positions "
                             "must be None (or pass the (n_positions, rotary_dim // 2) table)")
    elif cos.dim() != 2:
        raise ValueError(
            f"cos/sin must be (n_positions, rotary_dim // 2){'' if varlen else ' or (batch, seq, rotary_dim // 2)'}, "
            f"got {tuple(cos.shape)}"
        )
    elif not varlen and (positions is None or isinstance(positions, int)):
        first = positions or 0
        if first < 0 or first + seq > cos.shape[0]:
            raise ValueError(
                f"positions {first} .. {first + seq - 1} need cos/sin rows that the table of "
                f"{cos.shape[0]} rows does not have"
            )
    if cos.shape[-1] == q.shape[-1]:
        raise ValueError(
            f"cos/sin have head_dim = {cos.shape[-1]} columns; they must have rotary_dim // 2, one per pair. "
            "Hugging Face's tables repeat the two halves: pass cos[..., :head_dim // 2]"
        )
    return cos.shape[-1]


def _check_positions(positions, q, seq, varlen):
    if positions.dtype not in _INT_DTYPES or positions.device != q.device:
        raise ValueError(f"positions must be an integer tensor on {q.device}, got {_describe(positions)}")
    if varlen:
        if positions.dim() != 1:
            raise ValueError(
                f"with cu_seqlens, positions must be an int or (n_seqs,) offsets, got shape {tuple(positions.shape)}"
            )
        return
    batch = q.shape[0]
    if positions.dim() == 1 and positions.shape[0] in (1, batch):
        return
    if positions.dim() == 2 and positions.shape[0] in (1, batch) and positions.shape[1] == seq:
        return
    raise ValueError(
        f"positions must be (batch,) offsets or (batch, seq) position_ids with batch = {batch} (or 1) and "
        f"seq = {seq}, got shape {tuple(positions.shape)}"
    )


def _describe(t):
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)} on {t.device}"
    return type(t).__name__
