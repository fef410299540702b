# One-word entry points. `make test` is what CI runs (through .ci/run).
PY      ?= .venv/bin/python
# On machines without a GPU the CPU build of torch is pinned; GPU users install
# their CUDA build of torch first (see README) and then run `make install`.
TORCH   ?= torch==2.13.0

DATA    ?= data/synthetic
PRETRAINED ?= train/checkpoints/synthetic_pretrain2d.pt
WS3D    := $(PY) -m ws3d.cli

.PHONY: install install-dev test test-isa data data-target train ablation ablation-shift pretrain2d target-oracle2d demo bench lint gpu-check triton-compat

$(PY):
	python3 -m venv .venv

install: $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e .

# The tools of the tests on top: pytest, ruff, and the peers tests/compat checks against.
# Apart, so that training on a fresh machine does not wait for them.
install-dev: install
	$(PY) -m pip install -q -e ".[dev]"

test: install-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

lint: install-dev
	$(PY) -m ruff check .

# The tests whose results pass through the native CPU kernels (the ops, the drop-ins, the
# networks, the trainer, the examples) once more, with the kernels built for the instruction
# set ISA and with PyTorch's and MKL's vectorised paths off, which moves the reference they
# are compared with: a tolerance that holds only for one CPU's build fails here. CI runs it
# after `make test` (about 2 min). The Triton interpreter's tests do not depend on the build,
# nor do the trainer's but the one that compares the fused ops with the reference ops.
ISA ?= -march=x86-64-v2
ISA_TESTS := tests/ops tests/compat tests/model tests/test_trainer.py tests/test_examples.py tests/test_losses.py \
	tests/test_multiview.py tests/data/test_transforms.py
test-isa: install-dev
	WS3D_NATIVE_ISA="$(ISA)" ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE $(PY) -m pytest -q $(ISA_TESTS) \
		-k "not triton and not cuda and not wheel and (fused_ops or not test_trainer)" \
		--ignore=tests/ops/test_kernel_resources.py

# The synthetic benchmark: 6000 2D-labelled images, 6000 multi-view views, 1000 test images
# of unseen people, 96 px, 1000 validation images of other unseen people. Rendered once;
# rm -r $(DATA) to render again.
DOMAIN  ?= source
SPLITS  ?= 2d:6000 mv:6000 val:1000 test:1000
# $(call render,DIR,DOMAIN,SPLIT:COUNT ...,RIG): the splits DIR lacks.
render = @for split in $(3); do set -- $$(echo $$split | tr : ' '); \
		test -f $(1)/$$1.json || $(WS3D) data synth --out $(1) --split $$1 --n $$2 --size 96 --domain $(2) \
		--rig $(4) || exit 1; done
RIG     ?= mixed
data: install
	$(call render,$(DATA),$(DOMAIN),$(SPLITS),$(RIG))

# The target domain of the domain-shift benchmark (docs/weak-stage.md, "Two domains"): the
# same splits rendered as one capture setting, filmed in studios (fixed rigs, which
# `data.rotations=rig` calibrates). Its 2d split trains only the 2D oracle.
TARGET ?= data/target
data-target:
	@$(MAKE) --no-print-directory data DATA=$(TARGET) DOMAIN=target RIG=studio

# The 2D oracle: stage 1 as `make pretrain2d`, on the target's true 2D labels (about 80 min).
# The shipped file was trained on the target as rendered before the studios (README, "Results").
ORACLE ?= train/checkpoints/synthetic_target_oracle2d.pt
target-oracle2d: data-target
	$(WS3D) train train/synthetic_target_pretrain2d.yaml data.root=$(TARGET)
	$(WS3D) export runs/synthetic/target-oracle2d/last.pt $(ORACLE) --data $(TARGET)

# The main job, the case ws3d is for: the shipped 2D model, trained on the source domain's
# 2D labels, adapts to the target domain's unlabelled multi-view footage (no 3D labels, no
# cameras: each studio is calibrated from the people it films) and learns depth there; both
# are evaluated on the target's test split, beside the committed rows of
# `make ablation-shift` (not retrained). A finished run is evaluated, not trained again;
# rm -r runs/shift to start over.
SHIFT_ARGS := data.root=$(TARGET) data.root_2d=$(DATA)
# It renders only the splits it reads: the source's 2D-labelled images, the target's others.
train: install
	$(call render,$(DATA),source,2d:6000,mixed)
	$(call render,$(TARGET),target,mv:6000 val:1000 test:1000,studio)
	$(WS3D) ablation --shift --settings 2D-only WS-no2D-adapt-rig --seeds 1 --runs runs/shift --out runs/shift \
		--reference train/results/ablation_shift.json $(SHIFT_ARGS)

# The domain-shift benchmark (train/results/ablation_shift.{json,md}): every setting of
# `ws3d ablation --shift` on the target's test split (about 11 min per trained row on 2
# AVX2 cores, 100 min in all, after the oracle's 80).
ablation-shift: data data-target $(ORACLE)
	$(WS3D) ablation --shift --runs runs/ablation-shift --out train/results $(SHIFT_ARGS)
$(ORACLE):
	$(MAKE) --no-print-directory target-oracle2d

# The paper's Table 1 on the synthetic benchmark (train/results/ablation.{json,md}), on its
# test split and on two more rendered with other seeds and rigs (about 45 min on 2 cores).
OTHER_TESTS := data/test_seed21_h36m data/test_seed33_orbit
ablation: data
	@for t in "21 h36m" "33 orbit"; do set -- $$t; d=data/test_seed$$1_$$2; \
		test -f $$d/test.json || $(WS3D) data synth --out $$d --split test --n 1000 --size 96 --seed $$1 --rig $$2 \
		|| exit 1; done
	$(WS3D) ablation data.root=$(DATA) --runs runs/ablation --out train/results --test $(DATA) $(OTHER_TESTS)

# Reproduces the shipped 2D checkpoint (about 80 min on 2 cores) from its config and seed.
pretrain2d: data
	$(WS3D) train train/synthetic_pretrain2d.yaml data.root=$(DATA)
	$(WS3D) export runs/synthetic/pretrain2d/last.pt $(PRETRAINED) --data $(DATA)

# Everything a GPU must confirm (benchmarks/gpu_check.py: CUDA build, op tests, sweep, HRNet
# training steps), within 8 min on one H100/H200, results in $(OUT). Installs nothing from the
# network; uses .venv where there is one, else python3 (the GPU machine's torch). No GPU:
# one line, exit 0.
OUT     ?= gpu-check
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) benchmarks/gpu_check.py --out $(OUT)

demo: install
	$(PY) -m ws3d.demo

bench: install-dev
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) -m pytest -q benchmarks --benchmark-enable --benchmark-columns=min,median,mean,rounds \
		--benchmark-autosave

# The GPU kernels compiled, without a GPU, by older Triton releases than CI's: 3.6 (the GPU
# machine's, with torch 2.11) and 3.2 (the oldest ws3d supports, pinned by torch 2.6). One
# venv each under build/ (compile-only: the CPU torch beside them), then
# benchmarks/kernel_resources.py; fails on a compile error or a spill outside float64.
# About 2 min per release once installed; too slow for every CI run.
TRITON_OLD ?= 3.2.0 3.6.0
triton-compat: install
	@for v in $(TRITON_OLD); do venv=build/triton-$$v; \
		test -x $$venv/bin/python || python3 -m venv $$venv || exit 1; \
		$$venv/bin/python -m pip install -q "$(TORCH)" "triton==$$v" numpy scipy opencv-python-headless tqdm \
			pyyaml h5py matplotlib || exit 1; \
		PYTHONPATH=$(CURDIR) $$venv/bin/python benchmarks/kernel_resources.py --no-cuda --fail-on-spills \
			--out $$venv/results > $$venv/log.txt || { tail -20 $$venv/log.txt; exit 1; }; \
		echo "triton $$v: every kernel compiled for sm_80 and sm_90, no spills outside float64 ($$venv/results)"; \
	done
