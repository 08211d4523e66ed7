"""Speed and accuracy of the RoPE kernel's three angle modes on a CUDA GPU.

    python benchmarks/gpu_exact_angles_bench.py --out benchmarks/results/h200-angles

Modes of ``ropekit.kernels.apply_rope_qk``, each against a copy of the same bytes
(``q.clone(); k.clone()``, the speed limit of a memory-bound pass):

* ``table``: cos/sin read from a per-token float32 table ``(1, seq, rotary_dim // 2)``;
* ``float32``: angles computed in the kernel as one float32 product m·θ_i (``inv_freq=``);
* ``exact``: angles computed in the kernel from 64-bit fixed-point turns
  (``inv_freq=fixed_point_turns(...)``, ``angles="exact"``);
* ``float32@table_blocks``, ``exact@table_blocks``: the same with the table mode's block
  sizes, which the in-kernel modes used before they got their own (the docstring of
  ``rope_triton.pick_block_sizes`` says why): the before/after of that change.

Shapes: bf16 q and k with 32 query heads, 8 key heads, head_dim 128, in ropekit's
(batch, seq, heads, head_dim) memory (``--hf`` adds Hugging Face's (batch, heads, seq,
head_dim) memory through ``q.transpose(1, 2)``), at q + k of 335 MB and 671 MB, both
layouts, position offsets 0 and 2^31 − seq (float32 angles take libdevice's slow
range reduction for large arguments; exact angles cost the same at every position).

What it measures and how. GPU time: CUDA events around each call, after writing a
256 MB buffer that evicts q and k from L2, median of ``--reps`` calls; the whole sweep
is repeated ``--rounds`` times and the spread of the per-round medians is reported, so a
reader sees how much runs agree. Host cost: wall-clock per call of 500 calls on a
one-token shape, where the GPU work is negligible. Accuracy: q = 1 on the first member of
every pair and 0 on the second turns the output into cos and sin themselves; they are
compared in float32 with float64 exact angles (``ropekit.exact_cos_sin``) at offsets up
to 2^31.

Writes ``results.csv`` (speed), ``accuracy.csv``, ``host.csv``, ``meta.json`` and a
``README.md`` with the device, versions, date, command and the tables, into ``--out``.

``--smoke`` runs every code path on tiny shapes in a few seconds, on the CPU too (with
``TRITON_INTERPRET=1``): a check that the script works, whose numbers mean nothing.
"""

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import os

import torch
import triton

import ropekit
from ropekit import exact_cos_sin, fixed_point_turns, rope_cos_sin, rope_frequencies
from ropekit.bench.tables import markdown_table, write_rows
from ropekit.kernels import apply_rope_qk, rope_triton

Q_HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
SHAPES = [(4, 8192), (4, 16384)]  # q + k = 335 MB and 671 MB in bf16
SMOKE_SHAPES = [(1, 4)]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
MODES = ("copy", "table", "float32", "exact", "float32@table_blocks", "exact@table_blocks")
LAYOUTS = ("half", "paper")
L2_FLUSH_BYTES = 256 * 2**20


def offsets_for(seq):
    return (0, 2**31 - seq)


# --- the calls being timed ------------------------------------------------------------


def make_call(mode, layout, q, k, offset, seq):
    """A zero-argument function running one mode on q, k at positions offset .. offset + seq − 1."""
    if mode == "copy":
        return lambda: (q.clone(), k.clone())
    if mode.endswith("@table_blocks"):
        angles = mode.split("@")[0]
        return with_table_block_sizes(make_call(angles, layout, q, k, offset, seq), layout, q, angles)
    inv_freq64, _ = rope_frequencies(HEAD_DIM, dtype=torch.float64)
    if mode == "table":
        cos, sin = rope_cos_sin(torch.arange(offset, offset + seq, device=q.device), inv_freq64.float().to(q.device))
        cos, sin = cos[None], sin[None]  # (1, seq, 64): per-token rows, like Hugging Face's
        return lambda: apply_rope_qk(q, k, cos, sin, layout=layout)
    if mode == "float32":
        inv_freq = inv_freq64.float().to(q.device)
        return lambda: apply_rope_qk(q, k, layout=layout, positions=offset, inv_freq=inv_freq)
    turns = fixed_point_turns(inv_freq64).to(q.device)  # once, on the host
    return lambda: apply_rope_qk(q, k, layout=layout, positions=offset, inv_freq=turns, angles="exact")


def with_table_block_sizes(fn, layout, q, angles):
    """fn (angles "float32" or "exact") run with the block sizes the launcher picks for a cos/sin table."""
    heads_outer = q.stride(2) > q.stride(1)
    key = (Q_HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM, q.element_size(), layout == "paper", angles, heads_outer)
    table_sizes = rope_triton.pick_block_sizes(*key[:6], "table", heads_outer)

    def call():
        own = rope_triton.BLOCK_SIZE_CACHE.get(key)
        rope_triton.BLOCK_SIZE_CACHE[key] = table_sizes
        try:
            return fn()
        finally:
            if own is None:
                rope_triton.BLOCK_SIZE_CACHE.pop(key)
            else:
                rope_triton.BLOCK_SIZE_CACHE[key] = own

    return call


def inputs(batch, seq, hf, dtype=torch.bfloat16):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    if hf:
        q = torch.randn(batch, Q_HEADS, seq, HEAD_DIM, device=DEVICE, dtype=dtype, generator=g).transpose(1, 2)
        k = torch.randn(batch, KV_HEADS, seq, HEAD_DIM, device=DEVICE, dtype=dtype, generator=g).transpose(1, 2)
    else:
        q = torch.randn(batch, seq, Q_HEADS, HEAD_DIM, device=DEVICE, dtype=dtype, generator=g)
        k = torch.randn(batch, seq, KV_HEADS, HEAD_DIM, device=DEVICE, dtype=dtype, generator=g)
    return q, k


def time_us(fn, reps, warmup=10):
    """Median GPU time of fn() in µs, each run after an L2 flush (CUDA events)."""
    for _ in range(warmup):
        fn()
    if DEVICE != "cuda":  # --smoke on a CPU: wall clock, meaningless but exercised
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - start) / reps * 1e6
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        flush.zero_()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends))


# --- the three measurements -------------------------------------------------------------


def measure_speed(args):
    rows = []
    memories = (False, True) if args.hf else (False,)
    for hf in memories:
        for batch, seq in (SMOKE_SHAPES if args.smoke else SHAPES):
            q, k = inputs(batch, seq, hf)
            nbytes = 2 * (q.numel() + k.numel()) * q.element_size()  # read + write q and k
            for layout in LAYOUTS:
                for offset in offsets_for(seq):
                    calls = {mode: make_call(mode, layout, q, k, offset, seq) for mode in MODES}
                    per_round = {mode: [] for mode in MODES}
                    for _ in range(args.rounds):
                        for mode in MODES:  # interleaved, so drifts of clock or temperature hit every mode
                            per_round[mode].append(time_us(calls[mode], args.reps, warmup=1 if args.smoke else 10))
                    copy_us = statistics.median(per_round["copy"])
                    for mode in MODES:
                        us = statistics.median(per_round[mode])
                        spread = (max(per_round[mode]) - min(per_round[mode])) / us
                        rows.append(dict(memory="bhsd" if hf else "bshd", layout=layout, mode=mode, batch=batch,
                                         seq=seq, offset=offset, mbytes=round(nbytes / 2**20, 1), us=round(us, 2),
                                         gbps=round(nbytes / us / 1e3, 1), vs_copy=round(copy_us / us, 3),
                                         round_spread=round(spread, 4)))
                        print(f"{rows[-1]['memory']} {layout:5s} B{batch} S{seq} offset {offset:>10}: {mode:20s} "
                              f"{us:8.1f} µs  {rows[-1]['gbps']:7.1f} GB/s  {rows[-1]['vs_copy']:.3f}× copy  "
                              f"(rounds agree within {100 * spread:.1f}%)", flush=True)
            del q, k
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    return rows


def measure_accuracy(seq=4096):
    """Largest |Δcos|, |Δsin| of the kernel's own cos/sin against float64 exact angles."""
    rows = []
    inv_freq64, _ = rope_frequencies(HEAD_DIM, dtype=torch.float64)
    for layout in LAYOUTS:
        q = torch.zeros(1, seq, 1, HEAD_DIM, device=DEVICE)
        first = slice(0, HEAD_DIM // 2) if layout == "half" else slice(0, HEAD_DIM, 2)
        second = slice(HEAD_DIM // 2, HEAD_DIM) if layout == "half" else slice(1, HEAD_DIM, 2)
        q[..., first] = 1.0  # (a, b) = (1, 0) turns into (cos φ, sin φ)
        for offset in (0, 10**6, 10**7, 2**31 - seq):
            positions = torch.arange(offset, offset + seq)
            cos_true, sin_true = exact_cos_sin(positions, inv_freq64, dtype=torch.float64)
            for mode in ("float32", "exact"):
                if mode == "float32":
                    out, _ = apply_rope_qk(q, q.clone(), layout=layout, positions=offset,
                                           inv_freq=inv_freq64.float().to(DEVICE))
                    cos_spec, _ = rope_cos_sin(positions, inv_freq64.float())
                else:
                    out, _ = apply_rope_qk(q, q.clone(), layout=layout, positions=offset,
                                           inv_freq=fixed_point_turns(inv_freq64).to(DEVICE), angles="exact")
                    cos_spec, _ = exact_cos_sin(positions, inv_freq64)
                cos, sin = out[0, :, 0, first].double().cpu(), out[0, :, 0, second].double().cpu()
                error = max((cos - cos_true).abs().max().item(), (sin - sin_true).abs().max().item())
                rows.append(dict(layout=layout, mode=mode, first_position=offset, last_position=offset + seq - 1,
                                 max_error_vs_exact=f"{error:.3g}",
                                 max_cos_diff_vs_torch_spec=f"{(cos - cos_spec.double()).abs().max().item():.3g}"))
                print(f"accuracy {layout:5s} {mode:7s} positions {offset}..{offset + seq - 1}: max error {error:.3g}")
    return rows


def synchronize():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def measure_host(calls=500):
    """Wall-clock µs per call on a one-token shape: what the GPU waits for when work is tiny."""
    rows = []
    q, k = inputs(1, 1, hf=False)
    for layout in LAYOUTS:
        for mode in MODES:
            fn = make_call(mode, layout, q, k, 0, 1)
            for _ in range(min(20, calls)):
                fn()
            synchronize()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            synchronize()
            us = (time.perf_counter() - start) / calls * 1e6
            rows.append(dict(layout=layout, mode=mode, host_us_per_call=round(us, 2)))
            print(f"host {layout:5s} {mode:20s} {us:6.1f} µs per call")
    return rows


# --- output -------------------------------------------------------------------------------


def write_readme(out, meta, speed, accuracy, host):
    kernel_rows = [r for r in speed if r["mode"] != "copy"]
    text = f"""# RoPE angle modes on {meta['device']}, {meta['date'][:10]}

- **Device**: {meta['device']}
- **Software**: Python {meta['python']}, torch {meta['torch']} (CUDA {meta['cuda']}), triton {meta['triton']}, ropekit {meta['ropekit']}
- **Date**: {meta['date']}
- **Command** (repository root): `{meta['command']}`

bf16 q (32 heads) and k (8 heads), head_dim 128; `vs_copy` is the speed of `q.clone(); k.clone()`
divided by the mode's (1.0 = as fast as a copy). Times are medians of {meta['reps']} CUDA-event
timings after an L2 flush, median over {meta['rounds']} interleaved rounds; `round_spread` is
(max − min) / median of the per-round medians. Files: `results.csv`, `accuracy.csv`,
`host.csv`, `meta.json` (with the block sizes each mode ran with).

## Speed

{markdown_table(kernel_rows, ["memory", "layout", "mode", "batch", "seq", "offset", "mbytes", "us", "gbps", "vs_copy", "round_spread"])}

## Accuracy of the kernel's cos/sin (float32 output) against float64 exact angles

{markdown_table(accuracy, ["layout", "mode", "first_position", "last_position", "max_error_vs_exact", "max_cos_diff_vs_torch_spec"])}

## Host cost per call (one token)

{markdown_table(host, ["layout", "mode", "host_us_per_call"])}
"""
    (out / "README.md").write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for CSV, meta.json and README.md")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hf", action="store_true", help="also time Hugging Face's (batch, heads, seq, head_dim) memory")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one round: check that the script runs")
    args = parser.parse_args(argv)
    if DEVICE != "cuda" and not (args.smoke and os.environ.get("TRITON_INTERPRET") == "1"):
        sys.exit("this benchmark needs a CUDA GPU (or --smoke with TRITON_INTERPRET=1)")
    if args.smoke:
        args.reps, args.rounds = 2, 1
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (Triton interpreter, --smoke)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/gpu_exact_angles_bench.py", *(argv or sys.argv[1:])]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "smoke": args.smoke,
        "ropekit": ropekit.__version__,
        "reps": args.reps,
        "rounds": args.rounds,
    }
    speed = measure_speed(args)
    # (q_heads, k_heads, head_dim, rotary_dim, itemsize, paper, table, heads_outer) -> (BLOCK_S, BLOCK_HQ, BLOCK_HK, warps)
    meta["block_sizes"] = {str(key): list(config) for key, config in rope_triton.BLOCK_SIZE_CACHE.items()}
    accuracy = measure_accuracy(seq=8 if args.smoke else 4096)
    host = measure_host(calls=3 if args.smoke else 500)
    write_rows(speed, args.out / "results.csv")
    write_rows(accuracy, args.out / "accuracy.csv")
    write_rows(host, args.out / "host.csv")
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_readme(args.out, meta, speed, accuracy, host)
    print(f"wrote {args.out}/README.md, results.csv, accuracy.csv, host.csv, meta.json")


if __name__ == "__main__":
    main()
