"""The lessons' exercises: one check that compares a student's function with the spec, and
the reference solutions, kept outside the folder a student browses in JupyterLab.

Each exercise (in the style of Triton-Puzzles) is a spec (a ropekit function, or a formula
written with torch), a stub the student fills in, and one check cell::

    from ropekit.exercises import check, load_solutions
    lesson01 = load_solutions(1)
    check(rotation_2d, solution=lesson01.rotation_2d, spec=..., args=(0.7,))

Until the stub is filled in (it raises NotImplementedError), the check says plainly that the
exercise is not attempted yet, and runs the reference solution in its place, which is how CI
keeps the solutions honest (a wrong reference solution still fails the cell). The solutions live
in the repository's top-level ``solutions/`` folder (``solutions/lessonNN.py``), beside
``lessons/``, not inside it: `make lessons` opens JupyterLab on ``lessons/`` only.
"""

import importlib.util
from pathlib import Path

import torch

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def check(student, *, solution, spec, args=(), kwargs=None, atol=1e-5, rtol=1e-5):
    """Compare ``student(*args, **kwargs)`` with ``spec(*args, **kwargs)``; print both on failure.

    Any shapes: the two results are compared as float64 tensors, shapes first, then values to
    ``atol``/``rtol``. When ``student`` raises NotImplementedError (the stub is still empty),
    ``solution`` is checked in its place and the message says "Not attempted yet" (never
    "Correct"). Used by the exercise cells of lessons 01–05.
    """
    kwargs = kwargs or {}
    try:
        got = student(*args, **kwargs)
        attempted, who = True, "your function"
    except NotImplementedError:
        got = solution(*args, **kwargs)
        attempted, who = False, "the reference solution"
    expected = spec(*args, **kwargs)
    got_t = torch.as_tensor(got, dtype=torch.float64)
    exp_t = torch.as_tensor(expected, dtype=torch.float64)
    if got_t.shape != exp_t.shape or not torch.allclose(got_t, exp_t, atol=atol, rtol=rtol):
        raise AssertionError(f"{who} returned\n{got}\nbut the spec gives\n{expected}")
    if attempted:
        print("Correct: your function matches the spec.")
    else:
        print("Not attempted yet: the stub above still raises NotImplementedError. "
              "(The reference solution was checked in its place and matches the spec.)")


def load_solutions(lesson):
    """The module of reference solutions to lesson ``lesson``'s exercises (an int, 1 for
    ``01_rotation_in_2d``), read from ``solutions/lessonNN.py`` in the repository that holds
    this ropekit (the editable install that `make` and environment.yml set up)."""
    if isinstance(lesson, bool) or not isinstance(lesson, int) or not 1 <= lesson <= 99:
        raise ValueError(f"lesson must be a lesson number from 1 to 99, got {lesson!r}")
    path = SOLUTIONS / f"lesson{lesson:02d}.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"lesson={lesson}: expected its solutions at {path}; they ship with the repository, "
            "so install ropekit editable from a clone (`make lessons`, or `pip install -e .`)"
        )
    spec = importlib.util.spec_from_file_location(f"ropekit_solutions.lesson{lesson:02d}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
