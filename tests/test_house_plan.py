"""The house plan: modules by idea, one tensor order, kernels beside their twins.

These tests read the source, not the behaviour: no module reaches into another module's
private names, no module grows past one sitting, and every kernel can be swapped for its
plain-torch twin by changing the import.
"""

import ast
import inspect
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ropekit"
NAMEDTUPLE_API = {"_fields", "_replace", "_asdict", "_make"}  # public, despite the underscore


def _sources():
    """(path, python source) for every module of ropekit, script of benchmarks and lesson."""
    for folder in ("ropekit", "benchmarks", "lessons", "docs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, path.read_text()
    for path in sorted((ROOT / "lessons").rglob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        # IPython magics are not Python
        yield path, "\n".join(line for cell in code for line in cell.splitlines() if not line.lstrip().startswith(("%", "!")))


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_module(node, path):
    """The absolute module name an ImportFrom node reads from."""
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def private_name_uses(path, source):
    """Every ``from x import _y`` and ``x._y`` where x is another ropekit module."""
    found = []
    tree = ast.parse(source)
    own = _module_name(path) if path.is_relative_to(PACKAGE) else None
    aliases = {}  # local name -> ropekit module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _imported_module(node, path)
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and module != own:
                    found.append(f"{path.relative_to(ROOT)}: from {module} import {alias.name}")
                if module.startswith("ropekit"):
                    aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ropekit"):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or "ropekit"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and node.attr not in NAMEDTUPLE_API
                and isinstance(node.value, ast.Name) and node.value.id in aliases):
            found.append(f"{path.relative_to(ROOT)}: {node.value.id}.{node.attr} ({aliases[node.value.id]})")
    return found


def test_no_module_uses_another_modules_private_names():
    uses = [use for path, source in _sources() for use in private_name_uses(path, source)]
    assert uses == []


def test_the_private_name_check_finds_what_it_looks_for(tmp_path):
    # the check itself must be able to fail: a planted import and attribute are both found
    fake = PACKAGE / "decode.py"
    source = "from .attention import _hidden\nimport ropekit.kernels.rope as r\nr._launch()\n"
    assert len(private_name_uses(fake, source)) == 2
    assert private_name_uses(fake, "from .decode import _own_helper\n") == []  # its own module


def test_no_module_is_longer_than_one_sitting():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 450} == {}


def test_every_module_is_listed_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py") if not p.name.startswith("_") or p.name == "__init__.py"}
    modules -= {"ropekit", "ropekit.kv_cache", "ropekit.viz_style"}  # the package itself; kept import paths
    missing = sorted(m for m in modules if f"`{m}`" not in readme and f"`{m.rsplit('.', 1)[0]}`" not in readme)
    assert missing == []


@pytest.mark.parametrize(
    "kernel, twin",
    [("ropekit.kernels.rope:apply_rope_qk", "ropekit.reference:apply_rope_qk"),
     ("ropekit.kernels.rerope:rerope_attention", "ropekit.attention:rerope_attention"),
     ("ropekit.kernels.mrope:apply_mrope_qk", "ropekit.mrope:apply_mrope_qk"),
     ("ropekit.kernels.decode:rope_decode_append", "ropekit.decode:rope_decode_append")],
)
def test_every_kernel_has_a_twin_with_the_identical_signature(kernel, twin):
    import importlib

    def load(spec):
        module, name = spec.split(":")
        return getattr(importlib.import_module(module), name)

    assert inspect.signature(load(kernel)) == inspect.signature(load(twin))
