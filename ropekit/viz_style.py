"""Moved to :mod:`ropekit.viz.style`; this name is kept so that old imports still work."""

from .viz.style import (  # noqa: F401
    ACCENT,
    BEYOND_WINDOW,
    DIVERGING,
    INSIDE_WINDOW,
    LINESTYLES,
    MARKERS,
    PALETTE,
    SEQUENTIAL,
    SHADE,
    STYLE,
    styled,
    symmetric_norm,
)
