"""How fast is RoPE? A benchmark harness and CLI: ``python -m ropekit.bench``.

Rerun it on a GPU (about 40 s on an H100)::

    python -m ropekit.bench --quick --out my_results

It prints one table per pass and writes into ``my_results/``:

* ``results.csv``: one row per (suite, provider, layout, pass, shape), columns in ``COLUMNS``
  and, on a GPU, the clocks in ``LATER_COLUMNS`` (GPU time and host time apart);
* ``summary.png``: the thirty-second picture, provider × shape, the fraction of copy speed
  of the GPU time beside the host time per call, drawn by
  :func:`ropekit.viz.plot_bench_summary`;
* ``rope.png`` and ``rerope.png``: GB/s against sequence length, one panel per pass, drawn by
  :func:`ropekit.viz.plot_benchmark`;
* ``meta.json``: GPU name, torch / triton / CUDA versions, date, and the exact command.

Without the flag it runs the full shape family (bf16, 32 query heads, 8 kv heads,
head_dim 128, batch 1 and 4, seq 1024 … 16384), a few minutes. Without a GPU, ``--quick``
times what a CPU can run (copy, eager torch, the complex form and torch.compile, fp32,
forward, q + k of 2 to 42 MB) to show the same lesson (one pass over memory beats several);
CPU numbers say nothing about a GPU, and the run says that GPU figures come from the
committed results in ``benchmarks/results/`` (the kernel lesson shows them).

The package, one job a module:

* :mod:`ropekit.bench.measure`: bytes a pass must move, timing (device time, CUDA-graph
  time and host time per call), peak extra memory; also used by the scripts in ``benchmarks/``;
* :mod:`ropekit.bench.clocks`: how a case's GPU time and host time are measured apart, and
  how long each clock may run;
* :mod:`ropekit.bench.providers`: who computes RoPE and ReRoPE attention (torch, ropekit's
  kernels, Liger-Kernel, flash-attention), and why one cannot run here;
* :mod:`ropekit.bench.suites`: the RoPE suite and the ReRoPE attention suite;
* :mod:`ropekit.bench.results`: the one definition of the CSV columns, and
  :func:`read_results`, the one reader of a results file;
* :mod:`ropekit.bench.report`: progress, skip reasons, the summary tables it prints and
  the launch path (:func:`launch_path`);
* :mod:`ropekit.bench.cli`: the command line (``python -m ropekit.bench``).

What to look at
---------------
RoPE does a few multiplications per element it reads, so on a GPU its time is the time to
move q and k through memory; nothing can beat copying them. ``speed_vs_baseline`` is
copy_time / provider_time: 1.0 is copy speed, 0.5 twice as slow. Eager torch makes several
passes over memory (float32 temporaries, a concatenation), so expect it well below 1; a
fused kernel reads and writes each element once and should come close to 1. Compare the
``half`` and ``paper`` layouts too: paper pairs neighbouring features, half pairs features
head_dim/2 apart. In ``time_us`` trust the large shapes most: at B1 S1024 a call moves only
10 MB, a few µs of memory traffic, so ``time_us`` mostly times the wait for Python and
kernel launches (see Time below). ``gpu_us`` (a CUDA-graph replay) takes the host out and
``host_us`` measures it apart: the small shapes are a lesson about the launch path (CUDA
graphs, fewer and cheaper Python calls, fusion into the next kernel).

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
* GPU time (``gpu_us``, CUDA only): the call captured in a CUDA graph, several to a graph
  when it is fast, each on inputs of its own so that none reads from the L2 the last one
  filled, and the graph replayed; per call. No Python, launch or autograd bookkeeping is
  left between the kernels, so small shapes are timed as fairly as large ones, and this
  is the column to compare kernels by. ``gpu_clock`` says how many calls a graph held, or
  that the call could not be captured and CUDA events timed it (as ``time_us``).
* Host time (``host_us``, CUDA only): wall clock over a short loop of eager calls, stopped
  when the last call returns, before waiting for the GPU: what a call costs the CPU.
  ``host_nograd_us`` (forward rows): the same forward on inputs that do not require grad;
  for ``copy`` it is ``q_out.copy_(q); k_out.copy_(k)``, the floor issue 14 sets the launch
  path against (at the smallest shape: at most 2× that without autograd, 3× with), printed
  at the end of a run (:func:`ropekit.bench.report.launch_path`).
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

from .cli import main, meta, parse_args, resolve
from .measure import (
    L2_FLUSH_BYTES,
    attention_bytes,
    calls_within,
    graph_us_per_call,
    host_us_per_call,
    peak_extra_mb,
    percentiles,
    rope_bytes,
    time_samples,
    time_us,
)
from .clocks import gpu_time, host_time, input_sets
from .providers import GPU_ONLY, REROPE_PROVIDERS, ROPE_PROVIDERS, no_grad_call, rerope_call, unavailable
from .report import launch_path, print_summary
from .results import (
    BASELINES,
    COLUMNS,
    DTYPES,
    LATER_COLUMNS,
    PASSES,
    SCHEMA,
    SUITES,
    fraction_of_baseline,
    read_results,
    results_files,
    write_csv,
)
from .suites import run_rerope_suite, run_rope_suite

__all__ = [
    "main",
    "parse_args",
    "resolve",
    "meta",
    "rope_bytes",
    "attention_bytes",
    "time_us",
    "time_samples",
    "percentiles",
    "host_us_per_call",
    "graph_us_per_call",
    "calls_within",
    "gpu_time",
    "host_time",
    "input_sets",
    "peak_extra_mb",
    "L2_FLUSH_BYTES",
    "ROPE_PROVIDERS",
    "REROPE_PROVIDERS",
    "GPU_ONLY",
    "unavailable",
    "rerope_call",
    "no_grad_call",
    "run_rope_suite",
    "run_rerope_suite",
    "SCHEMA",
    "LATER_COLUMNS",
    "COLUMNS",
    "PASSES",
    "SUITES",
    "DTYPES",
    "BASELINES",
    "write_csv",
    "read_results",
    "fraction_of_baseline",
    "results_files",
    "print_summary",
    "launch_path",
]
