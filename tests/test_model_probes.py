"""ropekit.model.probes: attention entropy and the measured long-term decay, against facts
that do not depend on the code under test (uniform attention, explicit rotation matrices,
the model's own attention output)."""

import math

import pytest
import torch

from ropekit.model import ModelConfig, PositionScheme, TinyLlama
from ropekit.model.probes import _rotated_qk, attention_entropy, measured_decay
from ropekit.reference import rotation_matrix

CONFIG = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=172, train_length=16)


def model_and_tokens(seed=0, seq=24, **config):
    torch.manual_seed(seed)
    model = TinyLlama(ModelConfig(**{**CONFIG.__dict__, **config})).eval()
    return model, torch.randint(0, 256, (2, seq))


def test_zero_queries_give_uniform_attention_whose_entropy_is_log_n():
    model, tokens = model_and_tokens()
    for block in model.blocks:
        block.attn.q_proj.weight.data.zero_()
    entropy = attention_entropy(model, tokens)
    expected = torch.log(torch.arange(1, tokens.shape[1] + 1, dtype=torch.float64))
    torch.testing.assert_close(entropy, expected.expand_as(entropy))


@pytest.mark.parametrize("scheme,log_n_trained", [
    (PositionScheme("rope"), False), (PositionScheme("ntk", factor=4, log_n=True), False),
    (PositionScheme("yarn", factor=2), False), (PositionScheme("rope"), True),
])
def test_rebuilt_attention_weights_reproduce_the_models_attention_output(scheme, log_n_trained):
    model, tokens = model_and_tokens(log_n_trained=log_n_trained)
    capture = []
    with torch.no_grad():
        model(tokens, scheme, capture=capture)
    seq = tokens.shape[1]
    for layer in capture:
        q, k = _rotated_qk(model, layer, scheme, seq)
        k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        logits = logits.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
        v = layer["v"].double().repeat_interleave(q.shape[2] // layer["v"].shape[2], dim=2)
        out = torch.einsum("bhqk,bkhd->bqhd", logits.softmax(-1), v)
        torch.testing.assert_close(out, layer["out"].double(), atol=1e-5, rtol=1e-4)


def test_entropy_rejects_rerope():
    model, tokens = model_and_tokens()
    with pytest.raises(ValueError, match="scheme"):
        attention_entropy(model, tokens, PositionScheme("rerope", window=4))


def test_measured_decay_matches_explicit_rotation_matrices():
    model, tokens = model_and_tokens(seq=6)
    capture = []
    with torch.no_grad():
        model(tokens, capture=capture)
    q, k = capture[1]["q"].double(), capture[1]["k"].double()
    k = k.repeat_interleave(2, dim=2)
    head_dim = CONFIG.dim // CONFIG.n_heads
    expected = []
    for r in range(5):
        R = rotation_matrix(r, head_dim, CONFIG.rope_base, layout="half").double()
        expected.append((q @ R.T * k).sum(-1).abs().mean())
    expected = torch.stack(expected)
    torch.testing.assert_close(measured_decay(model, tokens, 5, layer=1), expected / expected[0])
    with pytest.raises(ValueError, match="layer"):
        measured_decay(model, tokens, 5, layer=2)
