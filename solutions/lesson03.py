"""Reference solutions for lesson 03 (relative positions).

Each function answers one exercise of ``lessons/03_relative_positions.ipynb``; the
notebook's check cells run them when the stub is not filled in, so CI keeps them honest.
"""

import math

import torch


def relative_positions(length):
    """Exercise 1: the (length, length) matrix of i − j, with 0 above the diagonal."""
    i = torch.arange(length, dtype=torch.float64)
    return torch.tril(i[:, None] - i[None, :])


def logit_at_distance(q, k, delta, base=10000.0):
    """Exercise 2: RoFormer eq. 35, Re Σ_i q̃_i conj(k̃_i) e^{iΔθ_i}, half layout (pair i = (i, i + d/2))."""
    half = q.shape[-1] // 2
    theta = base ** (-2 * torch.arange(half, dtype=torch.float64) / q.shape[-1])
    q_pairs = torch.complex(q[:half].double(), q[half:].double())
    k_pairs = torch.complex(k[:half].double(), k[half:].double())
    turn = torch.polar(torch.ones_like(theta), delta * theta)  # e^{iΔθ_i}
    return (q_pairs * k_pairs.conj() * turn).real.sum()


def count_long_pairs(dim, base, train_len):
    """Exercise 3: how many pairs have a wavelength 2π/θ_i = 2π·b^(2i/d) longer than train_len."""
    i = torch.arange(dim // 2, dtype=torch.float64)
    wavelength = 2 * math.pi * base ** (2 * i / dim)
    return int((wavelength > train_len).sum())
