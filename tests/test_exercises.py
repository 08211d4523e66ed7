"""ropekit.exercises: the check says right from wrong and who was checked, the solutions load
from outside the folder JupyterLab shows, and each lesson's solutions exist."""

import json
import math
from pathlib import Path

import pytest
import torch

from ropekit.exercises import SOLUTIONS, check, load_solutions

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))


def spec_square(x):
    return x * x


def stub(x):
    raise NotImplementedError


def test_check_accepts_a_correct_function_and_says_it_was_yours(capsys):
    check(lambda x: x**2, solution=stub, spec=spec_square, args=(torch.arange(4.0),))
    assert capsys.readouterr().out == "Correct: your function matches the spec.\n"


def test_check_rejects_a_wrong_function_and_prints_both_results():
    with pytest.raises(AssertionError, match=r"your function returned\n.*\nbut the spec gives\n"):
        check(lambda x: x * 2, solution=spec_square, spec=spec_square, args=(torch.tensor([3.0]),))


def test_check_rejects_a_result_of_the_wrong_shape_even_when_it_broadcasts():
    with pytest.raises(AssertionError):
        check(lambda x: (x * x)[None], solution=stub, spec=spec_square, args=(torch.ones(3),))


def test_an_empty_stub_runs_the_reference_solution_and_says_not_attempted(capsys):
    check(stub, solution=lambda x: x * x, spec=spec_square, args=(torch.tensor([2.0]),))
    out = capsys.readouterr().out
    assert out.startswith("Not attempted yet") and "Correct" not in out
    assert "reference solution" in out
    with pytest.raises(AssertionError, match="the reference solution"):
        check(stub, solution=lambda x: x + 1, spec=spec_square, args=(torch.tensor([2.0]),))


def test_check_compares_plain_numbers_to_the_tolerance():
    check(lambda: math.pi, solution=stub, spec=lambda: 3.14159265, atol=1e-8, rtol=0)
    with pytest.raises(AssertionError):
        check(lambda: 3.1416, solution=stub, spec=lambda: math.pi, atol=1e-8, rtol=0)


def test_solutions_live_outside_the_lessons_folder():
    assert SOLUTIONS == ROOT / "solutions"
    lessons = ROOT / "lessons"
    assert not (lessons / "solutions").exists() and not (lessons / "check.py").exists()
    assert not list(lessons.glob("*.py")) and not list(lessons.glob("*.cfg"))


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_lesson_loads_its_own_solutions_and_names_them_in_its_checks(path):
    number = int(path.name[:2])
    module = load_solutions(number)
    assert Path(module.__file__) == SOLUTIONS / f"lesson{number:02d}.py"
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    used = {name for name in dir(module) if f"lesson{number:02d}.{name}" in code}
    assert used, f"{path.name} checks no solution of lesson{number:02d}"
    assert all(callable(getattr(module, name)) for name in used)


@pytest.mark.parametrize("bad", [0, 100, "01", 1.0, True])
def test_load_solutions_rejects_what_is_not_a_lesson_number(bad):
    with pytest.raises(ValueError, match="lesson must be a lesson number"):
        load_solutions(bad)


def test_load_solutions_names_the_missing_file():
    with pytest.raises(FileNotFoundError, match="lesson99.py"):
        load_solutions(99)
