"""Tests for ropekit.bench: the harness's arithmetic, its CSV, and its provider adapters.

No timing thresholds: the harness runs on tiny CPU shapes, and only what it computes from
the timings (GB/s, speed vs the baseline) and the schema are checked.
"""

import csv
import math
import importlib
import json

import pytest
import torch

import ropekit
from ropekit import bench
from ropekit.reference import apply_rope_matrix

SCHEMA = ("suite,provider,layout,pass,batch,seq,q_heads,kv_heads,head_dim,dtype,window,"
          "time_us,gbps,baseline,speed_vs_baseline,peak_mem_mb,status").split(",")
NUMERIC = ("time_us", "gbps", "speed_vs_baseline", "peak_mem_mb")
ITEMSIZE = {"bf16": 2, "fp16": 2, "fp32": 4}


def test_effective_bytes_match_a_hand_count():
    # q: 2·8·4·16 = 1024 elements, k: 2·8·2·16 = 512; bf16 is 2 bytes each.
    # Forward reads both and writes both: 2 · (1024 + 512) · 2 = 6144 bytes.
    assert bench.rope_bytes(2, 8, 4, 2, 16, torch.bfloat16, "fwd") == 6144
    assert bench.rope_bytes(2, 8, 4, 2, 16, torch.bfloat16, "bwd") == 6144
    assert bench.rope_bytes(2, 8, 4, 2, 16, torch.bfloat16, "fwd+bwd") == 12288
    assert bench.rope_bytes(2, 8, 4, 2, 16, torch.float32, "fwd") == 12288
    # attention: read q, k, v and write the output, each 1·2·8·16 = 256 fp16 elements.
    assert bench.attention_bytes(1, 2, 8, 16, torch.float16) == 4 * 256 * 2
    with pytest.raises(ValueError, match="pass_"):
        bench.rope_bytes(1, 1, 1, 1, 2, torch.float32, "forward")


def test_cli_parses_quick_and_the_default_shape_family():
    args = bench.parse_args(["--quick"])
    assert args.quick and args.suite is None
    gpu = bench.resolve(args, "cuda")
    assert gpu["suites"] == bench.SUITES and gpu["passes"] == list(bench.PASSES)
    assert gpu["dtype"] == torch.bfloat16 and not gpu["compile_dynamic"]
    assert {(1, 1024), (1, 16384), (4, 8192)} <= set(gpu["rope_shapes"])
    assert gpu["rerope_shapes"] == [(1, 4096)] and gpu["window"] == 512
    assert "torch_compile" not in gpu["rope_providers"]  # its compiles alone would take the minute
    full = bench.resolve(bench.parse_args([]), "cuda")
    assert {(1, 1024), (1, 16384), (4, 8192)} <= set(full["rope_shapes"])
    assert "torch_compile" in full["rope_providers"]
    assert full["rerope_shapes"] == [(1, 4096), (1, 8192), (1, 16384)]
    # the issue asks for shapes whose q + k working set is at least 256 MB
    assert max(bench.rope_bytes(b, s, 32, 8, 128, torch.bfloat16) / 2 for b, s in full["rope_shapes"]) >= 256e6
    # without a GPU, --quick shows what a CPU can: copy, eager, complex and torch.compile,
    # forward, fp32, over sizes from ~1 MB to ~40 MB of q + k (32 + 8 heads, head_dim 128)
    cpu = bench.resolve(args, "cpu")
    assert cpu["suites"] == ("rope",) and cpu["passes"] == ["fwd"] and cpu["dtype"] == torch.float32
    assert cpu["rope_providers"] == ["copy", "torch_eager", "torch_complex", "torch_compile"]
    assert cpu["compile_dynamic"]
    sizes = [bench.rope_bytes(b, s, 32, 8, 128, torch.float32) / 2 for b, s in cpu["rope_shapes"]]
    assert len(sizes) >= 3 and min(sizes) <= 4e6 and max(sizes) >= 32e6
    full_cpu = bench.resolve(bench.parse_args([]), "cpu")
    assert full_cpu["suites"] == bench.SUITES and full_cpu["rerope_providers"][0] == "sdpa_rope"
    chosen = bench.resolve(bench.parse_args(["--quick", "--suite", "all", "--passes", "bwd", "--dtype", "bf16"]), "cpu")
    assert chosen["suites"] == bench.SUITES and chosen["passes"] == ["bwd"] and chosen["dtype"] == torch.bfloat16


def test_cli_overrides_and_rejects_bad_values():
    args = bench.parse_args(["--batch", "2", "--seq", "16", "32", "--providers", "torch_eager", "--dtype", "fp32"])
    config = bench.resolve(args, "cpu")
    assert config["rope_shapes"] == [(2, 16), (2, 32)]
    assert config["rope_providers"] == ["copy", "torch_eager"]  # the baseline always runs
    assert config["rerope_providers"] == ["sdpa_rope"] and config["dtype"] == torch.float32
    for bad in (["--seq", "0"], ["--providers", "nope"], ["--suite", "both"], ["--head-dim", "-2"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)


def _read(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_cpu_run_writes_the_schema_with_consistent_numbers(tmp_path, capsys):
    argv = ["--suite", "all", "--out", str(tmp_path), "--batch", "1", "2", "--seq", "16", "--heads", "4",
            "--kv-heads", "2", "--head-dim", "16", "--dtype", "fp32", "--window", "4", "--reps", "3",
            "--warmup", "0", "--providers", "torch_eager", "ropekit", "liger", "reference", "ropekit_fused"]
    if torch.cuda.is_available():
        pytest.skip("checks the CPU behaviour (GPU providers skipped with a reason)")
    bench.main(argv)
    header, rows = _read(tmp_path / "results.csv")
    assert header == SCHEMA

    rope = [r for r in rows if r["suite"] == "rope"]
    # 2 shapes × (copy + eager half/paper + ropekit half/paper + liger half) × 3 passes
    assert len(rope) == 2 * 6 * 3
    copy_time = {(r["batch"], r["pass"]): float(r["time_us"]) for r in rope if r["provider"] == "copy"}
    for r in rope:
        assert r["baseline"] == "copy" and r["window"] == ""
        if r["provider"] in ("ropekit", "liger"):
            assert r["status"].startswith("skipped: needs a CUDA GPU")
            assert all(r[c] == "" for c in NUMERIC)
            continue
        assert r["status"] == "ok", r
        t, gbps, speed = float(r["time_us"]), float(r["gbps"]), float(r["speed_vs_baseline"])
        assert t > 0 and gbps > 0 and speed > 0
        b, s = int(r["batch"]), int(r["seq"])
        moved = 2 * b * s * (4 + 2) * 16 * ITEMSIZE[r["dtype"]] * (2 if r["pass"] == "fwd+bwd" else 1)
        assert gbps == pytest.approx(moved / (t * 1e-6) / 1e9, rel=1e-9)
        assert speed == pytest.approx(copy_time[(r["batch"], r["pass"])] / t, rel=1e-9)
        assert r["peak_mem_mb"] == ""  # no allocator statistics on CPU
    assert {r["layout"] for r in rope if r["provider"] == "torch_eager"} == {"half", "paper"}

    rerope = [r for r in rows if r["suite"] == "rerope"]
    assert [r["provider"] for r in rerope] == ["sdpa_rope", "reference", "ropekit_fused"] * 2
    sdpa_time = {r["batch"]: float(r["time_us"]) for r in rerope if r["provider"] == "sdpa_rope"}
    for r in rerope:
        assert r["baseline"] == "sdpa_rope" and r["window"] == "4" and r["pass"] == "fwd"
        if r["provider"] == "ropekit_fused":
            assert r["status"].startswith("skipped: needs a CUDA GPU")
            continue
        assert r["status"] == "ok", r
        t = float(r["time_us"])
        moved = 4 * int(r["batch"]) * 4 * 16 * 16 * 4  # q, k, v read, output written; fp32
        assert float(r["gbps"]) == pytest.approx(moved / (t * 1e3), rel=1e-9)
        assert float(r["speed_vs_baseline"]) == pytest.approx(sdpa_time[r["batch"]] / t, rel=1e-9)

    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["command"].startswith("python -m ropekit.bench --suite all")
    assert meta["torch"] == torch.__version__ and meta["device"].startswith("CPU")
    printed = capsys.readouterr().out
    assert "skipping ropekit: needs a CUDA GPU" in printed
    # not a terminal: one progress line per suite, and where the GPU figures are
    assert [line for line in printed.splitlines() if "cases timed in" in line] == [
        line for line in printed.splitlines() if line.startswith(("rope: 12 cases", "rerope: 6 cases"))]
    assert len([line for line in printed.splitlines() if "cases timed in" in line]) == 2
    assert "committed runs in benchmarks/results/" in printed
    if hasattr(importlib.import_module("ropekit.viz"), "plot_benchmark"):
        assert all((tmp_path / f"{name}.png").exists() for name in ("summary", "rope", "rerope"))
    else:
        assert "plotting skipped" in printed


def test_a_provider_with_a_wrong_answer_gets_a_skipped_row_not_a_time(monkeypatch):
    def forgets_to_rotate(layout, cos, sin, inv_freq):
        return lambda q, k: (q * 1, k * 1)

    monkeypatch.setitem(bench.ROPE_PROVIDERS, "torch_eager", (("half",), forgets_to_rotate))
    rows = bench.run_rope_suite([(1, 8)], 2, 1, 8, torch.float32, ["copy", "torch_eager"], ["fwd"], "cpu",
                                reps=2, warmup=0)
    copy, wrong = rows
    assert copy["status"] == "ok"
    assert wrong["status"].startswith("skipped: wrong result vs ropekit.reference.apply_rope_qk (max abs error")
    assert wrong["time_us"] == "" and wrong["speed_vs_baseline"] == ""


def _rotated_by_matrix(x, layout):
    """x (batch, seq, heads, head_dim) rotated by the dense R_{Θ,m} of RoFormer eq. 15, float64."""
    inv_freq = ropekit.rope_frequencies(x.shape[-1])[0]
    per_head = x.transpose(1, 2)  # (batch, heads, seq, head_dim), seq second to last
    return apply_rope_matrix(per_head, x.shape[1], inv_freq, layout).transpose(1, 2)


@pytest.mark.parametrize("provider", ["torch_eager", "torch_complex", "ropekit"])
def test_provider_adapters_rotate_like_the_rotation_matrix(provider, device):
    if provider == "ropekit":
        pytest.importorskip("ropekit.kernels.rope")
    torch.manual_seed(0)
    q = torch.randn(2, 5, 4, 16, device=device)
    k = torch.randn(2, 5, 2, 16, device=device)
    inv_freq = ropekit.rope_frequencies(16)[0].to(device)
    cos, sin = ropekit.rope_cos_sin(torch.arange(5, device=device), inv_freq)
    layouts, build = bench.ROPE_PROVIDERS[provider]
    for layout in layouts:
        q_out, k_out = build(layout, cos, sin, inv_freq)(q, k)
        torch.testing.assert_close(q_out.double().cpu(), _rotated_by_matrix(q.cpu(), layout), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(k_out.double().cpu(), _rotated_by_matrix(k.cpu(), layout), atol=1e-5, rtol=1e-5)


def test_copy_provider_copies_values_and_gradients():
    q = torch.randn(1, 3, 2, 4, requires_grad=True)
    k = torch.randn(1, 3, 1, 4, requires_grad=True)
    dq, dk = torch.randn_like(q), torch.randn_like(k)
    q_out, k_out = bench.ROPE_PROVIDERS["copy"][1]("", None, None, None)(q, k)
    assert q_out.data_ptr() != q.data_ptr()
    assert torch.equal(q_out, q) and torch.equal(k_out, k)
    gq, gk = torch.autograd.grad((q_out, k_out), (q, k), (dq, dk))
    assert torch.equal(gq, dq) and torch.equal(gk, dk) and gq.data_ptr() != dq.data_ptr()


def test_unavailable_explains_why():
    assert bench.unavailable("torch_eager", "cpu") is None
    assert "needs a CUDA GPU" in bench.unavailable("liger", "cpu")
    assert bench.report.failure_reason(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8 GiB")) == "out of memory"
    assert bench.report.failure_reason(ValueError("bad\nthing")) == "ValueError: bad thing"


def test_progress_prints_one_line_per_suite_when_output_is_not_a_terminal(monkeypatch):
    import io

    log = io.StringIO()  # a file or a pipe: isatty() is False
    progress = bench.report.Progress(3, "rope", stream=log)
    for label in ("B1 S16 copy", "B1 S16 torch_eager half", "B1 S16 torch_eager paper"):
        progress.start(label)
        progress.done()
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rope: 3 cases timed in")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)  # no tqdm: one line rewritten
    screen = Terminal()
    progress = bench.report.Progress(2, "rope", stream=screen)
    progress.start("B1 S16 copy")
    progress.done()
    assert "\r[rope 1/2] B1 S16 copy" in screen.getvalue()


def test_a_cpu_run_compiles_once_with_dynamic_shapes(monkeypatch):
    compiles = []

    def fake_compile(fn, dynamic=None):
        compiles.append(dynamic)
        return fn

    resets = []
    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    rows = bench.run_rope_suite([(1, 8), (1, 16)], 2, 1, 8, torch.float32, ["copy", "torch_compile"], ["fwd"],
                                "cpu", reps=1, warmup=0, compile_dynamic=True)
    assert compiles == [True] * 4 and len(resets) == 1  # 2 shapes × 2 layouts, one cache for all
    assert all(r["status"] == "ok" for r in rows)
    compiles.clear(), resets.clear()
    bench.run_rope_suite([(1, 8), (1, 16)], 2, 1, 8, torch.float32, ["copy", "torch_compile"], ["fwd"],
                         "cpu", reps=1, warmup=0)
    assert compiles == [False] * 4 and len(resets) == 3  # static: a fresh compile for each shape


def test_rerope_adapters_agree_with_the_reference(device):
    attention = pytest.importorskip("ropekit.attention")
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 12, 2, 32, device=device) for _ in range(3))
    inv_freq = ropekit.rope_frequencies(32)[0].to(device)
    # With the window covering every distance, ReRoPE is plain RoPE attention: SDPA on
    # rotated q and k must give the reference's output.
    wide = attention.rerope_attention(q, k, v, inv_freq, window=12)
    torch.testing.assert_close(bench.rerope_call("sdpa_rope", q, k, v, inv_freq, 12)(), wide, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bench.rerope_call("reference", q, k, v, inv_freq, 12)(), wide)
    narrow = attention.rerope_attention(q, k, v, inv_freq, window=4)
    assert not torch.allclose(narrow, wide, atol=1e-3)  # the window matters at this size
    pytest.importorskip("ropekit.kernels.rerope")
    fused = bench.rerope_call("ropekit_fused", q, k, v, inv_freq, 4)()
    torch.testing.assert_close(fused, narrow, atol=2e-3, rtol=2e-3)


def test_kernel_providers_run_end_to_end_when_available(monkeypatch, device):
    """The Triton providers' path through the harness (check, three passes, baseline),
    under the interpreter on CPU: the timings are meaningless, the plumbing is not."""
    pytest.importorskip("ropekit.kernels.rerope")
    monkeypatch.setattr(bench.suites, "unavailable", lambda provider, device: None)
    rows = bench.run_rerope_suite([(1, 16)], 2, 32, torch.float32, 4, ["sdpa_rope", "reference", "ropekit_fused"],
                                  device, reps=1, warmup=0)
    assert [r["status"] for r in rows] == ["ok"] * 3, rows
    assert all(float(r["speed_vs_baseline"]) > 0 for r in rows)
    try:
        import ropekit.kernels.rope  # noqa: F401
    except ImportError:
        return
    rows = bench.run_rope_suite([(1, 8)], 2, 1, 16, torch.float32, ["copy", "ropekit"], list(bench.PASSES), device,
                                reps=1, warmup=0)
    assert [(r["provider"], r["layout"], r["status"]) for r in rows] == (
        [("copy", "", "ok")] * 3 + [("ropekit", "half", "ok")] * 3 + [("ropekit", "paper", "ok")] * 3), rows


# --- the package: one schema, one reader, the timing the tuning scripts share ----------------


def test_read_results_types_every_column_and_round_trips_write_csv(tmp_path):
    row = bench.results.new_row("rope", "torch_eager", "half", "bwd", 2, 64, 4, 2, 16, torch.bfloat16)
    bench.results.fill_timing(row, 50.0, 6144, None)
    skipped = bench.results.new_row("rerope", "ropekit_fused", "half", "fwd", 1, 32, 4, 4, 16, torch.float32, window=8)
    skipped["status"] = "skipped: needs a CUDA GPU"
    bench.write_csv([row, skipped], tmp_path / "results.csv")
    header, _ = _read(tmp_path / "results.csv")
    assert header == SCHEMA == list(bench.COLUMNS)  # nothing from LATER_COLUMNS until rows carry it
    ok, skip = bench.read_results(tmp_path / "results.csv")
    assert (ok["batch"], ok["seq"], ok["pass"], ok["dtype"], ok["window"]) == (2, 64, "bwd", "bf16", None)
    assert ok["time_us"] == 50.0 and ok["gbps"] == pytest.approx(6144 / 50e-6 / 1e9)
    assert all(math.isnan(ok[c]) for c in ("speed_vs_baseline", "peak_mem_mb", "gpu_us", "host_us"))
    assert skip["window"] == 8 and math.isnan(skip["time_us"]) and skip["status"].startswith("skipped")
    # rows that carry a later column (issue 14's host time) get it written and read back
    row["host_us"] = 12.5
    bench.write_csv([row], tmp_path / "later.csv")
    assert _read(tmp_path / "later.csv")[0] == SCHEMA + ["host_us"]
    assert bench.read_results(str(tmp_path / "later.csv"))[0]["host_us"] == 12.5
    assert list(bench.LATER_COLUMNS) == ["gpu_us", "host_us", "host_nograd_us", "gpu_clock"]
    assert not set(bench.LATER_COLUMNS) & set(bench.SCHEMA)


def test_read_results_reads_the_committed_gpu_runs():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    paths = bench.results_files(folder)
    # the harness's own runs, and only those (other scripts keep other CSVs beside them)
    assert {p.parent.name for p in paths} >= {"h100", "h100-quick"}
    for path in paths:
        assert json.loads((path.parent / "meta.json").read_text())["command"].startswith("python -m ropekit.bench")
    for path in paths:
        rows = bench.read_results(path)
        with open(path, newline="") as f:
            raw = list(csv.DictReader(f))
        assert len(rows) == len(raw) > 0
        for typed, text in zip(rows, raw):
            assert typed["seq"] == int(text["seq"]) and typed["provider"] == text["provider"]
            if text["time_us"]:
                assert typed["time_us"] == float(text["time_us"])


def test_read_results_rejects_bad_data():
    with pytest.raises(ValueError, match="lacks the column"):
        bench.read_results([{"suite": "rope"}])
    with pytest.raises(TypeError, match="data must be"):
        bench.read_results(3.5)
    good = dict.fromkeys(bench.COLUMNS, "")
    with pytest.raises(ValueError, match="'seq'"):
        bench.read_results([dict(good, seq="long")])


def test_percentiles_interpolate_like_numpy():
    np = pytest.importorskip("numpy")
    samples = [5.0, 1.0, 4.0, 2.0, 10.0, 3.0]
    got = bench.percentiles(samples, 0.5, 0.2, 0.8, 0.0, 1.0)
    assert got == pytest.approx(list(np.percentile(samples, [50, 20, 80, 0, 100])))
    with pytest.raises(ValueError):
        bench.percentiles([], 0.5)
    with pytest.raises(ValueError):
        bench.percentiles([1.0], 50)


def test_timing_calls_the_function_the_stated_number_of_times():
    calls = []
    samples = bench.time_samples(lambda: calls.append(1), "cpu", reps=7, warmup=3)
    assert len(samples) == 7 and len(calls) == 10 and all(t >= 0 for t in samples)
    calls.clear()
    per_call = bench.host_us_per_call(lambda: calls.append(1), "cpu", calls=20, repeats=3, warmup=5)
    assert len(calls) == 5 + 20 * 3 and per_call >= 0


def test_python_dash_m_runs_the_command_line():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ropekit.bench", "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("usage: python -m ropekit.bench") and "--quick" in out.stdout


# --- the GPU and the host apart (issue 14): gpu_us, host_us, host_nograd_us ---------------------


def test_clocks_fill_host_times_and_the_launch_path_on_cpu(tmp_path, capsys):
    rows = bench.run_rope_suite([(1, 8), (2, 8)], 2, 1, 8, torch.float32, ["copy", "torch_eager"],
                                list(bench.PASSES), "cpu", reps=2, warmup=0, clocks=True)
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["host_us"] > 0
        assert ("host_nograd_us" in r) == (r["pass"] == "fwd")  # the launch path is a forward question
        assert "gpu_us" not in r and "gpu_clock" not in r  # no CUDA graph without CUDA
    bench.write_csv(rows, tmp_path / "results.csv")
    assert _read(tmp_path / "results.csv")[0] == SCHEMA + ["host_us", "host_nograd_us"]
    typed = bench.read_results(tmp_path / "results.csv")
    assert [t["host_us"] for t in typed] == pytest.approx([r["host_us"] for r in rows])
    assert all(math.isnan(t["gpu_us"]) and t["gpu_clock"] == "" for t in typed)

    # the launch path: the smallest shape, each forward against copy's two copy_ calls
    shape, lines = bench.launch_path(typed)
    assert shape == (1, 8)
    fwd = {f"{t['provider']} {t['layout']}".strip(): t for t in typed if t["pass"] == "fwd" and t["batch"] == 1}
    floor = fwd["copy"]["host_nograd_us"]
    assert [line[0] for line in lines] == ["copy", "torch_eager half", "torch_eager paper"]
    for name, nograd, nograd_x, grad, grad_x in lines:
        assert nograd == fwd[name]["host_nograd_us"] and grad == fwd[name]["host_us"]
        assert nograd_x == pytest.approx(nograd / floor) and grad_x == pytest.approx(grad / floor)
    bench.print_summary(rows)
    printed = capsys.readouterr().out
    assert "rope fwd: host time per call (µs)" in printed and "the launch path" in printed
    assert "GPU time (CUDA graph)" not in printed  # no gpu_us measured


def test_runs_without_clocks_write_the_columns_of_before():
    rows = bench.run_rope_suite([(1, 8)], 2, 1, 8, torch.float32, ["copy"], ["fwd"], "cpu", reps=1, warmup=0)
    assert not set(bench.LATER_COLUMNS) & set(rows[0])  # CPU default: no clocks, the CSV of before
    assert bench.launch_path(rows) == (None, [])


def test_no_grad_call_copies_into_outputs_allocated_once_and_leaves_inputs_alone():
    q, k = torch.randn(1, 4, 2, 8, requires_grad=True), torch.randn(1, 4, 1, 8, requires_grad=True)
    copy_ = bench.no_grad_call("copy", None, q, k)
    first, second = copy_(), copy_()
    assert [t.data_ptr() for t in first] == [t.data_ptr() for t in second]  # no allocation per call
    assert torch.equal(first[0], q.detach()) and torch.equal(first[1], k.detach())
    assert not first[0].requires_grad

    def rotates_in_place(q_in, k_in):  # as Liger does
        return q_in.mul_(2), k_in.mul_(2)

    before = q.detach().clone()
    q_out, _ = bench.no_grad_call("liger", rotates_in_place, q, k)()
    assert torch.equal(q, before) and not q_out.requires_grad  # the suite's tensors are not touched


def test_host_time_stops_the_clock_when_the_last_call_returns():
    calls = []
    per_call = bench.host_us_per_call(lambda: calls.append(1), "cpu", calls=4, repeats=3, warmup=2, wait=False)
    assert len(calls) == 2 + 4 * 3 and per_call >= 0
    calls.clear()
    bench.host_time(lambda: calls.append(1), 10.0, "cpu")
    loop = bench.clocks.HOST_MOST_CALLS  # 1000 µs budget / 10 µs a call is more than the most per loop
    assert len(calls) == 2 + loop * 15  # a fast call: the most loops (15)
    calls.clear()
    bench.host_time(lambda: calls.append(1), 40_000.0, "cpu")
    assert len(calls) == 2 + 1 * 3  # a 40 ms call: one call a loop, the fewest loops (3)


def test_graph_inputs_rotate_until_they_spill_out_of_l2():
    spill = bench.clocks.L2_SPILL_BYTES
    for nbytes in (17 * 2**20, 21 * 2**20, 40 * 2**20, 100 * 2**20):
        sets = bench.input_sets(nbytes)
        assert sets * nbytes >= spill and (sets - 1) * nbytes < spill  # the fewest that spill
    assert bench.input_sets(2**30) == 1
    assert bench.input_sets(1000) == bench.clocks.MOST_INPUT_SETS
    with pytest.raises(ValueError, match="nbytes"):
        bench.input_sets(0)
    assert [bench.calls_within(1000, t, 64) for t in (10, 300, 5000, 0.0)] == [64, 3, 1, 64]


def test_fraction_of_baseline_divides_the_baselines_time_by_each_rows():
    rows = []
    for seq, copy_t, eager_t in ((8, 10.0, 40.0), (16, 20.0, 25.0)):
        for provider, t in (("copy", copy_t), ("torch_eager", eager_t)):
            row = bench.results.new_row("rope", provider, "half", "fwd", 1, seq, 2, 1, 8, torch.float32)
            row["gpu_us"] = t
            rows.append(row)
    rows.append(dict(rows[1], status="skipped: wrong result", gpu_us=""))
    rows.append(dict(rows[1], seq=32))  # no copy row at seq 32
    got = bench.fraction_of_baseline(rows, "gpu_us")
    assert got[:4] == [1.0, 10.0 / 40.0, 1.0, 20.0 / 25.0]
    assert math.isnan(got[4]) and math.isnan(got[5])
    assert all(math.isnan(f) for f in bench.fraction_of_baseline(rows, "host_us"))  # not measured


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@needs_cuda
def test_a_cuda_graph_replays_the_backward_it_was_timed_for():
    # If autograd ran the backward outside the capture (on another stream), the graph would
    # replay nothing and gpu_us would be ~0. Count what the replays added up instead.
    q = torch.randn(1, 64, 4, 32, device="cuda", requires_grad=True)
    dq = torch.randn_like(q)
    sink = torch.zeros_like(q)

    def make_calls():
        saved = q * 3.0  # the forward, built on the capture stream
        def backward():
            sink.add_(torch.autograd.grad(saved, q, dq, retain_graph=True)[0])
        return [backward]

    count, reps, warmup = 4, 3, 2
    assert bench.graph_us_per_call(make_calls, count, reps, warmup=warmup) > 0
    torch.cuda.synchronize()
    runs = warmup + count * (reps + 1)  # eager warm-up, then the replays (one untimed)
    torch.testing.assert_close(sink, 3.0 * dq * runs)


@needs_cuda
def test_cuda_runs_fill_gpu_time_from_a_graph_or_say_why_not(monkeypatch):
    def syncs(layout, cos, sin, inv_freq):  # a host sync in every call: not capturable
        eager = bench.providers.torch_eager(layout, cos, sin, inv_freq)
        return lambda q, k: (eager(q, k), q.sum().item())[0]

    # the failed capture comes first: the providers after it must still be captured
    monkeypatch.setitem(bench.ROPE_PROVIDERS, "torch_eager", (("half",), syncs))
    rows = bench.run_rope_suite([(1, 256)], 4, 2, 64, torch.bfloat16, ["copy", "torch_eager", "torch_complex"],
                                list(bench.PASSES), "cuda", reps=5, warmup=1)
    assert all(r["status"] == "ok" for r in rows), rows
    for r in rows:
        assert r["gpu_us"] > 0 and r["host_us"] > 0
        if r["provider"] == "torch_eager":
            assert r["gpu_clock"].startswith("events: not capturable") and r["gpu_us"] == r["time_us"]
        else:
            assert r["gpu_clock"].startswith("graph of ")


def test_graph_time_needs_cuda_and_sane_counts():
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="count"):
            bench.graph_us_per_call(lambda: [lambda: None], 0, 5)
    else:
        with pytest.raises(RuntimeError, match="CUDA"):
            bench.graph_us_per_call(lambda: [lambda: None], 4, 5)


def test_tables_write_rows_and_markdown_table(tmp_path):
    from ropekit.bench.tables import markdown_table, write_rows

    rows = [dict(seq=8192, provider="ropekit", gpu_us=1.5), dict(seq=16384, provider="sdpa", gpu_us=20.25)]
    write_rows(rows, tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv", newline="") as f:
        back = list(csv.DictReader(f))
    assert back == [{k: str(v) for k, v in r.items()} for r in rows]
    assert markdown_table(rows, ["provider", "gpu_us"]).splitlines() == [
        "| provider | gpu_us |", "|---|---|", "| ropekit | 1.5 |", "| sdpa | 20.25 |"]
    with pytest.raises(ValueError, match="no rows"):
        write_rows([], tmp_path / "empty.csv")
