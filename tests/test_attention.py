"""Tests for ropekit.attention: relative positions, RoPE/ReRoPE attention, decoding.

Every attention result is compared with an independent float64 construction: explicit
rotation matrices (ropekit.rotation_matrix) and per-element loops.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropekit.attention import relative_position_matrix

# --- relative_position_matrix ----------------------------------------------------------


def _relative_positions_loop(length, scheme, window=None, factor=None):
    """The definition, one entry at a time."""
    P = torch.full((length, length), float("nan"), dtype=torch.float64)
    for i in range(length):
        for j in range(i + 1):
            d = i - j
            if scheme == "rope":
                P[i, j] = d
            elif scheme == "pi":
                P[i, j] = d / factor
            elif scheme == "rerope":
                P[i, j] = min(d, window)
            else:
                P[i, j] = d if d < window else window + (d - window) / factor
    return P


@pytest.mark.parametrize(
    "scheme, window, factor",
    [("rope", None, None), ("pi", None, 4.0), ("rerope", 3, None), ("leaky_rerope", 3, 2.5), ("rerope", 20, None)],
)
def test_relative_position_matrix_matches_the_loop(scheme, window, factor):
    P = relative_position_matrix(9, scheme, window=window, factor=factor)
    expected = _relative_positions_loop(9, scheme, window, factor)
    assert P.dtype == torch.float64 and P.shape == (9, 9)
    torch.testing.assert_close(P, expected, equal_nan=True, rtol=0, atol=0)


@given(
    length=st.integers(1, 24),
    window=st.integers(1, 30),
    factor=st.floats(1.01, 64.0),
    scheme=st.sampled_from(["rope", "pi", "rerope", "leaky_rerope"]),
)
@settings(max_examples=40, deadline=None)
def test_relative_position_matrix_is_toeplitz_with_nan_above_the_diagonal(length, window, factor, scheme):
    P = relative_position_matrix(
        length,
        scheme,
        window=window if scheme in ("rerope", "leaky_rerope") else None,
        factor=factor if scheme in ("pi", "leaky_rerope") else None,
    )
    upper = torch.ones(length, length, dtype=torch.bool).triu(1)
    assert P[upper].isnan().all() and not P[~upper].isnan().any()
    # Toeplitz: every diagonal holds one value, the value of its first row
    for d in range(length):
        diag = P.diagonal(-d)
        assert (diag == diag[0]).all()
    # the position never decreases with distance, and rope is the largest of all
    first_column = P[:, 0]
    assert (first_column[1:] >= first_column[:-1]).all()
    assert (first_column <= torch.arange(length, dtype=torch.float64)).all()


def test_rerope_positions_stop_at_the_window_and_leaky_ones_keep_growing_slowly():
    rerope = relative_position_matrix(12, "rerope", window=4)[:, 0]
    leaky = relative_position_matrix(12, "leaky_rerope", window=4, factor=4.0)[:, 0]
    assert rerope.tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4]
    assert leaky.tolist() == [0, 1, 2, 3, 4, 4.25, 4.5, 4.75, 5, 5.25, 5.5, 5.75]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(length=0), "length"),
        (dict(length=4, scheme="alibi"), "scheme"),
        (dict(length=4, scheme="rerope"), "window"),
        (dict(length=4, scheme="rerope", window=0), "window"),
        (dict(length=4, scheme="rerope", window=2.5), "window"),
        (dict(length=4, scheme="leaky_rerope", window=2), "factor"),
        (dict(length=4, scheme="leaky_rerope", window=2, factor=1.0), "factor"),
        (dict(length=4, scheme="pi"), "factor"),
        (dict(length=4, scheme="pi", factor=-2.0), "factor"),
        (dict(length=4, scheme="rope", window=2), "window"),
        (dict(length=4, scheme="rerope", window=2, factor=2.0), "factor"),
    ],
)
def test_relative_position_matrix_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        relative_position_matrix(**kwargs)
