"""rope_frequencies against the formulas of each paper, evaluated independently in float64."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ropekit.frequencies
from ropekit import rope_frequencies, wavelengths


def plain_theta(dim, base):
    """θ_i = base^(-2i/d), RoFormer eq. 15, one pair at a time in float64."""
    return [math.pow(base, -2 * i / dim) for i in range(dim // 2)]


def assert_matches(inv_freq, expected, rtol=1e-6):
    assert inv_freq.dtype == torch.float32
    torch.testing.assert_close(inv_freq.double(), torch.tensor(expected, dtype=torch.float64), rtol=rtol, atol=0)


@pytest.mark.parametrize("dim,base", [(2, 10000.0), (64, 10000.0), (128, 500000.0), (96, 1e6)])
def test_plain_rope_is_the_roformer_schedule(dim, base):
    inv_freq, attention_factor = rope_frequencies(dim, base)
    assert inv_freq.shape == (dim // 2,)
    assert attention_factor == 1.0
    assert_matches(inv_freq, plain_theta(dim, base))


def test_first_pair_turns_one_radian_per_token_and_wavelengths_follow():
    inv_freq, _ = rope_frequencies(64)
    assert inv_freq[0].item() == 1.0
    torch.testing.assert_close(wavelengths(inv_freq)[0], torch.tensor(2 * math.pi, dtype=torch.float64))
    # the slowest pair's wavelength is 2π · base^((d-2)/d)
    assert wavelengths(inv_freq)[-1].item() == pytest.approx(2 * math.pi * 10000 ** (62 / 64), rel=1e-6)


def test_linear_is_position_interpolation():
    inv_freq, att = rope_frequencies(64, scaling="linear", factor=4.0)
    assert_matches(inv_freq, [t / 4 for t in plain_theta(64, 10000.0)])
    assert att == 1.0


def test_ntk_changes_the_base_so_the_fastest_pair_stays_and_the_slowest_is_interpolated():
    dim, base, factor = 128, 10000.0, 8.0
    inv_freq, _ = rope_frequencies(dim, base, "ntk", factor=factor)
    new_base = base * factor ** (dim / (dim - 2))
    assert_matches(inv_freq, plain_theta(dim, new_base))
    plain, _ = rope_frequencies(dim, base)
    assert inv_freq[0].item() == plain[0].item() == 1.0
    assert (plain[-1] / inv_freq[-1]).item() == pytest.approx(factor, rel=1e-6)


def test_dynamic_ntk_is_plain_rope_inside_the_training_length():
    cfg = dict(factor=4.0, original_max_position_embeddings=2048)
    plain, _ = rope_frequencies(64)
    for seq_len in (1, 100, 2048):
        inv_freq, _ = rope_frequencies(64, scaling="dynamic", seq_len=seq_len, **cfg)
        torch.testing.assert_close(inv_freq, plain, rtol=1e-6, atol=0)


def test_dynamic_ntk_grows_the_base_with_the_sequence():
    dim, base, L0, factor = 64, 10000.0, 2048, 4.0
    inv_freq, _ = rope_frequencies(dim, base, "dynamic", factor=factor, seq_len=3 * L0, original_max_position_embeddings=L0)
    # b' = b · (s·L/L0 − (s − 1))^(d/(d−2)) with L = 3·L0: (12 − 3) = 9
    assert_matches(inv_freq, plain_theta(dim, base * 9 ** (dim / (dim - 2))))


def yarn_by_hand(dim, base, factor, L0, beta_fast=32.0, beta_slow=1.0):
    """YaRN §3.2 step by step: r_i = L0 / λ_i rotations; ramp between the pair indices
    where r = beta_fast and r = beta_slow (rounded outwards), then blend."""
    def pair_at(rotations):  # solve L0·θ_i/(2π) = rotations for i
        return dim * math.log(L0 / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = max(math.floor(pair_at(beta_fast)), 0), min(math.ceil(pair_at(beta_slow)), dim - 1)
    out = []
    for i, theta in enumerate(plain_theta(dim, base)):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0 = fast pair, 1 = slow pair
        out.append((1 - ramp) * theta + ramp * theta / factor)
    return out, low, high


def test_yarn_ramps_between_beta_fast_and_beta_slow():
    dim, base, factor, L0 = 128, 10000.0, 16.0, 4096
    inv_freq, att = rope_frequencies(dim, base, "yarn", factor=factor, original_max_position_embeddings=L0)
    expected, low, high = yarn_by_hand(dim, base, factor, L0)
    assert_matches(inv_freq, expected)
    # Worked by hand: 128·ln(4096/(64π))/(2 ln 1e4) = 20.9 -> 20 and 128·ln(4096/(2π))/(2 ln 1e4) = 45.0 -> 46.
    assert (low, high) == (20, 46)
    plain = torch.tensor(plain_theta(dim, base), dtype=torch.float64)
    assert torch.allclose(inv_freq[: low + 1].double(), plain[: low + 1], rtol=1e-6)  # fast pairs extrapolate
    assert torch.allclose(inv_freq[high:].double(), plain[high:] / factor, rtol=1e-6)  # slow pairs interpolate
    assert att == pytest.approx(0.1 * math.log(factor) + 1)  # eq. 22: √(1/t) = 0.1 ln s + 1


def test_yarn_attention_factor_overrides():
    cfg = dict(factor=40.0, original_max_position_embeddings=4096)
    assert rope_frequencies(64, scaling="yarn", attention_factor=1.5, **cfg)[1] == 1.5
    # DeepSeek-V3 style: mscale = mscale_all_dim cancels to 1
    assert rope_frequencies(64, scaling="yarn", mscale=1.0, mscale_all_dim=1.0, **cfg)[1] == pytest.approx(1.0)
    ratio = (0.1 * 0.707 * math.log(40) + 1) / (0.1 * 1.0 * math.log(40) + 1)
    assert rope_frequencies(64, scaling="yarn", mscale=0.707, mscale_all_dim=1.0, **cfg)[1] == pytest.approx(ratio)


def test_llama3_bands_by_wavelength():
    dim, base, factor, L0, low_ff, high_ff = 128, 500000.0, 8.0, 8192, 1.0, 4.0
    inv_freq, att = rope_frequencies(
        dim, base, "llama3", factor=factor, original_max_position_embeddings=L0,
        low_freq_factor=low_ff, high_freq_factor=high_ff,
    )
    expected, bands = [], []
    for theta in plain_theta(dim, base):
        wavelength = 2 * math.pi / theta
        if wavelength < L0 / high_ff:  # shorter than 2048 tokens: untouched
            expected.append(theta); bands.append("high")
        elif wavelength > L0 / low_ff:  # longer than 8192 tokens: interpolated
            expected.append(theta / factor); bands.append("low")
        else:
            s = (L0 / wavelength - low_ff) / (high_ff - low_ff)
            expected.append((1 - s) * theta / factor + s * theta); bands.append("mid")
    assert_matches(inv_freq, expected)
    assert att == 1.0
    assert {"high", "mid", "low"} <= set(bands)  # the test covers all three bands


def test_longrope_picks_short_or_long_factors_by_length():
    dim, L0 = 8, 4096
    short, long = [1.0, 1.5, 2.0, 3.0], [1.0, 4.0, 8.0, 16.0]
    cfg = dict(short_factor=short, long_factor=long, original_max_position_embeddings=L0, factor=32.0)
    theta = plain_theta(dim, 10000.0)
    inv_short, att = rope_frequencies(dim, scaling="longrope", seq_len=L0, **cfg)
    inv_long, _ = rope_frequencies(dim, scaling="longrope", seq_len=L0 + 1, **cfg)
    assert_matches(inv_short, [t / r for t, r in zip(theta, short)])
    assert_matches(inv_long, [t / r for t, r in zip(theta, long)])
    assert att == pytest.approx(math.sqrt(1 + math.log(32) / math.log(L0)))


@settings(max_examples=30, deadline=None)
@given(dim=st.sampled_from([4, 16, 64, 128]), base=st.floats(2.0, 1e7))
def test_factor_one_is_the_identity_for_every_schedule(dim, base):
    plain, _ = rope_frequencies(dim, base)
    L0 = 1024
    for scaling, extra in [
        ("linear", {}),
        ("ntk", {}),
        # dynamic NTK is not the identity at factor 1 once seq_len > L0: its base grows as
        # (seq_len/L0)^(d/(d-2)) (that is the formula models use); inside L0 it is.
        ("dynamic", dict(seq_len=L0, original_max_position_embeddings=L0)),
        ("yarn", dict(original_max_position_embeddings=L0)),
        ("llama3", dict(original_max_position_embeddings=L0, low_freq_factor=1.0, high_freq_factor=4.0)),
    ]:
        inv_freq, att = rope_frequencies(dim, base, scaling, factor=1.0, **extra)
        torch.testing.assert_close(inv_freq, plain, rtol=1e-6, atol=0, msg=f"scaling={scaling}")
        assert att == 1.0


@settings(max_examples=30, deadline=None)
@given(dim=st.sampled_from([4, 32, 128]), factor=st.floats(1.0, 64.0))
def test_schedules_never_speed_a_pair_up_nor_slow_it_beyond_the_factor(dim, factor):
    plain, _ = rope_frequencies(dim)
    L0 = 2048
    for scaling, extra in [
        ("linear", {}),
        ("ntk", {}),
        ("yarn", dict(original_max_position_embeddings=L0)),
        ("llama3", dict(original_max_position_embeddings=L0, low_freq_factor=1.0, high_freq_factor=4.0)),
    ]:
        inv_freq, _ = rope_frequencies(dim, scaling=scaling, factor=factor, **extra)
        ratio = (plain.double() / inv_freq.double())
        assert bool((ratio >= 1 - 1e-6).all() and (ratio <= factor * (1 + 1e-6)).all()), scaling


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(dim=7), ValueError, "dim must be a positive even"),
        (dict(dim=0), ValueError, "dim must be a positive even"),
        (dict(dim=8, base=1.0), ValueError, "base must be"),
        (dict(dim=8, base=0.5), ValueError, "base must be"),
        (dict(dim=8, scaling="rerope"), ValueError, "scaling must be one of"),
        (dict(dim=2, scaling="ntk", factor=2.0), ValueError, "dim must be at least 4"),
        (dict(dim=8, scaling="linear"), TypeError, "factor"),
        (dict(dim=8, scaling="linear", factor=0.5), ValueError, "factor must be a finite number >= 1"),
        (dict(dim=8, scaling="dynamic", factor=2.0, original_max_position_embeddings=16), TypeError, "seq_len"),
        (dict(dim=8, scaling="yarn", factor=2.0), TypeError, "original_max_position_embeddings"),
        (dict(dim=8, scaling="llama3", factor=2.0, original_max_position_embeddings=16, low_freq_factor=1.0), TypeError, "high_freq_factor"),
        (dict(dim=8, scaling="longrope", short_factor=[1.0] * 3, long_factor=[1.0] * 4, original_max_position_embeddings=16), ValueError, "short_factor must hold"),
        (dict(dim=8, scaling="ntk", factor=2.0, beta_fast=3), TypeError, "unexpected parameter"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        rope_frequencies(**kwargs)


def hf_init_functions():
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    return transformers, ROPE_INIT_FUNCTIONS


HF_CASES = [
    ("linear", dict(factor=4.0), 4096),
    ("dynamic", dict(factor=4.0), 4096),
    ("yarn", dict(factor=16.0, original_max_position_embeddings=4096, beta_fast=32.0, beta_slow=1.0), 65536),
    ("llama3", dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192), 131072),
]


@pytest.mark.parametrize("scaling,params,max_pos", HF_CASES)
def test_matches_the_transformers_rope_utilities_when_installed(scaling, params, max_pos):
    """Where transformers is installed (not a dependency), compare with its rope utilities to 1e-6."""
    transformers, init = hf_init_functions()
    dim, base = 128, 500000.0
    rope = {"rope_type": scaling, "rope_theta": base, **params}
    config = transformers.LlamaConfig(
        hidden_size=dim * 4, num_attention_heads=4, head_dim=dim, max_position_embeddings=max_pos,
        rope_theta=base, rope_scaling=dict(rope),
    )
    if hasattr(config, "rope_parameters"):  # transformers >= 5 keeps them under this name
        config.rope_parameters = dict(rope)
    seq_len = 3 * 4096 if scaling == "dynamic" else None
    hf_inv_freq, hf_att = init[scaling](config, "cpu", seq_len) if seq_len else init[scaling](config, "cpu")
    ours = dict(params)
    if scaling == "dynamic":
        ours.update(seq_len=seq_len, original_max_position_embeddings=max_pos)
    inv_freq, att = rope_frequencies(dim, base, scaling, **ours)
    torch.testing.assert_close(inv_freq, hf_inv_freq.float(), rtol=1e-6, atol=0)
    assert att == pytest.approx(hf_att, rel=1e-6)


def test_frequency_schedules_describe_each_schedule_at_the_given_factor():
    schedules = ropekit.frequencies.frequency_schedules(factor=4.0, original_max_position_embeddings=512)
    assert list(schedules) == [
        "RoPE (no scaling)", "PI (linear)", "NTK-aware", "dynamic NTK at 2,048 tokens", "YaRN", "Llama 3",
    ]
    d, base = 32, 10000.0
    plain = torch.tensor([base ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    freqs = {label: rope_frequencies(d, base, **kwargs)[0].double() for label, kwargs in schedules.items()}
    torch.testing.assert_close(freqs["RoPE (no scaling)"], plain, rtol=1e-6, atol=0)
    torch.testing.assert_close(freqs["PI (linear)"], plain / 4.0, rtol=1e-6, atol=0)
    # NTK-aware: base' = base · s^(d/(d−2)), so the slowest pair is divided by exactly s
    torch.testing.assert_close(freqs["NTK-aware"][-1], plain[-1] / 4.0, rtol=1e-6, atol=0)
    # Llama 3: pairs with wavelength below L_0 / high_freq_factor = 128 tokens are kept
    fast = 2 * math.pi / plain < 512 / 4.0
    torch.testing.assert_close(freqs["Llama 3"][fast], plain[fast], rtol=1e-6, atol=0)
    assert ropekit.frequencies.frequency_schedules(2.0, 100, seq_len=300)["dynamic NTK at 300 tokens"]["seq_len"] == 300


# --- proportional RoPE (Gemma, transformers 5) and p-RoPE -------------------------------


@pytest.mark.parametrize("head_dim,fraction,factor", [(512, 0.25, 1.0), (256, 0.25, 1.0), (128, 0.5, 8.0),
                                                      (64, 1.0, 1.0), (64, 0.0, 1.0), (96, 0.3, 2.0)])
def test_proportional_matches_transformers_when_installed(head_dim, fraction, factor):
    """transformers 5's own `rope_type="proportional"` numbers (Gemma 4's full-attention
    layers: head_dim 512, partial_rotary_factor 0.25, rope_theta 1e6)."""
    transformers, init = hf_init_functions()
    if "proportional" not in init:
        pytest.skip("this transformers has no proportional RoPE (it came with transformers 5)")
    base = 1_000_000.0
    rope = {"rope_type": "proportional", "rope_theta": base, "partial_rotary_factor": fraction, "factor": factor}
    config = transformers.LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim)
    config.rope_parameters = dict(rope)
    hf_inv_freq, hf_att = init["proportional"](config, "cpu")
    inv_freq, att = rope_frequencies(head_dim, base, "proportional", partial_rotary_factor=fraction, factor=factor)
    assert inv_freq.shape == hf_inv_freq.shape == (head_dim // 2,)
    # transformers computes the power in float32, ropekit rounds the float64 value once.
    torch.testing.assert_close(inv_freq, hf_inv_freq.float(), rtol=2e-7, atol=0)
    assert att == hf_att == 1.0


def test_proportional_keeps_the_whole_head_exponents_and_leaves_the_slowest_pairs_still():
    """Written from the definition: θ_i = b^(-2i/d) for the fastest ⌊p·d/2⌋ pairs, 0 after;
    unlike NeoX partial rotary, whose exponents run over the rotated features only."""
    d, base, p = 16, 10000.0, 0.5
    inv_freq, _ = rope_frequencies(d, base, "proportional", partial_rotary_factor=p)
    expected = [base ** (-2 * i / d) if i < 4 else 0.0 for i in range(8)]
    torch.testing.assert_close(inv_freq.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-7, atol=0)
    neox, _ = rope_frequencies(8, base)  # rotary_dim = 8 of 16
    assert not torch.allclose(inv_freq[:4], neox)  # b^(-2i/16) is not b^(-2i/8)
    assert inv_freq[1] == pytest.approx(neox[1].item() ** 0.5, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(), TypeError, "partial_rotary_factor"),
        (dict(partial_rotary_factor=1.5), ValueError, r"partial_rotary_factor must be a number in \[0, 1\]"),
        (dict(partial_rotary_factor=-0.1), ValueError, "partial_rotary_factor"),
        (dict(partial_rotary_factor=0.5, factor=0.5), ValueError, "factor must be a finite number >= 1"),
        (dict(partial_rotary_factor=0.5, beta_fast=3), TypeError, "unexpected parameter"),
    ],
)
def test_proportional_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        rope_frequencies(16, 10000.0, "proportional", **kwargs)
