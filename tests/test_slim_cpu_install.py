"""scripts/slim_cpu_install.py: on a fake Triton folder (files of known sizes where the wheel has
its GPU payloads, a real shared library with debug information built by the C compiler where it
has libtriton.so), it removes exactly the GPU payloads, strips the library and changes nothing
else; on a fake torch folder (ELF files of known sizes where the wheel has its C++ test programs,
torch_shm_manager, protoc and the model files beside them) it removes exactly the test programs;
it reports the sizes, does nothing the second time or when told to keep, touches only the folders
it is given, and the Makefile drives it with SLIM (or SLIM_TRITON, its old name)."""

import ctypes
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the script imports has_nvidia_driver from choose_torch.py
spec = importlib.util.spec_from_file_location("slim_cpu_install", ROOT / "scripts" / "slim_cpu_install.py")
slim_cpu_install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slim_cpu_install)

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
    shutil.which("cc") is None or slim_cpu_install.strip_tool() is None, reason="needs a C compiler and binutils"
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


def size_of_tree(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


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
    monkeypatch.setattr(slim_cpu_install, "torch_build", lambda: "cpu")


# PyTorch's C++ test programs in the CPU wheel (ELF executables), with the sizes the fake gives them
TORCH_TEST_PROGRAMS = {
    "test/atest": 2 * MIB,
    "test/c10_Half_test": 1 * MIB,
    "test/cpu_rng_test": 3 * MIB,
    "bin/test_api": 4 * MIB,
    "bin/test_jit": 3 * MIB,
    "bin/FileStoreTest": 1 * MIB,
    "bin/TCPStoreTest": 1 * MIB,
}
# what stays: the programs torch uses or that are no tests, and files that are not programs
TORCH_KEPT_PROGRAMS = {"bin/torch_shm_manager": 50_000, "bin/protoc": 70_000, "lib/libtorch_cpu.so": 90_000}
TORCH_KEPT_FILES = {
    "__init__.py": 3000,
    "bin/script_module_v4.ptl": 2573,
    "bin/test_interpreter_async.pt": 2840,  # named like a test program, but a model file test_jit reads
    "bin/upgrader_models/test_versioned_div_tensor_v2.ptl": 1800,
    "testing/_internal/common_utils.py": 4000,
}


def make_elf_tree(root: Path, files: dict) -> Path:
    """Files that start like an ELF file (the 4 bytes the script looks at), then zeros."""
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"\x7fELF" + bytes(range(12)))
            f.truncate(size)
        path.chmod(0o755)
    return root


@pytest.fixture
def torch_tree(tmp_path):
    root = make_elf_tree(tmp_path / "torch", {**TORCH_TEST_PROGRAMS, **TORCH_KEPT_PROGRAMS})
    return make_tree(root, TORCH_KEPT_FILES)


def test_removes_exactly_the_gpu_payloads_and_reports_their_sizes(tree, cpu_only, capsys):
    kept = {rel: data for rel, data in listing(tree).items() if rel in KEPT_FILES}
    assert slim_cpu_install.main(["--triton-dir", str(tree), "--nvidia", "no"]) == 0
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
    slim_cpu_install.main(["--triton-dir", str(tree), "--nvidia", "no"])
    first = listing(tree)
    capsys.readouterr()
    assert slim_cpu_install.main(["--triton-dir", str(tree), "--nvidia", "no"]) == 0
    assert listing(tree) == first
    assert capsys.readouterr().out.startswith("triton: already slim for the CPU")


@pytest.mark.parametrize(
    "args, build, why",
    [(["--keep"], "cpu", "you asked to keep them whole (SLIM=0)"),
     (["--nvidia", "yes"], "cpu", "an NVIDIA driver answers (nvidia-smi -L): the GPU may need all of it"),
     (["--nvidia", "no"], "CUDA 12.8", "the installed torch is not CPU-only (CUDA 12.8)"),
     (["--nvidia", "no"], "ROCm 6.4", "the installed torch is not CPU-only (ROCm 6.4)")],
)
def test_keeps_both_whole_when_asked_or_when_a_gpu_may_use_them(tree, torch_tree, monkeypatch, capsys, args, build, why):
    monkeypatch.setattr(slim_cpu_install, "torch_build", lambda: build)
    before = listing(tree), listing(torch_tree)
    assert slim_cpu_install.main(["--triton-dir", str(tree), "--torch-dir", str(torch_tree), *args]) == 0
    assert (listing(tree), listing(torch_tree)) == before
    assert capsys.readouterr().out == f"triton and torch: kept whole, {why}\n"


def test_removes_exactly_the_torch_test_programs_and_reports_their_sizes(torch_tree, cpu_only, capsys):
    kept = {rel: data for rel, data in listing(torch_tree).items() if rel not in TORCH_TEST_PROGRAMS}
    assert set(kept) == set(TORCH_KEPT_PROGRAMS) | set(TORCH_KEPT_FILES)
    before = size_of_tree(torch_tree)
    assert slim_cpu_install.main(["--torch-dir", str(torch_tree), "--nvidia", "no"]) == 0
    assert listing(torch_tree) == kept
    assert not (torch_tree / "test").exists()
    assert (torch_tree / "bin" / "torch_shm_manager").stat().st_mode & 0o111
    out = capsys.readouterr().out
    assert f"torch: removed its C++ test programs, which Python never runs (SLIM=0 keeps them), in {torch_tree}:" in out
    assert "  removed test (6 MiB): 3 programs of PyTorch's C++ tests" in out
    assert "  removed 4 C++ test programs from bin (9 MiB): FileStoreTest, TCPStoreTest, test_api, test_jit" in out
    after = size_of_tree(torch_tree)
    assert before - after == sum(TORCH_TEST_PROGRAMS.values())
    assert f"torch: {before / MIB:.0f} -> {after / MIB:.0f} MiB (15 MiB freed)" in out
    assert "triton" not in out  # only the folder named


def test_a_second_torch_run_changes_nothing_and_says_so(torch_tree, cpu_only, capsys):
    slim_cpu_install.main(["--torch-dir", str(torch_tree), "--nvidia", "no"])
    first = listing(torch_tree)
    capsys.readouterr()
    assert slim_cpu_install.main(["--torch-dir", str(torch_tree), "--nvidia", "no"]) == 0
    assert listing(torch_tree) == first
    size = size_of_tree(torch_tree)
    assert capsys.readouterr().out == f"torch: already slim for the CPU ({size / MIB:.0f} MiB in {torch_tree})\n"


def test_without_folders_named_it_slims_the_installed_triton_and_torch(tree, torch_tree, cpu_only, monkeypatch, capsys):
    monkeypatch.setattr(slim_cpu_install, "installed_package_dir", {"triton": tree, "torch": torch_tree}.get)
    assert slim_cpu_install.main(["--nvidia", "no"]) == 0
    assert set(listing(tree)) == set(KEPT_FILES)
    assert set(listing(torch_tree)) == set(TORCH_KEPT_PROGRAMS) | set(TORCH_KEPT_FILES)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("triton: slimmed for the CPU interpreter") and lines[-1].startswith("torch: ")


def test_a_folder_named_means_the_installed_packages_stay_untouched(tree, torch_tree, cpu_only, monkeypatch):
    monkeypatch.setattr(slim_cpu_install, "installed_package_dir", {"triton": tree, "torch": torch_tree}.get)
    before = listing(torch_tree)
    slim_cpu_install.main(["--triton-dir", str(tree), "--nvidia", "no"])
    assert set(listing(tree)) == set(KEPT_FILES)
    assert listing(torch_tree) == before


def test_a_package_not_installed_is_named_and_the_other_still_slimmed(torch_tree, cpu_only, monkeypatch, capsys):
    monkeypatch.setattr(slim_cpu_install, "installed_package_dir", {"torch": torch_tree}.get)
    assert slim_cpu_install.main(["--nvidia", "no"]) == 0
    assert "test" not in {p.name for p in torch_tree.iterdir()}
    assert capsys.readouterr().out.startswith("triton: not installed, nothing to slim\ntorch: removed")


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_test_programs_are_told_apart_by_name_and_by_being_programs(tmp_path):
    source = tmp_path / "main.c"
    source.write_text("int main(void) { return 0; }\n")
    names = {"test_api": True, "FileStoreTest": True, "torch_shm_manager": False, "protoc": False, "tester": False}
    for name in names:
        subprocess.run(["cc", "-o", str(tmp_path / name), str(source)], check=True)
        assert subprocess.run([str(tmp_path / name)]).returncode == 0  # real programs, they run
    (tmp_path / "test_interpreter_async.pt").write_bytes(b"PK\x03\x04" + bytes(100))  # a zip: a model file
    (tmp_path / "test_link").symlink_to(tmp_path / "test_api")
    (tmp_path / "test_folder").mkdir()
    names.update({"test_interpreter_async.pt": False, "test_link": False, "test_folder": False})
    assert {name: slim_cpu_install.is_test_program(tmp_path / name) for name in names} == names


def test_only_linux_is_slimmed():
    assert slim_cpu_install.reason_to_keep(False, "Darwin", False, "cpu") == "not Linux (Darwin)"
    assert slim_cpu_install.reason_to_keep(False, "Linux", False, "cpu") == ""


def test_a_missing_triton_dir_is_named(tmp_path, capsys):
    assert slim_cpu_install.main(["--triton-dir", str(tmp_path / "nowhere"), "--keep"]) == 2
    assert "--triton-dir:" in capsys.readouterr().err
    assert slim_cpu_install.main(["--torch-dir", str(tmp_path / "nowhere")]) == 2
    assert "--torch-dir:" in capsys.readouterr().err


@needs_cc_and_strip
def test_section_names_match_readelf(tmp_path):
    if shutil.which("readelf") is None:
        pytest.skip("needs readelf")
    library = build_library(tmp_path / "libtwice.so", "-g")
    listed = subprocess.run(["readelf", "-S", "-W", str(library)], capture_output=True, text=True, check=True).stdout
    # readelf's rows look like "  [ 1] .note.gnu.build-id NOTE ..."; row 0 has an empty name
    names = [line.split("]", 1)[1].split()[0] for line in listed.splitlines() if line.lstrip().startswith("[") and "]" in line]
    names = [n for n in names if n != "Name" and n != "NULL"]
    assert [n for n in slim_cpu_install.section_names(library) if n] == names
    assert any(n.startswith(".debug_") for n in names)
    text = tmp_path / "not_elf.so"
    text.write_bytes(b"not an ELF file, whatever its name" * 10)
    assert slim_cpu_install.section_names(text) == []


@needs_cc_and_strip
def test_strips_debug_information_and_symbols_and_the_library_still_works(tree, cpu_only, capsys):
    library = build_library(tree / "_C" / "libtriton.so", "-g")
    plain = build_library(tree.parent / "plain" / "libtwice.so")  # the same code without -g
    names = slim_cpu_install.section_names(library)
    assert ".symtab" in names and any(n.startswith(".debug_") for n in names)
    assert slim_cpu_install.strippable(library) and slim_cpu_install.strippable(plain)  # cc keeps .symtab
    before = library.stat().st_size
    slim_cpu_install.main(["--triton-dir", str(tree), "--nvidia", "no"])
    names = slim_cpu_install.section_names(library)
    assert ".dynsym" in names and ".symtab" not in names and not any(n.startswith(".debug_") for n in names)
    assert not slim_cpu_install.strippable(library)
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
    report = slim_cpu_install.slim_triton(tree, None)
    assert library.read_bytes() == data
    assert any("kept the debug information and symbols in _C/libtriton.so" in line and "neither strip nor objcopy" in line
               for _, line in report)


@needs_cc_and_strip
def test_a_failing_strip_leaves_the_library_as_it_was(tree):
    library = build_library(tree / "_C" / "libtriton.so", "-g")
    data = library.read_bytes()
    fails = [sys.executable, "-c", "import sys; sys.exit(3)"]
    report = slim_cpu_install.slim_triton(tree, fails)
    assert library.read_bytes() == data
    assert not library.with_name("libtriton.so.stripped").exists()
    assert (0, "could not strip _C/libtriton.so: exit status 3") in report


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(
    "settings, keep",
    [([], False), (["SLIM=1"], False), (["SLIM=0"], True), (["SLIM_TRITON=0"], True), (["SLIM_TRITON=1"], False),
     (["SLIM_TRITON=0", "SLIM=1"], False)],
)
def test_the_makefile_runs_the_script_after_the_install_and_passes_slim(settings, keep):
    args = ["make", "-n", "-B", ".venv/.ropekit-installed", *settings]
    lines = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    slim = next(i for i, line in enumerate(lines) if "slim_cpu_install.py" in line)
    assert slim > next(i for i, line in enumerate(lines) if '-e ".[lessons,test]"' in line)
    assert lines[slim].rstrip().endswith("--keep") == keep
    assert all("--no-compile" in line for line in lines if "pip install" in line)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("setting", ["SLIM=no", "SLIM_TRITON=no"])
def test_the_makefile_rejects_other_slim_values(setting):
    done = subprocess.run(["make", "-n", "setup", setting], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0
    assert "SLIM (or its old name SLIM_TRITON) must be 1" in done.stderr and "not 'no'" in done.stderr
