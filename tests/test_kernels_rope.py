"""The Triton RoPE kernel (ropekit.kernels.apply_rope_qk) against its specification,
ropekit.apply_rope / ropekit.rope_cos_sin.

On a CPU these run under TRITON_INTERPRET=1 (set by conftest.py) on tiny shapes; on a GPU
the same tests run on CUDA with model-sized shapes. Tolerances: float32 within 1e-6; a
float16/bfloat16 output within one unit in the last place of the reference computed in
float32 from the same low-precision input and rounded once. (Plus 1e-6 absolute: where
a·cos − b·sin cancels to far below the inputs, the float32 rounding of the products,
e.g. fused or not into an FMA, is larger than a bfloat16 ulp of the tiny result.)
"""

import inspect

import pytest
import torch

import ropekit
from ropekit.kernels import apply_rope_qk
from ropekit.kernels import rope as rope_module
from ropekit.kernels import rope_triton
from ropekit.reference import apply_rope_qk as reference_apply_rope_qk

CUDA = torch.cuda.is_available()
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LAYOUTS = ("half", "paper")

# (batch, seq, q_heads, kv_heads, head_dim): tiny under the interpreter, model-sized on a GPU.
SHAPE = (2, 300, 32, 8, 128) if CUDA else (2, 5, 4, 2, 16)


# --- helpers -----------------------------------------------------------------------------


def reference(x, cos, sin, layout, rotary_dim=None):
    """apply_rope on x (batch, seq, heads, head_dim) with per-token cos/sin (batch or 1, seq, r/2),
    broadcast over the heads: the expected value, computed independently of the kernel's twin."""
    return ropekit.apply_rope(x, cos[..., None, :], sin[..., None, :], layout, rotary_dim)


def reference_packed(x, cos, sin, layout):
    """apply_rope on packed x (tokens, heads, head_dim) with cos/sin (tokens, r/2)."""
    return ropekit.apply_rope(x, cos[:, None], sin[:, None], layout)


def assert_close_in_dtype(out, ref):
    """Compare a kernel output with a reference of the same dtype (see module docstring)."""
    assert out.dtype == ref.dtype, (out.dtype, ref.dtype)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    dtype = out.dtype
    out, ref = out.detach().cpu().double(), ref.detach().cpu().double()
    assert not out.isnan().any(), "NaN in the kernel output"
    if dtype == torch.float32:
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
        return
    finfo = torch.finfo(dtype)
    magnitude = ref.abs().clamp(min=finfo.smallest_normal)
    ulp = torch.exp2(torch.floor(torch.log2(magnitude))) * finfo.eps
    err = ((out - ref).abs() - 1e-6).clamp(min=0)
    worst = (err / ulp).max().item()
    assert worst <= 1.0, f"{dtype} output off by {worst:.2f} ulp"


def make_qk(device, dtype, batch, seq, q_heads, kv_heads, head_dim, hf_layout=False, seed=0):
    """Random q, k of shape (batch, seq, heads, head_dim); with hf_layout, as the transposed
    views of (batch, heads, seq, head_dim) tensors that Hugging Face models pass."""
    g = torch.Generator().manual_seed(seed)
    if hf_layout:
        q = torch.randn(batch, q_heads, seq, head_dim, generator=g).to(device, dtype).transpose(1, 2)
        k = torch.randn(batch, kv_heads, seq, head_dim, generator=g).to(device, dtype).transpose(1, 2)
    else:
        q = torch.randn(batch, seq, q_heads, head_dim, generator=g).to(device, dtype)
        k = torch.randn(batch, seq, kv_heads, head_dim, generator=g).to(device, dtype)
    return q, k


def table(device, n_positions, rotary_dim, base=10000.0):
    inv_freq, _ = ropekit.rope_frequencies(rotary_dim, base)
    cos, sin = ropekit.rope_cos_sin(n_positions, inv_freq)
    return inv_freq.to(device), cos.to(device), sin.to(device)


# --- forward: layouts, dtypes, GQA, head_dim, partial rotary, strided views ------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_reference_for_every_layout_and_dtype(device, layout, dtype):
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k = make_qk(device, dtype, *SHAPE)
    inv_freq, cos, sin = table(device, seq, head_dim)
    q_out, k_out = apply_rope_qk(q, k, cos, sin, layout)
    assert_close_in_dtype(q_out, reference(q, cos[None], sin[None], layout))
    assert_close_in_dtype(k_out, reference(k, cos[None], sin[None], layout))


@pytest.mark.parametrize(
    "head_dim, rotary_dim",
    [(80, 80), (96, 96), (256, 256), (128, 64), (80, 32)] if CUDA else [(20, 20), (24, 8), (10, 6)],
)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_any_even_head_dim_and_partial_rotary(device, layout, head_dim, rotary_dim):
    """Non-power-of-2 sizes are masked; features past rotary_dim pass through."""
    q, k = make_qk(device, torch.float32, 2, 7, 3, 1, head_dim)
    inv_freq, cos, sin = table(device, 7, rotary_dim)
    q_out, k_out = apply_rope_qk(q, k, cos, sin, layout, rotary_dim=rotary_dim)
    assert_close_in_dtype(q_out, reference(q, cos[None], sin[None], layout, rotary_dim))
    assert_close_in_dtype(k_out, reference(k, cos[None], sin[None], layout, rotary_dim))
    assert torch.equal(q_out[..., rotary_dim:], q[..., rotary_dim:])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_strided_views_are_read_in_place_and_outputs_keep_their_strides(device, layout):
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k = make_qk(device, torch.bfloat16, *SHAPE, hf_layout=True)
    inv_freq, cos, sin = table(device, seq, head_dim)
    q_before = q.clone()
    q_out, k_out = apply_rope_qk(q, k, cos, sin, layout)
    assert q_out.stride() == q.stride() and k_out.stride() == k.stride()
    assert torch.equal(q, q_before), "out of place must leave q alone"
    assert_close_in_dtype(q_out, reference(q, cos[None], sin[None], layout))
    assert_close_in_dtype(k_out, reference(k, cos[None], sin[None], layout))
    # q and k as slices of one fused projection output (batch, seq, q_heads + kv_heads, head_dim)
    qk = torch.cat((q.contiguous(), k.contiguous()), dim=2)
    q_out, k_out = apply_rope_qk(qk[:, :, :q_heads], qk[:, :, q_heads:], cos, sin, layout)
    assert_close_in_dtype(q_out, reference(q, cos[None], sin[None], layout))
    assert_close_in_dtype(k_out, reference(k, cos[None], sin[None], layout))


def test_single_kv_head_out_of_place_returns_a_new_k(device):
    """A peer's always-in-place kernel returned k unchanged for one kv head, because a
    .contiguous() no-op aliased its input."""
    q, k = make_qk(device, torch.float32, 2, 6, 2, 1, 16)
    inv_freq, cos, sin = table(device, 6, 16)
    k_before = k.clone()
    q_out, k_out = apply_rope_qk(q, k, cos, sin)
    assert k_out.data_ptr() != k.data_ptr() and q_out.data_ptr() != q.data_ptr()
    assert torch.equal(k, k_before)
    assert_close_in_dtype(k_out, reference(k, cos[None], sin[None], "half"))
    assert not torch.equal(k_out, k)


# --- positions: tables and angles computed in the kernel ---------------------------------------


def _positions_cases(batch, seq, device):
    g = torch.Generator().manual_seed(1)
    offsets = torch.randint(0, 50, (batch,), generator=g)
    ids = torch.randint(0, 60, (batch, seq), generator=g)
    return [
        ("none", None, torch.arange(seq)[None]),
        ("int offset", 9, 9 + torch.arange(seq)[None]),
        ("per-batch offsets", offsets.to(device), offsets[:, None] + torch.arange(seq)),
        ("position_ids", ids.to(device), ids),
        ("broadcast position_ids", ids[:1].to(device, torch.int32), ids[:1]),
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["table", "computed"])
def test_every_positions_form_matches_rope_cos_sin(device, layout, mode):
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k = make_qk(device, torch.float32, *SHAPE)
    inv_freq, cos_table, sin_table = table(device, 64 + seq, head_dim)
    for name, positions, expected in _positions_cases(batch, seq, device):
        cos, sin = ropekit.rope_cos_sin(expected, inv_freq.cpu())
        cos, sin = cos.to(device), sin.to(device)
        if mode == "table":
            q_out, k_out = apply_rope_qk(q, k, cos_table, sin_table, layout, positions=positions)
        else:
            q_out, k_out = apply_rope_qk(q, k, layout=layout, positions=positions, inv_freq=inv_freq)
        assert_close_in_dtype(q_out, reference(q, cos, sin, layout))
        assert_close_in_dtype(k_out, reference(k, cos, sin, layout))


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_token_tables_as_hugging_face_passes_them(device, dtype):
    """cos/sin (batch, seq, r/2), gathered per token from position_ids, in the model's dtype."""
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k = make_qk(device, dtype, *SHAPE, hf_layout=True)
    inv_freq, _, _ = table(device, 1, head_dim)
    ids = torch.randint(0, 1000, (batch, seq), generator=torch.Generator().manual_seed(2)).to(device)
    cos, sin = ropekit.rope_cos_sin(ids, inv_freq)
    cos, sin = cos.to(dtype), sin.to(dtype)
    q_out, k_out = apply_rope_qk(q, k, cos, sin)
    assert_close_in_dtype(q_out, reference(q, cos, sin, "half"))
    assert_close_in_dtype(k_out, reference(k, cos, sin, "half"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_computed_angles_with_attention_factor_and_large_positions(device, dtype):
    """float32 angle = float32(m)·θ_i, then cos/sin, then × attention factor, as in rope_cos_sin."""
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k = make_qk(device, dtype, *SHAPE)
    inv_freq, factor = ropekit.rope_frequencies(head_dim, 500000.0, "yarn", factor=4.0,
                                                original_max_position_embeddings=64)
    positions = 123_456
    cos, sin = ropekit.rope_cos_sin(positions + torch.arange(seq), inv_freq, factor)
    q_out, k_out = apply_rope_qk(q, k, positions=positions, inv_freq=inv_freq.to(device),
                                 attention_factor=factor)
    assert_close_in_dtype(q_out, reference(q, cos[None].to(device), sin[None].to(device), "half"))
    assert_close_in_dtype(k_out, reference(k, cos[None].to(device), sin[None].to(device), "half"))


def test_positions_outside_the_table_give_nan_not_a_wrong_answer(device):
    q, k = make_qk(device, torch.float32, 2, 4, 2, 1, 8)
    inv_freq, cos, sin = table(device, 10, 8)
    ids = torch.tensor([[0, 1, 2, 10], [-1, 3, 4, 5]], device=device)
    q_out, k_out = apply_rope_qk(q, k, cos, sin, positions=ids)
    bad = torch.tensor([[False, False, False, True], [True, False, False, False]], device=device)
    assert q_out[bad].isnan().all() and k_out[bad].isnan().all()
    assert not q_out[~bad].isnan().any()


# --- packed (varlen) sequences ------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["table", "computed"])
def test_packed_sequences_restart_their_positions(device, layout, mode):
    lengths = [300, 0, 1, 517, 64] if CUDA else [3, 0, 1, 6, 2]
    padding = 5  # tokens after cu_seqlens[-1] pass through
    _, _, q_heads, kv_heads, head_dim = SHAPE
    total = sum(lengths) + padding
    cu_seqlens = torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0, dtype=torch.int32).to(device)
    g = torch.Generator().manual_seed(3)
    q = torch.randn(total, q_heads, head_dim, generator=g).to(device)
    k = torch.randn(total, kv_heads, head_dim, generator=g).to(device)
    inv_freq, cos_table, sin_table = table(device, 600, head_dim)
    for offsets in (None, 7, torch.tensor([4, 0, 2, 1, 9])):
        starts = torch.zeros(len(lengths), dtype=torch.long) if offsets is None else (
            torch.full((len(lengths),), offsets) if isinstance(offsets, int) else offsets)
        pos = torch.cat([s + torch.arange(n) for s, n in zip(starts.tolist(), lengths)])
        cos, sin = ropekit.rope_cos_sin(pos, inv_freq.cpu())
        cos = torch.cat((cos, torch.ones(padding, head_dim // 2))).to(device)
        sin = torch.cat((sin, torch.zeros(padding, head_dim // 2))).to(device)
        positions = offsets.to(device) if isinstance(offsets, torch.Tensor) else offsets
        if mode == "table":
            q_out, k_out = apply_rope_qk(q, k, cos_table, sin_table, layout, positions=positions,
                                         cu_seqlens=cu_seqlens)
        else:
            q_out, k_out = apply_rope_qk(q, k, layout=layout, positions=positions, inv_freq=inv_freq,
                                         cu_seqlens=cu_seqlens)
        assert_close_in_dtype(q_out, reference_packed(q, cos, sin, layout))
        assert_close_in_dtype(k_out, reference_packed(k, cos, sin, layout))


# --- in place ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_inplace_modifies_the_inputs_and_autograd_still_agrees(device, layout):
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q0, k0 = make_qk(device, torch.float32, *SHAPE, hf_layout=True)
    inv_freq, cos, sin = table(device, seq, head_dim)
    expected_q, expected_k = reference(q0, cos[None], sin[None], layout), reference(k0, cos[None], sin[None], layout)

    # without autograd: the very tensors come back, rotated, with their version bumped
    q, k = q0.clone(), k0.clone()
    version = q._version
    q_out, k_out = apply_rope_qk(q, k, cos, sin, layout, inplace=True)
    assert q_out is q and k_out is k and q._version > version
    assert_close_in_dtype(q, expected_q)
    assert_close_in_dtype(k, expected_k)

    # with autograd: non-leaf inputs (views of a projection's output), gradients through
    w = torch.tensor(1.5, device=device, requires_grad=True)
    q, k = q0 * w, k0 * w
    q_out, k_out = apply_rope_qk(q, k, cos, sin, layout, inplace=True)
    assert q_out is q
    g = torch.Generator().manual_seed(4)
    gq, gk = torch.randn(q.shape, generator=g).to(device), torch.randn(k.shape, generator=g).to(device)
    (grad_w,) = torch.autograd.grad((q_out * gq).sum() + (k_out * gk).sum(), w)
    wd = torch.tensor(1.5, dtype=torch.float64, device=device, requires_grad=True)
    ref = (reference(q0.double() * wd, cos[None].double(), sin[None].double(), layout) * gq.double()).sum()
    ref = ref + (reference(k0.double() * wd, cos[None].double(), sin[None].double(), layout) * gk.double()).sum()
    (grad_wd,) = torch.autograd.grad(ref, wd)
    torch.testing.assert_close(grad_w.double(), grad_wd, rtol=1e-5, atol=1e-5)


def test_inplace_on_a_leaf_that_requires_grad_is_refused_before_writing(device):
    q, k = make_qk(device, torch.float32, 1, 3, 2, 1, 8)
    inv_freq, cos, sin = table(device, 3, 8)
    q.requires_grad_()
    q_before, k_before = q.detach().clone(), k.clone()
    with pytest.raises(ValueError, match="inplace=True cannot overwrite q: it is a leaf tensor that requires grad"):
        apply_rope_qk(q, k, cos, sin, inplace=True)
    assert torch.equal(q.detach(), q_before) and torch.equal(k, k_before)


# --- backward -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["table", "computed"])
def test_gradients_match_float64_autograd_through_the_reference(device, layout, dtype, mode):
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q0, k0 = make_qk(device, dtype, *SHAPE, hf_layout=True)
    inv_freq, cos, sin = table(device, seq + 3, head_dim)
    q, k = q0.clone().requires_grad_(), k0.clone().requires_grad_()
    if mode == "table":
        q_out, k_out = apply_rope_qk(q, k, cos, sin, layout, positions=3)
    else:
        q_out, k_out = apply_rope_qk(q, k, layout=layout, positions=3, inv_freq=inv_freq)
    g = torch.Generator().manual_seed(5)
    gq = torch.randn(q.shape, generator=g).to(device, dtype)
    gk = torch.randn(k.shape, generator=g).to(device, dtype)
    # the incoming gradients are contiguous, q and k are not: dq, dk must follow q, k
    dq, dk = torch.autograd.grad((q_out, k_out), (q, k), (gq, gk))

    qd, kd = q0.double().requires_grad_(), k0.double().requires_grad_()
    cd, sd = cos[None, 3:].double(), sin[None, 3:].double()
    dqd, dkd = torch.autograd.grad((reference(qd, cd, sd, layout), reference(kd, cd, sd, layout)),
                                   (qd, kd), (gq.double(), gk.double()))
    assert dq.stride() == q.stride() and dk.stride() == k.stride(), "gradients keep their input's strides"
    assert_close_in_dtype(dq, dqd.to(dtype))
    assert_close_in_dtype(dk, dkd.to(dtype))


def test_backward_is_the_adjoint_of_forward(device):
    """RoPE is linear: <g, f(v)> = <f^T(g), v> for any g, v (in float32)."""
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    v_q, v_k = make_qk(device, torch.float32, *SHAPE, seed=6)
    g_q, g_k = make_qk(device, torch.float32, *SHAPE, seed=7)
    inv_freq, cos, sin = table(device, seq, head_dim)
    v_q.requires_grad_(), v_k.requires_grad_()
    f_q, f_k = apply_rope_qk(v_q, v_k, layout="paper", inv_freq=inv_freq, positions=11)
    t_q, t_k = torch.autograd.grad((f_q, f_k), (v_q, v_k), (g_q, g_k))
    lhs = (g_q.double() * f_q.double()).sum() + (g_k.double() * f_k.double()).sum()
    rhs = (t_q.double() * v_q.double()).sum() + (t_k.double() * v_k.double()).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-4)


def test_gradients_shared_between_two_calls_stay_correct(device):
    """AddBackward hands one gradient tensor to both branches: a backward that overwrote its
    incoming gradient would corrupt the second branch."""
    q, k = make_qk(device, torch.float32, 2, 4, 2, 2, 8)
    inv_freq, cos, sin = table(device, 8, 8)
    q.requires_grad_()
    a, _ = apply_rope_qk(q, k, cos, sin)
    b, _ = apply_rope_qk(q, k, cos, sin, positions=4)
    weights = torch.randn(q.shape, generator=torch.Generator().manual_seed(8)).to(device)
    (dq,) = torch.autograd.grad(((a + b) * weights).sum(), q)
    qd = q.detach().double().requires_grad_()
    ref = reference(qd, cos[None, :4].double(), sin[None, :4].double(), "half")
    ref = ref + reference(qd, cos[None, 4:].double(), sin[None, 4:].double(), "half")
    (dqd,) = torch.autograd.grad((ref * weights.double()).sum(), qd)
    assert_close_in_dtype(dq, dqd.float())


def test_double_backward_is_the_forward_rotation(device):
    """d/dg of (J^T g)·v is J v: the backward of the backward rotates by +φ again."""
    q, k = make_qk(device, torch.float32, 1, 4, 2, 1, 8)
    v_q, _ = make_qk(device, torch.float32, 1, 4, 2, 1, 8, seed=9)
    inv_freq, cos, sin = table(device, 4, 8)
    q.requires_grad_()
    q_out, _ = apply_rope_qk(q, k, cos, sin)
    g = torch.zeros_like(q_out, requires_grad=True)
    (dq,) = torch.autograd.grad(q_out, q, g, create_graph=True)
    (dg,) = torch.autograd.grad((dq * v_q).sum(), g)
    assert_close_in_dtype(dg, reference(v_q, cos[None], sin[None], "half"))


# --- torch.compile and the custom ops ------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_torch_compile_fullgraph_gives_the_eager_result(device, layout):
    """fullgraph=True raises on any graph break; forward and gradients equal eager mode."""
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k = make_qk(device, torch.float32, *SHAPE, hf_layout=True)
    inv_freq, cos, sin = table(device, seq, head_dim)
    w = torch.randn(head_dim, head_dim, generator=torch.Generator().manual_seed(10)).to(device) / head_dim**0.5
    w.requires_grad_()

    def model(q, k, w):
        q_rot, k_rot = apply_rope_qk(q @ w, k @ w, cos, sin, layout)
        k_inplace, _ = apply_rope_qk(k @ w, k * 1.0, layout=layout, inv_freq=inv_freq, positions=2, inplace=True)
        return (q_rot[:, :, :kv_heads] * k_rot).sum() + (k_inplace**2).sum()

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="inductor" if CUDA else "aot_eager")
    out = compiled(q, k, w)
    (grad,) = torch.autograd.grad(out, w)
    out_eager = model(q, k, w)
    (grad_eager,) = torch.autograd.grad(out_eager, w)
    torch.testing.assert_close(out, out_eager, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad, grad_eager, rtol=1e-5, atol=1e-4)

    with torch.no_grad():  # in place without autograd: the mutating custom op
        q_copy = q.clone()
        compiled_inplace = torch.compile(lambda q, k: apply_rope_qk(q, k, cos, sin, layout, inplace=True),
                                         fullgraph=True, backend="inductor" if CUDA else "aot_eager")
        compiled_inplace(q_copy, k.clone())
        assert_close_in_dtype(q_copy, reference(q, cos[None], sin[None], layout))


def test_custom_op_passes_torch_library_opcheck(device):
    """Schema, fake (meta) implementation and autograd registration agree with the kernel."""
    q, k = make_qk(device, torch.float32, 2, 3, 2, 1, 8)
    inv_freq, cos, sin = table(device, 3, 8)
    args = (q.requires_grad_(), k, cos, sin, None, None, None, 0, 1.0, "paper", 8, False, None, None)
    torch.library.opcheck(torch.ops.ropekit.rope_qk.default, args,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
    args = (q.detach().clone(), k.clone(), None, None, None, inv_freq, None, 5, 1.0, "half", 8)
    torch.library.opcheck(torch.ops.ropekit.rope_qk_.default, args, test_utils=("test_schema", "test_faketensor"))


# --- exact angles (angles="exact"): int64 positions up to 2^31 ------------------------------------


def exact_reference(positions, inv_freq64, attention_factor=1.0):
    """float64 cos/sin of exact angles, from the torch specification ropekit.exact_cos_sin."""
    return ropekit.exact_cos_sin(positions, inv_freq64, attention_factor, dtype=torch.float64)


def assert_exact_close(out, x, cos, sin, layout, dtype):
    """Kernel output vs the float64 rotation by exact angles: float32 within 1e-5 (cos/sin
    within 1e-6 times entries of a few units), low precision within its rounding."""
    expected = reference(x.double().cpu(), cos.cpu(), sin.cpu(), layout).to(dtype)  # the float64 math on the CPU
    if dtype == torch.float32:
        torch.testing.assert_close(out.double().cpu(), expected.double().cpu(), atol=1e-5, rtol=0)
    else:
        assert_close_in_dtype(out.cpu(), expected.cpu())


def _long_positions_cases(batch, seq, device):
    """(name, positions argument, expected (batch or 1, seq) positions), reaching 2^31."""
    last = 2**31 - seq + 1  # the last token sits exactly at 2^31
    offsets = torch.tensor([0, last] + [12345] * (batch - 2))[:batch]
    ids = torch.randint(0, 2**31 + 1, (batch, seq), generator=torch.Generator().manual_seed(5))
    return [
        ("int offset", last, last + torch.arange(seq)[None]),
        ("per-batch int64 offsets", offsets.to(device), offsets[:, None] + torch.arange(seq)),
        ("int64 position_ids", ids.to(device), ids),
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_angles_match_float64_exact_rotation_at_positions_up_to_2_31(device, layout, dtype):
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    q, k = make_qk(device, dtype, *SHAPE)
    inv_freq64, factor = ropekit.rope_frequencies(head_dim, 500000.0, "yarn", dtype=torch.float64, factor=4.0,
                                                  original_max_position_embeddings=64)
    turns = ropekit.fixed_point_turns(inv_freq64).to(device)
    for name, positions, expected in _long_positions_cases(batch, seq, device):
        cos, sin = exact_reference(expected, inv_freq64, factor)
        for inv_freq in (turns, inv_freq64.to(device)):  # precomputed turns, or float64 turned on the host
            q_out, k_out = apply_rope_qk(q, k, layout=layout, positions=positions, inv_freq=inv_freq,
                                         attention_factor=factor, angles="exact")
            assert_exact_close(q_out, q, cos, sin, layout, dtype)
            assert_exact_close(k_out, k, cos, sin, layout, dtype)


def test_exact_angles_recover_cos_and_sin_within_1e_6():
    """(a, b) = (1, 0) turns into (cos φ, sin φ): the kernel's own angles, compared directly."""
    seq, head_dim = (256, 128) if CUDA else (8, 16)
    device = "cuda" if CUDA else "cpu"
    inv_freq64, _ = ropekit.rope_frequencies(head_dim, 10000.0, dtype=torch.float64)
    q = torch.zeros(1, seq, 1, head_dim, device=device)
    q[..., : head_dim // 2] = 1.0
    for offset in (0, 10**7, 2**31 - seq + 1):
        out, _ = apply_rope_qk(q, q.clone(), positions=offset, inv_freq=inv_freq64.to(device), angles="exact")
        cos, sin = exact_reference(offset + torch.arange(seq), inv_freq64)
        assert (out[0, :, 0, : head_dim // 2].double().cpu() - cos).abs().max() <= 1e-6
        assert (out[0, :, 0, head_dim // 2:].double().cpu() - sin).abs().max() <= 1e-6


@pytest.mark.parametrize("layout", LAYOUTS)
def test_exact_angles_for_packed_sequences_and_the_twin_agree(device, layout):
    head_dim = SHAPE[-1]
    cu_seqlens = torch.tensor([0, 3, 7, 12], dtype=torch.int32)
    q, k = (torch.randn(14, h, head_dim, generator=torch.Generator().manual_seed(h)) for h in (4, 2))
    inv_freq64, _ = ropekit.rope_frequencies(head_dim, 10000.0, dtype=torch.float64)
    offsets = torch.tensor([0, 2**31 - 4, 10**9])
    q_out, k_out = apply_rope_qk(q.to(device), k.to(device), layout=layout, positions=offsets.to(device),
                                 inv_freq=inv_freq64.to(device), cu_seqlens=cu_seqlens.to(device), angles="exact")
    q_twin, k_twin = reference_apply_rope_qk(q, k, layout=layout, positions=offsets, inv_freq=inv_freq64,
                                             cu_seqlens=cu_seqlens, angles="exact")
    torch.testing.assert_close(q_out.cpu(), q_twin, atol=1e-5, rtol=0)
    torch.testing.assert_close(k_out.cpu(), k_twin, atol=1e-5, rtol=0)
    assert torch.equal(q_out[12:].cpu(), q[12:])  # padding after the last sequence passes through


def test_exact_angles_backward_is_the_adjoint_of_forward(device):
    batch, seq, q_heads, kv_heads, head_dim = SHAPE
    g = torch.Generator().manual_seed(4)
    v_q, v_k, w_q, w_k = (torch.randn(batch, seq, h, head_dim, generator=g, dtype=torch.float32).to(device)
                          for h in (q_heads, kv_heads, q_heads, kv_heads))
    v_q.requires_grad_(True)
    v_k.requires_grad_(True)
    turns = ropekit.fixed_point_turns(ropekit.rope_frequencies(head_dim, dtype=torch.float64)[0]).to(device)
    f_q, f_k = apply_rope_qk(v_q, v_k, layout="paper", positions=2**31 - seq, inv_freq=turns, angles="exact")
    (f_q * w_q).sum().add((f_k * w_k).sum()).backward()
    # <f(v), w> = <v, f^T(w)>: the gradient is the rotation by −φ
    lhs = (f_q.double() * w_q.double()).sum() + (f_k.double() * w_k.double()).sum()
    rhs = (v_q.double() * v_q.grad.double()).sum() + (v_k.double() * v_k.grad.double()).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-3)


def test_exact_angles_under_torch_compile_take_precomputed_turns(device):
    q, k = make_qk(device, torch.float32, 1, 3, 2, 1, 16)
    inv_freq64, _ = ropekit.rope_frequencies(16, dtype=torch.float64)
    turns = ropekit.fixed_point_turns(inv_freq64).to(device)

    def rotate(q, k):
        return apply_rope_qk(q, k, positions=2**31 - 2, inv_freq=turns, angles="exact")

    q_out, k_out = torch.compile(rotate, fullgraph=True)(q, k)
    cos, sin = exact_reference(2**31 - 2 + torch.arange(3), inv_freq64)
    assert_exact_close(q_out, q, cos[None], sin[None], "half", torch.float32)
    assert_exact_close(k_out, k, cos[None], sin[None], "half", torch.float32)


def test_exact_angles_refuse_what_they_cannot_use(device):
    q, k = make_qk(device, torch.float32, 1, 2, 1, 1, 8)
    inv_freq, cos, sin = table(device, 2, 8)
    turns = ropekit.fixed_point_turns(inv_freq.double().cpu()).to(device)
    with pytest.raises(ValueError, match="angles must be 'float32' or 'exact'"):
        apply_rope_qk(q, k, inv_freq=inv_freq, angles="float64")
    with pytest.raises(ValueError, match="a cos/sin table already holds"):
        apply_rope_qk(q, k, cos, sin, angles="exact")
    with pytest.raises(ValueError, match="int64 fixed_point_turns"):
        apply_rope_qk(q, k, inv_freq=turns)  # turns without angles="exact"


# --- compiled-kernel cache: no specialisation on batch or sequence length ---------------------------


def test_only_shape_family_arguments_are_compile_time_constants():
    params = inspect.signature(rope_triton.rope_qk_kernel.fn).parameters.values()
    constexprs = {p.name for p in params if "constexpr" in str(p.annotation)}
    assert constexprs == {
        "Q_HEADS", "K_HEADS", "HEAD_DIM", "HALF", "HALF_PAD", "PASS_PAD",  # heads, head_dim, rotary_dim
        "PAPER", "TABLE", "EXACT", "POS_MODE", "VARLEN", "COPY_PASS", "ALIGN",  # layout, which inputs, alignment
        "BLOCK_S", "BLOCK_HQ", "BLOCK_HK",  # chosen from heads, head_dim and dtype only
    }
    kernel = rope_triton.rope_qk_kernel
    not_specialised = set(getattr(kernel, "do_not_specialize", None) or kernel.kwargs["do_not_specialize"])
    # Triton would otherwise compile new variants when a length, offset or stride is 1 or
    # divisible by 16: every integer argument (all but pointers, floats and constexprs).
    pointers_and_floats = {p.name for p in params if p.name.endswith("_ptr") or p.name.endswith("_scale")}
    integers = {p.name for p in params} - constexprs - pointers_and_floats
    assert {"seq_len", "offset", "stride_qb", "stride_qs", "stride_kh"} <= integers
    assert integers == not_specialised


@pytest.mark.skipif(not CUDA, reason="the compiled-kernel cache exists only on a GPU")
def test_new_batch_size_and_sequence_length_reuse_the_compiled_kernel():
    inv_freq, cos, sin = table("cuda", 4096, 128)

    def n_compiled():
        return sum(len(cache[0]) for cache in rope_triton.rope_qk_kernel.device_caches.values())

    q, k = make_qk("cuda", torch.bfloat16, 2, 1024, 32, 8, 128)
    rope_triton.COMPILED_LAUNCHERS.clear()
    apply_rope_qk(q, k, cos, sin, positions=16)
    before = n_compiled()
    for batch, seq, offset in ((1, 1024, 0), (3, 17, 1), (1, 1, 4095), (5, 4096, 0)):
        q, k = make_qk("cuda", torch.bfloat16, batch, seq, 32, 8, 128)
        apply_rope_qk(q, k, cos, sin, positions=offset)  # through the launcher's own cache
        assert len(rope_triton.COMPILED_LAUNCHERS) == 1
        rope_triton.COMPILED_LAUNCHERS.clear()  # and through Triton's
        q_out, k_out = apply_rope_qk(q, k, cos, sin, positions=offset)
        assert_close_in_dtype(q_out, reference(q, cos[None, offset:offset + seq], sin[None, offset:offset + seq],
                                               "half"))
    assert n_compiled() == before


@pytest.mark.skipif(not CUDA, reason="needs 4.5 GB of GPU memory to reach offsets past 2^31")
def test_offsets_past_the_int32_range():
    """A peer hit an illegal memory access at a million tokens: offsets are int64."""
    q_heads, head_dim = 2, 64
    storage = torch.zeros(2**31 + 2 * 4 * q_heads * head_dim, dtype=torch.bfloat16, device="cuda")
    q = storage.as_strided((2, 4, q_heads, head_dim), (2**31, q_heads * head_dim, head_dim, 1))
    q.normal_()
    k = torch.randn(2, 4, 1, head_dim, device="cuda", dtype=torch.bfloat16)
    inv_freq, cos, sin = table("cuda", 4, head_dim)
    q_out, k_out = apply_rope_qk(q, k, cos, sin)
    assert_close_in_dtype(q_out, reference(q, cos[None], sin[None], "half"))
    del storage


# --- errors -------------------------------------------------------------------------------------------


def test_cpu_tensors_without_the_interpreter_point_to_the_reference(monkeypatch):
    monkeypatch.setattr(rope_module, "INTERPRETED", False)
    q, k = make_qk("cpu", torch.float32, 1, 2, 1, 1, 8)
    inv_freq, cos, sin = table("cpu", 2, 8)
    with pytest.raises(ValueError, match=r"ropekit\.reference\.apply_rope_qk.*TRITON_INTERPRET=1"):
        apply_rope_qk(q, k, cos, sin)


def test_bad_arguments_get_clear_errors(device):
    q, k = make_qk(device, torch.float32, 2, 4, 2, 1, 8)
    inv_freq, cos, sin = table(device, 4, 8)
    cases = [
        (dict(q=q.double(), k=k.double(), cos=cos, sin=sin), TypeError, "float64 use the reference"),
        (dict(q=q, k=k.half(), cos=cos, sin=sin), TypeError, "same dtype"),
        (dict(q=q[0], k=k[0], cos=cos, sin=sin), ValueError, r"\(batch, seq, heads, head_dim\)"),
        (dict(q=q, k=k, cos=cos, sin=sin, layout="neox"), ValueError, "layout must be"),
        (dict(q=q, k=k, cos=cos, sin=sin[:, :2]), ValueError, "same shape"),
        (dict(q=q, k=k, cos=torch.cat((cos, cos), -1), sin=torch.cat((sin, sin), -1)), ValueError,
         "Hugging Face's tables repeat the two halves"),
        (dict(q=q, k=k, cos=cos[:3], sin=sin[:3]), ValueError, "rows"),
        (dict(q=q, k=k, cos=cos, sin=sin, positions=2), ValueError, "rows"),
        (dict(q=q, k=k, cos=cos, sin=sin, rotary_dim=4), ValueError, "rotary_dim must be"),
        (dict(q=q, k=k, cos=cos, sin=sin, inv_freq=inv_freq), ValueError, "not both"),
        (dict(q=q, k=k), ValueError, "either cos and sin"),
        (dict(q=q, k=k, inv_freq=inv_freq, positions=torch.zeros(3, dtype=torch.long, device=device)),
         ValueError, "positions must be"),
        (dict(q=q, k=k, inv_freq=inv_freq, positions=torch.zeros(2, device=device)), ValueError, "integer tensor"),
        (dict(q=q, k=k, inv_freq=inv_freq, positions=1.5), TypeError, "positions must be"),
        (dict(q=q, k=k, cos=cos[None].expand(2, 4, 4), sin=sin[None].expand(2, 4, 4), positions=1), ValueError,
         "already per token"),
        (dict(q=q, k=k, cos=cos, sin=sin, attention_factor=2.0), ValueError, "attention_factor"),
        (dict(q=q, k=q, cos=cos, sin=sin, inplace=True), ValueError, "different tensors"),
        (dict(q=q.flatten(0, 1), k=k.flatten(0, 1), inv_freq=inv_freq,
              cu_seqlens=torch.tensor([0, 8.0], device=device)), ValueError, "cu_seqlens must be"),
        (dict(q=q, k=k, cos=cos.clone().requires_grad_(), sin=sin), ValueError, "no gradient for cos"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            apply_rope_qk(**kwargs)


# --- the kernel and its plain-torch twin: one call, two imports ----------------------------------


def _twin_cases(device):
    g = torch.Generator().manual_seed(7)
    inv_freq, cos, sin = table(device, 40, 16)
    return [
        dict(cos=cos, sin=sin),
        dict(cos=cos, sin=sin, layout="paper", positions=3),
        dict(cos=cos, sin=sin, positions=torch.tensor([1, 20], device=device)),
        dict(cos=cos, sin=sin, positions=torch.randint(0, 40, (2, 5), generator=g).to(device)),
        dict(cos=cos[None, 7:12].expand(2, 5, 8), sin=sin[None, 7:12].expand(2, 5, 8)),
        dict(inv_freq=inv_freq, positions=torch.randint(0, 900, (1, 5), generator=g).to(device), attention_factor=1.3),
        dict(inv_freq=inv_freq, positions=11, layout="paper"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_kernel_equals_its_twin_for_every_argument_form(device, case):
    from ropekit.reference import apply_rope_qk as twin

    q, k = make_qk(device, torch.float32, 2, 5, 4, 2, 16)
    kwargs = _twin_cases(device)[case]
    for got, expected in zip(apply_rope_qk(q, k, **kwargs), twin(q, k, **kwargs)):
        assert_close_in_dtype(got, expected)


@pytest.mark.parametrize("mode", ["table", "computed"])
def test_kernel_equals_its_twin_on_packed_sequences(device, mode):
    from ropekit.reference import apply_rope_qk as twin

    g = torch.Generator().manual_seed(8)
    q, k = (torch.randn(9, h, 16, generator=g).to(device) for h in (4, 2))
    cu_seqlens = torch.tensor([0, 3, 3, 7], dtype=torch.int32, device=device)  # an empty one, and padding after
    inv_freq, cos, sin = table(device, 40, 16)
    angles = dict(cos=cos, sin=sin) if mode == "table" else dict(inv_freq=inv_freq)
    for positions in (None, 4, torch.tensor([2, 0, 5], device=device)):
        kwargs = dict(angles, positions=positions, cu_seqlens=cu_seqlens)
        for got, expected in zip(apply_rope_qk(q, k, **kwargs), twin(q, k, **kwargs)):
            assert_close_in_dtype(got, expected)
