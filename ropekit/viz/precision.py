"""How far each cos/sin recipe drifts from exact angles (lesson 09).

Draws only what :mod:`ropekit.precision` computes. Each function returns the matplotlib
``Figure``; assign it in a notebook (``fig = viz.plot_cos_sin_error()``).
"""

from __future__ import annotations

import torch

from ..frequencies import rope_frequencies
from ..precision import RECIPES, cos_sin_error, log_positions, logit_drift, rotation_error, storage_error
from .common import figure_axes
from .style import ACCENT, LINESTYLES, PALETTE, styled

__all__ = ["plot_cos_sin_error", "plot_logit_drift", "plot_rotation_error"]

# One colour and line style per recipe, the same in every picture.
_LOOK = {recipe: (PALETTE[i], LINESTYLES[i % len(LINESTYLES)]) for i, recipe in enumerate(RECIPES)}


@styled
def plot_cos_sin_error(dim: int = 128, base: float = 10000.0, recipes=RECIPES, *, positions=None,
                       window: int = 32, ax=None):
    """Largest cos/sin error of each recipe against position, on log-log axes.

    Each point is :func:`ropekit.precision.cos_sin_error` maximised over ``window``
    consecutive positions starting there (a single position can be lucky), for the
    ``(dim // 2,)`` θ_i of ``rope_frequencies(dim, base)``. Gaps are NaN: a float16 angle
    overflows past position 65504. Lesson 09.
    """
    inv_freq, _ = rope_frequencies(dim, base, dtype=torch.float64)
    positions = log_positions() if positions is None else positions
    window_positions = positions[:, None] + torch.arange(window)
    fig, ax = _figure_axis(ax)
    for recipe in recipes:
        error = cos_sin_error(window_positions, inv_freq, recipe).amax(dim=-1)
        color, style = _LOOK[recipe]
        ax.loglog(positions.numpy(), error.numpy(), color=color, linestyle=style, label=recipe)
    ax.axhline(1e-6, color=ACCENT, lw=1.2, linestyle=":", label="1e-6")
    ax.set_title(f"cos/sin error against exact angles (d = {dim}, base = {base:g})")
    ax.set_xlabel("position m")
    ax.set_ylabel("max over pairs of |Δcos|, |Δsin|")
    ax.legend(loc="upper left", fontsize=10)
    return fig


@styled
def plot_rotation_error(dim: int = 128, base: float = 10000.0, recipes=("float32", "exact"), *,
                        positions=None, storage=(torch.bfloat16, torch.float16), seed: int = 0, ax=None):
    """Relative error of a rotated query from its angles, against the error of storing it.

    Lines: the mean over 16 random N(0, 1) vectors of
    :func:`ropekit.precision.rotation_error` at each position. Horizontal lines: the mean
    :func:`ropekit.precision.storage_error` of the same vectors in each ``storage`` dtype,
    the noise a bfloat16 or float16 q already has. Where a line crosses a level, the
    angle error starts to matter more than the storage. Lesson 09.
    """
    inv_freq, _ = rope_frequencies(dim, base, dtype=torch.float64)
    positions = log_positions() if positions is None else positions
    x = torch.randn(16, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    fig, ax = _figure_axis(ax)
    for recipe in recipes:
        error = torch.stack([rotation_error(x, torch.full((16,), int(m)), inv_freq, recipe).mean()
                             for m in positions])
        color, style = _LOOK[recipe]
        ax.loglog(positions.numpy(), error.numpy(), color=color, linestyle=style, label=f"angles: {recipe}")
    for i, dtype in enumerate(storage):
        level = storage_error(x, dtype).mean().item()
        ax.axhline(level, color=PALETTE[6 + i % 2], lw=1.5, linestyle=LINESTYLES[3],
                   label=f"storing q in {str(dtype).removeprefix('torch.')}")
    ax.set_title(f"relative error of a rotated vector (d = {dim}, base = {base:g})")
    ax.set_xlabel("position m")
    ax.set_ylabel("‖R̃x − Rx‖ / ‖x‖")
    ax.legend(loc="upper left", fontsize=10)
    return fig


@styled
def plot_logit_drift(dim: int = 128, base: float = 10000.0, recipes=("float32", "bfloat16 table", "exact"), *,
                     distance: int = 16, offsets=None, window: int = 16, seed: int = 0, ax=None):
    """How much the logit of one relative distance moves when both tokens move along.

    For one random query and key (N(0, 1), ``seed``) at distance r = ``distance``, each
    point is the largest |:func:`ropekit.precision.logit_drift`| / √d over ``window``
    consecutive key positions starting at the offset: zero would mean lesson 03's
    Toeplitz structure holds. Lesson 09.
    """
    inv_freq, _ = rope_frequencies(dim, base, dtype=torch.float64)
    offsets = log_positions() if offsets is None else offsets
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=g, dtype=torch.float64)
    k = torch.randn(dim, generator=g, dtype=torch.float64)
    window_offsets = (offsets[:, None] + torch.arange(window)).flatten()
    fig, ax = _figure_axis(ax)
    for recipe in recipes:
        drift = logit_drift(q, k, distance, window_offsets, inv_freq, recipe).abs()
        drift = drift.reshape(len(offsets), window)
        color, style = _LOOK[recipe]
        ax.loglog(offsets.numpy(), (drift.amax(dim=-1) / dim**0.5).numpy(), color=color, linestyle=style,
                  label=recipe)
    ax.set_title(f"drift of the logit at distance {distance} (d = {dim}, base = {base:g})")
    ax.set_xlabel("absolute position of the key")
    ax.set_ylabel("|Δ(q·k)| / √d")
    ax.legend(loc="upper left", fontsize=10)
    return fig


def _figure_axis(ax):
    fig, (ax,) = figure_axes(ax, 1, (10, 5.5), "ax")
    return fig, ax
