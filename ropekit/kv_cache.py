"""The KV cache: what a RoPE decoder stores, and one decode step over it for every position rule.

A decoder keeps each token's key and value and, at every step, attends from the new
queries to all of them. RoPE lets the keys be cached at all: ⟨R_i q, R_j k⟩ depends on
i − j alone, so R_j k_j, computed once when token j arrives, serves every later query.
What the cache stores is a choice (lesson 07 measures it):

* ``store="rotated"``: R_j k_j. One rotation per new key, none afterwards: plain RoPE and
  its frequency schedules. Rules that score far pairs at other positions (ReRoPE) must turn
  every far key back, R_{b(j) − j} R_j k_j, at every step (the angle-difference identity).
* ``store="unrotated"``: k_j. Free for ReRoPE's far keys (b(j) = 0: one product with R_w q),
  but the near keys, and every key of plain RoPE, are rotated at every step.
* ``store="both"``: R_j k_j and R_{b(j)} k_j (k_j itself for ReRoPE): no key is ever
  rotated twice, at twice the memory.

Rows of a batch may hold different numbers of tokens: every slot has a position and a
validity flag per row, padding slots are never attended. :meth:`KVCache.evict` drops slots
and :meth:`KVCache.reindex` gives the kept keys new positions (StreamingLLM's sinks: a key's
position is its slot); rotated keys are then re-rotated by the difference of angles,
R_{p'} k = R_{p' − p} (R_p k), unrotated keys need nothing. Every step records its work
(``KVCache.work``: vectors rotated, logits formed) so that the stores can be compared.

Tensors are ``(batch, seq, heads, head_dim)``. :func:`rope_decode_step` and
:func:`rotate_as_if_first` live in :mod:`ropekit.decode` and are re-exported here.
"""

from __future__ import annotations

import torch

from .attention import attend, compute_dtype, rotate, scores
from .decode import rope_decode_step, rotate_as_if_first
from .position_rules import PositionRule

STORES = ("rotated", "unrotated", "both")

__all__ = ["KVCache", "STORES", "rope_decode_step", "rotate_as_if_first"]


class KVCache:
    """Keys and values of a batch of sequences, possibly of different lengths, for every layer.

    Args:
        store: ``"rotated"``, ``"unrotated"`` or ``"both"`` (module docstring).
        rule: the :class:`ropekit.position_rules.PositionRule` every step scores with
            (default plain RoPE). A ``sinks`` rule is decoded as plain RoPE over slot positions
            after :meth:`keep_sinks_and_recent`.
        scheme: free for the owner (``ropekit.model`` keeps its PositionScheme here).

    Attributes:
        positions: ``(batch, slots)`` position of each slot's key; valid: ``(batch, slots)`` bool.
        seen: ``(batch,)`` tokens appended so far per row (the next token's position).
        work: counts since :meth:`reset_work`: ``key_rotations``, ``query_rotations``
            (vectors of head_dim rotated, summed over heads, rows and layers) and ``logits``.

    Per step: :meth:`start` (registers the new tokens' slots, returns their positions), then
    :meth:`attend` once per layer, then :meth:`finish`. Lesson 07.
    """

    def __init__(self, store: str = "rotated", rule: PositionRule | None = None, scheme=None):
        if store not in STORES:
            raise ValueError(f"store must be one of {STORES}, got {store!r}")
        rule = PositionRule() if rule is None else rule
        if not isinstance(rule, PositionRule):
            raise TypeError(f"rule must be a PositionRule or None, got {type(rule).__name__}")
        self.store, self.rule, self.scheme = store, rule, scheme
        self.layers: list[dict] = []
        self.positions = self.valid = self.seen = None
        self.work = dict(key_rotations=0, query_rotations=0, logits=0)
        self.rotation = None  # (inv_freq, attention_factor, layout) of the last append
        self._new = None  # the current step's (query positions, valid) while it runs

    # --- what is stored ------------------------------------------------------------

    @property
    def rotated(self) -> bool:
        """Whether R_j k_j is stored (``rotated`` or ``both``)."""
        return self.store != "unrotated"

    @property
    def length(self) -> int:
        """The most tokens any row has seen (the position of the next token when rows are equal)."""
        return 0 if self.seen is None else int(self.seen.max())

    @property
    def slots(self) -> int:
        return 0 if self.positions is None else self.positions.shape[1]

    def nbytes(self) -> int:
        """Bytes of every stored key and value tensor (positions and flags not counted)."""
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer.values())

    # --- one step ----------------------------------------------------------------------

    def start(self, batch: int, new: int, lengths=None, device="cpu"):
        """Register ``new`` tokens per row (the first ``lengths[b]`` of them real, the rest padding).

        Returns ``(batch, new)`` positions of the new queries: seen[b] + t, or, for a sinks
        rule with a non-empty cache, the slot each one lands in.
        """
        if self.seen is None:
            self.seen = torch.zeros(batch, dtype=torch.long, device=device)
            self.positions = torch.zeros(batch, 0, dtype=torch.long, device=device)
            self.valid = torch.zeros(batch, 0, dtype=torch.bool, device=device)
        if batch != self.seen.shape[0]:
            raise ValueError(f"tokens must have the cache's batch size {self.seen.shape[0]}, got {batch}")
        arange = torch.arange(new, device=device)
        if lengths is None:
            valid = torch.ones(batch, new, dtype=torch.bool, device=device)
        else:
            lengths = torch.as_tensor(lengths, device=device)
            if lengths.shape != (batch,) or bool((lengths < 1).any()) or bool((lengths > new).any()):
                raise ValueError(f"lengths must be a (batch,) = ({batch},) tensor of values in 1 .. {new}, got {lengths!r}")
            valid = arange[None, :] < lengths[:, None]
        first = self.valid.sum(1) if self.rule.kind == "sinks" else self.seen
        if self.rule.kind == "sinks" and self.slots and new > 1:
            raise ValueError("a sinks cache decodes one token at a time once it holds tokens")
        queries = first[:, None] + arange[None, :]
        self.positions = torch.cat((self.positions, queries), dim=1)
        self.valid = torch.cat((self.valid, valid), dim=1)
        self.seen = self.seen + valid.sum(1)
        self._new = (queries, valid)
        return queries

    def append(self, layer: int, k, v, inv_freq, attention_factor=1.0, layout="half"):
        """Store one layer's new keys (as ``store`` says) and values at the registered positions."""
        if self._new is None:
            raise RuntimeError("call start() before append()")
        positions, valid = self._new
        self.rotation = (inv_freq, attention_factor, layout)
        if not bool(valid.all()):  # padding: zeros, so that a weight of 0 never meets a NaN
            k, v = k.masked_fill(~valid[..., None, None], 0), v.masked_fill(~valid[..., None, None], 0)
        stored = {"values": v}
        if self.store != "unrotated":
            stored["rotated"] = rotate(k, positions, inv_freq, layout, attention_factor)
            self.work["key_rotations"] += k.shape[0] * k.shape[1] * k.shape[2]
        if self.store == "unrotated" or (self.store == "both" and self.rule.far_keys_unrotated):
            stored["unrotated"] = k
        elif self.store == "both" and self.rule.has_far:
            stored["far"] = rotate(k, self.rule.far_key(positions), inv_freq, layout, attention_factor)
            self.work["key_rotations"] += k.shape[0] * k.shape[1] * k.shape[2]
        if layer == len(self.layers):
            self.layers.append(stored)
        elif layer < len(self.layers):
            for name, tensor in stored.items():
                self.layers[layer][name] = torch.cat((self.layers[layer][name], tensor), dim=1)
        else:
            raise ValueError(f"layer {layer} appended before layer {len(self.layers)}")
        return self.layers[layer]

    def attend(self, layer: int, q, k, v, inv_freq, attention_factor=1.0, layout="half"):
        """Append this layer's new k, v, then attend from the new queries q to the whole cache.

        q: ``(batch, new, heads, head_dim)``, k, v: ``(batch, new, kv_heads, head_dim)``, none
        rotated. Returns ``(batch, new, heads, head_dim)``: a_ij as in
        :func:`ropekit.position_rules.rule_attention`, over the valid slots with position <= i.
        """
        stored = self.append(layer, k, v, inv_freq, attention_factor, layout)
        rule = self.rule  # over slot positions a sinks rule is plain RoPE: the query sits at the last slot
        i, p = self._new[0], self.positions
        compute = compute_dtype(q)
        q = q.to(compute)
        batch, new, heads = q.shape[:3]
        keep = self.valid[:, None, :] & (p[:, None, :] <= i[:, :, None])  # (batch, new, slots)
        near = rule.near(i, p) & keep
        logits = torch.full((batch, heads, new, self.slots), float("-inf"), dtype=compute, device=q.device)
        rot = lambda x, at: rotate(x.to(compute), at, inv_freq, layout, attention_factor)  # noqa: E731
        cols = near.any(dim=(0, 1)).nonzero().flatten()  # slots some query sees as near
        if "rotated" in stored:
            keys = stored["rotated"][:, cols].to(compute)
        else:
            keys = rot(stored["unrotated"][:, cols], p[:, cols])
            self._count("key_rotations", keys)
        self._count("query_rotations", q)
        logits[..., cols] = scores(rot(q, i), keys)
        self.work["logits"] += batch * heads * new * len(cols)
        if rule.has_far:
            far = ~rule.near(i, p) & keep & rule.far_kept(p)[:, None, :]
            cols = far.any(dim=(0, 1)).nonzero().flatten()
            if "far" in stored:
                keys = stored["far"][:, cols].to(compute)
            elif "unrotated" in stored and rule.far_keys_unrotated:
                keys = stored["unrotated"][:, cols].to(compute)
            elif "unrotated" in stored:
                keys = rot(stored["unrotated"][:, cols], rule.far_key(p[:, cols]))
                self._count("key_rotations", keys)
            else:  # R_{b(j)} k = R_{b(j) − j} (R_j k): every far key turned, every step
                turn = rule.far_key(p[:, cols]) - p[:, cols]
                keys = rotate(stored["rotated"][:, cols].to(compute), turn, inv_freq, layout)  # its factor is in already
                self._count("key_rotations", keys)
            self._count("query_rotations", q)
            far_logits = scores(rot(q, rule.far_query(i)), keys)
            self.work["logits"] += batch * heads * new * len(cols)
            logits[..., cols] = torch.where(far[:, None, :, cols], far_logits, logits[..., cols])
            keep = near | far
        else:
            keep = near
        out = attend(logits.masked_fill(~keep[:, None], float("-inf")), stored["values"], causal=False)
        return out.masked_fill(~keep.any(-1)[..., None, None], 0)  # a padding query may see no key: 0, not NaN

    def finish(self):
        """End the step; a sinks rule then keeps its sinks and recent tokens (re-indexed)."""
        self._new = None
        if self.rule.kind == "sinks":
            self.keep_sinks_and_recent(self.rule.sinks, self.rule.window - 1)

    def _count(self, what, x):
        self.work[what] += x.shape[0] * x.shape[1] * x.shape[2]

    def reset_work(self):
        self.work = dict.fromkeys(self.work, 0)

    # --- eviction and re-indexing ---------------------------------------------------------

    def evict(self, keep):
        """Keep only the slots where ``keep`` (``(batch, slots)`` bool) is True.

        Rows may keep different numbers of slots: the freed ones become padding, and slots
        that no row keeps are dropped from every layer.
        """
        keep = torch.as_tensor(keep, dtype=torch.bool, device=self.valid.device)
        if keep.shape != self.valid.shape:
            raise ValueError(f"keep must have shape (batch, slots) = {tuple(self.valid.shape)}, got {tuple(keep.shape)}")
        self.valid = self.valid & keep
        used = self.valid.any(0)
        self.positions, self.valid = self.positions[:, used], self.valid[:, used]
        for stored in self.layers:
            for name in stored:
                stored[name] = stored[name][:, used]

    def reindex(self, positions, inv_freq=None, layout="half"):
        """Give every slot a new position ``(batch, slots)``.

        Rotated keys are re-rotated by the difference, R_{p'} k = R_{p' − p}(R_p k) (the
        angle-difference identities cos(a − b), sin(a − b)); pass the ``inv_freq`` they were
        rotated with. Unrotated keys only change their label. A ``far`` store (Leaky ReRoPE,
        Self-Extend) is rebuilt the same way.
        """
        positions = torch.as_tensor(positions, device=self.positions.device)
        if positions.shape != self.positions.shape:
            raise ValueError(f"positions must have shape {tuple(self.positions.shape)}, got {tuple(positions.shape)}")
        delta = positions - self.positions
        if self.rotated and bool(delta.any()):
            if inv_freq is None:
                raise ValueError("inv_freq is needed to re-rotate a rotated cache")
            moved = delta.ne(0).any(0).nonzero().flatten()
            for stored in self.layers:
                keys = stored["rotated"]
                turned = rotate(keys[:, moved], delta[:, moved], inv_freq, layout)
                stored["rotated"] = keys.index_copy(1, moved, turned.to(keys.dtype))
                self._count("key_rotations", turned)
                if "far" in stored:
                    far_delta = self.rule.far_key(positions[:, moved]) - self.rule.far_key(self.positions[:, moved])
                    stored["far"] = stored["far"].index_copy(1, moved, rotate(stored["far"][:, moved], far_delta, inv_freq, layout))
        self.positions = positions

    def keep_sinks_and_recent(self, sinks: int, recent: int):
        """StreamingLLM's eviction: per row, keep the first ``sinks`` tokens and the last
        ``recent`` ones; then a key's position is its slot among the kept ones (re-indexed,
        rotated keys turned with the frequencies of the last append)."""
        rank = self.valid.cumsum(1) - 1
        count = self.valid.sum(1, keepdim=True)
        keep = self.valid & ((rank < sinks) | (rank >= count - recent))
        self.evict(keep)
        new_positions = torch.where(self.valid, self.valid.cumsum(1) - 1, self.positions)
        inv_freq, _, layout = self.rotation
        self.reindex(new_positions, inv_freq, layout=layout)

    def __repr__(self):
        return (f"KVCache(store={self.store!r}, rule={self.rule.kind!r}, rows={0 if self.seen is None else len(self.seen)}, "
                f"slots={self.slots}, layers={len(self.layers)})")
