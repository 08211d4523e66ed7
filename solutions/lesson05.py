"""Reference solutions to the exercises of lesson 05 (the Triton kernels).

The notebook's check cells run these when the student's stub is still empty, so CI keeps
them correct. Try the exercises before reading on.
"""

import torch


def rope_bytes_moved(batch, seq, q_heads, kv_heads, head_dim, dtype, pass_):
    """Exercise 1: the least a RoPE pass moves, in bytes.

    q: (batch, seq, q_heads, head_dim), k: (batch, seq, kv_heads, head_dim). The forward
    reads q and k once and writes q_out and k_out once; the backward reads dq_out, dk_out
    and writes dq, dk (the same count); "fwd+bwd" is both.
    """
    elements = batch * seq * (q_heads + kv_heads) * head_dim  # of q and k together
    one_pass = 2 * elements * dtype.itemsize  # read once + write once
    return {"fwd": one_pass, "bwd": one_pass, "fwd+bwd": 2 * one_pass}[pass_]


def count_key_blocks(seq, window, block_m, block_n):
    """Exercise 3: (outside, edge, inside) key blocks that the fused causal ReRoPE kernel
    visits, summed over the query blocks of one (batch, head).

    Query block [m0, m0 + block_m) visits the key blocks n0 = 0, block_n, ... below
    min(m0 + block_m, seq). A block is outside the window when even its nearest pair
    (query m0, key n0 + block_n − 1) is w or more apart, inside when even its farthest
    pair (query m0 + block_m − 1, key n0) is closer than w, and on the edge otherwise.
    Closed form per query block, as the kernel computes its loop bounds:
    outside: n0 + block_n ≤ m0 − w + 1; inside: n0 ≥ m0 + block_m − w.
    """
    outside = edge = inside = 0
    for m0 in range(0, seq, block_m):
        visited = -(-min(m0 + block_m, seq) // block_n)  # ceil: key blocks under the diagonal
        n_out = max(m0 - window + 1, 0) // block_n
        first_in = -(-max(m0 + block_m - window, 0) // block_n)  # first inside block's index
        n_in = max(visited - first_in, 0)
        outside += n_out
        inside += n_in
        edge += visited - n_out - n_in
    return outside, edge, inside


def rope_paper_backward(grad_out, cos, sin):
    """Exercise 2: the backward of the paper-layout rotation, dL/dx from dL/dy.

    y = R(φ) x per pair (2i, 2i+1), so dL/dx = R(φ)ᵀ dL/dy = R(−φ) dL/dy: the forward with
    sin negated, da = ga·cos + gb·sin, db = gb·cos − ga·sin (Liger-Kernel PR #465 writes the
    same pair of formulas for its on-paper kernel). grad_out: (..., seq, d); cos, sin: (..., seq, d/2).
    """
    ga, gb = grad_out[..., 0::2], grad_out[..., 1::2]
    return torch.stack((ga * cos + gb * sin, gb * cos - ga * sin), dim=-1).flatten(-2)
