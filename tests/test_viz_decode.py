"""Tests for ropekit.viz.decode: each picture draws exactly the numbers it is given."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ropekit import viz  # noqa: E402
from ropekit.position_rules import PositionRule, scored_distances  # noqa: E402


def test_cache_layout_shows_positions_of_valid_slots_and_blanks_padding():
    positions = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    valid = torch.tensor([[True, True, False, True], [True, True, True, True]])
    fig = viz.plot_cache_layout(positions, valid)
    shown = fig.axes[0].images[0].get_array()
    assert np.ma.is_masked(shown[0, 2]) or math.isnan(float(shown[0, 2]))
    assert float(shown[1, 3]) == 3 and float(shown[0, 3]) == 3
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(["0", "1", "3", "0", "1", "2", "3"])


def test_scored_distances_are_drawn_as_given_with_the_training_length():
    rule = PositionRule("rerope", 8)
    distances = {"ReRoPE w8": scored_distances(rule, 40)}
    fig = viz.plot_scored_distances(distances, train_length=16)
    line = fig.axes[0].get_lines()[0]
    assert np.allclose(line.get_ydata(), distances["ReRoPE w8"].numpy())
    assert max(line.get_ydata()) == 8  # clipped at the window
    assert fig.axes[0].get_lines()[1].get_ydata()[0] == 16


def test_scored_distances_follow_each_rule():
    assert scored_distances(PositionRule(), 5).tolist() == [5, 4, 3, 2, 1, 0]
    sinks = scored_distances(PositionRule("sinks", 2, sinks=1), 5)  # sink at slot 0, query at slot 2
    assert sinks[0] == 2 and math.isnan(sinks[2]) and sinks[4:].tolist() == [1, 0]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="positions and valid"):
        viz.plot_cache_layout(torch.zeros(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="distances must be"):
        viz.plot_scored_distances({})
