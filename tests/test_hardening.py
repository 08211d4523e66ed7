"""Issue 10: bad and edge inputs get the right answer or an error that names the argument.

One test (or a few) per numbered item of the issue, plus the neighbouring cases: other
dtypes, empty tensors, numpy scalars, devices. Kernel cases run on CUDA when present and
under the Triton interpreter on a CPU, on tiny shapes. Expected values come from float64
math written here (explicit rotation matrices, the papers' formulas), from the plain-torch
twin, or from transformers where it is installed; never from the code under test alone.
"""

import math

import numpy as np
import pytest
import torch

import ropekit
from ropekit import reference
from ropekit.attention import rerope_attention as rerope_reference
from ropekit.attention import rope_attention, xpos_max_span
from ropekit.decode import rotate_as_if_first
from ropekit.kernels import apply_rope_qk, rerope_attention

CUDA = torch.cuda.is_available()


def tables(device, n_positions, rotary_dim):
    inv_freq, _ = ropekit.rope_frequencies(rotary_dim)
    cos, sin = ropekit.rope_cos_sin(torch.arange(n_positions, device=device), inv_freq.to(device))
    return inv_freq.to(device), cos, sin


def qk(device, batch, seq, heads, kv_heads, head_dim, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, heads, head_dim, generator=gen)
    k = torch.randn(batch, seq, kv_heads, head_dim, generator=gen)
    return q.to(device, dtype), k.to(device, dtype)


def rotate_by_matrix(x, positions, inv_freq, layout="half"):
    """float64 R_m x for x (..., seq, heads, head_dim) and positions (..., seq): RoFormer eq. 15."""
    R = torch.stack([reference.rotation_matrix(float(m), x.shape[-1], layout=layout, inv_freq=inv_freq)
                     for m in positions.reshape(-1).tolist()]).reshape(*positions.shape, x.shape[-1], x.shape[-1])
    return torch.einsum("...sij,...shj->...shi", R, x.double().cpu())


# --- 1, 2, 4: varlen offsets, cu_seqlens and positions outside the table ---------------------

PACKED = (torch.tensor([0, 2, 4, 6], dtype=torch.int32), 6)  # three sequences of two tokens


@pytest.mark.parametrize("fn", [apply_rope_qk, reference.apply_rope_qk], ids=["kernel", "twin"])
def test_varlen_offsets_must_be_one_or_one_per_sequence(device, fn):
    cu, total = PACKED[0].to(device), PACKED[1]
    inv_freq, cos, sin = tables(device, 32, 8)
    q, k = (t[0] for t in qk(device, 1, total, 2, 1, 8))
    with pytest.raises(ValueError, match=r"with cu_seqlens, positions must be an int or \(n_seqs,\) = \(3,\)"):
        fn(q, k, cos, sin, positions=torch.tensor([10, 20], device=device), cu_seqlens=cu)
    offsets = torch.tensor([10, 20, 3], device=device)
    q_out, _ = fn(q, k, cos, sin, positions=offsets, cu_seqlens=cu)
    m = torch.tensor([10, 11, 20, 21, 3, 4])
    expected = rotate_by_matrix(q.cpu()[None], m[None], inv_freq.cpu())[0]
    torch.testing.assert_close(q_out.double().cpu(), expected, atol=1e-5, rtol=1e-5)
    one = fn(q, k, cos, sin, positions=torch.tensor([5], device=device), cu_seqlens=cu)[0]  # one for all
    expected = rotate_by_matrix(q.cpu()[None], torch.tensor([5, 6, 5, 6, 5, 6])[None], inv_freq.cpu())[0]
    torch.testing.assert_close(one.double().cpu(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cu, match", [
    (torch.tensor([0.0, 2, 4]), "cu_seqlens must be an int32 or int64 \\(n_seqs \\+ 1,\\) tensor"),
    (torch.tensor([[0, 2, 4]], dtype=torch.int32), "cu_seqlens must be an int32 or int64"),
    (torch.tensor([0], dtype=torch.int32), "cu_seqlens must be an int32 or int64"),
    ([0, 2, 4], "cu_seqlens must be an int32 or int64"),
])
@pytest.mark.parametrize("fn", [apply_rope_qk, reference.apply_rope_qk], ids=["kernel", "twin"])
def test_cu_seqlens_dtype_and_shape_are_checked_without_reading_values(device, fn, cu, match):
    _, cos, sin = tables(device, 8, 8)
    q, k = (t[0] for t in qk(device, 1, 4, 2, 1, 8))
    cu = cu.to(device) if isinstance(cu, torch.Tensor) else cu
    with pytest.raises(ValueError, match=match):
        fn(q, k, cos, sin, cu_seqlens=cu)


BAD_CU = [[0, 5, 3, 8], [1, 3, 8], [0, 4, 9]]  # decreasing, not from 0, past the 8 tokens


@pytest.mark.parametrize("cu", BAD_CU)
def test_cu_seqlens_values_raise_in_the_twin_always_and_in_the_kernel_when_asked(device, monkeypatch, cu):
    _, cos, sin = tables(device, 16, 8)
    q, k = (t[0] for t in qk(device, 1, 8, 2, 1, 8))
    cu = torch.tensor(cu, dtype=torch.int32, device=device)
    match = "cu_seqlens must start at 0, never decrease and end at most at the 8 tokens"
    with pytest.raises(ValueError, match=match):
        reference.apply_rope_qk(q, k, cos, sin, cu_seqlens=cu, validate=False)  # the twin always checks
    with pytest.raises(ValueError, match=match):
        apply_rope_qk(q, k, cos, sin, cu_seqlens=cu, validate=True)
    monkeypatch.setenv("ROPEKIT_VALIDATE", "1")  # the debug mode for a whole program
    with pytest.raises(ValueError, match=match):
        apply_rope_qk(q, k, cos, sin, cu_seqlens=cu)
    monkeypatch.setenv("ROPEKIT_VALIDATE", "0")
    apply_rope_qk(q, k, cos, sin, cu_seqlens=cu)  # default: no value check (it would cost a sync)


def test_validate_must_be_a_bool_or_none(device):
    _, cos, sin = tables(device, 8, 8)
    q, k = qk(device, 1, 4, 2, 1, 8)
    with pytest.raises(TypeError, match="validate must be True, False or None"):
        apply_rope_qk(q, k, cos, sin, validate="yes")


def test_int_offsets_outside_the_table_raise_in_every_form(device):
    _, cos, sin = tables(device, 16, 8)
    q, k = qk(device, 2, 4, 2, 1, 8)
    for fn in (apply_rope_qk, reference.apply_rope_qk):
        with pytest.raises(ValueError, match=r"positions 14 .. 17 need cos/sin rows that the table of 16 rows"):
            fn(q, k, cos, sin, positions=14)
        with pytest.raises(ValueError, match=r"positions -1 .. 2 need cos/sin rows"):
            fn(q, k, cos, sin, positions=-1)
        with pytest.raises(ValueError, match=r"positions -2 .. "):  # packed: a negative offset is never valid
            fn(q[0], k[0], cos, sin, positions=-2, cu_seqlens=torch.tensor([0, 4], dtype=torch.int32, device=device))


TENSOR_POSITIONS = [
    # (positions, cu_seqlens, the out-of-table tokens (batch, seq) or packed token index)
    (torch.tensor([-1, 0]), None, [(0, 0)]),  # (batch,) offsets: batch row 0 starts at −1
    (torch.tensor([0, 13]), None, [(1, 3)]),  # row 1 reaches 16, the table has 0 .. 15
    (torch.tensor([[0, 1, 2, 16], [0, 1, 2, 3]]), None, [(0, 3)]),  # position_ids past the end
    (torch.tensor([0, 15]), torch.tensor([0, 1, 3]), [2]),  # packed: sequence 1 reaches 16
]


@pytest.mark.parametrize("positions, cu, bad", TENSOR_POSITIONS)
def test_tensor_positions_outside_the_table_follow_the_one_policy(device, positions, cu, bad):
    """Twin: ValueError. Kernel: NaN on exactly those tokens (no sync), ValueError with validate."""
    inv_freq, cos, sin = tables(device, 16, 8)
    q, k = qk(device, 2, 4, 2, 1, 8)
    if cu is not None:
        q, k, cu = q[0], k[0], cu.to(device=device, dtype=torch.int32)
    positions = positions.to(device)
    with pytest.raises(ValueError, match=r"positions reach -?\d+ .. \d+, outside the cos/sin table of 16 rows"):
        reference.apply_rope_qk(q, k, cos, sin, positions=positions, cu_seqlens=cu)
    with pytest.raises(ValueError, match=r"outside the cos/sin table of 16 rows \(0 .. 15\)"):
        apply_rope_qk(q, k, cos, sin, positions=positions, cu_seqlens=cu, validate=True)
    q_out, k_out = apply_rope_qk(q, k, cos, sin, positions=positions, cu_seqlens=cu)
    nan_tokens = q_out.isnan().any(-1).any(-1).cpu()
    expected = torch.zeros_like(nan_tokens)
    for index in bad:
        expected[index] = True
    assert torch.equal(nan_tokens, expected)
    assert torch.equal(k_out.isnan().any(-1).any(-1).cpu(), expected)


# --- 3, 10: in place ------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [apply_rope_qk, reference.apply_rope_qk], ids=["kernel", "twin"])
def test_inplace_with_overlapping_q_and_k_is_refused_before_writing(device, fn):
    _, cos, sin = tables(device, 8, 8)
    q, _ = qk(device, 1, 4, 2, 1, 8)
    before = q.clone()
    for k in (q[:, :, :1], q[:, :, 1:], q.view(1, 4, 16)[..., 4:12].unflatten(-1, (1, 8))):
        with pytest.raises(ValueError, match="inplace=True needs q and k in separate memory, but they overlap"):
            fn(q, k, cos, sin, inplace=True)
    with pytest.raises(ValueError, match="inplace=True needs q and k to be different tensors"):
        fn(q, q, cos, sin, inplace=True)
    assert torch.equal(q, before)


@pytest.mark.parametrize("fn", [apply_rope_qk, reference.apply_rope_qk], ids=["kernel", "twin"])
def test_inplace_on_disjoint_views_of_one_buffer_matches_out_of_place(device, fn):
    _, cos, sin = tables(device, 8, 8)
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 4, 2 + 1 + 1, 8, generator=gen).to(device)  # packed (q, k, v) heads
    q, k = qkv[:, :, :2], qkv[:, :, 2:3]
    expected = reference.apply_rope_qk(q.clone(), k.clone(), cos, sin)
    v_before = qkv[:, :, 3].clone()
    fn(q, k, cos, sin, inplace=True)
    torch.testing.assert_close(q, expected[0]), torch.testing.assert_close(k, expected[1])
    assert torch.equal(qkv[:, :, 3], v_before)
    tokens = torch.randn(1, 8, 1, 8, generator=gen).to(device)  # interleaved tokens: q even, k odd
    q, k = tokens[:, 0::2], tokens[:, 1::2]
    expected = reference.apply_rope_qk(q.clone(), k.clone(), cos, sin)
    fn(q, k, cos, sin, inplace=True)
    torch.testing.assert_close(q, expected[0]), torch.testing.assert_close(k, expected[1])


@pytest.mark.parametrize("fn", [apply_rope_qk, reference.apply_rope_qk], ids=["kernel", "twin"])
def test_inplace_on_a_leaf_or_its_view_is_refused_before_writing(device, fn):
    _, cos, sin = tables(device, 8, 8)
    q, k = qk(device, 1, 4, 2, 1, 8)
    k.requires_grad_()
    q_before, k_before = q.clone(), k.detach().clone()
    with pytest.raises(ValueError, match="inplace=True cannot overwrite k: it is a leaf tensor that requires grad"):
        fn(q, k, cos, sin, inplace=True)
    with pytest.raises(ValueError, match="inplace=True cannot overwrite k: it is a view of a leaf tensor"):
        fn(q, k[:, :, :], cos, sin, inplace=True)
    assert torch.equal(q, q_before) and torch.equal(k.detach(), k_before)  # q was not written either
    with torch.no_grad():  # without autograd a leaf may be overwritten
        fn(q, k, cos, sin, inplace=True)
    torch.testing.assert_close(q, reference.apply_rope_qk(q_before, k_before, cos, sin)[0])


# --- 8: in place on views, under autograd -----------------------------------------------------


def projected_views(device, pattern):
    """q and k as models make them: the views of projections, or slices of a packed qkv."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 16, generator=gen).to(device)
    w = torch.randn(4 * 8 + 2 * 8, 16, generator=gen).to(device).requires_grad_()
    if pattern == "view":  # Hugging Face: q_proj(x).view(batch, seq, heads, head_dim)
        q = (x @ w[:32].T).view(2, 3, 4, 8)
        k = (x @ w[32:40].T).view(2, 3, 1, 8)
    else:  # one qkv projection, sliced by heads
        qkv = (x @ w.T).view(2, 3, 6, 8)
        q, k = qkv[:, :, :4], qkv[:, :, 4:5]
    return w, q, k


@pytest.mark.parametrize("pattern", ["view", "packed"])
@pytest.mark.parametrize("fn", [apply_rope_qk, reference.apply_rope_qk], ids=["kernel", "twin"])
def test_inplace_on_views_works_forward_and_backward(device, fn, pattern):
    _, cos, sin = tables(device, 8, 8)
    grads, outs = [], []
    for inplace in (False, True):
        w, q, k = projected_views(device, pattern)
        q_out, k_out = fn(q, k, cos, sin, inplace=inplace)
        if inplace:
            assert q_out is q and k_out is k
        loss = (q_out * torch.arange(8.0, device=device)).sum() + (k_out**2).sum()
        loss.backward()
        grads.append(w.grad)
        outs.append((q_out.detach(), k_out.detach()))
    torch.testing.assert_close(outs[1], outs[0])
    torch.testing.assert_close(grads[1], grads[0])
    # and both agree with float64 autograd through the explicit rotation matrices
    w, q, k = projected_views(device, pattern)
    w64 = w.detach().double().cpu().requires_grad_()
    x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(2)).double()
    inv_freq, _ = ropekit.rope_frequencies(8)
    m = torch.arange(3).expand(2, 3)
    full = (x @ w64.T).view(2, 3, 6, 8)
    q64, k64 = full[:, :, :4], full[:, :, 4:5]
    loss = (rotate_by_matrix(q64, m, inv_freq) * torch.arange(8.0)).sum() + (rotate_by_matrix(k64, m, inv_freq) ** 2).sum()
    loss.backward()
    torch.testing.assert_close(grads[1].double().cpu(), w64.grad, atol=1e-4, rtol=1e-4)


# --- 5: rotate_as_if_first refuses positions it cannot negate ---------------------------------


@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint16", "uint32", "uint64"])
def test_rotate_as_if_first_refuses_bool_and_unsigned_positions(dtype):
    if not hasattr(torch, dtype):
        pytest.skip(f"torch has no {dtype}")
    inv_freq, _ = ropekit.rope_frequencies(8)
    k = torch.randn(1, 2, 1, 8)
    rotated_at = torch.tensor([1, 0]).to(getattr(torch, dtype))
    match = "rotated_at must be an integer or real tensor" if dtype == "bool" else (
        f"rotated_at must be a signed integer or floating-point tensor, got torch.{dtype}")
    with pytest.raises(ValueError, match=match):
        rotate_as_if_first(k, inv_freq, rotated_at)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.float32])
def test_rotate_as_if_first_undoes_rotations_for_signed_positions(dtype):
    inv_freq, _ = ropekit.rope_frequencies(8)
    k = torch.randn(1, 3, 2, 8, dtype=torch.float64)
    p = torch.tensor([5, 100, 127])
    rotated = rotate_by_matrix(k, p, inv_freq)
    torch.testing.assert_close(rotate_as_if_first(rotated, inv_freq, p.to(dtype)), k, atol=1e-5, rtol=1e-5)


# --- 6, 12: frequencies: finite parameters, numpy scalars and 0-d tensors accepted ----------------


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("kwargs, name", [
    (dict(base="BAD"), "base"),
    (dict(scaling="linear", factor="BAD"), "factor"),
    (dict(scaling="ntk", factor="BAD"), "factor"),
    (dict(scaling="dynamic", factor="BAD", seq_len=64, original_max_position_embeddings=32), "factor"),
    (dict(scaling="yarn", factor="BAD", original_max_position_embeddings=32), "factor"),
    (dict(scaling="yarn", factor=2.0, original_max_position_embeddings=32, beta_fast="BAD"), "beta_fast"),
    (dict(scaling="yarn", factor=2.0, original_max_position_embeddings=32, attention_factor="BAD"), "attention_factor"),
    (dict(scaling="yarn", factor=2.0, original_max_position_embeddings=32, mscale="BAD", mscale_all_dim=1.0), "mscale"),
    (dict(scaling="llama3", factor=2.0, low_freq_factor=1.0, high_freq_factor="BAD", original_max_position_embeddings=32),
     "high_freq_factor"),
    (dict(scaling="longrope", short_factor=[1.0] * 4, long_factor=[1.0, 2.0, 3.0, "BAD"],
          original_max_position_embeddings=32), "long_factor"),
    (dict(scaling="longrope", short_factor=[1.0] * 4, long_factor=[1.0] * 4, factor="BAD",
          original_max_position_embeddings=32), "factor"),
])
def test_non_finite_frequency_parameters_are_refused(kwargs, name, bad):
    kwargs = {key: ([bad if x == "BAD" else x for x in v] if isinstance(v, list) else bad if v == "BAD" else v)
              for key, v in kwargs.items()}
    match = f"{name} must hold finite positive factors" if name == "long_factor" else f"{name} must be a finite number"
    with pytest.raises(ValueError, match=match):
        ropekit.rope_frequencies(8, **kwargs)


@pytest.mark.parametrize("convert", [np.float32, np.float64, np.int64, torch.tensor],
                         ids=["np.float32", "np.float64", "np.int64", "0-d tensor"])
def test_numpy_scalars_and_0d_tensors_are_numbers(convert):
    inv_freq, _ = ropekit.rope_frequencies(8, convert(10000))
    torch.testing.assert_close(inv_freq, (10000.0 ** -(torch.arange(0, 8, 2, dtype=torch.float64) / 8)).float())
    expected = ropekit.rope_frequencies(8, 10000.0, "yarn", factor=4.0, original_max_position_embeddings=64)
    got = ropekit.rope_frequencies(8, 10000.0, "yarn", factor=convert(4), original_max_position_embeddings=np.int64(64))
    torch.testing.assert_close(got[0], expected[0])
    assert got[1] == expected[1]
    q, k, v = torch.randn(3, 1, 5, 2, 8, dtype=torch.float64).unbind(0)
    full, _ = ropekit.rope_frequencies(8)
    torch.testing.assert_close(rerope_reference(q, k, v, full, np.int64(2)), rerope_reference(q, k, v, full, 2))


def test_integers_must_be_integers_whatever_their_type():
    with pytest.raises(ValueError, match=r"original_max_position_embeddings must be a positive integer, got 64.5"):
        ropekit.rope_frequencies(8, scaling="yarn", factor=2.0, original_max_position_embeddings=64.5)
    with pytest.raises(ValueError, match=r"original_max_position_embeddings must be a positive integer, got True"):
        ropekit.rope_frequencies(8, scaling="yarn", factor=2.0, original_max_position_embeddings=True)
    with pytest.raises(ValueError, match="truncate must be True or False"):
        ropekit.rope_frequencies(8, scaling="yarn", factor=2.0, original_max_position_embeddings=64, truncate="no")


# --- 7: xPos far from the origin, and with no tokens ----------------------------------------------


def xpos_by_hand(q, k, v, inv_freq, positions, scale_base, layout="half"):
    """float64 xPos attention (Sun et al. 2022, eq. 5-6), each logit summed pair by pair:
    Σ_i ζ_i^((n − m)/scale_base) · (pair i of R_n q) · (pair i of R_m k), then causal softmax."""
    d, half = q.shape[-1], inv_freq.shape[0]
    zeta = (torch.arange(half, dtype=torch.float64) * 2 / d + 0.4) / 1.4
    zeta = torch.cat((zeta, zeta)) if layout == "half" else zeta.repeat_interleave(2)
    rq, rk = rotate_by_matrix(q, positions, inv_freq, layout), rotate_by_matrix(k, positions, inv_freq, layout)
    p = positions.double()
    weight = zeta ** ((p[:, None] - p[None, :])[..., None] / scale_base)  # (n, m, d), log-space free
    logits = torch.einsum("nhd,mhd,nmd->hnm", rq[0], rk[0], weight) / math.sqrt(d)
    logits = logits.masked_fill(torch.ones_like(logits[0], dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("hnm,mhd->nhd", logits.softmax(-1), v[0].double())[None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_xpos_stays_finite_far_from_the_origin(dtype):
    inv_freq, _ = ropekit.rope_frequencies(8)
    q, k, v = torch.randn(3, 1, 3, 2, 8, generator=torch.Generator().manual_seed(3)).to(dtype).unbind(0)
    positions = torch.tensor([0, 50_000, 100_000])
    out = rope_attention(q, k, v, inv_freq, positions=positions, xpos_scale_base=512)
    assert out.dtype == dtype and out.isfinite().all()
    torch.testing.assert_close(out.double(), xpos_by_hand(q, k, v, inv_freq, positions, 512), atol=1e-5, rtol=1e-5)


def test_xpos_names_its_limit_and_accepts_no_tokens():
    inv_freq, _ = ropekit.rope_frequencies(8)
    q = torch.randn(1, 2, 1, 8)
    limit = 600 * 512 / math.log(1.4 / 0.4)  # ζ_0^(span/512) within e^±600
    assert xpos_max_span(512) == pytest.approx(limit)
    with pytest.raises(ValueError, match=r"positions span 300000 tokens, more than xPos with xpos_scale_base=512 "
                                         r"can represent.* at most 245,218 tokens"):
        rope_attention(q, q, q, inv_freq, positions=torch.tensor([0, 300_000]), xpos_scale_base=512)
    empty = torch.randn(1, 0, 1, 8)
    out = rope_attention(empty, empty, empty, inv_freq, xpos_scale_base=512)
    assert out.shape == (1, 0, 1, 8)


# --- 9: torch.compile with a dynamic batch and sequence length ------------------------------------


class CountingBackend:
    """A torch.compile backend that counts the graphs it is given and runs them as traced."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


@pytest.mark.parametrize("form", ["offsets", "position_ids", "per_token_table"])
def test_compiled_calls_with_dynamic_batch_and_seq_compile_once_per_form(device, form):
    torch._dynamo.reset()
    inv_freq, cos, sin = tables(device, 16, 8)
    backend = CountingBackend()

    def rope(q, k, positions, cos, sin):
        return apply_rope_qk(q, k, cos, sin, positions=positions)

    compiled = torch.compile(rope, fullgraph=True, backend=backend)
    for batch, seq in [(2, 3), (3, 3), (2, 5)]:  # a new batch size, then a new length
        q, k = qk(device, batch, seq, 2, 1, 8, seed=batch * seq)
        positions, c, s = None, cos, sin
        if form == "offsets":
            positions = torch.arange(1, batch + 1, device=device)
        elif form == "position_ids":
            positions = torch.arange(seq, device=device).flip(0).expand(batch, seq).contiguous()
        else:
            c, s = cos[:seq].expand(batch, seq, 4).contiguous(), sin[:seq].expand(batch, seq, 4).contiguous()
        per_token = [c, s] if form == "per_token_table" else []
        for t in [q, k, *per_token] + ([positions] if positions is not None else []):  # dim 0: batch
            torch._dynamo.mark_dynamic(t, 0)
        for t in [q, k, *per_token] + ([positions] if form == "position_ids" else []):  # dim 1: seq
            torch._dynamo.mark_dynamic(t, 1)
        got = compiled(q, k, positions, c, s)
        expected = reference.apply_rope_qk(q, k, c, s, positions=positions)
        torch.testing.assert_close(got, expected)
    assert backend.graphs == 1  # none for the new batch size, none for the new length


# --- 11, 14: tables of the wrong width say what ropekit expects ------------------------------------


def test_hugging_face_and_transposed_tables_get_a_message_that_says_how_to_convert(device):
    inv_freq, cos, sin = tables(device, 16, 8)
    x = torch.randn(16, 8, device=device)
    hf_cos, hf_sin = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)  # (seq, head_dim), halves repeated
    with pytest.raises(ValueError, match=r"cos/sin have head_dim = 8 columns: Hugging Face's tables repeat the two "
                                         r"halves; pass cos\[..., :4\] and sin\[..., :4\]"):
        ropekit.apply_rope(x, hf_cos, hf_sin)
    torch.testing.assert_close(ropekit.apply_rope(x, hf_cos[..., :4], hf_sin[..., :4]), ropekit.apply_rope(x, cos, sin))
    with pytest.raises(ValueError, match=r"look transposed: ropekit expects \(..., seq, rotary_dim // 2\), rows by "
                                         r"position; pass cos.transpose\(-1, -2\)"):
        ropekit.apply_rope(x, cos.T, sin.T)
    q, k = qk(device, 1, 4, 2, 1, 8)
    for fn in (apply_rope_qk, reference.apply_rope_qk):
        with pytest.raises(ValueError, match="Hugging Face's tables repeat the two halves"):
            fn(q, k, hf_cos, hf_sin)
        with pytest.raises(ValueError, match="cos/sin have 16 columns, more than the 4 pairs of head_dim = 8"):
            fn(q, k, cos.T, sin.T)


@pytest.mark.parametrize("head_dim", [5, 6])
def test_a_narrower_table_is_partial_rotary_only_when_asked(head_dim):
    x = torch.randn(3, head_dim, dtype=torch.float64)
    inv4, _ = ropekit.rope_frequencies(4)
    cos, sin = ropekit.rope_cos_sin(3, inv4)
    for fn in (ropekit.apply_rope, reference.apply_rope_loop):
        with pytest.raises(ValueError, match=rf"cos/sin have 2 columns \(rotary_dim = 4\) but head_dim is {head_dim}: "
                                             r"pass rotary_dim=4 to rotate only the first 4 features"):
            fn(x, cos, sin)
        y = fn(x, cos, sin, rotary_dim=4)
        expected = rotate_by_matrix(x[:, None, :4], torch.arange(3), inv4)[:, 0]
        torch.testing.assert_close(y[:, :4], expected)
        assert torch.equal(y[:, 4:], x[:, 4:])
    with pytest.raises(ValueError, match=rf"rotary_dim must be a positive even integer <= x's head_dim \({head_dim}\)"):
        ropekit.apply_rope(x, cos, sin, rotary_dim=3)


def test_the_kernel_asks_for_rotary_dim_too(device):
    inv4, cos, sin = tables(device, 4, 4)
    q, k = qk(device, 1, 4, 2, 1, 6)
    for fn in (apply_rope_qk, reference.apply_rope_qk):
        with pytest.raises(ValueError, match=r"cos/sin have 2 columns \(rotary_dim = 4\) but head_dim is 6: pass rotary_dim=4"):
            fn(q, k, cos, sin)
        with pytest.raises(ValueError, match=r"inv_freq have 2 columns \(rotary_dim = 4\) but head_dim is 6"):
            fn(q, k, inv_freq=inv4)
        q_out, k_out = fn(q, k, cos, sin, rotary_dim=4)
        expected = rotate_by_matrix(q.cpu()[..., :4], torch.arange(4)[None], inv4.cpu())
        torch.testing.assert_close(q_out[..., :4].double().cpu(), expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(q_out[..., 4:], q[..., 4:])


# --- 13: messages that blame the right argument -----------------------------------------------------


def test_messages_name_the_argument_at_fault():
    inv_freq, _ = ropekit.rope_frequencies(8)
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"positions must be an integer or real tensor \(seq,\) or \(batch, seq\) that "
                                         r"broadcasts against x's leading dims \(4,\), got torch.int64 tensor of shape \(3,\)"):
        reference.apply_rope_complex(x, torch.arange(3), inv_freq)
    with pytest.raises(ValueError, match=r"positions must be a non-negative integer or a tensor, got \[0, 1, 2, 3\]"):
        reference.apply_rope_complex(x, [0, 1, 2, 3], inv_freq)
    torch.testing.assert_close(reference.apply_rope_complex(x, np.int64(4), inv_freq),
                               reference.apply_rope_complex(x, 4, inv_freq))
    with pytest.raises(ValueError, match=r"w must be a \(n_heads \* head_dim, hidden\) weight or \(n_heads \* head_dim,\) "
                                         r"bias, got torch.float32 tensor of shape \(\)"):
        reference.permute_qk_weight(torch.tensor(1.0), 1, "paper", "half")
    with pytest.raises(ValueError, match=r"n_heads must be a positive integer dividing w.shape\[0\] = 8, got True"):
        reference.permute_qk_weight(torch.randn(8, 3), True, "paper", "half")
    with pytest.raises(ValueError, match=r"positions must be a non-negative integer \(a count n for arange\(n\)\), got -3"):
        ropekit.rope_cos_sin(-3, inv_freq)
    with pytest.raises(TypeError, match="positions must be a tensor or an int n"):
        ropekit.rope_cos_sin(3.0, inv_freq)
    cos, _ = ropekit.rope_cos_sin(np.int64(3), inv_freq)
    assert cos.shape == (3, 4)


# --- neighbours: empty tensors, dtypes the kernel does not take ------------------------------------


@pytest.mark.parametrize("shape", [(0, 4), (2, 0)])
@pytest.mark.parametrize("fn", [apply_rope_qk, reference.apply_rope_qk], ids=["kernel", "twin"])
def test_empty_batches_and_sequences_give_empty_results(device, fn, shape):
    _, cos, sin = tables(device, 8, 8)
    q, k = qk(device, *shape, 2, 1, 8)
    for inplace in (False, True):
        q_out, k_out = fn(q, k, cos, sin, inplace=inplace, positions=torch.zeros(shape[0], dtype=torch.long, device=device))
        assert q_out.shape == q.shape and k_out.shape == k.shape
    packed_q, packed_k = q.reshape(-1, 2, 8), k.reshape(-1, 1, 8)
    out = fn(packed_q, packed_k, cos, sin, cu_seqlens=torch.tensor([0, 0], dtype=torch.int32, device=device))
    assert out[0].shape == (0, 2, 8)


def test_kernel_dtypes(device):
    _, cos, sin = tables(device, 8, 8)
    q, k = qk(device, 1, 4, 2, 1, 8, dtype=torch.float64)
    with pytest.raises(TypeError, match="for float64 use the reference ropekit.reference.apply_rope_qk"):
        apply_rope_qk(q, k, cos, sin)
    with pytest.raises(TypeError, match="q and k must be floating point with the same dtype"):
        apply_rope_qk(q.long(), k.long(), cos, sin)
    with pytest.raises(ValueError, match=r"positions must be an integer tensor on .*, got torch.float32"):
        apply_rope_qk(q.float(), k.float(), cos, sin, positions=torch.zeros(1, device=device))
    for dtype in (torch.float16, torch.bfloat16):
        q_out, _ = apply_rope_qk(q.to(dtype), k.to(dtype), cos, sin)
        expected = reference.apply_rope_qk(q.to(dtype).double(), k.to(dtype).double(), cos, sin)[0]
        assert q_out.dtype == dtype
        torch.testing.assert_close(q_out.double(), expected, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("form", ["offsets", "position_ids"])
def test_compiled_calls_marked_only_on_q_and_k_compile_at_most_twice(device, form):
    """The issue's call: q and k marked dynamic, (batch,) offsets following them. The first
    compile may specialise the batch to the positions' length; after that one recompile,
    neither a new batch size nor a new length compiles again."""
    torch._dynamo.reset()
    _, cos, sin = tables(device, 16, 8)
    backend = CountingBackend()
    compiled = torch.compile(lambda q, k, p: apply_rope_qk(q, k, cos, sin, positions=p), fullgraph=True, backend=backend)
    counts = []
    for batch, seq in [(2, 3), (3, 3), (4, 3), (3, 5)]:
        q, k = qk(device, batch, seq, 2, 1, 8, seed=batch + seq)
        for t, dim in [(q, 0), (k, 0), (q, 1), (k, 1)]:
            torch._dynamo.maybe_mark_dynamic(t, dim)
        if form == "offsets":
            p = torch.arange(batch, device=device)
        else:  # position_ids carry the length too: mark them like q and k
            p = torch.arange(seq, device=device).expand(batch, seq)
            torch._dynamo.maybe_mark_dynamic(p, 0), torch._dynamo.maybe_mark_dynamic(p, 1)
        torch.testing.assert_close(compiled(q, k, p), reference.apply_rope_qk(q, k, cos, sin, positions=p))
        counts.append(backend.graphs)
    assert counts[-1] <= 2 and counts[-1] == counts[-3]  # nothing for batch 4, nothing for seq 5


# --- 16: YaRN's truncate flag, against numbers computed independently -----------------------------


def yarn_ramp_end(rotations, dim, base, original):
    """The fractional pair index i at which pair i turns `rotations` times over `original`
    tokens (YaRN §3.2: r(i) = L_0·θ_i/(2π) with θ_i = base^(−2i/d)), found by bisection on
    r itself rather than by the closed form the library uses."""
    low, high = 0.0, dim / 2
    for _ in range(200):
        mid = (low + high) / 2
        turns = original * base ** (-2 * mid / dim) / (2 * math.pi)  # decreases with i
        low, high = (mid, high) if turns > rotations else (low, mid)
    return (low + high) / 2


@pytest.mark.parametrize("truncate", [True, False])
def test_yarn_truncate_flag_moves_the_ramp_ends(truncate):
    dim, base, factor, original = 64, 10000.0, 8.0, 2048
    fast, slow = yarn_ramp_end(32, dim, base, original), yarn_ramp_end(1, dim, base, original)
    # by hand: 64·ln(2048/(32·2π))/(2 ln 1e4) = 8.064 and 64·ln(2048/(1·2π))/(2 ln 1e4) = 20.105: not integers,
    # so truncation (floor, ceil) moves both ends
    assert (round(fast, 3), round(slow, 3)) == (8.064, 20.105)
    low, high = (math.floor(fast), math.ceil(slow)) if truncate else (fast, slow)
    theta = base ** -(torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    keep = 1 - ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)  # γ: 1 keeps θ
    expected = keep * theta + (1 - keep) * theta / factor
    inv_freq, _ = ropekit.rope_frequencies(dim, base, "yarn", factor=factor, original_max_position_embeddings=original,
                                           truncate=truncate)
    torch.testing.assert_close(inv_freq, expected.float(), rtol=1e-6, atol=0)
    other, _ = ropekit.rope_frequencies(dim, base, "yarn", factor=factor, original_max_position_embeddings=original,
                                        truncate=not truncate)
    assert not torch.allclose(inv_freq, other, rtol=1e-4)  # pairs 8 .. 21 differ between the two


def test_yarn_truncate_false_matches_transformers():
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    dim, base = 128, 500000.0
    rope = {"rope_type": "yarn", "rope_theta": base, "factor": 16.0, "original_max_position_embeddings": 4096,
            "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False}
    config = transformers.LlamaConfig(hidden_size=dim * 4, num_attention_heads=4, head_dim=dim,
                                      max_position_embeddings=65536, rope_theta=base, rope_scaling=dict(rope))
    if hasattr(config, "rope_parameters"):
        config.rope_parameters = dict(rope)
    hf_inv_freq, hf_att = ROPE_INIT_FUNCTIONS["yarn"](config, "cpu")
    ours, att = ropekit.rope_frequencies(dim, base, "yarn", factor=16.0, original_max_position_embeddings=4096,
                                         truncate=False)
    torch.testing.assert_close(ours, hf_inv_freq.float(), rtol=1e-6, atol=0)
    assert att == pytest.approx(hf_att, rel=1e-6)


# --- 17: tests that see the direction of the rotation, log-n in bf16, GQA heads, compiled backward --


@pytest.mark.parametrize("layout", ["half", "paper"])
def test_rotation_turns_counter_clockwise_by_plus_m_theta(device, layout):
    """RoFormer eq. 13: R(mθ) = [[cos, −sin], [sin, cos]]: the pair (1, 0) goes to (cos mθ, sin mθ)
    and (0, 1) to (−sin mθ, cos mθ). A rotation by −mθ keeps norms and relative logits, so
    only a test like this one sees the sign."""
    m, theta = 3, [1.0, 0.01]  # pair 0 turns 1 rad per token, pair 1 0.01 rad
    inv_freq = torch.tensor(theta)
    cos, sin = ropekit.rope_cos_sin(torch.tensor([m]), inv_freq)
    first, second = ((0, 2), (1, 3)) if layout == "half" else ((0, 1), (2, 3))  # features of pair 0, pair 1
    x = torch.zeros(1, 4, dtype=torch.float64)
    x[0, first[0]], x[0, second[1]] = 1.0, 1.0  # pair 0 = (1, 0), pair 1 = (0, 1)
    expected = torch.zeros(1, 4, dtype=torch.float64)
    expected[0, first[0]], expected[0, first[1]] = math.cos(m * theta[0]), math.sin(m * theta[0])
    expected[0, second[0]], expected[0, second[1]] = -math.sin(m * theta[1]), math.cos(m * theta[1])
    for fn in (ropekit.apply_rope, reference.apply_rope_loop):
        torch.testing.assert_close(fn(x, cos, sin, layout), expected, atol=1e-7, rtol=0)
    q = x.float().to(device).reshape(1, 1, 1, 4)
    out, _ = apply_rope_qk(q, q.clone(), cos.to(device), sin.to(device), layout, positions=0)
    torch.testing.assert_close(out.double().cpu().reshape(1, 4), expected, atol=1e-6, rtol=0)


def test_rotation_direction_matches_transformers():
    pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    inv_freq, _ = ropekit.rope_frequencies(8)
    q, k = torch.randn(2, 1, 5, 3, 8, dtype=torch.float64).unbind(0)  # (batch, seq, heads, head_dim)
    cos, sin = ropekit.rope_cos_sin(torch.arange(5), inv_freq)
    hf_cos, hf_sin = torch.cat((cos, cos), -1).double()[None], torch.cat((sin, sin), -1).double()[None]
    hf_q, hf_k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), hf_cos, hf_sin)  # HF: (batch, heads, seq, d)
    ours = reference.apply_rope_qk(q, k, cos, sin)
    torch.testing.assert_close(ours[0], hf_q.transpose(1, 2)), torch.testing.assert_close(ours[1], hf_k.transpose(1, 2))


# ReRoPE's log-n scale, where it matters: L = 2 scales query i by log2(i + 1), up to 5 at i = 31,
# so an off-by-one in n moves outputs by 0.1-0.3 while the correct bf16 kernel stays within 0.04
# (measured under the interpreter: 0.0385 and 0.0356 for these two cases).
LOG_N_BF16 = [(1, 2, 2, 32, 32, 4, None, 2, "half"), (1, 4, 2, 48, 32, 8, 4.0, 2, "paper")]


@pytest.mark.parametrize("batch, heads, kv_heads, seq, head_dim, window, leaky, log_n, layout", LOG_N_BF16)
def test_fused_rerope_log_n_in_bf16_is_checked_where_the_scale_is_large(
    device, batch, heads, kv_heads, seq, head_dim, window, leaky, log_n, layout
):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, seq, h, head_dim, generator=gen).to(device, torch.bfloat16)
               for h in (heads, kv_heads, kv_heads))
    inv_freq, _ = ropekit.rope_frequencies(head_dim)
    options = dict(leaky_factor=leaky, log_n_train_length=log_n, layout=layout)
    out = rerope_attention(q, k, v, inv_freq.to(device), window, **options).float()
    expected = rerope_reference(q.double(), k.double(), v.double(), inv_freq.double(), window, **options).float()
    torch.testing.assert_close(out, expected, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("heads, kv_heads", [(4, 2), (6, 3)])
def test_grouped_query_kernels_map_each_head_to_its_own_kv_head(device, heads, kv_heads):
    """Distinct kv heads (more than one), so that reading the wrong one changes the answer."""
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(1, 24, heads, 32, generator=gen)
    k = torch.randn(1, 24, kv_heads, 32, generator=gen) + torch.arange(kv_heads)[:, None]  # heads differ
    v = torch.randn(1, 24, kv_heads, 32, generator=gen) * (1 + torch.arange(kv_heads))[:, None]
    inv_freq, cos, sin = tables("cpu", 24, 32)
    q_out, k_out = apply_rope_qk(q.to(device), k.to(device), cos.to(device), sin.to(device))
    m = torch.arange(24)[None]
    torch.testing.assert_close(q_out.double().cpu(), rotate_by_matrix(q, m, inv_freq), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k_out.double().cpu(), rotate_by_matrix(k, m, inv_freq), atol=1e-5, rtol=1e-5)
    out = rerope_attention(q.to(device), k.to(device), v.to(device), inv_freq.to(device), 6, log_n_train_length=8)
    expected = rerope_reference(q.double(), k.double(), v.double(), inv_freq.double(), 6, log_n_train_length=8)
    torch.testing.assert_close(out.double().cpu(), expected, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("inplace", [False, True])
def test_compiled_backward_matches_float64_math(device, inplace):
    """The compiled path's gradient against float64 autograd through explicit rotation
    matrices, not against eager mode (a bug shared by both would pass that comparison)."""
    torch._dynamo.reset()
    inv_freq, cos, sin = tables(device, 8, 8)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 16, generator=gen)
    w = torch.randn(3 * 8, 16, generator=gen)
    weights = torch.randn(2, 5, 3, 8, generator=gen)

    def loss_of(w, x, rope):
        qkv = (x @ w.T).view(2, 5, 3, 8)
        q, k = rope(qkv[:, :, :2], qkv[:, :, 2:])
        return (q * weights[:, :, :2].to(q)).sum() + (k * weights[:, :, 2:].to(k)).sum()

    w_kernel = w.clone().to(device).requires_grad_()
    backend = "inductor" if CUDA else "aot_eager"
    compiled = torch.compile(lambda w, x: loss_of(w, x, lambda q, k: apply_rope_qk(q, k, cos, sin, inplace=inplace)),
                             fullgraph=True, backend=backend)
    compiled(w_kernel, x.to(device)).backward()
    w64 = w.detach().double().requires_grad_()
    m = torch.arange(5).expand(2, 5)
    loss_of(w64, x.double(), lambda q, k: (rotate_by_matrix(q, m, inv_freq.cpu()), rotate_by_matrix(k, m, inv_freq.cpu()))).backward()
    torch.testing.assert_close(w_kernel.grad.double().cpu(), w64.grad, atol=1e-4, rtol=1e-4)
