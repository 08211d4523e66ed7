"""The benchmark harness's results (``python -m ropekit.bench``) drawn against sequence
length, one line per provider (the kernel lessons, 05 on)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..bench.results import COLUMNS, read_results
from .common import figure_axes
from .style import LINESTYLES, MARKERS, PALETTE, styled

__all__ = ["plot_benchmark"]


BENCH_COLUMNS = COLUMNS  # the name this module gave the schema before ropekit.bench.results held it


_PASS_ORDER = ("fwd", "bwd", "fwd+bwd")


_SHAPE_COLUMNS = ("batch", "q_heads", "kv_heads", "head_dim", "dtype", "window")


@styled
def plot_benchmark(data, suite: str = "rope", *, batch=None, axes=None):
    """The benchmark harness's results (``python -m ropekit.bench``), one line per provider.

    Args:
        data: the ``results.csv`` path, a list of row dicts (strings are fine, as
            ``csv.DictReader`` gives), or a pandas DataFrame, read by
            :func:`ropekit.bench.read_results` (the columns are ``ropekit.bench.COLUMNS``).
            Rows whose ``status`` is not ``ok`` are left out.
        suite: ``"rope"``: GB/s (top row) and speed as a fraction of copying q and k
            (``speed_vs_baseline``, bottom row) against sequence length, one column per
            pass (fwd, bwd, fwd+bwd). ``"rerope"``: time and peak extra memory against
            sequence length.
        batch: draw only the rows of this batch size (default: all, one line style each).
        axes: 2 × (number of passes) Axes for ``"rope"`` (row-major), 2 for ``"rerope"``.

    One line per provider and layout, and per batch (or any other shape column) where
    the file holds several. The baseline (copy, or SDPA on pre-rotated q and k) is black.

    What to notice: RoPE reads and writes every element once and does almost no
    arithmetic, so the copy line is the ceiling; a fused kernel should sit close to it
    (fraction near 1) while eager torch, which makes several passes over memory, falls
    well below. In the ReRoPE suite the two-product reference's memory grows as seq²,
    the fused kernel's does not. The kernel lessons (05+) show stored GPU results.
    """
    if suite not in ("rope", "rerope"):
        raise ValueError(f"suite must be 'rope' or 'rerope', got {suite!r}")
    rows = [r for r in read_results(data) if r["suite"] == suite and r["status"] == "ok"
            and (batch is None or r["batch"] == batch)]
    if not rows:
        which = f"suite={suite!r}" + ("" if batch is None else f", batch={batch}")
        raise ValueError(f"data holds no rows with {which} "
                         "and status 'ok'")
    passes = [p for p in _PASS_ORDER if any(r["pass"] == p for r in rows)]
    passes += sorted({r["pass"] for r in rows} - set(passes))
    baseline = rows[0]["baseline"]
    varying = [c for c in _SHAPE_COLUMNS if len({r[c] for r in rows}) > 1]
    constant = ", ".join(f"{c} {rows[0][c]}" for c in _SHAPE_COLUMNS
                         if c not in varying and rows[0][c] not in ("", None))

    if suite == "rope":
        width = max(5.4 * len(passes) + 1, 11.0)  # one pass: room for the legend beside it
        fig, flat = figure_axes(axes, 2 * len(passes), (width, 9.0), "axes", nrows=2)
        panels = [(flat[n], flat[len(passes) + n], p) for n, p in enumerate(passes)]
        quantities = (
            ("gbps", "GB/s (bytes of q, k in + out)"),
            ("speed_vs_baseline", f"speed / {baseline} speed"),
        )
    else:
        fig, flat = figure_axes(axes, 2, (14, 5.6), "axes")
        panels = [(flat[0], flat[1], passes[0])]
        quantities = (("time_us", "time (µs)"), ("peak_mem_mb", "peak extra memory (MB)"))
    for top, bottom, pass_ in panels:
        part = [r for r in rows if r["pass"] == pass_]
        for a, (column, label) in zip((top, bottom), quantities):
            _plot_benchmark_lines(a, part, column, baseline, varying)
            a.set_xlabel("sequence length (tokens)")
            a.set_ylabel(label)
            if a.get_lines():
                a.set_xscale("log", base=2)
                seqs = sorted({r["seq"] for r in part})
                a.set_xticks(seqs, [f"{s:,}" for s in seqs])
                a.minorticks_off()
        top.set_title(f"{suite} {pass_}: " + ("bandwidth" if suite == "rope" else "time"))
        bottom_what = f"fraction of {baseline} speed" if suite == "rope" else "memory"
        bottom.set_title(f"{suite} {pass_}: {bottom_what}")
        if suite == "rope":
            bottom.axhline(1.0, color="0.5", lw=1)
            bottom.set_ylim(bottom=0)
        else:
            top.set_yscale("log")
            if not bottom.get_lines():
                bottom.text(0.5, 0.5, "no peak memory in the data\n(the harness measures it on CUDA only)",
                            transform=bottom.transAxes, ha="center", va="center", fontsize=13)
                bottom.set_xticks([])
                bottom.set_yticks([])
    if axes is None:  # a legend of its own beside the panels, clear of the data
        fig.legend(handles=flat[0].get_lines(), loc="outside right upper", fontsize=11)
    else:
        flat[0].legend(fontsize=11)
    if axes is None and constant:
        fig.suptitle(f"ropekit.bench, {suite} suite\n{constant}", fontsize=15)
    return fig


def _plot_benchmark_lines(ax, rows, column, baseline, varying):
    """One line per provider, layout and varying shape column, sorted by seq; NaNs dropped.

    Colour tells the provider and layout (black: the baseline), line style and marker
    the shape (e.g. the batch), so the same provider keeps its colour across shapes.
    """
    groups = {}
    for r in rows:
        if np.isfinite(r[column]):
            groups.setdefault((r["provider"], r["layout"], *(r[c] for c in varying)), []).append(r)
    providers = list(dict.fromkeys(key[:2] for key in groups if key[0] != baseline))
    shapes = list(dict.fromkeys(key[2:] for key in groups))
    for key, group in groups.items():
        group.sort(key=lambda r: r["seq"])
        provider, layout, *shape = key
        label = " ".join(str(part) for part in (provider, layout) if part)
        label += "".join(f", {c} {v}" for c, v in zip(varying, shape))
        n = shapes.index(tuple(shape))
        if provider == baseline:
            colour = "black"
        else:
            colour = _provider_colour(providers.index(key[:2]), len(providers))
        ax.plot([r["seq"] for r in group], [r[column] for r in group], label=label, color=colour,
                ls=LINESTYLES[n % len(LINESTYLES)], marker=MARKERS[n % len(MARKERS)])


def _provider_colour(index, count):
    """The kit's palette while it has enough colours, else matplotlib's ten-colour one."""
    if count < len(PALETTE):
        return PALETTE[1 + index]
    return plt.get_cmap("tab10")(index % 10)
