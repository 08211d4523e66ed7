"""Published results, drawn from a small committed table: the ReRoPE post's accuracy against
the window and against Leaky ReRoPE's k (lesson 04). The numbers are quoted, not measured."""

from __future__ import annotations

import csv
import os

from .common import figure_axes
from .style import LINESTYLES, MARKERS, PALETTE, styled

__all__ = ["read_reported_table", "plot_rerope_post_tables"]

_LOG_N_LABELS = {"none": "no log n", "test": "log n at test time only", "train": "log n in training"}
_INTS = ("window", "leaky_k")
_FLOATS = ("acc_512", "acc_4096_repeated", "acc_4096_nonrepeated")


def read_reported_table(path) -> list[dict]:
    """Rows of a quoted-results CSV (``docs/data/rerope_post_tables.csv``): lines starting
    with ``#`` say where the numbers come from and are skipped; ``window`` and ``leaky_k``
    become int (None when empty), the accuracy columns float (percent). Lesson 04 §9."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a CSV path, got {type(path).__name__}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    for row in rows:
        for key in _INTS:
            row[key] = int(row[key]) if row[key] else None
        for key in _FLOATS:
            row[key] = float(row[key])
    return rows


@styled
def plot_rerope_post_tables(path, *, axes=None):
    """Su's ReRoPE post (kexue.fm/archives/9708), its two ablations as pictures.

    Left: ReRoPE's 4096-token accuracy against the window w (the ``window`` table), one
    line per log-n variant, solid for repeated text, dashed for non-repeated. Right: Leaky
    ReRoPE against k (the ``leaky`` table, log n in training) for w = 128 and 256, with
    ReRoPE (k = ∞) of the same w as a horizontal line. The training length is 512.
    path: the CSV read by :func:`read_reported_table`; axes: two Axes. Lesson 04 §9.
    """
    rows = read_reported_table(path)
    fig, (ax_w, ax_k) = figure_axes(axes, 2, (15, 5.6), "axes")
    window_rows = [r for r in rows if r["table"] == "window"]
    for n, log_n in enumerate(("none", "test", "train")):
        pts = sorted((r["window"], r) for r in window_rows if r["log_n"] == log_n)
        w = [p[0] for p in pts]
        for column, style in (("acc_4096_repeated", "-"), ("acc_4096_nonrepeated", "--")):
            label = f"{_LOG_N_LABELS[log_n]}, {'repeated' if style == '-' else 'non-repeated'}"
            values = [p[1][column] for p in pts]
            ax_w.plot(w, values, color=PALETTE[n + 1], ls=style, marker=MARKERS[n], label=label)
    ax_w.axvline(512, color="0.5", lw=1, ls=":")
    ax_w.set_xticks([64, 128, 256, 384, 512])
    ax_w.set_title("ReRoPE at 4096 tokens against the window")
    ax_w.set_xlabel("window w (training length 512)")
    ax_w.set_ylabel("next-token accuracy (%)")
    ax_w.legend(fontsize=9)
    leaky = [r for r in rows if r["table"] == "leaky"]
    for n, w in enumerate((128, 256)):
        pts = sorted((r["leaky_k"], r) for r in leaky if r["window"] == w)
        (rerope,) = [r for r in window_rows if r["window"] == w and r["log_n"] == "train"]
        ks = [p[0] for p in pts]
        ax_k.plot(ks, [p[1]["acc_4096_repeated"] for p in pts], color=PALETTE[n + 1], marker=MARKERS[n],
                  ls=LINESTYLES[0], label=f"Leaky, w = {w}")
        ax_k.axhline(rerope["acc_4096_repeated"], color=PALETTE[n + 1], lw=1.2, ls=LINESTYLES[1],
                     label=f"ReRoPE (k = ∞), w = {w}")
    ax_k.set_xscale("log", base=2)
    ax_k.set_xticks([8, 16, 32, 64])
    ax_k.set_xticklabels(["8", "16", "32", "64"])
    ax_k.set_title("Leaky ReRoPE against k (log n, repeated text)")
    ax_k.set_xlabel("k (slope 1/k beyond the window)")
    ax_k.set_ylabel("next-token accuracy at 4096 (%)")
    ax_k.legend(fontsize=10)
    return fig
