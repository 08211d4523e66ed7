"""Timing and counting: the bytes a pass must move, how long a call takes, how much extra
memory it needs. Every number in a benchmark table comes from here, and so do the tuning
scripts' numbers in ``benchmarks/``.

Three clocks answer three questions (issue 14 wants the kernel and the host apart):

* :func:`time_samples` / :func:`time_us`: the time of one call as the device sees it. On
  CUDA each run is bracketed by CUDA events after a 256 MB write that evicts q and k from
  L2, the method of ``triton.testing.do_bench`` written out so that ``reps`` is an exact
  count; on CPU, ``time.perf_counter`` around the call. When the host work of a call takes
  longer than its GPU work, the GPU waits inside the interval and the wait is counted.
* :func:`graph_us_per_call`: the GPU's time alone. Several calls captured in one CUDA graph
  and replayed: no Python, no launch, no autograd bookkeeping between the kernels, so what
  is left is what the kernels cost (the method of ``triton.testing.do_bench_cudagraph``).
* :func:`host_us_per_call`: wall-clock time per call over a loop of calls: what Python,
  argument checks, autograd and the launch cost the host. ``wait=False`` stops the clock
  when the last call returns, before waiting for the GPU: the host's own time at any shape.
"""

from __future__ import annotations

import statistics
import time

import torch

from .results import PASSES

L2_FLUSH_BYTES = 256 * 2**20  # more than any GPU's L2 (50 MB on an H100, 60 MB on an H200)


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


def attention_bytes(batch, seq, heads, head_dim, dtype):
    """Bytes attention must move at the least: read q, k, v ``(batch, seq, heads, head_dim)``
    and write the output of the same shape."""
    return 4 * batch * heads * seq * head_dim * dtype.itemsize


# --- timing ------------------------------------------------------------------------------


def time_samples(fn, device, reps, warmup):
    """Times of ``reps`` runs of ``fn()`` in µs, after ``warmup`` untimed runs.

    ``device`` is ``"cuda"`` (CUDA events around each run, after an L2 flush: the GPU's
    view) or anything else (``time.perf_counter`` around each run).
    """
    for _ in range(warmup):
        fn()
    if device != "cuda":
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e6)
        return times
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device="cuda")
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        flush.zero_()  # evicts the inputs from L2: every run reads them from HBM
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]


def time_us(fn, device, reps, warmup):
    """Median time of ``fn()`` in µs over ``reps`` runs, after ``warmup`` untimed runs
    (see :func:`time_samples`)."""
    return statistics.median(time_samples(fn, device, reps, warmup))


def percentiles(samples, *qs):
    """The ``qs`` quantiles (0 to 1) of ``samples``, linearly interpolated; e.g.
    ``percentiles(t, 0.5, 0.2, 0.8)`` gives the median and the 20th and 80th percentiles."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("percentiles needs at least one sample")
    picked = []
    for q in qs:
        if not 0 <= q <= 1:
            raise ValueError(f"quantiles must lie in [0, 1], got {q!r}")
        pos = q * (len(ordered) - 1)
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        picked.append(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))
    return picked


def host_us_per_call(fn, device, calls=2000, repeats=5, warmup=50, wait=True):
    """Median over ``repeats`` of the wall-clock time per call of ``calls`` back-to-back
    calls of ``fn()``, in µs, synchronising the device once after each loop.

    ``wait=True``: the clock runs until the device has finished the loop's work. When the
    device work of one call is shorter than its host work (a tiny shape), the queue never
    fills and this is the host's cost of a call: Python, checks, autograd, the launch.
    Compare it with the same loop over ``q.clone(); k.clone()``.

    ``wait=False``: the clock stops when the last call returns, and the device is waited
    for afterwards: the host's own time per call at any shape, as long as the launch queue
    (about a thousand kernels on CUDA) does not fill, so keep ``calls`` small.
    """
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if wait:
            sync()
        samples.append((time.perf_counter() - start) / calls * 1e6)
        sync()
    return statistics.median(samples)


def graph_us_per_call(make_calls, count, reps, warmup=2):
    """GPU time of one call in µs: ``count`` calls captured in one CUDA graph, the graph
    replayed ``reps`` times (:func:`time_samples`: CUDA events, L2 flushed before each
    replay), median replay time / ``count``.

    ``make_calls()`` returns zero-argument functions doing the same work on inputs of their
    own; the graph runs them in turn (``calls[n % len(calls)]``), so that with enough of
    them the inputs of one call are out of L2 when it runs again. It is called on the
    stream the graph captures, because autograd runs each backward op on the stream its
    forward ran on: a backward to capture needs its forward built there. Each call runs
    ``warmup`` times on that stream first (Triton compiles and autotunes outside the capture).

    Raises what the capture raises when a call cannot be captured (it synchronises with
    the host, or touches CPU tensors); the caller falls back to :func:`time_us`.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("graph_us_per_call needs a CUDA device (CUDA graphs)")
    if count < 1 or reps < 1:
        raise ValueError(f"count and reps must be at least 1, got count={count}, reps={reps}")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        calls = list(make_calls())
        if not calls:
            raise ValueError("make_calls() returned no calls")
        for _ in range(warmup):
            for fn in calls:
                fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for n in range(count):
            calls[n % len(calls)]()
    samples = time_samples(graph.replay, "cuda", reps, 1)
    return statistics.median(samples) / count


def calls_within(budget_us, call_us, most):
    """How many calls of ``call_us`` µs fit in ``budget_us``: at least 1, at most ``most``."""
    if not call_us > 0:
        return most
    return max(1, min(most, int(budget_us // call_us)))


# --- memory --------------------------------------------------------------------------------


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
