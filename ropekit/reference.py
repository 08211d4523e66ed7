"""RoPE in every form people meet, written to be read.

RoFormer (Su et al. 2021) encodes position m by rotating each feature pair of a query or
key by the angle m·θ_i. Written as one matrix (eq. 15), f(x, m) = R_{Θ,m} x with

    R_{Θ,m} = diag(R(mθ_0), R(mθ_1), ..., R(mθ_{d/2-1})),   R(a) = [[cos a, -sin a],
                                                                    [sin a,  cos a]]

and because R_m^T R_n = R_{n-m}, the score ⟨R_m q, R_n k⟩ = ⟨q, R_{n-m} k⟩ depends on
positions only through n - m (eq. 16). The matrix is sparse, so everyone computes eq. 34:

    f(x, m) = x ⊙ cos(mθ) + rotate(x) ⊙ sin(mθ)

Libraries differ only in which features form a pair:

* ``layout="paper"``: pairs (2i, 2i+1), as in the paper, GPT-J, Meta's LLaMA code and
  rotary-embedding-torch. Meta writes it with complex numbers: pair i is the complex
  number x_2i + i·x_2i+1, multiplied by e^{i·mθ_i}.
* ``layout="half"``: pairs (i, i + d/2), as in GPT-NeoX and Hugging Face LLaMA, whose
  ``rotate_half`` is rotate(x) = [-x_2, x_1] for the two halves x_1, x_2.

Both are the same rotation up to a permutation of the features (``to_half_layout``), and
model converters permute the rows of W_q and W_k (``permute_qk_weight``) so that a model
gives identical scores in either layout. Lesson 02 derives all of this.

Each fast function here has a slow teaching twin (``*_matrix`` multiplies by the dense
R_{Θ,m}; ``*_loop`` walks pair by pair); the tests check that they agree.
"""

from __future__ import annotations

import numbers

import torch

from .checks import LAYOUTS, check_angles, check_dim, check_layout, check_rope_qk, check_rotary_width, describe, integer
from .exact_angles import exact_cos_sin
from .validation import check_rope_qk_values


# --- angles --------------------------------------------------------------------------


def rope_cos_sin(positions, inv_freq: torch.Tensor, attention_factor: float = 1.0, angles: str = "float32"):
    """cos(m·θ_i) and sin(m·θ_i) for every position m and pair i.

    Args:
        positions: integer or fractional positions of any shape, e.g. ``(seq,)`` or a
            ``(batch, seq)`` position_ids tensor; a Python int n means ``arange(n)`` on
            inv_freq's device. cos and sin are made on positions' device.
        inv_freq: ``(rotary_dim // 2,)`` from :func:`ropekit.rope_frequencies`.
        attention_factor: multiplies cos and sin (YaRN's √(1/t)), so every logit
            q·k is multiplied by its square, as model libraries do.
        angles: ``"float32"`` (default) forms m·θ_i as one float32 product, as Hugging Face
            transformers, vLLM and the models' own code do, so checkpoints and parity tests
            reproduce them. ``"exact"`` (:mod:`ropekit.exact_angles`, integer positions) is
            within 1e-6 at every position up to 2^31 for the θ_i that inv_freq holds: pass
            float64 ones, or their int64 ``fixed_point_turns``. Lesson 09 measures both and
            why float32 stays the default (below bf16's q/k rounding up to ~3·10^5 tokens).

    Returns:
        ``(cos, sin)``, each float32 of shape ``positions.shape + (rotary_dim // 2,)``.

    Precision of float32 angles: the product is off by up to m·θ_i·2^-24 rad, 6e-5 at
    m = 1,000 and 0.06 at m = 10^6; positions are exact in float32 only up to 2^24.
    """
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1:
        raise ValueError(f"inv_freq must be a 1-D tensor of shape (rotary_dim // 2,), got {describe(inv_freq)}")
    if not isinstance(positions, torch.Tensor):
        if isinstance(positions, bool) or not isinstance(positions, numbers.Integral):
            raise TypeError(f"positions must be a tensor or an int n (for arange(n)), got {type(positions).__name__}")
        positions = torch.arange(integer(positions, "positions", minimum=0, what=" (a count n for arange(n))"),
                                 device=inv_freq.device)
    if positions.is_complex() or positions.dtype == torch.bool:
        raise TypeError(f"positions must be integer or real, got dtype {positions.dtype}")
    if check_angles(angles) == "exact":
        return exact_cos_sin(positions, inv_freq, attention_factor)
    if not inv_freq.is_floating_point():
        raise TypeError(f"inv_freq must be floating point, got {inv_freq.dtype} (int64 fixed-point turns need "
                        "angles='exact')")
    angle = positions.to(torch.float32)[..., None] * inv_freq.to(device=positions.device, dtype=torch.float32)
    cos, sin = angle.cos(), angle.sin()
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos, sin


def rope_decay_bound(distances, inv_freq):
    """RoFormer's relative upper bound of the logit at each relative distance (§3.4.3, Figure 2).

    With S_j = Σ_{k<j} e^{i·r·θ_k} (the partial sums over pairs of the rotation at
    distance r = m − n), the Abel summation of eq. (37) bounds |q·k| by
    max_i |h_{i+1} − h_i| · Σ_j |S_j|; the paper plots the mean (1/(d/2)) Σ_{j=1}^{d/2} |S_j|,
    which shrinks as r grows. The e^{i·r·θ_k} are ``rope_cos_sin(distances, inv_freq)``.

    Args:
        distances: ``(n,)`` relative distances r (or an int n for 0 .. n − 1).
        inv_freq: ``(d // 2,)`` θ_k.

    Returns:
        float64 ``(n,)``. Lesson 03 derives it; ``ropekit.viz.plot_long_term_decay`` plots it.
    """
    cos, sin = rope_cos_sin(distances, inv_freq)
    partial_sums = torch.complex(cos.double(), sin.double()).cumsum(dim=-1)  # S_1 .. S_{d/2}
    return partial_sums.abs().mean(dim=-1)


# --- the fast element-wise form (RoFormer eq. 34) -------------------------------------


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "half", rotary_dim: int | None = None):
    """Rotate every feature pair of x by its angle: RoFormer eq. 34.

    y = x ⊙ cos + rotate(x) ⊙ sin, that is, for each pair (a, b) with angle φ:
    a' = a·cos φ − b·sin φ and b' = b·cos φ + a·sin φ.

    Args:
        x: ``(..., seq, head_dim)`` queries or keys, floating point.
        cos, sin: ``(..., seq, rotary_dim // 2)`` from :func:`rope_cos_sin`, broadcastable
            against x (insert a heads axis yourself: ``cos[:, None]`` for a
            ``(batch, seq, r/2)`` table and x of shape ``(batch, heads, seq, head_dim)``).
        layout: ``"half"`` pairs (i, i + r/2) (GPT-NeoX, HF LLaMA); ``"paper"`` pairs
            (2i, 2i+1) (RoFormer, GPT-J, Meta LLaMA).
        rotary_dim: rotate only the first rotary_dim features and pass the rest through
            (partial rotary, as GPT-NeoX and Phi do). Defaults to 2 · cos.shape[-1].

    Returns:
        A new tensor of x's shape and dtype; the math runs in float32 (float64 for float64 x).

    Lesson 02 derives it.
    """
    rotary_dim = _check_apply_args(x, cos, sin, layout, rotary_dim)
    compute = torch.promote_types(x.dtype, torch.float32)
    rot, rest = x[..., :rotary_dim].to(compute), x[..., rotary_dim:]
    cos, sin = cos.to(compute), sin.to(compute)
    if layout == "half":
        a, b = rot.chunk(2, dim=-1)
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    else:
        a, b = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    return torch.cat((out.to(x.dtype), rest), dim=-1) if rest.shape[-1] else out.to(x.dtype)


def apply_rope_loop(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "half", rotary_dim: int | None = None):
    """The teaching twin of :func:`apply_rope`: one 2-D rotation per pair, in a loop."""
    rotary_dim = _check_apply_args(x, cos, sin, layout, rotary_dim)
    y = x.clone()
    half = rotary_dim // 2
    for i in range(half):
        ia, ib = (i, i + half) if layout == "half" else (2 * i, 2 * i + 1)
        a, b = x[..., ia], x[..., ib]
        c, s = cos[..., i], sin[..., i]
        y[..., ia] = a * c - b * s
        y[..., ib] = b * c + a * s
    return y


# --- q and k together: the specification of the Triton kernel --------------------------


def apply_rope_qk(q, k, cos=None, sin=None, layout="half", inplace=False, rotary_dim=None, *,
                  positions=None, inv_freq=None, attention_factor=1.0, cu_seqlens=None, angles="float32", validate=None):
    """Rotate queries and keys by their positions: the plain-torch twin of
    :func:`ropekit.kernels.apply_rope_qk`, with the same arguments, shapes and result, so
    either can replace the other by changing the import (the tests compare them).

    Args:
        q: ``(batch, seq, q_heads, head_dim)`` (or ``(total_tokens, q_heads, head_dim)``
            with ``cu_seqlens``); k the same with ``kv_heads`` heads.
        cos, sin: a table from :func:`rope_cos_sin`: ``(n_positions, rotary_dim // 2)``
            (row m is position m) or ``(batch or 1, seq, rotary_dim // 2)`` gathered per
            token (then positions must be None).
        layout, rotary_dim: as in :func:`apply_rope`.
        inplace: write the result into q and k and return them.
        positions: None (m = index in the sequence), an int p (m = p + index), a
            ``(batch,)`` (``(n_seqs,)`` with cu_seqlens) tensor of per-sequence offsets, or
            a ``(batch or 1, seq)`` position_ids tensor.
        inv_freq: ``(rotary_dim // 2,)`` instead of cos/sin: angles from
            :func:`rope_cos_sin` of the positions (with ``angles``), times ``attention_factor``.
        cu_seqlens: ``(n_seqs + 1,)`` start offsets of packed sequences (flash-attention's
            varlen format); positions restart at 0 in each; tokens after the last pass through.

    Returns:
        ``(q_out, k_out)`` of q's and k's shapes and dtypes (math in float32, or float64 for
        float64 inputs). Unlike the kernel, which checks values only when asked
        (``validate``: they need a host synchronisation), this twin checks them always,
        whatever ``validate`` says, and raises: positions outside the table, cu_seqlens
        not starting at 0, decreasing or ending past the tokens.

    Lesson 05 compares the two.
    """
    rotary_dim, offset, positions, attention_factor = check_rope_qk(
        q, k, cos, sin, layout, inplace, rotary_dim, positions, inv_freq, attention_factor, cu_seqlens, angles)
    check_rope_qk_values(q, cos, positions, offset, cu_seqlens)
    if cu_seqlens is None and positions is None:  # positions offset .. offset + seq − 1: no gather
        seq = q.shape[1]
        if cos is None:
            m = torch.arange(offset, offset + seq, device=q.device)
            cos, sin = rope_cos_sin(m, inv_freq, attention_factor, angles)
        elif cos.dim() == 2:
            cos, sin = cos[offset:offset + seq], sin[offset:offset + seq]
    else:
        cos, sin = _per_token_angles(q, cos, sin, positions, offset, inv_freq, attention_factor, cu_seqlens, angles)
    q_out = apply_rope(q, cos[..., None, :], sin[..., None, :], layout, rotary_dim)  # a heads axis
    k_out = apply_rope(k, cos[..., None, :], sin[..., None, :], layout, rotary_dim)
    if not inplace:
        return q_out, k_out
    return q.copy_(q_out), k.copy_(k_out)


def _per_token_angles(q, cos, sin, positions, offset, inv_freq, attention_factor, cu_seqlens, angles):
    """cos, sin of each token's position m, ``(batch, seq, r/2)`` (``(tokens, r/2)`` packed),
    with cos = 1, sin = 0 for packed padding (positions already checked against the table)."""
    if cu_seqlens is None:
        batch, seq = q.shape[:2]
        index = torch.arange(seq, device=q.device).expand(batch, seq)
        seq_of_token = torch.arange(batch, device=q.device)[:, None].expand(batch, seq)
        inside = None
    else:
        index, inside, seq_of_token = _packed_positions(cu_seqlens, q.shape[0])
    if positions is None:
        m = index + offset
    elif positions.dim() == 1:  # per-sequence offsets (one for all when there is one)
        m = index + positions.long()[seq_of_token if positions.shape[0] != 1 else 0] + offset
    else:
        m = positions.long().expand(index.shape) + offset
    if cos is None:
        cos, sin = rope_cos_sin(m, inv_freq, attention_factor, angles)
    elif cos.dim() == 2:  # a table: row m is position m (padding tokens clamped, then masked)
        row = m.clamp(0, cos.shape[0] - 1)
        cos, sin = cos[row], sin[row]
    if inside is not None:  # tokens after the last packed sequence pass through
        cos = torch.where(inside[:, None], cos, torch.ones_like(cos))
        sin = torch.where(inside[:, None], sin, torch.zeros_like(sin))
    return cos, sin


def _packed_positions(cu_seqlens, total):
    """For packed tokens 0 .. total − 1: index in its sequence, whether it lies in any
    sequence, and which sequence (cu_seqlens already checked)."""
    cu = cu_seqlens.long()
    token = torch.arange(total, device=cu.device)
    seq_of_token = (torch.searchsorted(cu, token, right=True) - 1).clamp(0, cu.shape[0] - 2)
    return token - cu[seq_of_token], token < cu[-1], seq_of_token


# --- the explicit matrix (RoFormer eq. 15) -------------------------------------------


def rotation_matrix(position, dim: int, base: float = 10000.0, layout: str = "paper", inv_freq: torch.Tensor | None = None):
    """The explicit rotation matrix R_{Θ,m} of RoFormer eq. 15, in float64.

    ``layout="paper"`` is block diagonal: the 2×2 block R(mθ_i) sits at rows and columns
    (2i, 2i+1). ``layout="half"`` is the same matrix with features reordered so that pair i
    is (i, i + d/2): cos on the diagonal, −sin at (i, i + d/2), +sin at (i + d/2, i).

    Args:
        position: the position m (int or float; fractional positions are interpolated ones).
        dim: d, even.
        base: θ_i = base^(-2i/d), unless ``inv_freq`` gives the θ_i (e.g. a scaled schedule).

    Returns:
        ``(dim, dim)`` float64 tensor R with y = R @ x.

    Lesson 02 plots it.
    """
    check_dim(dim)
    check_layout(layout)
    if inv_freq is None:
        if not base > 1:
            raise ValueError(f"base must be greater than 1, got {base!r}")
        theta = float(base) ** -(torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    else:
        theta = inv_freq.double().cpu()
        if theta.shape != (dim // 2,):
            raise ValueError(f"inv_freq must have shape (dim // 2,) = ({dim // 2},), got {tuple(theta.shape)}")
    angle = float(position) * theta
    c, s = angle.cos(), angle.sin()
    i = torch.arange(dim // 2)
    ia, ib = (i, i + dim // 2) if layout == "half" else (2 * i, 2 * i + 1)
    R = torch.zeros(dim, dim, dtype=torch.float64)
    R[ia, ia], R[ia, ib] = c, -s
    R[ib, ia], R[ib, ib] = s, c
    return R


def apply_rope_matrix(x: torch.Tensor, positions, inv_freq: torch.Tensor, layout: str = "half"):
    """The slowest, most literal RoPE: multiply each position's vector by the dense R_{Θ,m}.

    Args:
        x: ``(..., seq, head_dim)``; the whole head_dim is rotated.
        positions: ``(seq,)`` positions (or an int n for ``arange(n)``).
        inv_freq: ``(head_dim // 2,)``.

    Returns:
        float64 tensor of x's shape. O(seq · d²) work: for teaching and tests only.
    """
    if isinstance(positions, int):
        positions = torch.arange(positions)
    dim = x.shape[-1]
    if positions.shape != (x.shape[-2],):
        raise ValueError(f"positions must have shape (seq,) = ({x.shape[-2]},), got {tuple(positions.shape)}")
    R = torch.stack([rotation_matrix(float(m), dim, layout=layout, inv_freq=inv_freq) for m in positions.tolist()])
    return torch.einsum("sij,...sj->...si", R, x.double())


# --- Meta's complex form --------------------------------------------------------------


def apply_rope_complex(x: torch.Tensor, positions, inv_freq: torch.Tensor):
    """RoPE as Meta's LLaMA code writes it: pair (x_2i, x_2i+1) is the complex number
    x_2i + i·x_2i+1, and rotating it by mθ_i is multiplying by e^{i·mθ_i} (RoFormer eq. 12).

    This is the paper layout. Args: x ``(..., seq, head_dim)`` with the first
    ``2 · len(inv_freq)`` features rotated; positions ``(seq,)``, ``(batch, seq)`` or an int
    n (for ``arange(n)``), broadcastable against x's leading dims once the feature axis
    is added; inv_freq ``(rotary_dim // 2,)``. Returns a tensor of x's shape and dtype.
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor of shape (..., seq, head_dim), got {describe(x)}")
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1:
        raise ValueError(f"inv_freq must be a 1-D tensor (rotary_dim // 2,), got {describe(inv_freq)}")
    if not isinstance(positions, torch.Tensor):
        positions = torch.arange(integer(positions, "positions", minimum=0, what=" or a tensor"), device=x.device)
    try:
        fits = torch.broadcast_shapes(positions.shape, x.shape[:-1]) == x.shape[:-1] and positions.dim() > 0
    except RuntimeError:
        fits = False
    if not fits or positions.dtype == torch.bool or positions.is_complex():
        raise ValueError(f"positions must be an integer or real tensor (seq,) or (batch, seq) that broadcasts against "
                         f"x's leading dims {tuple(x.shape[:-1])}, got {describe(positions)}")
    angles = positions.to(torch.float32)[..., None] * inv_freq.to(device=x.device, dtype=torch.float32)
    rotary_dim = _check_apply_args(x, angles, angles, "paper", 2 * inv_freq.shape[0])
    real = torch.promote_types(x.dtype, torch.float32)
    rotor = torch.polar(torch.ones_like(angles, dtype=real), angles.to(real))  # e^{i·mθ}
    pairs = torch.view_as_complex(x[..., :rotary_dim].to(real).reshape(*x.shape[:-1], -1, 2).contiguous())
    out = torch.view_as_real(pairs * rotor).flatten(-2).to(x.dtype)
    return torch.cat((out, x[..., rotary_dim:]), dim=-1)


# --- layout conversion ----------------------------------------------------------------


def half_layout_order(dim: int) -> torch.Tensor:
    """Feature order that turns a paper-layout vector into a half-layout one:
    [0, 2, 4, ..., d-2, 1, 3, ..., d-1] (all first members of the pairs, then all second)."""
    check_dim(dim)
    return torch.cat((torch.arange(0, dim, 2), torch.arange(1, dim, 2)))


def paper_layout_order(dim: int) -> torch.Tensor:
    """Inverse of :func:`half_layout_order`: [0, d/2, 1, d/2+1, ...] interleaves the halves."""
    return torch.argsort(half_layout_order(dim))


def to_half_layout(x: torch.Tensor, rotary_dim: int | None = None):
    """Reorder the last dimension from paper pairs (2i, 2i+1) to half pairs (i, i + r/2).

    Only the first rotary_dim features (default: all) move. For any x,
    ``apply_rope(to_half_layout(x), cos, sin, "half") == to_half_layout(apply_rope(x, cos, sin, "paper"))``.
    """
    return _permute_last(x, rotary_dim, half_layout_order)


def to_paper_layout(x: torch.Tensor, rotary_dim: int | None = None):
    """Reorder the last dimension from half pairs (i, i + r/2) back to paper pairs (2i, 2i+1)."""
    return _permute_last(x, rotary_dim, paper_layout_order)


def permute_qk_weight(w: torch.Tensor, n_heads: int, layout_from: str, layout_to: str, rotary_dim: int | None = None):
    """Reorder the output rows of a query or key projection so a model switches layout.

    A model computes q = W_q h. Reordering the features of every head's q (and k) the
    same way leaves q·k unchanged, and turns paper pairs into half pairs, so a paper-form
    checkpoint run with half-form RoPE gives identical attention scores. This is what
    Hugging Face's LLaMA converter does to Meta's weights.

    Args:
        w: ``(n_heads * head_dim, hidden)`` weight or ``(n_heads * head_dim,)`` bias.
        n_heads: heads in this projection (kv heads for W_k under GQA).
        layout_from, layout_to: ``"paper"`` or ``"half"``.
        rotary_dim: reorder only the first rotary_dim features of each head.
    """
    check_layout(layout_from, "layout_from")
    check_layout(layout_to, "layout_to")
    if not isinstance(w, torch.Tensor) or w.dim() not in (1, 2):
        raise ValueError(f"w must be a (n_heads * head_dim, hidden) weight or (n_heads * head_dim,) bias, "
                         f"got {describe(w)}")
    n_heads = integer(n_heads, "n_heads", minimum=1, what=f" dividing w.shape[0] = {w.shape[0]}")
    if w.shape[0] % n_heads:
        raise ValueError(f"n_heads must be a positive integer dividing w.shape[0] = {w.shape[0]}, got {n_heads!r}")
    if layout_from == layout_to:
        return w.clone()
    per_head = w.reshape(n_heads, w.shape[0] // n_heads, *w.shape[1:])
    per_head = per_head.movedim(1, -1)
    convert = to_half_layout if layout_to == "half" else to_paper_layout
    return convert(per_head, rotary_dim).movedim(-1, 1).reshape(w.shape)


# --- argument checks -----------------------------------------------------------------


def _check_apply_args(x, cos, sin, layout, rotary_dim):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (float16, bfloat16, float32 or float64), got {x.dtype}")
    check_layout(layout)
    for name, t in (("cos", cos), ("sin", sin)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise ValueError(f"{name} must be a tensor of shape (..., seq, rotary_dim // 2), got {describe(t)}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos and sin must have the same shape, got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., seq, head_dim), got {tuple(x.shape)}")
    head_dim, seq = x.shape[-1], x.shape[-2]
    hint = ""
    if cos.shape[-1] == seq != cos.shape[-2] != 1 and 2 * cos.shape[-2] <= head_dim:
        hint = (f" (cos/sin of shape {tuple(cos.shape)} look transposed: ropekit expects (..., seq, rotary_dim // 2), "
                "rows by position; pass cos.transpose(-1, -2))")
    if rotary_dim is not None and (not isinstance(rotary_dim, int) or isinstance(rotary_dim, bool)
                                   or rotary_dim <= 0 or rotary_dim % 2 or rotary_dim > head_dim):
        raise ValueError(f"rotary_dim must be a positive even integer <= x's head_dim ({head_dim}), got {rotary_dim!r}")
    try:
        rotary_dim = check_rotary_width(cos.shape[-1], head_dim, rotary_dim)
    except ValueError as err:
        raise ValueError(f"{err}{hint}") from None
    pair_shape = (*x.shape[:-1], rotary_dim // 2)
    try:
        joint = torch.broadcast_shapes(pair_shape, cos.shape)
    except RuntimeError:
        joint = None
    if joint != pair_shape:
        raise ValueError(
            f"cos/sin of shape {tuple(cos.shape)} do not broadcast against x of shape {tuple(x.shape)}: "
            f"expected (..., seq={x.shape[-2]}, {rotary_dim // 2}) with leading dims that broadcast to "
            f"{tuple(x.shape[:-2])}{hint}"
        )
    return rotary_dim


def _permute_last(x, rotary_dim, order_fn):
    dim = x.shape[-1] if rotary_dim is None else rotary_dim
    if dim > x.shape[-1]:
        raise ValueError(f"rotary_dim ({dim}) must not exceed the last dimension ({x.shape[-1]})")
    order = order_fn(dim).to(x.device)
    if dim == x.shape[-1]:
        return x[..., order]
    return torch.cat((x[..., order], x[..., dim:]), dim=-1)
