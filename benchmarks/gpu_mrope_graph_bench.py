"""M-RoPE forward and forward + backward on a CUDA GPU, GPU time alone (CUDA-graph replay).

    python benchmarks/gpu_mrope_graph_bench.py --out benchmarks/results/h200-mrope-graph

``benchmarks/gpu_mrope_bench.py`` times each call with ``triton.testing.do_bench``: CUDA
events around one eager call after an L2 flush. For forward + backward at 335 MB that call
also waits for the host (autograd builds the graph and launches the backward), and its
times spread by up to a half between repeats. Here the same providers and shapes are timed
with ``ropekit.bench.measure.graph_us_per_call``: the calls (forward, or forward and
``torch.autograd.grad``) are captured in a CUDA graph, each on inputs of its own, and the
graph is replayed after an L2 flush: what the kernels cost the GPU, with no host in between.
The yardstick ``copy`` clones q and k (forward), and for forward + backward clones q, k and
the two incoming gradients: the bytes a fused forward and backward must move.

Writes ``results.csv``, ``meta.json`` and ``README.md`` (device, versions, date, command,
table) into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
from pathlib import Path

import torch
import triton

from gpu_mrope_bench import MODELS, make_inputs, providers
from ropekit.bench.measure import graph_us_per_call
from ropekit.bench.tables import write_rows

SHAPES = [(4, 8192), (4, 16384)]
KERNEL_PROVIDERS = ("copy", "ropekit", "ropekit-exact", "ropekit-1d")


def calls_for(fn, q, k, positions, inv_freq, pass_, sets):
    """make_calls for graph_us_per_call: the pass on `sets` input sets of its own."""
    def make_calls():
        calls = []
        for _ in range(sets):
            qi, ki = q.clone().requires_grad_(), k.clone().requires_grad_()
            dq, dk = q.detach().clone(), k.detach().clone()
            if fn is None:  # the copy yardstick
                if pass_ == "fwd":
                    calls.append(lambda qi=qi, ki=ki: (qi.detach().clone(), ki.detach().clone()))
                else:
                    calls.append(lambda qi=qi, ki=ki, dq=dq, dk=dk: (qi.detach().clone(), ki.detach().clone(),
                                                                     dq.clone(), dk.clone()))
            elif pass_ == "fwd":
                calls.append(lambda qi=qi, ki=ki: fn(qi, ki, positions, inv_freq))
            else:
                calls.append(lambda qi=qi, ki=ki, dq=dq, dk=dk: torch.autograd.grad(
                    fn(qi, ki, positions, inv_freq), (qi, ki), (dq, dk)))
        return calls
    return make_calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in MODELS:
        fns = providers(model)
        for batch, seq in SHAPES:
            q, k, positions, inv_freq = make_inputs(model, batch, seq)
            qk_mb = (q.numel() + k.numel()) * q.element_size() / 1e6
            for pass_ in ("fwd", "fwd+bwd"):
                times = {}
                for name in KERNEL_PROVIDERS:
                    fn = None if name == "copy" else fns[name]
                    us = graph_us_per_call(calls_for(fn, q, k, positions, inv_freq, pass_, 2), 2, args.reps)
                    times[name] = us
                    rows.append(dict(model=model, batch=batch, seq=seq, qk_mb=round(qk_mb, 1), pass_=pass_,
                                     provider=name, gpu_us=round(us, 1)))
                for row in rows[-len(KERNEL_PROVIDERS):]:
                    row["vs_copy"] = round(times["copy"] / row["gpu_us"], 3)
                    print(row, flush=True)
            del q, k
            torch.cuda.empty_cache()
    write_rows(rows, args.out / "results.csv")
    meta = dict(device=torch.cuda.get_device_name(), python=platform.python_version(), torch=torch.__version__,
                cuda=torch.version.cuda, triton=triton.__version__,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                command="python " + " ".join(shlex.quote(a) for a in sys.argv), reps=args.reps)
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = ["| model | batch × seq | q+k MB | pass | provider | GPU µs | vs copy |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['batch']} × {r['seq']} | {r['qk_mb']} | {r['pass_']} | {r['provider']} | "
              f"{r['gpu_us']} | {r['vs_copy']:.2f}× |" for r in rows]
    (args.out / "README.md").write_text(
        f"# M-RoPE kernel, GPU time from CUDA-graph replay\n\n- device: {meta['device']}\n"
        f"- torch {meta['torch']}, triton {meta['triton']}, Python {meta['python']}\n- date (UTC): {meta['date']}\n"
        f"- command: `{meta['command']}`\n\n{__doc__.split(chr(10) + chr(10), 2)[2]}\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
