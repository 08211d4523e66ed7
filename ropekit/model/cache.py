"""The model's KV cache: per layer, the keys and values of every token seen so far.

What is stored depends on the position scheme (lesson 04 explains why):

* keys **rotated** at their positions, R_j k_j, for every scheme but ReRoPE (rope, pi,
  ntk, dynamic, yarn, llama3, nope). A decode step rotates only the new queries and keys
  (:func:`ropekit.rope_decode_step`).
* keys **unrotated**, k_j, for ReRoPE and Leaky ReRoPE: the one-product decode step of
  :func:`ropekit.rerope_decode_step`.

Dynamic NTK is the one scheme whose decode differs from a full forward: its frequencies
follow the length, so past the training length L each step rotates its new query and key
with a larger base than the cached keys had (as Hugging Face's and vLLM's caches do), while
a full forward rotates every token with the base of the final length. Up to L the two agree.

This is the model's whole caching logic, kept in one class so that a richer cache (a
decode module's) can replace it.
"""

from __future__ import annotations

import torch

from .schemes import PositionScheme


class KVCache:
    """Keys and values for a batch of sequences that all have the same length.

    Attributes:
        scheme: the PositionScheme every step of this cache uses.
        rotated: whether ``keys`` hold R_j k_j (True) or k_j (False).
        keys, values: one ``(batch, length, kv_heads, head_dim)`` tensor per layer.
        length: tokens cached so far (the position of the next token).

    Create it with ``TinyLlama.new_cache(scheme)`` and pass it to the model's forward:
    the forward appends each layer's new keys and values and then advances ``length``.
    Lesson 04 explains what each scheme caches.
    """

    def __init__(self, scheme: PositionScheme):
        self.scheme = scheme
        self.rotated = not scheme.is_rerope
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Add the new tokens' keys (rotated or not, as ``rotated`` says) and values of
        one layer; returns that layer's whole ``(keys, values)``, new tokens included."""
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        elif layer < len(self.keys):
            self.keys[layer] = torch.cat((self.keys[layer], k), dim=1)
            self.values[layer] = torch.cat((self.values[layer], v), dim=1)
        else:
            raise ValueError(f"layer {layer} appended before layer {len(self.keys)}")
        return self.keys[layer], self.values[layer]

    def advance(self, new: int):
        """Record that ``new`` tokens went through every layer."""
        self.length += new

    def __repr__(self):
        return f"KVCache(scheme={self.scheme!r}, rotated={self.rotated}, length={self.length}, layers={len(self.keys)})"
