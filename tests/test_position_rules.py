"""Tests for ropekit.position_rules against independent references: ReRoPE and Leaky ReRoPE
against ``rerope_attention``, Self-Extend against explicit float64 rotation matrices (Jin et
al. 2024's grouped positions), sinks against a naive StreamingLLM simulation (keep, re-number,
attend)."""

import math

import pytest
import torch

from ropekit import rerope_attention, rope_frequencies
from ropekit.position_rules import PositionRule, rule_attention
from test_kv_cache import explicit_rotation, qkv


@pytest.mark.parametrize("leaky_factor", [None, 3.0])
def test_rerope_rules_give_rerope_attention(leaky_factor):
    q, k, v = qkv()
    inv_freq = rope_frequencies(8, 10000.0)[0]
    rule = PositionRule("leaky", 5, leaky_factor) if leaky_factor else PositionRule("rerope", 5)
    expected = rerope_attention(q, k, v, inv_freq, 5, causal=True, leaky_factor=leaky_factor)
    torch.testing.assert_close(rule_attention(q, k, v, inv_freq, rule), expected, rtol=1e-6, atol=1e-6)


def test_self_extend_uses_floor_divided_positions_beyond_the_neighbour_window():
    """Jin et al. 2024: neighbours at i − j, grouped pairs at (⌊i/G⌋ + w − ⌊w/G⌋) − ⌊j/G⌋."""
    q, k, v = qkv(seq=14, heads=1)
    inv_freq, w, group = rope_frequencies(8, 10000.0)[0], 4, 3
    out = rule_attention(q, k, v, inv_freq, PositionRule("self_extend", w, group))
    for i in range(14):
        logits = []
        for j in range(i + 1):
            distance = i - j if i - j < w else (i // group + w - w // group) - j // group
            logits.append(q[0, i, 0] @ explicit_rotation(-distance, inv_freq) @ k[0, j, 0] / math.sqrt(8))
        torch.testing.assert_close(out[0, i, 0], torch.stack(logits).softmax(0) @ v[0, : i + 1, 0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sinks", [0, 2])
def test_sinks_rule_is_streaming_llm_keep_renumber_attend(sinks):
    """Naive StreamingLLM: for each query keep sinks + the last w keys, number them 0, 1, ...
    in the cache, rotate by those numbers, attend."""
    q, k, v = qkv(seq=18, heads=1)
    inv_freq, w = rope_frequencies(8, 10000.0)[0], 5
    out = rule_attention(q, k, v, inv_freq, PositionRule("sinks", w, sinks=sinks))
    for i in range(18):
        kept = [j for j in range(i + 1) if j < sinks or i - j < w]
        slot_of_query = len(kept) - 1
        logits = torch.stack([
            (explicit_rotation(slot_of_query, inv_freq) @ q[0, i, 0]) @ (explicit_rotation(s, inv_freq) @ k[0, j, 0])
            for s, j in enumerate(kept)]) / math.sqrt(8)
        torch.testing.assert_close(out[0, i, 0], logits.softmax(0) @ v[0, kept, 0], rtol=1e-6, atol=1e-6)


def test_a_rule_refuses_what_it_cannot_use():
    with pytest.raises(ValueError, match="factor must be a number > 1"):
        PositionRule("leaky", 4, 1.0)
    with pytest.raises(TypeError, match="rule must be a PositionRule"):
        q, k, v = qkv(seq=4)
        rule_attention(q, k, v, rope_frequencies(8, 10000.0)[0], "rerope")
