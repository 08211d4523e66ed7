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


def xpos_attention(q, k, v, inv_freq, scale_base, layout="half"):
    """Exercise 4: causal RoPE attention with xPos (Sun et al. 2022), from scratch.

    q, k, v: (batch, seq, heads, head_dim); pair i of a query at position n is scaled by
    ζ_i^{(n − c)/B}, of a key at m by ζ_i^{−(m − c)/B}, ζ_i = (2i/r + 0.4)/1.4, c = (seq − 1)/2,
    then rotated; both features of pair i get ζ_i, laid out like the pairs of ``layout``.
    """
    import ropekit

    seq, head_dim = q.shape[1], q.shape[-1]
    half = inv_freq.shape[0]
    zeta = (2 * torch.arange(half, dtype=torch.float64) / (2 * half) + 0.4) / 1.4
    zeta = zeta.repeat(2) if layout == "half" else zeta.repeat_interleave(2)  # (i, i + r/2) or (2i, 2i + 1)
    pos = torch.arange(seq, dtype=torch.float64)
    power = ((pos - (seq - 1) / 2) / scale_base)[:, None, None]  # (seq, 1, 1) against (seq, heads, head_dim)
    cos, sin = ropekit.rope_cos_sin(pos, inv_freq)
    rq = ropekit.apply_rope(q * zeta**power, cos[:, None], sin[:, None], layout)
    rk = ropekit.apply_rope(k * zeta**-power, cos[:, None], sin[:, None], layout)
    logits = torch.einsum("bqhd,bkhd->bhqk", rq, rk) / math.sqrt(head_dim)
    logits = logits.masked_fill(pos[:, None] < pos[None, :], float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", logits.softmax(dim=-1), v)
