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

The package is cut by picture family, and every name below is also reachable as
``viz.<name>``:

* :mod:`ropekit.viz.rotation`: ``plot_rotation_matrix``, ``plot_rotation_2d`` (lessons 01, 02);
* :mod:`ropekit.viz.spectrum`: ``plot_frequency_spectrum`` (lessons 02, 04);
* :mod:`ropekit.viz.attention`: ``plot_relative_positions``, ``plot_long_term_decay``,
  ``plot_attention_logits`` (lessons 03, 04);
* :mod:`ropekit.viz.xpos`: ``plot_xpos_decay`` (lesson 03);
* :mod:`ropekit.viz.reported`: ``plot_rerope_post_tables``, results quoted from the ReRoPE post (lesson 04);
* :mod:`ropekit.viz.benchmark`: ``plot_benchmark`` (the kernel lessons), ``plot_bench_summary``
  (a benchmark run in one picture);
* :mod:`ropekit.viz.model`: ``plot_loss_curves``, ``plot_window_ablation``,
  ``plot_passkey_heatmap``, ``plot_attention_entropy``, ``plot_measured_decay`` (lesson 06);
* :mod:`ropekit.viz.decode`: ``plot_cache_layout``, ``plot_scored_distances`` (lesson 07);
* :mod:`ropekit.viz.precision`: ``plot_cos_sin_error``, ``plot_rotation_error``,
  ``plot_logit_drift`` (lesson 09);
* :mod:`ropekit.viz.interactive`: the ``interactive_*`` slider versions;
* :mod:`ropekit.viz.multiaxis`: ``plot_grid_scores``, ``plot_mrope_position_ids``,
  ``plot_mrope_pair_axes``, ``plot_pair_scores``, ``plot_irope_temperature``,
  ``plot_cache_bytes`` (lesson 08: images, video, p-RoPE, iRoPE, MLA);
* :mod:`ropekit.viz.style`: the shared look (palette, font sizes, colour maps);
* :mod:`ropekit.viz.common`: panel and cell helpers the modules share.

``frequency_schedules`` is data, not a picture: it lives in :mod:`ropekit.frequencies`
and is re-exported here. This package is the only place that imports matplotlib; it
never imports triton.
"""

from ..frequencies import frequency_schedules
from .attention import plot_attention_logits, plot_long_term_decay, plot_relative_positions
from .attention import SCHEME_FORMULAS, SCHEME_NAMES  # noqa: F401 (public before the split)
from .benchmark import BENCH_COLUMNS, plot_bench_summary, plot_benchmark  # noqa: F401
from .decode import plot_cache_layout, plot_scored_distances
from .interactive import (
    interactive_frequency_spectrum,
    interactive_relative_positions,
    interactive_rotation_2d,
)
from .reported import plot_rerope_post_tables
from .model import (
    plot_attention_entropy,
    plot_loss_curves,
    plot_measured_decay,
    plot_passkey_heatmap,
    plot_window_ablation,
)
from .multiaxis import (
    plot_cache_bytes,
    plot_grid_scores,
    plot_irope_temperature,
    plot_mrope_pair_axes,
    plot_mrope_position_ids,
    plot_pair_scores,
)
from .precision import plot_cos_sin_error, plot_logit_drift, plot_rotation_error
from .rotation import plot_rotation_2d, plot_rotation_matrix
from .spectrum import plot_frequency_spectrum
from .xpos import plot_xpos_decay

__all__ = [
    "plot_rotation_matrix",
    "plot_rotation_2d",
    "plot_frequency_spectrum",
    "frequency_schedules",
    "plot_relative_positions",
    "plot_long_term_decay",
    "plot_attention_logits",
    "plot_benchmark",
    "plot_bench_summary",
    "plot_xpos_decay",
    "plot_rerope_post_tables",
    "plot_cache_layout",
    "plot_scored_distances",
    "plot_cos_sin_error",
    "plot_rotation_error",
    "plot_logit_drift",
    "interactive_frequency_spectrum",
    "interactive_relative_positions",
    "interactive_rotation_2d",
    "plot_loss_curves",
    "plot_window_ablation",
    "plot_passkey_heatmap",
    "plot_attention_entropy",
    "plot_measured_decay",
    "plot_grid_scores",
    "plot_mrope_position_ids",
    "plot_mrope_pair_axes",
    "plot_pair_scores",
    "plot_irope_temperature",
    "plot_cache_bytes",
]
