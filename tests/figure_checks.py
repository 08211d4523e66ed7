"""What every picture test checks, shared by the tests of the ropekit.viz modules.

Import the fixture by name (``from figure_checks import close_figures``): pytest then uses it
in that module.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    """Close every figure a test opened."""
    yield
    plt.close("all")


def assert_labelled(fig):
    """Every panel that draws data has a title and both axis labels."""
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert panels
    for a in panels:
        assert a.get_title(), "panel without a title"
        assert a.get_xlabel() and a.get_ylabel(), f"panel {a.get_title()!r} lacks an axis label"
