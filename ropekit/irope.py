"""Llama 4's iRoPE: interleaved RoPE and NoPE layers, and the query temperature of the NoPE layers.

Llama 4 (Meta, 2025) drops RoPE from every fourth layer. Three layers in four use RoPE
with attention restricted to chunks of 8192 tokens (local, position-aware); the fourth has
no position encoding at all (NoPE) and attends to the whole context (global). With the
Hugging Face config's ``no_rope_layer_interval = 4``, layer ℓ (from 0) uses RoPE unless
(ℓ + 1) is a multiple of 4: layers 3, 7, 11, ... are NoPE.

A NoPE layer's softmax flattens as the context grows: more keys share the same mass.
Llama 4 multiplies each query at position m by a temperature that grows with log m,
in steps of ``floor_scale`` tokens (the scalable-softmax idea of Nakanishi 2025,
arXiv:2501.19399):

    τ(m) = 1 + attn_scale · ln(1 + ⌊(m + 1) / floor_scale⌋)

so τ = 1 for the first floor_scale − 1 tokens, and with the defaults (attn_scale 0.1,
floor_scale 8192) about 1.28 at m = 131k and 1.51 at m = 1.2M. Lesson 08.
"""

from __future__ import annotations

import torch

from .checks import integer, real


def irope_rope_layers(n_layers: int, nope_interval: int = 4) -> list[bool]:
    """Which layers use RoPE: True for layer ℓ unless (ℓ + 1) % nope_interval == 0.

    The same list as transformers' ``Llama4TextConfig.no_rope_layers`` (1 = uses RoPE).

    Lesson 08.
    """
    n_layers, nope_interval = integer(n_layers, "n_layers", 1), integer(nope_interval, "nope_interval", 1)
    return [(layer + 1) % nope_interval != 0 for layer in range(n_layers)]


def irope_temperature(positions, floor_scale: int = 8192, attn_scale: float = 0.1) -> torch.Tensor:
    """τ(m) = 1 + attn_scale · ln(1 + ⌊(m + 1) / floor_scale⌋), in float32 as Llama 4 computes it.

    Args:
        positions: integer positions m of any shape (or an int n for ``arange(n)``).
        floor_scale: tokens per step of the floor (8192 in Llama 4).
        attn_scale: the slope (0.1 in Llama 4).

    Returns:
        float32 tensor of positions' shape. Lesson 08.
    """
    if isinstance(positions, int) and not isinstance(positions, bool):
        positions = torch.arange(positions)
    if not isinstance(positions, torch.Tensor) or positions.is_floating_point() or positions.dtype == torch.bool:
        raise ValueError(f"positions must be an integer tensor or an int, got {positions!r:.80}")
    floor_scale = integer(floor_scale, "floor_scale", 1)
    attn_scale = real(attn_scale, "attn_scale", at_least=0.0)
    steps = torch.floor((positions.float() + 1.0) / floor_scale)
    return torch.log1p(steps) * attn_scale + 1.0


def irope_scale_queries(q: torch.Tensor, positions, floor_scale: int = 8192, attn_scale: float = 0.1):
    """Multiply the queries of a NoPE layer by their temperature τ(m).

    Args:
        q: ``(batch, seq, heads, head_dim)``.
        positions: ``(seq,)`` or ``(batch, seq)`` integer positions (an int n: ``arange(n)``),
            e.g. ``arange(seq) + cached_tokens`` while decoding.

    Returns:
        A tensor of q's shape and dtype (the product is taken in float32). Lesson 08.
    """
    if not isinstance(q, torch.Tensor) or q.dim() != 4 or not q.is_floating_point():
        raise ValueError(f"q must be a floating-point (batch, seq, heads, head_dim) tensor, got {q!r:.80}")
    tau = irope_temperature(positions, floor_scale, attn_scale).to(q.device)
    if tau.shape not in ((q.shape[1],), (q.shape[0], q.shape[1]), (1, q.shape[1])):
        raise ValueError(f"positions must have shape (seq,) = ({q.shape[1]},) or (batch, seq), got {tuple(tau.shape)}")
    return (q * tau[..., None, None]).to(q.dtype)
