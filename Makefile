# One-word entry points. `make test` is what CI runs (through .ci/run).
PY      ?= .venv/bin/python
# On machines without a GPU the CPU build of torch is pinned; GPU users install
# their CUDA build of torch first (see README) and then run `make install`.
TORCH   ?= torch==2.13.0

DATA    ?= data/synthetic
WS3D    := $(PY) -m ws3d.cli

.PHONY: install test train demo bench lint

$(PY):
	python3 -m venv .venv

install: $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

# The main job: render the synthetic set, pre-train 2D, train weakly supervised (no 3D
# labels, estimated rotations), evaluate. Finished stages are skipped; rm -r runs/synthetic
# to start over.
train: install
	@for split in "2d 6000" "mv 6000" "test 1000"; do set -- $$split; \
		test -f $(DATA)/$$1.json || $(WS3D) data synth --out $(DATA) --split $$1 --n $$2 --size 96 || exit 1; done
	$(WS3D) train train/synthetic_pretrain2d.yaml data.root=$(DATA)
	$(WS3D) train train/synthetic_weak.yaml data.root=$(DATA)
	$(WS3D) eval runs/synthetic/weak/last.pt --data $(DATA)

demo: install
	$(PY) -m ws3d.demo

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) -m pytest -q benchmarks --benchmark-enable --benchmark-columns=min,median,mean,rounds \
		--benchmark-autosave
