"""ropekit.viz: every figure draws exactly the library's numbers, labelled, and rejects bad input.

The data are read back from the artists (``ax.images[0].get_array()``, ``line.get_ydata()``)
and compared with the library and with float64 formulas written out here. Headless (Agg).
"""

import math
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ropekit  # noqa: E402
from ropekit import viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def assert_labelled(fig):
    """Every panel that draws data has a title and both axis labels."""
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert panels
    for a in panels:
        assert a.get_title(), "panel without a title"
        assert a.get_xlabel() and a.get_ylabel(), f"panel {a.get_title()!r} lacks an axis label"


def data_lines(ax):
    """The lines that carry data (labelled in the legend), in drawing order."""
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


# --- plot_rotation_matrix ---------------------------------------------------------------


@pytest.mark.parametrize("layout", ["paper", "half"])
def test_rotation_matrix_image_is_the_library_matrix(layout):
    fig = viz.plot_rotation_matrix(position=5, dim=8, base=100.0, layout=layout)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown, ropekit.rotation_matrix(5, 8, 100.0, layout).numpy())
    # and it is RoFormer eq. 15: pair i's 2×2 block is the rotation by 5·θ_i
    theta1 = 100.0 ** (-2 / 8)
    a, b = (1, 5) if layout == "half" else (2, 3)
    block = shown[np.ix_([a, b], [a, b])]
    c, s = math.cos(5 * theta1), math.sin(5 * theta1)
    np.testing.assert_allclose(block, [[c, -s], [s, c]], rtol=0, atol=1e-12)
    assert_labelled(fig)
    norm = fig.axes[0].images[0].norm
    assert norm.vmin == -norm.vmax, "signed entries need a colour scale centred at zero"


def test_rotation_matrix_both_layouts_side_by_side():
    fig = viz.plot_rotation_matrix(position=2, dim=6, layout="both")
    panels = [a for a in fig.axes if a.images]
    assert len(panels) == 2
    for a, layout in zip(panels, ("paper", "half")):
        np.testing.assert_array_equal(a.images[0].get_array(), ropekit.rotation_matrix(2, 6, layout=layout).numpy())
        assert layout in a.get_title()


def test_rotation_matrix_draws_on_given_axes_and_rejects_bad_arguments():
    fig, ax = plt.subplots()
    assert viz.plot_rotation_matrix(1, 4, ax=ax) is fig
    with pytest.raises(ValueError, match="layout"):
        viz.plot_rotation_matrix(1, 4, layout="interleaved")
    with pytest.raises(ValueError, match="ax must be 2"):
        viz.plot_rotation_matrix(1, 4, layout="both", ax=ax)
    with pytest.raises(ValueError, match="dim"):
        viz.plot_rotation_matrix(1, 5)


# --- plot_rotation_2d -------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["half", "paper"])
def test_rotation_2d_points_are_each_pair_turned_by_m_theta(layout):
    fig = viz.plot_rotation_2d(max_position=6, pairs=(0, 2), dim=8, base=10000.0, layout=layout)
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(panels) == 2
    m = np.arange(7)
    for a, i in zip(panels, (0, 2)):
        path = a.get_lines()[1]  # after the reference circle
        theta = 10000.0 ** (-2 * i / 8)
        # the default query puts every pair at (1, 0), so position m sits at angle m·θ_i
        np.testing.assert_allclose(path.get_xdata(), np.cos(m * theta), atol=1e-6)
        np.testing.assert_allclose(path.get_ydata(), np.sin(m * theta), atol=1e-6)
        np.testing.assert_allclose(a.collections[0].get_offsets(), np.c_[np.cos(m * theta), np.sin(m * theta)], atol=1e-6)
        assert f"pair {i}" in a.get_title()
    assert_labelled(fig)


def test_rotation_2d_follows_apply_rope_for_any_query():
    torch.manual_seed(0)
    q = torch.randn(8, dtype=torch.float64)
    inv_freq, _ = ropekit.rope_frequencies(8, 50.0)
    fig = viz.plot_rotation_2d(max_position=4, pairs=(1,), dim=8, query=q, inv_freq=inv_freq, layout="paper")
    cos, sin = ropekit.rope_cos_sin(5, inv_freq)
    expected = ropekit.apply_rope(q.expand(5, 8), cos, sin, "paper").numpy()
    path = fig.axes[0].get_lines()[1]
    np.testing.assert_allclose(path.get_xdata(), expected[:, 2])
    np.testing.assert_allclose(path.get_ydata(), expected[:, 3])


def test_rotation_2d_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pairs"):
        viz.plot_rotation_2d(pairs=(8,), dim=16)
    with pytest.raises(ValueError, match="max_position"):
        viz.plot_rotation_2d(max_position=0)
    with pytest.raises(ValueError, match="query"):
        viz.plot_rotation_2d(dim=8, query=torch.ones(6))
    with pytest.raises(ValueError, match="layout"):
        viz.plot_rotation_2d(layout="complex")


# --- plot_frequency_spectrum ------------------------------------------------------------


def test_frequency_spectrum_draws_every_schedule_of_the_library():
    fig = viz.plot_frequency_spectrum(dim=32, base=10000.0, factor=4.0, original_max_position_embeddings=512)
    ax_theta, ax_wave, ax_ratio = fig.axes
    schedules = viz.frequency_schedules(4.0, 512)
    lines = data_lines(ax_theta)
    assert [line.get_label() for line in lines][: len(schedules)] == list(schedules)
    plain = 10000.0 ** (-np.arange(0, 32, 2) / 32)
    for n, (label, kwargs) in enumerate(schedules.items()):
        inv_freq, _ = ropekit.rope_frequencies(32, 10000.0, **kwargs)
        np.testing.assert_array_equal(lines[n].get_ydata(), inv_freq.numpy())
        np.testing.assert_array_equal(ax_wave.get_lines()[n].get_ydata(), ropekit.wavelengths(inv_freq).numpy())
        np.testing.assert_allclose(ax_ratio.get_lines()[n].get_ydata(), inv_freq.double().numpy() / plain, rtol=1e-6)
    # plain RoPE is θ_i = b^(-2i/d); PI divides every θ_i by the factor
    np.testing.assert_allclose(lines[0].get_ydata(), plain, rtol=1e-6)
    np.testing.assert_allclose(ax_ratio.get_lines()[1].get_ydata(), 0.25, rtol=1e-6)
    # the training length is marked, and the first pair whose wavelength exceeds it
    assert any(np.all(np.asarray(line.get_ydata()) == 512) for line in ax_wave.get_lines())
    first = int(np.argmax(2 * np.pi / plain > 512))
    assert any(np.all(np.asarray(line.get_xdata()) == first) for line in ax_wave.get_lines())
    assert all(a.get_yscale() == "log" for a in fig.axes)
    assert_labelled(fig)


def test_frequency_spectrum_accepts_names_or_a_dict():
    fig = viz.plot_frequency_spectrum(dim=16, scalings=[None, "yarn"], factor=2.0, original_max_position_embeddings=256)
    assert [line.get_label() for line in data_lines(fig.axes[0])][:2] == ["RoPE (no scaling)", "YaRN"]
    custom = {"NTK ×16": {"scaling": "ntk", "factor": 16.0}}
    fig = viz.plot_frequency_spectrum(dim=16, base=500000.0, scalings=custom)
    inv_freq, _ = ropekit.rope_frequencies(16, 500000.0, "ntk", factor=16.0)
    np.testing.assert_array_equal(data_lines(fig.axes[0])[0].get_ydata(), inv_freq.numpy())


def test_frequency_spectrum_rejects_bad_schedules():
    with pytest.raises(ValueError, match="scalings may name"):
        viz.plot_frequency_spectrum(dim=16, scalings=["cubic"])
    with pytest.raises(TypeError, match="scalings"):
        viz.plot_frequency_spectrum(dim=16, scalings="yarn")
    with pytest.raises(TypeError, match=r"scalings\['PI'\]"):
        viz.plot_frequency_spectrum(dim=16, scalings={"PI": 4.0})
    with pytest.raises(TypeError, match="factor"):  # rope_frequencies names what is missing
        viz.plot_frequency_spectrum(dim=16, scalings={"PI": {"scaling": "linear"}})
    with pytest.raises(ValueError, match="axes must be 3"):
        viz.plot_frequency_spectrum(dim=16, axes=plt.subplots(1, 2)[1])


# --- the module's promises ---------------------------------------------------------------


def test_importing_viz_imports_no_triton_and_ropekit_needs_no_matplotlib():
    code = (
        "import sys, ropekit; assert 'matplotlib' not in sys.modules, 'ropekit imported matplotlib'; "
        "import ropekit.viz; assert 'triton' not in sys.modules, 'viz imported triton'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
