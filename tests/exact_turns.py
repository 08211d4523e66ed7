"""An exact reduction of m·θ/(2π), shared by the exact-angle tests (test_exact_angles.py for
the torch version, test_kernels_angles.py for the kernel's).

π comes from Euler's π/4 = arctan(1/2) + arctan(1/3) in integer arithmetic, independent of the
Machin formula the library uses, to 320 bits; m·θ/(2π) is reduced modulo one turn as a Fraction.
"""

import math
from fractions import Fraction

import torch

BITS = 320


def arctan_inverse(x, one):
    """arctan(1/x) · one, in integers (the Gregory series)."""
    term = total = one // x
    k = 0
    while term:
        k += 1
        term //= x * x
        total += (-1) ** k * (term // (2 * k + 1))
    return total


_ONE = 1 << (BITS + 16)
PI = Fraction(4 * (arctan_inverse(2, _ONE) + arctan_inverse(3, _ONE)), _ONE)


def true_turns(m: int, theta: float) -> Fraction:
    """m·θ/(2π) reduced to [−1/2, 1/2] turn, as an exact fraction (up to 2^-320 from π)."""
    t = Fraction(m) * Fraction(theta) / (2 * PI)
    return t - round(t)


def true_cos_sin(positions, inv_freq):
    """float64 (cos, sin) from the exact reduction; positions: list of ints."""
    thetas = inv_freq.double().tolist()
    phase = torch.tensor([[float(true_turns(m, th)) for th in thetas] for m in positions], dtype=torch.float64)
    return (2 * math.pi * phase).cos(), (2 * math.pi * phase).sin()
