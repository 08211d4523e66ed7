"""The lessons execute headless, as teachers run them to prepare material: with
`jupyter nbconvert --execute` and with papermill, no cell timeout set, no display.

A hang fails the test through the outer time limit of each run (the tools themselves would
wait forever). The suite runs each widget lesson (the ones with slider cells, where a
headless hang was seen) once with each tool, and a three-cell notebook made of lesson 01's
imports, its slider cell and a print ten times in a row; `scripts/headless_check.sh` runs
every lesson ten times with each tool for the full proof.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
WIDGET_LESSONS = ["01_rotation_in_2d", "03_relative_positions", "04_context_extension"]
LESSON_LIMIT_S = 300  # one lesson takes well under a minute on 2 cores; a hang never ends
SMALL_LIMIT_S = 120


def headless_env():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def execute(tool, notebook: Path, out: Path, limit_s: float):
    """Execute `notebook` headless with `tool` into `out`; fail if it errs or outlives `limit_s`."""
    if tool == "nbconvert":
        command = [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", str(notebook),
                   "--output-dir", str(out.parent), "--output", out.name]
    else:
        command = [sys.executable, "-m", "papermill", str(notebook), str(out),
                   "--cwd", str(notebook.parent), "--no-progress-bar", "--kernel", "python3"]
    # A session of its own, so that a hang is ended with everything the tool started.
    proc = subprocess.Popen(command, cwd=notebook.parent, env=headless_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log, _ = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"{tool} {notebook.name} hung: still running after {limit_s} s\n{log[-3000:]}")
    assert proc.returncode == 0, f"{tool} {notebook.name} failed (exit {proc.returncode})\n{log[-3000:]}"
    executed = json.loads(out.read_text())
    code = [c for c in executed["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert all(c["execution_count"] for c in code), f"{tool} left cells of {notebook.name} unexecuted"
    assert not [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]


def slider_cell(source: str) -> bool:
    return "interactive" in source or "ipywidgets" in source


@pytest.mark.parametrize("tool", ["nbconvert", "papermill"])
@pytest.mark.parametrize("lesson", WIDGET_LESSONS)
def test_widget_lesson_executes_headless(lesson, tool, tmp_path):
    notebook = LESSONS / f"{lesson}.ipynb"
    cells = nbformat.read(notebook, as_version=4).cells
    assert any(c.cell_type == "code" and slider_cell(c.source) for c in cells), f"{lesson} has no slider cell"
    execute(tool, notebook, tmp_path / f"{lesson}.{tool}.ipynb", LESSON_LIMIT_S)


@pytest.fixture(scope="module")
def small_widget_notebook(tmp_path_factory):
    """Lesson 01's import cell, its first slider cell and a print: the shape that hung in 4 of 5 runs."""
    lesson = nbformat.read(LESSONS / "01_rotation_in_2d.ipynb", as_version=4)
    code = [c for c in lesson.cells if c.cell_type == "code"]
    slider = next(c for c in code if slider_cell(c.source))
    nb = nbformat.v4.new_notebook(metadata=lesson.metadata)
    nb.cells = [nbformat.v4.new_code_cell(code[0].source), nbformat.v4.new_code_cell(slider.source),
                nbformat.v4.new_code_cell('print("after the slider")')]
    path = tmp_path_factory.mktemp("small") / "widget_three_cells.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("tool", ["nbconvert", "papermill"])
def test_a_slider_notebook_executes_headless_five_times_in_a_row_with_each_tool(small_widget_notebook, tool):
    for run in range(5):
        out = small_widget_notebook.with_name(f"run{run}.{tool}.ipynb")
        execute(tool, small_widget_notebook, out, SMALL_LIMIT_S)
        printed = json.loads(out.read_text())["cells"][-1]["outputs"]
        assert printed and "".join(printed[0].get("text", "")) == "after the slider\n"  # stored as a list of lines
