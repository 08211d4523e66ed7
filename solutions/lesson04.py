"""Reference solutions for lesson 04 (context extension).

Each function answers one exercise of ``lessons/04_context_extension.ipynb``; the
notebook's check cells run them when the stub is not filled in, so CI keeps them honest.
"""

import math

import torch

import ropekit
import ropekit.attention


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
    """Exercise 4: ReRoPE's relative positions min(i − j, w) for j ≤ i, 0 above the diagonal."""
    i = torch.arange(length, dtype=torch.float64)
    return torch.tril((i[:, None] - i[None, :]).clamp(max=window))


def _turns(dim, base, original):
    """r_i = L_0 / λ_i: how many full turns pair i makes over the training length."""
    theta = base ** -(torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return theta, original * theta / (2 * math.pi)


def yarn_paper(dim, base, factor, original, beta_fast=32.0, beta_slow=1.0):
    """Exercise 3a: YaRN's ramp as the paper writes it (§3.2), linear in r_i:
    γ_i = clamp((r_i − β_slow)/(β_fast − β_slow), 0, 1), θ'_i = (1 − γ_i)·θ_i/s + γ_i·θ_i."""
    theta, r = _turns(dim, base, original)
    gamma = ((r - beta_slow) / (beta_fast - beta_slow)).clamp(0, 1)
    return (1 - gamma) * theta / factor + gamma * theta


def yarn_hf(dim, base, factor, original, beta_fast=32.0, beta_slow=1.0):
    """Exercise 3b: the same ramp as Hugging Face computes it, linear in the pair index:
    solve r(i) = β for the fractional index i, round the ends outward (floor for β_fast,
    ceil for β_slow), and go linearly from γ = 1 at the first to γ = 0 at the second."""
    theta, _ = _turns(dim, base, original)

    def index(turns):  # r(i) = L_0 base^(-2i/d) / (2π) = turns, solved for i
        return dim * math.log(original / (turns * 2 * math.pi)) / (2 * math.log(base))

    low, high = max(math.floor(index(beta_fast)), 0), min(math.ceil(index(beta_slow)), dim - 1)
    i = torch.arange(dim // 2, dtype=torch.float64)
    gamma = 1 - ((i - low) / (high - low)).clamp(0, 1)
    return (1 - gamma) * theta / factor + gamma * theta


def rerope_two_matrices(q, k, v, inv_freq, window, leaky_factor=None):
    """Exercise 5: (Leaky) ReRoPE attention from scratch, half layout, causal.

    q, k, v: (batch, seq, heads, head_dim), as many key heads as query heads.
    a1_ij = ⟨R_i q_i, R_j k_j⟩ (position i − j); ReRoPE: a2_ij = ⟨R_w q_i, k_j⟩ (position w);
    Leaky (slope 1/k): a2_ij = ⟨R_{(i−w)/k + w} q_i, R_{j/k} k_j⟩. Keep a1 where i − j < w.
    """
    seq, head_dim = q.shape[1], q.shape[-1]
    pos = torch.arange(seq, dtype=torch.float64)

    def rot(x, positions):
        cos, sin = ropekit.rope_cos_sin(positions, inv_freq)
        return ropekit.apply_rope(x, cos[:, None], sin[:, None])  # a heads axis

    def logits(a, b):
        return torch.einsum("bqhd,bkhd->bhqk", a, b)

    a1 = logits(rot(q, pos), rot(k, pos))
    if leaky_factor is None:
        a2 = logits(rot(q, torch.full((seq,), float(window))), k)
    else:
        a2 = logits(rot(q, (pos - window) / leaky_factor + window), rot(k, pos / leaky_factor))
    distance = pos[:, None] - pos[None, :]
    a = torch.where(distance < window, a1, a2) / math.sqrt(head_dim)
    a = a.masked_fill(distance < 0, float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", a.softmax(dim=-1), v)


def rerope_decode_unrotated(q, k_cache, v_cache, position, inv_freq, window):
    """Exercise 6: ReRoPE's decode step over a cache of keys stored *before* rotation.

    q: (batch, 1, heads, head_dim) at ``position``; k_cache, v_cache: (batch, position + 1,
    heads, head_dim), raw keys. Key j gets q_iᵀ R_{max(j − i, −w)} k_j: inside the window
    the key is rotated by j − i; every older key shares R_{−w}, applied as ⟨R_w q_i, k_j⟩.
    """
    head_dim = q.shape[-1]
    j = torch.arange(k_cache.shape[1], dtype=torch.float64)
    rel = (j - position).clamp(min=-window)  # the rotation each key needs, relative to q
    cos, sin = ropekit.rope_cos_sin(rel, inv_freq)
    keys = ropekit.apply_rope(k_cache, cos[:, None], sin[:, None])  # R_{max(j-i,-w)} k_j
    a = torch.einsum("bqhd,bkhd->bhqk", q, keys) / math.sqrt(head_dim)
    return torch.einsum("bhqk,bkhd->bqhd", a.softmax(dim=-1), v_cache)


def rerope_log_n(q, k, v, inv_freq, window, train_length):
    """Exercise 7: ReRoPE attention with log-n scaling: each query n (1-based) is multiplied by
    max(1, log_L n), L the training length, before ``rerope_attention``."""
    n = torch.arange(1, q.shape[1] + 1, dtype=torch.float64)
    scale = (n.log() / math.log(train_length)).clamp(min=1)
    return ropekit.attention.rerope_attention(q * scale[:, None, None].to(q.dtype), k, v, inv_freq, window)
