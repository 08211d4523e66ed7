"""Relative positions and attention: the Toeplitz matrices of each scheme (RoPE, PI,
ReRoPE, Leaky ReRoPE), RoPE's long-term decay, and attention logits of one head
(lessons 03 and 04)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..attention import SCHEMES, attention_logits, relative_position_matrix, scheme_options
from ..frequencies import rope_frequencies
from ..reference import apply_rope, rope_cos_sin, rope_decay_bound
from .common import check_int, describe, figure_axes, write_cell
from .style import (
    ACCENT,
    BEYOND_WINDOW,
    DIVERGING,
    INSIDE_WINDOW,
    LINESTYLES,
    PALETTE,
    styled,
    symmetric_norm,
)

__all__ = ["plot_relative_positions", "plot_long_term_decay", "plot_attention_logits", "SCHEME_NAMES"]


SCHEME_NAMES = {"rope": "RoPE", "pi": "PI", "rerope": "ReRoPE", "leaky_rerope": "Leaky ReRoPE"}


SCHEME_FORMULAS = {
    "rope": "i − j",
    "pi": "(i − j) / s",
    "rerope": "min(i − j, w)",
    "leaky_rerope": "w + (i − j − w) / k beyond w",
}


@styled
def plot_relative_positions(
    length: int = 8,
    schemes=("rope", "pi", "rerope", "leaky_rerope"),
    *,
    window: int | None = 4,
    factor: float = 2.0,
    annotate=None,
    axes=None,
):
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

    check_int(length, "length", minimum=1)
    schemes = _as_schemes(schemes)
    fig, axes = figure_axes(axes, len(schemes), (4.6 * len(schemes) + 0.6, 5.2), "axes")
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
                    image = kept if inside[r, c] else changed
                    write_cell(a, image, r, c, v, "{:.3g}", fontsize=11 if length <= 8 else 9)
        if length <= 16:
            a.set_xticks(range(length))
            a.set_yticks(range(length))
        a.set_title(_scheme_title(scheme, window, factor))
        a.set_xlabel("key position j")
        a.set_ylabel("query position i")
    if window is not None:
        handles = [
            Patch(color=plt.get_cmap(INSIDE_WINDOW)(0.6), label=f"inside the window: i − j < {window}"),
            Patch(color=plt.get_cmap(BEYOND_WINDOW)(0.6), label=f"beyond the window: i − j ≥ {window}"),
        ]
        axes[-1].legend(handles=handles, loc="upper right", fontsize=11)  # in the empty future half
    return fig


@styled
def plot_long_term_decay(
    dim: int = 128, base: float = 10000.0, max_distance: int = 256, *, inv_freq=None, seed: int = 0, axes=None
):
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
    check_int(max_distance, "max_distance", minimum=1)
    if inv_freq is None:
        inv_freq, _ = rope_frequencies(dim, base)
    elif not isinstance(inv_freq, torch.Tensor) or inv_freq.shape != (dim // 2,):
        raise ValueError(
            f"inv_freq must be a tensor of shape (dim // 2,) = ({dim // 2},), got {describe(inv_freq)}"
        )
    distances = torch.arange(max_distance + 1)
    bound = rope_decay_bound(distances, inv_freq).numpy()
    q = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    cos, sin = rope_cos_sin(distances, inv_freq)
    logit = (apply_rope(q.expand(len(distances), dim), cos, sin) @ q).numpy()
    expected = 2 * cos.double().sum(dim=-1).numpy()

    fig, (ax_bound, ax_logit) = figure_axes(axes, 2, (14, 5.2), "axes")
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
def plot_attention_logits(
    q,
    k,
    schemes="rope",
    *,
    inv_freq=None,
    window=None,
    factor=None,
    layout: str = "half",
    batch: int = 0,
    head: int = 0,
    axes=None,
):
    """Attention logit heatmaps and logit-versus-distance curves of one head, per scheme.

    Args:
        q: ``(seq, head_dim)`` or ``(batch, seq, heads, head_dim)``, not yet rotated.
        k: the same shape as q, or ``(batch, seq, kv_heads, head_dim)`` (key head
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
    logits = {
        s: attention_logits(q1, k1, s, inv_freq, window=window, factor=factor, layout=layout).numpy()
        for s in schemes
    }
    seq = q1.shape[0]
    fig, axes = figure_axes(axes, len(schemes) + 1, (4.8 * len(schemes) + 6.5, 5.2), "axes")
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


def _scheme_title(scheme, window, factor):
    """Two lines: the scheme with its parameters, then its relative position."""
    settings = {"pi": f", s = {factor:g}" if factor else "", "rerope": f", w = {window}",
                "leaky_rerope": f", w = {window}, k = {factor:g}" if factor else ""}
    return f"{SCHEME_NAMES[scheme]}{settings.get(scheme, '')}\n{SCHEME_FORMULAS[scheme]}"


def _as_schemes(schemes):
    schemes = (schemes,) if isinstance(schemes, str) else tuple(schemes)
    if not schemes or any(s not in SCHEMES for s in schemes):
        raise ValueError(f"schemes must be one or more of {SCHEMES}, got {schemes!r}")
    return schemes


def _one_head(q, k, batch, head):
    """(seq, head_dim) views of query head ``head`` and the key head that serves it."""
    for name, t in (("q", q), ("k", k)):
        if not isinstance(t, torch.Tensor) or t.dim() not in (2, 4):
            raise ValueError(
                f"{name} must be a tensor of shape (seq, head_dim) or (batch, seq, heads, head_dim), "
                f"got {describe(t)}"
            )
    if q.dim() != k.dim():
        raise ValueError(
            f"q and k must both be 2-D or both 4-D, got shapes {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if q.dim() == 2:
        return q, k
    if not 0 <= batch < q.shape[0] or not 0 <= head < q.shape[2]:
        raise ValueError(
            f"batch and head must index q of shape {tuple(q.shape)} (batch, seq, heads, head_dim), "
            f"got batch={batch}, head={head}"
        )
    if k.shape[:2] != q.shape[:2] or k.shape[3] != q.shape[3] or q.shape[2] % k.shape[2]:
        raise ValueError(
            f"k of shape {tuple(k.shape)} does not match q of shape {tuple(q.shape)} "
            "(same batch, seq and head_dim; kv_heads must divide heads)"
        )
    return q[batch, :, head], k[batch, :, head // (q.shape[2] // k.shape[2])]
