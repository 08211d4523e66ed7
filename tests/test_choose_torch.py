"""scripts/choose_torch.py: where the set-up takes torch from, against local stand-ins for
PyTorch's CPU-only index (one that answers, one that is missing the page, one that nobody
listens on, one that accepts and never answers), and the Makefile passes the overrides and JupyterLab options on."""

import functools
import http.server
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "choose_torch.py"

spec = importlib.util.spec_from_file_location("choose_torch", SCRIPT)
choose_torch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(choose_torch)


def run_script(*args, env=None, timeout=60):
    """Run the script as the Makefile does, printing only (`--dry-run`); return its stdout."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-version", "2.13.0", "--dry-run", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=True,
    )
    return done.stdout


@pytest.fixture
def local_index(tmp_path):
    """A PEP 503 'simple' index with a torch page, served over HTTP on 127.0.0.1."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text('<a href="torch-2.13.0+cpu-cp311.whl">torch</a>\n')
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port():
    """An address on 127.0.0.1 that nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/whl/cpu"


@pytest.fixture
def black_hole():
    """An address that accepts the connection and never answers (a firewall that drops replies)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield f"http://127.0.0.1:{s.getsockname()[1]}/whl/cpu"
    s.close()


def test_uses_the_cpu_only_index_when_it_answers(local_index):
    url = local_index
    out = run_script("--nvidia", "no", "--cpu-index", url)
    assert f"torch: torch==2.13.0 from PyTorch's CPU-only index {url}" in out
    assert f"pip: -m pip install --quiet --no-compile torch==2.13.0 --index-url {url}\n" in out


def test_falls_back_to_the_default_index_when_the_torch_page_is_missing(local_index):
    url = f"{local_index}/whl/cpu"  # no torch/ page under it: HTTP 404
    out = run_script("--nvidia", "no", "--cpu-index", url)
    assert "from the default index" in out and "HTTP 404" in out
    assert "pip: -m pip install --quiet --no-compile torch==2.13.0\n" in out


def test_falls_back_to_the_default_index_when_nothing_listens(closed_port):
    out = run_script("--nvidia", "no", "--cpu-index", closed_port, "--timeout", "5")
    assert f"CPU-only index {closed_port} cannot be reached" in out
    assert "pip: -m pip install --quiet --no-compile torch==2.13.0\n" in out


def test_gives_up_on_an_index_that_never_answers_after_the_timeout(black_hole):
    # The subprocess limit turns a hang into a failure; --timeout 1 must end the probe long before.
    out = run_script("--nvidia", "no", "--cpu-index", black_hole, "--timeout", "1", timeout=30)
    assert f"CPU-only index {black_hole} cannot be reached (" in out
    assert "pip: -m pip install --quiet --no-compile torch==2.13.0\n" in out


@pytest.mark.parametrize("driver_works", [True, False])
def test_an_nvidia_driver_selects_the_cuda_range(tmp_path, closed_port, driver_works):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\nexit {0 if driver_works else 9}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    out = run_script("--cpu-index", closed_port, env=env)
    if driver_works:
        assert "torch: torch>=2.4 from the default index (NVIDIA driver found" in out
        assert "pip: -m pip install --quiet --no-compile 'torch>=2.4'\n" in out
    else:
        assert "torch: torch==2.13.0 from the default index: no NVIDIA driver" in out


def test_torch_spec_and_torch_pip_args_are_used_as_given_without_probing(black_hole):
    out = run_script(
        "--nvidia", "no", "--cpu-index", black_hole, "--timeout", "600",
        "--spec", "torch==2.6.0", "--pip-args", "--index-url https://example.invalid/cpu",
        timeout=30,
    )
    assert "torch: torch==2.6.0 with your TORCH_PIP_ARGS" in out
    assert "pip: -m pip install --quiet --no-compile torch==2.6.0 --index-url https://example.invalid/cpu\n" in out


def test_torch_spec_alone_still_chooses_the_index(local_index):
    url = local_index
    out = run_script("--nvidia", "no", "--cpu-index", url, "--spec", "torch==2.6.0")
    assert f"pip: -m pip install --quiet --no-compile torch==2.6.0 --index-url {url}\n" in out


def test_outside_linux_the_default_index_is_used_without_probing(black_hole):
    choice = choose_torch.choose(
        "", [], cpu_version="2.13.0", cpu_index=black_hole, timeout=600, nvidia=False, system="Darwin"
    )
    assert (choice.requirement, choice.pip_args) == ("torch==2.13.0", [])


def test_a_pip_failure_on_the_cpu_index_retries_the_default_index_once(local_index, monkeypatch, capsys):
    url = local_index
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1 if len(calls) == 1 else 0)

    monkeypatch.setattr(choose_torch.subprocess, "run", fake_run)
    assert choose_torch.main(["--cpu-version", "2.13.0", "--nvidia", "no", "--cpu-index", url]) == 0
    assert [c[3:] for c in calls] == [
        ["install", "--quiet", "--no-compile", "torch==2.13.0", "--index-url", url],
        ["install", "--quiet", "--no-compile", "torch==2.13.0"],
    ]
    assert "trying the default index once" in capsys.readouterr().out


def test_a_pip_failure_with_the_default_index_is_not_retried(closed_port, monkeypatch):
    calls = []
    monkeypatch.setattr(
        choose_torch.subprocess, "run", lambda command, **kw: calls.append(command) or subprocess.CompletedProcess(command, 1)
    )
    assert choose_torch.main(["--cpu-version", "2.13.0", "--nvidia", "no", "--cpu-index", closed_port]) == 1
    assert len(calls) == 1


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_makefile_passes_the_overrides_to_the_script():
    out = subprocess.run(
        ["make", "-n", "-B", ".venv/.ropekit-installed", "TORCH_SPEC=torch==2.6.0",
         "TORCH_PIP_ARGS=--index-url https://example.invalid/cpu"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.replace("\\\n", " ")
    line = next(line for line in out.splitlines() if "choose_torch.py" in line)
    assert "--spec 'torch==2.6.0'" in line
    assert "--pip-args '--index-url https://example.invalid/cpu'" in line


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("uid", ["0", "1000"])
def test_make_lessons_passes_jupyter_args_and_allows_root_only_for_root(tmp_path, uid):
    fake_id = tmp_path / "id"
    fake_id.write_text(f"#!/bin/sh\necho {uid}\n")
    fake_id.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        ["make", "-n", "lessons", "JUPYTER_ARGS=--no-browser --ip 0.0.0.0 --port 8890"],
        cwd=ROOT, capture_output=True, text=True, check=True, env=env,
    ).stdout
    line = next(line for line in out.splitlines() if "jupyter lab" in line)
    assert line.endswith("--no-browser --ip 0.0.0.0 --port 8890 lessons/")
    assert ("--allow-root" in line) == (uid == "0")
