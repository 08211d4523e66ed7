"""The GPU and the host apart (issue 14): how the suites measure one case's ``gpu_us`` and
``host_us``, and how long each clock may run so that ``--quick`` stays under a minute.

* GPU time (:func:`gpu_time`): the calls of one case captured in a CUDA graph and replayed
  (:func:`ropekit.bench.measure.graph_us_per_call`). Nothing of Python, the launch or
  autograd's bookkeeping sits between the kernels, so at every shape this is what the
  kernels cost the GPU. Fast calls are captured many to a graph, each on inputs of its own
  (:func:`input_sets`), so that a call reads its inputs from memory, not from the L2 that
  the previous call filled. A call that cannot be captured (it waits for the host, say) is
  timed with CUDA events instead, as ``time_us`` is, and ``gpu_clock`` says so and why.
* Host time (:func:`host_time`): wall clock over a short loop of eager calls, stopped when
  the last call returns (``host_us_per_call(..., wait=False)``): what one call costs the
  CPU (Python, argument checks, autograd, the launch), whatever the GPU does meanwhile.
  The loops are short, so the GPU's launch queue never fills and holds the host back.
"""

from __future__ import annotations

import math

import torch

from .measure import calls_within, graph_us_per_call, host_us_per_call
from .report import one_line

GRAPH_BUDGET_US = 1000.0  # GPU time one replay aims at: many calls of a fast case, one of a slow one
GRAPH_MOST_CALLS = 64
REPLAYS_BUDGET_US = 250_000.0  # GPU time of all replays of one case (at least 5 replays)
L2_SPILL_BYTES = 128 * 2**20  # twice the largest L2 (50 MB on an H100, 60 MB on an H200)
MOST_INPUT_SETS = 8
HOST_LOOP_BUDGET_US = 1000.0  # device work one host loop may queue
HOST_MOST_CALLS = 16  # calls per host loop: a few hundred kernels, far from the queue's ~1000
HOST_TOTAL_BUDGET_US = 50_000.0  # device work of all host loops of one case (3 to 15 loops)


def input_sets(nbytes):
    """How many copies of a case's inputs its CUDA graph takes turns with: enough that the
    calls between two uses of the same inputs move ``L2_SPILL_BYTES``, twice any L2.
    ``nbytes``: what one call moves (``rope_bytes``)."""
    if nbytes <= 0:
        raise ValueError(f"nbytes must be positive, got {nbytes}")
    return max(1, min(MOST_INPUT_SETS, math.ceil(L2_SPILL_BYTES / nbytes)))


def gpu_time(make_calls, sets, time_us, reps):
    """``(gpu_us, gpu_clock)`` of one case on CUDA.

    ``make_calls()``: zero-argument calls, the case on each of its ``sets`` input sets
    (:func:`input_sets`), built on the stream the graph captures (see
    :func:`ropekit.bench.measure.graph_us_per_call`); ``time_us``: the case's CUDA-event
    time, which sizes the graph (enough calls for about ``GRAPH_BUDGET_US`` of GPU work) and
    is the fallback; ``reps``: replays at the most.
    ``gpu_clock`` is ``"graph of N calls"``, or ``"events: not capturable (<why>)"`` when
    the capture failed and ``gpu_us`` is ``time_us``.
    """
    count = max(sets, calls_within(GRAPH_BUDGET_US, time_us, GRAPH_MOST_CALLS))
    replays = min(reps, max(5, calls_within(REPLAYS_BUDGET_US, count * time_us, reps)))
    try:
        return graph_us_per_call(make_calls, count, replays), f"graph of {count} calls"
    except Exception as err:  # e.g. a host sync inside the call: no graph, CUDA events instead
        try:
            torch.cuda.synchronize()
        except Exception:
            pass  # the error is the reason; the events below run on a fresh stream state
        return time_us, f"events: not capturable ({type(err).__name__}: {one_line(err)})"


def host_time(fn, time_us, device):
    """Host time per call of ``fn()`` in µs: loops of a few calls (fewer when a call keeps
    the device busy for longer: ``time_us`` is its device time), clock stopped when the
    last call returns; the median over the loops."""
    calls = calls_within(HOST_LOOP_BUDGET_US, time_us, HOST_MOST_CALLS)
    repeats = max(3, calls_within(HOST_TOTAL_BUDGET_US, calls * time_us, 15))
    return host_us_per_call(fn, device, calls=calls, repeats=repeats, warmup=2, wait=False)
