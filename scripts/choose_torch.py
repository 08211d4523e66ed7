"""Choose where the set-up takes torch from, say which, and install it.

`make test` and `make lessons` run this once, with the Python of `.venv`, before they install
ropekit. The choice, in order:

1. You gave `TORCH_PIP_ARGS` (e.g. `--index-url ...`): those, with no probing.
2. An NVIDIA driver answers (`nvidia-smi -L`): the default index and `torch>=2.4`, the range
   in pyproject.toml; pip takes the newest, a CUDA build.
3. Not Linux: the default index and the CPU pin; PyPI's macOS and Windows wheels hold no CUDA.
4. Linux without a driver: the CPU pin from PyTorch's CPU-only index when that index answers
   within `--timeout` seconds, else from the default index (pip's own configuration: a local
   CPU wheel where one is set up; plain PyPI's Linux wheel bundles CUDA, several GB).
   If pip then fails on the CPU-only index (no wheel for this Python, say), it tries the
   default index once and says so.

`TORCH_SPEC` replaces the requirement in every case. `--dry-run` prints the choice and the
pip command without installing anything (tests/test_choose_torch.py uses it).
"""

import argparse
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
GPU_SPEC = "torch>=2.4"  # pyproject.toml's range


@dataclass
class Choice:
    requirement: str
    pip_args: list = field(default_factory=list)
    reason: str = ""
    fallback: bool = False  # True when a failure on pip_args may retry the default index


def has_nvidia_driver() -> bool:
    """True when `nvidia-smi -L` runs and lists a GPU (the same test PyTorch's installers use)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def index_answers(index: str, timeout: float) -> tuple:
    """(True, "") when `<index>/torch/` answers HTTP 200 within `timeout` seconds in all
    (name lookup, connect and reply), else (False, why)."""
    url = index.rstrip("/") + "/torch/"
    result = [False, f"no answer within {timeout:g} s"]

    def probe():
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                result[:] = [reply.status == 200, f"HTTP {reply.status}"]
        except urllib.error.HTTPError as error:
            result[:] = [False, f"HTTP {error.code}"]
        except (urllib.error.URLError, OSError, ValueError) as error:
            result[:] = [False, str(getattr(error, "reason", error))]

    # A thread bounds the whole probe: urlopen's timeout does not cover the name lookup.
    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return False, f"no answer within {timeout:g} s"
    return result[0], ("" if result[0] else result[1])


def choose(spec, pip_args, *, cpu_version, cpu_index, timeout, nvidia, system) -> Choice:
    """The requirement and pip arguments for torch, and the sentence that explains them."""
    cpu_spec = spec or f"torch=={cpu_version}"
    if pip_args:
        requirement = spec or (GPU_SPEC if nvidia else cpu_spec)
        return Choice(requirement, pip_args, f"with your TORCH_PIP_ARGS ({shlex.join(pip_args)}), used as they are")
    if nvidia:
        return Choice(spec or GPU_SPEC, [], "from the default index (NVIDIA driver found: a CUDA build)")
    if system != "Linux":
        return Choice(cpu_spec, [], f"from the default index (no NVIDIA driver; on {system} its wheels are CPU-only)")
    ok, why = index_answers(cpu_index, timeout)
    if ok:
        return Choice(cpu_spec, ["--index-url", cpu_index], f"from PyTorch's CPU-only index {cpu_index} (no NVIDIA driver; the index answered)", True)
    return Choice(
        cpu_spec,
        [],
        f"from the default index: no NVIDIA driver, but PyTorch's CPU-only index {cpu_index} "
        f"cannot be reached ({why}). The default index is what pip is configured with; "
        "on plain PyPI the Linux wheel bundles CUDA, several GB.",
    )


def pip_command(choice: Choice) -> list:
    # --no-compile: no .pyc for all of torch (~50 MB) now; Python writes those it imports
    return [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", choice.requirement, *choice.pip_args]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="", help="TORCH_SPEC: the torch requirement, e.g. 'torch==2.6.0'")
    parser.add_argument("--pip-args", default="", help="TORCH_PIP_ARGS: extra pip arguments, used as they are")
    parser.add_argument("--cpu-version", required=True, help="the torch pinned without an NVIDIA driver")
    parser.add_argument("--cpu-index", default=CPU_INDEX)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds the CPU-only index has to answer")
    parser.add_argument("--nvidia", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--dry-run", action="store_true", help="print the choice and the pip command only")
    args = parser.parse_args(argv)

    nvidia = has_nvidia_driver() if args.nvidia == "auto" else args.nvidia == "yes"
    choice = choose(
        args.spec.strip(),
        shlex.split(args.pip_args),
        cpu_version=args.cpu_version,
        cpu_index=args.cpu_index,
        timeout=args.timeout,
        nvidia=nvidia,
        system=platform.system(),
    )
    print(f"torch: {choice.requirement} {choice.reason}", flush=True)
    command = pip_command(choice)
    if args.dry_run:
        print("pip:", shlex.join(command[1:]))
        return 0
    if subprocess.run(command).returncode == 0:
        return 0
    if not choice.fallback:
        return 1
    print(f"torch: pip failed on {args.cpu_index}; trying the default index once", flush=True)
    return subprocess.run(pip_command(Choice(choice.requirement))).returncode


if __name__ == "__main__":
    sys.exit(main())
