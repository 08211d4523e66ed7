"""What every ropekit picture module shares: panels made or checked, numbers written in
cells, and short descriptions of bad arguments for error messages.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes


def figure_axes(ax, count, figsize, name, nrows=1):
    """A new figure with ``count`` panels (in ``nrows`` rows), or the caller's own Axes, checked."""
    if ax is None:
        fig, grid = plt.subplots(nrows, count // nrows, figsize=figsize, squeeze=False)
        return fig, list(grid.ravel())
    given = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(given) != count or not all(isinstance(a, Axes) for a in given):
        raise ValueError(f"{name} must be {count} matplotlib Axes for this figure, got {describe(ax)}")
    return given[0].figure, given


def pair_features(i, dim, layout):
    """Feature indices (a, b) of pair i in the given layout."""
    return (i, i + dim // 2) if layout == "half" else (2 * i, 2 * i + 1)


def write_numbers(ax, values, fmt, skip_zero=False, fontsize=11):
    """Write each finite entry of a small matrix in its cell (drawn by the last image)."""
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v) and not (skip_zero and v == 0):
            write_cell(ax, ax.images[-1], r, c, v, fmt, fontsize)


def write_cell(ax, image, r, c, v, fmt, fontsize=11):
    """One number in cell (r, c), white on dark colours and black on light ones."""
    red, green, blue, _ = image.cmap(image.norm(v))
    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
    colour = "white" if dark else "black"
    ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=fontsize, color=colour)


def check_int(value, name, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def describe(value):
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return repr(value) if value is None or isinstance(value, (int, float, str)) else type(value).__name__
