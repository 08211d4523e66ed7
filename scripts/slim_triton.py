"""Remove from the installed Triton what only a GPU uses, when the set-up is for the CPU.

`make test` and `make lessons` run this once, with the Python of `.venv`, after installing
ropekit. On a CPU the kit runs Triton only through its interpreter (`TRITON_INTERPRET=1`),
which needs `triton/_C/libtriton.so` and Triton's Python code, and never opens NVIDIA's
assembler and disassemblers, NVIDIA's profiling libraries (CUPTI), AMD's code generator or
the GPU instrumentation test library: together about 0.5 GB of the 1 GB wheel. Most of the
rest is debug information and the symbol table in `libtriton.so` (0.3 GB of its 0.47 GB), which
`strip --strip-unneeded` (or `objcopy --strip-unneeded`) removes without changing the code or
the symbols Python and the loader look up (those live in the dynamic symbol table, which stays).

It slims only when all of these hold, and otherwise says which one does not:

1. You did not ask to keep Triton whole (`--keep`; the Makefile passes it for `SLIM_TRITON=0`).
2. Linux (Triton ships wheels for Linux only).
3. No NVIDIA driver answers (`nvidia-smi -L`, the test scripts/choose_torch.py makes).
4. The installed torch is a CPU-only build (`torch.version.cuda` and `torch.version.hip` are
   None), so a CUDA or ROCm torch installed on purpose, e.g. with TORCH_PIP_ARGS, keeps its Triton.

Running it again removes nothing more. `make clean` and a new set-up with `SLIM_TRITON=0`
bring the whole Triton back (or, in place, `.venv/bin/python -m pip install --force-reinstall
--no-deps triton==<the installed version>`).
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


def slim(triton_dir: Path, tool) -> list:
    """Remove the GPU payloads under `triton_dir` and strip its libraries with `tool`
    (None: no tool, say so). Returns the report, one line per thing done or not done."""
    report = []
    for rel, what in GPU_PAYLOADS:
        path = triton_dir / rel
        if not (path.exists() or path.is_symlink()):
            continue
        size = size_of(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
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
    """Why Triton stays whole, or "" when it is slimmed."""
    if keep:
        return "you asked to keep it whole (SLIM_TRITON=0)"
    if system != "Linux":
        return f"not Linux ({system})"
    if nvidia:
        return "an NVIDIA driver answers (nvidia-smi -L): the GPU needs all of it"
    if build != "cpu":
        return f"the installed torch is not CPU-only ({build})"
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep Triton whole (SLIM_TRITON=0)")
    parser.add_argument("--triton-dir", type=Path, help="the triton package folder (default: the installed one)")
    parser.add_argument("--nvidia", choices=("auto", "yes", "no"), default="auto")
    args = parser.parse_args(argv)

    triton_dir = args.triton_dir
    if triton_dir is None:
        spec = importlib.util.find_spec("triton")  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            print("triton: not installed, nothing to slim")
            return 0
        triton_dir = Path(spec.submodule_search_locations[0])
    if not triton_dir.is_dir():
        print(f"--triton-dir: {triton_dir} is not a folder", file=sys.stderr)
        return 2

    if args.keep:  # asked: no need to look for a driver or import torch
        why = reason_to_keep(True, "", False, "")
    else:
        nvidia = has_nvidia_driver() if args.nvidia == "auto" else args.nvidia == "yes"
        why = reason_to_keep(False, platform.system(), nvidia, torch_build() if not nvidia else "")
    if why:
        print(f"triton: kept whole, {why}")
        return 0

    before = size_of(triton_dir)
    report = slim(triton_dir, strip_tool())
    if not report:
        print(f"triton: already slim for the CPU ({before / MIB:.0f} MiB in {triton_dir})")
        return 0
    print(f"triton: slimmed for the CPU interpreter (SLIM_TRITON=0 keeps it whole), in {triton_dir}:")
    for _, line in report:
        print(f"  {line}")
    after = size_of(triton_dir)
    print(f"triton: {before / MIB:.0f} -> {after / MIB:.0f} MiB ({(before - after) / MIB:.0f} MiB freed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
