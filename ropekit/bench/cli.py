"""The command line, ``python -m ropekit.bench``: which shapes and providers a run times
(defaults depend on the device and ``--quick``), what it records about the machine, and
the files it writes (``results.csv``, ``meta.json``, ``summary.png``, ``rope.png``, ``rerope.png``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

from .providers import CPU_QUICK_PROVIDERS, REROPE_PROVIDERS, ROPE_PROVIDERS
from .report import one_line, print_summary
from .results import DTYPES, PASSES, SUITES, write_csv
from .suites import run_rerope_suite, run_rope_suite


def parse_args(argv=None):
    """Parse the command line; shapes and repetitions left out get defaults from :func:`resolve`."""
    parser = argparse.ArgumentParser(
        prog="python -m ropekit.bench",
        description="Time RoPE providers against a plain copy, and ReRoPE attention against SDPA.",
        epilog="Example: python -m ropekit.bench --quick --out my_results",
    )
    all_providers = [*ROPE_PROVIDERS, *REROPE_PROVIDERS]
    parser.add_argument("--suite", choices=(*SUITES, "all"),
                        help="default: all (with --quick on a CPU: rope, the suite a CPU can show)")
    parser.add_argument("--quick", action="store_true",
                        help="a few shapes and runs: under a minute on a GPU, or on a 2-core CPU")
    parser.add_argument("--out", default="bench_results", help="folder for results.csv, PNGs, meta.json")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (crossed with --seq)")
    parser.add_argument("--seq", type=int, nargs="+", help="sequence lengths (both suites)")
    parser.add_argument("--heads", type=int, default=32, help="query heads (default 32)")
    parser.add_argument("--kv-heads", type=int, default=8, help="key heads, RoPE suite (default 8)")
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", choices=tuple(DTYPES), help="default: bf16 on a GPU, fp32 on a CPU")
    parser.add_argument("--window", type=int, help="ReRoPE window w (default 512 on GPU, 64 on CPU)")
    parser.add_argument("--providers", nargs="+", choices=all_providers, metavar="NAME",
                        help=f"providers to run, from {', '.join(all_providers)} (default: all); "
                             "the baselines copy and sdpa_rope always run")
    parser.add_argument("--passes", nargs="+", choices=PASSES,
                        help="RoPE suite passes (default: all three; with --quick on a CPU: fwd)")
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
        # --quick: q + k of 2, 10 and 42 MB in fp32, from the CPU's caches out to its memory.
        # No seq equal to a head count or (half) head_dim: torch.compile's dynamic shapes would
        # tie it to that size at the first shape and compile a second time at the next.
        rope_shapes = [(1, 96), (1, 512), (1, 2048)] if args.quick else [(1, 256), (1, 1024), (4, 1024)]
        rerope_shapes = [(1, 256)] if args.quick else [(1, 256), (1, 1024)]
    if args.batch or args.seq:
        batches = args.batch or [1]
        rope_shapes = [(b, s) for b in batches for s in (args.seq or sorted({s for _, s in rope_shapes}))]
        rerope_shapes = [(b, s) for b in batches for s in (args.seq or sorted({s for _, s in rerope_shapes}))]
    providers = list(args.providers or [*ROPE_PROVIDERS, *REROPE_PROVIDERS])
    cpu_quick = args.quick and not gpu
    if cpu_quick and not args.providers:
        # what a CPU can run: the plain-torch forms, and torch.compile (Inductor's C++ code),
        # compiled once with dynamic shapes for every size (CPU_QUICK_PROVIDERS)
        providers = list(CPU_QUICK_PROVIDERS)
    elif args.quick and not args.providers:
        # Compiling every shape, forward and backward, both layouts, takes ~20 s on a GPU
        # machine: more than --quick's whole budget.
        providers.remove("torch_compile")
        print("--quick leaves out torch_compile (compiling each shape takes longer than the rest of "
              "the run); name it in --providers to include it")
    suite = args.suite or ("rope" if cpu_quick else "all")
    suites = SUITES if suite == "all" else (suite,)
    passes = args.passes or (["fwd"] if cpu_quick else list(PASSES))
    return {
        "device": device,
        "suites": suites,
        "rope_shapes": rope_shapes,
        "rerope_shapes": rerope_shapes,
        "rope_providers": ["copy"] + [p for p in ROPE_PROVIDERS if p in providers and p != "copy"],
        "rerope_providers": ["sdpa_rope"]
        + [p for p in REROPE_PROVIDERS if p in providers and p != "sdpa_rope"],
        "passes": [p for p in PASSES if p in passes],
        "dtype": DTYPES[args.dtype or ("bf16" if gpu else "fp32")],
        # a GPU run compiles each shape on its own (static shapes, the fastest code); a CPU
        # run compiles once with dynamic shapes, as compiling costs seconds per shape there
        "compile_dynamic": not gpu,
        "heads": args.heads,
        "kv_heads": args.kv_heads,
        "head_dim": args.head_dim,
        "window": args.window or (512 if gpu else 64),
        "reps": args.reps or ((25 if args.quick else 100) if gpu else (5 if args.quick else 10)),
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
    cpu = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "device": torch.cuda.get_device_name() if gpu else cpu,
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
        "gpu_us": "per call, from replaying a CUDA graph of several calls on inputs of their own, L2 flushed "
                  "before each replay (gpu_clock says how many, or why CUDA events instead)" if gpu else None,
        "host_us": "wall clock per call over short loops of eager calls, stopped when the last call returns "
                   "(host_nograd_us: the forward without autograd; for copy, q_out.copy_(q); k_out.copy_(k))"
        if gpu else None,
        "torch_compile": "dynamic shapes, one compile for every size" if config["compile_dynamic"]
        else "static shapes, compiled afresh for each shape",
    }


def main(argv=None):
    """Run the benchmark described by ``argv`` (default: ``sys.argv[1:]``); returns the rows."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    began = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = resolve(args, device)
    if device == "cpu":
        print(f"No CUDA device: timing plain-torch RoPE on this CPU ({config['dtype']}). A CPU shows the "
              "same lesson as a GPU (one pass over memory beats several), but its numbers say nothing "
              f"about GPU speed: {_committed_runs()}.", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    if "rope" in config["suites"]:
        rows += run_rope_suite(config["rope_shapes"], config["heads"], config["kv_heads"], config["head_dim"],
                               config["dtype"], config["rope_providers"], config["passes"], device,
                               config["reps"], config["warmup"], compile_dynamic=config["compile_dynamic"])
    if "rerope" in config["suites"]:
        rows += run_rerope_suite(config["rerope_shapes"], config["heads"], config["head_dim"],
                                 config["dtype"], config["window"], config["rerope_providers"], device,
                                 config["reps"], config["warmup"])
    write_csv(rows, out / "results.csv")
    (out / "meta.json").write_text(json.dumps(meta(config, argv), indent=2) + "\n")
    print_summary(rows)
    _plot(out, config["suites"], device)
    print(f"wrote {out / 'results.csv'} and {out / 'meta.json'} in {time.perf_counter() - began:.0f} s")
    if device == "cpu":
        print(f"These are CPU numbers. {_committed_runs()[0].upper()}{_committed_runs()[1:]}.")
    return rows


def _committed_runs():
    """Where the committed GPU results are, in words, naming the runs of this checkout."""
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    runs = sorted(p.parent.name for p in results.glob("*/results.csv"))
    where = "benchmarks/results/" + (f" ({', '.join(runs)})" if runs else " of the ropekit repository")
    return f"GPU figures, ropekit's Triton kernels included, come from the committed runs in {where}"


def _plot(out, suites, device):
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ:
        # No window needed: figures go to files. Set for this process only: an environment
        # variable would leak into every process it starts (a test's notebook kernels too).
        matplotlib.use("Agg")
    try:
        from ..viz import plot_bench_summary, plot_benchmark
    except ImportError as err:
        print(f"plotting skipped: ropekit.viz is not available ({one_line(err)})")
        return
    import matplotlib.pyplot as plt

    note = "measured on a CPU: says nothing about GPU speed (GPU runs: benchmarks/results/)"
    csv_path = str(out / "results.csv")
    figures = [(suite, lambda suite=suite: plot_benchmark(csv_path, suite=suite)) for suite in suites]
    if "rope" in suites:
        # a CPU run has no GPU clock: its summary shows the fraction of copy speed of time_us
        time = "gpu_us" if device == "cuda" else "time_us"
        figures.insert(0, ("summary", lambda: plot_bench_summary(csv_path, time=time)))
    for name, draw in figures:
        try:
            fig = draw()
            if device != "cuda":
                fig.supxlabel(note, fontsize=12)
            fig.savefig(out / f"{name}.png", dpi=120 if name != "summary" else 100, bbox_inches="tight")
            plt.close(fig)
            print(f"wrote {out / f'{name}.png'}")
        except Exception as err:  # a plot is a bonus; the CSV is the result
            print(f"plotting {name} failed: {type(err).__name__}: {one_line(err)}")
