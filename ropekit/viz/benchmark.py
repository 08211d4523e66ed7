"""The benchmark harness's results (``python -m ropekit.bench``): against sequence length,
one line per provider (:func:`plot_benchmark`, the kernel lessons, 05 on), and the
thirty-second summary, provider × shape heat maps of GPU speed and host time
(:func:`plot_bench_summary`, ``summary.png`` of every run)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm, Normalize

from ..bench.measure import rope_bytes
from ..bench.results import COLUMNS, DTYPES, fraction_of_baseline, read_results
from .common import figure_axes, write_cell
from .style import LINESTYLES, MARKERS, PALETTE, SEQUENTIAL, SHADE, styled

__all__ = ["plot_benchmark", "plot_bench_summary"]


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


@styled
def plot_bench_summary(data, *, passes=None, shapes=None, time="gpu_us", axes=None):
    """The RoPE benchmark in one picture: provider × shape, the fraction of copy speed of the
    GPU time (left) beside the host time per call (right).

    Args:
        data: a ``results.csv`` path, row dicts or a DataFrame, read by
            :func:`ropekit.bench.read_results`; the RoPE suite's rows are drawn.
        passes: passes to show, columns grouped by pass (default: every pass in the data,
            in the order fwd, bwd, fwd+bwd).
        shapes: ``(batch, seq)`` pairs to show (default: every shape when there are at most
            three, else the smallest and the two largest by tokens).
        time: the time the fractions come from: ``"gpu_us"`` (CUDA-graph replay, the
            default) or ``"time_us"`` (CUDA events, in files without GPU clocks and CPU runs).
        axes: two Axes (fraction, host time).

    Left, copy's time / the provider's time at the same pass and shape: 1.00 is copy speed,
    the most RoPE can reach, since it reads and writes each element once. A ``*`` marks a
    GPU time taken with CUDA events because the call could not be captured in a CUDA graph
    (``gpu_clock``). Right, ``host_us``: what one call costs the CPU (Python, checks,
    autograd, the launch); at the small shapes it is longer than the GPU's work, and then
    it, not the kernel, sets the speed of an eager program. Yellow is good in both. Grey
    cells: not measured (a provider skipped, or a file without host times). Providers with
    no measured cell are left out.
    """
    if time not in ("gpu_us", "time_us"):
        raise ValueError(f"time must be 'gpu_us' or 'time_us', got {time!r}")
    rows = [r for r in read_results(data) if r["suite"] == "rope"]
    if not rows:
        raise ValueError("data holds no rows of the RoPE suite (suite 'rope')")
    fractions = dict(zip(map(id, rows), fraction_of_baseline(rows, time)))
    all_passes = [p for p in _PASS_ORDER if any(r["pass"] == p for r in rows)]
    passes = all_passes if passes is None else list(passes)
    if not passes or any(p not in all_passes for p in passes):
        raise ValueError(f"passes must be a non-empty subset of {all_passes} (the RoPE passes in data), "
                         f"got {passes}")
    all_shapes = sorted({(r["batch"], r["seq"]) for r in rows}, key=lambda s: (s[0] * s[1], s))
    if shapes is None:
        shapes = all_shapes if len(all_shapes) <= 3 else all_shapes[:1] + all_shapes[-2:]
    shapes = [tuple(s) for s in shapes]
    if not shapes or any(s not in all_shapes for s in shapes):
        raise ValueError(f"shapes must be (batch, seq) pairs among {all_shapes}, got {shapes}")
    columns = [(p, s) for p in passes for s in shapes]
    cells = {(f"{r['provider']} {r['layout']}".strip(), r["pass"], (r["batch"], r["seq"])): r for r in rows}
    names = list(dict.fromkeys(name for name, _, _ in cells))

    def grid(value, missing=np.nan):
        """value(row) for each provider (rows) and column, ``missing`` where there is no row."""
        return np.array([[value(cells[(n, *c)]) if (n, *c) in cells else missing for c in columns]
                         for n in names])

    frac, host = grid(lambda r: fractions[id(r)]), grid(lambda r: r["host_us"])
    keep = [i for i in range(len(names)) if np.isfinite(frac[i]).any() or np.isfinite(host[i]).any()]
    if not keep:
        raise ValueError(f"data holds no RoPE row with a finite {time!r} or host_us")
    names, frac, host = [names[i] for i in keep], frac[keep], host[keep]
    events = grid(lambda r: time == "gpu_us" and r["gpu_clock"].startswith("events"), False)

    width = max(6.0, 1.0 * len(columns) + 3.2)
    fig, (left, right) = figure_axes(axes, 2, (2 * width, 0.55 * len(names) + 3.5), "axes")
    labels = [f"{p}\nB{b} S{s}\n{_size(_qk_mb(rows, b, s))}" for p, (b, s) in columns]
    what = {"gpu_us": "GPU time, CUDA graph", "time_us": "time_us"}[time]
    top = max(1.0, float(np.nanmax(frac))) if np.isfinite(frac).any() else 1.0
    _heat(left, frac, Normalize(0.0, top), SEQUENTIAL,
          lambda v, r, c: f"{v:.2f}" + ("*" if events[r, c] else ""))
    note = "\n* CUDA events: not capturable" if events.any() else ""
    left.set_title(f"fraction of copy speed ({what}){note}")
    fig.colorbar(left.images[-1], ax=left, label="copy time / time (1 = copy speed)")
    if np.isfinite(host).any():
        finite = host[np.isfinite(host)]
        low, high = float(finite.min()), float(finite.max())
        norm = LogNorm(low, high if high > low else low * 1.0001)
        _heat(right, host, norm, SEQUENTIAL + "_r", lambda v, r, c: f"{v:.0f}" if v >= 10 else f"{v:.1f}")
        fig.colorbar(right.images[-1], ax=right, label="µs per call (log scale)")
    else:
        right.text(0.5, 0.5, "no host_us in the data\n(CUDA runs measure it)", transform=right.transAxes,
                   ha="center", va="center", fontsize=13)
        right.set_xticks([])
        right.set_yticks([])
    right.set_title("host time per call (µs), eager, with autograd")
    for a in (left, right):
        if a.images:
            a.set_xticks(range(len(columns)), labels, fontsize=10)
            a.set_yticks(range(len(names)), names)
            a.grid(False)
            for n in range(1, len(passes)):  # a gap between the passes
                a.axvline(n * len(shapes) - 0.5, color="white", lw=4)
        a.set_xlabel("pass, shape (batch B, seq S), q + k size")
        a.set_ylabel("provider, layout")
    if axes is None:
        r = rows[0]
        fig.suptitle(f"ropekit.bench, RoPE: {r['dtype']}, {r['q_heads']} q heads, {r['kv_heads']} kv heads, "
                     f"head_dim {r['head_dim']}")
    return fig


def _heat(ax, values, norm, cmap, text):
    """One heat map with its numbers written in; NaN cells grey and empty."""
    colours = plt.get_cmap(cmap).with_extremes(bad=SHADE)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colours, norm=norm, aspect="auto")
    for (r, c), v in np.ndenumerate(values):
        if math.isfinite(v):
            write_cell(ax, image, r, c, v, text(v, r, c).replace("{", "{{").replace("}", "}}"), fontsize=11)


def _size(mb):
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:.2g} MB"


def _qk_mb(rows, batch, seq):
    """Megabytes of q and k at this shape (the first row's heads, head_dim and dtype)."""
    r = next(r for r in rows if (r["batch"], r["seq"]) == (batch, seq))
    return rope_bytes(batch, seq, r["q_heads"], r["kv_heads"], r["head_dim"], DTYPES[r["dtype"]]) / 2 / 1e6
