"""scripts/readme_numbers.py: the README's benchmark numbers are the committed results,
rendered, never typed. The README's blocks must equal what the script renders now, and
the renderer's numbers are checked against small results files written here, by hand."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "readme_numbers.py"

spec = importlib.util.spec_from_file_location("readme_numbers", SCRIPT)
readme_numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_numbers)

HEADER = ("suite,provider,layout,pass,batch,seq,q_heads,kv_heads,head_dim,dtype,window,time_us,gbps,baseline,"
          "speed_vs_baseline,peak_mem_mb,status")
META = {"device": "Test GPU", "date": "2026-12-01T10:00:00+00:00", "torch": "2.99", "triton": "9.9",
        "command": "python -m ropekit.bench"}


def test_readme_blocks_are_what_the_committed_results_render():
    text = (ROOT / "README.md").read_text()
    rendered = readme_numbers.render(text)
    stale = readme_numbers.stale_blocks(text, rendered)
    assert stale == [], f"README's {stale} differ from benchmarks/results/: run python scripts/readme_numbers.py"
    assert rendered == text


def write_run(folder, lines, header=HEADER):
    folder.mkdir()
    (folder / "results.csv").write_text("\n".join([header, *lines]) + "\n")
    (folder / "meta.json").write_text(json.dumps(META))
    return folder


def rope_line(provider, layout, pass_, batch, seq, time_us, status="ok", clocks=None):
    row = f"rope,{provider},{layout},{pass_},{batch},{seq},32,8,128,bf16,,{time_us},1.0,copy,,,{status}"
    return row if clocks is None else row + "," + ",".join(str(c) for c in clocks)


def test_rope_table_is_copy_time_over_provider_time_at_the_large_shapes(tmp_path):
    # B4 S8192 is 336 MB of q + k, B4 S16384 671 MB; B1 S1024 (10 MB) stays out of the table
    lines = []
    for seq, copy_t, rk_t in ((1024, 15.0, 60.0), (8192, 230.0, 240.0), (16384, 450.0, 460.0)):
        batch = 1 if seq == 1024 else 4
        for pass_ in ("fwd", "bwd"):
            lines.append(rope_line("copy", "", pass_, batch, seq, copy_t))
            lines.append(rope_line("ropekit", "half", pass_, batch, seq, rk_t if pass_ == "fwd" else copy_t))
            lines.append(rope_line("liger", "half", pass_, batch, seq, "", status="skipped: not installed"))
    block = readme_numbers.rope_block(write_run(tmp_path / "run", lines))
    assert "`benchmarks/results/run` (Test GPU, 2026-12-01, torch 2.99, triton 9.9)" in block
    assert "B4 S8192 (336 MB), B4 S16384 (671 MB)" in block and "B1 S1024" not in block
    assert "(`time_us`)" in block
    # fwd: 230 / 240 = 0.958 and 450 / 460 = 0.978; bwd: as fast as copy at both shapes
    assert "| ropekit | half | 0.96–0.98 | 1.00 |" in block.splitlines()
    assert "| copy |" not in block  # the baseline is 1.00 by definition
    assert block.endswith("Not measured in this run (skipped: see its `results.csv`): liger half.")


def test_rope_table_prefers_gpu_time_and_shows_the_launch_path(tmp_path):
    header = HEADER + ",gpu_us,host_us,host_nograd_us,gpu_clock"
    lines = [
        # the small shape: host times, the launch path's shape
        rope_line("copy", "", "fwd", 1, 1024, 15.0, clocks=(5.0, 10.0, 4.0, "graph of 8 calls")),
        rope_line("ropekit", "half", "fwd", 1, 1024, 60.0, clocks=(6.0, 12.0, 8.0, "graph of 8 calls")),
        # the large shape: GPU times unlike the event times, so the column used is visible
        rope_line("copy", "", "fwd", 4, 8192, 300.0, clocks=(200.0, 10.0, 4.0, "graph of 1 calls")),
        rope_line("ropekit", "half", "fwd", 4, 8192, 999.0, clocks=(250.0, 12.0, 8.0, "graph of 1 calls")),
    ]
    block = readme_numbers.rope_block(write_run(tmp_path / "clocked", lines, header))
    assert "(`gpu_us`)" in block
    assert "| ropekit | half | 0.80 |" in block.splitlines()  # 200 / 250, not 300 / 999
    launch = block[block.index("Host time per forward call at B1 S1024"):].splitlines()
    assert "| copy | 4.0 | 1.00 | 10.0 | 2.50 |" in launch  # copy_ is the floor: 10 / 4 with autograd
    assert "| ropekit half | 8.0 | 2.00 | 12.0 | 3.00 |" in launch


def test_rerope_and_small_shape_blocks_read_the_run(tmp_path):
    lines = [rope_line("copy", "", "fwd", 1, 1024, 14.6), rope_line("copy", "", "fwd", 1, 4096, 36.4),
             rope_line("copy", "", "fwd", 4, 8192, 230.0)]
    runs = ((4096, 250.0, 500.0, 20000.0, "ok", 8640.0), (16384, 3600.0, 5400.0, "", "skipped: out of memory", ""))
    for seq, sdpa, fused, ref, ref_status, ref_mem in runs:
        shape = f"fwd,1,{seq},32,32,128,bf16,512"
        lines.append(f"rerope,sdpa_rope,,{shape},{sdpa},1.0,sdpa_rope,,32.0,ok")
        lines.append(f"rerope,reference,half,{shape},{ref},1.0,sdpa_rope,,{ref_mem},{ref_status}")
        lines.append(f"rerope,ropekit_fused,half,{shape},{fused},1.0,sdpa_rope,,34.0,ok")
    run = write_run(tmp_path / "run", lines)
    small = readme_numbers.small_shapes_block(run)
    assert "(B1 S1024, B1 S4096; `benchmarks/results/run`)" in small and "15–36 µs" in small
    table = readme_numbers.rerope_block(run).splitlines()
    assert "| 4,096 | 0.25 | 0.50 | 2.00 | 20.00 | 40× | 34 / 8,640 |" in table
    assert "| 16,384 | 3.60 | 5.40 | 1.50 | out of memory | – | 34 / – |" in table


def test_mrope_block_takes_the_median_over_repeats(tmp_path):
    header = "model,batch,seq,qk_mb,direction,provider,repeat,median_us,p20_us,p80_us,gbps"
    lines = []
    for repeat, copy_t, exact_t in ((0, 100.0, 110.0), (1, 100.0, 125.0), (2, 100.0, 105.0)):
        lines.append(f"m1,4,8192,268.4,fwd,copy,{repeat},{copy_t},0,0,0")
        lines.append(f"m1,4,8192,268.4,fwd,ropekit-exact,{repeat},{exact_t},0,0,0")
        lines.append(f"m1,4,8192,268.4,fwd+bwd,ropekit-exact,{repeat},999.0,0,0,0")
    block = readme_numbers.mrope_block(write_run(tmp_path / "mrope", lines, header))
    row = [line for line in block.splitlines() if line.startswith("| m1 |")][0]
    assert row.split(" | ")[1] == "0.91"  # median 100 / median 110; the fwd+bwd rows play no part


def test_render_rewrites_only_between_the_markers_and_check_says_which(tmp_path):
    blocks = {"a": lambda results: "new a", "b": lambda results: "new b\n"}
    text = ("top\n<!-- generated:a -->\nold\n<!-- /generated:a -->\nmiddle\n"
            "<!-- generated:b -->\n<!-- /generated:b -->\nend\n")
    assert readme_numbers.render(text, tmp_path, blocks) == (
        "top\n<!-- generated:a -->\nnew a\n<!-- /generated:a -->\nmiddle\n"
        "<!-- generated:b -->\nnew b\n<!-- /generated:b -->\nend\n")
    with pytest.raises(ValueError, match="generated:b"):
        readme_numbers.render(text.replace("<!-- /generated:b -->", ""), tmp_path, blocks)

    readme = tmp_path / "README.md"
    current = (ROOT / "README.md").read_text()
    readme.write_text(current.replace("| ropekit | half |", "| ropekit | half | 9.99 |", 1))
    assert readme_numbers.main(["--check", "--readme", str(readme)]) == 1
    assert readme_numbers.main(["--readme", str(readme)]) == 0
    assert readme.read_text() == current
    assert readme_numbers.main(["--check", "--readme", str(readme)]) == 0


def test_span_writes_one_number_or_a_range():
    assert readme_numbers.span([0.971, 0.968]) == "0.97"
    assert readme_numbers.span([0.958, 0.978, float("nan")]) == "0.96–0.98"
    assert readme_numbers.span([float("nan")]) == "–"
    assert readme_numbers.span([14.6, 36.4], 0, " µs") == "15–36 µs"
