"""Pictures of the rotation itself: the matrix R_{Θ,m} (lesson 02) and each feature pair
turning on its circle as the position grows (lesson 01)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..frequencies import rope_frequencies
from ..reference import LAYOUTS, apply_rope, rope_cos_sin, rotation_matrix
from .common import check_int, describe, figure_axes, pair_features, write_numbers
from .style import ACCENT, DIVERGING, SEQUENTIAL, styled, symmetric_norm

__all__ = ["plot_rotation_matrix", "plot_rotation_2d"]


@styled
def plot_rotation_matrix(
    position=3,
    dim: int = 8,
    base: float = 10000.0,
    layout: str = "paper",
    *,
    inv_freq=None,
    annotate=None,
    ax=None,
):
    """Heatmap of the rotation matrix R_{Θ,m} of RoFormer eq. 15 (from :func:`ropekit.rotation_matrix`).

    Args:
        position: the position m.
        dim: d, even; keep it small (8 to 16) so the entries can be read.
        base: θ_i = base^(-2i/d), unless ``inv_freq`` (``(dim // 2,)``) gives the θ_i.
        layout: ``"paper"`` (pairs (2i, 2i+1)), ``"half"`` (pairs (i, i + d/2)) or
            ``"both"`` for the two side by side.
        annotate: write each entry in its cell (default: when dim ≤ 8).
        ax: one Axes, or two (a list) for ``layout="both"``.

    What to notice: in the paper layout R is block diagonal, one 2×2 rotation
    [[cos mθ_i, −sin mθ_i], [sin mθ_i, cos mθ_i]] per pair, the first blocks turned far
    (θ_0 = 1 rad per token) and the last ones barely (close to the identity). The half
    layout is the same matrix with rows and columns reordered: cos on the diagonal and
    the sines on the two off-diagonals at distance d/2. Lesson 02.
    """
    if layout not in (*LAYOUTS, "both"):
        raise ValueError(f"layout must be 'paper', 'half' or 'both', got {layout!r}")
    layouts = LAYOUTS if layout == "both" else (layout,)
    fig, axes = figure_axes(ax, len(layouts), (6.2 * len(layouts) + 1, 5.6), "ax")
    if annotate is None:
        annotate = dim <= 8
    for a, lay in zip(axes, layouts):
        R = rotation_matrix(position, dim, base, lay, inv_freq).numpy()
        image = a.imshow(R, cmap=DIVERGING, norm=symmetric_norm(R, 1.0))
        a.grid(False)
        if lay == "paper":  # outline the 2×2 blocks
            for edge in range(2, dim, 2):
                a.axhline(edge - 0.5, color="0.6", lw=0.8)
                a.axvline(edge - 0.5, color="0.6", lw=0.8)
        if annotate:
            write_numbers(a, R, "{:.2f}", skip_zero=True)
        if dim <= 16:
            a.set_xticks(range(dim))
            a.set_yticks(range(dim))
        pairs = "pairs (2i, 2i+1)" if lay == "paper" else "pairs (i, i + d/2)"
        a.set_title(f"$R_{{\\Theta,m}}$, {lay} layout: {pairs}\nm = {position}, d = {dim}")
        a.set_xlabel("column j (input feature)")
        a.set_ylabel("row i (output feature)")
    fig.colorbar(image, ax=axes, label="entry $R_{ij}$", shrink=0.85)
    return fig


@styled
def plot_rotation_2d(
    max_position: int = 8,
    pairs=None,
    dim: int = 16,
    base: float = 10000.0,
    *,
    query=None,
    layout: str = "half",
    inv_freq=None,
    axes=None,
):
    """Each chosen feature pair of one query, rotated by RoPE at positions 0, 1, ..., max_position.

    The points are ``apply_rope(q, *rope_cos_sin(max_position + 1, inv_freq), layout)``
    read pair by pair: pair i of the vector at position m is pair i of q turned by m·θ_i.

    Args:
        max_position: the last position N drawn (N + 1 points per pair).
        pairs: pair indices i to draw, one panel each (default: the fastest pair 0, pair 1
            and the slowest pair d/2 − 1).
        dim: d; ``inv_freq`` = ``rope_frequencies(dim, base)`` unless given (``(dim // 2,)``).
        query: ``(dim,)`` vector q (default: every pair starts at (1, 0)).
        layout: which features form pair i: ``"half"`` (i, i + d/2) or ``"paper"`` (2i, 2i+1).
        axes: one Axes per pair.

    What to notice: each pair stays on its own circle (a rotation keeps the length); the
    fast pair 0 turns one radian per token and laps the circle within 7 tokens, while
    the slow pair hardly moves over the same positions. Lesson 01.
    """
    check_int(max_position, "max_position", minimum=1)
    if inv_freq is None:
        inv_freq, _ = rope_frequencies(dim, base)
    elif not isinstance(inv_freq, torch.Tensor) or inv_freq.shape != (dim // 2,):
        raise ValueError(
            f"inv_freq must be a tensor of shape (dim // 2,) = ({dim // 2},), got {describe(inv_freq)}"
        )
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'paper' or 'half', got {layout!r}")
    half = dim // 2
    pairs = (0, 1, half - 1) if pairs is None else tuple(pairs)
    if not pairs or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < half for i in pairs):
        raise ValueError(f"pairs must be a non-empty list of pair indices in [0, {half}), got {pairs!r}")
    if query is None:
        query = torch.zeros(dim, dtype=torch.float64)
        query[pair_features(torch.arange(half), dim, layout)[0]] = 1.0
    elif not isinstance(query, torch.Tensor) or query.shape != (dim,):
        raise ValueError(f"query must be a tensor of shape (dim,) = ({dim},), got {describe(query)}")

    cos, sin = rope_cos_sin(max_position + 1, inv_freq)
    rotated = apply_rope(query.double().expand(max_position + 1, dim), cos, sin, layout).numpy()
    fig, axes = figure_axes(axes, len(pairs), (4.6 * len(pairs) + 1.2, 5.0), "axes")
    positions = np.arange(max_position + 1)
    for a, i in zip(axes, pairs):
        ia, ib = pair_features(i, dim, layout)
        x, y = rotated[:, ia], rotated[:, ib]
        radius = float(np.hypot(x[0], y[0])) or 1.0
        circle = np.linspace(0, 2 * math.pi, 200)
        a.plot(radius * np.cos(circle), radius * np.sin(circle), color="0.75", lw=1.2, ls="--", zorder=1)
        a.plot(x, y, color="0.4", lw=1.2, marker="", zorder=2)
        dots = a.scatter(x, y, c=positions, cmap=SEQUENTIAL, s=70, zorder=3, vmin=0, vmax=max_position)
        for m in (0, max_position):
            arrow = dict(arrowstyle="->", lw=2, color=ACCENT if m else "0.2")
            a.annotate("", (x[m], y[m]), (0, 0), arrowprops=arrow)
            offset = (8, 8 if m else -18)
            a.annotate(f"m={m}", (x[m], y[m]), textcoords="offset points", xytext=offset, fontsize=12)
        theta = float(inv_freq[i])
        a.set_title(f"pair {i}: θ = {theta:.3g} rad/token\nwavelength {2 * math.pi / theta:,.0f} tokens")
        a.set_xlabel(f"feature {ia} (first of the pair)")
        a.set_ylabel(f"feature {ib} (second)")
        a.set_aspect("equal")
        lim = 1.3 * radius
        a.set_xlim(-lim, lim)
        a.set_ylim(-lim, lim)
    fig.colorbar(dots, ax=axes, label="position m", shrink=0.85)
    return fig
