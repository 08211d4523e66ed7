"""2-D RoPE (ropekit.rope2d) against the formulas of Heo et al. 2024 (rope-vit's
compute_axial_cis / compute_mixed_cis, written here from the paper with complex numbers),
with gradients of the learned frequencies checked by torch.autograd.gradcheck in float64."""


import inspect

import pytest
import torch

import ropekit
from ropekit import rope2d


def rotate_complex(x, angles):
    """The paper's form: pair (x_2i, x_2i+1) is a complex number, multiplied by e^{iφ_i}."""
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).flatten(-2)


def paper_axial_angles(head_dim, height, width, theta=100.0):
    """Heo et al. eq. 10: θ_j = theta^(-4j/d); pairs j follow x, pairs d/4 + j follow y."""
    j = torch.arange(head_dim // 4, dtype=torch.float64)
    freqs = theta ** (-4 * j / head_dim)
    t = torch.arange(height * width, dtype=torch.float64)
    x, y = t % width, torch.div(t, width, rounding_mode="floor")
    return torch.cat((x[:, None] * freqs, y[:, None] * freqs), dim=-1)  # (seq, d/2)


def paper_mixed_angles(freqs, height, width):
    """Heo et al. eq. 12: φ = x·f^x + y·f^y for every head and pair."""
    t = torch.arange(height * width, dtype=torch.float64)
    x, y = t % width, torch.div(t, width, rounding_mode="floor")
    f = freqs.double()
    return x[:, None, None] * f[None, :, :, 0] + y[:, None, None] * f[None, :, :, 1]  # (seq, heads, pairs)


def test_grid_positions_are_row_major_x_then_y():
    pos = rope2d.image_grid_positions(2, 3)
    assert pos.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]


def test_axial_rotation_matches_the_paper():
    torch.manual_seed(0)
    head_dim, height, width = 16, 3, 5
    x = torch.randn(2, height * width, 3, head_dim)
    cos, sin = rope2d.axial_cos_sin(rope2d.image_grid_positions(height, width), rope2d.axial_frequencies(head_dim))
    ours = ropekit.apply_rope(x, cos[:, None], sin[:, None], layout="paper")
    expected = rotate_complex(x, paper_axial_angles(head_dim, height, width)[:, None])
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-5)


def test_mixed_rotation_matches_the_paper_and_its_initialisation():
    head_dim, heads, height, width = 16, 4, 4, 3
    freqs = rope2d.mixed_frequencies(head_dim, heads, generator=torch.Generator().manual_seed(0))
    assert freqs.shape == (heads, head_dim // 2, 2)
    # Initialisation (§3.3): magnitudes θ_j = 10^(-4j/d) twice; the two halves point along α and α + π/2.
    theta = 10.0 ** (-4 * torch.arange(head_dim // 4, dtype=torch.float64) / head_dim)
    torch.testing.assert_close(freqs.double().norm(dim=-1), torch.cat((theta, theta)).expand(heads, -1),
                               rtol=1e-6, atol=0)
    first, second = freqs[:, : head_dim // 4].double(), freqs[:, head_dim // 4:].double()
    turned = torch.stack((-first[..., 1], first[..., 0]), dim=-1)  # first half turned by +π/2
    torch.testing.assert_close(second, turned, rtol=1e-6, atol=1e-7)
    alphas = torch.atan2(first[:, 0, 1], first[:, 0, 0])
    assert len(set(alphas.round(decimals=4).tolist())) == heads  # one random direction per head

    torch.manual_seed(1)
    x = torch.randn(2, height * width, heads, head_dim)
    cos, sin = rope2d.mixed_cos_sin(rope2d.image_grid_positions(height, width), freqs)
    ours = ropekit.apply_rope(x, cos, sin, layout="paper")
    expected = rotate_complex(x, paper_mixed_angles(freqs, height, width))
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-5)


def test_axial_is_mixed_with_axis_aligned_frequency_vectors():
    inv_freq = rope2d.axial_frequencies(16)
    zero = torch.zeros_like(inv_freq)
    freqs = torch.cat((torch.stack((inv_freq, zero), -1), torch.stack((zero, inv_freq), -1)))[None]
    pos = rope2d.image_grid_positions(3, 4)
    cos_a, sin_a = rope2d.axial_cos_sin(pos, inv_freq)
    cos_m, sin_m = rope2d.mixed_cos_sin(pos, freqs)
    torch.testing.assert_close(cos_m[:, 0], cos_a, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin_m[:, 0], sin_a, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_scores_depend_only_on_the_2d_offset(kind):
    torch.manual_seed(2)
    head_dim = 16
    q, k = torch.randn(head_dim, dtype=torch.float64), torch.randn(head_dim, dtype=torch.float64)
    freqs = rope2d.mixed_frequencies(head_dim, 1, generator=torch.Generator().manual_seed(3)).double()

    def rotate(v, p):
        p = torch.tensor([p], dtype=torch.float64)
        if kind == "axial":
            cos, sin = rope2d.axial_cos_sin(p, rope2d.axial_frequencies(head_dim))
        else:
            cos, sin = (t[:, 0] for t in rope2d.mixed_cos_sin(p, freqs))
        return ropekit.apply_rope(v[None, None], cos[None], sin[None], layout="paper")[0, 0]

    def score(p, p2):
        return rotate(q, p) @ rotate(k, p2)

    torch.testing.assert_close(score((1.0, 2.0), (4.0, 0.0)), score((6.0, 9.0), (9.0, 7.0)), rtol=1e-5, atol=1e-5)
    assert not torch.isclose(score((1.0, 2.0), (4.0, 0.0)), score((1.0, 2.0), (0.0, 4.0)), atol=1e-3)


def test_gradcheck_of_rope_mixed_in_float64():
    """The learned frequencies get exact gradients through mixed_cos_sin and apply_rope."""
    torch.manual_seed(4)
    head_dim, heads = 8, 2
    freqs = rope2d.mixed_frequencies(head_dim, heads, generator=torch.Generator().manual_seed(5)).double()
    freqs.requires_grad_(True)
    x = torch.randn(1, 6, heads, head_dim, dtype=torch.float64, requires_grad=True)
    pos = rope2d.image_grid_positions(2, 3).double()

    def rotate(x, freqs):
        cos, sin = rope2d.mixed_cos_sin(pos, freqs)
        return ropekit.apply_rope(x, cos, sin, layout="paper")

    assert torch.autograd.gradcheck(rotate, (x, freqs), eps=1e-6, atol=1e-7)


def test_one_axis_is_rope_with_learned_frequencies():
    """rotary-embedding-torch's learned_freq: inv_freq is a parameter. mixed_cos_sin with one
    axis computes rope_cos_sin's angles, and its float64 gradient passes gradcheck; the
    float32 gradient of rope_cos_sin itself is -m·sin(mθ) and m·cos(mθ)."""
    inv_freq, _ = ropekit.rope_frequencies(8)
    pos = torch.arange(5)
    cos, sin = rope2d.mixed_cos_sin(pos[:, None], inv_freq[None, :, None])
    ref_cos, ref_sin = ropekit.rope_cos_sin(pos, inv_freq)
    torch.testing.assert_close(cos[:, 0], ref_cos, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin[:, 0], ref_sin, rtol=0, atol=1e-6)

    learned = torch.nn.Parameter(inv_freq.double()[None, :, None].clone())
    assert torch.autograd.gradcheck(lambda f: torch.cat(rope2d.mixed_cos_sin(pos[:, None].double(), f)), (learned,))

    theta = torch.nn.Parameter(inv_freq.clone())
    cos, sin = ropekit.rope_cos_sin(pos, theta)
    (cos.sum() + sin.sum()).backward()
    m, angle = pos.double()[:, None], pos.double()[:, None] * inv_freq.double()
    torch.testing.assert_close(theta.grad.double(), (m * (angle.cos() - angle.sin())).sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: rope2d.axial_frequencies(10), "head_dim must be a positive multiple of 4"),
        (lambda: rope2d.mixed_frequencies(16, 0), "heads must be a positive integer"),
        (lambda: rope2d.image_grid_positions(0, 3), "height must be a positive integer"),
        (lambda: rope2d.axial_cos_sin(torch.zeros(4, 3), torch.ones(2)), r"positions must be a \(\.\.\., 2\)"),
        (lambda: rope2d.mixed_cos_sin(torch.zeros(4, 2), torch.ones(2, 3)), r"freqs must be a floating-point \(heads"),
        (lambda: rope2d.mixed_cos_sin(torch.zeros(4, 1), torch.ones(1, 2, 2)), "n_axes = freqs.shape"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_rope_mixed_sees_diagonals_that_axial_cannot():
    """An axial pair follows x or y alone, so the offsets (1, 1) and (1, −1) give the same
    angles up to sign per pair: the cosine parts of the score cannot tell them apart.
    A mixed pair whose direction is not axis-aligned turns by different amounts."""
    inv_freq = rope2d.axial_frequencies(16)
    a, b = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, -1.0]])
    cos_a, _ = rope2d.axial_cos_sin(a, inv_freq)
    cos_b, _ = rope2d.axial_cos_sin(b, inv_freq)
    torch.testing.assert_close(cos_a, cos_b, rtol=0, atol=0)
    freqs = rope2d.mixed_frequencies(16, 1, generator=torch.Generator().manual_seed(0))
    cos_ma, _ = rope2d.mixed_cos_sin(a, freqs)
    cos_mb, _ = rope2d.mixed_cos_sin(b, freqs)
    assert (cos_ma - cos_mb).abs().max() > 0.1


def test_grid_scores_are_the_dot_products_and_shift_with_the_query():
    torch.manual_seed(6)
    head_dim, height, width = 16, 5, 7
    q, k = torch.randn(head_dim, dtype=torch.float64), torch.randn(head_dim, dtype=torch.float64)
    pos = rope2d.image_grid_positions(height, width).double()
    cos, sin = rope2d.axial_cos_sin(pos, rope2d.axial_frequencies(head_dim))
    grid = rope2d.grid_scores(q, k, cos, sin, height, width, query_index=0)
    angles = paper_axial_angles(head_dim, height, width)
    expected = rotate_complex(k.expand(height * width, -1), angles) @ q  # query at (0, 0): no rotation
    torch.testing.assert_close(grid.reshape(-1).double(), expected, rtol=1e-5, atol=1e-5)
    moved = rope2d.grid_scores(q, k, cos, sin, height, width, query_index=width + 1)  # query at (1, 1)
    torch.testing.assert_close(moved[1:, 1:], grid[:-1, :-1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cos/sin \\(height·width, head_dim // 2\\)"):
        rope2d.grid_scores(q, k, cos[:3], sin[:3], height, width)


def test_axial_matches_qwen2_vl_vision_rotary_embedding():
    """transformers' Qwen2-VL vision encoder uses axial 2-D RoPE: the first half of the pairs
    follow the row h, the second the column w, base 10 000, rotate-half pairs."""
    pytest.importorskip("transformers")
    modeling = pytest.importorskip("transformers.models.qwen2_vl.modeling_qwen2_vl")
    vision_utils = pytest.importorskip("transformers.vision_utils")
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig

    head_dim, heads = 32, 2
    config = Qwen2VLVisionConfig(embed_dim=head_dim * heads, num_heads=heads, spatial_merge_size=2)
    if not hasattr(vision_utils, "get_vision_position_ids") or "config" not in inspect.signature(
            modeling.Qwen2VLVisionRotaryEmbedding).parameters:
        pytest.skip("this transformers builds Qwen2-VL's vision positions another way")
    rotary = modeling.Qwen2VLVisionRotaryEmbedding(config)
    positions = vision_utils.get_vision_position_ids(torch.tensor([[1, 4, 6], [2, 2, 4]]), 2)  # (n, 2): (h, w)
    torch.manual_seed(7)
    q, k = torch.randn(len(positions), heads, head_dim), torch.randn(len(positions), heads, head_dim)
    cos_hf, sin_hf = rotary(q, positions)
    q_hf, k_hf = modeling.apply_rotary_pos_emb_vision(q, k, cos_hf, sin_hf)

    cos, sin = rope2d.axial_cos_sin(positions, rope2d.axial_frequencies(head_dim, base=10000.0))
    torch.testing.assert_close(cos, cos_hf[:, : head_dim // 2], rtol=0, atol=1e-6)
    torch.testing.assert_close(ropekit.apply_rope(q, cos[:, None], sin[:, None], layout="half"), q_hf,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ropekit.apply_rope(k, cos[:, None], sin[:, None], layout="half"), k_hf,
                               rtol=1e-5, atol=1e-5)
