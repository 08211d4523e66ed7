"""Slider versions of three pictures for JupyterLab (lessons 01, 03 and 04)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .attention import plot_relative_positions
from .rotation import plot_rotation_2d
from .spectrum import plot_frequency_spectrum

__all__ = ["interactive_frequency_spectrum", "interactive_relative_positions", "interactive_rotation_2d"]


def interactive_frequency_spectrum(
    dim: int = 128,
    base: float = 10000.0,
    factor: float = 8.0,
    original_max_position_embeddings: int = 4096,
    *,
    static: bool = False,
):
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
        return plot_frequency_spectrum(
            dim, base, factor=factor, original_max_position_embeddings=original_max_position_embeddings
        )

    def sliders(w):
        return dict(
            base=w.FloatLogSlider(value=base, base=10, min=2, max=7, step=0.1, description="base"),
            factor=w.FloatSlider(value=factor, min=1.0, max=64.0, step=0.5, description="factor s"),
        )

    return _interactive(draw, static, dict(base=base, factor=factor), sliders)


def interactive_relative_positions(
    length: int = 8,
    window: int = 4,
    factor: float = 2.0,
    schemes=("rope", "pi", "rerope", "leaky_rerope"),
    *,
    static: bool = False,
):
    """:func:`plot_relative_positions` with sliders for the length, the window w and the factor.

    Same contract as :func:`interactive_frequency_spectrum`: a widget inside Jupyter with
    ipywidgets, else (or with ``static=True``) the static figure; mark the cell
    ``# NBVAL_IGNORE_OUTPUT``. Lessons 03 and 04.
    """

    def draw(length, window, factor):
        return plot_relative_positions(length, schemes, window=window, factor=factor)

    def sliders(w):
        return dict(
            length=w.IntSlider(value=length, min=2, max=16, description="length"),
            window=w.IntSlider(value=window, min=1, max=16, description="window w"),
            factor=w.FloatSlider(value=factor, min=1.5, max=8.0, step=0.5, description="factor"),
        )

    return _interactive(draw, static, dict(length=length, window=window, factor=factor), sliders)


def interactive_rotation_2d(
    max_position: int = 8, dim: int = 16, base: float = 10000.0, pairs=None, *, static: bool = False
):
    """:func:`plot_rotation_2d` with sliders for the last position and the base.

    Same contract as :func:`interactive_frequency_spectrum`; mark the cell
    ``# NBVAL_IGNORE_OUTPUT``. Lesson 01.
    """

    def draw(max_position, base):
        return plot_rotation_2d(max_position, pairs, dim, base)

    def sliders(w):
        return dict(
            max_position=w.IntSlider(value=max_position, min=1, max=64, description="last m"),
            base=w.FloatLogSlider(value=base, base=10, min=1, max=6, step=0.1, description="base"),
        )

    return _interactive(draw, static, dict(max_position=max_position, base=base), sliders)


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

    sliders = make_sliders(widgets)
    for slider in sliders.values():
        slider.continuous_update = False  # redraw once the slider is let go, not while dragging
    widget = widgets.interactive(redraw, **sliders)
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
