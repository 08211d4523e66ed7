"""Reference solutions for lesson 06 (context extension in a trained model).

Each function answers one exercise of ``lessons/06_context_extension_in_a_model.ipynb``;
the notebook's check cells run them when the stub is not filled in, so CI keeps them honest.
"""

import torch


def self_extend_positions(length, group, window):
    """Exercise 1: Self-Extend's relative positions (Jin et al. 2024, arXiv:2401.01325, §3).

    Neighbour attention keeps i − j for i − j < window; beyond it, grouped attention uses
    floor(i / G) − floor(j / G) + window − floor(window / G), so the two pieces meet at
    i − j = window. Returns float64 ``(length, length)``, 0 above the diagonal.
    """
    i = torch.arange(length)
    rel = i[:, None] - i[None, :]
    grouped = i[:, None] // group - i[None, :] // group + window - window // group
    return torch.tril(torch.where(rel < window, rel, grouped)).double()


def smallest_group(train_length, window, length):
    """Exercise 2: the smallest group size G for which every Self-Extend position of a
    ``length``-token sequence stays below the training length (no unseen position)."""
    group = 1
    while self_extend_positions(length, group, window).max() >= train_length:
        group += 1
    return group


def swiglu_flops(dim, hidden_dim):
    """Exercise 3: FLOPs per token of SwiGLU, W_down (SiLU(W_gate x) ⊙ W_up x): three
    dim × hidden products at 2 FLOPs per multiply-add, plus about 5 per hidden unit for
    the SiLU gate and the product (the counting of ``ropekit.model.costs``)."""
    return 2 * 2 * dim * hidden_dim + 5 * hidden_dim + 2 * hidden_dim * dim
