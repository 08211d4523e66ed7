"""Reference solutions for lesson 09 (precision of the rotary angles).

Each function answers one exercise of ``lessons/09_precision.ipynb``; the notebook's check
cells run them when the stub is not filled in, so CI keeps them honest.
"""

import torch

import ropekit


def angle_table_error(positions, inv_freq, dtype):
    """Exercise 1: the largest |Δcos|, |Δsin| over pairs at each position when positions,
    θ_i and their product are all in `dtype`, against exact angles (float64)."""
    angle = positions.to(dtype)[:, None] * inv_freq.to(dtype)
    cos, sin = angle.cos().double(), angle.sin().double()
    cos_true, sin_true = ropekit.exact_cos_sin(positions, inv_freq, dtype=torch.float64)
    return torch.maximum((cos - cos_true).abs(), (sin - sin_true).abs()).amax(dim=-1)


def first_position_over(dtype, threshold, positions, inv_freq, window=32):
    """Exercise 2: the first of `positions` at which the largest error over `window`
    positions from there (the picture's measure) passes `threshold`; None if none does."""
    for m in positions.tolist():
        error = angle_table_error(torch.arange(m, m + window), inv_freq, dtype)
        if bool((error > threshold).any() | error.isnan().any()):
            return m
    return None


def predicted_first_position(threshold, dtype):
    """Exercise 3: the rounding model. One rounding of the fastest angle m·θ_0 (θ_0 = 1) is off
    by up to m·u with u = eps/2 the unit roundoff, and |Δcos| ≤ |Δangle|: so m = threshold/u."""
    return threshold / (torch.finfo(dtype).eps / 2)
