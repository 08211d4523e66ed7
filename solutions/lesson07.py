"""Reference solutions for lesson 07 (decoding and the KV cache).

Each function answers one exercise of ``lessons/07_decoding_and_the_kv_cache.ipynb``; the
notebook's check cells run them when the stub is not filled in, so CI keeps them honest.
"""

import torch


def self_extend_distances(query, window, group):
    """Exercise 1: the distance Self-Extend scores key j at, for the query at ``query``:
    i − j inside the neighbour window (i − j < w), else (⌊i/G⌋ + w − ⌊w/G⌋) − ⌊j/G⌋."""
    j = torch.arange(query + 1)
    grouped = (query // group + window - window // group) - torch.div(j, group, rounding_mode="floor")
    return torch.where(query - j < window, query - j, grouped).to(torch.float64)


def rerope_key_rotations(store, position, window):
    """Exercise 2: key vectors a ReRoPE decode step at ``position`` rotates (one row, one kv
    head, one layer), storing the new key included.

    rotated: the new key once, then every far key j <= position − w turned back by −j;
    unrotated: the w keys inside the window; both: only the new key (into the rotated store)."""
    far = max(0, position + 1 - window)
    return {"rotated": 1 + far, "unrotated": min(window, position + 1), "both": 1}[store]
