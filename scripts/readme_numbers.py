"""The README's benchmark numbers, rendered from the committed results (issue 14: figures
in prose are generated from committed results, never typed).

    python scripts/readme_numbers.py           # rewrite the generated blocks of README.md
    python scripts/readme_numbers.py --check   # exit 1, saying which block, if README.md differs

A generated block is everything between a line ``<!-- generated:NAME -->`` and the line
``<!-- /generated:NAME -->``; :data:`BLOCKS` says what each NAME holds and which folder of
``benchmarks/results/`` it reads. To change the README's numbers, commit a new run and
rerun this script; to change their form, edit this script. tests/test_readme_numbers.py
fails when the README's blocks differ from what this script renders.

Every number comes from a results file through ropekit.bench's own reader
(``read_results``, ``fraction_of_baseline``, ``launch_path``): fractions of copy speed are
the baseline's time / the provider's time at the same shape and pass, on ``gpu_us`` (the
CUDA-graph replay) where a run measured it, else on ``time_us`` (CUDA events).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from pathlib import Path

from ropekit.bench import DTYPES, fraction_of_baseline, launch_path, read_results, rope_bytes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
LARGE_BYTES = 256e6  # q + k of at least this: memory-bound, where issue 14's ≥ 0.95 target applies
SMALL_BYTES = 64e6  # q + k under this: a call moves less than an L2 and then some; host time dominates
DASH = "–"
TIME_WORDS = {"gpu_us": "GPU time from a CUDA-graph replay (`gpu_us`)",
              "time_us": "CUDA-event time of one call after an L2 flush (`time_us`)"}


# --- numbers as the README writes them -------------------------------------------------------


def span(values, digits=2, suffix=""):
    """``0.97`` when the values agree to ``digits`` places, else ``0.96–0.98``; ``–`` for none."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return DASH
    low, high = f"{finite[0]:,.{digits}f}", f"{finite[-1]:,.{digits}f}"
    return f"{low}{suffix}" if low == high else f"{low}{DASH}{high}{suffix}"


def table(header, lines):
    """A Markdown table."""
    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


def qk_bytes(row):
    """Bytes of q and k at a row's shape (half of what a forward pass moves)."""
    return rope_bytes(row["batch"], row["seq"], row["q_heads"], row["kv_heads"], row["head_dim"],
                      DTYPES[row["dtype"]]) / 2


def shape_name(row):
    return f"B{row['batch']} S{row['seq']}"


def time_column(rows):
    """``gpu_us`` where the run measured it, else ``time_us``."""
    return "gpu_us" if any(math.isfinite(r["gpu_us"]) for r in rows) else "time_us"


def source(folder):
    """Where a run's numbers come from, in words: folder, device, date, versions."""
    meta = json.loads((folder / "meta.json").read_text())
    where = f"benchmarks/results/{folder.name}"
    link = f"[`{where}`]({where}/README.md)" if (folder / "README.md").exists() else f"`{where}`"
    versions = ", ".join(f"{name} {meta[key]}" for name, key in (("torch", "torch"), ("triton", "triton"))
                         if meta.get(key))
    return f"{link} ({meta['device']}, {meta['date'][:10]}, {versions})"


# --- the blocks ------------------------------------------------------------------------------


def rope_block(folder):
    """RoPE: the fraction of copy speed of every provider, layout and pass at q + k ≥ 256 MB,
    and, where the run timed the host, the launch path at its smallest shape."""
    rows = [r for r in read_results(folder / "results.csv") if r["suite"] == "rope"]
    column = time_column(rows)
    fractions = fraction_of_baseline(rows, column)
    large = [(r, f) for r, f in zip(rows, fractions) if qk_bytes(r) >= LARGE_BYTES]
    if not large:
        raise ValueError(f"{folder}: no RoPE shape with q + k of at least {LARGE_BYTES / 1e6:.0f} MB")
    shapes = list(dict.fromkeys((shape_name(r), qk_bytes(r)) for r, _ in large))
    passes = list(dict.fromkeys(r["pass"] for r, _ in large))
    names = list(dict.fromkeys((r["provider"], r["layout"]) for r, _ in large
                               if r["provider"] != r["baseline"]))
    lines, missing = [], []
    for provider, layout in names:
        cells = [span([f for r, f in large
                       if (r["provider"], r["layout"], r["pass"]) == (provider, layout, p)])
                 for p in passes]
        if all(c == DASH for c in cells):
            missing.append(f"{provider} {layout}".strip())
        else:
            lines.append([provider, layout or DASH, *cells])
    sizes = ", ".join(f"{name} ({size / 1e6:,.0f} MB)" for name, size in shapes)
    text = (f"{source(folder)}: fraction of copy speed, {TIME_WORDS[column]}, at q + k ≥ "
            f"{LARGE_BYTES / 1e6:.0f} MB: {sizes}; a range is the lowest and highest over those shapes.\n\n"
            + table(["provider", "layout", *passes], lines))
    if missing:
        text += f"\n\nNot measured in this run (skipped: see its `results.csv`): {', '.join(missing)}."
    return text + launch_block(rows)


def launch_block(rows):
    """Issue 14's launch path (host time per forward call against two ``copy_`` calls), or
    nothing for a run that did not time the host."""
    shape, lines = launch_path(rows)
    if not lines:
        return ""

    def fixed(value, digits):
        return f"{value:.{digits}f}" if math.isfinite(value) else DASH

    cells = [[name, fixed(nograd, 1), fixed(nograd_x, 2), fixed(grad, 1), fixed(grad_x, 2)]
             for name, nograd, nograd_x, grad, grad_x in lines]
    return (f"\n\nHost time per forward call at B{shape[0]} S{shape[1]} (`host_nograd_us`, `host_us`), "
            "and as a multiple of two `copy_` calls' (`q_out.copy_(q); k_out.copy_(k)`; issue 14 asks "
            "at most 2× without autograd, 3× with):\n\n"
            + table(["provider", "no grad (µs)", "× copy_", "autograd (µs)", "× copy_"], cells))


def small_shapes_block(folder):
    """How long a copy of q and k takes the GPU at the shapes under 64 MB."""
    rows = [r for r in read_results(folder / "results.csv")
            if (r["suite"], r["provider"], r["pass"], r["status"]) == ("rope", "copy", "fwd", "ok")
            and qk_bytes(r) < SMALL_BYTES]
    if not rows:
        raise ValueError(f"{folder}: no copy forward row with q + k under {SMALL_BYTES / 1e6:.0f} MB")
    column = time_column(rows)
    shapes = ", ".join(shape_name(r) for r in rows)
    return (f"At q + k under {SMALL_BYTES / 1e6:.0f} MB ({shapes}; `benchmarks/results/{folder.name}`) "
            f"a forward copy of q and k takes the GPU {span([r[column] for r in rows], 0, ' µs')} "
            f"(`{column}`).")


def rerope_block(folder):
    """ReRoPE attention against SDPA, and against the two-matrix reference, per sequence length."""
    rows = [r for r in read_results(folder / "results.csv") if r["suite"] == "rerope"]
    column = time_column(rows)
    by = {(r["provider"], r["seq"]): r for r in rows}
    lines = []
    for seq in sorted({r["seq"] for r in rows}):
        sdpa, fused, ref = (by.get((p, seq)) for p in ("sdpa_rope", "ropekit_fused", "reference"))

        def ms(r):
            return f"{r[column] / 1e3:,.2f}" if r and r["status"] == "ok" else (r["status"].removeprefix(
                "skipped: ") if r else DASH)

        def mib(r):
            return f"{r['peak_mem_mb']:,.0f}" if r and math.isfinite(r["peak_mem_mb"]) else DASH

        ok = [r is not None and r["status"] == "ok" for r in (sdpa, fused, ref)]
        ratio = f"{fused[column] / sdpa[column]:.2f}" if ok[0] and ok[1] else DASH
        speedup = f"{ref[column] / fused[column]:,.0f}×" if ok[1] and ok[2] else DASH
        lines.append([f"{seq:,}", ms(sdpa), ms(fused), ratio, ms(ref), speedup, f"{mib(fused)} / {mib(ref)}"])
    first = rows[0]
    return (f"{source(folder)}: causal ReRoPE attention, B{first['batch']}, {first['q_heads']} heads, "
            f"head_dim {first['head_dim']}, {first['dtype']}, window {first['window']}, forward; "
            f"{TIME_WORDS[column]}, in ms; extra memory at the peak of a call.\n\n"
            + table(["seq", "SDPA, pre-rotated q and k", "ropekit fused ReRoPE", "fused / SDPA",
                     "two-matrix reference", "reference / fused", "extra MiB, fused / reference"], lines))


MROPE_PROVIDERS = {"ropekit-exact": "ropekit, exact angles", "ropekit": "ropekit, float32 angles",
                   "ropekit-1d": "ropekit 1-D RoPE (t ids)", "compile": "transformers formula, torch.compile",
                   "eager": "transformers formula, eager"}


def mrope_block(folder):
    """M-RoPE forward: each provider's fraction of copy speed per model, over the shapes of
    the run (``benchmarks/gpu_mrope_bench.py``'s CSV: the median over repeats of each median)."""
    with open(folder / "results.csv", newline="") as f:
        raw = [r for r in csv.DictReader(f) if r["direction"] == "fwd"]
    times = {}
    for r in raw:
        times.setdefault((r["model"], r["batch"], r["seq"], r["provider"]), []).append(float(r["median_us"]))
    median = {key: statistics.median(values) for key, values in times.items()}
    models = list(dict.fromkeys(r["model"] for r in raw))
    sizes = [float(r["qk_mb"]) for r in raw]
    lines = []
    for model in models:
        cells = []
        for provider in MROPE_PROVIDERS:
            cells.append(span([median[(m, b, s, "copy")] / t for (m, b, s, p), t in median.items()
                               if m == model and p == provider]))
        lines.append([model, *cells])
    return (f"{source(folder)}: M-RoPE forward, fraction of copy speed (median over repeats of "
            f"`triton.testing.do_bench` medians, L2 flushed), q + k of "
            f"{min(sizes):,.0f}{DASH}{max(sizes):,.0f} MB; "
            "a range is the lowest and highest over the shapes.\n\n"
            + table(["model", *MROPE_PROVIDERS.values()], lines))


def kernels2_block(folder):
    """The second-wave kernels (``benchmarks/gpu_kernels2_bench.py``): fused ReRoPE forward and
    forward + backward against SDPA, and the fused decode write against the unfused path."""
    with open(folder / "rerope.csv", newline="") as f:
        rerope = list(csv.DictReader(f))
    with open(folder / "decode.csv", newline="") as f:
        decode = list(csv.DictReader(f))
    gpu = {(r["seq"], r["provider"], r["pass_"]): float(r["gpu_us"]) for r in rerope}
    extra = {(r["seq"], r["provider"], r["pass_"]): float(r["extra_mb"]) for r in rerope}
    first = rerope[0]
    lines = []
    for seq in dict.fromkeys(r["seq"] for r in rerope):
        for pass_ in ("fwd", "fwd+bwd"):
            ours, sdpa = gpu[(seq, "ropekit", pass_)], gpu[(seq, "sdpa", pass_)]
            lines.append([f"{int(seq):,}", pass_, f"{sdpa / 1e3:.2f}", f"{ours / 1e3:.2f}", f"{sdpa / ours:.2f}",
                          f"{extra[(seq, 'ropekit', pass_)]:,.0f} / {extra[(seq, 'sdpa', pass_)]:,.0f}"])
    by = {(r["batch"], r["provider"]): r for r in decode}
    decode_lines = []
    for batch in dict.fromkeys(r["batch"] for r in decode):
        fused, unfused = by[(batch, "fused")], by[(batch, "unfused")]
        decode_lines.append([batch, fused["gpu_us"], unfused["gpu_us"],
                             f"{float(unfused['gpu_us']) / float(fused['gpu_us']):.1f}×",
                             f"{float(fused['fraction_of_copy']):.2f}", f"{float(fused['host_us']):.0f}",
                             f"{float(unfused['host_us']):.0f}"])
    d = decode[0]
    return (f"{source(folder)}: causal ReRoPE attention, B1, {first['heads']} heads, head_dim "
            f"{first['head_dim']}, bf16, window {first['window']}; GPU time (CUDA events after an L2 flush, "
            "median), in ms; speed = SDPA's time / ropekit's; extra MiB at the peak of a call.\n\n"
            + table(["seq", "pass", "SDPA (pre-rotated q, k)", "ropekit fused ReRoPE", "speed vs SDPA",
                     "extra MiB, ropekit / SDPA"], lines)
            + f"\n\nA decode step's write ({d['heads']} query / {d['kv_heads']} kv heads, head_dim {d['head_dim']}, "
            "bf16, one new token per sequence): `fused` = `ropekit.kernels.rope_decode_append` (one launch), "
            "`unfused` = `apply_rope_qk` then one `index_put_` per cache; GPU time per call from a replayed "
            "CUDA graph, host time per eager call; fraction of copy = a copy of the bytes the step must move "
            "/ the fused step's GPU time.\n\n"
            + table(["batch", "fused GPU µs", "unfused GPU µs", "fused speed-up (GPU)", "fused, fraction of copy",
                     "fused host µs", "unfused host µs"], decode_lines))


# name -> (what it renders, from which folders of benchmarks/results/)
BLOCKS = {
    "bench-rope": lambda results: "\n\n".join(
        [rope_block(results / "h100"), rope_block(results / "h200-quick"), rope_block(results / "h200-quick-clocks"),
         small_shapes_block(results / "h100")]),
    "bench-rerope": lambda results: rerope_block(results / "h100"),
    "bench-mrope": lambda results: mrope_block(results / "h200-mrope-exact"),
    "bench-kernels2": lambda results: kernels2_block(results / "h200-kernels2"),
}


# --- the README ------------------------------------------------------------------------------


def render(text, results=RESULTS, blocks=None):
    """``text`` (a README) with every generated block rendered afresh from ``results``.
    Raises ValueError naming a block whose markers are missing or out of order."""
    blocks = BLOCKS if blocks is None else blocks
    for name, make in blocks.items():
        tag = re.escape(name)
        pattern = re.compile(rf"(<!-- generated:{tag} -->\n)(.*?)(<!-- /generated:{tag} -->)", re.DOTALL)
        if len(pattern.findall(text)) != 1:
            raise ValueError(f"README must hold exactly one '<!-- generated:{name} -->' ... "
                             f"'<!-- /generated:{name} -->' pair, one marker a line")
        text = pattern.sub(lambda m: m.group(1) + make(Path(results)).rstrip("\n") + "\n" + m.group(3), text)
    return text


def stale_blocks(text, rendered):
    """Names of the blocks whose text differs between two versions of a README."""
    def block(source, name):
        found = re.search(rf"<!-- generated:{re.escape(name)} -->\n(.*?)<!-- /generated:", source, re.DOTALL)
        return found.group(1) if found else None

    return [name for name in BLOCKS if block(text, name) != block(rendered, name)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if README.md is stale")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    rendered = render(text, args.results)
    if args.check:
        stale = stale_blocks(text, rendered)
        if stale:
            print(f"{args.readme}: generated block(s) {', '.join(stale)} differ from the committed results; "
                  f"run python scripts/readme_numbers.py")
            return 1
        print(f"{args.readme}: generated blocks up to date")
        return 0
    if rendered != text:
        args.readme.write_text(rendered)
        print(f"rewrote the generated blocks of {args.readme}")
    else:
        print(f"{args.readme}: generated blocks already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
