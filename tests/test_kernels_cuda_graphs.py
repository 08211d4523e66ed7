"""The kernels under CUDA graphs and torch.compile: what a decoder or trainer needs to cut
the launch path (issue 14, item 3).

On a GPU: each call (``apply_rope_qk``, ``rope_decode_append``, ``rerope_attention`` forward
and backward) is captured in a ``torch.cuda.CUDAGraph`` and replayed on new inputs, and the
same calls run under ``torch.compile(mode="reduce-overhead")``; every replay must equal the
eager call on the same inputs. Without CUDA those skip, and what runs everywhere is the
part Dynamo sees: one custom op per kernel, no graph break (``fullgraph=True``), and
``torch.library.opcheck`` on the new ops.
"""

import pytest
import torch

from ropekit import rope_cos_sin, rope_frequencies
from ropekit.decode import rope_decode_append as decode_twin
from ropekit.kernels import apply_rope_qk, rerope_attention, rope_decode_append

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a GPU")
BACKEND = "inductor" if CUDA else "aot_eager"


def _rand(gen, *shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)


def _capture(fn):
    """Warm up on a side stream (compiles the kernels, fits their pipeline stages), then
    capture one call. Returns the graph and the call's (static) outputs."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def _decode_inputs(gen, batch, device, dtype=torch.bfloat16, heads=8, kv_heads=2, head_dim=64, max_seq=32):
    q, k, v = (_rand(gen, batch, 1, h, head_dim, dtype=dtype, device=device) for h in (heads, kv_heads, kv_heads))
    caches = [torch.zeros(batch, max_seq, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(3)]
    return q, k, v, caches


# --- everywhere: one custom op per kernel, no graph break ----------------------------------


def test_decode_step_compiles_without_a_graph_break(device):
    gen = torch.Generator().manual_seed(0)
    q, k, v, (rotated, unrotated, v_cache) = _decode_inputs(gen, 3, device, dtype=torch.float32)
    positions = torch.tensor([0, 7, 30], device=device)
    inv_freq = rope_frequencies(64)[0].to(device)
    step = torch.compile(rope_decode_append, fullgraph=True, backend=BACKEND)
    caches = [c.clone() for c in (rotated, unrotated, v_cache)]
    out = step(q, k, v, caches[2], positions, inv_freq, rotated_k_cache=caches[0], unrotated_k_cache=caches[1])
    want = [c.clone() for c in (rotated, unrotated, v_cache)]
    want_out = decode_twin(q, k, v, want[2], positions, inv_freq, rotated_k_cache=want[0], unrotated_k_cache=want[1])
    torch.testing.assert_close(out, want_out, atol=1e-5, rtol=1e-5)
    for got, expected in zip(caches, want):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_rerope_forward_and_backward_compile_without_a_graph_break(device):
    gen = torch.Generator().manual_seed(1)
    q, k, v, grad_out = (_rand(gen, 1, 24, h, 32, device=device) for h in (4, 2, 2, 4))
    inv_freq = rope_frequencies(32)[0].to(device)

    def loss(q, k, v):
        return (rerope_attention(q, k, v, inv_freq, 5, leaky_factor=2, log_n_train_length=8) * grad_out).sum()

    compiled = torch.compile(loss, fullgraph=True, backend=BACKEND)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    grads = torch.autograd.grad(compiled(*leaves), leaves)
    eager_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    eager = torch.autograd.grad(loss(*eager_leaves), eager_leaves)
    for got, want in zip(grads, eager):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_new_custom_ops_pass_opcheck(device):
    gen = torch.Generator().manual_seed(2)
    q, k, v, (rotated, unrotated, v_cache) = _decode_inputs(gen, 2, device, dtype=torch.float32, head_dim=32)
    inv_freq = rope_frequencies(32)[0].to(device)
    positions = torch.tensor([1, 4], device=device)
    torch.library.opcheck(torch.ops.ropekit.rope_decode_append,
                          (q, k, v, v_cache, positions, inv_freq, rotated, unrotated, "half", None),
                          test_utils=("test_schema", "test_faketensor"))
    qa, ka, va = (_rand(gen, 1, 20, h, 32, device=device).requires_grad_() for h in (2, 1, 1))
    torch.library.opcheck(torch.ops.ropekit.rerope_attention, (qa, ka, va, inv_freq, 4, None, 8.0, "paper"),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


# --- on a GPU: captured and replayed --------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("angles", ["table", "in-kernel"])
def test_apply_rope_qk_replays_on_new_inputs(angles):
    gen = torch.Generator().manual_seed(3)
    q, k = _rand(gen, 2, 64, 8, 128, dtype=torch.bfloat16, device="cuda"), \
        _rand(gen, 2, 64, 2, 128, dtype=torch.bfloat16, device="cuda")
    inv_freq = rope_frequencies(128)[0].cuda()
    cos, sin = (t.cuda() for t in rope_cos_sin(4096, inv_freq.cpu()))
    positions = torch.tensor([0, 100], device="cuda")

    def call():
        if angles == "table":
            return apply_rope_qk(q, k, cos, sin, positions=positions)
        return apply_rope_qk(q, k, inv_freq=inv_freq, positions=positions)

    graph, (q_out, k_out) = _capture(call)
    for step in range(3):
        q.copy_(_rand(gen, *q.shape, dtype=q.dtype, device="cuda"))
        k.copy_(_rand(gen, *k.shape, dtype=k.dtype, device="cuda"))
        positions.add_(step)  # a decoder's offsets move on; the graph reads them on the GPU
        graph.replay()
        want_q, want_k = call()
        torch.testing.assert_close(q_out, want_q, atol=0, rtol=0)
        torch.testing.assert_close(k_out, want_k, atol=0, rtol=0)


@needs_cuda
@pytest.mark.parametrize("paged", [False, True])
def test_decode_step_replays_token_after_token(paged):
    """Three decode steps by replaying one captured step: positions move on in place, and
    the caches end up as three eager steps of the twin leave them."""
    gen = torch.Generator().manual_seed(4)
    batch = 4
    q, k, v, caches = _decode_inputs(gen, batch, "cuda")
    block_table = None
    if paged:  # 8 blocks of 4 slots per sequence, scrambled
        caches = [c.reshape(batch * 8, 4, *c.shape[2:]) for c in caches]
        block_table = torch.randperm(batch * 8, generator=gen).reshape(batch, 8).cuda()
    rotated, unrotated, v_cache = caches
    expected = [c.clone() for c in caches]
    inv_freq = rope_frequencies(64)[0].cuda()
    positions = torch.tensor([0, 3, 9, 28], device="cuda")

    def call():
        return rope_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache=rotated,
                                  unrotated_k_cache=unrotated, layout="paper", block_table=block_table)

    graph, q_out = _capture(call)  # the warm-up wrote step −1: start the comparison from there
    for got, want in zip(caches, expected):
        want.copy_(got)
    for _ in range(3):
        for t in (q, k, v):
            t.copy_(_rand(gen, *t.shape, dtype=t.dtype, device="cuda"))
        positions.add_(1)
        graph.replay()
        want_q = decode_twin(q, k, v, expected[2], positions, inv_freq, rotated_k_cache=expected[0],
                             unrotated_k_cache=expected[1], layout="paper", block_table=block_table)
        torch.testing.assert_close(q_out, want_q)
    for got, want in zip(caches, expected):
        torch.testing.assert_close(got, want)


@needs_cuda
def test_rerope_forward_and_backward_replay_on_new_inputs():
    gen = torch.Generator().manual_seed(5)
    q, k, v, grad_out = (_rand(gen, 1, 300, h, 64, dtype=torch.bfloat16, device="cuda") for h in (8, 2, 2, 8))
    inv_freq = rope_frequencies(64)[0].cuda()
    leaves = [t.requires_grad_() for t in (q, k, v)]

    def call():
        out = rerope_attention(*leaves, inv_freq, 70, leaky_factor=4.0, log_n_train_length=128)
        return (out, *torch.autograd.grad(out, leaves, grad_out))

    graph, static = _capture(call)
    for _ in range(2):
        with torch.no_grad():
            for t in (*leaves, grad_out):
                t.copy_(_rand(gen, *t.shape, dtype=t.dtype, device="cuda"))
        graph.replay()
        for got, want in zip(static, call()):
            torch.testing.assert_close(got, want, atol=0, rtol=0)


@needs_cuda
def test_reduce_overhead_mode_gives_the_eager_results():
    """torch.compile(mode="reduce-overhead") records CUDA graphs after a warm-up call;
    each later call must still equal eager mode on its own inputs."""
    gen = torch.Generator().manual_seed(6)
    inv_freq = rope_frequencies(128)[0].cuda()
    torch._dynamo.reset()

    def rope(q, k, positions):
        return apply_rope_qk(q, k, inv_freq=inv_freq, positions=positions)

    def rerope(q, k, v):
        return rerope_attention(q, k, v, inv_freq, 64)

    compiled_rope = torch.compile(rope, mode="reduce-overhead")
    compiled_rerope = torch.compile(rerope, mode="reduce-overhead")
    for step in range(4):
        torch.compiler.cudagraph_mark_step_begin()
        q, k, v = (_rand(gen, 1, 256, h, 128, dtype=torch.bfloat16, device="cuda") for h in (8, 2, 2))
        positions = torch.tensor([step * 7], device="cuda")
        for got, want in zip(compiled_rope(q, k, positions), rope(q, k, positions)):
            torch.testing.assert_close(got.clone(), want, atol=0, rtol=0)
        torch.testing.assert_close(compiled_rerope(q, k, v).clone(), rerope(q, k, v))

    # the decode step mutates its caches: compiled, it must write what eager writes
    q, k, v, caches = _decode_inputs(gen, 8, "cuda", head_dim=128)
    expected = [c.clone() for c in caches]
    positions = torch.arange(8, device="cuda")
    compiled_step = torch.compile(rope_decode_append, mode="reduce-overhead")
    for _ in range(4):
        torch.compiler.cudagraph_mark_step_begin()
        out = compiled_step(q, k, v, caches[2], positions, inv_freq, rotated_k_cache=caches[0],
                            unrotated_k_cache=caches[1]).clone()
        want = rope_decode_append(q, k, v, expected[2], positions, inv_freq, rotated_k_cache=expected[0],
                                  unrotated_k_cache=expected[1])
        torch.testing.assert_close(out, want, atol=0, rtol=0)
        positions.add_(1)
    for got, want in zip(caches, expected):
        torch.testing.assert_close(got, want, atol=0, rtol=0)
