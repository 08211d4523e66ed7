"""Pictures of RoPE, one call each, drawn from the library's own numbers.

Every function here asks the library for its data (``rotation_matrix``, ``rope_cos_sin``,
``apply_rope``, ``rope_frequencies``, ``relative_position_matrix``) and only draws it, so
what a picture shows is exactly what the tested library computes. Each returns the
matplotlib ``Figure``; pass ``ax`` (or ``axes`` for several panels) to draw into your own.

In a notebook end the call with ``;`` so that no ``<Figure ...>`` text is stored::

    from ropekit import viz
    viz.plot_rotation_matrix(position=3, dim=8, layout="both");

The ``interactive_*`` functions return ipywidgets sliders when running inside Jupyter
with ipywidgets installed, else the static figure (see :func:`interactive_frequency_spectrum`).

This module (and :mod:`ropekit.viz_style`) is the only place that imports matplotlib;
it never imports triton.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from .frequencies import SCALINGS, rope_frequencies, wavelengths
from .reference import LAYOUTS, apply_rope, rope_cos_sin, rotation_matrix
from .viz_style import (
    ACCENT,
    DIVERGING,
    LINESTYLES,
    MARKERS,
    PALETTE,
    SEQUENTIAL,
    SHADE,
    styled,
    symmetric_norm,
)

__all__ = [
    "plot_rotation_matrix",
    "plot_rotation_2d",
    "plot_frequency_spectrum",
    "frequency_schedules",
]


# --- lesson 02: the rotation matrix ---------------------------------------------------


@styled
def plot_rotation_matrix(position=3, dim: int = 8, base: float = 10000.0, layout: str = "paper", *, inv_freq=None, annotate=None, ax=None):
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
    fig, axes = _figure_axes(ax, len(layouts), (6.2 * len(layouts) + 1, 5.6), "ax")
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
            _write_numbers(a, R, "{:.2f}", skip_zero=True)
        if dim <= 16:
            a.set_xticks(range(dim))
            a.set_yticks(range(dim))
        pairs = "pairs (2i, 2i+1)" if lay == "paper" else "pairs (i, i + d/2)"
        a.set_title(f"$R_{{\\Theta,m}}$, {lay} layout: {pairs}\nm = {position}, d = {dim}")
        a.set_xlabel("column j (input feature)")
        a.set_ylabel("row i (output feature)")
    fig.colorbar(image, ax=axes, label="entry $R_{ij}$", shrink=0.85)
    return fig


# --- lesson 01: pairs turning on circles ------------------------------------------------


@styled
def plot_rotation_2d(max_position: int = 8, pairs=None, dim: int = 16, base: float = 10000.0, *, query=None, layout: str = "half", inv_freq=None, axes=None):
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
    _check_int(max_position, "max_position", minimum=1)
    if inv_freq is None:
        inv_freq, _ = rope_frequencies(dim, base)
    elif not isinstance(inv_freq, torch.Tensor) or inv_freq.shape != (dim // 2,):
        raise ValueError(f"inv_freq must be a tensor of shape (dim // 2,) = ({dim // 2},), got {_describe(inv_freq)}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'paper' or 'half', got {layout!r}")
    half = dim // 2
    pairs = (0, 1, half - 1) if pairs is None else tuple(pairs)
    if not pairs or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < half for i in pairs):
        raise ValueError(f"pairs must be a non-empty list of pair indices in [0, {half}), got {pairs!r}")
    if query is None:
        query = torch.zeros(dim, dtype=torch.float64)
        query[_pair_features(torch.arange(half), dim, layout)[0]] = 1.0
    elif not isinstance(query, torch.Tensor) or query.shape != (dim,):
        raise ValueError(f"query must be a tensor of shape (dim,) = ({dim},), got {_describe(query)}")

    cos, sin = rope_cos_sin(max_position + 1, inv_freq)
    rotated = apply_rope(query.double().expand(max_position + 1, dim), cos, sin, layout).numpy()
    fig, axes = _figure_axes(axes, len(pairs), (4.6 * len(pairs) + 1.2, 5.0), "axes")
    positions = np.arange(max_position + 1)
    for a, i in zip(axes, pairs):
        ia, ib = _pair_features(i, dim, layout)
        x, y = rotated[:, ia], rotated[:, ib]
        radius = float(np.hypot(x[0], y[0])) or 1.0
        circle = np.linspace(0, 2 * math.pi, 200)
        a.plot(radius * np.cos(circle), radius * np.sin(circle), color="0.75", lw=1.2, ls="--", zorder=1)
        a.plot(x, y, color="0.4", lw=1.2, marker="", zorder=2)
        dots = a.scatter(x, y, c=positions, cmap=SEQUENTIAL, s=70, zorder=3, vmin=0, vmax=max_position)
        for m in (0, max_position):
            a.annotate("", (x[m], y[m]), (0, 0), arrowprops=dict(arrowstyle="->", lw=2, color=ACCENT if m else "0.2"))
            a.annotate(f"m={m}", (x[m], y[m]), textcoords="offset points", xytext=(8, 8 if m else -18), fontsize=12)
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


# --- lessons 02 and 04: the frequencies and their schedules -----------------------------


def frequency_schedules(factor: float = 8.0, original_max_position_embeddings: int = 4096, seq_len: int | None = None) -> dict:
    """The default schedules compared by :func:`plot_frequency_spectrum`: a dict
    label -> keyword arguments of :func:`ropekit.rope_frequencies`.

    Plain RoPE, Position Interpolation, NTK-aware, dynamic NTK (at ``seq_len``, default
    factor · L_0), YaRN (β_fast 32, β_slow 1) and Llama 3 (low/high frequency factors 1
    and 4), all stretching a model trained on L_0 = ``original_max_position_embeddings``
    tokens by ``factor``. Copy and edit the dict to compare other settings.
    """
    original = original_max_position_embeddings
    if seq_len is None:
        seq_len = int(round(factor * original))
    return {
        "RoPE (no scaling)": {},
        "PI (linear)": {"scaling": "linear", "factor": factor},
        "NTK-aware": {"scaling": "ntk", "factor": factor},
        f"dynamic NTK at {seq_len:,} tokens": {
            "scaling": "dynamic", "factor": factor, "seq_len": seq_len,
            "original_max_position_embeddings": original,
        },
        "YaRN": {"scaling": "yarn", "factor": factor, "original_max_position_embeddings": original},
        "Llama 3": {
            "scaling": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": original,
        },
    }


@styled
def plot_frequency_spectrum(dim: int = 128, base: float = 10000.0, scalings=None, *, factor: float = 8.0, original_max_position_embeddings: int = 4096, axes=None):
    """θ_i, the wavelength 2π/θ_i and the ratio θ'_i/θ_i per pair index, one line per schedule.

    Args:
        dim: rotary dimension d; base: b of θ_i = b^(-2i/d).
        scalings: which schedules to draw, either a dict label -> keyword arguments of
            :func:`ropekit.rope_frequencies` (e.g. ``{"YaRN": {"scaling": "yarn",
            "factor": 8.0, "original_max_position_embeddings": 4096}}``), or a list of
            scaling names (``[None, "linear", "yarn"]``) filled in from
            :func:`frequency_schedules`. Default: all of :func:`frequency_schedules`.
        factor, original_max_position_embeddings: the extension ratio s and the training
            length L_0 used for the default schedules and the reference lines.
        axes: three Axes (θ_i, wavelength, ratio).

    What to notice: the fast pairs (small i, wavelengths far below L_0) turn many times
    within the training length; PI divides every θ_i by s (all pairs interpolated), while
    NTK, YaRN and Llama 3 leave the fast pairs alone (ratio 1: extrapolated) and divide
    only the slow pairs, whose wavelength exceeds L_0, by about s (ratio 1/s: interpolated).
    The dashed vertical line marks the first pair whose wavelength exceeds L_0. Lessons 02 and 04.
    """
    schedules = _resolve_schedules(scalings, factor, original_max_position_embeddings)
    plain, _ = rope_frequencies(dim, base)
    plain_wave = wavelengths(plain).numpy()
    fig, axes = _figure_axes(axes, 3, (17.5, 5.6), "axes")
    ax_theta, ax_wave, ax_ratio = axes
    pair = np.arange(dim // 2)
    for n, (label, kwargs) in enumerate(schedules.items()):
        inv_freq, _ = rope_frequencies(dim, base, **kwargs)
        style = dict(color=PALETTE[n % len(PALETTE)], ls=LINESTYLES[n % len(LINESTYLES)],
                     marker=MARKERS[n % len(MARKERS)], markevery=max(1, dim // 32), label=label)
        ax_theta.plot(pair, inv_freq.numpy(), **style)
        ax_wave.plot(pair, wavelengths(inv_freq).numpy(), **style)
        ax_ratio.plot(pair, (inv_freq.double() / plain.double()).numpy(), **style)

    L0 = original_max_position_embeddings
    marks = [ax_wave.axhline(L0, color=ACCENT, lw=1.5, label=f"training length $L_0$ = {L0:,}")]
    ax_wave.axhspan(L0, 10 * 2 * math.pi * base * factor, color=SHADE, zorder=0)
    ax_wave.text(0.02, 0.97, "longer than $L_0$:\nnever a full turn in training", transform=ax_wave.transAxes,
                 va="top", fontsize=12)
    ax_ratio.axhline(1.0, color="0.5", lw=1.2)
    ax_ratio.axhline(1.0 / factor, color="0.5", lw=1.2)
    right = dim // 2 - 1
    ax_ratio.text(right, 1.2, "kept (extrapolated)", ha="right", va="bottom", fontsize=12)
    ax_ratio.text(right, 1.2 / factor, f"÷ {factor:g} (interpolated)", ha="right", va="bottom", fontsize=12)
    beyond = np.nonzero(plain_wave > L0)[0]
    for a in axes:
        if beyond.size:
            first_beyond = a.axvline(beyond[0], color=ACCENT, ls="--", lw=1.5, label="first pair with 2π/θ_i > $L_0$")
        a.set_yscale("log")
        a.set_xlabel("pair index i")
    if beyond.size:
        marks.append(first_beyond)
    ax_theta.set_ylabel("θ_i (radians per token)")
    ax_theta.set_title(f"frequency θ_i (d = {dim}, base = {base:g})")
    ax_wave.set_ylabel("wavelength 2π/θ_i (tokens)")
    ax_wave.set_title("wavelength: tokens per full turn")
    ax_wave.set_ylim(1, 2 * 2 * math.pi * base * factor)
    ax_ratio.set_ylabel("θ'_i / θ_i")
    ax_ratio.set_title(f"scaled / plain, factor s = {factor:g}")
    ax_ratio.set_ylim(0.5 / factor, 2.0)
    ax_theta.legend(loc="lower left")
    ax_wave.legend(handles=marks, loc="lower right")
    return fig


def _resolve_schedules(scalings, factor, original):
    defaults = frequency_schedules(factor, original)
    if scalings is None:
        return defaults
    if isinstance(scalings, Mapping):
        for label, kwargs in scalings.items():
            if not isinstance(kwargs, Mapping):
                raise TypeError(
                    f"scalings[{label!r}] must be a dict of rope_frequencies keyword arguments, got {type(kwargs).__name__}"
                )
        return dict(scalings)
    if isinstance(scalings, str) or not isinstance(scalings, Sequence):
        raise TypeError(f"scalings must be a dict label -> rope_frequencies kwargs or a list of scaling names, got {scalings!r}")
    by_name = {kwargs.get("scaling"): (label, kwargs) for label, kwargs in defaults.items()}
    chosen = {}
    for name in scalings:
        if name not in by_name:
            names = [s for s in SCALINGS if s in by_name]
            raise ValueError(f"scalings may name {names} (longrope needs per-pair factors: pass a dict), got {name!r}")
        label, kwargs = by_name[name]
        chosen[label] = kwargs
    return chosen


# --- shared helpers --------------------------------------------------------------------


def _figure_axes(ax, count, figsize, name):
    """A new figure with ``count`` panels in a row, or the caller's own Axes, checked."""
    if ax is None:
        fig, grid = plt.subplots(1, count, figsize=figsize, squeeze=False)
        return fig, list(grid[0])
    given = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(given) != count or not all(isinstance(a, Axes) for a in given):
        raise ValueError(f"{name} must be {count} matplotlib Axes for this figure, got {_describe(ax)}")
    return given[0].figure, given


def _pair_features(i, dim, layout):
    """Feature indices (a, b) of pair i in the given layout."""
    return (i, i + dim // 2) if layout == "half" else (2 * i, 2 * i + 1)


def _write_numbers(ax, values, fmt, skip_zero=False, fontsize=11):
    """Write each finite entry of a small matrix in its cell, dark on light cells."""
    image = ax.images[-1]
    for (r, c), v in np.ndenumerate(values):
        if not np.isfinite(v) or (skip_zero and v == 0):
            continue
        shade = image.cmap(image.norm(v))
        dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=fontsize, color="white" if dark else "black")


def _check_int(value, name, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return repr(value) if value is None or isinstance(value, (int, float, str)) else type(value).__name__
