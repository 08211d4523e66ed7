"""Render every ropekit.viz picture to docs/gallery/*.png: ``make gallery``.

Each figure is one library call with the settings the lessons use, saved at 100 dpi.
The benchmark figures use the newest committed GPU results in benchmarks/results/ when
there are some; otherwise a small CPU run of ``python -m ropekit.bench`` (CPU numbers say
nothing about GPU speed, and the picture says so in its file name).
"""

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import ropekit  # noqa: E402
from ropekit import rope2d, viz  # noqa: E402
from ropekit.bench import read_results, results_files  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "docs" / "gallery"
MAX_BYTES = 300_000


def repeated_token(seq, head_dim, seed=0):
    """The same random vector at every position: its logits depend on i − j alone."""
    torch.manual_seed(seed)
    return torch.randn(1, head_dim).expand(seq, head_dim)


def benchmark_csv():
    """The fullest results.csv under benchmarks/results/ (most rows: a full sweep rather than
    a --quick one; file mtimes mean nothing in a fresh clone), else a small CPU run."""
    # only ropekit.bench's files (results_files checks the header); other scripts write other CSVs
    stored = sorted(results_files(ROOT / "benchmarks" / "results"),
                    key=lambda p: (len(p.read_text().splitlines()), str(p)))
    if stored:
        return stored[-1], ""
    out = Path(tempfile.mkdtemp(prefix="ropekit_bench_"))
    command = [sys.executable, "-m", "ropekit.bench", "--out", str(out), "--seq", "64", "128", "256",
               "--heads", "4", "--kv-heads", "2", "--head-dim", "32", "--reps", "5"]
    print("no stored results in benchmarks/results/: a small CPU run:", " ".join(command[1:]))
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out / "results.csv", "_cpu"


def rope2d_maps(height=9, width=9, head_dim=32, seed=0):
    """Lesson 08's score maps: one random vector as query (centre patch) and key (every patch)."""
    q = torch.randn(head_dim, generator=torch.Generator().manual_seed(seed))
    grid = rope2d.image_grid_positions(height, width)
    cos_ax, sin_ax = rope2d.axial_cos_sin(grid, rope2d.axial_frequencies(head_dim))
    freqs = rope2d.mixed_frequencies(head_dim, heads=1, generator=torch.Generator().manual_seed(seed + 1))
    cos_mx, sin_mx = rope2d.mixed_cos_sin(grid, freqs)
    return {"axial 2-D RoPE": rope2d.grid_scores(q, q, cos_ax, sin_ax, height, width),
            "RoPE-Mixed (one head)": rope2d.grid_scores(q, q, cos_mx[:, 0], sin_mx[:, 0], height, width)}


def figures():
    """name -> a function drawing one figure."""
    q = repeated_token(64, 32)
    found = {
        "rotation_matrix": lambda: viz.plot_rotation_matrix(position=3, dim=8, layout="both"),
        "rotation_2d": lambda: viz.plot_rotation_2d(max_position=8, dim=16),
        "frequency_spectrum": lambda: viz.plot_frequency_spectrum(dim=128, base=10000.0, factor=8.0,
                                                                  original_max_position_embeddings=4096),
        "relative_positions": lambda: viz.plot_relative_positions(length=8, window=4, factor=2.0),
        "long_term_decay": lambda: viz.plot_long_term_decay(dim=128, base=10000.0, max_distance=256),
        "attention_logits": lambda: viz.plot_attention_logits(
            q, q, ["rope", "rerope", "leaky_rerope"], inv_freq=ropekit.rope_frequencies(32, base=100.0)[0],
            window=16, factor=4.0),
        "rope2d_scores": lambda: viz.plot_grid_scores(rope2d_maps()),
        "mrope_pair_axes": lambda: viz.plot_mrope_pair_axes(
            ropekit.rope_frequencies(128, 1_000_000.0)[0],
            {"Qwen2-VL: sections 16/24/24": ((16, 24, 24), False),
             "Qwen3-VL: interleaved 24/20/20": ((24, 20, 20), True)}),
    }
    csv_path, suffix = benchmark_csv()
    rows = read_results(csv_path)
    for suite in ("rope", "rerope"):
        # the largest batch only: one line per provider reads better on a page
        largest = max(r["batch"] for r in rows if r["suite"] == suite)
        found[f"benchmark_{suite}{suffix}"] = lambda suite=suite, batch=largest: viz.plot_benchmark(
            rows, suite=suite, batch=batch)
    # the summary's GPU time is gpu_us (CUDA-graph replay) where the run measured it
    timed = any(r["suite"] == "rope" and math.isfinite(r["gpu_us"]) for r in rows)
    found[f"benchmark_summary{suffix}"] = lambda: viz.plot_bench_summary(
        rows, time="gpu_us" if timed else "time_us")
    return found


def main():
    GALLERY.mkdir(parents=True, exist_ok=True)
    for name, draw in figures().items():
        path = GALLERY / f"{name}.png"
        fig = draw()
        fig.savefig(path, dpi=70 if name.startswith("benchmark") else 100)  # many lines: keep them small
        plt.close(fig)
        size = path.stat().st_size
        print(f"wrote {path.relative_to(ROOT)} ({size / 1000:.0f} KB)")
        if size > MAX_BYTES:
            raise SystemExit(f"{path} is {size / 1000:.0f} KB, over the {MAX_BYTES / 1000:.0f} KB budget")


if __name__ == "__main__":
    main()
