"""Tune and time ropekit.kernels.apply_rope_qk on a CUDA GPU.

    python benchmarks/gpu_rope_tune.py            # timings against a plain copy and torch.compile
    python benchmarks/gpu_rope_tune.py --sweep    # sweep block sizes and warps instead

RoPE is memory-bound, so the yardstick is a copy of the same bytes (q.clone(); k.clone()):
a kernel that reads q and k once and writes them once cannot beat it. Times are medians
(and 20th/80th percentiles) of ropekit.bench.time_samples, CUDA events after an L2 flush
before every run (the method of triton.testing.do_bench), so small shapes are timed from
HBM too. Host overhead is timed separately by ropekit.bench.host_us_per_call, wall-clock
per call of a loop of calls on a one-token shape, where the GPU work is negligible.

This is the kernel author's tuning script; ropekit.bench is the benchmark harness.
"""

import argparse
import functools
import itertools

import torch
import triton
import triton.language as tl

import ropekit
from ropekit.bench import host_us_per_call, percentiles, time_samples
from ropekit.kernels import apply_rope_qk
from ropekit.reference import apply_rope_qk as apply_rope_qk_reference
from ropekit.kernels import rope as rope_module
from ropekit.kernels import rope_triton

Q_HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
# (batch, seq, hf_layout): hf_layout passes q.transpose(1, 2) of a (batch, heads, seq, head_dim) tensor
SHAPES = [(1, 1024, True), (1, 16384, True), (4, 8192, True), (8, 2048, True), (1, 1024, False), (4, 8192, False)]


def bench(fn, reps=200):
    """Median, 20th and 80th percentile in microseconds of ``reps`` runs after 25 warm-up runs."""
    return percentiles(time_samples(fn, "cuda", reps=reps, warmup=25), 0.5, 0.2, 0.8)


def inputs(batch, seq, dtype=torch.bfloat16, hf_layout=False):
    if hf_layout:
        q = torch.randn(batch, Q_HEADS, seq, HEAD_DIM, device="cuda", dtype=dtype).transpose(1, 2)
        k = torch.randn(batch, KV_HEADS, seq, HEAD_DIM, device="cuda", dtype=dtype).transpose(1, 2)
    else:
        q = torch.randn(batch, seq, Q_HEADS, HEAD_DIM, device="cuda", dtype=dtype)
        k = torch.randn(batch, seq, KV_HEADS, HEAD_DIM, device="cuda", dtype=dtype)
    inv_freq, _ = ropekit.rope_frequencies(HEAD_DIM)
    inv_freq = inv_freq.cuda()
    cos, sin = ropekit.rope_cos_sin(torch.arange(seq, device="cuda"), inv_freq)
    return q, k, cos, sin, inv_freq


def gbps(nbytes, us):
    return nbytes / us / 1e3


def environment():
    props = torch.cuda.get_device_properties(0)
    print(f"# {props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}, triton {triton.__version__}")
    print(f"# tl.reshape: {hasattr(tl, 'reshape')}, tl.split: {hasattr(tl, 'split')}, tl.join: {hasattr(tl, 'join')}")


def compiled_stats(layout, batch=1, seq=1024):
    """Registers, spills and the width of global loads/stores in the PTX of the chosen config."""
    q, k, cos, sin, _ = inputs(batch, seq)
    kernel = rope_triton.rope_qk_kernel
    kernel.device_caches.clear()
    rope_triton.COMPILED_LAUNCHERS.clear()
    apply_rope_qk(q, k, cos, sin, layout)
    (compiled,) = kernel.device_caches[torch.cuda.current_device()][0].values()
    ptx = compiled.asm["ptx"]
    count = lambda s: ptx.count(s)  # noqa: E731
    config = rope_triton.BLOCK_SIZE_CACHE[(Q_HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM, 2, layout == "paper", "table", False)]
    assert compiled.asm["ptx"].count("ld.global.v4") > 0, "q/k loads are not 16-byte vectors"
    print(f"# {layout}: config (BLOCK_S, BLOCK_HQ, BLOCK_HK, warps) = {config}; regs {compiled.n_regs}, "
          f"spills {compiled.n_spills}; ld.global.v4 {count('ld.global.v4')}, st.global.v4 {count('st.global.v4')}, "
          f"scalar ld.global.b16 {count('ld.global.b16')}, shared ld/st {count('ld.shared') + count('st.shared')}, "
          f"bar.sync {count('bar.sync')}")


def sweep():
    print("\n## sweep: forward, bf16, Hq32 Hkv8 d128, B4 S8192 (us, median)")
    configs = [(s, h, w) for s, h, w in itertools.product((1, 2, 4, 8), (8, 16, 32), (2, 4, 8))
               if s * h * HEAD_DIM <= 128 * 32 * w]  # at most 128 elements per thread
    batch, seq = 4, 8192
    for hf_layout, layout, table in itertools.product((True, False), ("half", "paper"), (True, False)):
        if not hf_layout and table:
            continue  # measured in the first round: (1, 32, 8, 8) at 0.98-0.99x copy
        key = (Q_HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM, 2, layout == "paper", "table" if table else "float32", hf_layout)
        default = rope_triton.pick_block_sizes(*key)
        q, k, cos, sin, inv_freq = inputs(batch, seq, hf_layout=hf_layout)
        run = (lambda: apply_rope_qk(q, k, cos, sin, layout)) if table else (
            lambda: apply_rope_qk(q, k, layout=layout, inv_freq=inv_freq))
        rope_triton.BLOCK_SIZE_CACHE[key] = default
        expected = run()
        copy_us = bench(lambda: (q.clone(), k.clone()))[0]
        results = []
        for block_s, block_h, warps in configs:
            config = (block_s, min(block_h, Q_HEADS), min(block_h, KV_HEADS), warps)
            rope_triton.BLOCK_SIZE_CACHE[key] = config
            try:
                out = run()
                assert torch.equal(out[0], expected[0]) and torch.equal(out[1], expected[1])
                us = bench(run, reps=60)[0]
            except Exception as err:  # a config that does not compile or fit is skipped
                print(f"#   {config}: {type(err).__name__}: {str(err)[:100]}")
                continue
            results.append((us, config))
        results.sort()
        rope_triton.BLOCK_SIZE_CACHE[key] = default
        default_us = bench(run)[0]
        best = ", ".join(f"{c}: {us:.1f}" for us, c in results[:6])
        print(f"{'HF' if hf_layout else 'contiguous'} {layout} {'table' if table else 'inv_freq'}: copy {copy_us:.1f}; "
              f"default {default} {default_us:.1f}; best {best}; worst {results[-1][1]}: {results[-1][0]:.1f}")
        rope_triton.BLOCK_SIZE_CACHE.pop(key, None)


def timings():
    print("\n## time per call (us, median [p20-p80]) and x copy speed; bf16 Hq32 Hkv8 d128")
    print(f"{'shape':17s} {'what':34s} {'us':>22s} {'GB/s':>7s} {'x copy':>7s}")
    for batch, seq, hf_layout in SHAPES:
        torch._dynamo.reset()  # a fresh torch.compile reference for each shape, never a fallback
        reference = {layout: torch.compile(functools.partial(apply_rope_qk_reference, layout=layout), dynamic=False)
                     for layout in ("half", "paper")}
        q, k, cos, sin, inv_freq = inputs(batch, seq, hf_layout=hf_layout)
        nbytes = 2 * (q.numel() + k.numel()) * q.element_size()
        gq, gk = torch.randn_like(q), torch.randn_like(k)
        copy = bench(lambda: (q.clone(), k.clone()))
        rows = [("copy q.clone(); k.clone()", copy)]
        for layout in ("half", "paper"):
            rows.append((f"{layout} fwd table", bench(lambda: apply_rope_qk(q, k, cos, sin, layout))))
            rows.append((f"{layout} fwd inv_freq", bench(lambda: apply_rope_qk(q, k, layout=layout,
                                                                               inv_freq=inv_freq))))
            rows.append((f"{layout} fwd in place", bench(lambda: apply_rope_qk(q, k, cos, sin, layout,
                                                                              inplace=True))))
            qg, kg = q.detach().requires_grad_(), k.detach().requires_grad_()
            out = apply_rope_qk(qg, kg, cos, sin, layout)
            rows.append((f"{layout} bwd (autograd.grad)",
                         bench(lambda: torch.autograd.grad(out, (qg, kg), (gq, gk), retain_graph=True))))
            ref = reference[layout]
            rows.append((f"{layout} torch.compile fwd", bench(lambda: ref(q, k, cos, sin))))
            try:
                ref_out = ref(qg, kg, cos, sin)
                rows.append((f"{layout} torch.compile bwd", bench(
                    lambda: torch.autograd.grad(ref_out, (qg, kg), (gq, gk), retain_graph=True))))
            except Exception as err:
                print(f"# torch.compile backward not timed: {type(err).__name__}: {str(err)[:100]}")
        for what, (us, lo, hi) in rows:
            print(f"B{batch} S{seq:<6d} {'HF ' if hf_layout else 'BSHD'} {what:34s} {us:8.1f} [{lo:6.1f}-{hi:6.1f}] "
                  f"{gbps(nbytes, us):7.0f} "
                  f"{copy[0] / us:7.2f}")
        print(f"# q+k = {nbytes / 2 / 1e6:.0f} MB read + the same written")


def host_overhead():
    print("\n## host cost per call (us, wall clock over 2000 calls, one token: GPU work negligible)")
    q, k, cos, sin, inv_freq = inputs(1, 1)

    spec = rope_module.check_arguments(q, k, cos, sin, "half", False, None, None, None, 1.0, None)[2]
    spec_computed = rope_module.check_arguments(q, k, None, None, "half", False, None, 7, inv_freq, 1.0, None)[2]
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    qg, kg = q.detach().requires_grad_(), k.detach().requires_grad_()
    compiled = torch.compile(lambda q, k: apply_rope_qk(q, k, cos, sin), fullgraph=True)
    rows = [
        ("q.clone(); k.clone()", lambda: (q.clone(), k.clone())),
        ("torch.empty_like x2", lambda: (torch.empty_like(q), torch.empty_like(k))),
        ("argument checks (check_arguments)", lambda: rope_module.check_arguments(q, k, cos, sin, "half", False, None, None, None,
                                                               1.0, None)),
        ("launch only (launch_kernel), table", lambda: rope_triton.launch_kernel(q, k, q_out, k_out, spec)),
        ("launch only (launch_kernel), inv_freq", lambda: rope_triton.launch_kernel(q, k, q_out, k_out, spec_computed)),
        ("apply_rope_qk, table", lambda: apply_rope_qk(q, k, cos, sin)),
        ("apply_rope_qk, inv_freq + offset", lambda: apply_rope_qk(q, k, positions=7, inv_freq=inv_freq)),
        ("apply_rope_qk, in place", lambda: apply_rope_qk(q, k, cos, sin, inplace=True)),
        ("apply_rope_qk, autograd fwd", lambda: apply_rope_qk(qg, kg, cos, sin)),
        ("torch.compile(apply_rope_qk)", lambda: compiled(q, k)),
    ]
    for what, fn in rows:
        print(f"{what:36s} {host_us_per_call(fn, 'cuda', calls=2000, repeats=5, warmup=50):7.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="sweep block sizes and warps")
    args = parser.parse_args()
    environment()
    compiled_stats("half")
    compiled_stats("paper")
    if args.sweep:
        sweep()
    else:
        timings()
        host_overhead()


if __name__ == "__main__":
    main()
