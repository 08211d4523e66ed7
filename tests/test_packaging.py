"""The set-up files agree with each other, and the package imports without its optional parts."""

import re
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a test dependency there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("lessons", "test"):
        reqs += project["optional-dependencies"][extra]
    return {normalise(r) for r in reqs}


def environment_yml_pip_requirements():
    """The entries under `- pip:` in environment.yml (a tiny reader: the file is flat)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = set()
    for line in lines[start + 1 :]:
        item = line.strip()
        if not item.startswith("- "):
            break
        reqs.add(normalise(item[2:]))
    return reqs


def test_environment_yml_and_pyproject_list_the_same_dependencies():
    conda = environment_yml_pip_requirements()
    assert "-e." in conda, "environment.yml must install ropekit itself (`- -e .`)"
    assert conda - {"-e."} == pyproject_requirements()


def test_environment_yml_python_matches_requires_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = project["requires-python"].lstrip(">=")
    assert f"python>={version}" in (ROOT / "environment.yml").read_text()


def test_import_ropekit_needs_neither_triton_nor_matplotlib():
    code = (
        "import sys, ropekit, ropekit.attention; "
        "print(sorted(m for m in ('triton', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make lessons" in (ROOT / "README.md").read_text()


def readme_one_screen_example():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The library in one screen") :]
    return section[section.index("```python\n") + 10 : section.index("\n```", section.index("```python"))]


def test_readme_one_screen_example_runs_and_the_kernel_twin_gives_the_same():
    """The README's example as written (the reference), then with the kernel's import swapped in,
    as the README says one replaces the other. On a CPU: 256 tokens instead of 4096 and the
    kernel under the Triton interpreter (conftest sets TRITON_INTERPRET=1 there)."""
    import torch

    code = readme_one_screen_example()
    assert "(batch, seq, heads, head_dim)" in code and "(batch, heads, seq" not in code
    reference_import = "from ropekit.reference import apply_rope_qk"
    kernel_import = "from ropekit.kernels import apply_rope_qk"
    assert reference_import in code and f"# {kernel_import}" in code
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        code = code.replace("4096", "256")
    reference, kernel = {}, {}
    for namespace, source in ((reference, code), (kernel, code.replace(reference_import, kernel_import))):
        torch.manual_seed(0)
        with torch.device(device):  # the example's tensors on the kernel's device
            exec(compile(source, "README.md", "exec"), namespace)
    assert kernel["apply_rope_qk"] is not reference["apply_rope_qk"]
    for name in ("q_rot", "k_rot"):
        assert reference[name].shape == reference[name[0]].shape
        torch.testing.assert_close(kernel[name], reference[name])
