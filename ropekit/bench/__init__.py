"""How fast is RoPE? A benchmark harness and CLI: ``python -m ropekit.bench``.

Rerun it on a GPU (about 40 s on an H100)::

    python -m ropekit.bench --quick --out my_results

It prints one table per pass and writes into ``my_results/``:

* ``results.csv``: one row per (suite, provider, layout, pass, shape), columns in ``COLUMNS``;
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

* :mod:`ropekit.bench.measure`: bytes a pass must move, timing (device time and host time
  per call), peak extra memory; also used by the tuning scripts in ``benchmarks/``;
* :mod:`ropekit.bench.providers`: who computes RoPE and ReRoPE attention (torch, ropekit's
  kernels, Liger-Kernel, flash-attention), and why one cannot run here;
* :mod:`ropekit.bench.suites`: the RoPE suite and the ReRoPE attention suite;
* :mod:`ropekit.bench.results`: the one definition of the CSV columns, and
  :func:`read_results`, the one reader of a results file;
* :mod:`ropekit.bench.report`: progress, skip reasons and the summary tables it prints;
* :mod:`ropekit.bench.cli`: the command line (``python -m ropekit.bench``).

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

from .cli import main, meta, parse_args, resolve
from .measure import (
    L2_FLUSH_BYTES,
    attention_bytes,
    host_us_per_call,
    peak_extra_mb,
    percentiles,
    rope_bytes,
    time_samples,
    time_us,
)
from .providers import GPU_ONLY, REROPE_PROVIDERS, ROPE_PROVIDERS, rerope_call, unavailable
from .report import print_summary
from .results import (
    BASELINES,
    COLUMNS,
    DTYPES,
    LATER_COLUMNS,
    PASSES,
    SCHEMA,
    SUITES,
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
    "peak_extra_mb",
    "L2_FLUSH_BYTES",
    "ROPE_PROVIDERS",
    "REROPE_PROVIDERS",
    "GPU_ONLY",
    "unavailable",
    "rerope_call",
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
    "results_files",
    "print_summary",
]
