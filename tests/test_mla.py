"""MLA's decoupled RoPE (ropekit.mla) against transformers' DeepSeek-V3 attention."""

import math

import pytest
import torch

import ropekit
from ropekit import mla


def deepseek_layer(rope_interleave, q_lora_rank=None):
    transformers = pytest.importorskip("transformers")
    ds = pytest.importorskip("transformers.models.deepseek_v3.modeling_deepseek_v3")
    config = transformers.DeepseekV3Config(
        hidden_size=32, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=q_lora_rank, kv_lora_rank=16,
        qk_rope_head_dim=8, qk_nope_head_dim=12, v_head_dim=10, rope_interleave=rope_interleave,
        num_hidden_layers=1, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return ds, config, ds.DeepseekV3Attention(config, layer_idx=0).double()


@pytest.mark.parametrize("rope_interleave", [True, False])
def test_attention_rebuilt_with_decoupled_rope_matches_deepseek_v3(rope_interleave):
    ds, config, layer = deepseek_layer(rope_interleave, q_lora_rank=None)
    batch, seq, heads, nope, rope, v_dim = 2, 7, 4, 12, 8, 10
    hidden = torch.randn(batch, seq, 32, dtype=torch.float64)
    position_ids = torch.arange(3, 3 + seq).expand(batch, seq)
    cos_hf, sin_hf = ds.DeepseekV3RotaryEmbedding(config)(hidden, position_ids)
    theirs, _ = layer(hidden, position_embeddings=(cos_hf.double(), sin_hf.double()), attention_mask=None)

    inv_freq, _ = ropekit.rope_frequencies(rope, 10000.0)
    cos, sin = ropekit.rope_cos_sin(position_ids, inv_freq)
    q = layer.q_proj(hidden).view(batch, seq, heads, nope + rope)
    latent, k_rope = layer.kv_a_proj_with_mqa(hidden).split([16, rope], dim=-1)
    latent = layer.kv_a_layernorm(latent)
    k_nope, v = mla.mla_expand_latent(latent, layer.kv_b_proj.weight, heads, nope, v_dim)
    q_full, k_full = mla.decoupled_rope_qk(q, k_nope, k_rope[:, :, None], cos, sin,
                                           layout="paper" if rope_interleave else "half")
    scores = torch.einsum("bqhd,bkhd->bhqk", q_full, k_full) * layer.scaling
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(batch, seq, -1)
    torch.testing.assert_close(layer.o_proj(out), theirs, rtol=1e-6, atol=1e-6)
    assert layer.scaling == pytest.approx(1 / math.sqrt(nope + rope))


def test_one_rope_key_head_is_shared_by_every_head():
    torch.manual_seed(1)
    q = torch.randn(1, 5, 3, 6 + 4)
    k_nope, k_rope = torch.randn(1, 5, 3, 6), torch.randn(1, 5, 1, 4)
    cos, sin = ropekit.rope_cos_sin(5, ropekit.rope_frequencies(4)[0])
    q_out, k_out = mla.decoupled_rope_qk(q, k_nope, k_rope, cos, sin)
    torch.testing.assert_close(q_out[..., :6], q[..., :6], rtol=0, atol=0)  # the no-RoPE part is untouched
    torch.testing.assert_close(k_out[..., :6], k_nope, rtol=0, atol=0)
    rotated = ropekit.apply_rope(k_rope, cos[:, None], sin[:, None], layout="paper")
    for h in range(3):
        torch.testing.assert_close(k_out[:, :, h, 6:], rotated[:, :, 0], rtol=0, atol=0)
    torch.testing.assert_close(q_out[..., 6:], ropekit.apply_rope(q[..., 6:], cos[:, None], sin[:, None], "paper"),
                               rtol=0, atol=0)


def test_absorbed_scores_equal_the_expanded_keys():
    """(W_UKᵀ q^C)·c + q^R·k^R = q·k with k expanded from the latent: the reason RoPE is decoupled."""
    torch.manual_seed(2)
    batch, seq, heads, nope, rope, v_dim, rank = 2, 6, 3, 5, 4, 7, 9
    latent = torch.randn(batch, seq, rank, dtype=torch.float64)
    w_kv_b = torch.randn(heads * (nope + v_dim), rank, dtype=torch.float64)
    q = torch.randn(batch, seq, heads, nope + rope, dtype=torch.float64)
    k_rope = torch.randn(batch, seq, 1, rope, dtype=torch.float64)
    cos, sin = ropekit.rope_cos_sin(seq, ropekit.rope_frequencies(rope)[0])
    k_nope, _ = mla.mla_expand_latent(latent, w_kv_b, heads, nope, v_dim)
    q_full, k_full = mla.decoupled_rope_qk(q, k_nope, k_rope, cos, sin)
    explicit = torch.einsum("bqhd,bkhd->bhqk", q_full, k_full)
    k_rope_rot = k_full[:, :, :1, nope:]
    torch.testing.assert_close(mla.mla_absorbed_scores(q_full, latent, k_rope_rot, w_kv_b, v_dim), explicit,
                               rtol=1e-10, atol=1e-10)


def test_cache_bytes_written_out():
    # DeepSeek-V3: kv_lora_rank 512, qk_rope_head_dim 64, 61 layers, bf16.
    assert mla.mla_cache_bytes_per_token(512, 64, 61, 2) == (512 + 64) * 61 * 2 == 70272
    # The same model with 128 heads of full keys (192) and values (128): 2·... per layer.
    assert mla.mha_cache_bytes_per_token(128, 192, 128, 61, 2) == 128 * (192 + 128) * 61 * 2
    assert mla.mha_cache_bytes_per_token(8, 128) == 8 * 256 * 2


@pytest.mark.parametrize(
    "shapes,match",
    [
        (((1, 5, 3, 10), (1, 5, 3, 6), (1, 5, 2, 4)), "k_rope must be the one shared head"),
        (((1, 5, 3, 10), (1, 5, 2, 6), (1, 5, 1, 4)), r"k_nope must have shape \(1, 5, 3"),
        (((1, 5, 3, 11), (1, 5, 3, 6), (1, 5, 1, 4)), "must be qk_nope_head_dim \\+ qk_rope_head_dim"),
        (((5, 3, 10), (1, 5, 3, 6), (1, 5, 1, 4)), "q must be a floating-point 4-D"),
    ],
)
def test_bad_arguments_are_named(shapes, match):
    q, k_nope, k_rope = (torch.randn(*s) for s in shapes)
    cos, sin = ropekit.rope_cos_sin(5, ropekit.rope_frequencies(4)[0])
    with pytest.raises(ValueError, match=match):
        mla.decoupled_rope_qk(q, k_nope, k_rope, cos, sin)
    with pytest.raises(ValueError, match="w_kv_b must have shape"):
        mla.mla_expand_latent(torch.randn(1, 5, 8), torch.randn(30, 7), 3, 6, 4)


def test_absorbed_scores_and_cache_sizes_name_bad_arguments():
    q, latent, k_rope = torch.randn(1, 4, 2, 9), torch.randn(1, 5, 6), torch.randn(1, 5, 1, 4)
    with pytest.raises(ValueError, match="w_kv_b must have shape"):
        mla.mla_absorbed_scores(q, latent, k_rope, torch.randn(20, 6), 3)  # needs 2·(5 + 3) = 16 rows
    with pytest.raises(ValueError, match="must share batch and seq_k"):
        mla.mla_absorbed_scores(q, latent[:, :4], k_rope, torch.randn(16, 6), 3)
    with pytest.raises(ValueError, match="k_rope"):
        mla.mla_absorbed_scores(q, latent, k_rope.expand(1, 5, 2, 4), torch.randn(16, 6), 3)
    with pytest.raises(ValueError, match="kv_lora_rank must be a positive integer"):
        mla.mla_cache_bytes_per_token(0, 64)
    with pytest.raises(ValueError, match="kv_heads must be a positive integer"):
        mla.mha_cache_bytes_per_token(2.5, 128)
