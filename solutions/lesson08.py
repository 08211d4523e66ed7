"""Reference solutions to the exercises of lesson 08 (RoPE in 2-D and 3-D).

The notebook's check cells run these when the student's stub is still empty, so CI keeps
them correct. Try the exercises before reading on.
"""

import math

import torch

import ropekit


def axial_cos_sin(positions, inv_freq):
    """Exercise 1: the axial angles of Heo et al. eq. 10 with ropekit.rope_cos_sin:
    pairs j follow x (x·θ_j), pairs n + j follow y (y·θ_j). Returns stack((cos, sin))."""
    cos_x, sin_x = ropekit.rope_cos_sin(positions[..., 0], inv_freq)
    cos_y, sin_y = ropekit.rope_cos_sin(positions[..., 1], inv_freq)
    return torch.stack((torch.cat((cos_x, cos_y), dim=-1), torch.cat((sin_x, sin_y), dim=-1)))


def interleaved_pair_axes(sections):
    """Exercise 2: Qwen3-VL's axis of each pair: h when i % 3 == 1 and i < 3·n_h, w when
    i % 3 == 2 and i < 3·n_w, t otherwise."""
    n_t, n_h, n_w = sections
    axes = []
    for i in range(n_t + n_h + n_w):
        if i % 3 == 1 and i < 3 * n_h:
            axes.append(1)
        elif i % 3 == 2 and i < 3 * n_w:
            axes.append(2)
        else:
            axes.append(0)
    return torch.tensor(axes)


def nope_temperature(positions, floor_scale, attn_scale):
    """Exercise 3: Llama 4's NoPE query temperature τ(m) = 1 + attn_scale·ln(1 + ⌊(m + 1)/floor_scale⌋)."""
    return torch.tensor([1 + attn_scale * math.log(1 + (m + 1) // floor_scale) for m in positions.tolist()])
