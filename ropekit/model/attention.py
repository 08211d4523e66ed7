"""Attention of one layer under a position scheme, through ropekit's own functions.

Given unrotated q, k, v of the new tokens, :func:`attend` picks the library function the
scheme needs and nothing else: every rotation, frequency and ReRoPE merge is ropekit's
(``rope_attention``, ``rerope_attention``, ``rope_decode_step``, ``rerope_decode_step``,
``ropekit.attention.rotate`` for cached keys; ``kernels.apply_rope_qk`` and
``kernels.rerope_attention`` on the Triton path). Log-n query scaling multiplies q by
``ropekit.attention.log_n_scale`` (the model's training form, or the clamped test-time form
that ``rerope_attention`` also applies itself). Lesson 06.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..attention import log_n_scale, rerope_attention, rope_attention, rotate
from ..decode import rerope_decode_step, rope_decode_step
from .cache import KVCache
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

    Which library function runs: ``rope_attention`` (every scheme but ReRoPE, NoPE as θ = 0),
    ``rerope_attention`` (ReRoPE, Leaky ReRoPE), ``rope_decode_step`` and
    ``rerope_decode_step`` with a cache; with ``pos.kernels``, ``kernels.apply_rope_qk`` +
    SDPA and ``kernels.rerope_attention`` for the full forward.
    """
    scheme, new = pos.scheme, q.shape[1]
    positions = torch.arange(pos.offset, pos.offset + new, device=q.device)
    log_n_train_length = None
    if pos.log_n == "trained" or (pos.log_n == "test" and not scheme.is_rerope):
        scale = log_n_scale(positions, pos.train_length, clamp=pos.log_n == "test")
        q = q * scale.to(q.dtype)[:, None, None]
    elif pos.log_n == "test":
        log_n_train_length = pos.train_length  # rerope_attention applies max(1, log_L n) itself
    rerope_args = dict(leaky_factor=scheme.leaky_factor, log_n_train_length=log_n_train_length, layout=pos.layout)

    if cache is None:
        if scheme.is_rerope:
            if pos.kernels:
                from ..kernels import rerope_attention as fused_rerope

                return fused_rerope(q, k, v, pos.inv_freq, scheme.window, causal=True, **rerope_args)
            return rerope_attention(q, k, v, pos.inv_freq, scheme.window, causal=True, **rerope_args)
        if pos.kernels:
            from ..kernels import apply_rope_qk

            q, k = apply_rope_qk(q, k, layout=pos.layout, inv_freq=pos.inv_freq, attention_factor=pos.attention_factor)
            return _sdpa_causal(q, k, v)
        return rope_attention(q, k, v, pos.inv_freq, causal=True, attention_factor=pos.attention_factor, layout=pos.layout)

    if cache.rotated:  # keys join the cache rotated at their positions
        k_all, v_all = cache.append(layer, rotate(k, positions, pos.inv_freq, pos.layout, pos.attention_factor), v)
        return rope_decode_step(q, k_all, v_all, pos.offset, pos.inv_freq, pos.attention_factor, pos.layout)
    k_all, v_all = cache.append(layer, k, v)  # ReRoPE: unrotated
    if pos.offset == 0:  # a prefill from scratch is the full forward
        return rerope_attention(q, k, v, pos.inv_freq, scheme.window, causal=True, **rerope_args)
    outs = []
    for t in range(new):  # one query at a time against the unrotated keys before it
        end = pos.offset + t + 1
        q_t, k_t, v_t = q[:, t : t + 1], k_all[:, :end], v_all[:, :end]
        outs.append(rerope_decode_step(q_t, k_t, v_t, end - 1, pos.inv_freq, scheme.window, **rerope_args))
    return torch.cat(outs, dim=1)


def _sdpa_causal(q, k, v):
    """Causal softmax(q kᵀ/√d) v with torch's fused kernel; q, k already rotated."""
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
    return out.transpose(1, 2)
