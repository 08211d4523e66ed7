"""RoPE on an image grid: axial frequencies and RoPE-Mixed (learned 2-D frequency directions).

A vision transformer's patch at column x and row y has a 2-D position p = (x, y). Heo et
al. 2024 ("Rotary Position Embedding for Vision Transformer", §3.2-3.3) give two ways to
turn a feature pair by it. In both, pair i turns by the dot product of p with a
frequency vector f_i = (f_i^x, f_i^y):

    φ_i = p · f_i = x·f_i^x + y·f_i^y                                       (eq. 10, 12)

* **axial** (eq. 10): the first half of the pairs follow x, the second half follow y,
  with the 1-D RoPE frequencies θ_j = b^(-4j/d) (b = 100 in the paper): f = (θ_j, 0)
  then (0, θ_j). A pair sees only one axis, so it cannot tell a diagonal offset apart from
  its projection on that axis.
* **RoPE-Mixed** (eq. 12): every head h has its own f_i, learned, initialised with the
  magnitudes θ_j (b = 10) pointing along a random angle α_h for the first half of the
  pairs and α_h + π/2 for the second half. Diagonal directions become visible.

Because φ is linear in p, ⟨R(p) q, R(p') k⟩ depends on p − p' only: RoPE's relative
property, in 2-D. With a single axis, :func:`mixed_cos_sin` is 1-D RoPE with learned
frequencies (rotary-embedding-torch's ``learned_freq=True``).

These are the formulas of naver-ai/rope-vit's ``compute_axial_cis`` and
``compute_mixed_cis``, written here from the paper. Rotate with
:func:`ropekit.apply_rope` in the ``"paper"`` layout (rope-vit multiplies complex numbers
made of the pairs (2i, 2i+1)). Qwen2-VL's vision encoder uses the same axial RoPE with
the row first, base 10 000 and the ``"half"`` layout: ``axial_cos_sin`` of (h, w)
positions and ``axial_frequencies(head_dim, 10000.0)`` (the tests compare with
transformers). Lesson 08 draws the relative-position pictures.
"""

from __future__ import annotations

import math

import torch

from .checks import describe, integer
from .frequencies import rope_frequencies
from .reference import apply_rope, rope_cos_sin


def image_grid_positions(height: int, width: int) -> torch.Tensor:
    """``(height·width, 2)`` float32 (x, y) of the patches in row-major order: patch t is at
    x = t mod width, y = ⌊t / width⌋ (rope-vit's ``init_t_xy``). Lesson 08."""
    height, width = integer(height, "height", 1), integer(width, "width", 1)
    t = torch.arange(height * width)
    return torch.stack((t % width, t // width), dim=-1).to(torch.float32)


def axial_frequencies(head_dim: int, base: float = 100.0) -> torch.Tensor:
    """The axial frequencies θ_j = base^(-4j/head_dim), j < head_dim/4 (Heo et al. eq. 10).

    They are 1-D RoPE's frequencies for a head of head_dim / 2 features:
    ``rope_frequencies(head_dim // 2, base)``. Returns float32 ``(head_dim // 4,)``.

    Lesson 08.
    """
    _check_head_dim(head_dim)
    return rope_frequencies(head_dim // 2, base)[0]


def axial_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor):
    """cos and sin of the axial angles: pairs j < n follow x (x·θ_j), pairs n + j follow y.

    Args:
        positions: ``(..., 2)`` (x, y), e.g. from :func:`image_grid_positions`.
        inv_freq: ``(n,)`` from :func:`axial_frequencies`.

    Returns:
        ``(cos, sin)``, float32 ``(..., 2n)``: for x of shape ``(batch, seq, heads, 4n)``
        rotate with ``apply_rope(x, cos[:, None], sin[:, None], layout="paper")``.

    Lesson 08.
    """
    _check_positions(positions)
    cos_x, sin_x = rope_cos_sin(positions[..., 0], inv_freq)
    cos_y, sin_y = rope_cos_sin(positions[..., 1], inv_freq)
    return torch.cat((cos_x, cos_y), dim=-1), torch.cat((sin_x, sin_y), dim=-1)


def mixed_frequencies(head_dim: int, heads: int, base: float = 10.0, generator: torch.Generator | None = None):
    """RoPE-Mixed's initial frequency vectors (Heo et al. §3.3, rope-vit's ``init_random_2d_freqs``).

    Head h draws an angle α_h uniformly in [0, 2π). Its pairs j < n = head_dim/4 get
    f = θ_j·(cos α_h, sin α_h); pairs n + j get θ_j·(cos(α_h + π/2), sin(α_h + π/2)), with
    θ_j = base^(-4j/head_dim). Wrap the result in ``torch.nn.Parameter`` to learn it.

    Returns:
        float32 ``(heads, head_dim // 2, 2)``: the (f^x, f^y) of every head and pair.

    Lesson 08.
    """
    _check_head_dim(head_dim)
    heads = integer(heads, "heads", 1)
    magnitude = axial_frequencies(head_dim, base).double()
    alpha = torch.rand(heads, 1, generator=generator, dtype=torch.float64) * 2 * math.pi
    directions = torch.cat((alpha.expand(-1, len(magnitude)), (alpha + math.pi / 2).expand(-1, len(magnitude))), -1)
    magnitude = torch.cat((magnitude, magnitude))
    freqs = torch.stack((magnitude * directions.cos(), magnitude * directions.sin()), dim=-1)
    return freqs.to(torch.float32)


def mixed_cos_sin(positions: torch.Tensor, freqs: torch.Tensor):
    """cos and sin of φ = p · f for every position, head and pair (Heo et al. eq. 12).

    Args:
        positions: ``(seq, n_axes)`` (2 axes for images; 1 gives learned 1-D RoPE).
        freqs: ``(heads, pairs, n_axes)`` frequency vectors, e.g. a ``torch.nn.Parameter``
            made from :func:`mixed_frequencies`; gradients flow into it.

    Returns:
        ``(cos, sin)`` of shape ``(seq, heads, pairs)`` in freqs' dtype (at least
        float32): for x of shape ``(batch, seq, heads, 2·pairs)`` rotate with
        ``apply_rope(x, cos, sin, layout="paper")``. Lesson 08.
    """
    if not isinstance(freqs, torch.Tensor) or freqs.dim() != 3 or not freqs.is_floating_point():
        raise ValueError(f"freqs must be a floating-point (heads, pairs, n_axes) tensor, got {describe(freqs)}")
    if not isinstance(positions, torch.Tensor) or positions.dim() != 2 or positions.shape[-1] != freqs.shape[-1]:
        raise ValueError(f"positions must be a (seq, n_axes) tensor with n_axes = freqs.shape[-1] = "
                         f"{freqs.shape[-1]}, got {describe(positions)}")
    dtype = torch.promote_types(freqs.dtype, torch.float32)
    angles = torch.einsum("sa,hpa->shp", positions.to(dtype), freqs.to(dtype))
    return angles.cos(), angles.sin()


def grid_scores(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, height: int, width: int,
                query_index: int | None = None) -> torch.Tensor:
    """The score of one query patch with a key at every patch of the grid: a 2-D picture of
    which offsets a head prefers.

    Args:
        q, k: ``(head_dim,)`` one query and one key vector.
        cos, sin: ``(height·width, head_dim // 2)`` angles of every patch (one head), from
            :func:`axial_cos_sin` or ``mixed_cos_sin(...)[..., h, :]``.
        query_index: the query's patch (default: the centre of the grid).

    Returns:
        float ``(height, width)``: entry (y, x) is R(p_q) q · R(p_(x, y)) k, which depends
        only on p_(x, y) − p_q. Lesson 08 draws it.
    """
    n = height * width
    if cos.shape != (n, q.shape[-1] // 2) or q.shape != k.shape or q.dim() != 1:
        raise ValueError(f"q and k must be (head_dim,) and cos/sin (height·width, head_dim // 2) = "
                         f"({n}, {q.shape[-1] // 2}), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(cos.shape)}")
    if query_index is None:
        query_index = (height // 2) * width + width // 2
    q_rot = apply_rope(q.expand(1, -1), cos[query_index:query_index + 1], sin[query_index:query_index + 1], "paper")
    k_rot = apply_rope(k.expand(n, -1), cos, sin, "paper")
    return (k_rot @ q_rot[0]).reshape(height, width)


def _check_head_dim(head_dim):
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 4:
        raise ValueError(f"head_dim must be a positive multiple of 4 (pairs split between x and y), got {head_dim!r}")


def _check_positions(positions):
    if not isinstance(positions, torch.Tensor) or positions.dim() < 1 or positions.shape[-1] != 2:
        raise ValueError(f"positions must be a (..., 2) tensor of (x, y), got {describe(positions)}")
