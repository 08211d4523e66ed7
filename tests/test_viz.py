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
from figure_checks import close_figures, assert_labelled  # noqa: E402,F401


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
    schedules = ropekit.frequencies.frequency_schedules(4.0, 512)
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


# --- plot_relative_positions --------------------------------------------------------------


def shown_matrix(ax):
    """The two window images (inside, beyond) of a relative-position panel, merged back."""
    inside, beyond = (np.ma.filled(im.get_array().astype(float), np.nan) for im in ax.images[:2])
    return np.where(np.isnan(inside), beyond, inside)


def test_relative_positions_panels_are_the_library_matrices():
    from ropekit.attention import relative_position_matrix

    fig = viz.plot_relative_positions(length=7, window=3, factor=2.0)
    panels = [a for a in fig.axes if a.images]
    assert len(panels) == 4
    i, j = np.indices((7, 7))
    expected_formulas = {  # the blog post's definitions, written out
        "rope": i - j,
        "pi": (i - j) / 2.0,
        "rerope": np.minimum(i - j, 3),
        "leaky_rerope": np.where(i - j < 3, i - j, 3 + (i - j - 3) / 2.0),
    }
    for a, scheme in zip(panels, ("rope", "pi", "rerope", "leaky_rerope")):
        options = {"window": 3} if "rerope" in scheme else {}
        if scheme in ("pi", "leaky_rerope"):
            options["factor"] = 2.0
        library = relative_position_matrix(7, scheme, **options).numpy()
        np.testing.assert_array_equal(shown_matrix(a), library)
        np.testing.assert_array_equal(shown_matrix(a)[j <= i], expected_formulas[scheme][j <= i])
        # colour split: the first image holds exactly the cells inside the window
        inside = ~np.ma.getmaskarray(a.images[0].get_array())
        np.testing.assert_array_equal(inside, (i - j < 3) & (j <= i))
        # every visible cell carries its number
        assert len(a.texts) == 28
    assert "ReRoPE, w = 3" in panels[2].get_title()
    assert_labelled(fig)


def test_relative_positions_rejects_bad_arguments():
    with pytest.raises(ValueError, match="schemes"):
        viz.plot_relative_positions(schemes=["alibi"])
    with pytest.raises(ValueError, match="window"):
        viz.plot_relative_positions(schemes=["rerope"], window=None)
    with pytest.raises(ValueError, match="length"):
        viz.plot_relative_positions(length=0)
    fig = viz.plot_relative_positions(length=20, schemes="rope", window=None)
    assert not fig.axes[0].texts  # no numbers on large matrices by default


# --- long-term decay ---------------------------------------------------------------------


def test_long_term_decay_draws_the_bound_and_the_logit():
    fig = viz.plot_long_term_decay(dim=32, base=10000.0, max_distance=50, seed=3)
    ax_bound, ax_logit = fig.axes
    inv_freq, _ = ropekit.rope_frequencies(32)
    r = np.arange(51)
    bound = ax_bound.get_lines()[0]
    np.testing.assert_array_equal(bound.get_xdata(), r)
    np.testing.assert_array_equal(bound.get_ydata(), ropekit.reference.rope_decay_bound(torch.arange(51), inv_freq).numpy())
    # the logit ⟨R_m q, R_n q⟩ = Σ_i |pair_i|² cos(r θ_i) for the seeded q, written out in float64
    q = torch.randn(32, generator=torch.Generator().manual_seed(3), dtype=torch.float64).numpy()
    theta = 10000.0 ** (-np.arange(0, 32, 2) / 32)
    pair_norms = q[:16] ** 2 + q[16:] ** 2
    expected = np.cos(np.outer(r, theta)) @ pair_norms
    sample, mean = ax_logit.get_lines()[:2]
    np.testing.assert_allclose(sample.get_ydata(), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mean.get_ydata(), 2 * np.cos(np.outer(r, theta)).sum(1), rtol=1e-5, atol=1e-4)
    assert mean.get_ydata()[0] == pytest.approx(32)
    assert_labelled(fig)


def test_long_term_decay_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_distance"):
        viz.plot_long_term_decay(max_distance=0)
    with pytest.raises(ValueError, match="inv_freq"):
        viz.plot_long_term_decay(dim=16, inv_freq=torch.ones(4))


# --- attention logits --------------------------------------------------------------------


def test_plot_attention_logits_rejects_bad_arguments():
    q = torch.randn(6, 8)
    with pytest.raises(ValueError, match="q must be"):
        viz.plot_attention_logits(torch.randn(6), q)
    with pytest.raises(ValueError, match="window"):
        viz.plot_attention_logits(q, q, "rerope")
    with pytest.raises(ValueError, match="head"):
        viz.plot_attention_logits(torch.randn(1, 6, 2, 8), torch.randn(1, 6, 2, 8), head=2)
    with pytest.raises(ValueError, match="schemes"):
        viz.plot_attention_logits(q, q, "nope")


def test_attention_logits_figure_shows_the_logits_and_the_curves():
    torch.manual_seed(0)
    q = torch.randn(2, 10, 4, 8)  # (batch, seq, heads, head_dim), the library's one order
    k = torch.randn(2, 10, 2, 8)
    fig = viz.plot_attention_logits(q, k, ["rope", "rerope"], window=4, batch=1, head=3)
    heat_rope, heat_rerope, curves = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    inv_freq, _ = ropekit.rope_frequencies(8)
    for a, scheme, options in ((heat_rope, "rope", {}), (heat_rerope, "rerope", {"window": 4})):
        expected = ropekit.attention.attention_logits(q[1, :, 3], k[1, :, 1], scheme, inv_freq, **options).numpy()  # GQA: head 3 reads kv head 1
        np.testing.assert_array_equal(np.ma.filled(a.images[0].get_array(), np.nan), expected)
        norm = a.images[0].norm
        assert norm.vmin == -norm.vmax
    rope_curve, rerope_curve = data_lines(curves)[:2]
    expected = ropekit.attention.attention_logits(q[1, :, 3], k[1, :, 1], "rerope", inv_freq, window=4).numpy()
    np.testing.assert_allclose(rerope_curve.get_ydata()[5], np.nanmean(np.diagonal(expected, -5)))
    assert [rope_curve.get_label(), rerope_curve.get_label()] == ["RoPE", "ReRoPE"]
    assert_labelled(fig)


# --- plot_benchmark ------------------------------------------------------------------------

HEADER = "suite,provider,layout,pass,batch,seq,q_heads,kv_heads,head_dim,dtype,window,time_us,gbps,baseline,speed_vs_baseline,peak_mem_mb,status"


def bench_csv(tmp_path):
    """A small results.csv as ropekit.bench writes it: two providers, two seqs, two passes, one skipped row."""
    lines = [HEADER]
    for seq, copy_gbps, eager_gbps in ((1024, 2000.0, 500.0), (4096, 3000.0, 900.0)):
        for pass_ in ("fwd", "bwd"):
            lines.append(f"rope,copy,,{pass_},1,{seq},32,8,128,bf16,,10.0,{copy_gbps},copy,1.0,,ok")
            lines.append(f"rope,torch_eager,half,{pass_},1,{seq},32,8,128,bf16,,40.0,{eager_gbps},copy,{eager_gbps / copy_gbps},,ok")
    lines.append("rope,liger,half,fwd,1,1024,32,8,128,bf16,,,,copy,,,skipped: liger_kernel not importable")
    for seq, t_ref, t_sdpa, mem_ref in ((1024, 900.0, 100.0, 64.0), (2048, 3500.0, 300.0, 256.0)):
        lines.append(f"rerope,sdpa_rope,,fwd,1,{seq},32,32,128,bf16,512,{t_sdpa},1.0,sdpa_rope,1.0,8.0,ok")
        lines.append(f"rerope,reference,half,fwd,1,{seq},32,32,128,bf16,512,{t_ref},1.0,sdpa_rope,{t_sdpa / t_ref},{mem_ref},ok")
    path = tmp_path / "results.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_benchmark_rope_suite_draws_the_csv_values(tmp_path):
    path = bench_csv(tmp_path)
    fig = viz.plot_benchmark(path, suite="rope")
    panels = [a for a in fig.axes]
    assert len(panels) == 4  # two passes in the file: GB/s row, fraction-of-copy row
    fwd_gbps, bwd_gbps, fwd_fraction, bwd_fraction = panels
    lines = {line.get_label(): line for line in fwd_gbps.get_lines()}
    assert set(lines) == {"copy", "torch_eager half"}  # the skipped liger row is left out
    np.testing.assert_array_equal(lines["copy"].get_xdata(), [1024, 4096])
    np.testing.assert_array_equal(lines["torch_eager half"].get_ydata(), [500.0, 900.0])
    eager = [line for line in bwd_fraction.get_lines() if line.get_label() == "torch_eager half"][0]
    np.testing.assert_allclose(eager.get_ydata(), [0.25, 0.3])
    assert fwd_gbps.get_xscale() == "log" and "fwd" in fwd_gbps.get_title() and "bwd" in bwd_gbps.get_title()
    assert_labelled(fig)


def test_benchmark_accepts_row_dicts_and_splits_by_batch(tmp_path):
    import csv

    rows = list(csv.DictReader(open(bench_csv(tmp_path))))
    extra = dict(rows[1], batch="4", gbps="777.0")  # torch_eager fwd at batch 4
    fig = viz.plot_benchmark(rows + [extra], suite="rope")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "torch_eager half, batch 4" in labels and "torch_eager half, batch 1" in labels
    batch4 = fig.axes[0].get_lines()[labels.index("torch_eager half, batch 4")]
    np.testing.assert_array_equal(batch4.get_ydata(), [777.0])
    only4 = viz.plot_benchmark(rows + [extra], suite="rope", batch=4)
    assert [(line.get_label(), list(line.get_ydata())) for line in only4.axes[0].get_lines()] == [
        ("torch_eager half", [777.0])
    ]
    colours = [line.get_color() for line in fig.axes[0].get_lines()]
    assert len(set(map(str, colours))) >= 2
    with pytest.raises(ValueError, match="batch=3"):
        viz.plot_benchmark(rows, suite="rope", batch=3)


def test_benchmark_rerope_suite_draws_time_and_memory(tmp_path):
    fig = viz.plot_benchmark(str(bench_csv(tmp_path)), suite="rerope")
    ax_time, ax_mem = fig.axes
    by_label = {line.get_label(): line for line in ax_time.get_lines()}
    np.testing.assert_array_equal(by_label["reference half"].get_ydata(), [900.0, 3500.0])
    mem = {line.get_label(): line for line in ax_mem.get_lines()}
    np.testing.assert_array_equal(mem["reference half"].get_ydata(), [64.0, 256.0])
    np.testing.assert_array_equal(mem["sdpa_rope"].get_xdata(), [1024, 2048])
    assert ax_time.get_yscale() == "log"
    assert_labelled(fig)


def test_benchmark_rejects_bad_data(tmp_path):
    with pytest.raises(ValueError, match="suite"):
        viz.plot_benchmark(bench_csv(tmp_path), suite="attention")
    with pytest.raises(ValueError, match="lacks the column"):
        viz.plot_benchmark([{"suite": "rope", "provider": "copy"}])
    with pytest.raises(TypeError, match="data must be"):
        viz.plot_benchmark(42)
    only_skipped = tmp_path / "skipped.csv"
    only_skipped.write_text(HEADER + "\nrope,liger,half,fwd,1,1024,32,8,128,bf16,,,,copy,,,skipped: no GPU\n")
    with pytest.raises(ValueError, match="no rows"):
        viz.plot_benchmark(only_skipped)


# --- plot_bench_summary ----------------------------------------------------------------------

CLOCKS = HEADER + ",gpu_us,host_us,host_nograd_us,gpu_clock"


def clocked_csv(tmp_path, seqs=(1024, 8192)):
    """A CUDA run's results.csv: copy, ropekit (half), liger (skipped) at each seq, fwd and bwd,
    with GPU and host clocks; ropekit's bwd at the largest seq was timed by CUDA events."""
    lines = [CLOCKS]
    for n, seq in enumerate(seqs):
        for pass_ in ("fwd", "bwd"):
            copy_gpu, rk_gpu = 10.0 * (n + 1), 12.5 * (n + 1) + (5.0 if pass_ == "bwd" else 0.0)
            copy_host, rk_host = 8.0 + n, 30.0 + 10 * n + (20.0 if pass_ == "bwd" else 0.0)
            clock = "events: not capturable (RuntimeError: sync)" if (pass_, n) == ("bwd", len(seqs) - 1) else "graph of 8 calls"
            lines.append(f"rope,copy,,{pass_},1,{seq},32,8,128,bf16,,20.0,1.0,copy,1.0,,ok,{copy_gpu},{copy_host},,graph of 8 calls")
            lines.append(f"rope,ropekit,half,{pass_},1,{seq},32,8,128,bf16,,30.0,1.0,copy,0.5,,ok,{rk_gpu},{rk_host},,{clock}")
            lines.append(f"rope,liger,half,{pass_},1,{seq},32,8,128,bf16,,,,copy,,,skipped: not installed,,,,")
    lines.append("rerope,sdpa_rope,,fwd,1,4096,32,32,128,bf16,512,260.0,1.0,sdpa_rope,1.0,32.0,ok,250.0,20.0,,graph of 1 calls")
    path = tmp_path / "clocked.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bench_summary_draws_fractions_of_copy_speed_beside_host_time(tmp_path):
    fig = viz.plot_bench_summary(clocked_csv(tmp_path))
    left, right = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    # columns: fwd at 1024, 8192, then bwd; rows: copy, ropekit half (liger skipped: left out)
    assert [t.get_text() for t in left.get_yticklabels()] == ["copy", "ropekit half"]
    assert [t.get_text() for t in left.get_xticklabels()] == [
        "fwd\nB1 S1024\n10 MB", "fwd\nB1 S8192\n84 MB", "bwd\nB1 S1024\n10 MB", "bwd\nB1 S8192\n84 MB"]
    # copy's gpu_us / ropekit's gpu_us, from the numbers written into clocked_csv
    np.testing.assert_allclose(left.images[0].get_array().filled(np.nan), [
        [1.0, 1.0, 1.0, 1.0], [10 / 12.5, 20 / 25.0, 10 / 17.5, 20 / 30.0]])
    np.testing.assert_allclose(right.images[0].get_array().filled(np.nan), [
        [8.0, 9.0, 8.0, 9.0], [30.0, 40.0, 50.0, 60.0]])
    texts = [t.get_text() for t in left.texts]
    assert "0.67*" in texts and texts.count("1.00") == 4  # the events-timed cell is marked
    assert "GPU time, CUDA graph" in left.get_title() and "not capturable" in left.get_title()
    assert "host time per call" in right.get_title()
    assert {t.get_text() for t in right.texts} >= {"8.0", "9.0", "30", "60"}
    assert any("32 q heads, 8 kv heads" in t.get_text() for t in fig.findobj(matplotlib.text.Text))
    assert_labelled(fig)


def test_bench_summary_picks_passes_shapes_and_the_time_column(tmp_path):
    path = clocked_csv(tmp_path, seqs=(1024, 2048, 4096, 8192, 16384))
    fig = viz.plot_bench_summary(path, passes=["bwd"])
    labels = [t.get_text().split("\n")[1] for t in fig.axes[0].get_xticklabels()]
    assert labels == ["B1 S1024", "B1 S8192", "B1 S16384"]  # the smallest and the two largest
    fig = viz.plot_bench_summary(path, shapes=[(1, 2048)], time="time_us")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array().filled(np.nan), [[1.0, 1.0], [20 / 30, 20 / 30]])
    assert "time_us" in fig.axes[0].get_title()
    # a file from before the clocks: the host panel says there is nothing to draw
    old = viz.plot_bench_summary(bench_csv(tmp_path), time="time_us")
    assert not old.axes[1].images and "no host_us" in old.axes[1].texts[0].get_text()
    assert_labelled(old)


def test_bench_summary_rejects_bad_arguments(tmp_path):
    path = clocked_csv(tmp_path)
    with pytest.raises(ValueError, match="time"):
        viz.plot_bench_summary(path, time="wall")
    with pytest.raises(ValueError, match="passes"):
        viz.plot_bench_summary(path, passes=["forward"])
    with pytest.raises(ValueError, match="shapes"):
        viz.plot_bench_summary(path, shapes=[(3, 5)])
    with pytest.raises(ValueError, match="axes"):
        viz.plot_bench_summary(path, axes=plt.subplots(1, 3)[1])
    rerope_only = tmp_path / "rerope.csv"
    rerope_only.write_text(CLOCKS + "\n" + path.read_text().splitlines()[-1] + "\n")
    with pytest.raises(ValueError, match="RoPE suite"):
        viz.plot_bench_summary(rerope_only)
    with pytest.raises(ValueError, match="gpu_us"):
        viz.plot_bench_summary(bench_csv(tmp_path))  # no GPU clocks and no host times to draw


# --- interactive versions and the style ----------------------------------------------------


def test_interactive_versions_fall_back_to_the_static_figure_outside_jupyter():
    from matplotlib.figure import Figure

    fig = viz.interactive_frequency_spectrum(dim=16, base=500.0, factor=4.0, original_max_position_embeddings=128)
    assert isinstance(fig, Figure)
    inv_freq, _ = ropekit.rope_frequencies(16, 500.0, "linear", factor=4.0)
    np.testing.assert_array_equal(data_lines(fig.axes[0])[1].get_ydata(), inv_freq.numpy())
    fig = viz.interactive_relative_positions(length=5, window=2, factor=3.0, static=True)
    assert "w = 2" in fig.axes[2].get_title()
    fig = viz.interactive_rotation_2d(max_position=3, dim=8)
    assert len(fig.axes[0].get_lines()[1].get_xdata()) == 4


@pytest.fixture
def in_a_kernel(monkeypatch):
    """IPython believes it runs in a Jupyter kernel; what the helpers display is collected."""
    ipywidgets = pytest.importorskip("ipywidgets")
    import IPython
    import IPython.display

    class Shell:
        kernel = object()

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    return ipywidgets, shown


def png_of(fig):
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def test_sliders_show_the_static_picture_as_an_image_and_redraw_it(in_a_kernel):
    ipywidgets, shown = in_a_kernel
    sliders = viz.interactive_rotation_2d(max_position=5, dim=8)
    assert isinstance(sliders, viz.interactive.Sliders) and set(sliders.sliders) == {"max_position", "base"}
    assert sliders.image.value == png_of(viz.plot_rotation_2d(5, None, 8, 10000.0))
    assert not plt.get_fignums()  # each drawn figure is closed: nothing is shown twice
    sliders.sliders["max_position"].value = 9  # what letting go of the slider does
    assert sliders.image.value == png_of(viz.plot_rotation_2d(9, None, 8, 10000.0))
    assert all(not s.continuous_update for s in sliders.sliders.values())
    # what was displayed: the box, whose text (shown before the cell is run) is one friendly line
    (bundle,) = shown
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == sliders.box.model_id
    assert bundle["text/plain"] == "sliders for viz.plot_rotation_2d (max_position, base): run the cell to use them"
    assert "interactive(" not in repr(sliders) and repr(sliders).startswith("<sliders for viz.plot_rotation_2d(")
    # no Output widget anywhere: nbclient's stand-in for one is what hangs headless runs
    assert not any(isinstance(w, ipywidgets.Output) for w in sliders.box.children)


def test_every_slider_helper_builds_sliders_in_a_kernel(in_a_kernel):
    _, shown = in_a_kernel
    spectrum = viz.interactive_frequency_spectrum(dim=16, base=500.0, factor=4.0, original_max_position_embeddings=128)
    expected = viz.plot_frequency_spectrum(16, 500.0, factor=4.0, original_max_position_embeddings=128)
    assert spectrum.image.value == png_of(expected)
    relative = viz.interactive_relative_positions(length=5, window=2, factor=3.0)
    assert relative.image.value == png_of(viz.plot_relative_positions(5, window=2, factor=3.0))
    assert [b["text/plain"].split(" (")[0] for b in shown] == [
        "sliders for viz.plot_frequency_spectrum", "sliders for viz.plot_relative_positions"]


def test_every_public_name_of_the_former_module_still_works():
    """viz was one module; it is a package by picture family, and each name keeps its old path."""
    import importlib

    family = {
        "plot_rotation_matrix": "rotation",
        "plot_rotation_2d": "rotation",
        "plot_frequency_spectrum": "spectrum",
        "plot_relative_positions": "attention",
        "plot_long_term_decay": "attention",
        "plot_attention_logits": "attention",
        "plot_benchmark": "benchmark",
        "plot_xpos_decay": "xpos",
        "plot_rerope_post_tables": "reported",
        "plot_cos_sin_error": "precision",
        "plot_rotation_error": "precision",
        "plot_logit_drift": "precision",
        "interactive_frequency_spectrum": "interactive",
        "interactive_relative_positions": "interactive",
        "interactive_rotation_2d": "interactive",
        # added with the package: lesson 08's pictures
        "plot_grid_scores": "multiaxis",
        "plot_mrope_position_ids": "multiaxis",
        "plot_mrope_pair_axes": "multiaxis",
        "plot_pair_scores": "multiaxis",
        "plot_irope_temperature": "multiaxis",
        "plot_cache_bytes": "multiaxis",
        # lesson 06's pictures of a trained model
        "plot_loss_curves": "model",
        "plot_window_ablation": "model",
        "plot_passkey_heatmap": "model",
        "plot_attention_entropy": "model",
        "plot_measured_decay": "model",
        # lesson 07's pictures of decoding
        "plot_cache_layout": "decode",
        "plot_scored_distances": "decode",
        # issue 14: a benchmark run in one picture
        "plot_bench_summary": "benchmark",
    }
    assert set(viz.__all__) == set(family) | {"frequency_schedules"}
    for name, module in family.items():
        assert getattr(viz, name) is getattr(importlib.import_module(f"ropekit.viz.{module}"), name)
    assert viz.frequency_schedules is ropekit.frequencies.frequency_schedules
    assert viz.SCHEME_NAMES["rerope"] == "ReRoPE" and "w" in viz.SCHEME_FORMULAS["rerope"]
    old_style = importlib.import_module("ropekit.viz_style")
    assert old_style.PALETTE is viz.style.PALETTE and old_style.styled is viz.style.styled


def test_viz_lines_fit_on_a_page():
    from pathlib import Path

    for path in sorted(Path(viz.__file__).parent.glob("*.py")):
        long = [n for n, line in enumerate(path.read_text().splitlines(), 1) if len(line) > 110]
        assert not long, f"{path.name}: lines {long} are longer than 110 characters"


def test_style_is_undone_after_each_figure_and_leaves_other_settings_alone():
    plt.rcParams["interactive"] = True  # what the Jupyter inline backend sets when first resolved
    before = dict(plt.rcParams)
    viz.plot_rotation_matrix(1, 4)
    assert dict(plt.rcParams) == before
    plt.rcParams["interactive"] = False


def test_benchmark_gives_every_provider_its_own_colour_even_past_the_palette(tmp_path):
    rows = [dict(zip(HEADER.split(","), f"rope,copy,,fwd,1,{s},32,8,128,bf16,,10.0,2000.0,copy,1.0,,ok".split(",")))
            for s in (1024, 2048)]
    names = [f"provider{i}" for i in range(10)]  # more than the kit's palette holds
    for name in names:
        rows += [dict(rows[0], provider=name, layout="half", seq=str(s)) for s in (1024, 2048)]
    fig = viz.plot_benchmark(rows, suite="rope")
    colours = {line.get_label(): tuple(np.round(matplotlib.colors.to_rgba(line.get_color()), 4))
               for line in fig.axes[0].get_lines()}
    assert len({colours[f"{n} half"] for n in names}) == len(names)
    assert colours["copy"] == (0.0, 0.0, 0.0, 1.0)


def test_xpos_decay_draws_both_bounds_and_the_factors():
    import math

    from ropekit.viz.xpos import xpos_decay_bound, xpos_zeta

    zeta = xpos_zeta(8)
    torch.testing.assert_close(zeta, torch.tensor([0.4, 0.65, 0.9, 1.15], dtype=torch.float64) / 1.4)
    inv_freq, _ = ropekit.rope_frequencies(8)
    delta = torch.tensor([0.0, 3.0])
    by_hand = []
    for d in delta.tolist():  # (1/4) Σ_j |Σ_{l<j} ζ_l^{d/B} e^{i d θ_l}|, written out
        partial, total = 0j, 0.0
        for l in range(4):
            w = zeta[l].item() ** (d / 16.0)
            partial += w * complex(math.cos(d * inv_freq[l].item()), math.sin(d * inv_freq[l].item()))
            total += abs(partial)
        by_hand.append(total / 4)
    torch.testing.assert_close(xpos_decay_bound(delta, inv_freq, 16.0), torch.tensor(by_hand, dtype=torch.float64))
    fig = viz.plot_xpos_decay(dim=8, scale_base=16.0, max_distance=40)
    ax_bound, ax_zeta = fig.axes
    y = ax_bound.lines[1].get_ydata()
    np.testing.assert_allclose(y, xpos_decay_bound(torch.arange(41), inv_freq, 16.0).numpy())
    np.testing.assert_allclose(ax_zeta.lines[0].get_ydata(), (zeta[0] ** (torch.arange(41) / 16.0)).numpy())
    plt.close(fig)


def test_rerope_post_tables_draw_the_quoted_numbers():
    from pathlib import Path

    from ropekit.viz.reported import read_reported_table

    path = Path(__file__).resolve().parents[1] / "docs" / "data" / "rerope_post_tables.csv"
    rows = read_reported_table(path)
    w512 = [r for r in rows if r["table"] == "window" and r["window"] == 512 and r["log_n"] == "none"]
    assert [(r["acc_4096_repeated"], r["acc_4096_nonrepeated"]) for r in w512] == [(7.09, 8.25)]
    fig = viz.plot_rerope_post_tables(path)
    ax_w, ax_k = fig.axes
    np.testing.assert_allclose(ax_w.lines[0].get_xdata(), [64, 128, 256, 384, 512])
    np.testing.assert_allclose(ax_w.lines[0].get_ydata(), [69.39, 76.11, 77.90, 70.72, 7.09])
    np.testing.assert_allclose(ax_k.lines[0].get_ydata(), [80.00, 85.15, 85.31, 85.29])  # w128, k = 8 .. 64
    plt.close(fig)
    with pytest.raises(TypeError, match="path must be a CSV path"):
        read_reported_table(rows)
def test_slider_cells_run_headless_without_an_output_widget(tmp_path):
    """nbconvert/papermill execute a notebook with every slider helper to the end, with no
    cell timeout; no Output widget is created (nbclient's stand-in for one sends state back
    on the shell channel while waiting for the reply there: the headless hang of issue 11)."""
    import os

    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    root = os.path.dirname(os.path.dirname(os.path.abspath(ropekit.__file__)))
    cells = ["%matplotlib inline\nfrom ropekit import viz",
             "sliders = viz.interactive_rotation_2d(max_position=12, dim=16)",
             "spectrum = viz.interactive_frequency_spectrum(dim=32, original_max_position_embeddings=512)",
             "relative = viz.interactive_relative_positions(length=6, window=2)",
             "print('done')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "sliders.ipynb"
    nbformat.write(nb, path)
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                          "--inplace", str(path)], env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    done = nbformat.read(path, as_version=4)
    assert done.cells[-1].outputs[0]["text"] == "done\n"
    texts = [o["data"]["text/plain"] for c in done.cells[1:4] for o in c.outputs]
    assert [t.split(" (")[0] for t in texts] == [
        "sliders for viz.plot_rotation_2d", "sliders for viz.plot_frequency_spectrum",
        "sliders for viz.plot_relative_positions"]
    models = {s["model_name"] for s in done.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
              ["state"].values()}
    assert "ImageModel" in models and "OutputModel" not in models
