"""The frequency spectrum θ_i, its wavelengths, and how each context-extension schedule
rescales it (lessons 02 and 04). The schedules themselves are data:
:func:`ropekit.frequencies.frequency_schedules`."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from ..frequencies import SCALINGS, frequency_schedules, rope_frequencies, wavelengths
from .common import figure_axes
from .style import ACCENT, LINESTYLES, MARKERS, PALETTE, SHADE, styled

__all__ = ["plot_frequency_spectrum"]


@styled
def plot_frequency_spectrum(
    dim: int = 128,
    base: float = 10000.0,
    scalings=None,
    *,
    factor: float = 8.0,
    original_max_position_embeddings: int = 4096,
    axes=None,
):
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
    fig, axes = figure_axes(axes, 3, (17.5, 5.6), "axes")
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
            label = "first pair with 2π/θ_i > $L_0$"
            first_beyond = a.axvline(beyond[0], color=ACCENT, ls="--", lw=1.5, label=label)
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
                    f"scalings[{label!r}] must be a dict of rope_frequencies keyword arguments, "
                    f"got {type(kwargs).__name__}"
                )
        return dict(scalings)
    if isinstance(scalings, str) or not isinstance(scalings, Sequence):
        raise TypeError(
            "scalings must be a dict label -> rope_frequencies kwargs or a list of scaling names, "
            f"got {scalings!r}"
        )
    by_name = {kwargs.get("scaling"): (label, kwargs) for label, kwargs in defaults.items()}
    chosen = {}
    for name in scalings:
        if name not in by_name:
            names = [s for s in SCALINGS if s in by_name]
            raise ValueError(
                f"scalings may name {names} (longrope needs per-pair factors: pass a dict), got {name!r}"
            )
        label, kwargs = by_name[name]
        chosen[label] = kwargs
    return chosen
