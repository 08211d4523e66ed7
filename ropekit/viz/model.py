"""Pictures of a trained model under context extension (lesson 06): per-position loss,
the window ablation, passkey retrieval, attention entropy and the measured long-term decay.

Every function only draws numbers it is given (from ``scripts/lesson06_sweeps.py``'s stored
results or from ``ropekit.model.probes``); none computes anything about the model itself.
"""

from __future__ import annotations

import numpy as np

from .common import check_int, describe, figure_axes, write_numbers
from .style import ACCENT, LINESTYLES, PALETTE, SEQUENTIAL, styled

__all__ = ["plot_loss_curves", "plot_window_ablation", "plot_passkey_heatmap", "plot_attention_entropy",
           "plot_measured_decay"]


def _curves(curves, name):
    if not isinstance(curves, dict) or not curves:
        raise ValueError(
            f"{name} must be a non-empty dict of label -> sequence of numbers, got {describe(curves)}"
        )
    return {label: np.asarray(values, dtype=float) for label, values in curves.items()}


def _bin_centres(count, bin_size, train_length):
    return (np.arange(count) * bin_size + bin_size / 2) / train_length


@styled
def plot_loss_curves(
    curves: dict, bin_size: int, train_length: int, *, title="per-position loss", ylim=None, ax=None
):
    """Mean next-token loss against position, one line per scheme.

    Args:
        curves: ``{label: [mean loss of positions 0..b−1, b..2b−1, ...]}`` (nats).
        bin_size: b, positions per point.
        train_length: L; the x axis is position / L and a line marks L.
        ylim: optional (low, high) of the loss axis.

    What to notice: inside L every scheme that leaves short distances alone matches RoPE;
    past L the curves part. Lesson 06.
    """
    check_int(bin_size, "bin_size", 1)
    check_int(train_length, "train_length", 1)
    data = _curves(curves, "curves")
    fig, (ax,) = figure_axes(ax, 1, (11, 5.5), "ax")
    for i, (label, values) in enumerate(data.items()):
        ax.plot(_bin_centres(len(values), bin_size, train_length), values, label=label,
                color=PALETTE[i % len(PALETTE)], linestyle=LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)])
    ax.axvline(1.0, color=ACCENT, lw=1.2, linestyle="--")
    ax.text(1.02, 0.97, "training length L", transform=ax.get_xaxis_transform(), color=ACCENT, va="top")
    ax.set_xlabel("position / L")
    ax.set_ylabel("loss (nats per byte)")
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=10, ncol=2)
    return fig


@styled
def plot_window_ablation(windows, accuracy: dict, train_length: int, *, ax=None):
    """Token accuracy at 8L against the ReRoPE window w, one line per test set.

    Args:
        windows: the windows w (tokens).
        accuracy: ``{label: [accuracy for each window]}``; optional horizontal references
            can be passed as ``{label: float}`` (drawn dashed, e.g. plain RoPE or NTK).
        train_length: L; the x axis is w / L.

    Lesson 06 (the ReRoPE post's window ablation).
    """
    check_int(train_length, "train_length", 1)
    if not isinstance(accuracy, dict) or not accuracy:
        raise ValueError(f"accuracy must be a non-empty dict, got {describe(accuracy)}")
    x = np.asarray(windows, dtype=float) / train_length
    fig, (ax,) = figure_axes(ax, 1, (9, 5.2), "ax")
    for i, (label, values) in enumerate(accuracy.items()):
        if np.ndim(values) == 0:
            ax.axhline(float(values), color=PALETTE[i % len(PALETTE)], lw=1.4, linestyle="--", label=label)
        else:
            colour = PALETTE[i % len(PALETTE)]
            ax.plot(x, np.asarray(values, dtype=float), marker="o", color=colour, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [f"L/{train_length / w:g}" if w < train_length else "L" for w in np.asarray(windows)])
    ax.set_xlabel("ReRoPE window w")
    ax.set_ylabel("next-byte accuracy at 8L")
    ax.set_title("ReRoPE window ablation (no fine-tuning)")
    ax.legend(fontsize=10)
    return fig


@styled
def plot_passkey_heatmap(accuracy: dict, lengths, depths, *, axes=None):
    """Passkey retrieval accuracy, one heatmap per scheme: rows = depth, columns = length.

    Args:
        accuracy: ``{label: grid}`` with ``grid[i][j]`` the share of prompts of length
            ``lengths[j]`` with the key at depth ``depths[i]`` whose 5 digits were predicted.
        lengths, depths: the axes' values.

    Lesson 06.
    """
    if not isinstance(accuracy, dict) or not accuracy:
        raise ValueError(f"accuracy must be a non-empty dict of label -> grid, got {describe(accuracy)}")
    grids = {label: np.asarray(g, dtype=float) for label, g in accuracy.items()}
    for label, g in grids.items():
        if g.shape != (len(depths), len(lengths)):
            raise ValueError(f"grid {label!r} must have shape (len(depths), len(lengths)) = "
                             f"({len(depths)}, {len(lengths)}), got {g.shape}")
    fig, panels = figure_axes(axes, len(grids), (4.6 * len(grids), 4.4), "axes")
    for ax, (label, g) in zip(panels, grids.items()):
        ax.imshow(g, cmap=SEQUENTIAL, vmin=0, vmax=1, aspect="auto")
        write_numbers(ax, g, "{:.2f}")
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
        ax.set_xlabel("prompt length (tokens)")
        ax.set_ylabel("needle depth")
        ax.set_title(label)
    return fig


@styled
def plot_attention_entropy(curves: dict, bin_size: int, train_length: int, *, axes=None):
    """Attention entropy against query position, one panel per layer, one line per variant.

    Args:
        curves: ``{label: [[mean entropy of each bin] for each layer]}`` (nats, mean over heads).
        bin_size, train_length: as in :func:`plot_loss_curves`.

    The dotted line is log(n), the entropy of uniform attention over n keys. Lesson 06.
    """
    check_int(bin_size, "bin_size", 1)
    if not isinstance(curves, dict) or not curves:
        raise ValueError(f"curves must be a non-empty dict, got {describe(curves)}")
    layers = len(next(iter(curves.values())))
    fig, panels = figure_axes(axes, layers, (4.2 * layers, 4.4), "axes")
    for layer, ax in enumerate(panels):
        for i, (label, per_layer) in enumerate(curves.items()):
            values = np.asarray(per_layer[layer], dtype=float)
            x = _bin_centres(len(values), bin_size, train_length)
            ax.plot(x, values, color=PALETTE[i + 1], label=label)
        x = _bin_centres(len(values), bin_size, train_length)
        ax.plot(x, np.log(x * train_length), color="0.5", linestyle=":", label="log n (uniform)")
        ax.axvline(1.0, color=ACCENT, lw=1.2, linestyle="--")
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("query position / L")
        ax.set_ylabel("entropy (nats)")
    panels[0].legend(fontsize=9)
    return fig


@styled
def plot_measured_decay(measured: dict, bound, *, ax=None):
    """Long-term decay of real q·k beside RoFormer's bound for random vectors, both scaled to 1 at r = 0.

    Args:
        measured: ``{label: values at r = 0, 1, ...}`` (e.g. one per layer, from
            ``ropekit.model.probes.measured_decay``).
        bound: ``ropekit.reference.rope_decay_bound`` at the same distances, any scale.

    Lesson 06 (lesson 03 derives the bound).
    """
    data = _curves(measured, "measured")
    bound = np.asarray(bound, dtype=float)
    fig, (ax,) = figure_axes(ax, 1, (10, 5.2), "ax")
    ax.plot(np.arange(len(bound)), bound / bound[0], color=PALETTE[0], label="RoFormer bound (random q, k)")
    for i, (label, values) in enumerate(data.items()):
        ax.plot(np.arange(len(values)), values, color=PALETTE[i + 1], lw=1.6, label=label)
    ax.set_xlabel("relative distance r (tokens)")
    ax.set_ylabel("mean |⟨R_r q, k⟩|, 1 at r = 0")
    ax.set_title("long-term decay: the trained model's own queries and keys")
    ax.legend(fontsize=10)
    return fig
