# Two set-up commands on a fresh machine:
#   make demo   install, then run the main job (`liere compare` on the embedded task)
#   make test   install, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build for development and CI; pip never pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
# Elsewhere, point at the CPU wheels to avoid a CUDA download:
#   make test TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_INDEX ?=
EXTRAS ?= dev,train,bench,onnx,triton,cluster

.PHONY: install demo test bench clean

$(BIN)/liere: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]" "$(TORCH_SPEC)"
	touch $@

install: $(BIN)/liere

demo: install
	$(BIN)/liere compare

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/liere bench

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
