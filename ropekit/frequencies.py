"""Inverse frequencies θ_i of RoPE and the schedules that stretch them to longer contexts.

RoPE rotates feature pair i of a token at position m by the angle m·θ_i, with

    θ_i = base^(-2i/d),   i = 0 .. d/2 - 1                       (RoFormer, eq. 15)

Pair 0 turns by one radian per token (wavelength 2π tokens); the last pair turns by
about 1/base radians per token (wavelength ≈ 2π·base tokens). A context-extension
schedule changes these θ_i (and sometimes scales the attention logits) so that a model
trained on `original_max_position_embeddings` tokens can read `factor` times more.

Every schedule is a few lines of arithmetic; the numbers are computed in float64 and
rounded once to float32 (or kept in float64 with ``dtype=torch.float64``, which exact
angles need: see ``ropekit.exact_angles``), so they are the correctly rounded values of
each formula.
Lessons 02 (θ_i) and 04 (the schedules) derive them.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .checks import check_dim, integer, is_real, real

SCALINGS = (None, "linear", "ntk", "dynamic", "yarn", "llama3", "longrope", "proportional")


def rope_frequencies(dim: int, base: float = 10000.0, scaling: str | None = None, dtype=torch.float32, **params):
    """Inverse frequencies of RoPE, optionally stretched by a context-extension schedule.

    Args:
        dim: rotary dimension d (even); there are d/2 frequencies, one per feature pair.
        base: the base b of θ_i = b^(-2i/d) (10000 in RoFormer and LLaMA 1/2, 500000 in Llama 3).
        scaling: which schedule to apply, with the parameter names LLM configs use:

            * ``None``: plain RoPE, θ_i = b^(-2i/d).
            * ``"linear"``: Position Interpolation (Chen et al. 2023, eq. 4):
              θ_i / factor, i.e. positions squeezed into the trained range. Needs ``factor``.
            * ``"ntk"``: NTK-aware scaling (bloc97, 2023): a new base
              b' = b · factor^(d/(d-2)), which leaves θ_0 unchanged (high frequencies
              extrapolate) and divides the lowest frequency by exactly ``factor``
              (low frequencies interpolate). Needs ``factor``.
            * ``"dynamic"``: dynamic NTK: the NTK base chosen from the current length,
              b' = b · (factor·L/L_0 − (factor − 1))^(d/(d-2)) with L = max(seq_len, L_0);
              plain RoPE up to L_0. Needs ``factor``, ``seq_len``,
              ``original_max_position_embeddings`` (L_0).
            * ``"yarn"``: YaRN (Peng et al. 2023, §3.2 "NTK-by-parts" and §3.4). Pairs
              that turn more than ``beta_fast`` (32) times over L_0 keep θ_i, pairs that
              turn fewer than ``beta_slow`` (1) times get θ_i/factor, and a linear ramp
              γ blends the two in between:
              θ'_i = (1 − γ_i)·θ_i/factor + γ_i·θ_i. The attention factor is
              0.1·ln(factor) + 1 (eq. 22's √(1/t)), unless ``attention_factor`` is given
              (or DeepSeek's ``mscale``/``mscale_all_dim``). Needs ``factor``,
              ``original_max_position_embeddings``; optional ``truncate`` (True).
            * ``"llama3"``: Meta's Llama 3.1 bands by wavelength λ_i = 2π/θ_i: λ < L_0/
              ``high_freq_factor`` keeps θ_i, λ > L_0/``low_freq_factor`` gets θ_i/factor,
              in between a smooth blend with s = (L_0/λ − low)/(high − low). Needs
              ``factor``, ``low_freq_factor``, ``high_freq_factor``,
              ``original_max_position_embeddings``.
            * ``"longrope"``: LongRoPE / Phi-3 (Ding et al. 2024): θ_i / r_i with a per-pair
              list r = ``long_factor`` when ``seq_len`` > L_0, else ``short_factor``; the
              attention factor is √(1 + ln(factor)/ln(L_0)) unless given. Needs
              ``short_factor``, ``long_factor``, ``original_max_position_embeddings``;
              optional ``factor`` (1.0), ``seq_len``.
            * ``"proportional"``: Gemma's proportional RoPE (transformers 5's
              ``rope_type="proportional"``) and p-RoPE (Barbero et al. 2024, "Round and
              Round We Go!", §6): only the fastest fraction p = ``partial_rotary_factor``
              of the pairs rotate, with the exponents of the *whole* head, θ_i = b^(-2i/d)
              for i < ⌊p·d/2⌋, and the slowest pairs get θ_i = 0 (they never turn, so they
              carry meaning, not position). ``dim`` is the head_dim, and inv_freq keeps all
              d/2 entries. NeoX partial rotary (``rotary_dim``) instead recomputes the
              exponents over the rotated features, b^(-2i/r). Optional ``factor`` (1.0)
              divides every θ_i. Lesson 08 compares the two.

        dtype: ``torch.float32`` (default, what models use) or ``torch.float64``: the
            formula's θ_i to 1e-16, which ``rope_cos_sin(..., angles="exact")`` needs to be
            exact at long positions (a float32 θ_i is already off by up to 6e-8 relative,
            0.6 rad at position 10^7). Lesson 09.

    Returns:
        ``(inv_freq, attention_factor)``: inv_freq of ``dtype`` and shape ``(dim // 2,)``;
        attention_factor a Python float that multiplies cos and sin (so it multiplies the
        logits by its square), 1.0 for every schedule but YaRN and LongRoPE.

    Example:
        >>> inv_freq, att = rope_frequencies(128, 500000.0, "llama3", factor=8.0,
        ...     low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
    """
    check_dim(dim)
    base = real(base, "base", above=1)
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    known = _PARAMS[scaling]
    unknown = set(params) - set(known)
    if unknown:
        raise TypeError(
            f"rope_frequencies(scaling={scaling!r}) got unexpected parameter(s) {sorted(unknown)}; "
            f"it accepts {sorted(known) or 'none'}"
        )
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    exponents = torch.arange(0, dim, 2, dtype=torch.float64) / dim  # 2i/d
    inv_freq, attention_factor = _SCHEDULES[scaling](dim, float(base), exponents, params)
    return inv_freq.to(dtype), float(attention_factor)


def wavelengths(inv_freq: torch.Tensor) -> torch.Tensor:
    """Wavelength 2π/θ_i in tokens of each pair: how far apart two positions must be
    before pair i has turned a full circle (lesson 03)."""
    return 2 * math.pi / inv_freq.double()


def frequency_schedules(
    factor: float = 8.0, original_max_position_embeddings: int = 4096, seq_len: int | None = None
) -> dict:
    """The usual context-extension schedules side by side: a dict label -> keyword
    arguments of :func:`rope_frequencies`, e.g. ``rope_frequencies(128, **kwargs)``.

    Plain RoPE, Position Interpolation, NTK-aware, dynamic NTK (at ``seq_len``, default
    factor · L_0), YaRN (β_fast 32, β_slow 1) and Llama 3 (low/high frequency factors 1
    and 4), all stretching a model trained on L_0 = ``original_max_position_embeddings``
    tokens by ``factor``. :func:`ropekit.viz.plot_frequency_spectrum` draws them by
    default; copy and edit the dict to compare other settings. Lesson 04.
    """
    original = original_max_position_embeddings
    if seq_len is None:
        seq_len = int(round(factor * original))
    return {
        "RoPE (no scaling)": {},
        "PI (linear)": {"scaling": "linear", "factor": factor},
        "NTK-aware": {"scaling": "ntk", "factor": factor},
        f"dynamic NTK at {seq_len:,} tokens": {
            "scaling": "dynamic", "factor": factor, "seq_len": seq_len,
            "original_max_position_embeddings": original,
        },
        "YaRN": {"scaling": "yarn", "factor": factor, "original_max_position_embeddings": original},
        "Llama 3": {
            "scaling": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": original,
        },
    }


# --- the schedules -------------------------------------------------------------------


def _plain(dim, base, exponents, p):
    return base**-exponents, 1.0


def _linear(dim, base, exponents, p):
    factor = _factor(p)
    return base**-exponents / factor, 1.0


def _ntk(dim, base, exponents, p):
    factor = _factor(p)
    _check_ntk_dim(dim)
    new_base = base * factor ** (dim / (dim - 2))
    return new_base**-exponents, 1.0


def _dynamic(dim, base, exponents, p):
    factor = _factor(p)
    _check_ntk_dim(dim)
    original = _positive_int(p, "original_max_position_embeddings", "dynamic")
    seq_len = _positive_int(p, "seq_len", "dynamic")
    length = max(seq_len, original)
    new_base = base * (factor * length / original - (factor - 1)) ** (dim / (dim - 2))
    return new_base**-exponents, 1.0


def _yarn(dim, base, exponents, p):
    factor = _factor(p)
    original = _positive_int(p, "original_max_position_embeddings", "yarn")
    beta_fast = real(p.get("beta_fast", 32.0), "beta_fast")
    beta_slow = real(p.get("beta_slow", 1.0), "beta_slow")
    if not beta_fast > beta_slow > 0:
        raise ValueError(f"yarn needs beta_fast > beta_slow > 0, got beta_fast={beta_fast}, beta_slow={beta_slow}")
    extrapolated = base**-exponents
    interpolated = extrapolated / factor
    # §3.2: pair i turns r_i = L_0·θ_i/(2π) times over the training length. Solving
    # r(i) = beta for the (fractional) pair index i gives the ramp's two ends.
    low, high = _yarn_pair_index(beta_fast, dim, base, original), _yarn_pair_index(beta_slow, dim, base, original)
    truncate = p.get("truncate", True)
    if not isinstance(truncate, bool):
        raise ValueError(f"truncate must be True or False, got {truncate!r}")
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if high == low:
        high += 0.001  # a one-step ramp instead of a division by zero
    # γ_i = 1 for fast pairs (keep θ_i), 0 for slow ones (θ_i/factor).
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp
    inv_freq = interpolated * (1 - keep) + extrapolated * keep

    attention_factor = _optional_real(p, "attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = _optional_real(p, "mscale"), _optional_real(p, "mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)
    return inv_freq, attention_factor


def _yarn_pair_index(rotations, dim, base, original):
    """The fractional pair index i at which pair i turns `rotations` times over `original` tokens."""
    return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))


def _yarn_mscale(factor, mscale=1.0):
    """YaRN eq. 22: √(1/t) = 0.1·ln(s) + 1 (times mscale), and 1 when s ≤ 1."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _llama3(dim, base, exponents, p):
    factor = _factor(p)
    original = _positive_int(p, "original_max_position_embeddings", "llama3")
    low_ff = _required(p, "low_freq_factor", "llama3")
    high_ff = _required(p, "high_freq_factor", "llama3")
    if not high_ff > low_ff > 0:
        raise ValueError(
            f"llama3 needs high_freq_factor > low_freq_factor > 0, got {high_ff} and {low_ff}"
        )
    inv_freq = base**-exponents
    wavelen = 2 * math.pi / inv_freq
    smooth = (original / wavelen - low_ff) / (high_ff - low_ff)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    long_wave = wavelen > original / low_ff  # low frequencies: interpolate
    short_wave = wavelen < original / high_ff  # high frequencies: keep
    out = torch.where(long_wave, inv_freq / factor, blended)
    return torch.where(short_wave, inv_freq, out), 1.0


def _longrope(dim, base, exponents, p):
    original = _positive_int(p, "original_max_position_embeddings", "longrope")
    short = _factor_list(p, "short_factor", dim)
    long = _factor_list(p, "long_factor", dim)
    factor = real(p.get("factor", 1.0), "factor", at_least=1)
    seq_len = p.get("seq_len")
    if seq_len is not None:
        seq_len = integer(seq_len, "seq_len", minimum=1)
    ext = long if seq_len is not None and seq_len > original else short
    attention_factor = _optional_real(p, "attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))
    return 1.0 / (ext * base**exponents), attention_factor


def _proportional(dim, base, exponents, p):
    fraction = p.get("partial_rotary_factor")
    if fraction is None:
        raise TypeError("rope_frequencies(scaling='proportional') needs the parameter 'partial_rotary_factor'")
    if not is_real(fraction) or not 0 <= float(fraction) <= 1:
        raise ValueError(f"partial_rotary_factor must be a number in [0, 1], got {fraction!r}")
    fraction = float(fraction)
    factor = _factor(p) if p.get("factor") is not None else 1.0
    rotated = int(fraction * dim // 2)  # the same rounding as transformers
    inv_freq = base**-exponents
    inv_freq[rotated:] = 0.0  # the slowest pairs stay still
    return inv_freq / factor, 1.0


_SCHEDULES = {
    None: _plain,
    "linear": _linear,
    "ntk": _ntk,
    "dynamic": _dynamic,
    "yarn": _yarn,
    "llama3": _llama3,
    "longrope": _longrope,
    "proportional": _proportional,
}
_PARAMS = {
    None: (),
    "linear": ("factor",),
    "ntk": ("factor",),
    "dynamic": ("factor", "seq_len", "original_max_position_embeddings"),
    "yarn": (
        "factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
        "attention_factor", "mscale", "mscale_all_dim", "truncate",
    ),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "longrope": (
        "short_factor", "long_factor", "original_max_position_embeddings", "seq_len",
        "factor", "attention_factor",
    ),
    "proportional": ("partial_rotary_factor", "factor"),
}


# --- argument checks -----------------------------------------------------------------


def _check_ntk_dim(dim):
    if dim < 4:
        raise ValueError(f"dim must be at least 4 for NTK scaling (its exponent is d/(d-2)), got {dim}")


def _required(p, name, scaling):
    if p.get(name) is None:
        raise TypeError(f"rope_frequencies(scaling={scaling!r}) needs the parameter {name!r}")
    return real(p[name], name)


def _optional_real(p, name):
    return None if p.get(name) is None else real(p[name], name)


def _factor(p):
    if p.get("factor") is None:
        raise TypeError("this scaling needs the parameter 'factor' (the context-extension ratio, >= 1)")
    return real(p["factor"], "factor", at_least=1, what=" (a ratio of new to trained length)")


def _positive_int(p, name, scaling):
    value = p.get(name)
    if value is None:
        raise TypeError(f"rope_frequencies(scaling={scaling!r}) needs the parameter {name!r}")
    return integer(value, name, minimum=1)


def _factor_list(p, name, dim) -> torch.Tensor:
    value: Sequence[float] | None = p.get(name)
    if value is None:
        raise TypeError(f"rope_frequencies(scaling='longrope') needs the parameter {name!r}")
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.shape != (dim // 2,):
        raise ValueError(f"{name} must hold dim // 2 = {dim // 2} factors, got shape {tuple(t.shape)}")
    if not bool((t > 0).all() & t.isfinite().all()):
        raise ValueError(f"{name} must hold finite positive factors, got {t.tolist()}")
    return t
