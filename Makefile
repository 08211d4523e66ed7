# Two commands do everything:
#   make lessons   set up .venv (first time only) and open the lessons in JupyterLab
#   make test      set up .venv (first time only) and run every test: unit tests + nbval over lessons/
#
# The set-up is idempotent and local: it creates .venv/ in this folder, installs ropekit
# editable with the lesson and test dependencies, and registers nothing globally.
# Torch: scripts/choose_torch.py picks where it comes from and prints its choice. With an
# NVIDIA driver (nvidia-smi -L works), the newest torch in pyproject's range (a CUDA build).
# Without one on Linux, torch==$(CPU_TORCH) (the version the kit's CPU runs, CI included, are
# tested with) from PyTorch's CPU-only index when it answers within $(TORCH_INDEX_TIMEOUT) s, else
# from pip's default index (a local CPU wheel where one is configured). Overrides, on the make
# command line: TORCH_SPEC='torch==2.6.0' (another torch), TORCH_PIP_ARGS='--index-url URL'
# (pip arguments used as they are, no probing).
#
# Size: pip installs without byte-compiling (--no-compile; Python writes the .pyc files of what
# it imports, when it first imports them), and scripts/slim_cpu_install.py then removes what a
# CPU-only set-up never uses: from Triton what only a GPU uses (NVIDIA's and AMD's compilers and
# profilers, 471 MiB) and the debug information and symbol tables of its libraries (317 MiB);
# from torch its C++ test programs (torch/test/ and the test programs in torch/bin/, 121 MiB;
# torch_shm_manager, which DataLoader workers need, stays). It does so only on Linux without an
# NVIDIA driver and with a CPU-only torch, where Triton runs as the interpreter alone: the CPU
# .venv is then 1293 MiB (1.36 GB) after the set-up. SLIM=0 keeps everything whole (for a set-up
# already made: `make clean` first); SLIM_TRITON=0, its old name, does the same.
#
# JupyterLab: `make lessons JUPYTER_ARGS='--no-browser --ip 0.0.0.0 --port 8890'` passes
# options through; as root (Docker, cloud notebooks, WSL) --allow-root is added.

PYTHON ?= python3
VENV ?= .venv
CPU_TORCH ?= 2.13.0
TORCH_SPEC ?=
TORCH_PIP_ARGS ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_TIMEOUT ?= 5
SLIM_TRITON ?=
SLIM ?= $(or $(SLIM_TRITON),1)
JUPYTER_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.ropekit-installed
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
# setuptools reports every editable install as a warning, which pip shows despite --quiet
QUIET_EDITABLE := PYTHONWARNINGS='ignore:Editable installation:UserWarning'
ifeq ($(filter $(SLIM),0 1),)
$(error SLIM (or its old name SLIM_TRITON) must be 1 (slim Triton and torch on a CPU-only set-up, the default) or 0 (keep them whole), not '$(SLIM)')
endif

.PHONY: lessons test setup bench gallery clean

lessons: $(STAMP)
	$(BIN)/jupyter lab $(AS_ROOT) $(JUPYTER_ARGS) lessons/

test: $(STAMP)
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile scripts/choose_torch.py scripts/slim_cpu_install.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile --upgrade pip
	$(BIN)/python scripts/choose_torch.py --cpu-version $(CPU_TORCH) --spec '$(TORCH_SPEC)' \
		--pip-args '$(TORCH_PIP_ARGS)' --cpu-index $(TORCH_CPU_INDEX) --timeout $(TORCH_INDEX_TIMEOUT)
	$(QUIET_EDITABLE) $(BIN)/python -m pip install --quiet --no-compile -e ".[lessons,test]"
	$(BIN)/python scripts/slim_cpu_install.py $(if $(filter 0,$(SLIM)),--keep)
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/python -m ropekit.bench --out benchmarks/results/local

gallery: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python docs/make_gallery.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
