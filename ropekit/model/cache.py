"""The model's KV cache is :class:`ropekit.kv_cache.KVCache` (lesson 07): this module only
says which store each scheme uses by default, and keeps the old import path working.

* keys **rotated** at their positions, R_j k_j, for the frequency schemes (rope, pi, ntk,
  dynamic, yarn, llama3, nope) and for Self-Extend and sinks;
* keys **unrotated**, k_j, for ReRoPE and Leaky ReRoPE: the one-product decode step of
  the ReRoPE post; ``store="both"`` keeps both, and no key is ever rotated twice.

Dynamic NTK is the one scheme whose decode with a rotated cache differs from a full forward
past the training length L: each step rotates its new query and key with the base of the
current length while cached keys keep the base they were rotated with (as Hugging Face's and
vLLM's caches do); a full forward rotates every token with the final length's base. With
``store="unrotated"`` every key is rotated at every step with the current base, and decoding
equals the full forward again (at the price of rotating the whole cache).
"""

from __future__ import annotations

from ..kv_cache import STORES, KVCache
from .schemes import PositionScheme

__all__ = ["KVCache", "STORES", "default_store"]


def default_store(scheme: PositionScheme) -> str:
    """``"unrotated"`` for ReRoPE and Leaky ReRoPE, ``"rotated"`` for every other scheme."""
    return "unrotated" if scheme.is_rerope else "rotated"
