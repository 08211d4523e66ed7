"""Reference solutions for lesson 04 (context extension).

Each function answers one exercise of ``lessons/04_context_extension.ipynb``; the
notebook's check cells run them when the stub is not filled in, so CI keeps them honest.
"""

import torch


def pi_frequencies(dim, base, factor):
    """Exercise 1: Position Interpolation, θ'_i = base^(-2i/d) / factor (Chen et al. 2023)."""
    exponents = torch.arange(0, dim, 2, dtype=torch.float64) / dim  # 2i/d
    return base**-exponents / factor


def ntk_frequencies(dim, base, factor):
    """Exercise 2: NTK-aware scaling, the frequencies of the new base b' = b · s^(d/(d-2))."""
    new_base = base * factor ** (dim / (dim - 2))
    exponents = torch.arange(0, dim, 2, dtype=torch.float64) / dim
    return new_base**-exponents


def rerope_positions(length, window):
    """Exercise 3: ReRoPE's relative positions min(i − j, w) for j ≤ i, 0 above the diagonal."""
    i = torch.arange(length, dtype=torch.float64)
    return torch.tril((i[:, None] - i[None, :]).clamp(max=window))
