"""Tests for ropekit.kv_cache and ropekit.position_rules, and the decode harness of ropekit.model.

The harness: prefill + token-by-token decode through the cache equals the full forward of
each row alone, for every scheme, every store, a batch of three prompts of different
lengths, past the training length; the work and bytes of each store; eviction, re-indexing
and memory keys. The rules themselves are tested in tests/test_position_rules.py.
"""

import math

import pytest
import torch

from ropekit import rerope_attention, rope_frequencies
from ropekit.kv_cache import KVCache, rope_decode_step, rotate_as_if_first
from ropekit.model import ModelConfig, PositionScheme, TinyLlama
from ropekit.model.harness import decode_against_forward, greedy_against_forward
from ropekit.position_rules import PositionRule

L = 16
SCHEMES = {
    "rope": PositionScheme(),
    "pi": PositionScheme("pi", factor=4),
    "ntk": PositionScheme("ntk", factor=4),
    "dynamic": PositionScheme("dynamic", factor=2),
    "yarn": PositionScheme("yarn", factor=4),
    "llama3": PositionScheme("llama3", factor=4),
    "rerope": PositionScheme("rerope", window=5),
    "leaky_rerope": PositionScheme("leaky_rerope", window=5, factor=3),
    "rerope_log_n": PositionScheme("rerope", window=5, log_n=True),
    "ntk_log_n": PositionScheme("ntk", factor=4, log_n=True),
    "self_extend": PositionScheme("self_extend", window=6, factor=3),
    "sinks": PositionScheme("sinks", window=6, options={"sinks": 2}),
    "sliding_window": PositionScheme("sinks", window=6, options={"sinks": 0}),
    "short_window": PositionScheme("sinks", window=2, options={"sinks": 0}),  # padding queries see no key
    "nope": PositionScheme("nope"),
}
LENGTHS = [5, 9, 7]  # three prompts of different lengths, right padded


def tiny(seed=0):
    torch.manual_seed(seed)
    config = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=96, train_length=L)
    return TinyLlama(config).double().eval()


def tokens(batch=3, seq=30, seed=1):
    return torch.randint(0, 256, (batch, seq), generator=torch.Generator().manual_seed(seed))


# --- the harness: every scheme, every store, unequal lengths ------------------------------


@pytest.mark.parametrize("store", ["rotated", "unrotated", "both"])
@pytest.mark.parametrize("name", SCHEMES)
def test_prefill_and_decode_equal_the_full_forward_of_each_row(name, store):
    """Rows end at 19, 23, 21 tokens (past L = 16), but dynamic NTK stops at L (see below)."""
    steps = L - max(LENGTHS) if SCHEMES[name].depends_on_length else 14
    cached, full = decode_against_forward(tiny(), tokens(), LENGTHS, steps, SCHEMES[name], store)
    for c, f in zip(cached, full):
        torch.testing.assert_close(c, f, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", SCHEMES)
def test_greedy_generation_of_a_ragged_batch_equals_greedy_full_forwards(name):
    steps = L - max(LENGTHS) if SCHEMES[name].depends_on_length else 12
    generated, expected = greedy_against_forward(tiny(), tokens(seq=9), LENGTHS, steps, SCHEMES[name])
    for g, e in zip(generated, expected):
        assert torch.equal(g, e)


def test_dynamic_ntk_past_L_decoding_differs_from_the_full_forward_as_intended():
    """Up to L every store gives the full forward; past L a rotated cache keeps each key's
    old base (the next test says what it equals), an unrotated one re-rotates every cached
    key with the current base, so the two stores differ there too. Neither can give the full
    forward: values and deeper layers' keys were computed under the older bases."""
    model, x = tiny(), tokens(batch=1, seq=24)
    scheme = SCHEMES["dynamic"]
    rotated, full = decode_against_forward(model, x, [L - 4], 12, scheme, "rotated")
    unrotated, _ = decode_against_forward(model, x, [L - 4], 12, scheme, "unrotated")
    _, full_to_L = decode_against_forward(model, x, [L - 4], 4, scheme, "rotated")
    for decoded in (rotated[0], unrotated[0]):
        torch.testing.assert_close(decoded[:L], full_to_L[0], rtol=1e-6, atol=1e-6)
        assert (decoded[L:] - full[0][L:]).abs().max() > 1e-4
    assert (rotated[0][L:] - unrotated[0][L:]).abs().max() > 1e-4


def test_dynamic_ntk_rotated_cache_scores_each_key_with_the_base_of_its_own_step():
    """What it should equal: ⟨R^{b(n)}_n q, R^{b(j)}_j k_j⟩, each key with the base of the length
    when it was cached, written with explicit float64 rotation matrices."""
    torch.manual_seed(0)
    d, n = 8, 12
    q, k, v = torch.randn(1, 1, 1, d, dtype=torch.float64), torch.randn(1, n, 1, d, dtype=torch.float64), torch.randn(1, n, 1, d, dtype=torch.float64)
    freq = lambda length: rope_frequencies(d, 10000.0, "dynamic", factor=2, seq_len=length, original_max_position_embeddings=6)[0]  # noqa: E731
    cache = KVCache("rotated")
    cache.start(1, 4)
    cache.append(0, k[:, :4], v[:, :4], freq(4))  # a prefill of 4, then one key per step
    cache.finish()
    for j in range(4, n - 1):
        cache.start(1, 1)
        cache.append(0, k[:, j : j + 1], v[:, j : j + 1], freq(j + 1))
        cache.finish()
    cache.start(1, 1)
    out = cache.attend(0, q, k[:, n - 1 :], v[:, n - 1 :], freq(n))
    bases = [freq(4)] * 4 + [freq(j + 1) for j in range(4, n)]
    logits = torch.stack([
        (explicit_rotation(n - 1, freq(n)) @ q[0, 0, 0]) @ (explicit_rotation(j, bases[j]) @ k[0, j, 0]) for j in range(n)
    ]) / math.sqrt(d)
    torch.testing.assert_close(out[0, 0, 0], logits.softmax(0) @ v[0, :, 0], rtol=1e-6, atol=1e-6)


def explicit_rotation(position, inv_freq):
    """R_p for the half layout as a dense float64 matrix: pair (i, i + d/2) turned by p·θ_i."""
    half = len(inv_freq)
    rotation = torch.zeros(2 * half, 2 * half, dtype=torch.float64)
    for i, theta in enumerate(inv_freq.double().tolist()):
        c, s = math.cos(position * theta), math.sin(position * theta)
        rotation[i, i], rotation[i, i + half], rotation[i + half, i], rotation[i + half, i + half] = c, -s, s, c
    return rotation


def qkv(seq=20, heads=2, kv_heads=1, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, seq, heads, d, generator=g, dtype=torch.float64),
            torch.randn(1, seq, kv_heads, d, generator=g, dtype=torch.float64),
            torch.randn(1, seq, kv_heads, d, generator=g, dtype=torch.float64))



# --- what each store costs ------------------------------------------------------------------


def rerope_step_work(store, n=40, w=8):
    q, k, v = qkv(seq=n + 1, heads=2, kv_heads=1)
    inv_freq = rope_frequencies(8, 10000.0)[0]
    cache = KVCache(store, PositionRule("rerope", w))
    cache.start(1, n)
    cache.attend(0, q[:, :n], k[:, :n], v[:, :n], inv_freq)
    cache.finish()
    cache.reset_work()
    cache.start(1, 1)
    out = cache.attend(0, q[:, n:], k[:, n:], v[:, n:], inv_freq)
    expected = rerope_attention(q, k, v, inv_freq, w, causal=True)[:, n:]
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    return cache.work, cache.nbytes()


def test_rerope_decode_work_and_memory_of_each_store():
    """One kv head, a step at position 40, window 8: the rotated store turns the 33 far keys
    back, the unrotated one rotates the 8 near keys, both rotates only the new key twice."""
    work = {store: rerope_step_work(store) for store in ("rotated", "unrotated", "both")}
    assert work["rotated"][0]["key_rotations"] == 1 + 33
    assert work["unrotated"][0]["key_rotations"] == 8
    assert work["both"][0]["key_rotations"] == 1
    one_tensor = 41 * 1 * 8 * 8  # 41 tokens, one kv head, 8 features of 8 bytes
    assert work["rotated"][1] == work["unrotated"][1] == 2 * one_tensor and work["both"][1] == 3 * one_tensor
    for store in work:
        assert work[store][0]["query_rotations"] == 2 * 2  # q at i and at w, two heads


# --- evict, reindex, memory keys ------------------------------------------------------------


def test_reindex_turns_rotated_keys_exactly_like_rotating_the_raw_keys_anew():
    _, k, v = qkv(seq=6)
    inv_freq = rope_frequencies(8, 10000.0)[0]
    rotated, raw = KVCache("rotated"), KVCache("unrotated")
    for cache in (rotated, raw):
        cache.start(1, 6)
        cache.append(0, k, v, inv_freq)
        cache.finish()
        cache.reindex(torch.tensor([[0, 1, 7, 8, 9, 30]]), inv_freq)
    turned = rope_rotate(k, torch.tensor([[0, 1, 7, 8, 9, 30]]), inv_freq)
    torch.testing.assert_close(rotated.layers[0]["rotated"], turned, rtol=1e-6, atol=1e-6)
    assert torch.equal(raw.layers[0]["unrotated"], k) and torch.equal(raw.positions, rotated.positions)


def test_evict_drops_slots_per_row_and_keeps_the_rest():
    _, k, v = qkv(seq=5)
    cache = KVCache("rotated")
    cache.start(2, 5, lengths=[5, 3])
    cache.append(0, k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1), rope_frequencies(8, 10000.0)[0])
    cache.finish()
    cache.evict(torch.tensor([[True, False, True, True, False], [True, True, False, True, True]]))
    # slot 4 is kept by no row and dropped; a slot kept by one row is padding in the other
    assert cache.slots == 4 and cache.valid.tolist() == [[True, False, True, True], [True, True, False, False]]
    assert cache.positions.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]] and cache.layers[0]["rotated"].shape[1] == 4


def test_memory_keys_rotated_as_if_first_score_by_the_query_position_alone():
    _, k, _ = qkv(seq=6)
    q = qkv(seq=1, seed=3)[0][:, :, :1]
    inv_freq = rope_frequencies(8, 10000.0)[0]
    far = torch.tensor([[1000, 2000, 3, 4, 5, 999999]])
    memory = rotate_as_if_first(rope_rotate(k, far, inv_freq), inv_freq, rotated_at=far)
    for n in (0, 5, 17):
        logits = (rope_rotate(q, torch.tensor([n]), inv_freq)[0, 0, 0] @ memory[0, :, 0].T)
        expected = torch.stack([q[0, 0, 0] @ explicit_rotation(-n, inv_freq) @ k[0, j, 0] for j in range(6)])
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def rope_rotate(x, positions, inv_freq):
    from ropekit.attention import rotate

    return rotate(x, positions, inv_freq)


def test_rope_decode_step_is_reexported():
    assert rope_decode_step.__module__ == "ropekit.decode"


@pytest.mark.parametrize(
    "call, message",
    [(lambda: KVCache("sideways"), "store must be one of"),
     (lambda: PositionRule("rerope"), "window must be a positive integer"),
     (lambda: PositionRule("self_extend", 4, 2.5), "group size"),
     (lambda: KVCache().start(2, 3, lengths=[4, 1]), "lengths must be"),
     (lambda: PositionScheme("sinks", window=4, options={"sinks": -1}), "options\\['sinks'\\]"),
     (lambda: PositionScheme("sinks", window=4, log_n=True), "log_n is not supported")],
)
def test_bad_arguments_are_refused_with_the_argument_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
