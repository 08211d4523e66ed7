"""Exact rotary angles: cos(m·θ_i) and sin(m·θ_i) to 1e-6 at every integer position up to 2^31.

Why float32 angles go wrong. Models compute the angle m·θ_i as one float32 product. Its
relative rounding error is up to 2^-24 ≈ 6e-8, so the fastest pair (θ_0 = 1) is off by up
to m·6e-8 radians: 6e-5 rad at m = 1 000, 0.06 rad at m = 10^6 and about 0.6 rad at
m = 10^7. A float32 θ_i carries the same relative error, so no float32 recipe can fix it:
the information is gone before the product is taken.

The idea. Only the angle modulo one turn (2π) matters, and for an integer position m the
phase after m steps is m times the phase of one step, modulo one turn. Write the step of
pair i as a 64-bit fixed-point fraction of a turn,

    F_i = round(θ_i / (2π) · 2^64)  mod 2^64,

computed once on the host in exact integer arithmetic. Then the phase of position m is

    φ_i(m) = (m · F_i mod 2^64) / 2^64 turns,

and "mod 2^64" is what a 64-bit integer multiply does anyway when it wraps around, so a
GPU gets it from one int64 multiply. Read as a signed 64-bit integer, the product is the
phase in [−1/2, 1/2) turn, i.e. the angle in [−π, π): already reduced, so float32 cos/sin
are accurate there. The only errors left are the rounding of F_i (at most 2^-65 turn per
step, m · 2^-65 turn in all: 4e-10 rad at m = 2^31) and the final float32 cos/sin.

Which θ_i is exact. The θ_i are inv_freq's values taken as exact real numbers. With a
float64 inv_freq (``rope_frequencies(..., dtype=torch.float64)``) they are the formula's
frequencies; with a float32 inv_freq they are its float32 roundings, which are the
frequencies a model computed in float32 really used (at small m, where its float32
products were accurate). Either way no further rounding is added.

This module is the plain-torch version (the specification); the Triton kernel's
``angles="exact"`` mode computes the same phases with one wrapping int64 multiply.
Lesson 09 measures all of this.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

TURN_BITS = 64  # F_i counts turns in units of 2^-64 turn
MAX_POSITION = 2**41 - 1  # |m| above this would overflow the int64 limb products below
_PI_BITS = 256  # precision of the host's 1/(2π): far beyond the 64 bits of F_i


# --- the host side: one step of each pair as a fixed-point fraction of a turn ---------


def _arctan_inverse(x: int, one: int) -> int:
    """arctan(1/x) · one, by the alternating Taylor series in integers (x ≥ 2)."""
    power = one // x  # one / x^(2k+1)
    total, k = power, 0
    while power:
        k += 1
        power //= x * x
        total += (-1) ** k * (power // (2 * k + 1))
    return total


@lru_cache(maxsize=None)
def _inverse_two_pi(bits: int = _PI_BITS) -> int:
    """floor(2^bits / (2π)), with π from Machin's formula π/4 = 4·arctan(1/5) − arctan(1/239)."""
    guard = 32  # extra bits against the truncation of each series term
    one = 1 << (bits + guard)
    pi = 4 * (4 * _arctan_inverse(5, one) - _arctan_inverse(239, one))
    return (one << bits) // (2 * pi)


def fixed_point_turns(inv_freq: torch.Tensor) -> torch.Tensor:
    """The step of each pair, θ_i/(2π) of a turn, as a signed 64-bit fixed-point fraction.

    F_i = round(θ_i/(2π) · 2^64) reduced to [−2^63, 2^63), so F_i / 2^64 ≡ θ_i/(2π)
    (mod 1): the whole turns of a step never matter at integer positions. Computed in
    exact integer arithmetic from each θ_i taken as the exact value of its float
    (``float.as_integer_ratio``) and 256 bits of 1/(2π); the rounding is at most 2^-65 turn.

    Args:
        inv_freq: ``(rotary_dim // 2,)`` floating θ_i, any device; float64 keeps the
            formula's frequencies (``rope_frequencies(..., dtype=torch.float64)``).

    Returns:
        int64 ``(rotary_dim // 2,)`` on inv_freq's device. Reading inv_freq costs one copy
        to the host: compute this once per inv_freq and pass it on (``rope_cos_sin`` and
        ``ropekit.kernels.apply_rope_qk`` accept it in place of inv_freq).
    """
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1 or not inv_freq.is_floating_point():
        raise ValueError(f"inv_freq must be a 1-D floating-point tensor of θ_i, got {_describe(inv_freq)}")
    theta = inv_freq.detach().double().cpu().tolist()
    bad = [t for t in theta if not math.isfinite(t)]
    if bad:
        raise ValueError(f"inv_freq must be finite, got {bad[0]}")
    c, half_ulp = _inverse_two_pi(), 1 << (_PI_BITS - 1)
    turns = []
    for t in theta:
        num, den = t.as_integer_ratio()  # t = num / den exactly, den a power of two
        scaled = (num * c << TURN_BITS) // den  # θ/(2π) · 2^(64 + 256), floored
        f = ((scaled + half_ulp) >> _PI_BITS) % (1 << TURN_BITS)  # round, then wrap to one turn
        turns.append(f - (1 << TURN_BITS) if f >= 1 << (TURN_BITS - 1) else f)
    return torch.tensor(turns, dtype=torch.int64, device=inv_freq.device)


# --- the device side: the phase of position m, without overflow -----------------------


def exact_phase(positions, turns: torch.Tensor) -> torch.Tensor:
    """The phase m·θ_i/(2π) modulo one turn, in [−1/2, 1/2], for integer positions m.

    A GPU kernel takes m·F_i mod 2^64 from one wrapping int64 multiply. Torch gives no
    promise about integer overflow, so here F_i is cut into three limbs of 22, 21 and 21
    bits, F = L0·2^42 + L1·2^21 + L2, and each product m·L_j stays below 2^63 for
    |m| ≤ 2^41 − 1. Only each product's part below one turn is kept:

        φ = frac( (m·L0 mod 2^22)/2^22 + (m·L1 mod 2^43)/2^43 + m·L2/2^64 )

    where the first two terms are exact in float64 and the third (< 1/4 turn) is rounded
    once, by at most 2^-55 turn.

    Args:
        positions: integer tensor of any shape (or an int n for ``arange(n)``), |m| ≤ 2^41 − 1.
        turns: ``(rotary_dim // 2,)`` int64 from :func:`fixed_point_turns`.

    Returns:
        float64 ``positions.shape + (rotary_dim // 2,)``, in turns.
    """
    positions = _check_positions(positions, turns)
    f = turns.to(positions.device)  # the bits of the signed F_i are those of the unsigned one
    l0, l1, l2 = (f >> 42) & (2**22 - 1), (f >> 21) & (2**21 - 1), f & (2**21 - 1)
    m = positions.to(torch.int64)[..., None]
    phase = (
        torch.remainder(m * l0, 2**22).double() / 2**22
        + torch.remainder(m * l1, 2**43).double() / 2**43
        + (m * l2).double() * 2.0**-64
    )
    return phase - phase.round()


def exact_cos_sin(positions, inv_freq: torch.Tensor, attention_factor: float = 1.0, dtype=torch.float32):
    """cos(m·θ_i) and sin(m·θ_i) with error ≤ 1e-6 for every integer |m| ≤ 2^31 (and beyond).

    The angle is 2π times :func:`exact_phase`, already in [−π, π]; cos and sin are taken
    in float64 and rounded once to ``dtype``. The error is the rounding of F_i (m·2^-65
    turn, 4e-10 rad at m = 2^31) plus that final rounding (6e-8 for float32).

    Args:
        positions: integer tensor of any shape, or an int n for ``arange(n)`` on
            inv_freq's device; cos and sin are made on positions' device.
        inv_freq: ``(rotary_dim // 2,)`` floating θ_i (their exact values are used: pass
            float64 for the formula's frequencies), or the int64 output of
            :func:`fixed_point_turns` to skip the copy to the host.
        attention_factor: multiplies cos and sin (YaRN), as in ``rope_cos_sin``.
        dtype: of the result (float32 like ``rope_cos_sin``; float64 to study errors).

    Returns:
        ``(cos, sin)`` of shape ``positions.shape + (rotary_dim // 2,)``.

    ``ropekit.rope_cos_sin(positions, inv_freq, angles="exact")`` calls this. Lesson 09.
    """
    turns = inv_freq if _is_turns(inv_freq) else fixed_point_turns(inv_freq)
    angle = 2 * math.pi * exact_phase(positions, turns)
    cos, sin = angle.cos(), angle.sin()
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos.to(dtype), sin.to(dtype)


# --- argument checks -----------------------------------------------------------------


def _is_turns(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.dim() == 1


def _check_positions(positions, turns):
    if not _is_turns(turns):
        raise ValueError(f"turns must be the int64 (rotary_dim // 2,) output of fixed_point_turns, got {_describe(turns)}")
    if isinstance(positions, int) and not isinstance(positions, bool):
        positions = torch.arange(positions, device=turns.device)
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be an integer tensor or an int, got {type(positions).__name__}")
    if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
        raise TypeError(
            f"exact angles need integer positions (int32 or int64), got dtype {positions.dtype}; "
            "fractional positions use angles='float32'"
        )
    # int32 positions are always in range; int64 ones cost one look at the data.
    if positions.dtype == torch.int64 and bool(((positions > MAX_POSITION) | (positions < -MAX_POSITION)).any()):
        raise ValueError("exact angles support positions with |m| <= 2^41 - 1; positions has larger ones")
    return positions


def _describe(t):
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__
