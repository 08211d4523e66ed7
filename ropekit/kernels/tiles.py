"""Tile helpers of the fused ReRoPE kernels (forward in ``rerope.py``, backward in
``rerope_backward.py``): feature pairs held as two half-width tiles, their rotation, and
the rounding of a tile before a tensor-core dot.

A rotation mixes feature a_p with its partner b_p. The kernels hold the two members of
every pair as two ``(rows, head_dim / 2)`` tiles a and b: for ``layout="half"`` the two
halves of each row, for ``layout="paper"`` its even and odd features (the row is loaded
whole and split in registers, and joined again by :func:`store_pairs`).
"""

import triton
import triton.language as tl


@triton.jit
def rotate_pairs(a, b, cos, sin):
    """Rotate every pair (a, b) by its angle: RoFormer eq. 34, one pair per column."""
    return a * cos - b * sin, b * cos + a * sin


@triton.jit
def mma_operand(x, DTYPE: tl.constexpr, UPCAST: tl.constexpr):
    """x rounded to the storage dtype for a tensor-core dot. UPCAST (interpreter with
    bfloat16 only) hands the rounded values back as float32: the Triton interpreter
    multiplies bfloat16 tiles as their raw uint16 bits, and a float32 dot of bf16-rounded
    values is the same arithmetic (the products are exact, the sums are float32)."""
    x = x.to(DTYPE)
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def load_pairs(base, rows, row_stride, col_stride, row_mask,
                HEAD_DIM: tl.constexpr, PAPER: tl.constexpr, MASKED: tl.constexpr):
    """The two members of every feature pair of a (rows, d) tile, as two (rows, d/2) tiles.

    Half layout: pair p is (p, p + d/2), so the tiles are the two halves of the row,
    each loaded contiguously. Paper layout: pair p is (2p, 2p + 1); the whole row is
    loaded contiguously and split into even and odd features in registers (a stride-2
    load of each would defeat vectorised and asynchronous copies; an early version that
    did so was several times slower on an H100, a measurement not kept).
    """
    HALF: tl.constexpr = HEAD_DIM // 2
    if PAPER:
        ptr = base + rows[:, None] * row_stride + tl.arange(0, HEAD_DIM)[None, :] * col_stride
        if MASKED:
            x = tl.load(ptr, mask=row_mask[:, None], other=0.0)
        else:
            x = tl.load(ptr)
        a, b = tl.split(tl.reshape(x, (x.shape[0], HALF, 2)))
    else:
        ptr_a = base + rows[:, None] * row_stride + tl.arange(0, HALF)[None, :] * col_stride
        ptr_b = ptr_a + HALF * col_stride
        if MASKED:
            a = tl.load(ptr_a, mask=row_mask[:, None], other=0.0)
            b = tl.load(ptr_b, mask=row_mask[:, None], other=0.0)
        else:
            a = tl.load(ptr_a)
            b = tl.load(ptr_b)
    return a, b


@triton.jit
def load_angles(cos_ptr, sin_ptr, rows, row_stride, pair, row_mask, HALF: tl.constexpr, MASKED: tl.constexpr):
    offs = rows[:, None] * row_stride + pair[None, :]
    if MASKED:
        cos = tl.load(cos_ptr + offs, mask=row_mask[:, None], other=1.0)
        sin = tl.load(sin_ptr + offs, mask=row_mask[:, None], other=0.0)
    else:
        cos = tl.load(cos_ptr + offs)
        sin = tl.load(sin_ptr + offs)
    return cos, sin


@triton.jit
def rotate_pairs_back(a, b, cos, sin):
    """The transposed rotation R^T = R(−θ): a' = a cos + b sin, b' = b cos − a sin. It carries
    a gradient w.r.t. a rotated tile back to the unrotated one (the rotation is linear)."""
    return a * cos + b * sin, b * cos - a * sin


@triton.jit
def store_pairs(base, rows, row_stride, col_stride, row_mask, a, b,
                HEAD_DIM: tl.constexpr, PAPER: tl.constexpr):
    """Write the pair tiles (a, b) back as (rows, d) in the layout they were loaded from."""
    HALF: tl.constexpr = HEAD_DIM // 2
    if PAPER:
        ptr = base + rows[:, None] * row_stride + tl.arange(0, HEAD_DIM)[None, :] * col_stride
        tl.store(ptr, tl.interleave(a, b), mask=row_mask[:, None])
    else:
        ptr_a = base + rows[:, None] * row_stride + tl.arange(0, HALF)[None, :] * col_stride
        tl.store(ptr_a, a, mask=row_mask[:, None])
        tl.store(ptr_a + HALF * col_stride, b, mask=row_mask[:, None])


@triton.jit
def query_scale(offs_m, sm_scale, inv_log_train, BLOCK_M: tl.constexpr, LOG_N: tl.constexpr):
    """c_i = max(1, log_L(i + 1)) / √d: the log-n scale (if on) and the softmax scale."""
    c = tl.full([BLOCK_M], sm_scale, tl.float32)
    if LOG_N:
        c = c * tl.maximum(tl.log((offs_m + 1).to(tl.float32)) * inv_log_train, 1.0)
    return c


@triton.jit
def merged_logits(qa1, qb1, qa2, qb2, ka1, kb1, ka2, kb2, offs_m, offs_n, window,
            MODE: tl.constexpr, PRECISION: tl.constexpr):
    """s (rows, cols) of one block, in natural units: MODE 0 outside (q²·k²), 1 inside
    (q¹·k¹), 2 on the edge (both, merged by i − j < w)."""
    if MODE != 0:
        s1 = tl.dot(qa1, tl.trans(ka1), input_precision=PRECISION)
        s1 = tl.dot(qb1, tl.trans(kb1), s1, input_precision=PRECISION)
    if MODE != 1:
        s2 = tl.dot(qa2, tl.trans(ka2), input_precision=PRECISION)
        s2 = tl.dot(qb2, tl.trans(kb2), s2, input_precision=PRECISION)
    if MODE == 0:
        s = s2
    elif MODE == 1:
        s = s1
    else:
        s = tl.where(offs_m[:, None] - offs_n[None, :] < window, s1, s2)
    return s
