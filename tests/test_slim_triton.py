"""scripts/slim_triton.py: on a fake Triton folder (files of known sizes where the wheel has its
GPU payloads, a real shared library with debug information built by the C compiler where it has
libtriton.so), it removes exactly the GPU payloads, strips the library and changes nothing else,
reports the sizes, does nothing the second time or when told to keep, and the Makefile drives
it with SLIM_TRITON."""

import ctypes
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the script imports has_nvidia_driver from choose_torch.py
spec = importlib.util.spec_from_file_location("slim_triton", ROOT / "scripts" / "slim_triton.py")
slim_triton = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slim_triton)

MIB = 2**20
# what the wheel holds for the GPU only, with the sizes the fake gives them
PAYLOAD_FILES = {
    "backends/nvidia/bin/ptxas": 3 * MIB,
    "backends/nvidia/bin/nvdisasm": 1 * MIB,
    "backends/nvidia/lib/cupti/libcupti.so.12": 2 * MIB,
    "backends/nvidia/lib/cupti-blackwell/libcupti.so.13": 5 * MIB,
    "backends/amd/lib/libtriton_amd_codegen.so": 6 * MIB,
    "instrumentation/libGPUInstrumentationTestLib.so": 1 * MIB,
}
# what the interpreter needs, or is small and kept anyway
KEPT_FILES = {
    "__init__.py": 100,
    "language/core.py": 2000,
    "backends/nvidia/driver.py": 300,
    "backends/nvidia/include/cuda.h": 4000,
    "backends/nvidia/lib/libdevice.10.bc": 5000,
    "backends/amd/lib/ocml.bc": 700,
    "_C/libtriton.so": 9000,  # not an ELF file here: nothing to strip
}
SOURCE = "int twice(int x) { return 2 * x; }\n"
needs_cc_and_strip = pytest.mark.skipif(
    shutil.which("cc") is None or slim_triton.strip_tool() is None, reason="needs a C compiler and binutils"
)


def make_tree(root: Path, files: dict) -> Path:
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(size)
    return root


def listing(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def build_library(path: Path, *flags) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.with_suffix(".c")
    source.write_text(SOURCE)
    subprocess.run(["cc", "-shared", "-fPIC", *flags, "-o", str(path), str(source)], check=True)
    source.unlink()
    return path


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "triton", {**PAYLOAD_FILES, **KEPT_FILES})


@pytest.fixture
def cpu_only(monkeypatch):
    """Whatever torch this test runs with, the script sees a CPU-only one."""
    monkeypatch.setattr(slim_triton, "torch_build", lambda: "cpu")


def test_removes_exactly_the_gpu_payloads_and_reports_their_sizes(tree, cpu_only, capsys):
    kept = {rel: data for rel, data in listing(tree).items() if rel in KEPT_FILES}
    assert slim_triton.main(["--triton-dir", str(tree), "--nvidia", "no"]) == 0
    assert listing(tree) == kept
    for rel in ("backends/nvidia/bin", "backends/nvidia/lib/cupti", "instrumentation"):
        assert not (tree / rel).exists()
    out = capsys.readouterr().out
    assert "removed backends/nvidia/bin (4 MiB)" in out
    assert "removed backends/nvidia/lib/cupti (2 MiB)" in out
    assert "removed backends/nvidia/lib/cupti-blackwell (5 MiB)" in out
    assert "removed backends/amd/lib/libtriton_amd_codegen.so (6 MiB)" in out
    assert "removed instrumentation (1 MiB)" in out
    before, after = sum(PAYLOAD_FILES.values()) + sum(KEPT_FILES.values()), sum(KEPT_FILES.values())
    assert f"triton: {before / MIB:.0f} -> {after / MIB:.0f} MiB (18 MiB freed)" in out


def test_a_second_run_changes_nothing_and_says_so(tree, cpu_only, capsys):
    slim_triton.main(["--triton-dir", str(tree), "--nvidia", "no"])
    first = listing(tree)
    capsys.readouterr()
    assert slim_triton.main(["--triton-dir", str(tree), "--nvidia", "no"]) == 0
    assert listing(tree) == first
    assert capsys.readouterr().out.startswith("triton: already slim for the CPU")


@pytest.mark.parametrize(
    "args, build, why",
    [(["--keep"], "cpu", "you asked to keep it whole (SLIM_TRITON=0)"),
     (["--nvidia", "yes"], "cpu", "an NVIDIA driver answers (nvidia-smi -L): the GPU needs all of it"),
     (["--nvidia", "no"], "CUDA 12.8", "the installed torch is not CPU-only (CUDA 12.8)"),
     (["--nvidia", "no"], "ROCm 6.4", "the installed torch is not CPU-only (ROCm 6.4)")],
)
def test_keeps_triton_whole_when_asked_or_when_a_gpu_may_use_it(tree, monkeypatch, capsys, args, build, why):
    monkeypatch.setattr(slim_triton, "torch_build", lambda: build)
    before = listing(tree)
    assert slim_triton.main(["--triton-dir", str(tree), *args]) == 0
    assert listing(tree) == before
    assert capsys.readouterr().out == f"triton: kept whole, {why}\n"


def test_only_linux_is_slimmed():
    assert slim_triton.reason_to_keep(False, "Darwin", False, "cpu") == "not Linux (Darwin)"
    assert slim_triton.reason_to_keep(False, "Linux", False, "cpu") == ""


def test_a_missing_triton_dir_is_named(tmp_path, capsys):
    assert slim_triton.main(["--triton-dir", str(tmp_path / "nowhere"), "--keep"]) == 2
    assert "--triton-dir:" in capsys.readouterr().err


@needs_cc_and_strip
def test_section_names_match_readelf(tmp_path):
    if shutil.which("readelf") is None:
        pytest.skip("needs readelf")
    library = build_library(tmp_path / "libtwice.so", "-g")
    listed = subprocess.run(["readelf", "-S", "-W", str(library)], capture_output=True, text=True, check=True).stdout
    # readelf's rows look like "  [ 1] .note.gnu.build-id NOTE ..."; row 0 has an empty name
    names = [line.split("]", 1)[1].split()[0] for line in listed.splitlines() if line.lstrip().startswith("[") and "]" in line]
    names = [n for n in names if n != "Name" and n != "NULL"]
    assert [n for n in slim_triton.section_names(library) if n] == names
    assert any(n.startswith(".debug_") for n in names)
    text = tmp_path / "not_elf.so"
    text.write_bytes(b"not an ELF file, whatever its name" * 10)
    assert slim_triton.section_names(text) == []


@needs_cc_and_strip
def test_strips_debug_information_and_symbols_and_the_library_still_works(tree, cpu_only, capsys):
    library = build_library(tree / "_C" / "libtriton.so", "-g")
    plain = build_library(tree.parent / "plain" / "libtwice.so")  # the same code without -g
    names = slim_triton.section_names(library)
    assert ".symtab" in names and any(n.startswith(".debug_") for n in names)
    assert slim_triton.strippable(library) and slim_triton.strippable(plain)  # cc keeps .symtab
    before = library.stat().st_size
    slim_triton.main(["--triton-dir", str(tree), "--nvidia", "no"])
    names = slim_triton.section_names(library)
    assert ".dynsym" in names and ".symtab" not in names and not any(n.startswith(".debug_") for n in names)
    assert not slim_triton.strippable(library)
    after = library.stat().st_size
    assert after < before
    assert ctypes.CDLL(str(library)).twice(21) == 42  # found through the dynamic symbol table
    assert library.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    out = capsys.readouterr().out
    assert f"stripped the debug information and symbol table from _C/libtriton.so: {before / MIB:.0f} -> {after / MIB:.0f} MiB" in out


@needs_cc_and_strip
def test_without_binutils_the_debug_information_stays_and_the_report_says_why(tree):
    library = build_library(tree / "_C" / "libtriton.so", "-g")
    data = library.read_bytes()
    report = slim_triton.slim(tree, None)
    assert library.read_bytes() == data
    assert any("kept the debug information and symbols in _C/libtriton.so" in line and "neither strip nor objcopy" in line
               for _, line in report)


@needs_cc_and_strip
def test_a_failing_strip_leaves_the_library_as_it_was(tree):
    library = build_library(tree / "_C" / "libtriton.so", "-g")
    data = library.read_bytes()
    fails = [sys.executable, "-c", "import sys; sys.exit(3)"]
    report = slim_triton.slim(tree, fails)
    assert library.read_bytes() == data
    assert not library.with_name("libtriton.so.stripped").exists()
    assert (0, "could not strip _C/libtriton.so: exit status 3") in report


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("setting, keep", [(None, False), ("1", False), ("0", True)])
def test_the_makefile_runs_the_script_after_the_install_and_passes_slim_triton(setting, keep):
    args = ["make", "-n", "-B", ".venv/.ropekit-installed"] + ([f"SLIM_TRITON={setting}"] if setting else [])
    lines = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    slim = next(i for i, line in enumerate(lines) if "slim_triton.py" in line)
    assert slim > next(i for i, line in enumerate(lines) if '-e ".[lessons,test]"' in line)
    assert lines[slim].rstrip().endswith("--keep") == keep
    assert all("--no-compile" in line for line in lines if "pip install" in line)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_makefile_rejects_other_slim_triton_values():
    done = subprocess.run(["make", "-n", "setup", "SLIM_TRITON=no"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0
    assert "SLIM_TRITON must be 1" in done.stderr and "not 'no'" in done.stderr
