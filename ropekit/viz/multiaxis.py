"""Pictures of RoPE beyond one text sequence (lesson 08), one call each.

Images (axial vs RoPE-Mixed score maps), M-RoPE position ids and the frequencies each
axis gets, the per-pair score terms behind p-RoPE, Llama 4's NoPE temperature and MLA's
cache. As everywhere in :mod:`ropekit.viz`, every function asks the library for its
numbers and only draws them, and returns the matplotlib ``Figure``; assign it in a
notebook (``fig = viz.plot_grid_scores(...)``).
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..irope import irope_temperature
from ..mrope import AXES, IMAGE, TEXT, VIDEO, mrope_pair_axes
from .style import ACCENT, DIVERGING, PALETTE, SHADE, styled, symmetric_norm

__all__ = [
    "plot_grid_scores",
    "plot_mrope_position_ids",
    "plot_mrope_pair_axes",
    "plot_pair_scores",
    "plot_irope_temperature",
    "plot_cache_bytes",
]

_KIND_NAMES = {TEXT: "text", IMAGE: "image", VIDEO: "video"}


@styled
def plot_grid_scores(maps: Mapping[str, torch.Tensor], query_xy=None, *, axes=None):
    """Side-by-side heatmaps of 2-D score maps, e.g. axial vs RoPE-Mixed.

    Args:
        maps: title → ``(height, width)`` scores from :func:`ropekit.rope2d.grid_scores`.
        query_xy: the query's (x, y), marked with a cross (default: the centre).
        axes: one Axes per map.

    Lesson 08.
    """
    if axes is None:
        fig, axes = plt.subplots(1, len(maps), figsize=(4.6 * len(maps), 4.4), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, (title, grid) in zip(axes, maps.items()):
        grid = grid.detach().double().cpu().numpy()
        height, width = grid.shape
        image = ax.imshow(grid, cmap=DIVERGING, norm=symmetric_norm(grid), origin="upper")
        x, y = query_xy if query_xy is not None else (width // 2, height // 2)
        ax.plot([x], [y], marker="+", color="black", markersize=16, markeredgewidth=2.5)
        ax.set_title(title)
        ax.set_xlabel("key patch x")
        ax.set_ylabel("key patch y")
        ax.grid(False)
        fig.colorbar(image, ax=ax, shrink=0.8, label="q·k after RoPE")
    return fig


@styled
def plot_mrope_position_ids(position_ids: torch.Tensor, token_types: torch.Tensor, *, ax=None):
    """The (t, h, w) ids of one prompt (``(3, seq)``) against the token index, with the
    image and video tokens shaded (from :func:`ropekit.mrope.mrope_position_ids`). Lesson 08."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(11, 4.2))
    fig = ax.figure
    ids = position_ids.detach().cpu().numpy()
    types_ = token_types.detach().cpu().tolist()
    index = np.arange(ids.shape[-1])
    start = 0
    for i in range(1, len(types_) + 1):
        if i == len(types_) or types_[i] != types_[start]:
            if types_[start] != TEXT:
                shade = SHADE if types_[start] == IMAGE else "#D9ECF7"
                ax.axvspan(start - 0.5, i - 0.5, color=shade, zorder=0)
                ax.text((start + i - 1) / 2, ids.max() * 1.02, _KIND_NAMES[types_[start]], ha="center",
                        va="bottom", fontsize=12)
            start = i
    for axis, (name, marker) in enumerate(zip(AXES, ("o", "s", "^"))):
        ax.plot(index, ids[axis], marker=marker, markersize=4, linewidth=1.4, color=PALETTE[axis + 1],
                label=f"{name} id", drawstyle="steps-mid" if axis == 0 else "default")
    ax.set_xlabel("token index in the prompt")
    ax.set_ylabel("position id")
    ax.set_title("M-RoPE position ids: text, an image and a video")
    ax.set_ylim(top=ids.max() * 1.12 + 1)
    ax.legend(loc="upper left")
    return fig


@styled
def plot_mrope_pair_axes(inv_freq: torch.Tensor, patterns: Mapping[str, tuple], *, axes=None):
    """Which frequency θ_i each axis gets: one panel per pattern, pairs coloured by axis.

    Args:
        inv_freq: ``(pairs,)`` θ_i.
        patterns: title → ``(sections, interleaved)``, e.g.
            ``{"Qwen2-VL": ((16, 24, 24), False), "Qwen3-VL": ((24, 20, 20), True)}``.

    Lesson 08.
    """
    if axes is None:
        fig, axes = plt.subplots(1, len(patterns), figsize=(6 * len(patterns), 4.2), squeeze=False,
                                 sharey=True)
        axes = axes[0]
    fig = axes[0].figure
    theta = inv_freq.detach().double().cpu().numpy()
    for ax, (title, (sections, interleaved)) in zip(axes, patterns.items()):
        pair_axes = mrope_pair_axes(sections, interleaved).numpy()
        for axis, name in enumerate(AXES):
            chosen = np.flatnonzero(pair_axes == axis)
            ax.scatter(chosen, theta[chosen], s=28, color=PALETTE[axis + 1],
                       label=f"{name}: {len(chosen)} pairs")
        ax.set_yscale("log")
        ax.set_xlabel("pair i")
        ax.set_title(title)
        ax.set_ylabel("θ_i (radians per position)")
        ax.legend(loc="upper right")
    return fig


@styled
def plot_pair_scores(scores: Mapping[str, torch.Tensor], distances: torch.Tensor, *, label="mean s_i(r)",
                     axes=None):
    """Heatmaps of the per-pair score terms s_i(r) over the distance r, one panel per
    frequency schedule (from :func:`ropekit.pairs.pair_scores`, averaged by the caller).

    Args:
        scores: title → ``(n_dist, pairs)``; rows are drawn as distances, columns as pairs.
        distances: ``(n_dist,)`` the r of each row (any spacing: each row is one column
            of the picture, labelled with its r).
        label: what the colour means.

    Lesson 08.
    """
    if axes is None:
        fig, axes = plt.subplots(1, len(scores), figsize=(5.5 * len(scores), 4.6), squeeze=False, sharey=True)
        axes = axes[0]
    fig = axes[0].figure
    r = distances.detach().cpu().numpy()
    for ax, (title, s) in zip(axes, scores.items()):
        s = s.detach().double().cpu().numpy()
        image = ax.imshow(s.T, aspect="auto", cmap=DIVERGING, norm=symmetric_norm(s), origin="lower",
                          extent=(-0.5, len(r) - 0.5, -0.5, s.shape[1] - 0.5), interpolation="nearest")
        ticks = np.linspace(0, len(r) - 1, 5).round().astype(int)
        ax.set_xticks(ticks, [f"{int(r[t])}" for t in ticks])
        ax.set_xlabel("distance r (tokens)")
        ax.set_title(title)
        ax.set_ylabel("pair i (fast → slow)")
        ax.grid(False)
        fig.colorbar(image, ax=ax, shrink=0.85, label=label)
    return fig


@styled
def plot_irope_temperature(max_position: int, floor_scale: int = 8192, attn_scale: float = 0.1, *, ax=None):
    """Llama 4's NoPE-layer query temperature τ(m) from :func:`ropekit.irope.irope_temperature`,
    for m up to ``max_position`` on a log axis. Lesson 08."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4.2))
    fig = ax.figure
    m = torch.unique(torch.logspace(0, np.log10(max_position), 400).long())
    ax.step(m.numpy(), irope_temperature(m, floor_scale, attn_scale).numpy(), where="post",
            label=f"floor_scale={floor_scale}, attn_scale={attn_scale}")
    ax.axvline(floor_scale - 1, color=ACCENT, linestyle="--", linewidth=1.5,
               label="first step: m + 1 = floor_scale")
    ax.set_xscale("log")
    ax.set_xlabel("query position m")
    ax.set_ylabel("temperature τ(m)")
    ax.set_title("iRoPE: NoPE layers sharpen queries with log m")
    ax.legend(loc="upper left")
    return fig


@styled
def plot_cache_bytes(bytes_per_token: Mapping[str, int], *, ax=None):
    """A bar per cache design: KiB of KV cache per token (all layers). Lesson 08."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.8))
    fig = ax.figure
    names, values = list(bytes_per_token), [bytes_per_token[n] / 1024 for n in bytes_per_token]
    bars = ax.barh(names, values, color=[PALETTE[1 + i % 6] for i in range(len(names))])
    for bar, value in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:,.1f} KiB", va="center")
    ax.set_xscale("log")
    ax.set_xlabel("KV cache per token, all layers (KiB, log scale)")
    ax.set_ylabel("cache design")
    ax.set_title("What MLA's latent + one RoPE key head save")
    ax.invert_yaxis()
    return fig
