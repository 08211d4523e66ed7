"""The one look every ropekit figure shares: large type for a projector, a colour-blind
safe palette, a diverging colour map centred at zero for signed entries.

Only :mod:`ropekit.viz` imports this module (and with it matplotlib), so ``import ropekit``
needs no matplotlib. Every plotting function runs inside :func:`styled`, which applies
:data:`STYLE` through ``matplotlib.rc_context`` and leaves the user's own rcParams alone.
"""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
from matplotlib.colors import Normalize

# Okabe & Ito (2008), the palette that stays distinct for every common colour-vision
# deficiency; black first for the unscaled baseline, yellow dropped (invisible on a projector).
PALETTE = ("#000000", "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#999999")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

DIVERGING = "RdBu_r"  # signed entries: blue negative, white zero, red positive
SEQUENTIAL = "viridis"  # ordered quantities (positions, distance)
INSIDE_WINDOW = "Blues"  # relative positions kept exact (i − j < w)
BEYOND_WINDOW = "Oranges"  # relative positions changed by the scheme (i − j ≥ w)
ACCENT = "#D55E00"  # reference lines: the training length, the window
SHADE = "#E8E8E8"  # background bands

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 14,
    "axes.titlesize": 15,
    "axes.labelsize": 14,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "figure.titlesize": 17,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": plt.cycler(color=PALETTE),
    "lines.linewidth": 2.4,
    "lines.markersize": 7,
    "image.cmap": DIVERGING,
}


def styled(plot_function):
    """Run a plotting function inside the ropekit style (font sizes and colours are fixed
    when the artists are created, so the figure keeps the look after the style is undone).

    Only the keys of :data:`STYLE` are set and then restored. ``plt.rc_context`` would
    restore every rcParam, and when the first figure of a Jupyter session resolves the
    inline backend inside it (which turns ``interactive`` on), undoing that would stop
    every later figure from being shown.
    """

    @functools.wraps(plot_function)
    def wrapper(*args, **kwargs):
        saved = {key: plt.rcParams[key] for key in STYLE}
        plt.rcParams.update(STYLE)
        try:
            return plot_function(*args, **kwargs)
        finally:
            plt.rcParams.update(saved)

    return wrapper


def symmetric_norm(values, halfrange=None) -> Normalize:
    """A colour scale from −h to +h, so that zero is always the white centre of
    :data:`DIVERGING`; h defaults to the largest absolute finite value (1 if all are 0)."""
    import numpy as np

    if halfrange is None:
        finite = np.abs(np.asarray(values, dtype=float))
        finite = finite[np.isfinite(finite)]
        halfrange = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return Normalize(vmin=-halfrange, vmax=halfrange)
