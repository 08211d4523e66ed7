"""ropekit.precision: the error of each cos/sin recipe, checked against independent formulas."""

import math

import pytest
import torch

from ropekit import rope_frequencies, rotation_matrix
from ropekit.precision import RECIPES, cos_sin_error, log_positions, logit_drift, recipe_cos_sin, rotation_error


def inv_freq64(dim=128, base=10000.0):
    return rope_frequencies(dim, base, dtype=torch.float64)[0]


def test_float32_recipe_is_the_float32_product():
    inv = inv_freq64(64)
    m = torch.arange(0, 200_000, 1013)
    cos, sin = recipe_cos_sin(m, inv, "float32")
    angle = m.float()[:, None] * inv.float()
    assert torch.equal(cos, angle.cos().double()) and torch.equal(sin, angle.sin().double())


def test_float16_angle_reproduces_gpt_neox_1003():
    # The report: dim 32, base 10000, 2048 positions; at position 1857 pair 1 the fp16 angle
    # is 1045 instead of 1044.2678, and the fp16 cos table is off from the float32 one by up
    # to 0.7819.
    inv = inv_freq64(32)
    m = torch.arange(2048)
    assert (torch.tensor(1857.0).half() * inv[1].half()).item() == 1045.0
    cos16, _ = recipe_cos_sin(m, inv, "float16 angle")
    cos32, _ = recipe_cos_sin(m, inv, "float32")
    assert (cos16 - cos32).abs().max().item() == pytest.approx(0.7819, abs=1e-3)


def test_float16_angle_overflows_to_nan_past_65504():
    error = cos_sin_error(torch.tensor([65504, 70000]), inv_freq64(16), "float16 angle")
    assert not math.isnan(error[0].item()) and math.isnan(error[1].item())


def test_table_recipes_err_by_half_a_unit_of_their_dtype_at_short_positions():
    m = torch.arange(0, 2000, 7)
    for recipe, unit in (("bfloat16 table", 2.0**-8), ("float16 table", 2.0**-11)):
        worst = cos_sin_error(m, inv_freq64(), recipe).max().item()
        # + the float32 angle's own error below position 2000: < 2000 · 2^-24 rad
        assert unit / 4 < worst <= unit / 2 + 2000 * 2.0**-24, recipe


def test_exact_recipe_is_within_1e_6_and_float32_is_not_at_long_positions():
    m = torch.tensor([10**7, 2**31])
    assert cos_sin_error(m, inv_freq64(), "exact").max() <= 1e-6
    assert cos_sin_error(m, inv_freq64(), "float32").min() > 0.1


def test_rotation_error_is_the_chord_of_each_pairs_angle_error():
    # Turning a pair v by a instead of b moves it by 2|sin((a − b)/2)|·|v|: a formula that
    # needs no rotation code. float64 m·θ is the truth here (m ≤ 10^6), and the positions
    # are far enough out that the angle error dwarfs float32's rounding of cos and sin.
    inv = inv_freq64(64)
    m = torch.tensor([50_000, 200_000, 1_000_000])
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    delta = m.float()[:, None] * inv.float() - m.double()[:, None] * inv
    pair_norm2 = x[:, :32] ** 2 + x[:, 32:] ** 2
    expected = (pair_norm2 * (2 * (delta / 2).sin()) ** 2).sum(-1).sqrt() / x.norm(dim=-1)
    torch.testing.assert_close(rotation_error(x, m, inv, "float32"), expected, rtol=2e-3, atol=0)


def test_logit_drift_is_zero_for_exact_angles_and_grows_for_float32():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(128, generator=g), torch.randn(128, generator=g)
    scale = (q.norm() * k.norm()).item()
    offsets = torch.tensor([0, 10**4, 10**6, 10**7, 2**31 - 10])
    assert logit_drift(q, k, 5, offsets, inv_freq64(), "exact").abs().max() <= 1e-6 * scale
    drift32 = logit_drift(q, k, 5, offsets, inv_freq64(), "float32").abs()
    assert drift32[0] <= 1e-6 * scale and drift32[3] > 1e-3 * scale


def test_logit_drift_matches_rotation_matrices():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    inv = inv_freq64(16)
    offsets = torch.tensor([0, 3, 40])
    logits = torch.tensor([(rotation_matrix(n + 7, 16, layout="half", inv_freq=inv) @ q)
                           @ (rotation_matrix(n, 16, layout="half", inv_freq=inv) @ k) for n in offsets.tolist()])
    exact = q @ rotation_matrix(-7, 16, layout="half", inv_freq=inv) @ k
    torch.testing.assert_close(logit_drift(q, k, 7, offsets, inv, "exact"), logits - exact, atol=1e-5, rtol=0)


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="recipe must be one of"):
        recipe_cos_sin(torch.tensor([1]), inv_freq64(8), "float64")
    assert len(RECIPES) == 6


def test_log_positions_span_one_to_the_maximum_evenly_in_log():
    p = log_positions(2**20, per_octave=2)
    assert p[0] == 1 and p[-1] == 2**20 and p.dtype == torch.int64
    ratios = p[1:].double() / p[:-1].double()
    assert torch.allclose(ratios[5:], torch.full_like(ratios[5:], math.sqrt(2)), rtol=0.05)
    with pytest.raises(ValueError, match="max_position must be an int >= 2"):
        log_positions(1)
