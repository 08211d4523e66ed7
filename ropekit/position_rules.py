"""Position rules that merge two RoPE score matrices: ReRoPE, Leaky ReRoPE, Self-Extend, sinks.

Several ways to run a RoPE model past its training length keep plain RoPE for near pairs
and give far pairs other positions. Each is one rule of the same shape: a pair (i, j) with
i − j < w is *near* and scored ⟨R_i q_i, R_j k_j⟩; a *far* pair is scored
⟨R_{a(i)} q_i, R_{b(j)} k_j⟩ = q_iᵀ R_{b(j) − a(i)} k_j, or not at all:

    rule         near        far query a(i)              far key b(j)    far pairs kept
    rope         every pair  —                           —               —
    rerope       i − j < w   w                           0               all   (Su 2023: q R_{−w} k)
    leaky        i − j < w   (i − w)/k + w               j/k             all   (slope 1/k)
    self_extend  i − j < w   ⌊i/G⌋ + w − ⌊w/G⌋           ⌊j/G⌋           all   (Jin et al. 2024, eq. 3-4)
    sinks        i − j < w   min(i, S + w − 1)           j               j < S (StreamingLLM, Xiao et al. 2024)

ReRoPE and Leaky ReRoPE give :func:`ropekit.rerope_attention`'s logits (a test checks
that). Self-Extend floor-divides positions by the group size G beyond its neighbour window
w. ``sinks`` is what a StreamingLLM cache of S sink tokens and the w most recent tokens
computes when the cache re-indexes its keys by their slot (the query sits at slot
min(i, S + w − 1), a sink at slot j, a recent key at distance i − j from the query);
with S = 0 it is a plain sliding window. :class:`ropekit.kv_cache.KVCache` decodes every
rule; :func:`rule_attention` is the full forward they are checked against. Lesson 07.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import attend, compute_dtype, rotate, scores
from .checks import check_inv_freq, check_layout, check_qkv

RULES = ("rope", "rerope", "leaky", "self_extend", "sinks")


@dataclass(frozen=True)
class PositionRule:
    """Which positions a (query, key) pair is scored at (see the module docstring).

    Args:
        kind: one of ``RULES``.
        window: w, the near window (neighbour window of Self-Extend, recent tokens of sinks).
        factor: k of ``leaky`` (> 1), the group size G of ``self_extend`` (an integer >= 1).
        sinks: S, the sink tokens kept at the start (``sinks`` only; 0 is a sliding window).
    """

    kind: str = "rope"
    window: int | None = None
    factor: float | None = None
    sinks: int = 0

    def __post_init__(self):
        if self.kind not in RULES:
            raise ValueError(f"kind must be one of {RULES}, got {self.kind!r}")
        if self.kind != "rope" and (isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1):
            raise ValueError(f"window must be a positive integer for rule {self.kind!r}, got {self.window!r}")
        if self.kind == "leaky" and not (isinstance(self.factor, (int, float)) and self.factor > 1):
            raise ValueError(f"factor must be a number > 1 (Leaky ReRoPE's k) for rule 'leaky', got {self.factor!r}")
        if self.kind == "self_extend" and not (isinstance(self.factor, int) and self.factor >= 1):
            raise ValueError(f"factor must be an integer >= 1 (the group size G) for rule 'self_extend', got {self.factor!r}")
        if not (isinstance(self.sinks, int) and self.sinks >= 0):
            raise ValueError(f"sinks must be a non-negative integer, got {self.sinks!r}")

    @property
    def has_far(self) -> bool:
        """True when far pairs get their own positions (every rule but plain RoPE)."""
        return self.kind != "rope"

    @property
    def far_keys_unrotated(self) -> bool:
        """True when b(j) = 0 for every key (ReRoPE): far keys are used as cached, unrotated."""
        return self.kind == "rerope"

    def near(self, i, j):
        """Boolean ``(..., n_i, n_j)``: which pairs are near (i − j < w), from positions i, j."""
        diff = i[..., :, None] - j[..., None, :]
        return torch.ones_like(diff, dtype=torch.bool) if self.kind == "rope" else diff < self.window

    def far_query(self, i):
        """a(i): the position a query is rotated to for its far keys."""
        w, i = self.window, i.to(torch.float64)
        if self.kind == "rerope":
            return torch.full_like(i, float(w))
        if self.kind == "leaky":
            return (i - w) / self.factor + w
        if self.kind == "self_extend":
            return torch.div(i, self.factor, rounding_mode="floor") + w - w // self.factor
        return i.clamp(max=self.sinks + w - 1)  # sinks

    def far_key(self, j):
        """b(j): the position a key is rotated to when it is far."""
        j = j.to(torch.float64)
        if self.kind == "rerope":
            return torch.zeros_like(j)
        if self.kind == "leaky":
            return j / self.factor
        if self.kind == "self_extend":
            return torch.div(j, self.factor, rounding_mode="floor")
        return j

    def far_kept(self, j):
        """Boolean like j: which keys may be attended when far (only the S sinks for ``sinks``)."""
        return j < self.sinks if self.kind == "sinks" else torch.ones_like(j, dtype=torch.bool)


def rule_attention(q, k, v, inv_freq, rule: PositionRule, attention_factor=1.0, layout="half"):
    """Causal attention of a whole sequence under a :class:`PositionRule` (the full forward).

        a_ij = ⟨R_i q_i, R_j k_j⟩ / √d               if i − j < w   (near)
        a_ij = ⟨R_{a(i)} q_i, R_{b(j)} k_j⟩ / √d     otherwise, for kept far keys (−∞ for the rest)

    Args:
        q: ``(batch, seq, heads, head_dim)``; k, v: ``(batch, seq, kv_heads, head_dim)``; not rotated,
            token t at position t.
        inv_freq: ``(rotary_dim // 2,)``; attention_factor, layout as in :func:`ropekit.rope_attention`.
        rule: the rule.

    Returns:
        ``(batch, seq, heads, head_dim)``. Lesson 07 (and the model's ``self_extend`` and
        ``sinks`` schemes).
    """
    check_qkv(q, k, v)
    check_layout(layout)
    check_inv_freq(inv_freq, q.shape[-1])
    if not isinstance(rule, PositionRule):
        raise TypeError(f"rule must be a PositionRule, got {type(rule).__name__}")
    compute = compute_dtype(q)
    q, k = q.to(compute), k.to(compute)
    seq, device = q.shape[1], q.device
    pos = torch.arange(seq, device=device)
    logits = scores(rotate(q, pos, inv_freq, layout, attention_factor), rotate(k, pos, inv_freq, layout, attention_factor))
    keep = pos[None, :] <= pos[:, None]
    if rule.has_far:
        far = scores(rotate(q, rule.far_query(pos), inv_freq, layout, attention_factor),
                     rotate(k, rule.far_key(pos), inv_freq, layout, attention_factor))
        near = rule.near(pos, pos)
        logits = torch.where(near, logits, far)
        keep = keep & (near | rule.far_kept(pos)[None, :])
    return attend(logits.masked_fill(~keep, float("-inf")), v, causal=False)


def scored_distances(rule: PositionRule, query: int) -> torch.Tensor:
    """The distance each key is scored at by the query at position ``query``: i − j for near
    keys, a(i) − b(j) for far ones, NaN for keys the rule drops (a sliding window's evicted).

    Returns a float64 ``(query + 1,)`` tensor over keys j = 0 .. query: what lesson 07's
    picture of a long generation draws.
    """
    i = torch.tensor([query])
    j = torch.arange(query + 1)
    near = rule.near(i, j)[0]
    distance = (i - j).to(torch.float64)
    if not rule.has_far:
        return distance
    far = rule.far_query(i) - rule.far_key(j)
    out = torch.where(near, distance, far)
    return out.masked_fill(~near & ~rule.far_kept(j), float("nan"))
