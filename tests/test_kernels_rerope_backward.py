"""The fused ReRoPE kernel's backward (ropekit.kernels.rerope_backward) against autograd
through the two-matrix reference ropekit.attention.rerope_attention in float64.

Under the interpreter the kernels use 16 × 16 blocks, so windows below, at and above a
block edge put query/key block pairs in all three kinds (outside, edge, inside).
"""

import pytest
import torch

from ropekit import rope_frequencies
from ropekit.attention import rerope_attention as reference
from ropekit.kernels import rerope_attention

ON_GPU = torch.cuda.is_available()

# batch, heads, kv_heads, seq, head_dim, window, leaky, log_n, layout, dtype
CASES = [
    (1, 2, 1, 40, 32, 5, None, None, "half", torch.float32),  # window below a block edge
    (2, 2, 2, 33, 32, 16, None, None, "paper", torch.float32),  # at a block edge
    (1, 4, 2, 48, 64, 17, 4.0, None, "half", torch.float32),  # Leaky, above, GQA 4/2
    (1, 2, 2, 37, 32, 9, None, 8, "paper", torch.float32),  # log-n
    (1, 4, 2, 35, 32, 7, 2.0, 16, "half", torch.float32),  # Leaky and log-n together
    (1, 1, 1, 20, 128, 7, None, None, "paper", torch.float32),  # head_dim 128
    (1, 2, 1, 24, 32, 64, None, None, "half", torch.float32),  # window beyond seq: plain RoPE
]
if ON_GPU:
    CASES += [
        (1, 8, 2, 1000, 128, 300, None, 512, "half", torch.float32),
        (2, 4, 4, 700, 64, 64, 8.0, None, "paper", torch.float32),
    ]


def _inputs(batch, heads, kv_heads, seq, head_dim, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(batch, seq, heads, head_dim), (batch, seq, kv_heads, head_dim), (batch, seq, kv_heads, head_dim),
              (batch, seq, heads, head_dim)]
    return [torch.randn(*shape, generator=gen).to(device=device, dtype=dtype) for shape in shapes]


def _kernel_grads(q, k, v, grad_out, inv_freq, window, **options):
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    rerope_attention(*leaves, inv_freq, window, **options).backward(grad_out)
    return [t.grad.float() for t in leaves]


def _reference_grads(q, k, v, grad_out, inv_freq, window, **options):
    """Autograd through the float64 reference, on exactly the kernel's (rounded) inputs."""
    leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    reference(*leaves, inv_freq.double(), window, **options).backward(grad_out.double())
    return [t.grad.float() for t in leaves]


@pytest.mark.parametrize("batch, heads, kv_heads, seq, head_dim, window, leaky, log_n, layout, dtype", CASES)
def test_gradients_match_autograd_through_the_reference(
    device, batch, heads, kv_heads, seq, head_dim, window, leaky, log_n, layout, dtype
):
    q, k, v, grad_out = _inputs(batch, heads, kv_heads, seq, head_dim, dtype, device)
    inv_freq, _ = rope_frequencies(head_dim)
    options = dict(leaky_factor=leaky, log_n_train_length=log_n, layout=layout)
    got = _kernel_grads(q, k, v, grad_out, inv_freq, window, **options)
    want = _reference_grads(q, k, v, grad_out, inv_freq, window, **options)
    for name, g, w in zip("qkv", got, want):
        torch.testing.assert_close(g, w, atol=2e-4, rtol=2e-4, msg=lambda m: f"d{name}: {m}")


def _bf16_error(got, want):
    """Largest error relative to the gradient's scale."""
    return max(((g - w).abs().max() / w.abs().max()).item() for g, w in zip(got, want))


def test_bfloat16_gradients_are_close_and_a_planted_bug_is_not(device):
    """bf16 rounds q, k, dS and P before each dot: 3% of the gradient's scale is allowed.
    Reference gradients with the window one larger (one diagonal of logits changes
    product) must be further off than that, or the tolerance could not catch a bug."""
    q, k, v, grad_out = _inputs(1, 4, 2, 40, 32, torch.bfloat16, device, seed=1)
    inv_freq, _ = rope_frequencies(32)
    options = dict(leaky_factor=None, log_n_train_length=16, layout="paper")
    got = _kernel_grads(q, k, v, grad_out, inv_freq, 6, **options)
    assert _bf16_error(got, _reference_grads(q, k, v, grad_out, inv_freq, 6, **options)) < 0.03
    assert _bf16_error(got, _reference_grads(q, k, v, grad_out, inv_freq, 7, **options)) > 0.03
    no_log_n = dict(options, log_n_train_length=None)
    assert _bf16_error(got, _reference_grads(q, k, v, grad_out, inv_freq, 6, **no_log_n)) > 0.03


@pytest.mark.skipif(not ON_GPU, reason="the GPU's block sizes need long sequences to meet every block kind")
@pytest.mark.parametrize("layout, leaky", [("half", None), ("paper", 8.0)])
def test_bfloat16_gradients_at_head_dim_128_with_the_gpu_block_sizes(layout, leaky):
    q, k, v, grad_out = _inputs(1, 8, 2, 2000, 128, torch.bfloat16, "cuda", seed=4)
    inv_freq, _ = rope_frequencies(128)
    options = dict(leaky_factor=leaky, log_n_train_length=1024, layout=layout)
    got = _kernel_grads(q, k, v, grad_out, inv_freq.cuda(), 512, **options)
    assert _bf16_error(got, _reference_grads(q, k, v, grad_out, inv_freq.cuda(), 512, **options)) < 0.03


def test_gradient_agrees_with_a_finite_difference_of_the_kernel_itself(device):
    """Independent of the reference: ⟨∇L, d⟩ ≈ (L(x + εd) − L(x − εd)) / 2ε for random
    directions d in q, k and v, with L = ⟨out, grad_out⟩ computed by the forward kernel."""
    q, k, v, grad_out = _inputs(1, 2, 1, 36, 32, torch.float32, device, seed=2)
    inv_freq, _ = rope_frequencies(32)
    options = dict(leaky_factor=3.0, log_n_train_length=8, layout="half")
    grads = _kernel_grads(q, k, v, grad_out, inv_freq, 9, **options)
    gen = torch.Generator().manual_seed(3)
    directions = [torch.randn(t.shape, generator=gen).to(device) for t in (q, k, v)]
    eps = 1e-2

    def loss(sign):
        moved = [t + sign * eps * d for t, d in zip((q, k, v), directions)]
        with torch.no_grad():
            return (rerope_attention(*moved, inv_freq, 9, **options).double() * grad_out.double()).sum()

    numeric = (loss(1) - loss(-1)) / (2 * eps)
    analytic = sum((g.double() * d.double()).sum() for g, d in zip(grads, directions))
    torch.testing.assert_close(analytic, numeric, rtol=2e-3, atol=2e-3)


def test_only_the_inputs_that_need_grad_get_one(device):
    q, k, v, grad_out = _inputs(1, 2, 2, 20, 32, torch.float32, device)
    inv_freq, _ = rope_frequencies(32)
    v.requires_grad_(True)
    rerope_attention(q, k, v, inv_freq, 4).backward(grad_out)
    assert q.grad is None and k.grad is None and v.grad is not None


@pytest.mark.parametrize("configs", [((16, 32, 1, 1), (32, 16, 1, 1)), ((32, 16, 1, 1), (16, 32, 1, 1))])
def test_gradients_do_not_depend_on_the_block_sizes(monkeypatch, device, configs):
    """The GPU runs dk/dv and dq with different, non-square tiles; the block kinds and
    masks must come out right for any tile shape."""
    import importlib

    backward = importlib.import_module("ropekit.kernels.rerope_backward")
    monkeypatch.setattr(backward, "backward_block_sizes", lambda *args: configs)
    q, k, v, grad_out = _inputs(1, 4, 2, 45, 32, torch.float32, device, seed=6)
    inv_freq, _ = rope_frequencies(32)
    options = dict(leaky_factor=3.0, log_n_train_length=16, layout="paper")
    got = _kernel_grads(q, k, v, grad_out, inv_freq.to(device), 13, **options)
    want = _reference_grads(q, k, v, grad_out, inv_freq.to(device), 13, **options)
    for name, g, w in zip("qkv", got, want):
        torch.testing.assert_close(g, w, atol=2e-4, rtol=2e-4, msg=lambda m: f"d{name}: {m}")
