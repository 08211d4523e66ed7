"""ropekit.viz.precision draws exactly what ropekit.precision computes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ropekit import rope_frequencies  # noqa: E402
from ropekit.precision import cos_sin_error, storage_error  # noqa: E402
from ropekit.viz import plot_cos_sin_error, plot_logit_drift, plot_rotation_error  # noqa: E402


def test_cos_sin_error_lines_are_the_library_errors_with_gaps_for_overflow():
    positions = torch.tensor([1, 100, 10_000, 100_000])
    fig = plot_cos_sin_error(16, recipes=("float32", "float16 angle"), positions=positions, window=4)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    inv, _ = rope_frequencies(16, dtype=torch.float64)
    expected = cos_sin_error(positions[:, None] + torch.arange(4), inv, "float32").amax(-1)
    np.testing.assert_allclose(lines["float32"].get_ydata(), expected.numpy())
    assert np.isnan(lines["float16 angle"].get_ydata()[-1])  # 10^5 > 65504
    plt.close(fig)


def test_rotation_error_levels_are_the_storage_errors():
    fig = plot_rotation_error(16, positions=torch.tensor([1, 1000]), seed=3)
    x = torch.randn(16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    levels = {line.get_label(): line.get_ydata()[0] for line in fig.axes[0].get_lines()}
    assert levels["storing q in bfloat16"] == pytest.approx(storage_error(x, torch.bfloat16).mean().item())
    assert levels["angles: exact"] < 1e-6 < levels["storing q in float16"]
    plt.close(fig)


def test_logit_drift_of_exact_angles_stays_flat():
    fig = plot_logit_drift(32, recipes=("float32", "exact"), offsets=torch.tensor([1, 10**7]), window=2)
    drift = {line.get_label(): line.get_ydata() for line in fig.axes[0].get_lines()}
    assert drift["exact"].max() < 1e-5 and drift["float32"][-1] > 1e-3
    plt.close(fig)
