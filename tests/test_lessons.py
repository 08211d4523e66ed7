"""The lessons' stored outputs are honest: executed once, top to bottom, in a fresh kernel.

nbval (run over lessons/ by the same `make test`) re-executes each notebook and compares
every cell's output with the stored one; this module checks what nbval cannot see: that
the stored outputs came from one clean run in order, without errors, and that every
lesson has the parts the course promises.
"""

import json
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "lessons").glob("[0-9][0-9]_*.ipynb"))


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_stored_outputs_come_from_one_clean_run(path):
    nb = json.loads(path.read_text())
    counts = [c["execution_count"] for c in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: restart the kernel, run all, save"
    errors = [o for c in code_cells(nb) for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name} stores an error output"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_has_goals_checks_exercises_and_references(path):
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    last = "".join(nb["cells"][-1]["source"]).lower()
    assert nb["cells"][0]["cell_type"] == "markdown" and first.lstrip().startswith("#")
    code = "\n".join("".join(c["source"]) for c in code_cells(nb))
    assert "manual_seed" in code
    assert "assert" in code, "every claim gets a visible check"
    assert code.count("check(") >= 2, "two to four exercises, each with a check cell"
    assert "summary" in last and ("arxiv" in last or "http" in last), "last cell: summary and references"
