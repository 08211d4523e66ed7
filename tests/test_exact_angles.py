"""Exact rotary angles (ropekit.exact_angles) against an exact rational reduction modulo 2π.

The truth here is computed without floats: θ_i is the exact value of its float64, π comes
from Euler's arctan formula (π/4 = arctan(1/2) + arctan(1/3), not the library's Machin
formula) to 320 bits, and m·θ_i/(2π) is reduced modulo one turn as a Fraction. Only the
reduced phase, in [−1/2, 1/2] turn, is turned into a float64 cos.
"""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit import exact_cos_sin, fixed_point_turns, rope_cos_sin, rope_frequencies
from ropekit.exact_angles import MAX_POSITION, exact_phase

from exact_turns import PI, true_cos_sin, true_turns  # noqa: E402


# Positions where float32 breaks in different ways: 2^24 is where float32 stops holding
# every integer, 10^7 is the example, 2^31 the promised range.
LONG_POSITIONS = [0, 1, 2, 1857, 65535, 10**5, 10**6, 2**24 - 1, 2**24 + 1, 10**7, 123456789,
                  2**30 + 12345, 2**31 - 1, 2**31, -1, -(2**31)]

SCHEDULES = {
    "plain": dict(),
    "linear": dict(scaling="linear", factor=4.0),
    "ntk": dict(scaling="ntk", factor=8.0),
    "dynamic": dict(scaling="dynamic", factor=4.0, seq_len=100_000, original_max_position_embeddings=4096),
    "yarn": dict(scaling="yarn", factor=16.0, original_max_position_embeddings=4096),
    "llama3": dict(scaling="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=8192),
    "longrope": dict(scaling="longrope", short_factor=[1.0 + i / 64 for i in range(64)],
                     long_factor=[1.0 + i / 8 for i in range(64)], original_max_position_embeddings=4096,
                     seq_len=131072, factor=32.0),
}


# --- the host side -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULES)
def test_fixed_point_turns_are_the_rounded_exact_step(name):
    inv_freq, _ = rope_frequencies(128, 10000.0, dtype=torch.float64, **SCHEDULES[name])
    got = fixed_point_turns(inv_freq).tolist()
    for theta, f in zip(inv_freq.tolist(), got):
        exact = Fraction(theta) / (2 * PI) * 2**64
        expected = round(exact) % 2**64
        assert f % 2**64 == expected
        assert -(2**63) <= f < 2**63
        assert abs(Fraction(f % 2**64) - exact) <= Fraction(1, 2)


def test_fixed_point_turns_wrap_steps_longer_than_a_turn():
    # θ = 7 rad is 1.114 turns: only the 0.114 turn beyond the whole one may be kept.
    f = fixed_point_turns(torch.tensor([7.0, -7.0], dtype=torch.float64)).tolist()
    for theta, got in zip((7.0, -7.0), f):
        assert Fraction(got, 2**64) == pytest.approx(float(true_turns(1, theta)), abs=2**-60)


def test_fixed_point_turns_reject_what_is_not_a_frequency():
    with pytest.raises(ValueError, match="inv_freq must be finite"):
        fixed_point_turns(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="inv_freq must be a 1-D floating-point"):
        fixed_point_turns(torch.tensor([1, 2]))


# --- the phase and the cos/sin, against the exact reduction --------------------------------


@given(m=st.integers(-MAX_POSITION, MAX_POSITION), f=st.integers(-(2**63), 2**63 - 1))
@settings(max_examples=200, deadline=None)
def test_limb_phase_equals_the_wrapping_64_bit_product(m, f):
    """The overflow-free limbs give what a wrapping int64 multiply (the kernel's) gives."""
    wrapped = (m * f) % 2**64
    expected = Fraction(wrapped, 2**64)
    expected -= round(expected)
    got = exact_phase(torch.tensor([m]), torch.tensor([f]))
    diff = abs(float(got) - float(expected))
    assert min(diff, 1 - diff) <= 2**-50


@pytest.mark.parametrize("name", SCHEDULES)
def test_exact_cos_sin_within_1e_6_up_to_2_31_for_every_schedule(name):
    inv_freq, _ = rope_frequencies(128, 10000.0, dtype=torch.float64, **SCHEDULES[name])
    cos_true, sin_true = true_cos_sin(LONG_POSITIONS, inv_freq)
    cos, sin = exact_cos_sin(torch.tensor(LONG_POSITIONS), inv_freq)
    assert cos.dtype == sin.dtype == torch.float32
    assert (cos.double() - cos_true).abs().max() <= 1e-6
    assert (sin.double() - sin_true).abs().max() <= 1e-6
    # In float64 the only error left is the rounding of F_i: m·2^-65 turn.
    cos64, sin64 = exact_cos_sin(torch.tensor(LONG_POSITIONS), inv_freq, dtype=torch.float64)
    assert (cos64 - cos_true).abs().max() <= 1e-9
    assert (sin64 - sin_true).abs().max() <= 1e-9


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=10, deadline=None)
def test_exact_cos_sin_within_1e_6_at_random_positions_up_to_2_31(seed):
    g = torch.Generator().manual_seed(seed)
    positions = torch.randint(0, 2**31 + 1, (6,), generator=g, dtype=torch.int64)
    inv_freq, _ = rope_frequencies(64, 500000.0, dtype=torch.float64)
    cos_true, sin_true = true_cos_sin(positions.tolist(), inv_freq)
    cos, sin = exact_cos_sin(positions, inv_freq)
    assert (cos.double() - cos_true).abs().max() <= 1e-6
    assert (sin.double() - sin_true).abs().max() <= 1e-6


def test_exact_cos_sin_agrees_with_float64_math_where_float64_is_enough():
    # Below 10^5 the float64 product m·θ is off by < 10^5 · 2^-53 rad: a second, float reference.
    inv_freq, _ = rope_frequencies(128, 10000.0, dtype=torch.float64)
    m = torch.arange(0, 100_000, 997)
    angle = m.double()[:, None] * inv_freq
    cos, sin = exact_cos_sin(m, inv_freq, dtype=torch.float64)
    torch.testing.assert_close(cos, angle.cos(), atol=1e-10, rtol=0)
    torch.testing.assert_close(sin, angle.sin(), atol=1e-10, rtol=0)


def test_exact_cos_sin_matches_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 200
    inv_freq, _ = rope_frequencies(16, 10000.0, dtype=torch.float64)
    cos, sin = exact_cos_sin(torch.tensor([2**31, 10**7]), inv_freq, dtype=torch.float64)
    for row, m in enumerate((2**31, 10**7)):
        for i, theta in enumerate(inv_freq.tolist()):
            angle = mpmath.mpf(m) * mpmath.mpf(theta)
            assert abs(cos[row, i].item() - float(mpmath.cos(angle))) <= 1e-9
            assert abs(sin[row, i].item() - float(mpmath.sin(angle))) <= 1e-9


def test_float32_angles_are_far_off_where_exact_ones_are_not():
    """The reason for this module: at m = 10^7 the float32 angle of the fast pairs is wrong."""
    inv_freq, _ = rope_frequencies(128, 10000.0, dtype=torch.float64)
    positions = [10**7, 2**31]
    cos_true, _ = true_cos_sin(positions, inv_freq)
    cos32, _ = rope_cos_sin(torch.tensor(positions), inv_freq)
    cos_exact, _ = rope_cos_sin(torch.tensor(positions), inv_freq, angles="exact")
    assert (cos32.double() - cos_true).abs().max() > 0.1
    assert (cos_exact.double() - cos_true).abs().max() <= 1e-6


# --- rope_cos_sin(angles=...) -------------------------------------------------------------


def test_rope_cos_sin_default_is_the_float32_product():
    inv_freq, _ = rope_frequencies(64, 10000.0)
    m = torch.arange(0, 50_000, 7)
    angle = m.float()[:, None] * inv_freq  # what transformers computes
    cos, sin = rope_cos_sin(m, inv_freq)
    assert torch.equal(cos, angle.cos()) and torch.equal(sin, angle.sin())


def test_rope_cos_sin_exact_takes_turns_ints_batches_and_attention_factor():
    inv_freq, att = rope_frequencies(32, 10000.0, "yarn", dtype=torch.float64, factor=4.0,
                                     original_max_position_embeddings=2048)
    position_ids = torch.tensor([[0, 1, 2], [2**31 - 2, 2**31 - 1, 2**31]])
    cos, sin = rope_cos_sin(position_ids, inv_freq, att, angles="exact")
    assert cos.shape == sin.shape == (2, 3, 16)
    cos_true, sin_true = true_cos_sin(position_ids.flatten().tolist(), inv_freq)
    torch.testing.assert_close(cos.double(), att * cos_true.reshape(2, 3, 16), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin.double(), att * sin_true.reshape(2, 3, 16), atol=1e-6, rtol=0)
    turns = fixed_point_turns(inv_freq)
    cos_t, sin_t = rope_cos_sin(position_ids, turns, att, angles="exact")
    assert torch.equal(cos_t, cos) and torch.equal(sin_t, sin)
    cos_n, _ = rope_cos_sin(5, inv_freq, angles="exact")
    torch.testing.assert_close(cos_n.double(), (torch.arange(5).double()[:, None] * inv_freq).cos(), atol=1e-7,
                               rtol=0)


def test_float32_frequencies_are_taken_at_their_exact_value():
    # A float32 θ is a different (rounded) frequency: exact angles of it, not of the formula.
    inv32, _ = rope_frequencies(16, 10000.0)
    cos, _ = exact_cos_sin(torch.tensor([2**31]), inv32)
    cos_true, _ = true_cos_sin([2**31], inv32)
    assert (cos.double() - cos_true).abs().max() <= 1e-6


def test_exact_angles_reject_bad_input():
    inv_freq, _ = rope_frequencies(8, dtype=torch.float64)
    with pytest.raises(ValueError, match="angles must be 'float32' or 'exact'"):
        rope_cos_sin(4, inv_freq, angles="float64")
    with pytest.raises(TypeError, match="exact angles need integer positions"):
        rope_cos_sin(torch.tensor([0.5]), inv_freq, angles="exact")
    with pytest.raises(ValueError, match=r"\|m\| <= 2\^41 - 1"):
        rope_cos_sin(torch.tensor([2**41]), inv_freq, angles="exact")
    with pytest.raises(ValueError, match="turns must be the int64"):
        exact_phase(torch.tensor([1]), inv_freq)
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        rope_frequencies(8, dtype=torch.float16)
