"""Tune and time the fused ReRoPE kernel on a GPU: ``python benchmarks/gpu_rerope_tune.py``.

Two tables, both bf16, batch 1, 32 heads, causal, medians of ``ropekit.bench.time_us``
(100 runs, CUDA events after an L2 flush, the method of ``triton.testing.do_bench``):

1. Block-size sweep at seq 8192 (head_dim 128 and 64): time of every
   (BLOCK_M, BLOCK_N, num_warps, num_stages) for ReRoPE and Leaky ReRoPE, window 512.
   The winners are what ``ropekit.kernels.rerope.block_sizes`` returns.
2. Against the baselines at seq 4096, 8192, 16384 (head_dim 128): SDPA (flash attention,
   causal) on q and k rotated beforehand, i.e. ordinary RoPE attention, the best ReRoPE
   can hope for; the fused kernel (ReRoPE, Leaky, paper layout); the two-matrix reference
   ``ropekit.attention.rerope_attention``, where it fits in memory. Peak memory is the
   extra memory one call allocates.

Needs CUDA and triton; about two minutes on an H100.

Measured on an H100 80GB HBM3 (torch 2.11, triton 3.6), half layout, window 512:

    seq     SDPA  ReRoPE   Leaky  reference  ReRoPE/SDPA  reference/ReRoPE  extra MB fused / ref
    4096   0.503   0.758   0.751     20.891         1.51              27.6          34 / 8640
    8192   1.699   1.828   2.399     83.275         1.08              45.6          68 / 33728
   16384   6.445   5.380   8.226   out of memory    0.83                 -         136 / -

(ms; "extra MB" is the output plus angle tables for the fused kernel.) The paper layout
was measured only with an earlier stride-2 load (4.6× SDPA at 8192); it now loads rows
whole and splits them in registers, which is checked for correctness on the GPU but not
yet timed.
"""

import argparse
import math

import torch
import triton

from ropekit import apply_rope, rope_cos_sin, rope_frequencies
from ropekit.attention import rerope_attention as reference
from ropekit.bench import peak_extra_mb, time_us
from ropekit.kernels.rerope import block_sizes, launch_rerope

CONFIGS = [
    (128, 64, 8, 3), (128, 64, 8, 2), (128, 64, 8, 4), (128, 64, 4, 3), (128, 64, 4, 2),
    (128, 32, 8, 3), (64, 64, 4, 3), (64, 64, 4, 2), (128, 128, 8, 2),
]


def inputs(seq, heads=32, head_dim=128, dtype=torch.bfloat16):
    gen = torch.Generator(device="cuda").manual_seed(0)
    return [torch.randn(1, seq, heads, head_dim, device="cuda", dtype=dtype, generator=gen) for _ in range(3)]


def median_ms(fn):
    """Median of 100 runs after 25 warm-up runs, CUDA events after an L2 flush (ropekit.bench.time_us)."""
    return time_us(fn, "cuda", reps=100, warmup=25) / 1e3


def peak_mb(fn):
    return peak_extra_mb(fn, "cuda")


def sweep(seq, head_dim, window=512):
    q, k, v = inputs(seq, head_dim=head_dim)
    inv_freq = rope_frequencies(head_dim)[0].cuda()
    print(f"\n# block sweep: seq {seq}, head_dim {head_dim}, window {window} (ms)")
    print(f"{'BM, BN, warps, stages':>24} {'rerope':>8} {'leaky':>8}")
    for config in CONFIGS:
        times = []
        for leaky in (None, 16.0):
            try:
                times.append(median_ms(lambda: launch_rerope(q, k, v, inv_freq, window, leaky, None, "half", config)))
            except Exception as err:  # out of shared memory / registers for this config
                times.append(float("nan"))
                print(f"  {config}: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
        print(f"{str(config):>24} {times[0]:8.3f} {times[1]:8.3f}")


def versus_baselines(seqs, window=512, head_dim=128):
    print(f"\n# B1 H32 D{head_dim} bf16 causal, window {window}: median ms (peak extra MB)")
    print(f"{'seq':>6} {'sdpa':>8} {'rerope':>8} {'leaky':>8} {'paper':>8} {'reference':>10} "
          f"{'rerope/sdpa':>11} {'ref/rerope':>10} {'MB fused':>9} {'MB ref':>9}")
    for seq in seqs:
        q, k, v = inputs(seq, head_dim=head_dim)
        inv_freq = rope_frequencies(head_dim)[0].cuda()
        cos, sin = rope_cos_sin(torch.arange(seq, device="cuda"), inv_freq)
        # SDPA takes (batch, heads, seq, head_dim): the transposed views of the rotated tensors
        rq, rk = (apply_rope(x, cos[:, None], sin[:, None]).transpose(1, 2) for x in (q, k))
        vh = v.transpose(1, 2)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            sdpa = median_ms(lambda: torch.nn.functional.scaled_dot_product_attention(rq, rk, vh, is_causal=True))
        fused = lambda leaky=None, layout="half": launch_rerope(q, k, v, inv_freq, window, leaky, None, layout)  # noqa: E731
        t_rerope, t_leaky = median_ms(fused), median_ms(lambda: fused(16.0))
        t_paper = median_ms(lambda: fused(None, "paper"))
        mb_fused = peak_mb(fused)
        try:
            t_ref = median_ms(lambda: reference(q, k, v, inv_freq, window))
            mb_ref = peak_mb(lambda: reference(q, k, v, inv_freq, window))
        except torch.OutOfMemoryError:
            t_ref = mb_ref = float("nan")
        torch.cuda.empty_cache()
        print(f"{seq:6d} {sdpa:8.3f} {t_rerope:8.3f} {t_leaky:8.3f} {t_paper:8.3f} {t_ref:10.3f} "
              f"{t_rerope / sdpa:11.2f} {t_ref / t_rerope:10.1f} {mb_fused:9.1f} {mb_ref:9.0f}")


def check(seq=2048, window=300):
    """The tuned kernel against the reference, on the GPU, before any timing."""
    q, k, v = inputs(seq, heads=8)
    inv_freq = rope_frequencies(128)[0].cuda()
    for leaky, layout in ((None, "half"), (16.0, "half"), (None, "paper"), (16.0, "paper")):
        out = launch_rerope(q, k, v, inv_freq, window, leaky, 1024, layout).float()
        ref = reference(q.double(), k.double(), v.double(), inv_freq.double(), window, leaky_factor=leaky,
                        log_n_train_length=1024, layout=layout).float()
        error = (out - ref).abs().max().item()
        print(f"check seq {seq} leaky={leaky} {layout}: max |fused − reference| = {error:.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-sweep", action="store_true", help="skip the block-size sweep")
    parser.add_argument("--head-dims", type=int, nargs="+", default=[128, 64], help="head_dims to sweep")
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__)
    for leaky in (False, True):
        print(f"default blocks (BM, BN, warps, stages), leaky={leaky}, half layout:",
              block_sizes(128, torch.bfloat16, leaky, False, False), "for d=128,",
              block_sizes(64, torch.bfloat16, leaky, False, False), "for d=64")
    check()
    if not args.no_sweep:
        for head_dim in args.head_dims:
            sweep(8192, head_dim)
    versus_baselines([4096, 8192, 16384])
    print(f"\nsoftmax scale 1/sqrt(d) = {1 / math.sqrt(128):.4f}; SDPA times exclude rotating q and k")
