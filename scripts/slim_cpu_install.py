"""Remove from the installed Triton and torch what a CPU-only set-up never uses.

`make test` and `make lessons` run this once, with the Python of `.venv`, after installing
ropekit. It slims two packages:

Triton. On a CPU the kit runs Triton only through its interpreter (`TRITON_INTERPRET=1`),
which needs `triton/_C/libtriton.so` and Triton's Python code, and never opens NVIDIA's
assembler and disassemblers, NVIDIA's profiling libraries (CUPTI), AMD's code generator or
the GPU instrumentation test library: together about 0.5 GB of the 1 GB wheel. Most of the
rest is debug information and the symbol table in `libtriton.so` (0.3 GB of its 0.47 GB), which
`strip --strip-unneeded` (or `objcopy --strip-unneeded`) removes without changing the code or
the symbols Python and the loader look up (those live in the dynamic symbol table, which stays).

torch. The wheel carries PyTorch's own C++ test programs (GoogleTest executables): the folder
`torch/test/` (about 80 MiB) and, in `torch/bin/`, the programs named `test_*` or `*Test`
(test_api, test_jit, test_lazy, FileStoreTest, TCPStoreTest, ...: about 40 MiB). Nothing in
torch runs them or names them, in its Python code or its libraries: the one program there torch
uses is `torch/bin/torch_shm_manager` (it hands out the shared memory that DataLoader workers
pass tensors through), which stays, as does everything else in `torch/bin/` (protoc; the model
files test_jit reads, 0.1 MiB).

It slims only when all of these hold, and otherwise says which one does not:

1. You did not ask to keep everything (`--keep`; the Makefile passes it for `SLIM=0`).
2. Linux (Triton ships wheels for Linux only).
3. No NVIDIA driver answers (`nvidia-smi -L`, the test scripts/choose_torch.py makes).
4. The installed torch is a CPU-only build (`torch.version.cuda` and `torch.version.hip` are
   None), so a CUDA or ROCm torch installed on purpose, e.g. with TORCH_PIP_ARGS, keeps both whole.

Running it again removes nothing more. `make clean` and a new set-up with `SLIM=0` bring
everything back (or, in place, `.venv/bin/python -m pip install --force-reinstall --no-deps
triton==<the installed version> torch==<the installed version>` with the pip arguments torch
was installed with).
"""

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from choose_torch import has_nvidia_driver

# (path inside the triton package, what it is); none of them is opened by the interpreter
GPU_PAYLOADS = (
    ("backends/nvidia/bin", "ptxas, cuobjdump, nvdisasm: NVIDIA's assembler and disassemblers"),
    ("backends/nvidia/lib/cupti", "CUPTI, NVIDIA's profiling libraries, for Triton's profiler"),
    ("backends/nvidia/lib/cupti-blackwell", "CUPTI for Blackwell GPUs"),
    ("backends/amd/lib/libtriton_amd_codegen.so", "AMD's GPU code generator"),
    ("instrumentation", "a GPU instrumentation test library"),
)
# shared libraries whose debug information and symbol table go; their code and dynamic symbols stay
STRIPPED = ("_C/libtriton.so", "_C/libproton.so")
# torch's folder of C++ test programs, and the program in torch/bin that Python does start
TORCH_TESTS = "test"
SHM_MANAGER = "torch_shm_manager"
MIB = 2**20


def size_of(path: Path) -> int:
    """Bytes in a file, or in every file under a folder (links not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_symlink() or p.is_file())


def section_names(path: Path) -> list:
    """The section names of a 64-bit little-endian ELF file (x86-64, aarch64), or [] for
    anything else. Enough to tell whether there is anything left to strip."""
    with open(path, "rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return []
        shoff = int.from_bytes(header[0x28:0x30], "little")
        entsize, count, names_index = (int.from_bytes(header[i : i + 2], "little") for i in (0x3A, 0x3C, 0x3E))
        f.seek(shoff)
        table = f.read(entsize * count)
        if entsize < 0x28 or len(table) < entsize * count or names_index >= count:
            return []
        entries = [table[i * entsize : (i + 1) * entsize] for i in range(count)]
        names_entry = entries[names_index]
        f.seek(int.from_bytes(names_entry[0x18:0x20], "little"))
        names = f.read(int.from_bytes(names_entry[0x20:0x28], "little"))
    return [names[start : names.index(b"\0", start)].decode("ascii", "replace")
            for start in (int.from_bytes(e[:4], "little") for e in entries)]


def strippable(path: Path) -> bool:
    """True when the library still has debug information (`.debug_*`) or a symbol table (`.symtab`)."""
    return any(name.startswith(".debug_") or name == ".symtab" for name in section_names(path))


def strip_tool():
    """The command that strips a shared library, or None when binutils is not installed."""
    for name in ("strip", "objcopy"):
        if exe := shutil.which(name):
            return [exe, "--strip-unneeded"]
    return None


def strip(path: Path, tool: list) -> str:
    """Strip `path` into a new file and move it into place (a process that has the library
    loaded keeps the old one); return "" or why it failed, leaving `path` as it was."""
    stripped = path.with_name(path.name + ".stripped")
    done = subprocess.run([*tool, str(path), "-o", str(stripped)], capture_output=True, text=True)
    if done.returncode != 0 or not stripped.is_file():
        stripped.unlink(missing_ok=True)
        return (done.stderr.strip() or f"exit status {done.returncode}").splitlines()[-1]
    shutil.copymode(path, stripped)
    os.replace(stripped, path)
    return ""


def remove(path: Path) -> int:
    """Delete a file, link or folder; return the bytes it held."""
    size = size_of(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return size


def slim_triton(triton_dir: Path, tool) -> list:
    """Remove the GPU payloads under `triton_dir` and strip its libraries with `tool`
    (None: no tool, say so). Returns the report: (bytes freed, line) per thing done or not done."""
    report = []
    for rel, what in GPU_PAYLOADS:
        path = triton_dir / rel
        if not (path.exists() or path.is_symlink()):
            continue
        size = remove(path)
        report.append((size, f"removed {rel} ({size / MIB:.0f} MiB): {what}"))
    for rel in STRIPPED:
        path = triton_dir / rel
        if not path.is_file() or not strippable(path):
            continue
        before = path.stat().st_size
        if tool is None:
            report.append((0, f"kept the debug information and symbols in {rel} ({before / MIB:.0f} MiB): "
                              "neither strip nor objcopy is installed (binutils)"))
            continue
        if why := strip(path, tool):
            report.append((0, f"could not strip {rel}: {why}"))
            continue
        after = path.stat().st_size
        report.append((before - after, f"stripped the debug information and symbol table from {rel}: "
                                       f"{before / MIB:.0f} -> {after / MIB:.0f} MiB"))
    return report


def is_test_program(path: Path) -> bool:
    """True for a program of PyTorch's C++ tests in torch/bin: an executable (ELF) file, not a
    link, named `test_*` (test_api, test_jit) or `*Test` (FileStoreTest, TCPStoreTest).
    The model files test_jit reads (test_interpreter_async.pt) are not programs and stay."""
    if path.is_symlink() or not path.is_file() or path.name == SHM_MANAGER:
        return False
    if not (path.name.startswith("test_") or path.name.endswith("Test")):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def slim_torch(torch_dir: Path) -> list:
    """Remove PyTorch's C++ test programs under `torch_dir`: the folder test/ and the test
    programs in bin/. Returns the report: (bytes freed, line) per thing removed."""
    report = []
    tests = torch_dir / TORCH_TESTS
    if tests.exists() or tests.is_symlink():
        count = sum(1 for p in tests.rglob("*") if p.is_file()) if tests.is_dir() else 1
        size = remove(tests)
        report.append((size, f"removed {TORCH_TESTS} ({size / MIB:.0f} MiB): {count} programs of PyTorch's C++ tests"))
    bin_dir = torch_dir / "bin"
    programs = sorted(p for p in bin_dir.iterdir() if is_test_program(p)) if bin_dir.is_dir() else []
    if programs:
        size = sum(remove(p) for p in programs)
        names = ", ".join(p.name for p in programs)
        report.append((size, f"removed {len(programs)} C++ test programs from bin ({size / MIB:.0f} MiB): {names}"))
    return report


def torch_build() -> str:
    """'cpu', 'CUDA <version>', 'ROCm <version>', or why torch could not be asked."""
    try:
        import torch
    except ImportError as error:
        return f"torch does not import ({error})"
    if torch.version.cuda:
        return f"CUDA {torch.version.cuda}"
    if getattr(torch.version, "hip", None):
        return f"ROCm {torch.version.hip}"
    return "cpu"


def reason_to_keep(keep: bool, system: str, nvidia: bool, build: str) -> str:
    """Why Triton and torch stay whole, or "" when they are slimmed."""
    if keep:
        return "you asked to keep them whole (SLIM=0)"
    if system != "Linux":
        return f"not Linux ({system})"
    if nvidia:
        return "an NVIDIA driver answers (nvidia-smi -L): the GPU may need all of it"
    if build != "cpu":
        return f"the installed torch is not CPU-only ({build})"
    return ""


def installed_package_dir(name: str):
    """The folder of an installed package, found without importing it; None when not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0])


# the first line of each package's report: what was done to it
HEADINGS = {
    "triton": "slimmed for the CPU interpreter (SLIM=0 keeps it whole)",
    "torch": "removed its C++ test programs, which Python never runs (SLIM=0 keeps them)",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep Triton and torch whole (SLIM=0)")
    parser.add_argument("--triton-dir", type=Path,
                        help="slim this triton package folder (with either folder given, only the folders given)")
    parser.add_argument("--torch-dir", type=Path,
                        help="slim this torch package folder (with either folder given, only the folders given)")
    parser.add_argument("--nvidia", choices=("auto", "yes", "no"), default="auto")
    args = parser.parse_args(argv)

    given = {"triton": args.triton_dir, "torch": args.torch_dir}
    if any(given.values()):  # folders named: those only, never the installed packages
        folders = {name: folder for name, folder in given.items() if folder is not None}
        for name, folder in folders.items():
            if not folder.is_dir():
                print(f"--{name}-dir: {folder} is not a folder", file=sys.stderr)
                return 2
    else:
        folders = {name: installed_package_dir(name) for name in given}

    if args.keep:  # asked: no need to look for a driver or import torch
        why = reason_to_keep(True, "", False, "")
    else:
        nvidia = has_nvidia_driver() if args.nvidia == "auto" else args.nvidia == "yes"
        why = reason_to_keep(False, platform.system(), nvidia, torch_build() if not nvidia else "")
    if why:
        print(f"triton and torch: kept whole, {why}")
        return 0

    for name, folder in folders.items():
        if folder is None:
            print(f"{name}: not installed, nothing to slim")
            continue
        before = size_of(folder)
        report = slim_triton(folder, strip_tool()) if name == "triton" else slim_torch(folder)
        if not report:
            print(f"{name}: already slim for the CPU ({before / MIB:.0f} MiB in {folder})")
            continue
        print(f"{name}: {HEADINGS[name]}, in {folder}:")
        for _, line in report:
            print(f"  {line}")
        after = size_of(folder)
        print(f"{name}: {before / MIB:.0f} -> {after / MIB:.0f} MiB ({(before - after) / MIB:.0f} MiB freed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
