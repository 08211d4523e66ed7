"""iRoPE (ropekit.irope) against transformers' Llama 4 attention and the formula."""

import inspect
import math

import pytest
import torch

from ropekit import irope


def test_rope_layers_match_llama4_config():
    transformers = pytest.importorskip("transformers")
    for n_layers, interval in [(8, 4), (48, 4), (6, 3)]:
        config = transformers.Llama4TextConfig(num_hidden_layers=n_layers, no_rope_layer_interval=interval)
        assert irope.irope_rope_layers(n_layers, interval) == [bool(u) for u in config.no_rope_layers]
    assert irope.irope_rope_layers(8) == [True, True, True, False, True, True, True, False]


def test_temperature_written_from_the_formula():
    """τ(m) = 1 + 0.1·ln(1 + ⌊(m + 1)/8192⌋), checked in float64 at the step edges."""
    m = torch.tensor([0, 8190, 8191, 16383, 131071, 1_000_000])
    expected = [1 + 0.1 * math.log(1 + (x + 1) // 8192) for x in m.tolist()]
    torch.testing.assert_close(irope.irope_temperature(m).double(), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-6, atol=0)
    assert irope.irope_temperature(m)[:2].tolist() == [1.0, 1.0]  # no change inside the first step
    assert irope.irope_temperature(m)[2].item() > 1.0


@pytest.mark.parametrize("past", [0, 5])
def test_nope_layer_matches_llama4_attention(past):
    """A NoPE layer of transformers' Llama4TextAttention, rebuilt from its weights with
    irope_scale_queries and plain softmax attention in float64."""
    llama4 = pytest.importorskip("transformers.models.llama4.modeling_llama4")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    heads, kv_heads, head_dim, floor_scale, attn_scale = 4, 2, 8, 3, 0.5
    config = transformers.Llama4TextConfig(
        hidden_size=32, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
        num_hidden_layers=4, floor_scale=floor_scale, attn_scale=attn_scale, attn_temperature_tuning=True,
    )
    config._attn_implementation = "eager"
    layer = llama4.Llama4TextAttention(config, layer_idx=3).double()
    assert not layer.use_rope
    batch, seq = 2, 9
    hidden = torch.randn(batch, seq, 32, dtype=torch.float64)

    class Cache:  # what the layer asks of a cache: how many tokens came before
        def get_seq_length(self, layer_idx):
            return past

        def update(self, k, v, layer_idx, **kwargs):
            return k, v

    # transformers 5.2x calls the argument `cache`, earlier versions `past_key_values`
    cache_name = "cache" if "cache" in inspect.signature(layer.forward).parameters else "past_key_values"
    theirs, _ = layer(hidden, position_embeddings=None, attention_mask=None, **{cache_name: Cache() if past else None})

    q = layer.q_proj(hidden).view(batch, seq, heads, head_dim)
    k = layer.k_proj(hidden).view(batch, seq, kv_heads, head_dim).repeat_interleave(heads // kv_heads, dim=2)
    v = layer.v_proj(hidden).view(batch, seq, kv_heads, head_dim).repeat_interleave(heads // kv_heads, dim=2)
    q = irope.irope_scale_queries(q, torch.arange(seq) + past, floor_scale, attn_scale)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(batch, seq, -1)
    torch.testing.assert_close(layer.o_proj(out), theirs, rtol=1e-10, atol=1e-10)
    # The temperature did something: without it the output differs.
    plain = torch.einsum("bqhd,bkhd->bhqk", layer.q_proj(hidden).view(batch, seq, heads, head_dim), k)
    assert not torch.allclose(plain, scores * math.sqrt(head_dim))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: irope.irope_rope_layers(0), "n_layers must be a positive integer"),
        (lambda: irope.irope_rope_layers(4, nope_interval=0), "nope_interval must be a positive integer"),
        (lambda: irope.irope_temperature(torch.tensor([0.5])), "positions must be an integer tensor"),
        (lambda: irope.irope_temperature(4, floor_scale=0), "floor_scale must be a positive integer"),
        (lambda: irope.irope_temperature(4, attn_scale=-1.0), "attn_scale must be a finite number >= 0"),
        (lambda: irope.irope_scale_queries(torch.ones(2, 3, 4), 3), r"q must be a floating-point \(batch"),
        (lambda: irope.irope_scale_queries(torch.ones(1, 3, 2, 4), 4), r"positions must have shape \(seq,\)"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
