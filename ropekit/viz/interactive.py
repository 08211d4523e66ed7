"""Slider versions of three pictures for JupyterLab (lessons 01, 03 and 04).

Each ``interactive_*`` function shows sliders above the picture and redraws the picture
when a slider is let go. The picture is a PNG in an ``ipywidgets.Image``, not a
matplotlib figure shown inside an ``Output`` widget, so that lessons run headless.
``jupyter nbconvert --execute`` and papermill (nbclient) stand in for a browser's Output
widgets: for every output captured by one, nbclient sends the widget's whole state, the
figure's PNG included, back to the kernel on the shell channel, the channel on which it is
waiting for the cell's execute reply. With the figure inside an Output widget that wait
sometimes never ended (1 of 5 runs of a one-slider notebook here; both processes idle);
with an Image widget the picture travels as widget state on IOPub, nbclient sends
nothing, and no run hung (0 of 10, and the headless tests).
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt

from .attention import plot_relative_positions
from .rotation import plot_rotation_2d
from .spectrum import plot_frequency_spectrum

__all__ = [
    "interactive_frequency_spectrum",
    "interactive_relative_positions",
    "interactive_rotation_2d",
    "Sliders",
]


def interactive_frequency_spectrum(
    dim: int = 128,
    base: float = 10000.0,
    factor: float = 8.0,
    original_max_position_embeddings: int = 4096,
    *,
    static: bool = False,
):
    """:func:`plot_frequency_spectrum` with sliders for the base and the scaling factor s.

    Inside a Jupyter kernel with ipywidgets installed this displays the sliders and the
    picture (redrawn when a slider is let go) and returns a :class:`Sliders`, whose text
    is one line; anywhere else, or with ``static=True``, it returns the static figure for
    the given values. Assign the result (``sliders = ...``). A notebook opened before it
    is run shows the cell's text, "sliders for viz.plot_...: run the cell to use them",
    rather than the widget's repr. The widget's output differs between a browser and a
    headless kernel, so in a lesson put ``# NBVAL_IGNORE_OUTPUT`` as the first line of
    the cell. Runs headless (nbconvert, papermill) without hanging: see the module's
    docstring. Lessons 02 and 04.
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

    return _interactive("plot_frequency_spectrum", draw, static, dict(base=base, factor=factor), sliders)


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

    values = dict(length=length, window=window, factor=factor)
    return _interactive("plot_relative_positions", draw, static, values, sliders)


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

    return _interactive("plot_rotation_2d", draw, static, dict(max_position=max_position, base=base), sliders)


class Sliders:
    """The sliders of an ``interactive_*`` picture and the image they redraw.

    Attributes:
        name: the picture's function, e.g. ``"plot_rotation_2d"``.
        sliders: dict argument name -> ipywidgets slider.
        image: the ``ipywidgets.Image`` holding the current picture as PNG.
        box: sliders above the image, the widget that is displayed.

    :meth:`redraw` draws the picture for the sliders' current values (called when one
    is let go). Its ``repr`` is one line naming the picture and the values.
    """

    def __init__(self, name, draw, sliders, widgets):
        self.name, self._draw, self.sliders = name, draw, sliders
        self.image = widgets.Image(format="png")
        self.box = widgets.VBox([widgets.HBox(list(sliders.values())), self.image])
        for slider in sliders.values():
            slider.continuous_update = False  # redraw once the slider is let go, not while dragging
            slider.observe(self.redraw, names="value")
        self.redraw()

    def redraw(self, change=None):
        fig = self._draw(**{name: slider.value for name, slider in self.sliders.items()})
        png = io.BytesIO()
        fig.savefig(png, format="png", bbox_inches="tight")
        plt.close(fig)  # no backend shows it a second time
        self.image.value = png.getvalue()

    def display(self):
        """Show the box, with a one-line text for frontends that cannot draw widgets."""
        from IPython.display import display

        bundle = self.box._repr_mimebundle_()
        names = ", ".join(self.sliders)
        bundle["text/plain"] = f"sliders for viz.{self.name} ({names}): run the cell to use them"
        display(bundle, raw=True)

    def __repr__(self):
        values = ", ".join(f"{name}={slider.value:g}" for name, slider in self.sliders.items())
        return f"<sliders for viz.{self.name}({values})>"


def _interactive(name, draw, static, values, make_sliders):
    """A :class:`Sliders` driving ``draw``, displayed, when a Jupyter kernel and ipywidgets
    are there; else the static figure."""
    widgets = None if static else _jupyter_widgets()
    if widgets is None:
        return draw(**values)
    sliders = Sliders(name, draw, make_sliders(widgets), widgets)
    sliders.display()
    return sliders


def _jupyter_widgets():
    """The ipywidgets module when running inside a Jupyter kernel that can show widgets, else None."""
    try:
        import ipywidgets
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return ipywidgets if shell is not None and getattr(shell, "kernel", None) is not None else None
