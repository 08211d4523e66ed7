"""Reference solutions to the exercises of lesson 02 (rotation matrices).

The notebook's check cells run these when the student's stub is still empty, so CI keeps
them correct. Try the exercises before reading on.
"""

import torch


def rope_paper(x, cos, sin):
    """RoFormer eq. 34 in the paper layout: pair i is features (2i, 2i+1).

    x: (..., seq, d); cos, sin: (..., seq, d/2), holding cos(m·θ_i) and sin(m·θ_i).
    """
    a, b = x[..., 0::2], x[..., 1::2]  # first and second member of every pair
    y = torch.empty_like(x)
    y[..., 0::2] = a * cos - b * sin
    y[..., 1::2] = b * cos + a * sin
    return y


def rotate_half(x):
    """[x1, x2] -> [-x2, x1] for the two halves of the last dimension: every half-layout
    pair (i, i + d/2) turned by 90 degrees."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def half_layout_order(d):
    """The feature order that turns a paper-layout vector into a half-layout one:
    first members of all pairs (0, 2, 4, ...), then all second members (1, 3, 5, ...)."""
    return torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))


def rotate_half_interleaved(x):
    """rotary-embedding-torch's ``rotate_half``, despite the name: pairs are neighbours
    (2i, 2i+1), and each becomes (-x[2i+1], x[2i]), the paper-layout pair turned by 90 degrees."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., d/2, 2): member 0 and member 1 of every pair
    a, b = pairs.unbind(-1)
    return torch.stack((-b, a), dim=-1).flatten(-2)
