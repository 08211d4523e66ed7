"""Time ropekit.kernels.apply_mrope_qk (M-RoPE, angles in-kernel) on a CUDA GPU.

    python benchmarks/gpu_mrope_bench.py --out benchmarks/results/h200-mrope

Providers, on bf16 q and k of shape (batch, seq, heads, head_dim) with (3, batch, seq)
position ids:

* ``copy``: ``q.clone(); k.clone()``, the yardstick: RoPE is bound by memory, and a kernel
  that reads q and k once and writes them once cannot beat a copy of the same bytes;
* ``ropekit``: ``ropekit.kernels.apply_mrope_qk``, one launch for q and k, float32 angles
  (the default, as transformers forms them);
* ``ropekit-exact``: the same kernel with ``angles="exact"``, given the int64
  ``ropekit.fixed_point_turns`` made once outside the timed call (as a model holds them);
* ``ropekit-1d``: ``ropekit.kernels.apply_rope_qk`` with in-kernel angles from the t ids
  alone (plain 1-D RoPE, for what the three axes cost on top);
* ``eager``: the transformers formula as a Qwen-VL model runs it: the text rotary
  embedding's cos/sin from the position ids (``Qwen2VLTextRotaryEmbedding`` or
  ``Qwen3VLTextRotaryEmbedding``), then ``apply_rotary_pos_emb``;
* ``compile``: ``torch.compile`` of that same function.

Two model shapes: Qwen2-VL-7B (28 query heads, 4 kv heads, head_dim 128, sections
16/24/24) and Qwen3-VL-8B-like (32/8/128, sections 24/20/20 interleaved). Sizes from
34 MB (Qwen2-VL, 1 × 4096 tokens) to 671 MB (Qwen3-VL, 4 × 16384) of q + k. Passes:
forward, and forward + backward (the backward of ropekit is the same kernel rotating by
−θ; the copy yardstick is then two copies).

Device times are medians (and 20th/80th percentiles) of triton.testing.do_bench, which
flushes the L2 cache before each run; the whole sweep is repeated ``--repeats`` times and
the README reports the spread of the medians across repeats. Host overhead (what a call
costs the CPU: argument checks, launch) is timed apart as wall-clock per call on a
one-token shape, where the GPU work is negligible.

``--quick`` times only the shapes with q + k >= 256 MB (the ones issue 16's 0.95× target
is about), both models, ``--repeats`` times.

Writes into --out: results.csv (one row per provider, model, shape, pass, repeat),
host.csv, meta.json and README.md (device, versions, date, command, summary table).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

import ropekit
from ropekit import mrope
from ropekit.bench.tables import write_rows

MODELS = {
    # name: (q_heads, kv_heads, head_dim, sections, interleaved, transformers module)
    "qwen2-vl-7b": (28, 4, 128, (16, 24, 24), False, "qwen2_vl"),
    "qwen3-vl-8b": (32, 8, 128, (24, 20, 20), True, "qwen3_vl"),
}
SHAPES = [(1, 4096), (4, 8192), (4, 16384)]  # (batch, seq)
BASE = 1_000_000.0


def hf_functions(model):
    """The transformers rotary embedding module and apply_rotary_pos_emb of a Qwen-VL model."""
    import importlib

    q_heads, kv_heads, head_dim, sections, interleaved, name = MODELS[model]
    modeling = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
    configuration = importlib.import_module(f"transformers.models.{name}.configuration_{name}")
    config_cls = next(getattr(configuration, n) for n in dir(configuration) if n.endswith("TextConfig"))
    config = config_cls(hidden_size=q_heads * head_dim, num_attention_heads=q_heads, num_key_value_heads=kv_heads,
                        head_dim=head_dim,
                        rope_parameters={"rope_type": "default", "rope_theta": BASE, "mrope_section": list(sections)})
    rotary_cls = next(getattr(modeling, n) for n in dir(modeling)
                      if n.endswith("RotaryEmbedding") and "Vision" not in n)
    if hasattr(modeling, "apply_multimodal_rotary_pos_emb"):
        # older transformers: the rotary module returns per-axis cos/sin, sections applied here
        def apply(q, k, cos, sin, unsqueeze_dim):
            return modeling.apply_multimodal_rotary_pos_emb(q, k, cos, sin, list(sections), unsqueeze_dim)
    else:
        apply = modeling.apply_rotary_pos_emb
    return rotary_cls(config).cuda(), apply


def make_inputs(model, batch, seq, dtype=torch.bfloat16):
    q_heads, kv_heads, head_dim, sections, interleaved, _ = MODELS[model]
    q = torch.randn(batch, seq, q_heads, head_dim, device="cuda", dtype=dtype)
    k = torch.randn(batch, seq, kv_heads, head_dim, device="cuda", dtype=dtype)
    # A prompt of text, one 32 × 32 image and text again, as get_rope_index numbers it
    # (text only when the sequence is too short for the image).
    side = 32 if seq >= 2 * 32 * 32 else 0
    text = (seq - side * side) // 2
    types_ = torch.tensor([[0] * text + [1] * (side * side) + [0] * (seq - text - side * side)])
    positions, _ = mrope.mrope_position_ids(types_, torch.tensor([[1, side, side]]) if side else None)
    positions = positions.expand(3, batch, seq).contiguous().cuda()
    inv_freq, _ = ropekit.rope_frequencies(head_dim, BASE)
    return q, k, positions, inv_freq.cuda()


def providers(model):
    from ropekit.kernels import apply_mrope_qk, apply_rope_qk

    _, _, head_dim, sections, interleaved, _ = MODELS[model]
    rotary, apply_rotary_pos_emb = hf_functions(model)
    # Exact angles read int64 fixed-point turns; a model makes them once, so the timed call does not.
    turns = ropekit.fixed_point_turns(ropekit.rope_frequencies(head_dim, BASE)[0]).cuda()

    def hf(q, k, positions, inv_freq):
        cos, sin = rotary(q, positions)
        return apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)

    compiled = torch.compile(hf, dynamic=False)
    return {
        "copy": lambda q, k, p, f: (q.clone(), k.clone()),
        "ropekit": lambda q, k, p, f: apply_mrope_qk(q, k, p, f, sections, interleaved),
        "ropekit-exact": lambda q, k, p, f: apply_mrope_qk(q, k, p, turns, sections, interleaved, angles="exact"),
        "ropekit-1d": lambda q, k, p, f: apply_rope_qk(q, k, positions=p[0], inv_freq=f),
        "eager": hf,
        "compile": compiled,
    }


def check_agreement(model):
    """The kernel and the transformers formula agree (float32, small shape) before timing."""
    q, k, positions, _ = make_inputs(model, 2, 2048, torch.float32)
    fns = providers(model)
    # transformers' θ_i (a float32 power) can differ from ropekit's correctly rounded one
    # by an ulp, which at position 2000 moves the angle by ~1e-4 rad: compare with its θ.
    inv_freq = hf_functions(model)[0].inv_freq
    ours, theirs = fns["ropekit"](q, k, positions, inv_freq), fns["eager"](q, k, positions, inv_freq)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5)
    # Exact angles differ from float32 ones by up to m·θ·2^-24 rad: compare with the exact twin.
    _, _, head_dim, sections, interleaved, _ = MODELS[model]
    exact = fns["ropekit-exact"](q, k, positions, None)
    twin = mrope.apply_mrope_qk(q, k, positions, ropekit.rope_frequencies(head_dim, BASE)[0].cuda(), sections,
                                interleaved, angles="exact")
    for a, b in zip(exact, twin):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5)


def time_pass(fn, q, k, positions, inv_freq, backward):
    from triton.testing import do_bench

    if not backward:
        return do_bench(lambda: fn(q, k, positions, inv_freq), warmup=25, rep=200, quantiles=[0.5, 0.2, 0.8])
    qg, kg = q.detach().requires_grad_(), k.detach().requires_grad_()
    dq, dk = torch.randn_like(q), torch.randn_like(k)

    def step():
        out = fn(qg, kg, positions, inv_freq)
        torch.autograd.backward(out, (dq, dk))
        qg.grad = kg.grad = None

    return do_bench(step, warmup=10, rep=200, quantiles=[0.5, 0.2, 0.8])


def host_overhead(model, calls=2000):
    """Wall-clock microseconds per call on a one-token shape: the host's share of a call."""
    q, k, positions, inv_freq = make_inputs(model, 1, 1)
    rows = []
    for name, fn in providers(model).items():
        for _ in range(20):
            fn(q, k, positions, inv_freq)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn(q, k, positions, inv_freq)
        torch.cuda.synchronize()
        rows.append(dict(model=model, provider=name, us_per_call=1e6 * (time.perf_counter() - start) / calls))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for results.csv, host.csv, meta.json, README.md")
    parser.add_argument("--repeats", type=int, default=3, help="times the whole sweep is repeated")
    parser.add_argument("--quick", action="store_true", help="only the shapes with q + k >= 256 MB")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_mrope_bench.py needs a CUDA GPU (the interpreter says nothing about speed)")
    os.makedirs(args.out, exist_ok=True)
    import triton
    import transformers

    # one compiled graph per shape and pass: allow them all
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, limit, 64)
    models = list(MODELS)
    repeats = args.repeats
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for model in models:
        check_agreement(model)
        fns = providers(model)
        for batch, seq in SHAPES:
            q_heads, kv_heads, head_dim = MODELS[model][:3]
            if args.quick and batch * seq * (q_heads + kv_heads) * head_dim * 2 < 256e6:
                continue
            q, k, positions, inv_freq = make_inputs(model, batch, seq)
            nbytes = (q.numel() + k.numel()) * q.element_size()
            for repeat in range(repeats):
                for backward in (False, True):
                    for name, fn in fns.items():
                        median, p20, p80 = time_pass(fn, q, k, positions, inv_freq, backward)
                        moved = nbytes * (4 if backward else 2)  # read + write, twice with the backward
                        rows.append(dict(model=model, batch=batch, seq=seq, qk_mb=round(nbytes / 1e6, 1),
                                         direction="fwd+bwd" if backward else "fwd", provider=name, repeat=repeat,
                                         median_us=round(1000 * median, 2), p20_us=round(1000 * p20, 2),
                                         p80_us=round(1000 * p80, 2), gbps=round(moved / (median * 1e6), 1)))
                        print(rows[-1], flush=True)
            del q, k
            torch.cuda.empty_cache()
    host = [r for model in models for r in host_overhead(model)]

    write_rows(rows, os.path.join(args.out, "results.csv"))
    write_rows(host, os.path.join(args.out, "host.csv"))
    props = torch.cuda.get_device_properties(0)
    meta = dict(device=props.name, sms=props.multi_processor_count, torch=torch.__version__,
                triton=triton.__version__, transformers=transformers.__version__, cuda=torch.version.cuda,
                python=platform.python_version(), date=started.isoformat(timespec="seconds"),
                command="python " + " ".join(sys.argv), dtype="bfloat16")
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(readme(rows, host, meta))
    print(readme(rows, host, meta))


def readme(rows, host, meta):
    """Summary: median of the per-repeat medians, the spread across repeats, and the speed
    relative to copy (copy's time / provider's time, for fwd+bwd against two copies)."""
    lines = [
        "# M-RoPE kernel benchmark",
        "",
        f"- device: {meta['device']} ({meta['sms']} SMs), CUDA {meta['cuda']}",
        f"- torch {meta['torch']}, triton {meta['triton']}, transformers {meta['transformers']}, "
        f"Python {meta['python']}",
        f"- date (UTC): {meta['date']}",
        f"- command: `{meta['command']}`",
        "- providers: `ropekit` float32 angles in-kernel, `ropekit-exact` exact angles (int64 fixed-point turns), "
        "`ropekit-1d` plain RoPE from the t ids, `eager`/`compile` the transformers formula.",
        "- q, k: bf16 (batch, seq, heads, head_dim), positions (3, batch, seq) int64; times are medians of "
        "triton.testing.do_bench (L2 flushed), the median over repeats, with the spread (max − min) of the "
        "per-repeat medians; `vs copy` = copy time / provider time (fwd+bwd: against the copy's fwd+bwd row, "
        "which is two clones and their gradient).",
        "",
        "| model | batch × seq | q+k MB | direction | provider | µs | spread µs | GB/s | vs copy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["batch"], r["seq"], r["qk_mb"], r["direction"], r["provider"]), []).append(r)
    copy = {key[:5]: statistics.median(x["median_us"] for x in g) for key, g in groups.items() if key[5] == "copy"}
    for key, g in groups.items():
        us = statistics.median(x["median_us"] for x in g)
        spread = max(x["median_us"] for x in g) - min(x["median_us"] for x in g)
        gbps = statistics.median(x["gbps"] for x in g)
        model, batch, seq, mb, direction, provider = key
        lines.append(f"| {model} | {batch} × {seq} | {mb} | {direction} | {provider} | {us:.1f} | {spread:.1f} | "
                     f"{gbps:.0f} | {copy[key[:5]] / us:.2f}× |")
    lines += ["", "Host time per call (one-token shape, wall clock, GPU work negligible):", "",
              "| model | provider | µs per call |", "| --- | --- | --- |"]
    lines += [f"| {h['model']} | {h['provider']} | {h['us_per_call']:.1f} |" for h in host]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
