"""The two suites: RoPE on q and k (every provider, layout and pass) and causal ReRoPE
attention (forward). Each checks every provider's answer against the reference before
timing it, and returns rows of :mod:`ropekit.bench.results`."""

from __future__ import annotations

from importlib import import_module

import torch

from ..frequencies import rope_frequencies
from ..reference import rope_cos_sin
from .clocks import gpu_time, host_time, input_sets
from .measure import attention_bytes, peak_extra_mb, rope_bytes, time_us
from .providers import ROPE_PROVIDERS, no_grad_call, rerope_call, torch_eager, unavailable
from .report import Progress, failure_reason, print_skips
from .results import add_speedups, fill_timing, new_row


def run_rope_suite(
    shapes, q_heads, kv_heads, head_dim, dtype, providers, passes, device, reps, warmup, progress=None,
    compile_dynamic=False, clocks=None,
):
    """Time every (provider, layout) on every ``(batch, seq)`` shape; return CSV rows.

    q: ``(batch, seq, q_heads, head_dim)``, k: ``(batch, seq, kv_heads, head_dim)``.
    ``compile_dynamic``: torch_compile compiles once with dynamic shapes for all sizes,
    instead of afresh for each shape with static shapes. ``clocks`` (default: on CUDA):
    also fill ``host_us`` and, forward, ``host_nograd_us`` (:mod:`ropekit.bench.clocks`),
    and on CUDA ``gpu_us`` and ``gpu_clock``.
    """
    clocks = device == "cuda" if clocks is None else clocks
    cases = [(p, layout) for p in providers for layout in ROPE_PROVIDERS[p][0]]
    reasons = {p: unavailable(p, device) for p in providers}
    print_skips(reasons)
    progress = progress or Progress(len(shapes) * len(cases), "rope")
    inv_freq = rope_frequencies(head_dim)[0].to(device)
    rows = []
    if "torch_compile" in providers:
        import_module("torch._dynamo").reset()
    for batch, seq in shapes:
        if "torch_compile" in providers and not compile_dynamic:
            # compile afresh for each shape (static shapes, no recompile limit)
            import_module("torch._dynamo").reset()
        cos, sin = rope_cos_sin(torch.arange(seq, device=device), inv_freq)
        gen = torch.Generator(device=device).manual_seed(batch * 100003 + seq)  # its own: see _leaves
        q = torch.randn(batch, seq, q_heads, head_dim, device=device, dtype=dtype, generator=gen)
        k = torch.randn(batch, seq, kv_heads, head_dim, device=device, dtype=dtype, generator=gen)
        expected = {}
        shape_rows = []
        for provider, layout in cases:
            progress.start(f"B{batch} S{seq} {provider} {layout}".strip())
            new = [new_row("rope", provider, layout, p, batch, seq, q_heads, kv_heads, head_dim, dtype)
                   for p in passes]
            reason = reasons[provider]
            if reason is None:
                try:
                    options = {"dynamic": True} if provider == "torch_compile" and compile_dynamic else {}
                    fn = ROPE_PROVIDERS[provider][1](layout, cos, sin, inv_freq, **options)
                    if provider != "copy":
                        if layout not in expected:
                            expected[layout] = torch_eager(layout, cos, sin, inv_freq)(q, k)
                        # fresh inputs that require grad, as in the timed runs (liger overwrites its inputs)
                        got = fn(q.clone().requires_grad_(), k.clone().requires_grad_())
                        tolerance = _rope_tolerance(dtype)
                        reason = _wrong_result(got, expected[layout], "ropekit.reference.apply_rope_qk",
                                               **tolerance)
                        got = None
                except Exception as err:
                    reason = failure_reason(err)
            if reason is None:
                _measure_rope_passes(new, fn, q, k, device, reps, warmup, provider if clocks else None)
            else:
                for row in new:
                    row["status"] = f"skipped: {reason}"
            shape_rows += new
            _free(device)
            progress.done()
        add_speedups(shape_rows)
        rows += shape_rows
        del q, k, expected
        _free(device)
    return rows


def _measure_rope_passes(rows, fn, q, k, device, reps, warmup, clocks_of=None):
    """Fill each row (one per pass) with time, GB/s and peak memory, or a skip reason;
    ``clocks_of``: the provider's name, to fill the GPU and host clocks too."""
    leaves = _leaves(q, k)
    for row in rows:
        try:
            run = _pass_call(row["pass"], fn, *leaves)
            t = time_us(run, device, reps, warmup)
            nbytes = rope_bytes(row["batch"], row["seq"], row["q_heads"], row["kv_heads"], row["head_dim"],
                                q.dtype, row["pass"])
            fill_timing(row, t, nbytes, peak_extra_mb(run, device))
            if clocks_of:
                sets = [leaves] + [_leaves(q, k) for _ in range(input_sets(nbytes) - 1)]
                make_calls = lambda: [_pass_call(row["pass"], fn, *s) for s in sets]  # noqa: E731
                _fill_clocks(row, run, make_calls, len(sets), t, device, reps)
                if row["pass"] == "fwd":
                    row["host_nograd_us"] = host_time(no_grad_call(clocks_of, fn, q, k), t, device)
        except Exception as err:
            row["status"] = f"skipped: {failure_reason(err)}"
        run = sets = make_calls = None
        _free(device)


def _leaves(q, k):
    """Copies of q and k that require grad, and gradients to feed back: one pass's inputs."""
    # The gradients are copies of the inputs (any values time the same), not new random
    # numbers: a CUDA graph capture that failed earlier can leave the default CUDA
    # generator unusable ("offset increment outside graph capture").
    q, k = q.clone().requires_grad_(), k.clone().requires_grad_()
    return q, k, q.detach().clone(), k.detach().clone()


def _pass_call(pass_, fn, q, k, dq, dk):
    """The zero-argument call a pass times: ``fwd`` runs the provider on leaves that require
    grad; ``bwd`` calls ``torch.autograd.grad`` on one saved graph; ``fwd+bwd`` both."""
    if pass_ == "fwd":
        return lambda: fn(q, k)
    if pass_ == "fwd+bwd":
        return lambda: torch.autograd.grad(fn(q, k), (q, k), (dq, dk))
    saved = fn(q, k)
    return lambda: torch.autograd.grad(saved, (q, k), (dq, dk), retain_graph=True)


def _fill_clocks(row, run, make_calls, sets, t, device, reps):
    """``gpu_us`` and ``gpu_clock`` (CUDA only) and ``host_us`` of one row: ``run`` is its
    eager call, ``make_calls()`` builds it afresh on each of its ``sets`` input sets for the
    CUDA graph, ``t`` is its CUDA-event (or CPU) time."""
    if device == "cuda":
        row["gpu_us"], row["gpu_clock"] = gpu_time(make_calls, sets, t, reps)
    row["host_us"] = host_time(run, t, device)


def run_rerope_suite(shapes, heads, head_dim, dtype, window, providers, device, reps, warmup, progress=None,
                     clocks=None):
    """Time causal ReRoPE attention forward on ``(batch, seq)`` shapes; return CSV rows.

    q, k, v: ``(batch, seq, heads, head_dim)``. Providers: ``sdpa_rope`` (SDPA on q and k
    rotated beforehand: plain RoPE attention, the baseline), ``reference``
    (:func:`ropekit.attention.rerope_attention`, two (seq, seq) logit matrices) and
    ``ropekit_fused`` (:func:`ropekit.kernels.rerope_attention`). ``clocks`` (default: on
    CUDA): fill ``host_us``, and on CUDA ``gpu_us`` and ``gpu_clock``, as the RoPE suite does.
    """
    clocks = device == "cuda" if clocks is None else clocks
    reasons = {p: unavailable(p, device) for p in providers}
    print_skips(reasons)
    progress = progress or Progress(len(shapes) * len(providers), "rerope")
    inv_freq = rope_frequencies(head_dim)[0].to(device)
    rows = []
    for batch, seq in shapes:
        gen = torch.Generator(device=device).manual_seed(batch * 100003 + seq)  # its own: see _leaves
        q, k, v = (torch.randn(batch, seq, heads, head_dim, device=device, dtype=dtype, generator=gen)
                   for _ in range(3))
        reference_out = None
        shape_rows = []
        for provider in providers:
            progress.start(f"B{batch} S{seq} {provider}")
            row = new_row("rerope", provider, "" if provider == "sdpa_rope" else "half", "fwd",
                       batch, seq, heads, heads, head_dim, dtype, window)
            reason = reasons[provider]
            try:
                if reason is None:
                    run = rerope_call(provider, q, k, v, inv_freq, window)
                    with torch.no_grad():
                        out = run()
                        if provider == "reference":
                            reference_out = out
                        elif provider == "ropekit_fused" and reference_out is not None:
                            reason = _wrong_result(out, reference_out, "the reference", atol=5e-2, rtol=5e-2)
                        out = None
                        if reason is None:
                            t = time_us(run, device, reps, warmup)
                            nbytes = attention_bytes(batch, seq, heads, head_dim, dtype)
                            fill_timing(row, t, nbytes, peak_extra_mb(run, device))
                            if clocks:
                                _fill_clocks(row, run, lambda: [run], 1, t, device, reps)
            except Exception as err:
                reason = failure_reason(err)
            if reason is not None:
                row["status"] = f"skipped: {reason}"
            run = out = None
            shape_rows.append(row)
            _free(device)
            progress.done()
        add_speedups(shape_rows)
        rows += shape_rows
        del q, k, v, reference_out
        _free(device)
    return rows


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


def _free(device):
    if device == "cuda":
        torch.cuda.empty_cache()
