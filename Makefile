# One-word entry points. `make test` is what CI runs (through .ci/run).
PY      ?= .venv/bin/python
# On machines without a GPU the CPU build of torch is pinned; GPU users install
# their CUDA build of torch first (see README) and then run `make install`.
TORCH   ?= torch==2.13.0

.PHONY: install test demo bench lint

$(PY):
	python3 -m venv .venv

install: $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

demo: install
	$(PY) -m ws3d.demo

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) -m pytest -q benchmarks --benchmark-enable --benchmark-columns=min,median,mean,rounds \
		--benchmark-autosave
