"""Exact rotary angles inside a Triton kernel: cos and sin of m·θ_i from one int64 multiply.

The math (:mod:`ropekit.exact_angles`, lesson 09). The host turns each frequency into a
64-bit fixed-point step F_i = round(θ_i/(2π)·2^64) mod 2^64 (``fixed_point_turns``). The
phase of position m is then

    m·F_i mod 2^64   (units of 2^-64 turn),

which is exactly what an int64 multiply leaves when it wraps around. No float ever holds
the large angle m·θ_i, so nothing of the phase is lost, at any position up to 2^31 and
beyond.

From the phase to cos and sin without a general-purpose sin/cos. Adding 1/8 turn and
reading the top two bits gives the quadrant k nearest the angle; the next 30 bits are the
rest, an angle x in [−π/4, π/4). Then

    (cos, sin)(φ) = (cos, sin)(x + k·π/2)

is (cos x, sin x) turned by k quarter turns: a swap and sign changes. On [−π/4, π/4] the
Taylor series to x^9 (sin) and x^8 (cos) are within 3e-8 of the truth, below float32's
own rounding, and cost ten fused multiply-adds for the pair. The whole error is the
float32 arithmetic (about 1e-7) plus the 2^-33 turn that the dropped low bits and the
rounding of F_i leave: well within 1e-6.

Float32 angles go the same way (:func:`float32_cos_sin`). The Hugging Face-compatible mode
rounds the angle a = float32(m)·θ_i to float32 first, on purpose, and then wants cos(a) and
sin(a) of that float32 value. libdevice's cosf/sinf reduce a modulo 2π with a long
instruction sequence (and a slower one past |a| ≈ 10^5), twice, once for cos and once for
sin. Instead, split a into its whole radians n = floor(a) and the rest f = a − n, both
exact in float32, and take the phase

    n·U + f·U   (units of 2^-64 turn, U = 2^64/(2π) units per radian),

the first term as one wrapping int64 multiply by the integer nearest U (off by at most half
a unit per radian: 2^-33 turn at |n| = 2^31), the second as one float32 multiply (its
rounding is float32's, about 6e-8 rad). Then the same quadrant-and-polynomial step as
exact angles. cos and sin of the float32 angle to about 1e-7 at every magnitude, one
range reduction for both, no branch.

Plain-torch specification: :func:`ropekit.exact_cos_sin` and :func:`ropekit.rope_cos_sin`;
``tests/test_kernels_angles.py`` compares them under the interpreter.
"""

import math

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from ..exact_angles import fixed_point_turns
from .common import INTERPRETED

# Globals that a Triton kernel reads must be constexpr.
EIGHTH_TURN = tl.constexpr(1 << 61)  # 1/8 turn in units of 2^-64 turn
LOW_32 = tl.constexpr((1 << 32) - 1)
RADIANS_PER_UNIT = tl.constexpr(2 * math.pi / 2**32)  # one unit of the top 32 bits of the phase
# 2^-64 turns per radian, the nearest integer (< 2^63, an int64): the fixed-point step of θ = 1
UNITS_PER_RADIAN = tl.constexpr(int(fixed_point_turns(torch.ones(1, dtype=torch.float64))[0]))
UNITS_PER_RADIAN_F32 = tl.constexpr(2**64 / (2 * math.pi))  # the same as a float, for the fraction


@triton.jit
def exact_cos_sin(m, turns):
    """cos and sin (float32) of the phases m·F_i: m int64 ``(BLOCK_S,)`` positions, turns
    int64 ``(HALF_PAD,)`` fixed-point steps. Returns two ``(BLOCK_S, HALF_PAD)`` tensors."""
    return cos_sin_of_phase(m[:, None] * turns[None, :])  # mod 2^64 by wrap-around


# On the GPU the compiler fuses a multiply into the next add or subtract (one FMA, one
# rounding), which would hand float32_cos_sin the unrounded product m·θ_i: more accurate,
# but not the float32 angle Hugging Face and rope_cos_sin take the cosine of (half an ulp
# apart: 1e-4 rad at m·θ_i ≈ 2000). libdevice's mul_rn is a multiply that is never fused.
# The interpreter computes with numpy, which fuses nothing.
ROUNDED_MULTIPLY = tl.constexpr(not INTERPRETED)


@triton.jit
def float32_angle(m, inv_freq):
    """The float32 angle float32(m)·θ_i, rounded as torch rounds it (m float32, any
    broadcastable shapes)."""
    if ROUNDED_MULTIPLY:
        return libdevice.mul_rn(m, inv_freq)
    else:
        return m * inv_freq


@triton.jit
def float32_cos_sin(angle):
    """cos and sin (float32) of float32 angles in radians, any tile shape, any magnitude:
    the phase n·U + f·U of the module docstring, then :func:`cos_sin_of_phase`."""
    whole = tl.floor(angle)
    phase = whole.to(tl.int64) * UNITS_PER_RADIAN + ((angle - whole) * UNITS_PER_RADIAN_F32).to(tl.int64)
    return cos_sin_of_phase(phase)


@triton.jit
def cos_sin_of_phase(phase):
    """cos and sin (float32) of int64 phases in units of 2^-64 turn, any tile shape: the
    products m·F_i of :func:`exact_cos_sin`, or of a per-pair position tile (M-RoPE, where
    each pair takes the position of its own axis)."""
    phase = phase + EIGHTH_TURN  # mod 2^64 by wrap-around
    top = (phase >> 32) & LOW_32  # the top 32 bits, as an unsigned number
    quadrant = top >> 30
    x = ((top & ((1 << 30) - 1)) - (1 << 29)).to(tl.float32) * RADIANS_PER_UNIT  # [−π/4, π/4)
    x2 = x * x
    s = x * (1.0 + x2 * (-1.0 / 6 + x2 * (1.0 / 120 + x2 * (-1.0 / 5040 + x2 * (1.0 / 362880)))))
    c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24 + x2 * (-1.0 / 720 + x2 * (1.0 / 40320))))
    # Turn (cos x, sin x) by `quadrant` quarter turns.
    odd = (quadrant & 1) == 1
    cos = tl.where(odd, s, c)
    sin = tl.where(odd, c, s)
    cos = tl.where((quadrant == 1) | (quadrant == 2), -cos, cos)
    sin = tl.where(quadrant >= 2, -sin, sin)
    return cos, sin
