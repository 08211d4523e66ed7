"""Every RoPE form in ropekit.reference: the algebra of RoFormer §3.4, and agreement between forms."""

import numpy as np
import pytest
import torch

import ropekit
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit import (
    apply_rope,
    apply_rope_complex,
    permute_qk_weight,
    rope_cos_sin,
    rope_frequencies,
    rotation_matrix,
    to_half_layout,
    to_paper_layout,
)
from ropekit.reference import apply_rope_loop, apply_rope_matrix, rope_decay_bound

dims = st.sampled_from([2, 4, 8, 16, 32, 64])
positions = st.integers(-5000, 5000)
bases = st.sampled_from([100.0, 10000.0, 500000.0])
seeds = st.integers(0, 2**31 - 1)
SETTINGS = settings(max_examples=25, deadline=None)


def rand(*shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rotate(x, m, layout, base=10000.0):
    """Rotate vectors x (..., d) to position m with the fast form, in float64."""
    inv_freq = rope_frequencies(x.shape[-1], base)[0].double()
    angles = torch.tensor(float(m), dtype=torch.float64) * inv_freq
    return apply_rope(x, angles.cos(), angles.sin(), layout) if x.dim() >= 2 else apply_rope(x[None], angles.cos()[None], angles.sin()[None], layout)[0]


# --- the relative property and its friends, for every form ----------------------------

FORMS = ["matrix_paper", "matrix_half", "paper", "half", "complex", "loop_paper", "loop_half"]


def rotate_with(form, x, m, base=10000.0):
    """x: (d,) float64 vector rotated to position m by the named form."""
    d = x.shape[-1]
    inv_freq = torch.tensor([base ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    if form.startswith("matrix"):
        return rotation_matrix(m, d, base, layout=form.split("_")[1]) @ x
    angles = (float(m) * inv_freq)[None]
    if form == "complex":
        # the complex form computes its angles in float32 like Meta's code; feed it float64 ones
        pairs = torch.view_as_complex(x.reshape(-1, 2).contiguous())
        return torch.view_as_real(pairs * torch.polar(torch.ones_like(angles[0]), angles[0])).flatten()
    if form.startswith("loop"):
        return apply_rope_loop(x[None], angles.cos(), angles.sin(), form.split("_")[1])[0]
    return apply_rope(x[None], angles.cos(), angles.sin(), form)[0]


@pytest.mark.parametrize("form", FORMS)
@SETTINGS
@given(d=dims, m=positions, n=positions, base=bases, seed=seeds)
def test_relative_property_holds_for_every_form(form, d, m, n, base, seed):
    """RoFormer eq. 16: ⟨R_m q, R_n k⟩ = ⟨q, R_{n−m} k⟩."""
    q, k = rand(2, d, seed=seed)
    lhs = rotate_with(form, q, m, base) @ rotate_with(form, k, n, base)
    rhs = q @ rotate_with(form, k, n - m, base)
    torch.testing.assert_close(lhs, rhs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("form", FORMS)
@SETTINGS
@given(d=dims, m=positions, seed=seeds)
def test_rotation_preserves_the_norm_and_minus_m_undoes_it(form, d, m, seed):
    x = rand(d, seed=seed)
    y = rotate_with(form, x, m)
    torch.testing.assert_close(y.norm(), x.norm(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rotate_with(form, y, -m), x, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(d=dims, m=st.floats(-1e4, 1e4), n=st.floats(-1e4, 1e4))
def test_rotation_matrix_is_orthogonal_and_composes(d, m, n):
    for layout in ("paper", "half"):
        R_m, R_n = rotation_matrix(m, d, layout=layout), rotation_matrix(n, d, layout=layout)
        torch.testing.assert_close(R_m.T @ R_m, torch.eye(d, dtype=torch.float64), rtol=0, atol=1e-12)
        torch.testing.assert_close(R_m @ R_n, rotation_matrix(m + n, d, layout=layout), rtol=0, atol=1e-8)
        torch.testing.assert_close(R_m.T @ R_n, rotation_matrix(n - m, d, layout=layout), rtol=0, atol=1e-8)


def test_paper_rotation_matrix_is_block_diagonal_with_2x2_rotations():
    d, m = 6, 3.0
    R = rotation_matrix(m, d)
    for i in range(d // 2):
        a = m * 10000 ** (-2 * i / d)
        block = torch.tensor([[torch.cos(torch.tensor(a)), -torch.sin(torch.tensor(a))],
                              [torch.sin(torch.tensor(a)), torch.cos(torch.tensor(a))]], dtype=torch.float64)
        torch.testing.assert_close(R[2 * i : 2 * i + 2, 2 * i : 2 * i + 2], block)
    off_block = R.clone()
    for i in range(d // 2):
        off_block[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = 0
    assert off_block.abs().max() == 0


@SETTINGS
@given(d=dims, m=positions)
def test_half_matrix_is_the_paper_matrix_with_features_reordered(d, m):
    P = torch.eye(d, dtype=torch.float64)[to_half_layout(torch.arange(d))]  # P x = to_half_layout(x)
    torch.testing.assert_close(rotation_matrix(m, d, layout="half"), P @ rotation_matrix(m, d) @ P.T)


# --- the forms agree on batches, in float32 -------------------------------------------


@SETTINGS
@given(d=dims, seq=st.integers(1, 12), seed=seeds, base=bases)
def test_matrix_paper_half_complex_and_loop_forms_agree_in_float32(d, seq, seed, base):
    x = rand(2, 3, seq, d, seed=seed, dtype=torch.float32)
    inv_freq, _ = rope_frequencies(d, base)
    pos = torch.arange(seq) * 7  # spread positions so the angles are not all small
    cos, sin = rope_cos_sin(pos, inv_freq)
    paper = apply_rope(x, cos, sin, "paper")
    tol = dict(rtol=1e-5, atol=3e-5)  # float32 angles m·θ carry ~m·6e-8 rad of rounding
    torch.testing.assert_close(paper, apply_rope_matrix(x, pos, inv_freq, "paper").float(), **tol)
    torch.testing.assert_close(paper, apply_rope_complex(x, pos, inv_freq), **tol)
    torch.testing.assert_close(paper, apply_rope_loop(x, cos, sin, "paper"), **tol)
    half = apply_rope(to_half_layout(x), cos, sin, "half")
    torch.testing.assert_close(half, to_half_layout(paper), **tol)
    torch.testing.assert_close(to_paper_layout(half), paper, **tol)
    torch.testing.assert_close(half, apply_rope_matrix(to_half_layout(x), pos, inv_freq, "half").float(), **tol)
    torch.testing.assert_close(half, apply_rope_loop(to_half_layout(x), cos, sin, "half"), **tol)


def test_layout_orders_are_inverse_permutations():
    x = torch.arange(10.0)
    assert to_half_layout(x).tolist() == [0, 2, 4, 6, 8, 1, 3, 5, 7, 9]
    assert to_paper_layout(to_half_layout(x)).tolist() == x.tolist()
    assert to_half_layout(x, rotary_dim=4).tolist() == [0, 2, 1, 3, 4, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("layout", ["paper", "half"])
def test_partial_rotary_rotates_the_leading_features_and_passes_the_rest(layout):
    x = rand(2, 5, 10, seed=1)
    inv_freq, _ = rope_frequencies(6)
    cos, sin = rope_cos_sin(5, inv_freq)
    y = apply_rope(x, cos, sin, layout, rotary_dim=6)
    assert torch.equal(y[..., 6:], x[..., 6:])
    torch.testing.assert_close(y[..., :6], apply_rope(x[..., :6], cos, sin, layout))
    torch.testing.assert_close(y[..., :6], apply_rope_matrix(x[..., :6], torch.arange(5), inv_freq, layout), rtol=1e-6, atol=1e-6)
    # the complex form passes the tail through too
    if layout == "paper":
        torch.testing.assert_close(apply_rope_complex(x, torch.arange(5), inv_freq), y, rtol=1e-6, atol=1e-6)


# --- angles ---------------------------------------------------------------------------


def test_rope_cos_sin_shapes_and_values_for_position_ids_and_fractional_positions():
    inv_freq, _ = rope_frequencies(8)
    pos = torch.tensor([[0, 1, 2], [5, 6, 7]])
    cos, sin = rope_cos_sin(pos, inv_freq)
    assert cos.shape == sin.shape == (2, 3, 4) and cos.dtype == torch.float32
    expected = pos[..., None].double() * inv_freq.double()
    torch.testing.assert_close(cos.double(), expected.cos(), rtol=0, atol=1e-6)
    torch.testing.assert_close(sin.double(), expected.sin(), rtol=0, atol=1e-6)
    frac = torch.tensor([0.25, 1.5])
    c, s = rope_cos_sin(frac, inv_freq)
    torch.testing.assert_close(c.double(), (frac[:, None].double() * inv_freq.double()).cos(), rtol=0, atol=1e-6)
    c_int, _ = rope_cos_sin(3, inv_freq)
    torch.testing.assert_close(c_int, rope_cos_sin(torch.arange(3), inv_freq)[0])


def test_attention_factor_scales_cos_sin_and_the_logits_by_its_square():
    inv_freq, _ = rope_frequencies(16)
    q, k = rand(2, 4, 16, seed=3, dtype=torch.float32)
    c1, s1 = rope_cos_sin(4, inv_freq)
    c2, s2 = rope_cos_sin(4, inv_freq, attention_factor=1.3)
    torch.testing.assert_close(c2, 1.3 * c1)
    logits1 = apply_rope(q, c1, s1) @ apply_rope(k, c1, s1).T
    logits2 = apply_rope(q, c2, s2) @ apply_rope(k, c2, s2).T
    torch.testing.assert_close(logits2, 1.3**2 * logits1, rtol=1e-5, atol=1e-5)


def test_float32_angles_lose_phase_at_large_positions_as_documented():
    inv_freq, _ = rope_frequencies(8)
    m = torch.tensor([1_000_003])
    c32, _ = rope_cos_sin(m, inv_freq)
    exact = (m.double()[:, None] * inv_freq.double()).cos()
    err = (c32.double() - exact).abs().max().item()
    assert 0 < err < 0.06  # the docstring's bound: m · 2^-24 radians on the fastest pair


# --- broadcasting, dtypes, gradients --------------------------------------------------


@pytest.mark.parametrize("layout", ["paper", "half"])
def test_position_ids_broadcast_over_heads(layout):
    x = rand(2, 3, 4, 8, seed=5, dtype=torch.float32)  # (batch, heads, seq, head_dim)
    pos = torch.tensor([[0, 1, 2, 3], [10, 11, 12, 13]])
    inv_freq, _ = rope_frequencies(8)
    cos, sin = rope_cos_sin(pos, inv_freq)
    y = apply_rope(x, cos[:, None], sin[:, None], layout)
    for b in range(2):
        yb = apply_rope_matrix(x[b], pos[b], inv_freq, layout)
        torch.testing.assert_close(y[b], yb.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_their_dtype_and_use_float32_math(dtype):
    x = rand(3, 8, seed=7, dtype=torch.float32).to(dtype)
    cos, sin = rope_cos_sin(3, rope_frequencies(8)[0])
    y = apply_rope(x, cos, sin, "half")
    assert y.dtype == dtype
    expected = apply_rope(x.float(), cos, sin, "half").to(dtype)  # one rounding at the end
    assert torch.equal(y, expected)


@pytest.mark.parametrize("layout", ["paper", "half"])
@pytest.mark.parametrize("rotary_dim", [None, 4])
def test_apply_rope_passes_float64_gradcheck(layout, rotary_dim):
    x = rand(2, 3, 6, seed=11).requires_grad_()
    r = rotary_dim or 6
    angles = torch.arange(3, dtype=torch.float64)[:, None] * rope_frequencies(r)[0].double()
    cos, sin = angles.cos().requires_grad_(), angles.sin().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, c, s: apply_rope(a, c, s, layout, rotary_dim), (x, cos, sin))


def test_backward_is_the_rotation_by_minus_theta():
    """dL/dx = R_{-m} dL/dy: the gradient of a rotation is the inverse rotation."""
    x = rand(5, 8, seed=13).requires_grad_()
    g = rand(5, 8, seed=14)
    inv_freq = rope_frequencies(8)[0].double()
    ang = torch.arange(5, dtype=torch.float64)[:, None] * inv_freq
    apply_rope(x, ang.cos(), ang.sin(), "paper").backward(g)
    torch.testing.assert_close(x.grad, apply_rope(g, ang.cos(), -ang.sin(), "paper"))


# --- weight permutation ---------------------------------------------------------------


@pytest.mark.parametrize("rotary_dim", [None, 4])
def test_permuted_weights_give_identical_scores_in_the_other_layout(rotary_dim):
    n_heads, head_dim, hidden, seq = 3, 8, 12, 5
    h = rand(seq, hidden, seed=21)
    w_q, w_k = rand(n_heads * head_dim, hidden, seed=22), rand(n_heads * head_dim, hidden, seed=23)
    r = rotary_dim or head_dim
    inv_freq = rope_frequencies(r)[0]
    cos, sin = (t.double() for t in rope_cos_sin(seq, inv_freq))

    def scores(wq, wk, layout):
        q = (h @ wq.T).view(seq, n_heads, head_dim).transpose(0, 1)
        k = (h @ wk.T).view(seq, n_heads, head_dim).transpose(0, 1)
        return apply_rope(q, cos, sin, layout, rotary_dim) @ apply_rope(k, cos, sin, layout, rotary_dim).transpose(-1, -2)

    paper = scores(w_q, w_k, "paper")
    half = scores(
        permute_qk_weight(w_q, n_heads, "paper", "half", rotary_dim),
        permute_qk_weight(w_k, n_heads, "paper", "half", rotary_dim),
        "half",
    )
    torch.testing.assert_close(half, paper, rtol=1e-10, atol=1e-10)
    back = permute_qk_weight(permute_qk_weight(w_q, n_heads, "paper", "half"), n_heads, "half", "paper")
    assert torch.equal(back, w_q)
    bias = torch.arange(n_heads * head_dim, dtype=torch.float64)
    assert permute_qk_weight(bias, n_heads, "paper", "half")[:head_dim].tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


# --- bad input ------------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(4, 8)
    cos, sin = rope_cos_sin(4, rope_frequencies(8)[0])
    with pytest.raises(ValueError, match="rotary_dim must be a positive even"):
        apply_rope(x, cos[:, :3], sin[:, :3], rotary_dim=5)
    with pytest.raises(ValueError, match=r"rotary_dim must be a positive even integer <= x's head_dim \(8\), got 10"):
        apply_rope(x, cos, sin, rotary_dim=10)
    with pytest.raises(ValueError, match=r"rotary_dim must be 2 \* \(columns of cos/sin\) = 8, got 4"):
        apply_rope(x, cos, sin, rotary_dim=4)
    with pytest.raises(ValueError, match="do not broadcast"):
        apply_rope(x, cos[:3], sin[:3])
    with pytest.raises(ValueError, match="do not broadcast"):
        apply_rope(x, cos.expand(2, 4, 4), sin.expand(2, 4, 4))  # would grow x
    with pytest.raises(ValueError, match="same shape"):
        apply_rope(x, cos, sin[:3])
    with pytest.raises(ValueError, match="layout must be 'paper' or 'half'"):
        apply_rope(x, cos, sin, layout="neox")
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        apply_rope(torch.ones(4, 8, dtype=torch.int64), cos, sin)
    with pytest.raises(ValueError, match="dim must be a positive even"):
        rotation_matrix(1, 7)
    with pytest.raises(ValueError, match="layout must be"):
        rotation_matrix(1, 8, layout="x")
    with pytest.raises(ValueError, match="n_heads must be"):
        permute_qk_weight(torch.randn(10, 4), 3, "paper", "half")
    with pytest.raises(ValueError, match="layout_to must be"):
        permute_qk_weight(torch.randn(8, 4), 1, "paper", "neox")


# --- long-term decay (RoFormer §3.4.3) -------------------------------------------------


def test_decay_bound_is_roformer_formula():
    dim, base = 16, 10000.0
    inv_freq, _ = rope_frequencies(dim, base)
    theta = base ** (-np.arange(0, dim, 2) / dim)
    for r in (0, 1, 7, 100):
        # S_j = Σ_{k<j} e^{i r θ_k} for j = 1 .. d/2, averaged in absolute value
        S = [abs(sum(np.exp(1j * r * theta[k]) for k in range(j))) for j in range(1, dim // 2 + 1)]
        assert rope_decay_bound(torch.tensor([r]), inv_freq).item() == pytest.approx(np.mean(S), rel=1e-5)
    assert rope_decay_bound(torch.tensor([0]), inv_freq).item() == pytest.approx((dim // 2 + 1) / 2)


# --- apply_rope_qk: the kernel's twin checks every value ----------------------------------------


def _twin_inputs():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 5, 4, 8, generator=g), torch.randn(2, 5, 2, 8, generator=g)
    inv_freq, _ = ropekit.rope_frequencies(8)
    cos, sin = ropekit.rope_cos_sin(10, inv_freq)
    return q, k, inv_freq, cos, sin


def test_twin_rotates_each_token_by_its_position_as_the_explicit_matrix_does():
    from ropekit.reference import apply_rope_qk

    q, k, inv_freq, _, _ = _twin_inputs()
    positions = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    q_out, k_out = apply_rope_qk(q, k, inv_freq=inv_freq, positions=positions)
    for b in range(2):
        for s in range(5):
            R = ropekit.rotation_matrix(int(positions[b, s]), 8, layout="half", inv_freq=inv_freq)
            torch.testing.assert_close(q_out[b, s].double(), q[b, s].double() @ R.T, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(k_out[b, s].double(), k[b, s].double() @ R.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(positions=torch.tensor([[0, 1, 2, 3, 10], [0, 1, 2, 3, 4]])), "outside the cos/sin table"),
        (dict(positions=torch.tensor([-1, 0])), "outside the cos/sin table"),
        (dict(positions=6), "rows"),
    ],
)
def test_twin_raises_for_positions_outside_the_table(kwargs, match):
    from ropekit.reference import apply_rope_qk

    q, k, _, cos, sin = _twin_inputs()
    with pytest.raises(ValueError, match=match):
        apply_rope_qk(q, k, cos, sin, **kwargs)


@pytest.mark.parametrize(
    "cu_seqlens, positions, match",
    [
        ([0, 5, 3, 8], None, "never decrease"),
        ([1, 4, 8], None, "start at 0"),
        ([0, 4, 12], None, "end at most"),
        ([0, 2, 4, 6], torch.tensor([10, 20]), "one per sequence"),
    ],
)
def test_twin_validates_packed_sequences_fully(cu_seqlens, positions, match):
    from ropekit.reference import apply_rope_qk

    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(8, 4, 8, generator=g), torch.randn(8, 2, 8, generator=g)
    inv_freq, _ = ropekit.rope_frequencies(8)
    with pytest.raises(ValueError, match=match):
        apply_rope_qk(q, k, inv_freq=inv_freq, positions=positions,
                      cu_seqlens=torch.tensor(cu_seqlens, dtype=torch.int32))
