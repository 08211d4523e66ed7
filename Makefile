# Two commands do everything:
#   make lessons   set up .venv (first time only) and open the lessons in JupyterLab
#   make test      set up .venv (first time only) and run every test: unit tests + nbval over lessons/
#
# The set-up is idempotent and local: it creates .venv/ in this folder, installs ropekit
# editable with the lesson and test dependencies, and registers nothing globally.
# Torch: with an NVIDIA driver present (nvidia-smi works) pip installs the newest torch
# that satisfies pyproject's range (a CUDA build); without one it pins torch==$(CPU_TORCH),
# the version the kit's CPU runs (CI included) are tested with, which pip takes from a local
# CPU-only wheel where one is configured. PyPI's own Linux wheel of it bundles CUDA; for
# PyTorch's small CPU-only build add
#   TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
# and pin another torch with TORCH_SPEC='torch==2.6.0' (both on the make command line).

PYTHON ?= python3
VENV ?= .venv
CPU_TORCH ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.ropekit-installed
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
ifeq ($(HAS_CUDA),yes)
TORCH_SPEC ?= torch>=2.4
else
TORCH_SPEC ?= torch==$(CPU_TORCH)
endif
TORCH_PIP_ARGS ?=

.PHONY: lessons test setup bench gallery clean

lessons: $(STAMP)
	$(BIN)/jupyter lab lessons/

test: $(STAMP)
	$(BIN)/python -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install --quiet -e ".[lessons,test]"
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/python -m ropekit.bench --out benchmarks/results/local

gallery: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python docs/make_gallery.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
