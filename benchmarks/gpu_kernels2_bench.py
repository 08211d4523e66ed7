"""The second wave of kernels on a CUDA GPU: ReRoPE with its backward, and the fused decode write.

    python benchmarks/gpu_kernels2_bench.py --out benchmarks/results/h200-kernels2

(a) ReRoPE attention (``ropekit.kernels.rerope_attention``, window 512) against PyTorch's
    SDPA (causal, plain attention: the speed limit a fused ReRoPE kernel is measured by),
    B1, 32 heads, head_dim 128, bf16, seq 8192 and 16384, forward and forward + backward;
    extra memory at the peak of each call (CUDA allocator), which for ropekit is the
    output, the logsumexp and, in the backward, Δ and the gradients.
(b) A decode step's write at batch 1 .. 64, 32 query heads / 8 kv heads, head_dim 128,
    bf16, one new token per sequence at a different position in a 4096-slot cache:
    ``fused`` = ``ropekit.kernels.rope_decode_append`` (one launch) against ``unfused`` =
    ``apply_rope_qk`` (in-kernel angles, per-sequence offsets) followed by one
    ``index_put_`` per cache (rotated k, v), the path a decoder takes without the fused
    kernel. At batch 64 also the bytes the step must move (read q, k, v; write rotated q,
    the k row and the v row) against a plain copy of as many bytes.

Two clocks, reported separately. GPU time: (a) CUDA events around each call after an L2
flush (``ropekit.bench.measure.time_samples``), median of ``--reps``; (b) 50 calls captured
in one CUDA graph and replayed, time per call (the kernels back to back, no host in the
way). Host time: wall clock per eager call over a loop of calls
(``ropekit.bench.measure.host_us_per_call``), what a decoder pays when it does not capture.
The sweep runs ``--rounds`` times; ``spread`` is (max − min) / median of the rounds' values.

Writes ``rerope.csv``, ``decode.csv``, ``meta.json`` and ``README.md`` (device, versions,
date, command, tables) into ``--out``. ``--smoke`` runs every code path on tiny shapes on
any device (with ``TRITON_INTERPRET=1`` on a CPU); its numbers mean nothing.
"""

import argparse
import json
import platform
import shlex
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
import triton

import ropekit
from ropekit import rope_frequencies
from ropekit.bench.measure import host_us_per_call, peak_extra_mb, time_samples
from ropekit.bench.tables import markdown_table, write_rows
from ropekit.kernels import apply_rope_qk, rerope_attention, rope_decode_append

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16
GRAPH_CALLS = 50


# --- (a) ReRoPE against SDPA -------------------------------------------------------------


def rerope_calls(seq, heads, head_dim, window, device):
    """{(provider, pass): zero-argument call} on fresh random bf16 inputs."""
    gen = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(1, seq, heads, head_dim, generator=gen).to(device, DTYPE) for _ in range(4))
    inv_freq = rope_frequencies(head_dim)[0].to(device)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]

    def ropekit_fwd():
        with torch.no_grad():
            return rerope_attention(q, k, v, inv_freq, window)

    def ropekit_fwd_bwd():
        return torch.autograd.grad(rerope_attention(*leaves, inv_freq, window), leaves, grad)

    def sdpa(q, k, v):  # SDPA wants (batch, heads, seq, head_dim): a transposed view, no copy
        out = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return out.transpose(1, 2)

    def sdpa_fwd():
        with torch.no_grad():
            return sdpa(q, k, v)

    def sdpa_fwd_bwd():
        return torch.autograd.grad(sdpa(*leaves), leaves, grad)

    return {("ropekit", "fwd"): ropekit_fwd, ("ropekit", "fwd+bwd"): ropekit_fwd_bwd,
            ("sdpa", "fwd"): sdpa_fwd, ("sdpa", "fwd+bwd"): sdpa_fwd_bwd}


def run_rerope(seqs, heads, head_dim, window, reps, rounds, device):
    per_round = {}
    memory = {}
    for seq in seqs:
        calls = rerope_calls(seq, heads, head_dim, window, device)
        for key, call in calls.items():
            memory[(seq, *key)] = peak_extra_mb(call, device)
        for _ in range(rounds):  # rounds interleave the providers
            for key, call in calls.items():
                per_round.setdefault((seq, *key), []).append(statistics.median(time_samples(call, device, reps, 3)))
        del calls
        if device == "cuda":
            torch.cuda.empty_cache()
    rows = []
    for (seq, provider, pass_), times in per_round.items():
        median = statistics.median(times)
        sdpa = statistics.median(per_round[(seq, "sdpa", pass_)])
        rows.append(dict(seq=seq, heads=heads, head_dim=head_dim, window=window, provider=provider, pass_=pass_,
                         gpu_us=round(median, 1), spread=round((max(times) - min(times)) / median, 3),
                         speed_vs_sdpa=round(sdpa / median, 3), extra_mb=_round(memory[(seq, provider, pass_)])))
    return rows


# --- (b) the decode write ------------------------------------------------------------------


def decode_calls(batch, heads, kv_heads, head_dim, max_seq, device):
    """{"fused" | "unfused": call}, plus the bytes the step must move."""
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(batch, 1, heads, head_dim, generator=gen).to(device, DTYPE)
    k, v = (torch.randn(batch, 1, kv_heads, head_dim, generator=gen).to(device, DTYPE) for _ in range(2))
    k_cache, v_cache = (torch.zeros(batch, max_seq, kv_heads, head_dim, dtype=DTYPE, device=device) for _ in range(2))
    positions = torch.randint(0, max_seq - 1, (batch,), generator=gen).to(device)
    rows = torch.arange(batch, device=device)
    inv_freq = rope_frequencies(head_dim)[0].to(device)

    def fused():
        return rope_decode_append(q, k, v, v_cache, positions, inv_freq, rotated_k_cache=k_cache)

    def unfused():
        q_rot, k_rot = apply_rope_qk(q, k, inv_freq=inv_freq, positions=positions)
        k_cache.index_put_((rows, positions), k_rot[:, 0])
        v_cache.index_put_((rows, positions), v[:, 0])
        return q_rot

    # read q, k, v once; write the rotated q, the k row and the v row once
    nbytes = 2 * (q.numel() + k.numel() + v.numel()) * q.element_size()
    flat = torch.empty(nbytes // 2 // q.element_size(), dtype=DTYPE, device=device)

    def copy():  # the same bytes through one copy kernel: read nbytes / 2, write nbytes / 2
        return flat.clone()

    return {"fused": fused, "unfused": unfused, "copy": copy}, nbytes


def graph_us_per_call(fn, device, reps):
    """GPU time of one call: GRAPH_CALLS calls captured in one CUDA graph, replayed ``reps``
    times, CUDA events around each replay, median / GRAPH_CALLS. Off CUDA: wall clock."""
    if device != "cuda":
        return statistics.median(time_samples(fn, device, reps, 1))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(GRAPH_CALLS):
            fn()
    return statistics.median(time_samples(graph.replay, device, reps, 3)) / GRAPH_CALLS


def run_decode(batches, heads, kv_heads, head_dim, max_seq, reps, rounds, host_calls, device):
    rows = []
    for batch in batches:
        calls, nbytes = decode_calls(batch, heads, kv_heads, head_dim, max_seq, device)
        gpu = {name: [] for name in calls}
        host = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                gpu[name].append(graph_us_per_call(call, device, reps))
                host[name].append(host_us_per_call(call, device, calls=host_calls, repeats=3, warmup=10))
        for name in calls:
            g, h = statistics.median(gpu[name]), statistics.median(host[name])
            rows.append(dict(
                batch=batch, heads=heads, kv_heads=kv_heads, head_dim=head_dim, provider=name, bytes=nbytes,
                gpu_us=round(g, 2), gpu_spread=round((max(gpu[name]) - min(gpu[name])) / g, 3),
                host_us=round(h, 2), host_spread=round((max(host[name]) - min(host[name])) / h, 3),
                gb_per_s=round(nbytes / g / 1e3, 1),
                fused_speedup_gpu=round(statistics.median(gpu["unfused"]) / g, 2) if name == "fused" else "",
                fused_speedup_host=round(statistics.median(host["unfused"]) / h, 2) if name == "fused" else "",
                fraction_of_copy=round(statistics.median(gpu["copy"]) / g, 3)))
    return rows


# --- output ----------------------------------------------------------------------------


def _round(x):
    return None if x is None else round(x, 1)


def write_readme(out, meta, rerope_rows, decode_rows):
    text = f"""# ReRoPE forward + backward and the fused decode write on {meta['device']}, {meta['date'][:10]}

- **Device**: {meta['device']}
- **Software**: Python {meta['python']}, torch {meta['torch']} (CUDA {meta['cuda']}), triton {meta['triton']},
  ropekit {meta['ropekit']}
- **Date**: {meta['date']}
- **Command** (repository root): `{meta['command']}`

What each column means: the docstring of `benchmarks/gpu_kernels2_bench.py`. Rounds: {meta['rounds']};
`spread` = (max − min) / median over the rounds.

## (a) ReRoPE (w = {meta['window']}) vs SDPA, B1, {meta['heads']} heads, d {meta['head_dim']}, bf16, causal

GPU time (CUDA events after an L2 flush, median of {meta['reps']}); `speed_vs_sdpa` = SDPA's time / this
time for the same pass; `extra_mb` = peak memory a call allocates beyond its inputs (MiB).

{markdown_table(rerope_rows, ['seq', 'provider', 'pass_', 'gpu_us', 'spread', 'speed_vs_sdpa', 'extra_mb'])}

## (b) Decode write, {meta['decode_heads']} / {meta['decode_kv_heads']} heads, d {meta['head_dim']}, bf16, 1 new token

`gpu_us`: per call, from {GRAPH_CALLS} calls in one replayed CUDA graph. `host_us`: wall clock per eager call.
`fused_speedup_*` = unfused / fused. `fraction_of_copy` = a copy of `bytes` / this call (GPU time).

{markdown_table(decode_rows, ['batch', 'provider', 'bytes', 'gpu_us', 'gpu_spread', 'host_us', 'host_spread',
                              'gb_per_s', 'fused_speedup_gpu', 'fused_speedup_host', 'fraction_of_copy'])}
"""
    (out / "README.md").write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the CSVs, meta.json and README.md")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, every code path, numbers meaningless")
    args = parser.parse_args(argv)
    if DEVICE != "cuda" and not args.smoke:
        sys.exit("needs a CUDA GPU (or --smoke with TRITON_INTERPRET=1)")
    if args.smoke:
        seqs, heads, window, batches, max_seq, reps, rounds, host_calls = [48], 2, 16, [1, 3], 64, 2, 2, 3
        decode_heads = (4, 2)
    else:
        seqs, heads, window, batches, max_seq, reps, rounds, host_calls = \
            [8192, 16384], 32, 512, [1, 2, 4, 8, 16, 32, 64], 4096, args.reps, args.rounds, 500
        decode_heads = (32, 8)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = dict(
        device=torch.cuda.get_device_name() if DEVICE == "cuda" else f"CPU ({platform.processor() or 'unknown'})",
        python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda, triton=triton.__version__,
        ropekit=getattr(ropekit, "__version__", "unknown"),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command="python " + shlex.join(["benchmarks/gpu_kernels2_bench.py",
                                        *(argv if argv is not None else sys.argv[1:])]),
        reps=reps, rounds=rounds, window=window, heads=heads, head_dim=128 if not args.smoke else 32,
        decode_heads=decode_heads[0],
        decode_kv_heads=decode_heads[1], smoke=args.smoke)
    rerope_rows = run_rerope(seqs, heads, 128 if not args.smoke else 32, window, reps, rounds, DEVICE)
    print(markdown_table(rerope_rows, ["seq", "provider", "pass_", "gpu_us", "spread", "speed_vs_sdpa", "extra_mb"]))
    decode_rows = run_decode(batches, *decode_heads, 128 if not args.smoke else 32, max_seq, reps, rounds,
                             host_calls, DEVICE)
    print(markdown_table(decode_rows, ["batch", "provider", "gpu_us", "host_us", "fused_speedup_gpu",
                                       "fraction_of_copy"]))
    write_rows(rerope_rows, args.out / "rerope.csv")
    write_rows(decode_rows, args.out / "decode.csv")
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_readme(args.out, meta, rerope_rows, decode_rows)
    print(f"wrote {args.out}/README.md, rerope.csv, decode.csv, meta.json")


if __name__ == "__main__":
    main()
