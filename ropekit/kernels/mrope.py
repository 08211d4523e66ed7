"""Multimodal RoPE (M-RoPE) for queries and keys in one Triton launch, forward and backward.

The math (Qwen2-VL §2.1, lesson 08). Every token has three positions (t, h, w), and
feature pair i turns by the angle of one axis a(i):

    φ_i = p_{a(i)} · θ_i
    a' = a·cos φ_i − b·sin φ_i                       (the rotation of RoFormer eq. 34)
    b' = b·cos φ_i + a·sin φ_i

a(i) comes from the sections (n_t, n_h, n_w): contiguous (Qwen2-VL, Qwen2.5-VL: the first
n_t pairs follow t, the next n_h follow h, the rest w) or interleaved (Qwen3-VL: h when
i % 3 = 1 and i < 3·n_h, w when i % 3 = 2 and i < 3·n_w, else t). Both are a few integer
operations on the pair index, so the kernel computes a(i), picks p_{a(i)} and the angle
itself: it reads the (3, batch, seq) positions and θ, never a cos/sin table.

The angle is formed one of two ways (``angles``): one float32 product p·θ_i, as
transformers computes it, or exactly, as the int64 phase p·F_i mod 2^64 of 64-bit
fixed-point turns F_i (:mod:`ropekit.kernels.angles`, lesson 09), where the positions tile
holds each pair's own axis. Once cos and sin are in registers, every head is rotated by
:func:`ropekit.kernels.common.rotate_heads`, the loop the 1-D RoPE kernel runs too.

Backward. y = s·R(φ)·x is linear and R is a rotation, so dx = s·R(−φ)·dy:

    da = dy_a·cos φ + dy_b·sin φ
    db = dy_b·cos φ − dy_a·sin φ

the same kernel with sin negated.

Why one kernel for q and k: RoPE is bound by memory. One program takes a block of tokens
and every head of both q and k, so the angles of those tokens are computed once and used
by all heads, and q and k are each read once and written once, as a copy would.

Plain-torch specification (same arguments, same shapes): :func:`ropekit.mrope.apply_mrope_qk`.
The tests compare the two under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..checks import LAYOUTS, check_angles, check_mrope_positions, check_sections, describe, is_real
from ..exact_angles import fixed_point_turns
from .angles import cos_sin_of_phase, float32_angle, float32_cos_sin
from .common import INTERPRETED, KERNEL_DTYPES, qkv_strides, rotate_heads, token_block, vector_aligned
from .rope_triton import pick_block_sizes

# --- the kernel ------------------------------------------------------------------------------


_INT_ARGS = ["seq_len", "q_sb", "q_ss", "q_sh", "qo_sb", "qo_ss", "qo_sh", "k_sb", "k_ss", "k_sh",
             "ko_sb", "ko_ss", "ko_sh", "pos_sa", "pos_sb", "pos_ss"]


@triton.jit(do_not_specialize=_INT_ARGS)
def mrope_qk_kernel(
    q_ptr, k_ptr, qo_ptr, ko_ptr, pos_ptr, inv_freq_ptr, seq_len, cos_scale, sin_scale,
    q_sb, q_ss, q_sh, qo_sb, qo_ss, qo_sh, k_sb, k_ss, k_sh, ko_sb, ko_ss, ko_sh, pos_sa, pos_sb, pos_ss,
    Q_HEADS: tl.constexpr, K_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HALF: tl.constexpr,
    HALF_PAD: tl.constexpr, PASS_PAD: tl.constexpr, N_T: tl.constexpr, N_H: tl.constexpr, N_W: tl.constexpr,
    INTERLEAVED: tl.constexpr, PAPER: tl.constexpr, EXACT: tl.constexpr, COPY_PASS: tl.constexpr,
    ALIGN: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr,
):
    """One program: BLOCK_S consecutive tokens of one batch row, every head of q and of k.

    The grid is 1-D: program p takes batch row p // n_blocks and tokens
    (p % n_blocks)·BLOCK_S ... + BLOCK_S − 1. Offsets are int64 (large tensors overflow
    int32). The q/k strides arrive divided by ALIGN (16 bytes' worth of elements when all
    allow it, else 1), so the compiler knows every row starts on a vector boundary.
    """
    q_sb, q_ss, q_sh = q_sb.to(tl.int64) * ALIGN, q_ss.to(tl.int64) * ALIGN, q_sh.to(tl.int64) * ALIGN
    qo_sb, qo_ss, qo_sh = qo_sb.to(tl.int64) * ALIGN, qo_ss.to(tl.int64) * ALIGN, qo_sh.to(tl.int64) * ALIGN
    k_sb, k_ss, k_sh = k_sb.to(tl.int64) * ALIGN, k_ss.to(tl.int64) * ALIGN, k_sh.to(tl.int64) * ALIGN
    ko_sb, ko_ss, ko_sh = ko_sb.to(tl.int64) * ALIGN, ko_ss.to(tl.int64) * ALIGN, ko_sh.to(tl.int64) * ALIGN
    b, s, tok_mask = token_block(seq_len, BLOCK_S)

    # The three positions of each token: (BLOCK_S,) each; int64 for exact angles (the
    # phase multiply wraps modulo 2^64), float32 for float32 angles.
    pos = pos_ptr + b * pos_sb + s * pos_ss
    p_t = tl.load(pos, mask=tok_mask, other=0)
    p_h = tl.load(pos + pos_sa, mask=tok_mask, other=0)
    p_w = tl.load(pos + 2 * pos_sa, mask=tok_mask, other=0)
    if EXACT:
        p_t, p_h, p_w = p_t.to(tl.int64), p_h.to(tl.int64), p_w.to(tl.int64)
    else:
        p_t, p_h, p_w = p_t.to(tl.float32), p_h.to(tl.float32), p_w.to(tl.float32)

    # The axis of each pair i, from the sections: 0 = t, 1 = h, 2 = w.
    i = tl.arange(0, HALF_PAD)
    if INTERLEAVED:
        axis = tl.where((i % 3 == 1) & (i < 3 * N_H), 1, tl.where((i % 3 == 2) & (i < 3 * N_W), 2, 0))
    else:
        axis = (i >= N_T).to(tl.int32) + (i >= N_T + N_H).to(tl.int32)
    # m: (BLOCK_S, HALF_PAD), the position that turns pair i of each token.
    m = tl.where(axis[None, :] == 0, p_t[:, None], tl.where(axis[None, :] == 1, p_h[:, None], p_w[:, None]))

    if EXACT:
        # φ = m·F_i mod 2^64 from the int64 fixed-point turns (ropekit.kernels.angles).
        turns = tl.load(inv_freq_ptr + i, mask=i < HALF, other=0)
        cos, sin = cos_sin_of_phase(m * turns[None, :])
    else:
        # φ = p_{a(i)}·θ_i in float32, as ropekit.rope_cos_sin computes it.
        inv_freq = tl.load(inv_freq_ptr + i, mask=i < HALF, other=0.0).to(tl.float32)
        cos, sin = float32_cos_sin(float32_angle(m, inv_freq[None, :]))
    cos = (cos * cos_scale)[:, None, :]
    sin = (sin * sin_scale)[:, None, :]

    rotate_heads(q_ptr, qo_ptr, b * q_sb + s * q_ss, b * qo_sb + s * qo_ss, q_sh, qo_sh, tok_mask, cos, sin,
                 Q_HEADS, BLOCK_S, BLOCK_HQ, HALF, HALF_PAD, HEAD_DIM, PASS_PAD, PAPER, COPY_PASS)
    rotate_heads(k_ptr, ko_ptr, b * k_sb + s * k_ss, b * ko_sb + s * ko_ss, k_sh, ko_sh, tok_mask, cos, sin,
                 K_HEADS, BLOCK_S, BLOCK_HK, HALF, HALF_PAD, HEAD_DIM, PASS_PAD, PAPER, COPY_PASS)


# --- the launcher -------------------------------------------------------------------------------

# Block sizes per (heads, head_dim, dtype, layout, angle mode, memory order), as
# ropekit.kernels.apply_rope_qk picks them for the same angle mode (its docstring has the
# H200 evidence); never from batch or sequence length, so a new length reuses the kernel.
block_sizes = functools.lru_cache(maxsize=None)(pick_block_sizes)


def _launch(q, k, q_out, k_out, positions, inv_freq, sections, interleaved, layout, attention_factor, inverse):
    """q_out, k_out = M-RoPE of q, k (by −φ when inverse); arguments already checked."""
    batch, seq_len, q_heads, head_dim = q.shape
    k_heads = k.shape[2]
    if batch * seq_len == 0:
        return
    half = inv_freq.shape[0]
    rotary_dim = 2 * half
    (q_sb, q_ss, q_sh, _), (qo_sb, qo_ss, qo_sh, _) = qkv_strides(q), qkv_strides(q_out)
    (k_sb, k_ss, k_sh, _), (ko_sb, ko_ss, ko_sh, _) = qkv_strides(k), qkv_strides(k_out)
    pos_sa, pos_sb, pos_ss = positions.stride()
    if positions.shape[1] == 1:
        pos_sb = 0
    strides = (q_sb, q_ss, q_sh, qo_sb, qo_ss, qo_sh, k_sb, k_ss, k_sh, ko_sb, ko_ss, ko_sh)
    align, strides = vector_aligned(strides, q.element_size())
    exact = inv_freq.dtype == torch.int64  # fixed-point turns: exact angles
    block_s, block_hq, block_hk, num_warps = block_sizes(q_heads, k_heads, head_dim, rotary_dim, q.element_size(),
                                                          layout == "paper", "exact" if exact else "float32",
                                                          q_sh > q_ss)
    n_t, n_h, n_w = sections
    sin_scale = -attention_factor if inverse else attention_factor
    grid = (batch * triton.cdiv(seq_len, block_s),)
    mrope_qk_kernel[grid](
        q, k, q_out, k_out, positions, inv_freq, seq_len, attention_factor, sin_scale,
        *strides, pos_sa, pos_sb, pos_ss,
        q_heads, k_heads, head_dim, half, triton.next_power_of_2(half),
        triton.next_power_of_2(max(1, head_dim - rotary_dim)), n_t, n_h, n_w, interleaved, layout == "paper",
        exact, rotary_dim < head_dim and q_out is not q, align, block_s, block_hq, block_hk,
        num_warps=num_warps,
    )


# --- the public function -------------------------------------------------------------------------


def apply_mrope_qk(q, k, positions, inv_freq, sections, interleaved=False, layout="half", attention_factor=1.0,
                   inplace=False, *, angles="float32"):
    """Rotate queries and keys by M-RoPE (Qwen2-VL §2.1) in one Triton launch, angles in-kernel.

    Args:
        q: ``(batch, seq, q_heads, head_dim)``, or a strided view of that shape with unit
            stride along head_dim (e.g. ``q.transpose(1, 2)`` of a (batch, heads, seq,
            head_dim) tensor; no copy is made).
        k: ``(batch, seq, kv_heads, head_dim)`` (grouped-query attention: any head count).
        positions: integer ``(3, batch or 1, seq)``: the (t, h, w) ids of every token, from
            :func:`ropekit.mrope.mrope_position_ids`.
        inv_freq: ``(rotary_dim // 2,)`` θ_i from :func:`ropekit.rope_frequencies`;
            features past rotary_dim pass through.
        sections: ``(n_t, n_h, n_w)`` pairs per axis, summing to len(inv_freq).
        interleaved: False for contiguous sections (Qwen2-VL, Qwen2.5-VL), True for
            Qwen3-VL's t, h, w cycle.
        layout: ``"half"`` pairs (i, i + r/2) (the Qwen models), ``"paper"`` (2i, 2i+1).
        attention_factor: multiplies cos and sin.
        inplace: write into q and k and return them.
        angles: ``"float32"`` (default: φ as one float32 product p·θ_i, as transformers'
            Qwen2-VL code computes it) or ``"exact"``: the phase p·F_i mod 2^64 from one
            wrapping int64 multiply of 64-bit fixed-point turns (:mod:`ropekit.kernels.angles`),
            within 1e-6 at every position up to 2^31 for float64 inv_freq. A floating
            inv_freq is turned into ``ropekit.fixed_point_turns(inv_freq)`` on the host at
            every call (a copy and a synchronisation); pass those int64 turns instead to
            avoid it, and always under torch.compile. Lesson 09.

    Returns:
        ``(q_out, k_out)`` of q's and k's shapes and dtype. Differentiable in q and k: the
        backward is this kernel rotating the gradient by −φ.

    CUDA tensors; CPU tensors under ``TRITON_INTERPRET=1``. Under ``torch.compile`` the call
    is one custom op (``torch.ops.ropekit.mrope_qk``), so the graph does not break. The
    plain-torch twin with the same arguments is :func:`ropekit.mrope.apply_mrope_qk`. Lesson 08.
    """
    q, k, positions, inv_freq, sections, layout, attention_factor = _check(
        q, k, positions, inv_freq, sections, interleaved, layout, attention_factor, inplace, angles)
    spec = (positions, inv_freq, sections, bool(interleaved), layout, attention_factor)
    if torch.compiler.is_compiling():
        # torch.compile sees one custom op (no graph break); in place = out of place + copy.
        q_out, k_out = torch.ops.ropekit.mrope_qk(q, k, positions, inv_freq, list(sections), bool(interleaved),
                                                  layout, attention_factor, False)
        return (q.copy_(q_out), k.copy_(k_out)) if inplace else (q_out, k_out)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        q_out, k_out = _MRopeQK.apply(q, k, *spec)
        if inplace:
            # A Function cannot return two in-place outputs that are views; rotate out of
            # place and copy back, which autograd understands.
            return q.copy_(q_out), k.copy_(k_out)
        return q_out, k_out
    q_out, k_out = (q, k) if inplace else (torch.empty_like(q), torch.empty_like(k))
    _launch(q, k, q_out, k_out, *spec, False)
    if inplace:
        torch.autograd.graph.increment_version(q)
        torch.autograd.graph.increment_version(k)
    return q_out, k_out


class _MRopeQK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, *spec):
        q, k = _unit_feature_stride(q), _unit_feature_stride(k)
        q_out, k_out = torch.empty_like(q), torch.empty_like(k)
        _launch(q, k, q_out, k_out, *spec, False)
        ctx.spec = spec
        return q_out, k_out

    @staticmethod
    def backward(ctx, dq_out, dk_out):
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            dq, dk = _MRopeInverse.apply(dq_out, dk_out, *ctx.spec)
        else:
            dq_out, dk_out = _unit_feature_stride(dq_out), _unit_feature_stride(dk_out)
            dq, dk = torch.empty_like(dq_out), torch.empty_like(dk_out)
            _launch(dq_out, dk_out, dq, dk, *ctx.spec, True)
        return dq, dk, *(None for _ in ctx.spec)


class _MRopeInverse(torch.autograd.Function):
    """The rotation by −φ as a differentiable op (its own backward is the rotation by +φ)."""

    @staticmethod
    def forward(ctx, dq_out, dk_out, *spec):
        dq_out, dk_out = _unit_feature_stride(dq_out), _unit_feature_stride(dk_out)
        dq, dk = torch.empty_like(dq_out), torch.empty_like(dk_out)
        _launch(dq_out, dk_out, dq, dk, *spec, True)
        ctx.spec = spec
        return dq, dk

    @staticmethod
    def backward(ctx, ddq, ddk):
        return *_MRopeQK.apply(ddq, ddk, *ctx.spec), *(None for _ in ctx.spec)


# --- the custom op that torch.compile sees ------------------------------------------------------


@torch.library.custom_op("ropekit::mrope_qk", mutates_args=())
def _mrope_qk_op(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor,
                 sections: list[int], interleaved: bool, layout: str, attention_factor: float,
                 inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    _launch(q, k, q_out, k_out, positions, inv_freq, tuple(sections), interleaved, layout, attention_factor, inverse)
    return q_out, k_out


@_mrope_qk_op.register_fake
def _(q, k, positions, inv_freq, sections, interleaved, layout, attention_factor, inverse):
    return torch.empty_like(q), torch.empty_like(k)


def _op_setup_context(ctx, inputs, output):
    ctx.spec = inputs[2:]


def _op_backward(ctx, dq_out, dk_out):
    *spec, inverse = ctx.spec
    dq, dk = torch.ops.ropekit.mrope_qk(_unit_feature_stride(dq_out), _unit_feature_stride(dk_out), *spec,
                                        not inverse)
    return (dq, dk) + (None,) * 7


_mrope_qk_op.register_autograd(_op_backward, setup_context=_op_setup_context)


def _unit_feature_stride(t):
    # The kernel reads features contiguously. A gradient can arrive expanded (the backward
    # of .sum() is a stride-0 tensor of ones): materialise only then.
    return t if t.stride(-1) == 1 else t.contiguous()


# --- argument checks ---------------------------------------------------------------------------
# Only Python attributes of the tensors (shape, stride, dtype, device): no .item(), no sync.

def _check(q, k, positions, inv_freq, sections, interleaved, layout, attention_factor, inplace, angles):
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError(f"q and k must be tensors, got {type(q).__name__} and {type(k).__name__}")
    if q.dtype not in KERNEL_DTYPES:
        raise TypeError(f"q must be float16, bfloat16 or float32 (the kernel computes in float32), got {q.dtype}; "
                        "for float64 use the reference ropekit.mrope.apply_mrope_qk")
    if k.dtype != q.dtype:
        raise TypeError(f"q and k must have the same dtype, got {q.dtype} and {k.dtype}")
    device = q.device
    if not q.is_cuda and not (INTERPRETED and q.is_cpu):
        raise ValueError(f"ropekit.kernels.apply_mrope_qk runs Triton kernels on CUDA tensors, got q on {device}. "
                         "Use ropekit.mrope.apply_mrope_qk on this device, or set TRITON_INTERPRET=1 before triton "
                         "is imported to run the kernel in Triton's (slow) interpreter on the CPU.")
    if k.device != device:
        raise ValueError(f"q and k must be on the same device, got {device} and {k.device}")
    if (q.dim() != 4 or k.dim() != 4 or k.shape[0] != q.shape[0] or k.shape[1] != q.shape[1]
            or k.shape[3] != q.shape[3]):
        raise ValueError("q must be (batch, seq, q_heads, head_dim) and k (batch, seq, kv_heads, head_dim), "
                         f"got {tuple(q.shape)} and {tuple(k.shape)}")
    check_mrope_positions(positions, q.shape[0], q.shape[1])
    if positions.device != device or positions.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"positions must be an int32 or int64 tensor on {device}, got {positions.dtype} on "
                         f"{positions.device}")
    exact = check_angles(angles) == "exact"
    turns = exact and isinstance(inv_freq, torch.Tensor) and inv_freq.dtype == torch.int64
    if (not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1 or not (inv_freq.is_floating_point() or turns)
            or inv_freq.device != device):
        where = f" on {inv_freq.device}" if isinstance(inv_freq, torch.Tensor) else ""
        raise ValueError(f"inv_freq must be a floating-point (rotary_dim // 2,) tensor on {device} (or, with "
                         f"angles='exact', int64 fixed_point_turns), got {describe(inv_freq)}{where}")
    if inv_freq.requires_grad and torch.is_grad_enabled():
        raise ValueError("apply_mrope_qk gives no gradient for inv_freq: pass inv_freq.detach()")
    half = inv_freq.shape[0]
    if not 0 < 2 * half <= q.shape[3]:
        raise ValueError(f"rotary_dim = 2·len(inv_freq) = {2 * half} must be between 2 and head_dim ({q.shape[3]})")
    sections = check_sections(sections, bool(interleaved), half)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'paper' or 'half', got {layout!r}")
    if not is_real(attention_factor):
        raise TypeError(f"attention_factor must be a real number, got {attention_factor!r}")
    if not isinstance(inplace, bool):
        raise TypeError(f"inplace must be True or False, got {inplace!r}")
    if inplace:
        if q is k:
            raise ValueError("inplace=True needs q and k to be different tensors")
        for name, t in (("q", q), ("k", k)):
            if t.stride(-1) != 1 or 0 in t.stride():
                raise ValueError(f"inplace=True needs {name} with unit stride along head_dim and no broadcast "
                                 f"(stride-0) dimension, got strides {t.stride()}; use inplace=False")
            if t.is_leaf and t.requires_grad and torch.is_grad_enabled():
                raise ValueError(f"inplace=True cannot overwrite {name}, a leaf that requires grad; use inplace=False")
    else:
        q = q if q.stride(-1) == 1 else q.contiguous()
        k = k if k.stride(-1) == 1 else k.contiguous()
    if exact and not turns:
        # The kernel reads exact angles' int64 turns; an int64 inv_freq tells it which mode it is in.
        if torch.compiler.is_compiling():
            raise ValueError("under torch.compile, angles='exact' needs inv_freq=ropekit.fixed_point_turns(inv_freq) "
                             "computed outside the compiled function")
        inv_freq = fixed_point_turns(inv_freq)
    inv_freq = inv_freq if inv_freq.stride(0) == 1 else inv_freq.contiguous()
    return q, k, positions, inv_freq, sections, layout, float(attention_factor)
