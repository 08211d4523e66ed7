"""The one helper the exercises share: run the student's function and compare it with the spec.

Each exercise is a spec (a ropekit function, or a formula written with torch), a stub the
student fills in, and one check cell::

    check(my_function, solution=solutions.lesson01.my_function, spec=ropekit_function, args=(...))

Until the stub is filled in (it raises NotImplementedError), the check runs the reference
solution from ``lessons/solutions/`` instead and says so, which is how CI keeps the
solutions honest.
"""

import torch


def check(student, *, solution, spec, args=(), kwargs=None, atol=1e-5, rtol=1e-5):
    """Compare ``student(*args, **kwargs)`` with ``spec(*args, **kwargs)``; print both on failure."""
    kwargs = kwargs or {}
    try:
        got = student(*args, **kwargs)
        who = "your function"
    except NotImplementedError:
        got = solution(*args, **kwargs)
        who = "the reference solution (fill in the stub above to check your own)"
    expected = spec(*args, **kwargs)
    got_t, exp_t = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
    if got_t.shape != exp_t.shape or not torch.allclose(got_t, exp_t, atol=atol, rtol=rtol):
        raise AssertionError(f"{who} returned\n{got}\nbut the spec gives\n{expected}")
    print(f"Correct: {who} matches the spec.")
