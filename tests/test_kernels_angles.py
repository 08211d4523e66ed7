"""The in-kernel exact angles (ropekit.kernels.angles) against ropekit.exact_cos_sin and an
exact rational reduction, under TRITON_INTERPRET=1 on the CPU (set by conftest.py) and
unchanged on a GPU."""

import pytest
import torch

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from ropekit import exact_cos_sin, fixed_point_turns, rope_frequencies  # noqa: E402
from ropekit.kernels.angles import exact_cos_sin as kernel_exact_cos_sin  # noqa: E402
from ropekit.kernels.angles import float32_cos_sin as kernel_float32_cos_sin  # noqa: E402

from exact_turns import true_cos_sin  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@triton.jit
def _table_kernel(pos_ptr, turns_ptr, cos_ptr, sin_ptr, n, HALF: tl.constexpr, BLOCK: tl.constexpr):
    # One program: BLOCK positions × all HALF pairs, written to (n, HALF) tables.
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    f = tl.arange(0, HALF)
    m = tl.load(pos_ptr + s, mask=s < n, other=0).to(tl.int64)
    cos, sin = kernel_exact_cos_sin(m, tl.load(turns_ptr + f))
    offset = s[:, None] * HALF + f[None, :]
    tl.store(cos_ptr + offset, cos, mask=(s < n)[:, None])
    tl.store(sin_ptr + offset, sin, mask=(s < n)[:, None])


def kernel_table(positions, inv_freq):
    turns = fixed_point_turns(inv_freq).to(DEVICE)
    positions = positions.to(DEVICE)
    n, half = positions.shape[0], turns.shape[0]
    cos = torch.empty(n, half, device=DEVICE)
    sin = torch.empty(n, half, device=DEVICE)
    _table_kernel[(triton.cdiv(n, 16),)](positions, turns, cos, sin, n, HALF=half, BLOCK=16)
    return cos.cpu(), sin.cpu()


LONG = [0, 1, 7, 1857, 2**24 - 1, 2**24 + 1, 10**7, 123456789, 2**31 - 1, 2**31, 3 * 2**30, -1, -(2**31)]


@pytest.mark.parametrize("scaling", [dict(), dict(scaling="yarn", factor=16.0, original_max_position_embeddings=4096),
                                     dict(scaling="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                          original_max_position_embeddings=8192)])
def test_kernel_exact_angles_within_1e_6_up_to_2_31(scaling):
    inv_freq, _ = rope_frequencies(128, 500000.0, dtype=torch.float64, **scaling)
    cos, sin = kernel_table(torch.tensor(LONG), inv_freq)
    cos_true, sin_true = true_cos_sin(LONG, inv_freq)
    assert (cos.double() - cos_true).abs().max() <= 1e-6
    assert (sin.double() - sin_true).abs().max() <= 1e-6


def test_kernel_exact_angles_match_the_torch_spec_on_every_quadrant():
    # Positions 0..4095 of θ = 1/(2π)·(turn / 1024) sweep each quadrant many times.
    inv_freq, _ = rope_frequencies(32, 10000.0, dtype=torch.float64)
    positions = torch.cat((torch.arange(4096), torch.randint(0, 2**31 + 1, (256,),
                                                             generator=torch.Generator().manual_seed(0))))
    cos, sin = kernel_table(positions, inv_freq)
    cos_ref, sin_ref = exact_cos_sin(positions, inv_freq, dtype=torch.float64)
    assert (cos.double() - cos_ref).abs().max() <= 5e-7
    assert (sin.double() - sin_ref).abs().max() <= 5e-7
    assert (cos.double() ** 2 + sin.double() ** 2 - 1).abs().max() <= 1e-6


# --- float32 angles: cos/sin of the float32 value a = float32(m)·θ_i ------------------------


@triton.jit
def _float32_kernel(angle_ptr, cos_ptr, sin_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    cos, sin = kernel_float32_cos_sin(tl.load(angle_ptr + i, mask=i < n, other=0.0))
    tl.store(cos_ptr + i, cos, mask=i < n)
    tl.store(sin_ptr + i, sin, mask=i < n)


def test_kernel_float32_angles_are_cos_and_sin_of_the_float32_angle_at_every_magnitude():
    """The reference is float64 cos/sin of the very float32 angles (what Hugging Face's
    torch.cos(float32 angle) approximates to within an ulp): every magnitude from 1e-30 to
    2^31, both signs, whole and half radians, the products m·θ_i of a real schedule."""
    g = torch.Generator().manual_seed(1)
    inv_freq, _ = rope_frequencies(128, 500000.0)
    products = (torch.tensor(LONG[:-2], dtype=torch.float32)[:, None] * inv_freq[None, :]).flatten()
    spread = torch.exp(torch.empty(4000).uniform_(-69, 21.5, generator=g))  # 1e-30 .. 2.2e9
    edges = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 3.1415927, 6.2831855, 1e4 + 0.5, 2.0**23, 2.0**24, 2.0**31])
    angles = torch.cat((products, spread, -spread, edges, -edges)).float()
    n = angles.numel()
    cos, sin = torch.empty(n, device=DEVICE), torch.empty(n, device=DEVICE)
    _float32_kernel[(triton.cdiv(n, 256),)](angles.to(DEVICE), cos, sin, n, BLOCK=256)
    exact = angles.double()
    assert (cos.cpu().double() - exact.cos()).abs().max() <= 3e-7
    assert (sin.cpu().double() - exact.sin()).abs().max() <= 3e-7
