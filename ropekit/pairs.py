"""How much each feature pair adds to a RoPE attention score, as a function of distance.

The score of a query q at position m and a key k at position n is a sum over pairs,

    q·R_{n−m} k = Σ_i s_i(r),   s_i(r) = (q_a k_a + q_b k_b)·cos(rθ_i) + (q_b k_a − q_a k_b)·sin(rθ_i)

with r = n − m and (a, b) the two features of pair i. Barbero et al. 2024 ("Round and
Round We Go! What makes Rotary Positional Encodings useful?", §4-6) read a trained model
through these terms: a fast pair (large θ_i) swings between +|q_i||k_i| and −|q_i||k_i|
within a few tokens, so it can only carry *position* (e.g. a head that looks at the
previous token); a slow pair barely turns over the training context, so its term is
≈ q_i·k_i, a *semantic* match that ignores position, until the context is long enough for
it to turn too. p-RoPE (``rope_frequencies(..., scaling="proportional")``) stops the
slowest pairs from turning, so they stay semantic at any length. Lesson 08 measures it
on random vectors.
"""

from __future__ import annotations

import torch

from .reference import apply_rope, rope_cos_sin


def pair_scores(q: torch.Tensor, k: torch.Tensor, distances, inv_freq: torch.Tensor, layout: str = "half"):
    """s_i(r): the contribution of each pair i to the score of q (at 0) and k (at r).

    Args:
        q, k: ``(..., head_dim)`` with the same leading shape (e.g. ``(n_samples, head_dim)``);
            the first 2·len(inv_freq) features rotate, the rest are ignored.
        distances: ``(n_dist,)`` relative positions r = n − m (or an int n for ``arange(n)``).
        inv_freq: ``(rotary_dim // 2,)``.
        layout: ``"half"`` or ``"paper"``: which features form pair i.

    Returns:
        ``(..., n_dist, rotary_dim // 2)`` in the dtype of the math (float32, or float64 for
        float64 inputs); summed over the last axis it is the rotated part of q·R_r k.

    Lesson 08 (p-RoPE).
    """
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor) or q.shape != k.shape:
        raise ValueError(f"q and k must be tensors of the same shape (..., head_dim), got {q!r:.40} and {k!r:.40}")
    half = inv_freq.shape[-1]
    cos, sin = rope_cos_sin(distances, inv_freq)  # (n_dist, r/2)
    k_rot = apply_rope(k[..., None, : 2 * half].expand(*k.shape[:-1], cos.shape[0], 2 * half), cos, sin, layout)
    products = q[..., None, : 2 * half] * k_rot
    if layout == "half":
        return products[..., :half] + products[..., half:]
    return products[..., 0::2] + products[..., 1::2]
