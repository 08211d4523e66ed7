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

Plain-torch specification: :func:`ropekit.reference.apply_rope_qk`, the twin with this
function's signature (the tests compare the two). The Triton kernel and its launcher are
in :mod:`ropekit.kernels.rope_triton`; this module has the public function, its checks,
autograd and the custom ops that torch.compile sees.
"""

from typing import Optional, Sequence

import torch

from ..checks import check_rope_qk
from ..exact_angles import fixed_point_turns
from ..validation import check_rope_qk_values, validate_requested
from .common import INTERPRETED, KERNEL_DTYPES
from .rope_triton import RopeLaunch, launch_kernel

# --- the public function -----------------------------------------------------------------


def apply_rope_qk(q, k, cos=None, sin=None, layout="half", inplace=False, rotary_dim=None, *,
                  positions=None, inv_freq=None, attention_factor=1.0, cu_seqlens=None, angles="float32", validate=None):
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
            q and k must not share memory (checked from pointers and strides) and must not
            be leaves that require grad (checked before anything is written). Views work
            under autograd too (``q_proj(x).view(b, s, h, d)``, slices of a packed qkv
            tensor): they are rotated out of place and copied back, one extra pass.
        rotary_dim: rotate the first rotary_dim features and pass the rest through
            (partial rotary); must equal 2 · cos.shape[-1] (or 2 · len(inv_freq)), and
            must be passed whenever that is less than head_dim.
        positions: the position m of each token, in one of three forms:
            None (m = index in the sequence), an int p (m = p + index: decoding after p
            cached tokens), an integer tensor ``(batch,)`` (``(n_seqs,)`` with
            cu_seqlens) of per-sequence offsets, or an integer ``(batch or 1, seq)``
            position_ids tensor (not with cu_seqlens). With cos/sin, m selects the table
            row. A position outside the table is an error (one policy, see
            :mod:`ropekit.checks`): None and int offsets are checked for free and raise;
            tensor positions cannot be read without a host sync, so their out-of-table
            tokens come out NaN (loud, never a plausible value) unless ``validate``.
        inv_freq: ``(rotary_dim // 2,)`` from :func:`ropekit.rope_frequencies`, instead of
            cos/sin: the kernel computes cos(m·θ_i) and sin(m·θ_i) itself, exactly as
            :func:`ropekit.rope_cos_sin` does (with ``angles``), and reads no table at all.
        attention_factor: with inv_freq, multiplies cos and sin (YaRN, LongRoPE).
        cu_seqlens: int32 ``(n_seqs + 1,)`` offsets of packed sequences (flash-attention's
            varlen format); each sequence's positions restart at 0 (plus its offset).
            Tokens after ``cu_seqlens[-1]`` pass through unchanged. Its dtype, shape and
            device are checked; its values only with ``validate``.
        angles: with inv_freq, ``"float32"`` (default: one float32 product m·θ_i, as
            Hugging Face and vLLM compute it) or ``"exact"``: the phase from one wrapping
            int64 multiply of 64-bit fixed-point turns (:mod:`ropekit.kernels.angles`),
            within 1e-6 at every position up to 2^31 for float64 inv_freq. A floating
            inv_freq is turned into ``ropekit.fixed_point_turns(inv_freq)`` on the host at
            every call (one copy and a synchronisation); pass those int64 turns instead
            to avoid it, and always under torch.compile. Lesson 09.
        validate: also check what needs a host sync: cu_seqlens starts at 0, never
            decreases and ends within the tokens; every tensor position lies in the
            table. Raises the twin's ValueError. None (default) reads the environment
            variable ``ROPEKIT_VALIDATE`` (1: on), a debug mode for a whole program.
            Eager mode only: under torch.compile the value checks are skipped.

    Returns:
        ``(q_out, k_out)`` with the shapes, dtype and strides of q and k (new tensors, or
        q and k themselves when ``inplace``). Differentiable: the backward pass is the
        same kernel rotating the gradient by −φ, and dq/dk have q's/k's strides.

    The kernels need CUDA tensors; CPU tensors work under ``TRITON_INTERPRET=1``
    (slowly). Otherwise use :func:`ropekit.apply_rope`, the reference this kernel is
    tested against. Lesson 02 derives the rotation; lesson 05 shows the kernel.
    """
    q, k, launch = check_arguments(q, k, cos, sin, layout, inplace, rotary_dim, positions, inv_freq, attention_factor,
                                   cu_seqlens, angles)
    if torch.compiler.is_compiling():
        return _compiled_call(q, k, launch, inplace)
    if validate_requested(validate):
        check_rope_qk_values(q, launch.cos, launch.positions, launch.offset, launch.cu_seqlens)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        if inplace and (q._base is not None or k._base is not None):
            # autograd cannot mark two views dirty in one Function: rotate out of place,
            # then copy back (copy_ into a view is recorded on its base).
            q_out, k_out = _RopeQK.apply(q, k, False, launch)
            return q.copy_(q_out), k.copy_(k_out)
        return _RopeQK.apply(q, k, inplace, launch)
    if inplace:
        launch_kernel(q, k, q, k, launch)
        # Bump the version counters, so autograd still catches a later backward that
        # would need the old values of q or k.
        torch.autograd.graph.increment_version(q)
        torch.autograd.graph.increment_version(k)
        return q, k
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    launch_kernel(q, k, q_out, k_out, launch)
    return q_out, k_out


# --- autograd ----------------------------------------------------------------------------
# Eager mode calls the launcher directly (inference) or through a torch.autograd.Function
# (training): a few microseconds on the host. torch.compile sees custom ops instead
# (further down), which Dynamo can put into a graph without breaking it.


class _RopeQK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, inplace, launch):
        q_out, k_out = (q, k) if inplace else (torch.empty_like(q), torch.empty_like(k))
        launch_kernel(q, k, q_out, k_out, launch)
        if inplace:
            ctx.mark_dirty(q, k)
        ctx.launch = launch
        ctx.strides = (_dense_stride(q_out), _dense_stride(k_out)) if inplace else (q_out.stride(), k_out.stride())
        return q_out, k_out

    @staticmethod
    def backward(ctx, dq_out, dk_out):
        # The gradient goes to a new tensor with the input's strides, never over the
        # incoming one: autograd can hand one gradient tensor to several nodes (AddBackward
        # does) and passes a user's grad_outputs through as they are, so overwriting it is
        # not safe in general. The bytes moved are the same either way.
        launch = ctx.launch._replace(inverse=not ctx.launch.inverse)  # the rotation by −φ
        if torch.is_grad_enabled():  # create_graph=True: keep the backward differentiable
            dq, dk = _RopeQK.apply(dq_out, dk_out, False, launch)
        else:
            dq_out, dk_out = _unit_feature_stride(dq_out), _unit_feature_stride(dk_out)
            dq, dk = _new_like(dq_out, ctx.strides[0]), _new_like(dk_out, ctx.strides[1])
            launch_kernel(dq_out, dk_out, dq, dk, launch)
        return dq, dk, None, None


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
    launch_kernel(q, k, q_out, k_out, RopeLaunch(cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor,
                                           layout, rotary_dim, inverse))
    return q_out, k_out


@_rope_qk_op.register_fake
def _(q, k, cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout, rotary_dim, inverse,
      q_stride, k_stride):
    return _new_like(q, q_stride), _new_like(k, k_stride)


def _op_setup_context(ctx, inputs, output):
    ctx.launch = RopeLaunch(*inputs[2:2 + len(RopeLaunch._fields)])
    ctx.strides = (output[0].stride(), output[1].stride())


def _op_backward(ctx, dq_out, dk_out):
    launch = ctx.launch._replace(inverse=not ctx.launch.inverse)
    dq, dk = torch.ops.ropekit.rope_qk(_unit_feature_stride(dq_out), _unit_feature_stride(dk_out), *launch,
                                       *ctx.strides)
    return (dq, dk) + (None,) * (len(RopeLaunch._fields) + 2)  # no gradient for the launch or strides


_rope_qk_op.register_autograd(_op_backward, setup_context=_op_setup_context)


@torch.library.custom_op("ropekit::rope_qk_", mutates_args=("q", "k"))
def _rope_qk_inplace_op(
    q: torch.Tensor, k: torch.Tensor, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
    positions: Optional[torch.Tensor], inv_freq: Optional[torch.Tensor], cu_seqlens: Optional[torch.Tensor],
    offset: int, attention_factor: float, layout: str, rotary_dim: int,
) -> None:
    launch_kernel(q, k, q, k, RopeLaunch(cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout,
                                   rotary_dim))


@_rope_qk_inplace_op.register_fake
def _(q, k, cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout, rotary_dim):
    return None


def _compiled_call(q, k, launch, inplace):
    """What torch.compile traces: one custom op, so the graph has no break."""
    if not inplace:
        return torch.ops.ropekit.rope_qk(q, k, *launch, None, None)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        # A mutating custom op cannot carry an autograd formula: rotate out of place and
        # copy back, which autograd and the compiler both understand.
        q_out, k_out = torch.ops.ropekit.rope_qk(q, k, *launch, None, None)
        return q.copy_(q_out), k.copy_(k_out)
    torch.ops.ropekit.rope_qk_(q, k, *launch[:-1])
    return q, k


# --- argument checks ---------------------------------------------------------------------
# Cheap on purpose: only Python attributes of the tensors (shape, stride, dtype, device),
# no .item(), no synchronisation, no allocation (except a copy for inputs whose features
# are not contiguous). Out-of-range tensor positions are caught in the kernel (NaN output)
# or, with validate, on the host.
# What the kernel and its reference twin share is checked in ropekit.checks.


def check_arguments(q, k, cos, sin, layout, inplace, rotary_dim, positions, inv_freq, attention_factor, cu_seqlens,
                    angles="float32"):
    rotary_dim, offset, positions, attention_factor = check_rope_qk(
        q, k, cos, sin, layout, inplace, rotary_dim, positions, inv_freq, attention_factor, cu_seqlens, angles)
    if angles == "exact" and inv_freq.is_floating_point():
        # The kernel reads exact angles' int64 turns; an int64 inv_freq tells it which mode it is in.
        if torch.compiler.is_compiling():
            raise ValueError("under torch.compile, angles='exact' needs inv_freq=ropekit.fixed_point_turns(inv_freq) "
                             "computed outside the compiled function")
        inv_freq = fixed_point_turns(inv_freq)
    if q.dtype not in KERNEL_DTYPES:
        raise TypeError(
            f"q must be float16, bfloat16 or float32 (the kernel computes in float32), got {q.dtype}; "
            "for float64 use the reference ropekit.reference.apply_rope_qk"
        )
    if not q.is_cuda and not (INTERPRETED and q.is_cpu):
        raise ValueError(
            f"ropekit.kernels.apply_rope_qk runs Triton kernels on CUDA tensors, got q on {q.device}. "
            "Use the reference ropekit.reference.apply_rope_qk on this device, or set TRITON_INTERPRET=1 before "
            "triton is imported to run the kernel in Triton's (slow) interpreter on the CPU."
        )
    if cos is not None and (cos.stride(-1) != 1 or sin.stride() != cos.stride()):
        cos, sin = cos.contiguous(), sin.contiguous()
    if inv_freq is not None and inv_freq.stride(0) != 1:
        inv_freq = inv_freq.contiguous()
    if cu_seqlens is not None and cu_seqlens.stride(0) != 1:
        cu_seqlens = cu_seqlens.contiguous()
    if inplace:
        for name, t in (("q", q), ("k", k)):
            if t.stride(-1) != 1 or 0 in t.stride():
                raise ValueError(
                    f"inplace=True needs {name} with unit stride along head_dim and no broadcast (stride-0) "
                    f"dimension, got strides {t.stride()}; use inplace=False"
                )
    else:
        q = q if q.stride(-1) == 1 else q.contiguous()
        k = k if k.stride(-1) == 1 else k.contiguous()
    return q, k, RopeLaunch(cos, sin, positions, inv_freq, cu_seqlens, offset, attention_factor, layout, rotary_dim)
