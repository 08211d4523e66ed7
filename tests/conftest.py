"""Shared test set-up.

Without a CUDA device the Triton kernels run under the interpreter; TRITON_INTERPRET must
be set before triton is first imported, so it is set here, before any test module loads.
On a GPU machine the same tests run on CUDA unchanged.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI draws the same examples every run (a failure there is then reproducible, not luck);
# locally hypothesis explores new examples each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def device():
    """The device kernel tests run on: CUDA when present, else CPU under the interpreter."""
    return DEVICE


def pytest_report_header(config):
    return f"ropekit tests on {DEVICE}; TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '0')}"
