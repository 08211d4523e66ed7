"""Attention of one layer under a position scheme, through ropekit's own functions.

Given unrotated q, k, v of the new tokens, :func:`attend` picks the library function the
scheme needs and nothing else: every rotation, frequency and ReRoPE merge is ropekit's
(``rope_attention``, ``rerope_attention``, ``position_rules.rule_attention`` for
Self-Extend and sinks; ``kernels.apply_rope_qk`` and ``kernels.rerope_attention`` on the
Triton path). With a cache, every scheme decodes through ``ropekit.kv_cache.KVCache.attend``
(lesson 07). Log-n query scaling multiplies q by
``ropekit.attention.log_n_scale`` (the model's training form, or the clamped test-time form
that ``rerope_attention`` also applies itself). Lesson 06.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..attention import log_n_scale, rerope_attention, rope_attention
from ..kv_cache import KVCache
from ..position_rules import rule_attention
from .schemes import PositionScheme


@dataclass
class Positions:
    """What one forward call needs to know about positions, resolved once for all layers.

    inv_freq and attention_factor come from the scheme for ``offset + new`` tokens
    (only dynamic NTK cares about the length); ``log_n`` is ``"trained"``, ``"test"`` or None.
    """

    scheme: PositionScheme
    inv_freq: torch.Tensor
    attention_factor: float
    layout: str
    train_length: int
    log_n: str | None
    offset: int
    kernels: bool
    query_positions: torch.Tensor | None = None  # (batch, new) with a cache


def attend(q, k, v, pos: Positions, layer: int = 0, cache: KVCache | None = None):
    """Causal GQA attention of new tokens under ``pos.scheme``, through ropekit's functions.

    Args:
        q: ``(batch, new, heads, head_dim)``; k, v: ``(batch, new, kv_heads, head_dim)``;
            none rotated. The new tokens sit at positions offset .. offset + new − 1.
        pos: the resolved scheme (see :class:`Positions`).
        layer, cache: with a cache, the new keys and values join it and the queries attend
            to every cached token; without one, offset is 0 and this is the full forward.

    Returns:
        ``(batch, new, heads, head_dim)``.

    Which library function runs: ``rope_attention`` (the frequency schemes, NoPE as θ = 0),
    ``rerope_attention`` (ReRoPE, Leaky ReRoPE), ``rule_attention`` (Self-Extend, sinks),
    ``KVCache.attend`` with a cache; with ``pos.kernels``, ``kernels.apply_rope_qk`` +
    SDPA and ``kernels.rerope_attention`` for the full forward.
    """
    scheme, new = pos.scheme, q.shape[1]
    if cache is not None:
        return _cached(q, k, v, pos, layer, cache)
    positions = torch.arange(new, device=q.device)
    log_n_train_length = None
    if pos.log_n == "trained" or (pos.log_n == "test" and not scheme.is_rerope):
        scale = log_n_scale(positions, pos.train_length, clamp=pos.log_n == "test")
        q = q * scale.to(q.dtype)[:, None, None]
    elif pos.log_n == "test":
        log_n_train_length = pos.train_length  # rerope_attention applies max(1, log_L n) itself
    rerope_args = dict(leaky_factor=scheme.leaky_factor, log_n_train_length=log_n_train_length, layout=pos.layout)
    if scheme.is_rerope:
        if pos.kernels:
            from ..kernels import rerope_attention as fused_rerope

            return fused_rerope(q, k, v, pos.inv_freq, scheme.window, causal=True, **rerope_args)
        return rerope_attention(q, k, v, pos.inv_freq, scheme.window, causal=True, **rerope_args)
    if scheme.rule.has_far:  # Self-Extend, attention sinks
        return rule_attention(q, k, v, pos.inv_freq, scheme.rule, pos.attention_factor, pos.layout)
    if pos.kernels:
        from ..kernels import apply_rope_qk

        q, k = apply_rope_qk(q, k, layout=pos.layout, inv_freq=pos.inv_freq, attention_factor=pos.attention_factor)
        return _sdpa_causal(q, k, v)
    return rope_attention(q, k, v, pos.inv_freq, causal=True, attention_factor=pos.attention_factor, layout=pos.layout)


def _cached(q, k, v, pos: Positions, layer: int, cache: KVCache):
    """A step through the cache: every scheme's decode is ``KVCache.attend`` with its rule."""
    if pos.log_n is not None:
        scale = log_n_scale(pos.query_positions, pos.train_length, clamp=pos.log_n == "test")
        q = q * scale.to(q.dtype)[..., None, None]
    return cache.attend(layer, q, k, v, pos.inv_freq, pos.attention_factor, pos.layout)


def _sdpa_causal(q, k, v):
    """Causal softmax(q kᵀ/√d) v with torch's fused kernel; q, k already rotated."""
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
    return out.transpose(1, 2)
