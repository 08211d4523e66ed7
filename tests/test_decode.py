"""Tests for ropekit.decode: decoding over a rotated KV cache, and keys rotated as if first.

The ReRoPE decode step is tested beside rerope_attention in test_attention.py."""

import pytest
import torch

import ropekit
from ropekit.decode import rope_decode_step, rotate_as_if_first


def _qkv(batch=2, heads=4, kv_heads=2, seq=9, head_dim=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, heads, head_dim, generator=g, dtype=dtype)
    k = torch.randn(batch, seq, kv_heads, head_dim, generator=g, dtype=dtype)
    v = torch.randn(batch, seq, kv_heads, 5, generator=g, dtype=dtype)
    return q, k, v


def _rotate_at(x, start, inv_freq, layout, attention_factor=1.0):
    """What a decoder does to the new keys before appending them to the cache."""
    cos, sin = ropekit.rope_cos_sin(torch.arange(start, start + x.shape[1]), inv_freq, attention_factor)
    return ropekit.apply_rope(x, cos[:, None], sin[:, None], layout)


def _dots(q, k):
    """(batch, heads, n_q, n_k) dot products of (batch, seq, heads, head_dim) tensors."""
    return torch.einsum("bqhd,bkhd->bhqk", q, k)


# --- rope_decode_step ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("chunk", [1, 2])
def test_decoding_over_a_rotated_cache_reproduces_full_attention_rows(layout, chunk):
    q, k, v = _qkv()
    inv_freq, _ = ropekit.rope_frequencies(8)
    full = ropekit.rope_attention(q, k, v, inv_freq, attention_factor=1.2, layout=layout)
    # prefill three tokens, then decode `chunk` tokens per step, caching rotated keys
    k_cache = _rotate_at(k[:, :3], 0, inv_freq, layout, 1.2)
    for offset in range(3, 9, chunk):
        new = slice(offset, offset + chunk)
        k_cache = torch.cat((k_cache, _rotate_at(k[:, new], offset, inv_freq, layout, 1.2)), dim=1)
        out = rope_decode_step(
            q[:, new], k_cache, v[:, : offset + chunk], offset, inv_freq, attention_factor=1.2, layout=layout
        )
        torch.testing.assert_close(out, full[:, new], rtol=1e-6, atol=1e-7)


def test_a_query_rotated_without_its_offset_sees_every_key_as_a_future_one():
    # The logit of query position n and cached key j is q ᵀ R_{j − n} k_j. Forgetting the
    # offset puts the new query at n = 0, so key j looks j tokens in the future instead of
    # 8 − j tokens in the past.
    q, k, _ = _qkv(batch=1, heads=2, kv_heads=2, seq=9)
    inv_freq, _ = ropekit.rope_frequencies(8)
    k_cache = _rotate_at(k, 0, inv_freq, "half")
    right = _dots(_rotate_at(q[:, -1:], 8, inv_freq, "half"), k_cache)
    wrong = _dots(_rotate_at(q[:, -1:], 0, inv_freq, "half"), k_cache)
    for j in range(9):
        qv, kv = q[0, -1, 1], k[0, j, 1]
        R = ropekit.rotation_matrix(j - 8, 8, layout="half", inv_freq=inv_freq)
        torch.testing.assert_close(right[0, 1, 0, j], qv @ R @ kv, rtol=1e-5, atol=1e-6)
        R = ropekit.rotation_matrix(j, 8, layout="half", inv_freq=inv_freq)
        torch.testing.assert_close(wrong[0, 1, 0, j], qv @ R @ kv, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(right, wrong, atol=1e-2)


def test_rope_decode_step_grouped_query_heads_equal_repeated_kv_heads():
    q, k, v = _qkv(heads=6, kv_heads=3, dtype=torch.float32)
    inv_freq, _ = ropekit.rope_frequencies(8)
    k_cache = _rotate_at(k, 0, inv_freq, "paper")
    grouped = rope_decode_step(q[:, -2:], k_cache, v, 7, inv_freq, layout="paper")
    repeated = rope_decode_step(
        q[:, -2:], k_cache.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2), 7, inv_freq, layout="paper"
    )
    torch.testing.assert_close(grouped, repeated, rtol=0, atol=0)


# --- rotate_as_if_first ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["half", "paper"])
def test_memory_logits_depend_on_the_query_position_only(layout):
    q, k, _ = _qkv(batch=1, heads=2, kv_heads=2, seq=4)
    inv_freq, _ = ropekit.rope_frequencies(8)
    R = ropekit.rotation_matrix

    def memory_logits(key_positions, query_position):
        cos, sin = ropekit.rope_cos_sin(key_positions, inv_freq)
        cached = ropekit.apply_rope(k, cos[:, None], sin[:, None], layout)  # a standard cache
        memory = rotate_as_if_first(cached, inv_freq, rotated_at=key_positions, layout=layout)
        query = _rotate_at(q, query_position, inv_freq, layout)
        return _dots(query, memory)

    near = memory_logits(torch.arange(4), 0)
    far = memory_logits(torch.tensor([1000, 5000, 20000, 99999]), 0)
    torch.testing.assert_close(far, near, rtol=1e-3, atol=1e-3)  # float32 angles of 1e5-rad
    # the logit is q_nᵀ R_{−n} k: query n's own position counts, the keys' do not
    logits = memory_logits(torch.arange(4), 3)
    for i in range(4):
        for j in range(4):
            n = 3 + i
            expected = q[0, i, 1] @ R(n, 8, layout=layout, inv_freq=inv_freq).T @ k[0, j, 1]
            torch.testing.assert_close(logits[0, 1, i, j], expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(logits, memory_logits(torch.arange(4), 0), atol=1e-3)


def test_rotate_as_if_first_is_the_identity_on_unrotated_keys_and_undoes_batch_positions():
    _, k, _ = _qkv(dtype=torch.float32)
    inv_freq, _ = ropekit.rope_frequencies(8)
    assert torch.equal(rotate_as_if_first(k, inv_freq), k)  # R_0 = I
    positions = torch.stack((torch.arange(9), torch.arange(9) * 3 + 40))
    cos, sin = ropekit.rope_cos_sin(positions, inv_freq)
    cached = ropekit.apply_rope(k, cos[:, :, None], sin[:, :, None], "paper")
    back = rotate_as_if_first(cached, inv_freq, rotated_at=positions, layout="paper")
    torch.testing.assert_close(back, k, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cached, k, atol=1e-2)


# --- bad input ----------------------------------------------------------------------------


def test_bad_input_raises_a_clear_error_naming_the_argument():
    q, k, v = _qkv(dtype=torch.float32)
    f, _ = ropekit.rope_frequencies(8)
    with pytest.raises(ValueError, match="offset"):
        rope_decode_step(q[:, -1:], k, v, -1, f)
    with pytest.raises(ValueError, match="k_cache must hold"):
        rope_decode_step(q[:, -1:], k, v, 4, f)
    with pytest.raises(ValueError, match="layout"):
        rope_decode_step(q[:, -1:], k, v, 8, f, layout="gptj")
    with pytest.raises(ValueError, match="same number of heads"):
        rope_decode_step(q[:, -1:], k, v[:, :, :1], 8, f)
    with pytest.raises(ValueError, match="rotated_at"):
        rotate_as_if_first(k, f, rotated_at=torch.arange(3))
    with pytest.raises(ValueError, match="k must be"):
        rotate_as_if_first(k[0], f)
    with pytest.raises(ValueError, match="layout"):
        rotate_as_if_first(k, f, layout="complex")
