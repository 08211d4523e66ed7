"""Pictures of RoPE, one call each, drawn from the library's own numbers.

Every function here asks the library for its data (``rotation_matrix``, ``rope_cos_sin``,
``apply_rope``, ``rope_frequencies``, ``relative_position_matrix``) and only draws it, so
what a picture shows is exactly what the tested library computes. Each returns the
matplotlib ``Figure``; pass ``ax`` (or ``axes`` for several panels) to draw into your own.

In a notebook assign the result, so that the inline backend shows the figure once and
no ``<Figure ...>`` text is stored::

    from ropekit import viz
    fig = viz.plot_rotation_matrix(position=3, dim=8, layout="both")

(A trailing ``;`` does the same in JupyterLab, but not under nbval, which runs cells
without storing history, the place IPython looks for the ``;``.)

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
from .attention import SCHEMES, attention_logits, relative_position_matrix, scheme_options
from .reference import LAYOUTS, apply_rope, rope_cos_sin, rope_decay_bound, rotation_matrix
from .viz_style import (
    ACCENT,
    BEYOND_WINDOW,
    DIVERGING,
    INSIDE_WINDOW,
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
    "plot_relative_positions",
    "plot_long_term_decay",
    "plot_attention_logits",
    "plot_benchmark",
    "interactive_frequency_spectrum",
    "interactive_relative_positions",
    "interactive_rotation_2d",
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


# --- lessons 03 and 04: relative positions, decay, attention logits -------------------

SCHEME_NAMES = {"rope": "RoPE", "pi": "PI", "rerope": "ReRoPE", "leaky_rerope": "Leaky ReRoPE"}
SCHEME_FORMULAS = {
    "rope": "i − j",
    "pi": "(i − j) / s",
    "rerope": "min(i − j, w)",
    "leaky_rerope": "w + (i − j − w) / k beyond w",
}


def _scheme_title(scheme, window, factor):
    """Two lines: the scheme with its parameters, then its relative position."""
    settings = {"pi": f", s = {factor:g}" if factor else "", "rerope": f", w = {window}",
                "leaky_rerope": f", w = {window}, k = {factor:g}" if factor else ""}
    return f"{SCHEME_NAMES[scheme]}{settings.get(scheme, '')}\n{SCHEME_FORMULAS[scheme]}"


@styled
def plot_relative_positions(length: int = 8, schemes=("rope", "pi", "rerope", "leaky_rerope"), *, window: int | None = 4, factor: float = 2.0, annotate=None, axes=None):
    """The Toeplitz matrices of effective relative positions, one panel per scheme.

    Each panel is ``ropekit.attention.relative_position_matrix(length, scheme, ...)``:
    row i is the query, column j ≤ i the key, the cell the relative position the pair
    sees. Cells with i − j < w (inside the window) are drawn in blues, cells with
    i − j ≥ w in oranges, both on one scale from 0 to length − 1, as in Su's ReRoPE
    blog post; future keys (j > i) are blank.

    Args:
        length: sequence length n (numbers are written in the cells when n ≤ 12).
        schemes: any of ``"rope"``, ``"pi"``, ``"rerope"``, ``"leaky_rerope"``.
        window: w for ReRoPE and Leaky ReRoPE, and the colour split for every panel
            (None: no split, only for schemes without a window).
        factor: s of PI (positions divided by s) and k of Leaky ReRoPE (slope 1/k).
        annotate: write the numbers (default: when length ≤ 12).
        axes: one Axes per scheme.

    What to notice: RoPE's numbers grow without bound along each row, so a long input
    shows the model distances it never saw in training; PI shrinks every distance,
    blurring neighbours (1/s apart instead of 1); ReRoPE keeps the window exact and
    caps everything beyond it at w; Leaky ReRoPE lets it grow again, slowly. Lessons 03 and 04.
    """
    from matplotlib.patches import Patch

    _check_int(length, "length", minimum=1)
    schemes = _as_schemes(schemes)
    fig, axes = _figure_axes(axes, len(schemes), (4.6 * len(schemes) + 0.6, 5.2), "axes")
    if annotate is None:
        annotate = length <= 12
    distance = np.subtract.outer(np.arange(length), np.arange(length))
    inside = distance < (window if window is not None else length)
    norm = plt.Normalize(0, max(length - 1, 1))
    for a, scheme in zip(axes, schemes):
        P = relative_position_matrix(length, scheme, **scheme_options(scheme, window, factor)).numpy()
        kept = a.imshow(np.ma.masked_where(~inside | np.isnan(P), P), cmap=INSIDE_WINDOW, norm=norm)
        changed = a.imshow(np.ma.masked_where(inside | np.isnan(P), P), cmap=BEYOND_WINDOW, norm=norm)
        a.grid(False)
        if annotate:
            for (r, c), v in np.ndenumerate(P):
                if np.isfinite(v):
                    _write_cell(a, kept if inside[r, c] else changed, r, c, v, "{:.3g}", fontsize=11 if length <= 8 else 9)
        if length <= 16:
            a.set_xticks(range(length))
            a.set_yticks(range(length))
        a.set_title(_scheme_title(scheme, window, factor))
        a.set_xlabel("key position j")
        a.set_ylabel("query position i")
    if window is not None:
        handles = [Patch(color=plt.get_cmap(INSIDE_WINDOW)(0.6), label=f"inside the window: i − j < {window}"),
                   Patch(color=plt.get_cmap(BEYOND_WINDOW)(0.6), label=f"beyond the window: i − j ≥ {window}")]
        axes[-1].legend(handles=handles, loc="upper right", fontsize=11)  # in the empty future half
    return fig


@styled
def plot_long_term_decay(dim: int = 128, base: float = 10000.0, max_distance: int = 256, *, inv_freq=None, seed: int = 0, axes=None):
    """RoPE's long-term decay: RoFormer's bound, and the logit of one random q = k, against distance.

    Left: :func:`ropekit.reference.rope_decay_bound`, (1/(d/2)) Σ_j |S_j| for r = 0 .. max_distance
    (RoFormer §3.4.3, Figure 2). Right: the logit ⟨R_m q, R_n k⟩ for identical q = k
    drawn from N(0, 1) with ``seed`` (q rotated by ``apply_rope`` at r = m − n), and its
    expectation over such q, 2 Σ_i cos(r·θ_i) (each pair contributes E[a² + b²]·cos(rθ_i)).

    Args:
        dim: d; base: b (``inv_freq`` = ``rope_frequencies(dim, base)`` unless given).
        max_distance: the largest relative distance r drawn.
        seed: seed of the random q.
        axes: two Axes.

    What to notice: at r = 0 every pair agrees (the logit is |q|², about d); as r grows the
    pairs' angles r·θ_i spread out and their contributions cancel, so both the bound and
    the typical logit fall: RoPE makes distant tokens attend less, without any mask.
    The single sample oscillates around the expectation. Lesson 03.
    """
    _check_int(max_distance, "max_distance", minimum=1)
    if inv_freq is None:
        inv_freq, _ = rope_frequencies(dim, base)
    elif not isinstance(inv_freq, torch.Tensor) or inv_freq.shape != (dim // 2,):
        raise ValueError(f"inv_freq must be a tensor of shape (dim // 2,) = ({dim // 2},), got {_describe(inv_freq)}")
    distances = torch.arange(max_distance + 1)
    bound = rope_decay_bound(distances, inv_freq).numpy()
    q = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    cos, sin = rope_cos_sin(distances, inv_freq)
    logit = (apply_rope(q.expand(len(distances), dim), cos, sin) @ q).numpy()
    expected = 2 * cos.double().sum(dim=-1).numpy()

    fig, (ax_bound, ax_logit) = _figure_axes(axes, 2, (14, 5.2), "axes")
    r = distances.numpy()
    ax_bound.plot(r, bound, color=PALETTE[1], label="(1/(d/2)) Σ_j |S_j|")
    ax_bound.set_title(f"RoFormer's relative upper bound (d = {dim}, base = {base:g})")
    ax_bound.set_xlabel("relative distance r = m − n (tokens)")
    ax_bound.set_ylabel("relative upper bound")
    ax_bound.legend()
    ax_logit.plot(r, logit, color=PALETTE[2], lw=1.6, label=f"one random q = k (seed {seed})")
    ax_logit.plot(r, expected, color=PALETTE[0], label="expectation 2 Σ_i cos(r θ_i)")
    ax_logit.axhline(0, color="0.5", lw=1)
    ax_logit.set_title("logit of identical q and k")
    ax_logit.set_xlabel("relative distance r = m − n (tokens)")
    ax_logit.set_ylabel("logit ⟨R_m q, R_n k⟩")
    ax_logit.legend()
    return fig


@styled
def plot_attention_logits(q, k, schemes="rope", *, inv_freq=None, window=None, factor=None, layout: str = "half", batch: int = 0, head: int = 0, axes=None):
    """Attention logit heatmaps and logit-versus-distance curves of one head, per scheme.

    Args:
        q: ``(seq, head_dim)`` or ``(batch, heads, seq, head_dim)``, not yet rotated.
        k: the same shape as q, or ``(batch, kv_heads, seq, head_dim)`` (key head
            ``head // (heads // kv_heads)`` serves query head ``head``, as in GQA).
        schemes: one scheme or a list, each of ``"rope"``, ``"pi"``, ``"rerope"``, ``"leaky_rerope"``.
        inv_freq: ``(rotary_dim // 2,)`` (default: ``rope_frequencies(head_dim)``).
        window: w for ReRoPE and Leaky ReRoPE; factor: s of PI, k of Leaky ReRoPE.
        layout: ``"half"`` or ``"paper"``; batch, head: which head to draw.
        axes: one Axes per scheme for the heatmaps, plus one for the curves.

    The logits are :func:`attention_logits` (the ones ``rope_attention`` and
    ``rerope_attention`` softmax). The curve is the mean logit over all pairs at
    distance i − j = r (one diagonal of the heatmap).

    What to notice: with RoPE the logit depends on i − j only through the rotation, so
    for q = k it is largest on the diagonal and fades away from it; ReRoPE's logits
    beyond the window all use relative position w, so its curve flattens there instead
    of wandering into distances never trained on. Lessons 03 and 04.
    """
    schemes = _as_schemes(schemes)
    q1, k1 = _one_head(q, k, batch, head)
    logits = {s: attention_logits(q1, k1, s, inv_freq, window=window, factor=factor, layout=layout).numpy() for s in schemes}
    seq = q1.shape[0]
    fig, axes = _figure_axes(axes, len(schemes) + 1, (4.8 * len(schemes) + 6.5, 5.2), "axes")
    norm = symmetric_norm(np.concatenate([a.ravel() for a in logits.values()]))
    distance = np.subtract.outer(np.arange(seq), np.arange(seq))
    for n, (a, scheme) in enumerate(zip(axes, schemes)):
        image = a.imshow(logits[scheme], cmap=DIVERGING, norm=norm)
        a.grid(False)
        a.set_title(_scheme_title(scheme, window, factor))
        a.set_xlabel("key position j")
        a.set_ylabel("query position i")
        mean_by_distance = [logits[scheme][distance == r].mean() for r in range(seq)]
        axes[-1].plot(np.arange(seq), mean_by_distance, color=PALETTE[n % len(PALETTE)],
                      ls=LINESTYLES[n % len(LINESTYLES)], label=SCHEME_NAMES[scheme])
    fig.colorbar(image, ax=axes[:-1], label="logit q·k / √head_dim", shrink=0.85)
    if window is not None:
        axes[-1].axvline(window, color=ACCENT, ls="--", lw=1.5, label=f"window w = {window}")
    axes[-1].set_title("mean logit at each distance")
    axes[-1].set_xlabel("relative distance i − j (tokens)")
    axes[-1].set_ylabel("mean logit q·k / √head_dim")
    axes[-1].legend()
    return fig


def _as_schemes(schemes):
    schemes = (schemes,) if isinstance(schemes, str) else tuple(schemes)
    if not schemes or any(s not in SCHEMES for s in schemes):
        raise ValueError(f"schemes must be one or more of {SCHEMES}, got {schemes!r}")
    return schemes


def _one_head(q, k, batch, head):
    """(seq, head_dim) views of query head ``head`` and the key head that serves it."""
    for name, t in (("q", q), ("k", k)):
        if not isinstance(t, torch.Tensor) or t.dim() not in (2, 4):
            raise ValueError(f"{name} must be a tensor of shape (seq, head_dim) or (batch, heads, seq, head_dim), got {_describe(t)}")
    if q.dim() != k.dim():
        raise ValueError(f"q and k must both be 2-D or both 4-D, got shapes {tuple(q.shape)} and {tuple(k.shape)}")
    if q.dim() == 2:
        return q, k
    if not 0 <= batch < q.shape[0] or not 0 <= head < q.shape[1]:
        raise ValueError(f"batch and head must index q of shape {tuple(q.shape)}, got batch={batch}, head={head}")
    if k.shape[0] != q.shape[0] or q.shape[1] % k.shape[1]:
        raise ValueError(f"k of shape {tuple(k.shape)} does not match q of shape {tuple(q.shape)} (kv_heads must divide heads)")
    return q[batch, head], k[batch, head // (q.shape[1] // k.shape[1])]


# --- the kernel lessons: benchmark results ---------------------------------------------

BENCH_COLUMNS = (
    "suite", "provider", "layout", "pass", "batch", "seq", "q_heads", "kv_heads", "head_dim",
    "dtype", "window", "time_us", "gbps", "baseline", "speed_vs_baseline", "peak_mem_mb", "status",
)
_PASS_ORDER = ("fwd", "bwd", "fwd+bwd")
_SHAPE_COLUMNS = ("batch", "q_heads", "kv_heads", "head_dim", "dtype", "window")


@styled
def plot_benchmark(data, suite: str = "rope", *, batch=None, axes=None):
    """The benchmark harness's results (``python -m ropekit.bench``), one line per provider.

    Args:
        data: the ``results.csv`` path, a list of row dicts (strings are fine, as
            ``csv.DictReader`` gives), or a pandas DataFrame; the columns are
            ``ropekit.bench.COLUMNS``. Rows whose ``status`` is not ``ok`` are left out.
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
    rows = [r for r in _benchmark_rows(data) if r["suite"] == suite and r["status"] == "ok"
            and (batch is None or r["batch"] == batch)]
    if not rows:
        raise ValueError(f"data holds no rows with suite={suite!r}{'' if batch is None else f', batch={batch}'} "
                         "and status 'ok'")
    passes = [p for p in _PASS_ORDER if any(r["pass"] == p for r in rows)]
    passes += sorted({r["pass"] for r in rows} - set(passes))
    baseline = rows[0]["baseline"]
    varying = [c for c in _SHAPE_COLUMNS if len({r[c] for r in rows}) > 1]
    constant = ", ".join(f"{c} {rows[0][c]}" for c in _SHAPE_COLUMNS if c not in varying and rows[0][c] != "")

    if suite == "rope":
        fig, flat = _figure_axes(axes, 2 * len(passes), (5.4 * len(passes) + 1, 9.0), "axes", nrows=2)
        panels = [(flat[n], flat[len(passes) + n], p) for n, p in enumerate(passes)]
        quantities = (("gbps", "GB/s (bytes of q, k in + out)"), ("speed_vs_baseline", f"speed / {baseline} speed"))
    else:
        fig, flat = _figure_axes(axes, 2, (14, 5.6), "axes")
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
        bottom.set_title(f"{suite} {pass_}: " + (f"fraction of {baseline} speed" if suite == "rope" else "memory"))
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
        colour = "black" if provider == baseline else _provider_colour(providers.index(key[:2]), len(providers))
        ax.plot([r["seq"] for r in group], [r[column] for r in group], label=label, color=colour,
                ls=LINESTYLES[n % len(LINESTYLES)], marker=MARKERS[n % len(MARKERS)])


def _provider_colour(index, count):
    """The kit's palette while it has enough colours, else matplotlib's ten-colour one."""
    if count < len(PALETTE):
        return PALETTE[1 + index]
    return plt.get_cmap("tab10")(index % 10)


def _benchmark_rows(data):
    """Rows of a benchmark CSV as dicts with numbers parsed ('' becomes NaN)."""
    import csv
    import os

    if isinstance(data, (str, os.PathLike)):
        with open(data, newline="") as f:
            raw = list(csv.DictReader(f))
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        raw = data.fillna("").to_dict("records")
    elif isinstance(data, Sequence) and all(isinstance(r, Mapping) for r in data):
        raw = list(data)
    else:
        raise TypeError(f"data must be a CSV path, a list of row dicts or a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in BENCH_COLUMNS if raw and c not in raw[0]]
    if missing:
        raise ValueError(f"benchmark data lacks the column(s) {missing}; expected {list(BENCH_COLUMNS)}")
    rows = []
    for n, r in enumerate(raw):
        row = {c: str(r[c]).strip() if r[c] is not None else "" for c in BENCH_COLUMNS}
        try:
            for c in ("batch", "seq", "q_heads", "kv_heads", "head_dim"):
                row[c] = int(float(row[c]))
            for c in ("time_us", "gbps", "speed_vs_baseline", "peak_mem_mb"):
                row[c] = float(row[c]) if row[c] not in ("", "nan") else math.nan
        except ValueError as err:
            raise ValueError(f"benchmark row {n} has a value that is not a number: {err}") from None
        rows.append(row)
    return rows


# --- interactive versions for JupyterLab ----------------------------------------------


def interactive_frequency_spectrum(dim: int = 128, base: float = 10000.0, factor: float = 8.0, original_max_position_embeddings: int = 4096, *, static: bool = False):
    """:func:`plot_frequency_spectrum` with sliders for the base and the scaling factor s.

    Inside Jupyter with ipywidgets installed this displays the sliders and the figure
    (redrawn on every change) and returns the ``ipywidgets.interactive`` widget; anywhere
    else, or with ``static=True``, it returns the static figure for the given values.
    The widget is displayed here, so assign the result (``w = ...``) rather than leaving
    it as the cell's value (which would show it twice). Its output differs between a
    browser and a headless kernel, so in a lesson put ``# NBVAL_IGNORE_OUTPUT`` as the
    first line of the cell. Lessons 02 and 04.
    """

    def draw(base, factor):
        return plot_frequency_spectrum(dim, base, factor=factor, original_max_position_embeddings=original_max_position_embeddings)

    return _interactive(draw, static, dict(base=base, factor=factor), lambda w: dict(
        base=w.FloatLogSlider(value=base, base=10, min=2, max=7, step=0.1, description="base", continuous_update=False),
        factor=w.FloatSlider(value=factor, min=1.0, max=64.0, step=0.5, description="factor s", continuous_update=False),
    ))


def interactive_relative_positions(length: int = 8, window: int = 4, factor: float = 2.0, schemes=("rope", "pi", "rerope", "leaky_rerope"), *, static: bool = False):
    """:func:`plot_relative_positions` with sliders for the length, the window w and the factor.

    Same contract as :func:`interactive_frequency_spectrum`: a widget inside Jupyter with
    ipywidgets, else (or with ``static=True``) the static figure; mark the cell
    ``# NBVAL_IGNORE_OUTPUT``. Lessons 03 and 04.
    """

    def draw(length, window, factor):
        return plot_relative_positions(length, schemes, window=window, factor=factor)

    return _interactive(draw, static, dict(length=length, window=window, factor=factor), lambda w: dict(
        length=w.IntSlider(value=length, min=2, max=16, description="length", continuous_update=False),
        window=w.IntSlider(value=window, min=1, max=16, description="window w", continuous_update=False),
        factor=w.FloatSlider(value=factor, min=1.5, max=8.0, step=0.5, description="factor", continuous_update=False),
    ))


def interactive_rotation_2d(max_position: int = 8, dim: int = 16, base: float = 10000.0, pairs=None, *, static: bool = False):
    """:func:`plot_rotation_2d` with sliders for the last position and the base.

    Same contract as :func:`interactive_frequency_spectrum`; mark the cell
    ``# NBVAL_IGNORE_OUTPUT``. Lesson 01.
    """

    def draw(max_position, base):
        return plot_rotation_2d(max_position, pairs, dim, base)

    return _interactive(draw, static, dict(max_position=max_position, base=base), lambda w: dict(
        max_position=w.IntSlider(value=max_position, min=1, max=64, description="last m", continuous_update=False),
        base=w.FloatLogSlider(value=base, base=10, min=1, max=6, step=0.1, description="base", continuous_update=False),
    ))


def _interactive(draw, static, values, make_sliders):
    """Sliders driving ``draw`` when a Jupyter kernel and ipywidgets are there, else the static figure."""
    widgets = None if static else _jupyter_widgets()
    if widgets is None:
        return draw(**values)
    from IPython.display import display

    def redraw(**chosen):
        # Show the figure inside the widget's output and close it, so that no backend
        # shows it a second time at the end of this cell or of the next one.
        fig = draw(**chosen)
        display(fig)
        plt.close(fig)

    widget = widgets.interactive(redraw, **make_sliders(widgets))
    display(widget)
    return widget


def _jupyter_widgets():
    """The ipywidgets module when running inside a Jupyter kernel that can show widgets, else None."""
    try:
        import ipywidgets
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return ipywidgets if shell is not None and getattr(shell, "kernel", None) is not None else None


# --- shared helpers --------------------------------------------------------------------


def _figure_axes(ax, count, figsize, name, nrows=1):
    """A new figure with ``count`` panels (in ``nrows`` rows), or the caller's own Axes, checked."""
    if ax is None:
        fig, grid = plt.subplots(nrows, count // nrows, figsize=figsize, squeeze=False)
        return fig, list(grid.ravel())
    given = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(given) != count or not all(isinstance(a, Axes) for a in given):
        raise ValueError(f"{name} must be {count} matplotlib Axes for this figure, got {_describe(ax)}")
    return given[0].figure, given


def _pair_features(i, dim, layout):
    """Feature indices (a, b) of pair i in the given layout."""
    return (i, i + dim // 2) if layout == "half" else (2 * i, 2 * i + 1)


def _write_numbers(ax, values, fmt, skip_zero=False, fontsize=11):
    """Write each finite entry of a small matrix in its cell (drawn by the last image)."""
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v) and not (skip_zero and v == 0):
            _write_cell(ax, ax.images[-1], r, c, v, fmt, fontsize)


def _write_cell(ax, image, r, c, v, fmt, fontsize=11):
    """One number in cell (r, c), white on dark colours and black on light ones."""
    red, green, blue, _ = image.cmap(image.norm(v))
    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
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
