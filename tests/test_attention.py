"""Tests for ropekit.attention: relative positions, RoPE/ReRoPE attention, decoding.

Every attention result is compared with an independent float64 construction: explicit
rotation matrices (ropekit.rotation_matrix) and per-element loops.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ropekit
from ropekit.attention import attention_logits, relative_position_matrix, rerope_attention, rerope_decode_step, rope_attention

# --- relative_position_matrix ----------------------------------------------------------


def _relative_positions_loop(length, scheme, window=None, factor=None):
    """The definition, one entry at a time."""
    P = torch.full((length, length), float("nan"), dtype=torch.float64)
    for i in range(length):
        for j in range(i + 1):
            d = i - j
            if scheme == "rope":
                P[i, j] = d
            elif scheme == "pi":
                P[i, j] = d / factor
            elif scheme == "rerope":
                P[i, j] = min(d, window)
            else:
                P[i, j] = d if d < window else window + (d - window) / factor
    return P


@pytest.mark.parametrize(
    "scheme, window, factor",
    [("rope", None, None), ("pi", None, 4.0), ("rerope", 3, None), ("leaky_rerope", 3, 2.5), ("rerope", 20, None)],
)
def test_relative_position_matrix_matches_the_loop(scheme, window, factor):
    P = relative_position_matrix(9, scheme, window=window, factor=factor)
    expected = _relative_positions_loop(9, scheme, window, factor)
    assert P.dtype == torch.float64 and P.shape == (9, 9)
    torch.testing.assert_close(P, expected, equal_nan=True, rtol=0, atol=0)


@given(
    length=st.integers(1, 24),
    window=st.integers(1, 30),
    factor=st.floats(1.01, 64.0),
    scheme=st.sampled_from(["rope", "pi", "rerope", "leaky_rerope"]),
)
@settings(max_examples=40, deadline=None)
def test_relative_position_matrix_is_toeplitz_with_nan_above_the_diagonal(length, window, factor, scheme):
    P = relative_position_matrix(
        length,
        scheme,
        window=window if scheme in ("rerope", "leaky_rerope") else None,
        factor=factor if scheme in ("pi", "leaky_rerope") else None,
    )
    upper = torch.ones(length, length, dtype=torch.bool).triu(1)
    assert P[upper].isnan().all() and not P[~upper].isnan().any()
    # Toeplitz: every diagonal holds one value, the value of its first row
    for d in range(length):
        diag = P.diagonal(-d)
        assert (diag == diag[0]).all()
    # the position never decreases with distance, and rope is the largest of all
    first_column = P[:, 0]
    assert (first_column[1:] >= first_column[:-1]).all()
    assert (first_column <= torch.arange(length, dtype=torch.float64)).all()


def test_rerope_positions_stop_at_the_window_and_leaky_ones_keep_growing_slowly():
    rerope = relative_position_matrix(12, "rerope", window=4)[:, 0]
    leaky = relative_position_matrix(12, "leaky_rerope", window=4, factor=4.0)[:, 0]
    assert rerope.tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4]
    assert leaky.tolist() == [0, 1, 2, 3, 4, 4.25, 4.5, 4.75, 5, 5.25, 5.5, 5.75]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(length=0), "length"),
        (dict(length=4, scheme="alibi"), "scheme"),
        (dict(length=4, scheme="rerope"), "window"),
        (dict(length=4, scheme="rerope", window=0), "window"),
        (dict(length=4, scheme="rerope", window=2.5), "window"),
        (dict(length=4, scheme="leaky_rerope", window=2), "factor"),
        (dict(length=4, scheme="leaky_rerope", window=2, factor=1.0), "factor"),
        (dict(length=4, scheme="pi"), "factor"),
        (dict(length=4, scheme="pi", factor=-2.0), "factor"),
        (dict(length=4, scheme="rope", window=2), "window"),
        (dict(length=4, scheme="rerope", window=2, factor=2.0), "factor"),
    ],
)
def test_relative_position_matrix_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        relative_position_matrix(**kwargs)


# --- independent float64 references ----------------------------------------------------


def _qkv(batch=2, heads=4, kv_heads=2, seq=7, head_dim=8, v_dim=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, heads, head_dim, generator=g, dtype=dtype)
    k = torch.randn(batch, seq, kv_heads, head_dim, generator=g, dtype=dtype)
    v = torch.randn(batch, seq, kv_heads, v_dim or head_dim, generator=g, dtype=dtype)
    return q, k, v


def _attention_loop(q, k, v, logit, causal=True):
    """out[b, i, h] = Σ_j softmax_j(logit(b, h, i, j)) v[b, j, h // g], one logit at a time."""
    batch, n_q, heads, _ = q.shape
    n_k = k.shape[1]
    groups = heads // k.shape[2]
    out = torch.zeros(batch, n_q, heads, v.shape[-1], dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            for i in range(n_q):
                visible = range(n_k - n_q + i + 1) if causal else range(n_k)
                a = torch.tensor([logit(b, h, i, j) for j in visible], dtype=torch.float64)
                w = torch.softmax(a, dim=0)
                out[b, i, h] = w @ v[b, : len(w), h // groups].double()
    return out


def _rope_logit(q, k, inv_freq, layout, positions, attention_factor=1.0, xpos_scale_base=None):
    """a_ij = (R_{p_i} q_i)·(R_{p_j} k_j) / √d with the explicit matrix, xPos scales from the paper."""
    head_dim = q.shape[-1]
    rotary_dim = 2 * inv_freq.shape[0]
    groups = q.shape[2] // k.shape[2]

    def position(b, i):
        return float(positions[i] if positions.dim() == 1 else positions[b, i])

    def rotate(x, p, sign):
        R = torch.eye(head_dim, dtype=torch.float64)
        # cos and sin carry the attention factor, so it scales the rotated features only
        R[:rotary_dim, :rotary_dim] = ropekit.rotation_matrix(p, rotary_dim, layout=layout, inv_freq=inv_freq)
        R[:rotary_dim, :rotary_dim] *= attention_factor
        x = x.double()
        if xpos_scale_base is not None:  # ζ_i = (2i/d + 0.4)/1.4 on both features of pair i
            zeta = torch.ones(head_dim, dtype=torch.float64)
            for i in range(rotary_dim // 2):
                ia, ib = (i, i + rotary_dim // 2) if layout == "half" else (2 * i, 2 * i + 1)
                zeta[ia] = zeta[ib] = (2 * i / rotary_dim + 0.4) / 1.4
            x = x * zeta ** (sign * p / xpos_scale_base)
        return R @ x

    def logit(b, h, i, j):
        qi = rotate(q[b, i, h], position(b, i), +1)
        kj = rotate(k[b, j, h // groups], position(b, j), -1)
        return float(qi @ kj) / math.sqrt(head_dim)

    return logit


def _relative_logit(q, k, inv_freq, layout, rel, log_n_train_length=None):
    """a_ij = q_iᵀ R_{−rel_ij} k_j / √d, rel from relative_position_matrix (i − j above it)."""
    head_dim = q.shape[-1]
    groups = q.shape[2] // k.shape[2]

    def logit(b, h, i, j):
        r = float(rel[i, j]) if j <= i else float(i - j)
        qi = q[b, i, h].double()
        if log_n_train_length is not None:
            qi = qi * max(1.0, math.log(i + 1) / math.log(log_n_train_length))
        R = ropekit.rotation_matrix(-r, head_dim, layout=layout, inv_freq=inv_freq)
        return float(qi @ R @ k[b, j, h // groups].double()) / math.sqrt(head_dim)

    return logit


# --- rope_attention --------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("causal", [True, False])
def test_rope_attention_matches_the_explicit_rotation_matrix_loop(layout, causal):
    q, k, v = _qkv(v_dim=5)
    inv_freq, _ = ropekit.rope_frequencies(8)
    out = rope_attention(q, k, v, inv_freq, causal=causal, layout=layout)
    expected = _attention_loop(q, k, v, _rope_logit(q, k, inv_freq, layout, torch.arange(7)), causal)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["half", "paper"])
def test_rope_attention_with_batch_positions_attention_factor_and_partial_rotary(layout):
    q, k, v = _qkv(head_dim=12)
    inv_freq, _ = ropekit.rope_frequencies(8, scaling="yarn", factor=4.0, original_max_position_embeddings=16)
    positions = torch.tensor([[0.0, 1, 2, 3, 4, 5, 6], [10, 11.5, 13, 14.5, 16, 17.5, 19]])
    out = rope_attention(q, k, v, inv_freq, positions=positions, attention_factor=1.3, layout=layout)
    logit = _rope_logit(q, k, inv_freq, layout, positions, attention_factor=1.3)
    torch.testing.assert_close(out, _attention_loop(q, k, v, logit), rtol=1e-5, atol=1e-6)


def test_rope_attention_grouped_query_heads_equal_repeated_kv_heads():
    q, k, v = _qkv(heads=6, kv_heads=2, dtype=torch.float32)
    inv_freq, _ = ropekit.rope_frequencies(8)
    grouped = rope_attention(q, k, v, inv_freq)
    repeated = rope_attention(q, k.repeat_interleave(3, dim=2), v.repeat_interleave(3, dim=2), inv_freq)
    torch.testing.assert_close(grouped, repeated, rtol=0, atol=0)
    # and each query head really uses its own group's key head
    assert not torch.allclose(grouped[:, :, 0], grouped[:, :, 3])


def test_rope_attention_keeps_low_precision_dtype_and_agrees_with_float32():
    q, k, v = _qkv(dtype=torch.float32)
    inv_freq, _ = ropekit.rope_frequencies(8)
    out = rope_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), inv_freq)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), rope_attention(q, k, v, inv_freq), rtol=2e-2, atol=2e-2)


# --- ReRoPE and Leaky ReRoPE -------------------------------------------------------------


@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("leaky_factor", [None, 3.0])
@pytest.mark.parametrize("causal", [True, False])
def test_rerope_with_a_window_covering_the_sequence_is_exactly_rope(layout, leaky_factor, causal):
    q, k, v = _qkv(dtype=torch.float32)
    inv_freq, _ = ropekit.rope_frequencies(8)
    rope = rope_attention(q, k, v, inv_freq, causal=causal, layout=layout)
    for window in (7, 50):
        rerope = rerope_attention(q, k, v, inv_freq, window, leaky_factor, causal=causal, layout=layout)
        assert torch.equal(rerope, rope)
    # a smaller window really changes the answer
    smaller = rerope_attention(q, k, v, inv_freq, 2, leaky_factor, causal=causal, layout=layout)
    assert not torch.allclose(smaller, rope)


@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("leaky_factor", [None, 2.5])
@pytest.mark.parametrize("log_n", [None, 3])
def test_rerope_matches_the_per_element_construction_from_relative_positions(layout, leaky_factor, log_n):
    q, k, v = _qkv(seq=8)
    inv_freq, _ = ropekit.rope_frequencies(8)
    scheme = "rerope" if leaky_factor is None else "leaky_rerope"
    rel = relative_position_matrix(8, scheme, window=3, factor=leaky_factor)
    out = rerope_attention(q, k, v, inv_freq, 3, leaky_factor, log_n_train_length=log_n, layout=layout)
    expected = _attention_loop(q, k, v, _relative_logit(q, k, inv_freq, layout, rel, log_n))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_rerope_without_causal_mask_uses_plain_rope_for_later_keys():
    q, k, v = _qkv(seq=6)
    inv_freq, _ = ropekit.rope_frequencies(8)
    rel = relative_position_matrix(6, "leaky_rerope", window=2, factor=2.0)
    out = rerope_attention(q, k, v, inv_freq, 2, 2.0, causal=False)
    expected = _attention_loop(q, k, v, _relative_logit(q, k, inv_freq, "half", rel), causal=False)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_log_n_leaves_queries_inside_the_training_length_unchanged():
    q, k, v = _qkv(seq=9)
    inv_freq, _ = ropekit.rope_frequencies(8)
    plain = rerope_attention(q, k, v, inv_freq, 3)
    scaled = rerope_attention(q, k, v, inv_freq, 3, log_n_train_length=5)
    # token numbers n = 1..5 (indices 0..4) have log_5 n <= 1, so their rows are untouched
    torch.testing.assert_close(scaled[:, :5], plain[:, :5], rtol=0, atol=0)
    assert not torch.allclose(scaled[:, 5:], plain[:, 5:])


# --- ReRoPE decoding ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("leaky_factor", [None, 2.5])
@pytest.mark.parametrize("log_n", [None, 4])
def test_rerope_decode_step_equals_every_row_of_full_attention(layout, leaky_factor, log_n):
    q, k, v = _qkv(seq=9, v_dim=5)
    inv_freq, _ = ropekit.rope_frequencies(8)
    full = rerope_attention(q, k, v, inv_freq, 3, leaky_factor, log_n_train_length=log_n, layout=layout)
    for i in range(9):  # i < w − 1, i = w − 1 and i >= w all occur
        step = rerope_decode_step(
            q[:, i : i + 1], k[:, : i + 1], v[:, : i + 1], i, inv_freq, 3, leaky_factor,
            layout=layout, log_n_train_length=log_n,
        )
        torch.testing.assert_close(step, full[:, i : i + 1], rtol=1e-6, atol=1e-7)


@given(
    seq=st.integers(1, 12),
    window=st.integers(1, 14),
    leaky_factor=st.one_of(st.none(), st.floats(1.05, 16.0)),
    log_n=st.one_of(st.none(), st.integers(2, 8)),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=30, deadline=None)
def test_rerope_decode_step_matches_the_last_row_for_any_window(seq, window, leaky_factor, log_n, seed):
    q, k, v = _qkv(batch=1, heads=2, kv_heads=1, seq=seq, head_dim=6, seed=seed)
    inv_freq, _ = ropekit.rope_frequencies(6)
    full = rerope_attention(q, k, v, inv_freq, window, leaky_factor, log_n_train_length=log_n)
    step = rerope_decode_step(q[:, -1:], k, v, seq - 1, inv_freq, window, leaky_factor, log_n_train_length=log_n)
    # float32 math, rotations applied in a different order: a few ulp apart (seen: seq 10, w 6, log-n 2)
    torch.testing.assert_close(step, full[:, -1:], rtol=1e-5, atol=1e-6)


def test_rerope_decode_step_in_float32_keeps_its_dtype():
    q, k, v = _qkv(seq=6, dtype=torch.float32)
    inv_freq, _ = ropekit.rope_frequencies(8)
    step = rerope_decode_step(q[:, -1:], k, v, 5, inv_freq, 2, 4.0)
    assert step.dtype == torch.float32 and step.shape == (2, 1, 4, 8)
    torch.testing.assert_close(step, rerope_attention(q, k, v, inv_freq, 2, 4.0)[:, -1:], rtol=1e-5, atol=1e-5)


# --- xPos ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["half", "paper"])
def test_xpos_matches_the_paper_formula_with_the_explicit_matrix(layout):
    q, k, v = _qkv(head_dim=10)  # rotary_dim 8 of 10: the last two features are neither rotated nor scaled
    inv_freq, _ = ropekit.rope_frequencies(8)
    positions = torch.arange(7) * 9.0
    out = rope_attention(q, k, v, inv_freq, positions=positions, layout=layout, xpos_scale_base=32)
    logit = _rope_logit(q, k, inv_freq, layout, positions, xpos_scale_base=32)
    torch.testing.assert_close(out, _attention_loop(q, k, v, logit), rtol=1e-5, atol=1e-6)


@given(shift=st.integers(0, 2000), layout=st.sampled_from(["half", "paper"]), scale_base=st.sampled_from([64, 512]))
@settings(max_examples=20, deadline=None)
def test_xpos_logits_depend_on_relative_position_only(shift, layout, scale_base):
    # the same content at every position, and v one-hot per key: the output is the weight matrix
    g = torch.Generator().manual_seed(shift)
    seq = 6
    q = torch.randn(1, 1, 1, 8, generator=g, dtype=torch.float64).expand(1, seq, 1, 8)
    k = torch.randn(1, 1, 1, 8, generator=g, dtype=torch.float64).expand(1, seq, 1, 8)
    v = torch.eye(seq, dtype=torch.float64)[None, :, None, :]
    inv_freq, _ = ropekit.rope_frequencies(8)
    positions = torch.arange(seq) + shift
    weights = rope_attention(q, k, v, inv_freq, positions=positions, layout=layout, xpos_scale_base=scale_base)[0, :, 0]
    at_zero = rope_attention(q, k, v, inv_freq, layout=layout, xpos_scale_base=scale_base)[0, :, 0]
    # (float32 angles at position ~2000 are off by ~1e-4 rad, hence the tolerance)
    torch.testing.assert_close(weights, at_zero, rtol=1e-4, atol=1e-6)
    # every row i holds exp(a(i − j)) / Σ: the log-ratio to the diagonal depends on i − j only
    # (checked at small positions, where the float32 angles are exact to ~1e-7)
    log_ratio = at_zero.log() - at_zero.diagonal().log()[:, None]
    for d in range(1, seq):
        diag = log_ratio.diagonal(-d)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), rtol=1e-6, atol=1e-6)
    # and xPos really changes the weights
    plain = rope_attention(q, k, v, inv_freq, layout=layout)[0, :, 0]
    assert not torch.allclose(weights, plain, rtol=1e-4, atol=1e-6)


# --- bad input ----------------------------------------------------------------------------


def _bad_calls():
    q, k, v = _qkv(dtype=torch.float32)
    f, _ = ropekit.rope_frequencies(8)
    r, rd = rope_attention, rerope_attention
    return [
        (lambda: r(q[0], k, v, f), ValueError, "q must have shape"),
        (lambda: r(q, k[:, :, :1].expand(2, 7, 3, 8), v[:, :, :1].expand(2, 7, 3, 8), f), ValueError, "heads"),
        (lambda: r(q, k, v[:, :, :1], f), ValueError, "same number of heads"),
        (lambda: r(q, k[..., :6], v, f), ValueError, "head_dim"),
        (lambda: r(q, k, v[:, :5], f), ValueError, "same number of tokens"),
        (lambda: r(q, k[:, :5], v[:, :5], f), ValueError, "same seq"),
        (lambda: r(q, k.double(), v, f), TypeError, "dtype"),
        (lambda: r(q.int(), k, v, f), TypeError, "q must be floating"),
        (lambda: r(q, k, v, ropekit.rope_frequencies(10)[0]), ValueError, "rotary_dim"),
        (lambda: r(q, k, v, f, layout="neox"), ValueError, "layout"),
        (lambda: r(q, k, v, f, positions=torch.arange(6)), ValueError, "positions"),
        (lambda: r(q, k, v, f, xpos_scale_base=0), ValueError, "xpos_scale_base"),
        (lambda: rd(q, k, v, f, 0), ValueError, "window"),
        (lambda: rd(q, k, v, f, -3), ValueError, "window"),
        (lambda: rd(q, k, v, f, 2.0), ValueError, "window"),
        (lambda: rd(q, k, v, f, 2, leaky_factor=1.0), ValueError, "leaky_factor"),
        (lambda: rd(q, k, v, f, 2, leaky_factor=0.5), ValueError, "leaky_factor"),
        (lambda: rd(q, k, v, f, 2, log_n_train_length=1), ValueError, "log_n_train_length"),
        (lambda: rd(q, k, v, f, 2, layout="interleaved"), ValueError, "layout"),
        (lambda: rerope_decode_step(q, k, v, 6, f, 2), ValueError, "one new query"),
        (lambda: rerope_decode_step(q[:, -1:], k, v, 5, f, 2), ValueError, "position"),
        (lambda: rerope_decode_step(q[:, -1:], k, v, -1, f, 2), ValueError, "position"),
        (lambda: rerope_decode_step(q[:, -1:], k, v, 6, f, 0), ValueError, "window"),
        (lambda: rerope_decode_step(q[:, -1:], k, v, 6, f, 2, leaky_factor=1), ValueError, "leaky_factor"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_input_raises_a_clear_error_naming_the_argument(case):
    call, error, match = _bad_calls()[case]
    with pytest.raises(error, match=match):
        call()


# --- attention_logits: the per-element logit matrix the pictures use -----------------


@pytest.mark.parametrize(
    "scheme, options",
    [("rope", {}), ("pi", {"factor": 2.0}), ("rerope", {"window": 3}), ("leaky_rerope", {"window": 3, "factor": 2.0})],
)
def test_attention_logits_softmax_to_the_library_attention(scheme, options):
    from ropekit.attention import rerope_attention, rope_attention

    torch.manual_seed(0)
    seq, head_dim = 9, 8
    q, k, v = (torch.randn(1, seq, 1, head_dim, dtype=torch.float64) for _ in range(3))
    inv_freq, _ = ropekit.rope_frequencies(head_dim)
    logits = attention_logits(q[0, :, 0], k[0, :, 0], scheme, inv_freq, **options)
    weights = torch.nan_to_num(logits, nan=float("-inf")).softmax(-1)
    if scheme == "rope":
        expected = rope_attention(q, k, v, inv_freq)
    elif scheme == "pi":
        expected = rope_attention(q, k, v, inv_freq, positions=torch.arange(seq) / 2.0)
    else:
        expected = rerope_attention(q, k, v, inv_freq, options["window"], leaky_factor=options.get("factor"))
    # cos and sin are float32 in both (rope_cos_sin), so agreement is to float32 precision
    torch.testing.assert_close(weights @ v[0, :, 0], expected[0, :, 0], rtol=1e-6, atol=1e-6)
    # and the explicit matrix: a_ij = qᵢᵀ R_{-P_ij} k_j / √d (RoFormer eq. 16)
    from ropekit.attention import relative_position_matrix

    P = relative_position_matrix(seq, scheme, **options)
    a = (q[0, 6, 0] @ ropekit.rotation_matrix(-float(P[6, 2]), head_dim, layout="half") @ k[0, 2, 0]) / math.sqrt(head_dim)
    assert logits[6, 2].item() == pytest.approx(a.item(), rel=1e-6, abs=1e-6)


def test_attention_logits_rejects_bad_arguments():
    q = torch.randn(6, 8)
    with pytest.raises(ValueError, match="q and k must have the same shape"):
        attention_logits(q, torch.randn(5, 8))
    with pytest.raises(ValueError, match="q must be"):
        attention_logits(torch.randn(6), q)
    with pytest.raises(ValueError, match="window"):
        attention_logits(q, q, "rerope")
