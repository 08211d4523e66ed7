"""How wrong each way of computing RoPE's cos/sin is, measured against exact angles.

A "recipe" is how a code base turns positions and frequencies into the cos/sin table:

* ``"exact"``: :func:`ropekit.exact_cos_sin`, the angle reduced modulo 2π in integers.
* ``"float32"``: the angle m·θ_i as one float32 product, as Hugging Face transformers,
  vLLM and ``ropekit.rope_cos_sin`` (the default) do.
* ``"bfloat16 table"`` / ``"float16 table"``: the float32 recipe, then the table stored
  in the model's dtype (what a cos/sin cache cast with the model holds).
* ``"bfloat16 angle"`` / ``"float16 angle"``: positions, θ_i and their product all in the
  model's dtype, the bug of GPT-NeoX #1003 and transformers #25681.

Every error is measured against the exact angles of the float64 θ_i, the formula's
frequencies: the error a recipe adds on top of the ideal rotation. Lesson 09 draws these
(``ropekit.viz.precision``).
"""

from __future__ import annotations

import torch

from .exact_angles import exact_cos_sin
from .reference import apply_rope, rope_cos_sin

RECIPES = ("exact", "float32", "bfloat16 table", "float16 table", "bfloat16 angle", "float16 angle")
_TABLE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def recipe_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, recipe: str):
    """cos and sin of m·θ_i as the named recipe computes them, returned in float64.

    Args:
        positions: integer ``(n,)`` (any shape) positions.
        inv_freq: ``(rotary_dim // 2,)`` float64 θ_i (``rope_frequencies(..., dtype=torch.float64)``);
            the float32 and low-precision recipes round them first, as models do.
        recipe: one of :data:`RECIPES`.

    Returns:
        ``(cos, sin)`` float64 of shape ``positions.shape + (rotary_dim // 2,)``; positions a
        float16 angle cannot hold (above 65504) give NaN, as they do in a model.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    if recipe == "exact":
        cos, sin = exact_cos_sin(positions, inv_freq)
    elif recipe == "float32":
        cos, sin = rope_cos_sin(positions, inv_freq.float())
    else:
        dtype_name, kind = recipe.split()
        dtype = _TABLE_DTYPES[dtype_name]
        if kind == "table":
            cos, sin = (t.to(dtype) for t in rope_cos_sin(positions, inv_freq.float()))
        else:
            angle = positions.to(dtype)[..., None] * inv_freq.to(dtype)
            cos, sin = angle.cos(), angle.sin()
            overflow = ~torch.isfinite(angle)
            cos, sin = cos.masked_fill(overflow, float("nan")), sin.masked_fill(overflow, float("nan"))
    return cos.double(), sin.double()


def cos_sin_error(positions: torch.Tensor, inv_freq: torch.Tensor, recipe: str) -> torch.Tensor:
    """Largest error of any cos or sin entry at each position: max_i max(|Δcos_i|, |Δsin_i|).

    Args: as :func:`recipe_cos_sin`. Returns float64 of ``positions.shape``, between 0 and 2
    (NaN where the recipe overflows). The truth is ``exact_cos_sin`` in float64.
    """
    cos, sin = recipe_cos_sin(positions, inv_freq, recipe)
    cos_true, sin_true = exact_cos_sin(positions, inv_freq, dtype=torch.float64)
    error = torch.maximum((cos - cos_true).abs(), (sin - sin_true).abs())
    return error.amax(dim=-1).masked_fill(error.isnan().any(dim=-1), float("nan"))


def rotation_error(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, recipe: str) -> torch.Tensor:
    """Relative error of the rotated vectors, ‖R̃_m x − R_m x‖ / ‖x‖, with the recipe's cos/sin.

    The rotation itself runs in float64, so only the angles' error shows.

    Args:
        x: ``(n, head_dim)`` vectors, one per position; half layout.
        positions: ``(n,)`` integer positions.
        inv_freq: ``(head_dim // 2,)`` float64 θ_i.

    Returns:
        float64 ``(n,)``.
    """
    x = x.double()
    cos, sin = recipe_cos_sin(positions, inv_freq, recipe)
    cos_true, sin_true = exact_cos_sin(positions, inv_freq, dtype=torch.float64)
    diff = apply_rope(x, cos, sin) - apply_rope(x, cos_true, sin_true)
    return diff.norm(dim=-1) / x.norm(dim=-1)


def logit_drift(q: torch.Tensor, k: torch.Tensor, distance: int, offsets: torch.Tensor, inv_freq: torch.Tensor,
                recipe: str) -> torch.Tensor:
    """How far the logit of one relative distance moves with the absolute position.

    RoPE promises ⟨R_{n+r} q, R_n k⟩ = ⟨q, R_{−r} k⟩ for every n (RoFormer eq. 16; lesson
    03's Toeplitz matrix). With the recipe's cos/sin the key sits at each offset n and the query
    r = ``distance`` tokens later; the result is that logit minus the exact ⟨q, R_{−r} k⟩.

    Args:
        q, k: ``(head_dim,)`` one query and one key (half layout).
        distance: r, the query's position minus the key's.
        offsets: ``(n,)`` integer key positions.
        inv_freq: ``(head_dim // 2,)`` float64 θ_i.

    Returns:
        float64 ``(n,)``: zero everywhere for an exact recipe.
    """
    cos_k, sin_k = recipe_cos_sin(offsets, inv_freq, recipe)
    cos_q, sin_q = recipe_cos_sin(offsets + distance, inv_freq, recipe)
    keys = apply_rope(k.double().expand(len(offsets), -1), cos_k, sin_k)
    queries = apply_rope(q.double().expand(len(offsets), -1), cos_q, sin_q)
    cos_r, sin_r = exact_cos_sin(torch.tensor([-distance]), inv_freq, dtype=torch.float64)
    exact = q.double() @ apply_rope(k.double()[None], cos_r, sin_r)[0]
    return (queries * keys).sum(dim=-1) - exact



def storage_error(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Relative error of storing vectors in ``dtype``, ‖x̃ − x‖ / ‖x‖ per row: the noise that a
    bfloat16 or float16 query or key carries before any rotation (2^-9 and 2^-12 per entry
    at most, relative). Args: x ``(n, head_dim)``. Returns float64 ``(n,)``."""
    x = x.double()
    return (x.to(dtype).double() - x).norm(dim=-1) / x.norm(dim=-1)


def log_positions(max_position: int = 2**31, per_octave: int = 4) -> torch.Tensor:
    """Integer positions spaced evenly on a log axis from 1 to max_position (int64)."""
    if not isinstance(max_position, int) or max_position < 2:
        raise ValueError(f"max_position must be an int >= 2, got {max_position!r}")
    octaves = max_position.bit_length() - 1
    grid = torch.logspace(0, octaves, octaves * per_octave + 1, base=2.0, dtype=torch.float64)
    return torch.unique(grid.round().long().clamp(max=max_position))
