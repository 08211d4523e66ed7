"""ropekit.viz.model: each picture of lesson 06 draws exactly the numbers it is given,
labelled, and rejects malformed data. Headless (Agg)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ropekit import viz  # noqa: E402
from figure_checks import close_figures  # noqa: E402,F401


def labelled(fig):
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def data_lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_loss_curves_draw_each_curve_at_bin_centres_over_L():
    curves = {"RoPE": [1.0, 2.0, 3.0], "NTK": [1.0, 1.1, 1.2]}
    fig = viz.plot_loss_curves(curves, bin_size=4, train_length=8)
    labelled(fig)
    lines = data_lines(fig.axes[0])
    assert [line.get_label() for line in lines] == ["RoPE", "NTK"]
    np.testing.assert_allclose(lines[0].get_xdata(), [2 / 8, 6 / 8, 10 / 8])
    np.testing.assert_allclose(lines[1].get_ydata(), curves["NTK"])
    with pytest.raises(ValueError, match="curves"):
        viz.plot_loss_curves({}, bin_size=4, train_length=8)


def test_window_ablation_draws_lines_and_reference_levels():
    fig = viz.plot_window_ablation([32, 64, 256], {"repeated": [0.5, 0.6, 0.2], "RoPE": 0.25}, train_length=256)
    labelled(fig)
    lines = data_lines(fig.axes[0])
    np.testing.assert_allclose(lines[0].get_xdata(), [1 / 8, 1 / 4, 1])
    np.testing.assert_allclose(lines[0].get_ydata(), [0.5, 0.6, 0.2])
    np.testing.assert_allclose(lines[1].get_ydata(), [0.25, 0.25])
    with pytest.raises(ValueError, match="accuracy"):
        viz.plot_window_ablation([32], {}, train_length=256)


def test_passkey_heatmap_shows_each_grid_and_checks_its_shape():
    grids = {"RoPE": [[1.0, 0.5], [0.0, 0.25]], "ReRoPE": [[1.0, 1.0], [1.0, 0.75]]}
    fig = viz.plot_passkey_heatmap(grids, lengths=[256, 512], depths=[0.0, 1.0])
    labelled(fig)
    for ax, grid in zip(fig.axes, grids.values()):
        np.testing.assert_allclose(ax.images[0].get_array(), grid)
    with pytest.raises(ValueError, match="shape"):
        viz.plot_passkey_heatmap({"RoPE": [[1.0, 0.5]]}, lengths=[256, 512], depths=[0.0, 1.0])


def test_attention_entropy_has_one_panel_per_layer_and_the_uniform_reference():
    curves = {"RoPE": [[1.0, 2.0], [0.5, 0.7]], "log n": [[1.0, 1.5], [0.5, 0.6]]}
    fig = viz.plot_attention_entropy(curves, bin_size=2, train_length=4)
    labelled(fig)
    assert len(fig.axes) == 2
    lines = data_lines(fig.axes[1])
    np.testing.assert_allclose(lines[1].get_ydata(), [0.5, 0.6])
    np.testing.assert_allclose(lines[2].get_ydata(), np.log([1.0, 3.0]))


def test_measured_decay_scales_the_bound_to_one_at_zero():
    fig = viz.plot_measured_decay({"layer 0": [1.0, 0.8, 0.7]}, bound=[4.0, 2.0, 1.0])
    labelled(fig)
    lines = data_lines(fig.axes[0])
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(lines[1].get_ydata(), [1.0, 0.8, 0.7])
