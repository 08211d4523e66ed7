"""The Triton M-RoPE kernel (ropekit.kernels.apply_mrope_qk) against its plain-torch twin
ropekit.mrope.apply_mrope_qk, which takes the same arguments.

On a CPU these run under TRITON_INTERPRET=1 (conftest.py) with tiny shapes; on a GPU the
same tests run on CUDA with model-sized ones. Tolerances: float32 within 1e-6; float16 and
bfloat16 within one unit in the last place of the twin's result (computed in float32 from
the same input and rounded once), plus 1e-6 absolute for cancellations.
"""

import pytest
import torch

import ropekit
from ropekit import mrope
from ropekit.kernels import apply_mrope_qk

CUDA = torch.cuda.is_available()
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (batch, seq, q_heads, kv_heads, head_dim) and the sections of head_dim // 2 pairs.
SHAPE, SECTIONS = ((2, 300, 32, 8, 128), (16, 24, 24)) if CUDA else ((2, 5, 4, 2, 16), (2, 3, 3))
INTERLEAVED_SECTIONS = (24, 20, 20) if CUDA else (3, 3, 2)


def assert_close_in_dtype(out, ref):
    assert out.dtype == ref.dtype and out.shape == ref.shape, (out.dtype, ref.dtype, out.shape, ref.shape)
    dtype = out.dtype
    out, ref = out.detach().cpu().double(), ref.detach().cpu().double()
    assert not out.isnan().any(), "NaN in the kernel output"
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
        return
    finfo = torch.finfo(dtype)
    ulp = torch.exp2(torch.floor(torch.log2(ref.abs().clamp(min=finfo.smallest_normal)))) * finfo.eps
    worst = (((out - ref).abs() - 1e-6).clamp(min=0) / ulp).max().item()
    assert worst <= 1.0, f"{dtype} output off by {worst:.2f} ulp"


def make_case(device, dtype, batch, seq, q_heads, kv_heads, head_dim, hf_layout=False, seed=0, rotary_dim=None):
    g = torch.Generator().manual_seed(seed)
    if hf_layout:  # transposed views of (batch, heads, seq, head_dim) tensors, as HF passes them
        q = torch.randn(batch, q_heads, seq, head_dim, generator=g).to(device, dtype).transpose(1, 2)
        k = torch.randn(batch, kv_heads, seq, head_dim, generator=g).to(device, dtype).transpose(1, 2)
    else:
        q = torch.randn(batch, seq, q_heads, head_dim, generator=g).to(device, dtype)
        k = torch.randn(batch, seq, kv_heads, head_dim, generator=g).to(device, dtype)
    positions = torch.randint(0, 2000, (3, batch, seq), generator=g).to(device)
    inv_freq, _ = ropekit.rope_frequencies(rotary_dim or head_dim, 1_000_000.0)
    return q, k, positions, inv_freq.to(device)


def both(q, k, positions, inv_freq, sections, **kw):
    """(kernel result, twin result) for the same arguments."""
    return apply_mrope_qk(q, k, positions, inv_freq, sections, **kw), mrope.apply_mrope_qk(
        q, k, positions, inv_freq, sections, **kw)


# --- forward ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("interleaved", [False, True])
def test_matches_the_twin_for_every_layout_dtype_and_axis_pattern(device, dtype, layout, interleaved):
    q, k, positions, inv_freq = make_case(device, dtype, *SHAPE)
    sections = INTERLEAVED_SECTIONS if interleaved else SECTIONS
    (q_out, k_out), (q_ref, k_ref) = both(q, k, positions, inv_freq, sections, interleaved=interleaved,
                                          layout=layout)
    assert_close_in_dtype(q_out, q_ref)
    assert_close_in_dtype(k_out, k_ref)


def test_grouped_query_heads_each_keep_their_own_values(device):
    """Several distinct kv heads: a wrong head mapping would mix them up."""
    q, k, positions, inv_freq = make_case(device, torch.float32, 1, 4, 6, 3, 8)
    (q_out, k_out), (q_ref, k_ref) = both(q, k, positions, inv_freq, (2, 1, 1))
    assert_close_in_dtype(k_out, k_ref)
    assert_close_in_dtype(q_out, q_ref)
    assert not torch.allclose(k_out[:, :, 0], k_out[:, :, 1])


@pytest.mark.parametrize("head_dim,rotary_dim,sections", [(20, 20, (4, 3, 3)), (24, 8, (2, 1, 1)), (10, 6, (1, 1, 1))])
@pytest.mark.parametrize("layout", ["half", "paper"])
def test_any_even_head_dim_and_partial_rotary(device, head_dim, rotary_dim, sections, layout):
    q, k, positions, inv_freq = make_case(device, torch.float32, 2, 3, 3, 1, head_dim, rotary_dim=rotary_dim)
    (q_out, k_out), (q_ref, k_ref) = both(q, k, positions, inv_freq, sections, layout=layout)
    assert_close_in_dtype(q_out, q_ref)
    assert_close_in_dtype(k_out, k_ref)
    assert torch.equal(q_out[..., rotary_dim:], q[..., rotary_dim:])


def test_strided_views_broadcast_and_int32_positions_and_attention_factor(device):
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k, positions, inv_freq = make_case(device, torch.bfloat16, *SHAPE, hf_layout=True)
    positions = positions[:, :1].to(torch.int32)  # (3, 1, seq) shared by the batch
    q_before = q.clone()
    (q_out, k_out), (q_ref, k_ref) = both(q, k, positions, inv_freq, SECTIONS, attention_factor=1.25)
    assert q_out.stride() == q.stride() and k_out.stride() == k.stride()
    assert torch.equal(q, q_before)
    assert_close_in_dtype(q_out, q_ref)
    assert_close_in_dtype(k_out, k_ref)
    qk = torch.cat((q.contiguous(), k.contiguous()), dim=2)  # slices of one fused projection
    q_out, k_out = apply_mrope_qk(qk[:, :, :q_heads], qk[:, :, q_heads:], positions, inv_freq, SECTIONS,
                                  attention_factor=1.25)
    assert_close_in_dtype(q_out, q_ref)
    assert_close_in_dtype(k_out, k_ref)


def test_qwen2_vl_position_ids_of_a_text_image_prompt(device):
    """The ids that get_rope_index builds, rotated by kernel and twin alike."""
    types_ = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 0]])
    positions, _ = mrope.mrope_position_ids(types_, torch.tensor([[1, 2, 3]]))
    q, k, _, inv_freq = make_case(device, torch.float32, 1, 9, 2, 1, 16)
    (q_out, k_out), (q_ref, k_ref) = both(q, k, positions.to(device), inv_freq, (2, 3, 3))
    assert_close_in_dtype(q_out, q_ref)
    assert_close_in_dtype(k_out, k_ref)


# --- in place and backward -------------------------------------------------------------------------


def test_inplace_writes_into_q_and_k(device):
    q, k, positions, inv_freq = make_case(device, torch.float16, *SHAPE)
    q_ref, k_ref = mrope.apply_mrope_qk(q, k, positions, inv_freq, SECTIONS)
    q_out, k_out = apply_mrope_qk(q, k, positions, inv_freq, SECTIONS, inplace=True)
    assert q_out is q and k_out is k
    assert_close_in_dtype(q, q_ref)
    assert_close_in_dtype(k, k_ref)


@pytest.mark.parametrize("interleaved", [False, True])
def test_backward_is_the_rotation_by_minus_theta_and_matches_autograd_of_the_twin(device, interleaved):
    sections = INTERLEAVED_SECTIONS if interleaved else SECTIONS
    q, k, positions, inv_freq = make_case(device, torch.float32, *SHAPE, hf_layout=True)
    q1, k1 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    q2, k2 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    g = torch.Generator().manual_seed(7)
    dq, dk = torch.randn(q.shape, generator=g).to(device), torch.randn(k.shape, generator=g).to(device)
    out = apply_mrope_qk(q1, k1, positions, inv_freq, sections, interleaved=interleaved)
    torch.autograd.backward(out, (dq, dk))
    ref = mrope.apply_mrope_qk(q2, k2, positions, inv_freq, sections, interleaved=interleaved)
    torch.autograd.backward(ref, (dq, dk))
    assert_close_in_dtype(q1.grad, q2.grad)
    assert_close_in_dtype(k1.grad, k2.grad)
    # The gradient rotated forward again gives back dq: R(θ)·R(−θ) = I.
    back, _ = apply_mrope_qk(q1.grad, k1.grad, positions, inv_freq, sections, interleaved=interleaved)
    torch.testing.assert_close(back, dq, rtol=1e-5, atol=1e-5)


def test_double_backward_and_inplace_on_views_under_autograd(device):
    q, k, positions, inv_freq = make_case(device, torch.float32, 1, 4, 2, 1, 8)
    q = q.detach().requires_grad_()
    q_out, k_out = apply_mrope_qk(q, k, positions, inv_freq, (2, 1, 1))
    (grad,) = torch.autograd.grad((q_out ** 2).sum(), q, create_graph=True)
    (grad2,) = torch.autograd.grad(grad.sum(), q)
    torch.testing.assert_close(grad2, torch.full_like(q, 2.0), rtol=1e-5, atol=1e-5)  # d²/dq² of |Rq|² = 2

    weight = torch.randn(8, 24, device=device, requires_grad=True)  # HF: q_proj(x).view(...), in place
    x = torch.randn(1, 4, 8, device=device)
    ref = (x @ weight).view(1, 4, 3, 8)
    ref_q, ref_k = mrope.apply_mrope_qk(ref[:, :, :2], ref[:, :, 2:], positions, inv_freq, (2, 1, 1))
    (expected,) = torch.autograd.grad((ref_q * 3).sum() + ref_k.sum(), weight)
    qkv = (x @ weight).view(1, 4, 3, 8)
    out_q, out_k = apply_mrope_qk(qkv[:, :, :2], qkv[:, :, 2:], positions, inv_freq, (2, 1, 1), inplace=True)
    assert_close_in_dtype(out_q, ref_q)
    assert_close_in_dtype(qkv[:, :, 2:], ref_k)
    ((out_q * 3).sum() + out_k.sum()).backward()
    torch.testing.assert_close(weight.grad, expected, rtol=1e-5, atol=1e-5)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,error,match",
    [
        (dict(positions=lambda p: p[:2]), ValueError, r"positions must be an integer \(3, batch, seq\)"),
        (dict(positions=lambda p: p[:, :, :1]), ValueError, r"positions must have shape \(3, 1 or 1, 4\)"),
        (dict(positions=lambda p: p.to(torch.int16)), ValueError, "positions must be an int32 or int64"),
        (dict(sections=(2, 2, 1)), ValueError, "sections must sum to len"),
        (dict(sections=(1, 1)), ValueError, "sections must be three non-negative integers"),
        (dict(sections=(0, 1, 3), interleaved=True), ValueError, "do not fit"),
        (dict(layout="neox"), ValueError, "layout must be 'paper' or 'half'"),
        (dict(q=lambda q: q.double()), TypeError, "q must be float16, bfloat16 or float32"),
        (dict(k=lambda k: k[:, :2]), ValueError, r"q must be \(batch, seq, q_heads, head_dim\)"),
        (dict(inv_freq=lambda f: f[None]), ValueError, r"inv_freq must be a floating-point \(rotary_dim"),
        (dict(inv_freq=lambda f: torch.ones(5)), ValueError, "rotary_dim = 2·len"),
    ],
)
def test_bad_arguments_are_named(device, change, error, match):
    q, k, positions, inv_freq = make_case(device, torch.float32, 1, 4, 2, 1, 8)
    args = dict(q=q, k=k, positions=positions, inv_freq=inv_freq, sections=(2, 1, 1))
    for name, value in change.items():
        args[name] = value(args[name]) if callable(value) else value
    if isinstance(args["inv_freq"], torch.Tensor):
        args["inv_freq"] = args["inv_freq"].to(device)
    with pytest.raises(error, match=match):
        apply_mrope_qk(**args)


def test_inplace_on_a_leaf_that_requires_grad_is_refused_before_writing(device):
    q, k, positions, inv_freq = make_case(device, torch.float32, 1, 4, 2, 1, 8)
    q.requires_grad_()
    before = q.detach().clone()
    with pytest.raises(ValueError, match="inplace=True cannot overwrite q, a leaf that requires grad"):
        apply_mrope_qk(q, k, positions, inv_freq, (2, 1, 1), inplace=True)
    assert torch.equal(q.detach(), before)


# --- torch.compile -----------------------------------------------------------------------------------


def test_torch_compile_fullgraph_gives_the_eager_result(device):
    """fullgraph=True raises on any graph break; forward and gradients equal eager mode."""
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k, positions, inv_freq = make_case(device, torch.float32, *SHAPE, hf_layout=True)
    w = torch.randn(head_dim, head_dim, generator=torch.Generator().manual_seed(10)).to(device) / head_dim**0.5
    w.requires_grad_()

    def model(q, k, w):
        q_rot, k_rot = apply_mrope_qk(q @ w, k @ w, positions, inv_freq, INTERLEAVED_SECTIONS, True)
        k_again, _ = apply_mrope_qk(k @ w, k * 1.0, positions, inv_freq, SECTIONS, inplace=True)
        return (q_rot[:, :, :kv_heads] * k_rot).sum() + (k_again ** 2 * k_rot).sum()

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="inductor" if CUDA else "aot_eager")
    out = compiled(q, k, w)
    (grad,) = torch.autograd.grad(out, w)
    out_eager = model(q, k, w)
    (grad_eager,) = torch.autograd.grad(out_eager, w)
    torch.testing.assert_close(out, out_eager, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad, grad_eager, rtol=1e-5, atol=1e-4)


def test_custom_op_passes_torch_library_opcheck(device):
    q, k, positions, inv_freq = make_case(device, torch.float32, 2, 3, 2, 1, 8)
    args = (q.requires_grad_(), k, positions, inv_freq, [2, 1, 1], False, "half", 1.0, False)
    torch.library.opcheck(torch.ops.ropekit.mrope_qk.default, args,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_empty_sequence_returns_empty_tensors(device):
    q, k, positions, inv_freq = make_case(device, torch.float32, 2, 0, 2, 1, 8)
    q_out, k_out = apply_mrope_qk(q, k, positions, inv_freq, (2, 1, 1))
    q_ref, k_ref = mrope.apply_mrope_qk(q, k, positions, inv_freq, (2, 1, 1))
    assert q_out.shape == q_ref.shape == (2, 0, 2, 8) and k_out.shape == k_ref.shape == (2, 0, 1, 8)


# --- exact angles ------------------------------------------------------------------------------------


def rotate_in_float64(x, positions, inv_freq, sections, interleaved, layout):
    """M-RoPE written out in float64: each pair turned by cos/sin of p_{a(i)}·θ_i formed in
    float64 (at p near 2^31 that product is within 2^31·2^-53 ≈ 2.4e-7 rad)."""
    axes = mrope.mrope_pair_axes(sections, interleaved)
    p = positions.cpu().double().expand(3, x.shape[0], x.shape[1])  # (3, batch, seq)
    angle = p[axes].permute(1, 2, 0) * inv_freq.cpu().double()  # (batch, seq, r/2): p_{a(i)}·θ_i
    cos, sin = angle.cos()[:, :, None], angle.sin()[:, :, None]
    x = x.detach().cpu().double()
    half = inv_freq.shape[0]
    if layout == "paper":
        a, b = x[..., 0:2 * half:2], x[..., 1:2 * half:2]
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    else:
        a, b = x[..., :half], x[..., half:2 * half]
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    return torch.cat((out, x[..., 2 * half:]), dim=-1)


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("interleaved", [False, True])
def test_exact_angles_match_the_twin_for_every_layout_dtype_and_axis_pattern(device, dtype, layout, interleaved):
    q, k, positions, inv_freq = make_case(device, dtype, *SHAPE)
    sections = INTERLEAVED_SECTIONS if interleaved else SECTIONS
    (q_out, k_out), (q_ref, k_ref) = both(q, k, positions, inv_freq, sections, interleaved=interleaved,
                                          layout=layout, angles="exact")
    assert_close_in_dtype(q_out, q_ref)
    assert_close_in_dtype(k_out, k_ref)


def test_exact_angles_with_grouped_query_heads_hf_memory_and_partial_rotary(device):
    q, k, positions, inv_freq = make_case(device, torch.float32, 2, 4, 6, 3, 24, hf_layout=True, rotary_dim=16)
    (q_out, k_out), (q_ref, k_ref) = both(q, k, positions, inv_freq, (3, 3, 2), interleaved=True, angles="exact")
    assert_close_in_dtype(q_out, q_ref)
    assert_close_in_dtype(k_out, k_ref)
    assert not torch.allclose(k_out[:, :, 0], k_out[:, :, 1])
    assert torch.equal(q_out[..., 16:], q[..., 16:])


@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("interleaved", [False, True])
def test_exact_angles_are_float64_accurate_near_position_2_31_where_float32_is_not(device, layout, interleaved):
    """One axis (h) at positions just below 2^31, the others small: the exact kernel
    agrees with the rotation computed in float64; float32 angles are off by O(1)."""
    sections = INTERLEAVED_SECTIONS if interleaved else SECTIONS
    q, k, positions, inv_freq = make_case(device, torch.float32, *SHAPE)
    positions[1] += 2**31 - 1 - 2000
    inv_freq = inv_freq.double()  # θ_i taken as exact: the float64 reference uses the same values
    q_out, k_out = apply_mrope_qk(q, k, positions, inv_freq, sections, interleaved, layout, angles="exact")
    q_64 = rotate_in_float64(q, positions, inv_freq, sections, interleaved, layout)
    k_64 = rotate_in_float64(k, positions, inv_freq, sections, interleaved, layout)
    # float32 rounding of cos/sin and of the products (~1e-7 each) times |x| <= ~5, plus
    # the float64 reference's own 2.4e-7 rad: well under 1e-5.
    torch.testing.assert_close(q_out.cpu().double(), q_64, rtol=0, atol=1e-5)
    torch.testing.assert_close(k_out.cpu().double(), k_64, rtol=0, atol=1e-5)
    q_f32, _ = apply_mrope_qk(q, k, positions, inv_freq.float(), sections, interleaved, layout)
    assert (q_f32.cpu().double() - q_64).abs().max() > 0.1


def test_exact_angles_from_fixed_point_turns_equal_those_from_inv_freq(device):
    q, k, positions, inv_freq = make_case(device, torch.float32, *SHAPE)
    turns = ropekit.fixed_point_turns(inv_freq)
    from_turns = apply_mrope_qk(q, k, positions, turns, SECTIONS, angles="exact")
    from_freq = apply_mrope_qk(q, k, positions, inv_freq, SECTIONS, angles="exact")
    assert torch.equal(from_turns[0], from_freq[0]) and torch.equal(from_turns[1], from_freq[1])
    twin = mrope.apply_mrope_qk(q, k, positions, turns, SECTIONS, angles="exact")
    assert_close_in_dtype(from_turns[0], twin[0])


@pytest.mark.parametrize("interleaved", [False, True])
def test_exact_angles_backward_matches_autograd_of_the_twin(device, interleaved):
    sections = INTERLEAVED_SECTIONS if interleaved else SECTIONS
    q, k, positions, inv_freq = make_case(device, torch.float32, *SHAPE, hf_layout=True)
    positions[2] += 2**30
    turns = ropekit.fixed_point_turns(inv_freq)
    q1, k1 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    q2, k2 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    g = torch.Generator().manual_seed(7)
    dq, dk = torch.randn(q.shape, generator=g).to(device), torch.randn(k.shape, generator=g).to(device)
    torch.autograd.backward(apply_mrope_qk(q1, k1, positions, turns, sections, interleaved, angles="exact"),
                            (dq, dk))
    torch.autograd.backward(mrope.apply_mrope_qk(q2, k2, positions, turns, sections, interleaved, angles="exact"),
                            (dq, dk))
    assert_close_in_dtype(q1.grad, q2.grad)
    assert_close_in_dtype(k1.grad, k2.grad)


def test_exact_angles_under_torch_compile_take_turns_and_refuse_float_inv_freq(device):
    q, k, positions, inv_freq = make_case(device, torch.float32, *SHAPE)
    turns = ropekit.fixed_point_turns(inv_freq)
    backend = "inductor" if CUDA else "aot_eager"

    def rotate(q, k, freqs):
        return apply_mrope_qk(q, k, positions, freqs, SECTIONS, angles="exact")

    torch._dynamo.reset()
    q_out, k_out = torch.compile(rotate, fullgraph=True, backend=backend)(q, k, turns)
    q_ref, k_ref = mrope.apply_mrope_qk(q, k, positions, turns, SECTIONS, angles="exact")
    assert_close_in_dtype(q_out, q_ref)
    assert_close_in_dtype(k_out, k_ref)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="under torch.compile, angles='exact' needs inv_freq=ropekit.fixed_point_turns"):
        torch.compile(rotate, fullgraph=True, backend=backend)(q, k, inv_freq)


@pytest.mark.parametrize(
    "angles,freqs,match",
    [("float64", lambda f: f, "angles must be 'float32' or 'exact'"),
     ("float32", lambda f: ropekit.fixed_point_turns(f), r"inv_freq must be a floating-point \(rotary_dim // 2,\)")],
)
def test_bad_angle_mode_arguments_are_named(device, angles, freqs, match):
    q, k, positions, inv_freq = make_case(device, torch.float32, 1, 4, 2, 1, 8)
    with pytest.raises(ValueError, match=match):
        apply_mrope_qk(q, k, positions, freqs(inv_freq), (2, 1, 1), angles=angles)
