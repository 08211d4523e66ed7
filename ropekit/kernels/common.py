"""What the Triton kernels share: the dtypes they take, whether Triton runs interpreted,
strides named by the library's tensor order, and the pieces the RoPE and M-RoPE kernels
both run: the tokens of a program (``token_block``), the vector alignment of the strides
(``vector_aligned``) and the per-head rotation once cos and sin are known (``rotate_heads``).

Kept free of any one kernel's own logic, so that ``rope_triton.py``, ``mrope.py`` and
``rerope.py`` (and kernels added later) read the same facts the same way.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

# Storage dtypes the kernels accept; their math is float32 whatever the storage.
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@triton.jit
def _probe():
    pass


# Triton decides when a kernel is decorated whether it runs compiled or in its interpreter
# (TRITON_INTERPRET=1 before triton is imported: kernels run on CPU tensors with numpy).
# Asking a decorated function is the one test that always agrees with the kernels.
INTERPRETED = type(_probe).__name__ == "InterpretedFunction"


class QKVStrides(NamedTuple):
    """Element strides of a ``(batch, seq, heads, head_dim)`` tensor, by name."""

    batch: int
    seq: int
    heads: int
    feature: int


def qkv_strides(t: torch.Tensor) -> QKVStrides:
    """The strides of a ``(batch, seq, heads, head_dim)`` tensor, named; a packed
    ``(total_tokens, heads, head_dim)`` tensor gets batch stride 0."""
    if t.dim() == 3:
        return QKVStrides(0, *t.stride())
    return QKVStrides(*t.stride())


# --- the rotation of every head of a block of tokens ---------------------------------------


@triton.jit
def rotate_heads(
    x_ptr, o_ptr, x_tok, o_tok, x_sh, o_sh, tok_mask, cos, sin,
    HEADS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr,
    HALF: tl.constexpr, HALF_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, PASS_PAD: tl.constexpr,
    PAPER: tl.constexpr, COPY_PASS: tl.constexpr,
):
    """Rotate every head of BLOCK_S tokens of one tensor (q or k), BLOCK_H heads at a time:
    a' = a·cos − b·sin, b' = b·cos + a·sin for each pair (a, b) of the layout (PAPER: pairs
    (2i, 2i+1); else (i, i + r/2)). Called by the RoPE and M-RoPE kernels, which differ only
    in how they get cos and sin.

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


@triton.jit
def token_block(seq_len, BLOCK_S: tl.constexpr):
    """The tokens of this program on a 1-D grid: program p takes batch row b = p // n_blocks
    and tokens s = (p % n_blocks)·BLOCK_S ... + BLOCK_S − 1. Returns b, s (int64, so that
    offsets never overflow int32) and the mask of s < seq_len."""
    n_blocks = tl.cdiv(seq_len, BLOCK_S)
    pid = tl.program_id(0).to(tl.int64)
    s = (pid % n_blocks) * BLOCK_S + tl.arange(0, BLOCK_S)
    return pid // n_blocks, s, s < seq_len


def vector_aligned(strides, itemsize):
    """``(align, strides // align)``: align is 16 bytes' worth of elements when every stride
    is a multiple of it (rows then start on 16-byte vector boundaries), else 1. The kernels
    take the divided strides and multiply them by the constexpr ALIGN, which tells the compiler so."""
    vector = 16 // itemsize
    if all(x % vector == 0 for x in strides):
        return vector, tuple(x // vector for x in strides)
    return 1, tuple(strides)
