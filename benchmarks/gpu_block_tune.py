"""Block sizes for the RoPE and M-RoPE kernels' in-kernel angle modes, timed on a CUDA GPU.

    python benchmarks/gpu_block_tune.py --out tune_out

A tuning sweep, not a result a claim rests on: it times each kernel mode with each
candidate (BLOCK_S, BLOCK_HQ, BLOCK_HK, num_warps) against a copy of the same bytes
(``q.clone(); k.clone()``) and writes ``tune.csv`` with one row per (case, config) and
its fraction of copy speed. The launchers' choices (``rope_triton.pick_block_sizes``) are
set from it; the committed benchmarks then measure what they pick.

Cases (bf16, forward, L2 flushed before each call, median of ``--reps``):

* ``rope/<angles>/<layout>``: ``apply_rope_qk`` with a table, float32 or exact angles,
  positions from the sequence index; ``rope-ids/float32/half``: the same from a
  ``(batch, seq)`` position_ids tensor;
* ``mrope-<model>/<angles>``: ``apply_mrope_qk`` with Qwen2-VL's sections or Qwen3-VL's
  interleave, (3, batch, seq) positions.

The block sizes are swapped through the launchers' caches (``BLOCK_SIZE_CACHE`` and
``mrope.block_sizes``), so the kernel code is exactly the shipped one.
"""

import argparse
import statistics
from pathlib import Path

import torch

import ropekit
from ropekit import fixed_point_turns, rope_frequencies
from ropekit.bench.measure import time_samples
from ropekit.kernels import apply_mrope_qk, apply_rope_qk, mrope as mrope_kernel, rope_triton
from ropekit.bench.tables import write_rows

HEAD_DIM = 128
MODELS = {  # q heads, kv heads, sections, interleaved
    "llama": (32, 8, None, None),
    "qwen2-vl-7b": (28, 4, (16, 24, 24), False),
    "qwen3-vl-8b": (32, 8, (24, 20, 20), True),
}
CONFIGS = [  # (BLOCK_S, BLOCK_HQ, BLOCK_HK, num_warps)
    (1, 32, 8, 4), (1, 32, 8, 8), (2, 16, 8, 4), (2, 32, 8, 4), (2, 32, 8, 8), (4, 8, 8, 4), (4, 16, 8, 8),
    (4, 32, 8, 8), (4, 4, 4, 4), (8, 4, 4, 4), (8, 8, 8, 8), (16, 4, 4, 8),
]


def time_us(fn, reps):
    """Median GPU time of fn() in µs: CUDA events after an L2 flush (ropekit.bench.measure)."""
    return statistics.median(time_samples(fn, "cuda", reps, 5))


def cases(batch, seq):
    """{case name: (model, call, set_config)}; set_config(config or None) swaps the block sizes."""
    g = torch.Generator(device="cuda").manual_seed(0)
    out = {}
    for model, (q_heads, kv_heads, sections, interleaved) in MODELS.items():
        q = torch.randn(batch, seq, q_heads, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(batch, seq, kv_heads, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=g)
        inv_freq = rope_frequencies(HEAD_DIM, 1_000_000.0)[0].cuda()
        turns = fixed_point_turns(rope_frequencies(HEAD_DIM, 1_000_000.0, dtype=torch.float64)[0]).cuda()
        copy = (lambda q=q, k=k: (q.clone(), k.clone()))
        if sections is None:
            cos, sin = ropekit.rope_cos_sin(torch.arange(seq), inv_freq.cpu())
            cos, sin = cos.cuda(), sin.cuda()
            ids = torch.arange(seq, device="cuda").expand(batch, seq).contiguous()
            for layout in ("half", "paper"):
                calls = {
                    "table": lambda q=q, k=k, layout=layout: apply_rope_qk(q, k, cos, sin, layout),
                    "float32": lambda q=q, k=k, layout=layout: apply_rope_qk(q, k, layout=layout, inv_freq=inv_freq),
                    "exact": lambda q=q, k=k, layout=layout: apply_rope_qk(q, k, layout=layout, inv_freq=turns,
                                                                          angles="exact"),
                }
                for angles, call in calls.items():
                    key = (q_heads, kv_heads, HEAD_DIM, HEAD_DIM, 2, layout == "paper", angles, False)
                    out[f"rope/{angles}/{layout}"] = (model, call, copy, rope_setter(key))
            key = (q_heads, kv_heads, HEAD_DIM, HEAD_DIM, 2, False, "float32", False)
            out["rope-ids/float32/half"] = (
                model, lambda q=q, k=k: apply_rope_qk(q, k, positions=ids, inv_freq=inv_freq), copy, rope_setter(key))
        else:
            positions = torch.arange(seq, device="cuda").expand(3, batch, seq).contiguous()
            positions[1:, :, seq // 4: seq // 4 + 1024] //= 3  # an "image" span whose h/w ids differ from t
            for angles, freq in (("float32", inv_freq), ("exact", turns)):
                call = (lambda q=q, k=k, freq=freq, angles=angles, sections=sections, interleaved=interleaved:
                        apply_mrope_qk(q, k, positions, freq, sections, interleaved, angles=angles))
                out[f"mrope-{model}/{angles}"] = (model, call, copy, mrope_setter())
    return out


def rope_setter(key):
    def set_config(config):
        rope_triton.BLOCK_SIZE_CACHE.pop(key, None)
        if config is not None:
            rope_triton.BLOCK_SIZE_CACHE[key] = config
    return set_config


def mrope_setter():
    shipped = mrope_kernel.block_sizes

    def set_config(config):
        mrope_kernel.block_sizes = shipped if config is None else (lambda *args: config)
    return set_config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--shapes", default="4x8192,4x16384")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for shape in args.shapes.split(","):
        batch, seq = map(int, shape.split("x"))
        for name, (model, call, copy, set_config) in cases(batch, seq).items():
            copy_us = time_us(copy, args.reps)
            for config in [None] + CONFIGS:
                set_config(config)
                try:
                    us = time_us(call, args.reps)
                except Exception as error:  # a config the compiler rejects: note it, go on
                    print(f"{name} {config}: {type(error).__name__}: {str(error)[:120]}")
                    continue
                finally:
                    set_config(None)
                label = "shipped" if config is None else "x".join(map(str, config))
                rows.append(dict(shape=shape, case=name, config=label, us=round(us, 1), copy_us=round(copy_us, 1),
                                 vs_copy=round(copy_us / us, 3)))
            best = max((r for r in rows if r["case"] == name and r["shape"] == shape), key=lambda r: r["vs_copy"])
            shipped = next(r for r in rows if r["case"] == name and r["shape"] == shape and r["config"] == "shipped")
            print(f"{shape:>8} {name:28} shipped {shipped['vs_copy']:.3f}  best {best['config']:>10} "
                  f"{best['vs_copy']:.3f}", flush=True)
            del call, copy
        torch.cuda.empty_cache()
    write_rows(rows, args.out / "tune.csv")


if __name__ == "__main__":
    main()
