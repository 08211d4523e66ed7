"""Measurements inside a trained TinyLlama: attention entropy per head and RoFormer's
long-term decay on the model's own queries and keys (lesson 06).

Both start from ``model(tokens, scheme, capture=...)``, which hands back every layer's
unrotated q and k, and rebuild the attention logits with ropekit's own pieces
(``ropekit.attention.rotate``, ``scores``, ``log_n_scale``), so what is measured is what
the model computed, not a re-implementation of it.
"""

from __future__ import annotations

import torch

from ..attention import log_n_scale, rotate, scores
from .schemes import as_scheme

__all__ = ["attention_entropy", "measured_decay"]


def _captured(model, tokens, scheme):
    capture = []
    with torch.no_grad():
        model(tokens, scheme, capture=capture)
    return capture


def _rotated_qk(model, layer_capture, scheme, seq):
    """q, k of one layer rotated as the model's attention rotates them (log-n included)."""
    pos = model.positions(scheme, 0, seq, layer_capture["q"].device)
    positions = torch.arange(seq, device=layer_capture["q"].device)
    q = layer_capture["q"].double()
    if pos.log_n is not None:
        q = q * log_n_scale(positions, pos.train_length, clamp=pos.log_n == "test")[:, None, None]
    inv_freq = pos.inv_freq.double()
    q = rotate(q, positions, inv_freq, pos.layout, pos.attention_factor)
    k = rotate(layer_capture["k"].double(), positions, inv_freq, pos.layout, pos.attention_factor)
    return q, k


@torch.no_grad()
def attention_entropy(model, tokens, scheme=None):
    """Entropy (nats) of every head's attention distribution at every query position.

    H(i) = −Σ_{j ≤ i} p_ij log p_ij with p_i = softmax_j(a_ij) the causal attention of query
    i, rebuilt from the captured q, k exactly as the model's attention forms its logits
    (the scheme's frequencies and attention factor, and log-n scaling: the test-time form
    max(1, log_L n) or, for a model trained with it, log_L n). A uniform distribution over
    i + 1 keys has entropy log(i + 1): Su's argument for log-n (kexue.fm/archives/8823) is that
    entropy grows with the context unless the logits are scaled by log n.

    Args:
        model: a ``ropekit.model.TinyLlama``.
        tokens: ``(batch, seq)`` token ids.
        scheme: a rotation scheme (rope, pi, ntk, yarn, llama3, nope; optional log-n);
            ReRoPE merges two logit matrices and is not measured here.

    Returns:
        float64 ``(layers, heads, seq)``, the mean over the batch. Lesson 06.
    """
    scheme = as_scheme(scheme)
    if scheme.is_rerope or scheme.depends_on_length:
        raise ValueError(
            f"scheme must rotate q and k once per position (not ReRoPE or dynamic NTK), got {scheme.name!r}"
        )
    seq = tokens.shape[1]
    out = []
    for layer in _captured(model, tokens, scheme):
        q, k = _rotated_qk(model, layer, scheme, seq)
        logits = scores(q, k)
        future = torch.ones(seq, seq, dtype=torch.bool).triu(1)
        logp = logits.masked_fill(future, float("-inf")).log_softmax(dim=-1)
        entropy = -(logp.exp() * logp.masked_fill(future, 0.0)).sum(-1)  # (batch, heads, seq)
        out.append(entropy.mean(0))
    return torch.stack(out)


@torch.no_grad()
def measured_decay(model, tokens, max_distance: int, layer: int = 0):
    """RoFormer's long-term decay (§3.4.3) measured on one layer's real queries and keys.

    For every token t and head h, the model's own unrotated q_t and k_t (the key head that
    serves query head h) are set r positions apart and scored: |⟨R_r q_t, k_t⟩| / √head_dim,
    i.e. RoFormer's setting of a fixed pair whose distance grows. The mean over tokens and
    heads, divided by its value at r = 0, is what ``ropekit.reference.rope_decay_bound``
    bounds for random vectors (lesson 03).

    Args:
        model: a ``ropekit.model.TinyLlama`` (plain RoPE frequencies are used).
        tokens: ``(batch, seq)``.
        max_distance: distances r = 0 .. max_distance − 1.
        layer: which layer's q, k.

    Returns:
        float64 ``(max_distance,)``, 1 at r = 0. Lesson 06.
    """
    capture = _captured(model, tokens, None)
    if not 0 <= layer < len(capture):
        raise ValueError(f"layer must be in [0, {len(capture)}), got {layer!r}")
    q, k = capture[layer]["q"].double(), capture[layer]["k"].double()
    k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    c = model.config
    inv_freq, _ = as_scheme(None).frequencies(c.rotary_dim, c.rope_base, c.train_length, tokens.shape[1])
    inv_freq = inv_freq.double()
    values = []
    for r in range(max_distance):
        shifted = rotate(q, torch.full((q.shape[1],), r), inv_freq, c.layout)
        values.append((shifted * k).sum(-1).abs().mean() / c.head_dim**0.5)
    decay = torch.stack(values)
    return decay / decay[0]
