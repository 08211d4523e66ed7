"""The fused ReRoPE kernel against its specification, ropekit.attention.rerope_attention.

The reference runs in float64 on the very same (bf16/fp16/fp32) inputs, so the only
differences left are the kernel's own roundings: rotated q and k rounded to the input
dtype before the tensor-core dots, the probabilities rounded before P·V, and the output.
Under the interpreter the kernel uses 16 × 16 blocks, so sequences of 40-70 tokens
already contain blocks outside the window, inside it and on its edge, a partial last
block (seq not a multiple of 16) and, for small windows, edge blocks on the diagonal.
On a GPU the same tests also run at realistic sizes with the tuned blocks.
Budget: about 10 s under the interpreter on a 2-core CPU (25 s when the machine is busy);
about 2 minutes on an H100, mostly compiling the kernel variants.
"""

import importlib

import pytest
import torch
from triton.runtime.errors import OutOfResources

from ropekit import rope_frequencies
from ropekit.attention import rerope_attention as reference
from ropekit.attention import rope_attention
from ropekit.kernels import rerope_attention

ON_GPU = torch.cuda.is_available()

# float32 output tolerance for each input dtype (see the module docstring)
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 4e-3, torch.float32: 2e-5}

# (batch, heads, kv_heads, seq, head_dim, window, leaky_factor, log_n_train_length, layout, dtype)
CASES = [
    (1, 2, 1, 40, 64, 8, None, None, "half", torch.bfloat16),  # GQA, window < a block
    (1, 4, 2, 53, 64, 20, 4.0, 16, "paper", torch.float16),  # Leaky, log n, paper layout
    (2, 2, 2, 70, 64, 100, None, None, "half", torch.float32),  # window > seq: plain RoPE
    (1, 1, 1, 48, 64, 48, 8.0, None, "paper", torch.bfloat16),  # window == seq
    (1, 2, 2, 37, 64, 1, 2.0, 8, "half", torch.float32),  # w = 1: every key but i is outside
    (1, 3, 1, 64, 64, 16, None, 20, "paper", torch.float16),  # block-aligned seq and window
    (1, 2, 1, 61, 128, 23, None, None, "half", torch.bfloat16),  # head_dim 128
    (1, 2, 2, 45, 32, 12, 16.0, 10, "half", torch.bfloat16),  # head_dim 32
]
if ON_GPU:
    CASES += [
        (2, 8, 2, 2048, 128, 512, None, 1024, "half", torch.bfloat16),
        (1, 8, 8, 1999, 128, 300, 16.0, None, "paper", torch.bfloat16),
        (1, 4, 1, 3000, 64, 700, None, None, "half", torch.float16),
        (1, 4, 4, 1500, 64, 128, 8.0, 512, "half", torch.float32),
        (1, 32, 8, 4096, 128, 1024, None, 2048, "half", torch.bfloat16),
    ]


def _inputs(batch, heads, kv_heads, seq, head_dim, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, heads, head_dim, generator=gen)
    k = torch.randn(batch, seq, kv_heads, head_dim, generator=gen)
    v = torch.randn(batch, seq, kv_heads, head_dim, generator=gen)
    return [t.to(device=device, dtype=dtype) for t in (q, k, v)]


def _expected(q, k, v, inv_freq, window, **options):
    """The float64 reference on exactly the kernel's inputs, returned as float32."""
    out = reference(q.double(), k.double(), v.double(), inv_freq.double(), window, **options)
    return out.float()


@pytest.mark.parametrize("batch, heads, kv_heads, seq, head_dim, window, leaky, log_n, layout, dtype", CASES)
def test_fused_kernel_matches_the_two_matrix_reference(
    device, batch, heads, kv_heads, seq, head_dim, window, leaky, log_n, layout, dtype
):
    q, k, v = _inputs(batch, heads, kv_heads, seq, head_dim, dtype, device)
    inv_freq, _ = rope_frequencies(head_dim)
    options = dict(leaky_factor=leaky, log_n_train_length=log_n, layout=layout)
    out = rerope_attention(q, k, v, inv_freq, window, **options)
    assert out.shape == q.shape and out.dtype == dtype and out.device == q.device
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(out.float(), _expected(q, k, v, inv_freq, window, **options), atol=tol, rtol=tol)


@pytest.mark.parametrize("window", range(1, 17))
def test_every_window_offset_against_the_block_grid(device, window):
    """Blocks are classified by comparing i − j with w at block corners; an off-by-one
    there shows up only for windows at one offset from the 16-wide blocks, so try them all
    (float32, so that a key moved across the window's edge cannot hide in the tolerance)."""
    q, k, v = _inputs(1, 1, 1, 40, 32, torch.float32, device, seed=window)
    inv_freq, _ = rope_frequencies(32)
    leaky = 4.0 if window % 2 else None
    out = rerope_attention(q, k, v, inv_freq, window, leaky_factor=leaky)
    expected = _expected(q, k, v, inv_freq, window, leaky_factor=leaky)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)


def test_window_beyond_the_sequence_is_plain_rope_attention(device):
    q, k, v = _inputs(1, 2, 1, 50, 64, torch.float32, device, seed=1)
    inv_freq, _ = rope_frequencies(64, base=500000.0)
    out = rerope_attention(q, k, v, inv_freq, window=50)
    expected = rope_attention(q.double(), k.double(), v.double(), inv_freq.double()).float()
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)


def test_strided_inputs_in_hugging_face_memory(device):
    """q, k, v as Hugging Face holds them, (batch, heads, seq, head_dim), passed as the
    (batch, seq, heads, head_dim) views x.transpose(1, 2): no copy, any strides."""
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, h, 45, 64, generator=gen).to(device, torch.float16).transpose(1, 2) for h in (4, 2, 2))
    inv_freq, _ = rope_frequencies(64)
    out = rerope_attention(q, k, v, inv_freq, window=10, leaky_factor=3.0, layout="paper")
    expected = _expected(q, k, v, inv_freq, 10, leaky_factor=3.0, layout="paper")
    torch.testing.assert_close(out.float(), expected, atol=4e-3, rtol=4e-3)


def test_window_changes_the_result(device):
    """Guards the tests above against a kernel that ignores the window: at this size a
    ReRoPE window of 4 moves the output far beyond the bf16 tolerance."""
    q, k, v = _inputs(1, 1, 1, 40, 64, torch.bfloat16, device, seed=3)
    inv_freq, _ = rope_frequencies(64)
    narrow = rerope_attention(q, k, v, inv_freq, window=4).float()
    wide = rerope_attention(q, k, v, inv_freq, window=40).float()
    assert (narrow - wide).abs().max() > 10 * TOLERANCE[torch.bfloat16]


def test_launcher_drops_pipeline_stages_until_shared_memory_fits(monkeypatch, device):
    """A GPU with less shared memory than the tuned blocks need (e.g. an A100) gets fewer
    stages instead of an error, and the launcher remembers what fit."""
    kernel_module = importlib.import_module("ropekit.kernels.rerope")
    real_kernel, launched = kernel_module.rerope_fwd_kernel, []

    class SmallSharedMemory:  # the real kernel, on a GPU that fits one stage only
        def __getitem__(self, grid):
            def launch(*args, num_stages, **kwargs):
                launched.append(num_stages)
                if num_stages > 1:
                    raise OutOfResources(300_000, 100_000, "shared memory")
                return real_kernel[grid](*args, num_stages=num_stages, **kwargs)

            return launch

    monkeypatch.setattr(kernel_module, "rerope_fwd_kernel", SmallSharedMemory())
    monkeypatch.setattr(kernel_module, "block_sizes", lambda *args: (16, 16, 1, 3))
    monkeypatch.setattr(kernel_module, "_FITTED_STAGES", {})
    q, k, v = _inputs(1, 1, 1, 40, 32, torch.float32, device, seed=4)
    inv_freq, _ = rope_frequencies(32)
    for _ in range(2):
        out = rerope_attention(q, k, v, inv_freq, window=9)
        torch.testing.assert_close(out, _expected(q, k, v, inv_freq, 9), atol=2e-5, rtol=2e-5)
    assert launched == [3, 2, 1, 1]


@pytest.mark.skipif(not ON_GPU, reason="needs CUDA to measure device memory")
def test_extra_memory_is_linear_in_seq(device):
    """Besides its output, a call allocates only (seq, head_dim/2) angle tables (six, plus
    rope_cos_sin's temporaries): nothing of size seq²."""
    heads, head_dim, seq = 8, 128, 16384
    q, k, v = _inputs(1, heads, heads, seq, head_dim, torch.bfloat16, device)
    inv_freq, _ = rope_frequencies(head_dim)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = rerope_attention(q, k, v, inv_freq, window=512, leaky_factor=16.0)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    table = seq * (head_dim // 2) * 4  # one float32 (seq, head_dim/2) table: 4 MB here
    # (one (seq, seq) float32 matrix of a single head would be 1 GB)
    assert extra <= out.numel() * out.element_size() + 8 * table + 2**20


# --- bad input ---------------------------------------------------------------------------


def _good(device):
    q, k, v = _inputs(1, 4, 2, 8, 64, torch.float16, device)
    return q, k, v, rope_frequencies(64)[0]


def test_causal_false_points_to_the_reference(device):
    q, k, v, inv_freq = _good(device)
    with pytest.raises(NotImplementedError, match="ropekit.attention.rerope_attention"):
        rerope_attention(q, k, v, inv_freq, 4, causal=False)


def test_cpu_tensors_without_the_interpreter_point_to_the_reference(monkeypatch):
    q, k, v, inv_freq = _good("cpu")
    monkeypatch.setattr(importlib.import_module("ropekit.kernels.rerope"), "INTERPRETED", False)
    with pytest.raises(ValueError, match="ropekit.attention.rerope_attention"):
        rerope_attention(q, k, v, inv_freq, 4)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda a: {**a, "q": a["q"].double(), "k": a["k"].double(), "v": a["v"].double()}, TypeError, "q must be"),
        (lambda a: {**a, "v": a["v"].float()}, TypeError, "share one dtype"),
        (lambda a: {**a, "q": a["q"][..., :48], "k": a["k"][..., :48], "v": a["v"][..., :48]}, ValueError, "head_dim"),
        (lambda a: {**a, "k": a["k"][:, :7], "v": a["v"][:, :7]}, ValueError, "same seq"),
        (lambda a: {**a, "v": a["v"][:, :7]}, ValueError, "same number of tokens"),
        (lambda a: {**a, "q": a["q"][:, :, :3]}, ValueError, "grouped-query"),
        (lambda a: {**a, "q": a["q"][0]}, ValueError, "q must have shape"),
        (lambda a: {**a, "inv_freq": a["inv_freq"][:16]}, ValueError, "inv_freq"),
        (lambda a: {**a, "window": 0}, ValueError, "window"),
        (lambda a: {**a, "window": 2.5}, ValueError, "window"),
        (lambda a: {**a, "window": True}, ValueError, "window"),
        (lambda a: {**a, "leaky_factor": 1.0}, ValueError, "leaky_factor"),
        (lambda a: {**a, "log_n_train_length": 1}, ValueError, "log_n_train_length"),
        (lambda a: {**a, "layout": "neox"}, ValueError, "layout"),
    ],
)
def test_bad_input_gets_a_clear_error(device, change, error, match):
    q, k, v, inv_freq = _good(device)
    args = change(dict(q=q, k=k, v=v, inv_freq=inv_freq, window=4))
    with pytest.raises(error, match=match):
        rerope_attention(**args)
