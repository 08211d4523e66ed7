"""xPos (Sun et al. 2022) next to plain RoPE: the decay its scale adds to RoFormer's bound
(lesson 03)."""

from __future__ import annotations

import torch

from ..frequencies import rope_frequencies
from ..reference import rope_decay_bound
from .common import check_int, figure_axes
from .style import ACCENT, LINESTYLES, PALETTE, styled

__all__ = ["xpos_zeta", "xpos_decay_bound", "plot_xpos_decay"]


def xpos_zeta(rotary_dim: int, gamma: float = 0.4) -> torch.Tensor:
    """ζ_i = (2i/r + γ)/(1 + γ) for the r/2 rotary pairs, float64 ``(rotary_dim // 2,)``:
    the per-pair base of xPos's scale (Sun et al. 2022, eq. 5-6; γ = 0.4 in the paper). Lesson 03 §8."""
    check_int(rotary_dim, "rotary_dim", minimum=2)
    i = torch.arange(rotary_dim // 2, dtype=torch.float64)
    return (2 * i / rotary_dim + gamma) / (1 + gamma)


def xpos_decay_bound(distances, inv_freq, scale_base: float = 512.0) -> torch.Tensor:
    """RoFormer's position factor (1/(d/2)) Σ_j |S_j| with xPos's weights in the partial sums,
    S_j = Σ_{l<j} ζ_l^{Δ/B} e^{iΔθ_l}, for each distance Δ; B = ``scale_base`` (float64).

    The summation by parts of RoFormer §3.4.3 goes through unchanged with e^{iΔθ_l}
    replaced by ζ_l^{Δ/B} e^{iΔθ_l}, the factor xPos gives pair l of a logit at distance Δ.
    distances: ``(n,)``; inv_freq: ``(d/2,)``; returns ``(n,)``. Lesson 03 §8.
    """
    theta = inv_freq.to(torch.float64)
    delta = torch.as_tensor(distances, dtype=torch.float64)[:, None]
    weights = xpos_zeta(2 * theta.shape[0]) ** (delta / scale_base)
    phases = torch.polar(weights, delta * theta)
    return phases.cumsum(dim=-1).abs().mean(dim=-1)


@styled
def plot_xpos_decay(
    dim: int = 128, base: float = 10000.0, scale_base: float = 512.0, max_distance: int = 2048, *, axes=None
):
    """Left: RoFormer's bound for RoPE (:func:`ropekit.reference.rope_decay_bound`) and for
    xPos (:func:`xpos_decay_bound`) against distance. Right: the factor ζ_i^{Δ/B} xPos puts
    on pair i's part of a logit, for the fastest, a middle and the slowest pair.

    What to notice: the fast pairs (ζ near γ/(1+γ) ≈ 0.29) are damped hard within a few
    hundred tokens, the slowest (ζ near 1) hardly at all, so xPos mostly removes the fast
    pairs' far-away noise, and its bound falls further below RoPE's the farther the distance. Lesson 03.
    """
    check_int(max_distance, "max_distance", minimum=1)
    inv_freq, _ = rope_frequencies(dim, base)
    delta = torch.arange(max_distance + 1)
    rope = rope_decay_bound(delta, inv_freq).numpy()
    xpos = xpos_decay_bound(delta, inv_freq, scale_base).numpy()
    fig, (ax_bound, ax_zeta) = figure_axes(axes, 2, (14, 5.2), "axes")
    ax_bound.plot(delta, rope, color=PALETTE[0], label="RoPE (lesson 03)")
    ax_bound.plot(delta, xpos, color=PALETTE[1], ls=LINESTYLES[1], label=f"xPos, scale_base {scale_base:g}")
    ax_bound.axvline(scale_base, color=ACCENT, lw=1.2, ls=":", label="Δ = scale_base")
    ax_bound.set_title(f"RoFormer's bound (d = {dim}, base = {base:g})")
    ax_bound.set_xlabel("relative distance Δ (tokens)")
    ax_bound.set_ylabel("(1/(d/2)) Σ_j |S_j|")
    ax_bound.legend()
    zeta = xpos_zeta(dim)
    for n, i in enumerate((0, dim // 4, dim // 2 - 1)):
        ax_zeta.plot(delta, (zeta[i] ** (delta / scale_base)).numpy(), color=PALETTE[n + 1],
                     ls=LINESTYLES[n], label=f"pair {i}: ζ = {zeta[i].item():.3f}")
    ax_zeta.set_title("xPos's factor on pair i of a logit")
    ax_zeta.set_xlabel("relative distance Δ (tokens)")
    ax_zeta.set_ylabel("ζ_i^(Δ / scale_base)")
    ax_zeta.legend()
    return fig
