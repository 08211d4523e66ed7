"""How fast is RoPE? A benchmark harness and CLI: ``python -m ropekit.bench``.

Rerun it on a GPU (about 40 s on an H100)::

    python -m ropekit.bench --quick --out my_results

It prints one table per pass and writes into ``my_results/``:

* ``results.csv``: one row per (suite, provider, layout, pass, shape), columns in ``COLUMNS``;
* ``rope.png`` and ``rerope.png``: GB/s against sequence length, one panel per pass, drawn by
  :func:`ropekit.viz.plot_benchmark`;
* ``meta.json``: GPU name, torch / triton / CUDA versions, date, and the exact command.

Without the flag it runs the full shape family (bf16, 32 query heads, 8 kv heads,
head_dim 128, batch 1 and 4, seq 1024 … 16384), a few minutes. Without a GPU the same command
times the plain-torch providers on small CPU shapes and says why the Triton ones are
skipped; CPU numbers say nothing about a GPU (the kernel lesson shows the stored GPU
results in ``benchmarks/results/`` instead).

What to look at
---------------
RoPE does a few multiplications per element it reads, so on a GPU its time is the time to
move q and k through memory; nothing can beat copying them. ``speed_vs_baseline`` is
copy_time / provider_time: 1.0 is copy speed, 0.5 twice as slow. Eager torch makes several
passes over memory (float32 temporaries, a concatenation), so expect it well below 1; a
fused kernel reads and writes each element once and should come close to 1. Compare the
``half`` and ``paper`` layouts too: paper pairs neighbouring features, half pairs features
head_dim/2 apart. Trust the large shapes most: at B1 S1024 a call moves only 10 MB, a few µs
of memory traffic, so providers are timed mostly waiting for Python and kernel launches
(see Time below), which is a different lesson (CUDA graphs, fusion into the next kernel).

In the ReRoPE suite the baseline is SDPA (whichever backend torch picks, its fastest) on q
and k rotated beforehand, i.e. ordinary RoPE attention, the best ReRoPE can hope for. The
two-product reference pays for two (seq, seq) logit matrices, visible in ``peak_mem_mb``;
the fused kernel keeps memory O(seq). Lesson 04 explains ReRoPE.

Conventions
-----------
* Bytes (``gbps``): the least a pass must move. RoPE forward reads q and k once and writes
  q_out and k_out once: 2 · (|q| + |k|) · itemsize, the same count as copying them; the
  backward reads dq_out, dk_out and writes dq, dk (the same count); fwd+bwd is twice that.
  The cos/sin tables (2 · seq · rotary_dim/2 float32 values) are not counted. For attention
  (ReRoPE suite) it is reading q, k, v and writing the output; attention is bound by
  arithmetic, not memory, so read its ``gbps`` as a throughput, not a bandwidth.
* Time (``time_us``): the median of ``--reps`` runs after warm-up. On CUDA each run is
  timed with CUDA events after writing a 256 MB buffer, which evicts q and k from L2 (50 MB
  on an H100), so small shapes are not timed from cache: the method of
  ``triton.testing.do_bench``, written out so ``--reps`` is an exact count and a GPU without
  triton still runs the torch providers. As with do_bench, the CPU queues the call while
  the GPU writes that buffer (~0.1 ms); when the Python and launch work of a call (autograd,
  many small eager kernels) takes longer, the GPU waits inside the timed interval and that
  wait is counted. On CPU: ``time.perf_counter``.
* Passes: ``fwd`` runs the provider on q and k that require grad, as in training; ``bwd``
  calls ``torch.autograd.grad`` on one saved graph (``retain_graph=True``), so it times the
  backward alone; ``fwd+bwd`` does both. The ReRoPE suite is forward only, without grad.
* Memory (``peak_mem_mb``, CUDA only): ``torch.cuda.max_memory_allocated()`` during one
  call minus what was allocated just before it (inputs, gradients to feed, the saved graph
  for ``bwd``), after ``reset_peak_memory_stats``: the extra memory the call needs.
* Before timing, every RoPE provider's output is compared with ``ropekit.apply_rope`` in
  the same layout, and the fused ReRoPE kernel's with the reference where that fits in
  memory; a provider that disagrees gets a ``skipped: wrong result`` row instead of a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from importlib import import_module, metadata
from pathlib import Path

import torch

from .frequencies import rope_frequencies
from .reference import apply_rope, apply_rope_complex, rope_cos_sin

COLUMNS = (
    "suite", "provider", "layout", "pass", "batch", "seq", "q_heads", "kv_heads", "head_dim",
    "dtype", "window", "time_us", "gbps", "baseline", "speed_vs_baseline", "peak_mem_mb", "status",
)
PASSES = ("fwd", "bwd", "fwd+bwd")
SUITES = ("rope", "rerope")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BASELINES = {"rope": "copy", "rerope": "sdpa_rope"}
GPU_ONLY = ("ropekit", "liger", "flash_attn", "ropekit_fused")  # Triton kernels
_L2_FLUSH_BYTES = 256 * 2**20


# --- the bytes a pass must move --------------------------------------------------------


def rope_bytes(batch, seq, q_heads, kv_heads, head_dim, dtype, pass_="fwd"):
    """Bytes a RoPE pass must move at the least: read q and k once, write them once.

    q: ``(batch, seq, q_heads, head_dim)``, k: ``(batch, seq, kv_heads, head_dim)``.
    ``bwd`` moves the gradients (read dq_out, dk_out; write dq, dk), the same count;
    ``fwd+bwd`` twice that. The cos/sin tables are not counted, so a copy of q and k moves
    exactly this many bytes.
    """
    if pass_ not in PASSES:
        raise ValueError(f"pass_ must be one of {PASSES}, got {pass_!r}")
    elements = batch * seq * (q_heads + kv_heads) * head_dim
    return 2 * elements * dtype.itemsize * (2 if pass_ == "fwd+bwd" else 1)


def attention_bytes(batch, heads, seq, head_dim, dtype):
    """Bytes attention must move at the least: read q, k, v ``(batch, heads, seq, head_dim)``
    and write the output of the same shape."""
    return 4 * batch * heads * seq * head_dim * dtype.itemsize


# --- timing and memory -----------------------------------------------------------------


def time_us(fn, device, reps, warmup):
    """Median time of ``fn()`` in µs over ``reps`` runs, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    if device != "cuda":
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e6)
        return statistics.median(times)
    flush = torch.empty(_L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        flush.zero_()  # evicts the inputs from L2: every run reads them from HBM
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends))


def peak_extra_mb(fn, device):
    """Extra memory one call of ``fn`` needs at its peak, in MiB (None off CUDA)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


# --- RoPE providers: each builds fn(q, k) -> (q_out, k_out) ----------------------------
#
# q: (batch, seq, q_heads, head_dim), k: (batch, seq, kv_heads, head_dim), contiguous;
# cos, sin: (seq, head_dim // 2) float32 from rope_cos_sin. Every provider sees the same
# tensors in the same memory layout and must support autograd.


class _CopyQK(torch.autograd.Function):
    """The bandwidth ceiling: copy q and k forward, copy their gradients backward."""

    @staticmethod
    def forward(ctx, q, k):
        return q.clone(), k.clone()

    @staticmethod
    def backward(ctx, dq, dk):
        return dq.clone(), dk.clone()


def _copy(layout, cos, sin, inv_freq):
    return _CopyQK.apply


def _torch_eager(layout, cos, sin, inv_freq):
    cos, sin = cos[:, None], sin[:, None]  # (seq, 1, head_dim/2): broadcast over heads
    return lambda q, k: (apply_rope(q, cos, sin, layout), apply_rope(k, cos, sin, layout))


def _torch_complex(layout, cos, sin, inv_freq):
    positions = torch.arange(cos.shape[0], device=cos.device)[:, None]  # (seq, 1)
    return lambda q, k: (apply_rope_complex(q, positions, inv_freq), apply_rope_complex(k, positions, inv_freq))


def _torch_compile(layout, cos, sin, inv_freq):
    return torch.compile(_torch_eager(layout, cos, sin, inv_freq), dynamic=False)


def _ropekit(layout, cos, sin, inv_freq):
    from .kernels import apply_rope_qk

    return lambda q, k: apply_rope_qk(q, k, cos, sin, layout=layout)


def _liger(layout, cos, sin, inv_freq):
    from liger_kernel.transformers.rope import liger_rotary_pos_emb

    # Hugging Face style: (1, seq, head_dim) tables with the half-size table repeated,
    # and q, k as (batch, heads, seq, head_dim) views of (batch, seq, heads, head_dim)
    # memory. Liger rotates in place and computes in the tables' dtype (float32 here).
    full_cos, full_sin = torch.cat((cos, cos), -1)[None], torch.cat((sin, sin), -1)[None]

    def liger(q, k):
        q_out, k_out = liger_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), full_cos, full_sin)
        return q_out.transpose(1, 2), k_out.transpose(1, 2)

    return liger


def _flash_attn(layout, cos, sin, inv_freq):
    from flash_attn.layers.rotary import apply_rotary_emb

    interleaved = layout == "paper"  # flash-attn's "interleaved" pairs (2i, 2i+1)
    tables = {}  # flash-attn wants cos/sin in x's dtype, as Hugging Face models keep them

    def flash_attn(q, k):
        if q.dtype not in tables:
            tables[q.dtype] = cos.to(q.dtype), sin.to(q.dtype)
        c, s = tables[q.dtype]
        return apply_rotary_emb(q, c, s, interleaved=interleaved), apply_rotary_emb(k, c, s, interleaved=interleaved)

    return flash_attn


# name -> (layouts it runs in, "" where layout plays no role; builder)
ROPE_PROVIDERS = {
    "copy": (("",), _copy),
    "torch_eager": (("half", "paper"), _torch_eager),
    "torch_complex": (("paper",), _torch_complex),
    "torch_compile": (("half", "paper"), _torch_compile),
    "ropekit": (("half", "paper"), _ropekit),
    "liger": (("half",), _liger),
    "flash_attn": (("half", "paper"), _flash_attn),
}
REROPE_PROVIDERS = ("sdpa_rope", "reference", "ropekit_fused")
_IMPORTS = {  # provider -> (module to import, what to install)
    "ropekit": ("ropekit.kernels.rope", "triton"),
    "liger": ("liger_kernel.transformers.rope", "pip install liger-kernel"),
    "flash_attn": ("flash_attn.layers.rotary", "pip install flash-attn"),
    "reference": ("ropekit.attention", "ropekit.attention"),
    "ropekit_fused": ("ropekit.kernels.rerope", "triton"),
}


def unavailable(provider, device):
    """Why ``provider`` cannot run here (a one-line reason), or None when it can."""
    if provider in GPU_ONLY:
        if device != "cuda":
            return ("needs a CUDA GPU: a Triton kernel runs on CPU only under TRITON_INTERPRET=1, "
                    "whose timings mean nothing")
        if os.environ.get("TRITON_INTERPRET") == "1":
            return "TRITON_INTERPRET=1 is set: interpreter timings mean nothing; unset it"
    if provider in _IMPORTS:
        module, install = _IMPORTS[provider]
        try:
            import_module(module)
        except Exception as err:  # ImportError, or a broken install failing at import time
            return f"{module} not importable ({_one_line(err)}); needs {install}"
    return None


# --- the RoPE suite ----------------------------------------------------------------------


def run_rope_suite(shapes, q_heads, kv_heads, head_dim, dtype, providers, passes, device, reps, warmup, progress=None):
    """Time every (provider, layout) on every ``(batch, seq)`` shape; return CSV rows."""
    cases = [(p, layout) for p in providers for layout in ROPE_PROVIDERS[p][0]]
    reasons = {p: unavailable(p, device) for p in providers}
    _print_skips(reasons)
    progress = progress or _Progress(len(shapes) * len(cases), "rope")
    inv_freq = rope_frequencies(head_dim)[0].to(device)
    rows = []
    for batch, seq in shapes:
        if "torch_compile" in providers:
            import_module("torch._dynamo").reset()  # compile afresh for each shape (static shapes, no recompile limit)
        cos, sin = rope_cos_sin(torch.arange(seq, device=device), inv_freq)
        q = torch.randn(batch, seq, q_heads, head_dim, device=device, dtype=dtype)
        k = torch.randn(batch, seq, kv_heads, head_dim, device=device, dtype=dtype)
        expected = {}
        shape_rows = []
        for provider, layout in cases:
            progress.start(f"B{batch} S{seq} {provider} {layout}".strip())
            new = [_row("rope", provider, layout, p, batch, seq, q_heads, kv_heads, head_dim, dtype) for p in passes]
            reason = reasons[provider]
            if reason is None:
                try:
                    fn = ROPE_PROVIDERS[provider][1](layout, cos, sin, inv_freq)
                    if provider != "copy":
                        if layout not in expected:
                            expected[layout] = _torch_eager(layout, cos, sin, inv_freq)(q, k)
                        # fresh inputs that require grad, as in the timed runs (liger overwrites its inputs)
                        got = fn(q.clone().requires_grad_(), k.clone().requires_grad_())
                        reason = _wrong_result(got, expected[layout], "ropekit.apply_rope", **_rope_tolerance(dtype))
                        got = None
                except Exception as err:
                    reason = _failure(err)
            if reason is None:
                _measure_rope_passes(new, fn, q, k, device, reps, warmup)
            else:
                for row in new:
                    row["status"] = f"skipped: {reason}"
            shape_rows += new
            _free(device)
            progress.done()
        _add_speedups(shape_rows)
        rows += shape_rows
        del q, k, expected
        _free(device)
    return rows


def _measure_rope_passes(rows, fn, q, k, device, reps, warmup):
    """Fill each row (one per pass) with time, GB/s and peak memory, or a skip reason."""
    q, k = q.clone().requires_grad_(), k.clone().requires_grad_()
    dq, dk = torch.randn_like(q), torch.randn_like(k)
    for row in rows:
        try:
            if row["pass"] == "fwd":
                run = lambda: fn(q, k)  # noqa: E731
            elif row["pass"] == "fwd+bwd":
                run = lambda: torch.autograd.grad(fn(q, k), (q, k), (dq, dk))  # noqa: E731
            else:
                saved = fn(q, k)
                run = lambda: torch.autograd.grad(saved, (q, k), (dq, dk), retain_graph=True)  # noqa: E731
            t = time_us(run, device, reps, warmup)
            nbytes = rope_bytes(row["batch"], row["seq"], row["q_heads"], row["kv_heads"], row["head_dim"],
                                q.dtype, row["pass"])
            _fill(row, t, nbytes, peak_extra_mb(run, device))
        except Exception as err:
            row["status"] = f"skipped: {_failure(err)}"
        run = saved = None
        _free(device)


# --- the ReRoPE attention suite ----------------------------------------------------------


def run_rerope_suite(shapes, heads, head_dim, dtype, window, providers, device, reps, warmup, progress=None):
    """Time causal ReRoPE attention forward on ``(batch, seq)`` shapes; return CSV rows.

    q, k, v: ``(batch, heads, seq, head_dim)``. Providers: ``sdpa_rope`` (SDPA on q and k
    rotated beforehand: plain RoPE attention, the baseline), ``reference``
    (:func:`ropekit.attention.rerope_attention`, two (seq, seq) logit matrices) and
    ``ropekit_fused`` (:func:`ropekit.kernels.rerope_attention`).
    """
    reasons = {p: unavailable(p, device) for p in providers}
    _print_skips(reasons)
    progress = progress or _Progress(len(shapes) * len(providers), "rerope")
    inv_freq = rope_frequencies(head_dim)[0].to(device)
    rows = []
    for batch, seq in shapes:
        q, k, v = (torch.randn(batch, seq, heads, head_dim, device=device, dtype=dtype) for _ in range(3))
        reference_out = None
        shape_rows = []
        for provider in providers:
            progress.start(f"B{batch} S{seq} {provider}")
            row = _row("rerope", provider, "" if provider == "sdpa_rope" else "half", "fwd",
                       batch, seq, heads, heads, head_dim, dtype, window)
            reason = reasons[provider]
            try:
                if reason is None:
                    run = _rerope_fn(provider, q, k, v, inv_freq, window)
                    with torch.no_grad():
                        out = run()
                        if provider == "reference":
                            reference_out = out
                        elif provider == "ropekit_fused" and reference_out is not None:
                            reason = _wrong_result(out, reference_out, "the reference", atol=5e-2, rtol=5e-2)
                        out = None
                        if reason is None:
                            t = time_us(run, device, reps, warmup)
                            nbytes = attention_bytes(batch, heads, seq, head_dim, dtype)
                            _fill(row, t, nbytes, peak_extra_mb(run, device))
            except Exception as err:
                reason = _failure(err)
            if reason is not None:
                row["status"] = f"skipped: {reason}"
            run = out = None
            shape_rows.append(row)
            _free(device)
            progress.done()
        _add_speedups(shape_rows)
        rows += shape_rows
        del q, k, v, reference_out
        _free(device)
    return rows


def _rerope_fn(provider, q, k, v, inv_freq, window):
    if provider == "sdpa_rope":
        # SDPA takes (batch, heads, seq, head_dim): rotate, then hand it the transposed views
        cos, sin = rope_cos_sin(torch.arange(q.shape[1], device=q.device), inv_freq)
        q_rot, k_rot = apply_rope(q, cos[:, None], sin[:, None]), apply_rope(k, cos[:, None], sin[:, None])
        q_rot, k_rot, v_heads = q_rot.transpose(1, 2), k_rot.transpose(1, 2), v.transpose(1, 2)
        return lambda: torch.nn.functional.scaled_dot_product_attention(q_rot, k_rot, v_heads, is_causal=True).transpose(1, 2)
    module = "ropekit.attention" if provider == "reference" else "ropekit.kernels"
    rerope = import_module(module).rerope_attention
    return lambda: rerope(q, k, v, inv_freq, window, causal=True)


# --- rows ------------------------------------------------------------------------------------


def _row(suite, provider, layout, pass_, batch, seq, q_heads, kv_heads, head_dim, dtype, window=None):
    row = dict.fromkeys(COLUMNS, "")
    row.update(suite=suite, provider=provider, layout=layout, batch=batch, seq=seq, q_heads=q_heads,
               kv_heads=kv_heads, head_dim=head_dim, dtype=_dtype_name(dtype), baseline=BASELINES[suite],
               status="ok")
    row["pass"] = pass_
    if window is not None:
        row["window"] = window
    return row


def _fill(row, t_us, nbytes, peak_mb):
    row["time_us"] = t_us
    row["gbps"] = nbytes / (t_us * 1e3)  # bytes / (µs · 1e3) = GB/s
    row["peak_mem_mb"] = "" if peak_mb is None else peak_mb


def _add_speedups(rows):
    """speed_vs_baseline = baseline time / time, within one shape and pass."""
    base = {r["pass"]: r["time_us"] for r in rows if r["provider"] == r["baseline"] and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and r["pass"] in base:
            r["speed_vs_baseline"] = base[r["pass"]] / r["time_us"]


def write_csv(rows, path):
    """Write rows (dicts with the ``COLUMNS`` keys) to ``path``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _wrong_result(got, expected, what, atol=None, rtol=None):
    """None if ``got`` matches ``expected`` (tensors or tuples of them) to the dtype's
    tolerance of torch.testing.assert_close, else a one-line reason."""
    pairs = list(zip(got, expected)) if isinstance(expected, tuple) else [(got, expected)]
    try:
        for g, e in pairs:
            torch.testing.assert_close(g.detach(), e, atol=atol, rtol=rtol)
    except AssertionError:
        err = max((g.detach().float() - e.float()).abs().max().item() for g, e in pairs)
        return f"wrong result vs {what} (max abs error {err:.3g})"
    return None


def _rope_tolerance(dtype):
    """A 16-bit result may differ from apply_rope's by its own rounding plus that of cos/sin
    tables kept in 16 bits (flash-attn's): ~2^-8 of |x|, up to ~0.02 for unit normal inputs.
    A wrong layout or a missing rotation is off by O(1)."""
    return {} if dtype.itemsize >= 4 else {"atol": 5e-2, "rtol": 5e-2}


def _failure(err):
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        return "out of memory"
    return f"{type(err).__name__}: {_one_line(err)}"


def _one_line(err):
    text = " ".join(str(err).split())
    return text[:200] + ("…" if len(text) > 200 else "")


def _free(device):
    if device == "cuda":
        torch.cuda.empty_cache()


def _dtype_name(dtype):
    return {v: k for k, v in DTYPES.items()}[dtype]


def _print_skips(reasons):
    for provider, reason in reasons.items():
        if reason:
            print(f"skipping {provider}: {reason}", flush=True)


class _Progress:
    """A tqdm bar over the cases, or one printed line per case without tqdm."""

    def __init__(self, total, desc):
        self.total, self.desc, self.count = total, desc, 0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, desc=desc, unit="case", file=sys.stdout)

    def start(self, label):
        if self.bar is None:
            print(f"[{self.desc} {self.count + 1}/{self.total}] {label}", flush=True)
        else:
            self.bar.set_postfix_str(label)

    def done(self):
        self.count += 1
        if self.bar is not None:
            self.bar.update()
            if self.count == self.total:
                self.bar.close()


# --- command line ----------------------------------------------------------------------------


def parse_args(argv=None):
    """Parse the command line; shapes and repetitions left out get defaults from :func:`resolve`."""
    parser = argparse.ArgumentParser(
        prog="python -m ropekit.bench",
        description="Time RoPE providers against a plain copy, and ReRoPE attention against SDPA.",
        epilog="Example: python -m ropekit.bench --quick --out my_results",
    )
    all_providers = [*ROPE_PROVIDERS, *REROPE_PROVIDERS]
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="a few shapes and runs: under a minute on a GPU")
    parser.add_argument("--out", default="bench_results", help="folder for results.csv, PNGs, meta.json")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (crossed with --seq)")
    parser.add_argument("--seq", type=int, nargs="+", help="sequence lengths (both suites)")
    parser.add_argument("--heads", type=int, default=32, help="query heads (default 32)")
    parser.add_argument("--kv-heads", type=int, default=8, help="key heads, RoPE suite (default 8)")
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    parser.add_argument("--window", type=int, help="ReRoPE window w (default 512 on GPU, 64 on CPU)")
    parser.add_argument("--providers", nargs="+", choices=all_providers, metavar="NAME",
                        help=f"providers to run, from {', '.join(all_providers)} (default: all); "
                             "the baselines copy and sdpa_rope always run")
    parser.add_argument("--passes", nargs="+", choices=PASSES, default=list(PASSES), help="RoPE suite passes")
    parser.add_argument("--reps", type=int, help="timed runs per measurement (median reported)")
    parser.add_argument("--warmup", type=int, help="untimed runs first")
    args = parser.parse_args(argv)
    for name in ("batch", "seq", "heads", "kv_heads", "head_dim", "window", "reps"):
        values = getattr(args, name)
        if values is not None and min(values if isinstance(values, list) else [values]) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {values}")
    if args.warmup is not None and args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    return args


def resolve(args, device):
    """Fill in the defaults that depend on the device and on ``--quick``; returns a dict."""
    gpu = device == "cuda"
    if gpu:
        rope_shapes = [(1, 1024), (1, 16384), (4, 8192)] if args.quick else [
            (b, s) for b in (1, 4) for s in (1024, 2048, 4096, 8192, 16384)]
        rerope_shapes = [(1, 4096)] if args.quick else [(1, 4096), (1, 8192), (1, 16384)]
    else:
        rope_shapes = [(1, 256)] if args.quick else [(1, 256), (1, 1024), (4, 1024)]
        rerope_shapes = [(1, 256)] if args.quick else [(1, 256), (1, 1024)]
    if args.batch or args.seq:
        batches = args.batch or [1]
        rope_shapes = [(b, s) for b in batches for s in (args.seq or sorted({s for _, s in rope_shapes}))]
        rerope_shapes = [(b, s) for b in batches for s in (args.seq or sorted({s for _, s in rerope_shapes}))]
    providers = list(args.providers or [*ROPE_PROVIDERS, *REROPE_PROVIDERS])
    if args.quick and not args.providers:
        # Compiling every shape, forward and backward, both layouts, takes ~20 s on a GPU
        # machine and ~30 s per shape on a CPU: more than --quick's whole budget.
        providers.remove("torch_compile")
        print("--quick leaves out torch_compile (compiling each shape takes longer than the rest of "
              "the run); name it in --providers to include it")
    suites = SUITES if args.suite == "all" else (args.suite,)
    return {
        "device": device,
        "suites": suites,
        "rope_shapes": rope_shapes,
        "rerope_shapes": rerope_shapes,
        "rope_providers": ["copy"] + [p for p in ROPE_PROVIDERS if p in providers and p != "copy"],
        "rerope_providers": ["sdpa_rope"] + [p for p in REROPE_PROVIDERS if p in providers and p != "sdpa_rope"],
        "passes": [p for p in PASSES if p in args.passes],
        "dtype": DTYPES[args.dtype],
        "heads": args.heads,
        "kv_heads": args.kv_heads,
        "head_dim": args.head_dim,
        "window": args.window or (512 if gpu else 64),
        "reps": args.reps or ((25 if args.quick else 100) if gpu else (3 if args.quick else 10)),
        "warmup": args.warmup if args.warmup is not None else ((5 if args.quick else 10) if gpu else 2),
    }


def meta(config, argv):
    """What a reader needs to trust or reproduce the numbers."""
    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    gpu = config["device"] == "cuda"
    return {
        "device": torch.cuda.get_device_name() if gpu else f"CPU ({platform.processor() or platform.machine()}, "
                                                           f"{torch.get_num_threads()} threads)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "ropekit.bench", *argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if gpu else None,
        "triton": version("triton"),
        "liger_kernel": version("liger-kernel"),
        "flash_attn": version("flash-attn") or version("flash_attn"),
        "reps": config["reps"],
        "warmup": config["warmup"],
        "bytes": "rope: read + write of q and k (of their gradients for bwd), cos/sin tables not counted; "
                 "attention: read q, k, v + write out",
        "timing": "median; CUDA events after a 256 MB L2 flush" if gpu else "median of time.perf_counter",
    }


def main(argv=None):
    """Run the benchmark described by ``argv`` (default: ``sys.argv[1:]``); returns the rows."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    began = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        print("No CUDA device: timing the torch providers on small CPU shapes; "
              "CPU numbers say nothing about GPU speed.", flush=True)
    config = resolve(args, device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    if "rope" in config["suites"]:
        rows += run_rope_suite(config["rope_shapes"], config["heads"], config["kv_heads"], config["head_dim"],
                               config["dtype"], config["rope_providers"], config["passes"], device,
                               config["reps"], config["warmup"])
    if "rerope" in config["suites"]:
        rows += run_rerope_suite(config["rerope_shapes"], config["heads"], config["head_dim"], config["dtype"],
                                 config["window"], config["rerope_providers"], device, config["reps"],
                                 config["warmup"])
    write_csv(rows, out / "results.csv")
    (out / "meta.json").write_text(json.dumps(meta(config, argv), indent=2) + "\n")
    print_summary(rows)
    _plot(out, config["suites"])
    print(f"wrote {out / 'results.csv'} and {out / 'meta.json'} in {time.perf_counter() - began:.0f} s")
    return rows


def print_summary(rows):
    """Tables of the results: provider × shape, one per (suite, pass) and quantity."""
    for suite in SUITES:
        for pass_ in PASSES:
            part = [r for r in rows if r["suite"] == suite and r["pass"] == pass_]
            if not part:
                continue
            _print_table(part, f"{suite} {pass_}: speed vs {BASELINES[suite]} (1.00 = as fast)",
                         lambda r: f"{r['speed_vs_baseline']:.2f}" if r["speed_vs_baseline"] != "" else "n/a")
            if suite == "rerope":
                _print_table(part, f"{suite} {pass_}: time (ms)", lambda r: f"{r['time_us'] / 1e3:.2f}")
                if any(r["peak_mem_mb"] != "" for r in part):
                    _print_table(part, f"{suite} {pass_}: peak extra memory (MB)", lambda r: f"{r['peak_mem_mb']:.0f}")


def _print_table(rows, title, cell):
    shapes = list(dict.fromkeys((r["batch"], r["seq"]) for r in rows))
    by_name = {}
    for r in rows:
        by_name.setdefault(f"{r['provider']} {r['layout']}".strip(), {})[(r["batch"], r["seq"])] = r
    print(f"\n{title}")
    print(f"{'':20}" + "".join(f"{f'B{b} S{s}':>12}" for b, s in shapes))
    for name, cells in by_name.items():
        texts = ["" if shape not in cells else cell(cells[shape]) if cells[shape]["status"] == "ok" else "skipped"
                 for shape in shapes]
        print(f"{name:20}" + "".join(f"{t:>12}" for t in texts))


def _plot(out, suites):
    os.environ.setdefault("MPLBACKEND", "Agg")  # no window needed: figures go to files
    try:
        from .viz import plot_benchmark
    except ImportError as err:
        print(f"plotting skipped: ropekit.viz.plot_benchmark is not available ({_one_line(err)})")
        return
    import matplotlib.pyplot as plt

    for suite in suites:
        try:
            fig = plot_benchmark(str(out / "results.csv"), suite=suite)
            fig.savefig(out / f"{suite}.png", dpi=120, bbox_inches="tight")
            plt.close(fig)
            print(f"wrote {out / f'{suite}.png'}")
        except Exception as err:  # a plot is a bonus; the CSV is the result
            print(f"plotting {suite} failed: {type(err).__name__}: {_one_line(err)}")


if __name__ == "__main__":
    main()
