"""ropekit.viz.multiaxis (lesson 08's pictures, exported from ropekit.viz): every figure draws the library's numbers, labelled. Headless (Agg)."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ropekit  # noqa: E402
from ropekit import irope, mrope, pairs, rope2d  # noqa: E402
from ropekit import viz  # noqa: E402
from figure_checks import close_figures, assert_labelled  # noqa: E402,F401


def test_grid_scores_images_are_the_maps_with_a_zero_centred_scale():
    torch.manual_seed(0)
    q, k = torch.randn(16), torch.randn(16)
    pos = rope2d.image_grid_positions(5, 6)
    cos, sin = rope2d.axial_cos_sin(pos, rope2d.axial_frequencies(16))
    grid = rope2d.grid_scores(q, k, cos, sin, 5, 6)
    fig = viz.plot_grid_scores({"axial": grid, "doubled": 2 * grid})
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    np.testing.assert_allclose(panels[0].images[0].get_array(), grid.double().numpy())
    np.testing.assert_allclose(panels[1].images[0].get_array(), 2 * grid.double().numpy())
    norm = panels[0].images[0].norm
    assert norm.vmin == -norm.vmax
    assert_labelled(fig)


def test_position_id_lines_are_the_three_axes():
    types_ = torch.tensor([[0, 0, 1, 1, 1, 1, 0, 2, 2, 0]])
    ids, _ = mrope.mrope_position_ids(types_, torch.tensor([[1, 2, 2]]), torch.tensor([[2, 1, 1]]))
    fig = viz.plot_mrope_position_ids(ids[:, 0], types_[0])
    lines = [line for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == ["t id", "h id", "w id"]
    for axis, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_ydata(), ids[axis, 0].numpy())
    assert_labelled(fig)


def test_pair_axes_scatter_puts_each_frequency_on_its_axis():
    inv_freq, _ = ropekit.rope_frequencies(16)
    fig = viz.plot_mrope_pair_axes(inv_freq, {"sectioned": ((2, 3, 3), False), "interleaved": ((3, 3, 2), True)})
    for ax, (sections, interleaved) in zip(fig.axes, [((2, 3, 3), False), ((3, 3, 2), True)]):
        axes_of_pairs = mrope.mrope_pair_axes(sections, interleaved)
        for axis, collection in enumerate(ax.collections):
            x, y = collection.get_offsets().T
            np.testing.assert_array_equal(x, np.flatnonzero(axes_of_pairs.numpy() == axis))
            np.testing.assert_allclose(y, inv_freq.double().numpy()[x.astype(int)])
    assert_labelled(fig)


def test_pair_score_heatmap_is_the_scores_transposed():
    torch.manual_seed(1)
    q = torch.randn(4, 8)
    inv_freq, _ = ropekit.rope_frequencies(8)
    s = pairs.pair_scores(q, q, 12, inv_freq).mean(0)
    fig = viz.plot_pair_scores({"RoPE": s}, torch.arange(12))
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), s.double().numpy().T)
    assert_labelled(fig)


def test_temperature_curve_is_irope_temperature():
    fig = viz.plot_irope_temperature(100_000, floor_scale=8192, attn_scale=0.1)
    line = fig.axes[0].get_lines()[0]
    m = torch.tensor(line.get_xdata())
    np.testing.assert_allclose(line.get_ydata(), irope.irope_temperature(m).numpy())
    assert line.get_ydata()[-1] == pytest.approx(1 + 0.1 * math.log(1 + 100_001 // 8192), rel=1e-6)
    assert_labelled(fig)


def test_cache_bars_are_kib_per_token():
    fig = viz.plot_cache_bytes({"MHA": 4096, "MLA": 1152})
    widths = [bar.get_width() for bar in fig.axes[0].patches]
    assert widths == [4.0, 1.125]
    assert_labelled(fig)
