"""The fused decode write (ropekit.kernels.rope_decode_append) against its plain-torch
twin (ropekit.decode.rope_decode_append), and the twin against full-sequence RoPE."""

import pytest
import torch

from ropekit import rope_frequencies
from ropekit.decode import rope_decode_append as twin
from ropekit.kernels import rope_decode_append
from ropekit.reference import apply_rope, rope_cos_sin


def _step(batch, new, heads, kv_heads, head_dim, dtype, device, max_seq=24, v_dim=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    v_dim = v_dim or head_dim

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    q, k, v = rand(batch, new, heads, head_dim), rand(batch, new, kv_heads, head_dim), rand(batch, new, kv_heads, v_dim)
    caches = rand(batch, max_seq, kv_heads, head_dim), rand(batch, max_seq, kv_heads, head_dim), \
        rand(batch, max_seq, kv_heads, v_dim)  # random, so that a write to a wrong slot shows
    return q, k, v, caches


def _run(fn, q, k, v, caches, positions, inv_freq, mode, layout, block_table=None):
    rotated, unrotated, v_cache = [c.clone() for c in caches]
    kwargs = dict(rotated_k_cache=rotated if mode in ("rotated", "both") else None,
                  unrotated_k_cache=unrotated if mode in ("unrotated", "both") else None)
    out = fn(q, k, v, v_cache, positions, inv_freq, layout=layout, block_table=block_table, **kwargs)
    return out, rotated, unrotated, v_cache


@pytest.mark.parametrize("mode", ["rotated", "unrotated", "both"])
@pytest.mark.parametrize("layout", ["half", "paper"])
@pytest.mark.parametrize("heads, kv_heads, head_dim, new", [(4, 2, 32, 1), (6, 2, 24, 3), (8, 8, 64, 2)])
def test_kernel_matches_its_twin(device, mode, layout, heads, kv_heads, head_dim, new):
    q, k, v, caches = _step(3, new, heads, kv_heads, head_dim, torch.float32, device, v_dim=head_dim // 2 + 4)
    positions = torch.tensor([0, 5, 24 - new], device=device)  # first slot, middle, last slots
    inv_freq, _ = rope_frequencies(head_dim)
    got = _run(rope_decode_append, q, k, v, caches, positions, inv_freq.to(device), mode, layout)
    want = _run(twin, q, k, v, caches, positions, inv_freq.to(device), mode, layout)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_paged_cache_matches_its_twin_and_the_contiguous_cache(device):
    """Blocks of 4 slots, handed out in a scrambled order: the paged write, read back
    through the block table, is the contiguous write."""
    batch, new, kv_heads, head_dim, block_size = 2, 2, 2, 32, 4
    q, k, v, _ = _step(batch, new, 4, kv_heads, head_dim, torch.bfloat16, device)
    gen = torch.Generator().manual_seed(5)
    paged = [torch.randn(12, block_size, kv_heads, head_dim, generator=gen).to(device, torch.bfloat16)
             for _ in range(3)]
    block_table = torch.randperm(12, generator=gen).reshape(batch, 6).to(device)
    positions = torch.tensor([3, 13], device=device)  # both steps cross a block boundary
    inv_freq = rope_frequencies(head_dim)[0].to(device)
    got = _run(rope_decode_append, q, k, v, paged, positions, inv_freq, "both", "paper", block_table)
    want = _run(twin, q, k, v, paged, positions, inv_freq, "both", "paper", block_table)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    contiguous = [c.reshape(batch, 24, kv_heads, head_dim) for c in
                  (torch.zeros(batch * 6, block_size, kv_heads, head_dim, dtype=torch.bfloat16, device=device),) * 3]
    flat = _run(twin, q, k, v, contiguous, positions, inv_freq, "both", "paper")
    for cache_paged, cache_flat in zip(got[1:], flat[1:]):
        pages = cache_paged[block_table]  # (batch, 6, block_size, kv_heads, head_dim)
        for b in range(batch):
            rows = torch.arange(positions[b], positions[b] + new)
            torch.testing.assert_close(pages[b].reshape(24, kv_heads, head_dim)[rows], cache_flat[b, rows])


def test_twin_writes_the_rows_of_full_sequence_rope():
    """The cache after the step holds R_p k_p at slot p, as RoPE over the whole sequence
    (RoFormer eq. 34 through the reference) gives it; q comes back rotated the same way."""
    batch, seq, heads, kv_heads, head_dim = 2, 10, 4, 2, 16
    gen = torch.Generator().manual_seed(1)
    q_all = torch.randn(batch, seq, heads, head_dim, generator=gen, dtype=torch.float64)
    k_all = torch.randn(batch, seq, kv_heads, head_dim, generator=gen, dtype=torch.float64)
    inv_freq = rope_frequencies(head_dim)[0].double()
    cos, sin = rope_cos_sin(torch.arange(seq), inv_freq)
    q_rot = apply_rope(q_all, cos[:, None].double(), sin[:, None].double(), "half")
    k_rot = apply_rope(k_all, cos[:, None].double(), sin[:, None].double(), "half")
    positions = torch.tensor([4, 7])
    k_cache = torch.zeros(batch, seq, kv_heads, head_dim, dtype=torch.float64)
    v_cache = torch.zeros_like(k_cache)
    for b in range(batch):
        p = int(positions[b])
        q_new = twin(q_all[b:b + 1, p:p + 2], k_all[b:b + 1, p:p + 2], k_all[b:b + 1, p:p + 2],
                     v_cache[b:b + 1], positions[b:b + 1], inv_freq, rotated_k_cache=k_cache[b:b + 1])
        torch.testing.assert_close(q_new, q_rot[b:b + 1, p:p + 2])
        torch.testing.assert_close(k_cache[b, p:p + 2], k_rot[b, p:p + 2])
        assert k_cache[b, :p].abs().sum() == 0 and k_cache[b, p + 2:].abs().sum() == 0


@pytest.mark.parametrize("fn", [twin, rope_decode_append], ids=["twin", "kernel"])
@pytest.mark.parametrize("change, match", [
    (dict(rotated_k_cache=None), "rotated_k_cache, unrotated_k_cache or both"),
    (dict(positions="float"), "positions must be an integer tensor of shape"),
    (dict(v_cache="short"), "v_cache must have shape"),
    (dict(inv_freq="short"), "inv_freq must have shape"),
    (dict(block_table="1d"), "block_table must be an integer tensor"),
])
def test_bad_input_gets_a_clear_error(device, fn, change, match):
    q, k, v, (rotated, _, v_cache) = _step(2, 1, 4, 2, 32, torch.float32, device)
    args = dict(q=q, k=k, v=v, v_cache=v_cache, positions=torch.tensor([1, 2], device=device),
                inv_freq=rope_frequencies(32)[0].to(device), rotated_k_cache=rotated)
    replacements = {"float": args["positions"].float(), "short": None, "1d": torch.zeros(2, dtype=torch.long)}
    for name, value in change.items():
        if value == "short":
            value = args[name][..., :-2] if name == "inv_freq" else args[name][:, :, :1]
        elif isinstance(value, str):
            value = replacements[value]
        args[name] = value
    with pytest.raises(ValueError, match=match):
        fn(**args)
