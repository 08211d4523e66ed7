"""Pictures of decoding (lesson 07): what a KV cache holds, and the distance each scheme
scores every key at during a long generation.

Both functions only draw numbers they are given: slot positions and validity from a
:class:`ropekit.kv_cache.KVCache`, distances from
:func:`ropekit.position_rules.scored_distances`.
"""

from __future__ import annotations

import numpy as np

from .common import describe, figure_axes, write_numbers
from .style import ACCENT, LINESTYLES, PALETTE, SEQUENTIAL, styled

__all__ = ["plot_cache_layout", "plot_scored_distances"]


@styled
def plot_cache_layout(positions, valid, *, title="KV cache slots", ax=None):
    """One row per sequence, one cell per cache slot: the position its key holds, blank for padding.

    Args:
        positions, valid: ``(batch, slots)`` (``cache.positions``, ``cache.valid``).

    What to notice: rows of different lengths leave padding slots; after a StreamingLLM
    eviction the kept keys are numbered 0, 1, 2, ... by slot. Lesson 07.
    """
    positions = np.asarray(positions, dtype=float)
    valid = np.asarray(valid, dtype=bool)
    if positions.ndim != 2 or positions.shape != valid.shape:
        raise ValueError(
            "positions and valid must be two (batch, slots) arrays, "
            f"got {describe(positions)} and {describe(valid)}"
        )
    shown = np.where(valid, positions, np.nan)
    size = (max(6, 0.55 * shown.shape[1] + 2), 0.7 * shown.shape[0] + 1.8)
    fig, (ax,) = figure_axes(ax, 1, size, "ax")
    ax.imshow(shown, cmap=SEQUENTIAL, aspect="auto")
    write_numbers(ax, shown, "{:.0f}", fontsize=10)
    ax.set_xlabel("cache slot")
    ax.set_ylabel("sequence (row)")
    ax.set_yticks(range(shown.shape[0]))
    ax.grid(False)
    ax.set_title(title)
    return fig


@styled
def plot_scored_distances(distances: dict, *, train_length=None, title="distance each key is scored at",
                          ax=None):
    """One line per scheme: key index j (x) against the distance it is scored at (y).

    Args:
        distances: ``{label: (n,) distances}`` for one late query (NaN: key dropped).
        train_length: L, drawn as a line: distances above it were never seen in training.

    What to notice: RoPE's distances grow past L; ReRoPE clips them at w, Self-Extend
    floor-divides them, a sinks cache keeps them below S + w. Lesson 07.
    """
    if not isinstance(distances, dict) or not distances:
        raise ValueError(
            f"distances must be a non-empty dict of label -> sequence, got {describe(distances)}"
        )
    fig, (ax,) = figure_axes(ax, 1, (11, 5), "ax")
    for i, (label, values) in enumerate(distances.items()):
        values = np.asarray(values, dtype=float)
        ax.plot(np.arange(len(values)), values, label=label, color=PALETTE[i % len(PALETTE)],
                linestyle=LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)], lw=2)
    if train_length is not None:
        ax.axhline(train_length, color=ACCENT, lw=1.2, linestyle="--")
        ax.text(0.01, train_length, " training length L", color=ACCENT, va="bottom",
                transform=ax.get_yaxis_transform())
    ax.set_xlabel("key position j")
    ax.set_ylabel("distance scored")
    ax.set_title(title)
    ax.legend(fontsize=10)
    return fig
