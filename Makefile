# make demo: create .venv, install, build the extension, run the quick benchmark and a short training run.
# make test: create .venv, install, build, run the test suite (C++ engine and the AOT compile check of the Triton
#            kernels, then Triton under TRITON_INTERPRET=1).
# make bench: regenerate bench/RESULTS.md (section "CPU: every op and the mmd2 scaling sweep"), the scaling
#             plot and the JSON / CSV rows with `gankernels bench --results` (about 40 min on 2 cores).
# make aot: compile every Triton kernel configuration for sm_80 / sm_90 without a GPU (docs/AOT.md; long).
# make test-gpu / bench-gpu: on a CUDA machine, with $(PY) as is (nothing installed; see README "GPU runs").
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCES := $(wildcard csrc/*.cpp csrc/*.h) setup.py

.PHONY: demo test build bench clean aot test-gpu bench-gpu

$(VPY):
	$(PY) -m venv $(VENV)

$(STAMP): $(VPY) Makefile
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "torch==2.13.0" numpy ninja pytest hypothesis setuptools wheel triton torchmetrics matplotlib scikit-learn pytest-benchmark
	touch $(STAMP)

build: $(STAMP) $(SOURCES)
	MAX_JOBS=2 $(VPY) -m pip install -q --no-build-isolation --no-deps -e .

# the quick benchmark table, then a ~2 min CPU training run (mmd-gan on ring8): samples pictures,
# metrics.jsonl and report.md in runs/demo
demo: build
	OMP_NUM_THREADS=2 $(VPY) -m bench.quick
	rm -rf runs/demo
	OMP_NUM_THREADS=2 $(VPY) -m gankernels train --recipe mmd-gan --data ring8 --batch 512 --steps 3000 --out runs/demo

BENCH_THREADS ?= 2
bench: build
	$(VPY) -m pip install -q pykeops   # the KeOps baseline (GeomLoss rows stay "n/a" unless installed)
	OMP_NUM_THREADS=$(BENCH_THREADS) $(VPY) -m gankernels bench --results --threads $(BENCH_THREADS) --md bench/RESULTS.md \
	  --plot bench/scaling_mmd_cpu.png --json bench/results_cpu.json --csv bench/results_cpu.csv

# the first run is not interpreted: it holds the C++ engine tests and tests/test_aot.py (real Triton compiles)
test: build
	env -u TRITON_INTERPRET OMP_NUM_THREADS=2 $(VPY) -m pytest -q tests -m "not triton"
	TRITON_INTERPRET=1 $(VPY) -m pytest -q tests -m triton

# every kernel x configuration x dtype x arch; resumes from docs/aot_results.jsonl (same Triton version and kernel source).
# Exit 1 when a variant fails to compile, spills over 64 B or exceeds the shared memory (the table is written
# anyway).  AOT_ARGS=--shard i/n splits it over machines.
AOT_ARGS ?=
aot: build
	env -u TRITON_INTERPRET OMP_NUM_THREADS=1 $(VPY) -m gankernels.aot --md docs/AOT.md --results docs/aot_results.jsonl $(AOT_ARGS)

# GPU machine (torch + triton preinstalled, package installed with
# `pip install --no-build-isolation --no-deps -e .`): the preflight (CUDA, driver vs Triton's ptxas, one
# launch), then the GPU tests first (Triton kernels on CUDA tensors, CUDA cases, NCCL / torchrun at world
# size 1), then the rest of the suite (CPU tests; the AOT compile check is left to make test).  Without the
# interpreter.  TEST_GPU_ARGS (e.g. -x, --durations=20) go to every pytest run.
TEST_GPU_ARGS ?=
test-gpu:
	env -u TRITON_INTERPRET $(PY) -m gankernels.gpucheck
	env -u TRITON_INTERPRET $(PY) -m pytest -q tests -m triton $(TEST_GPU_ARGS)
	env -u TRITON_INTERPRET $(PY) -m pytest -q tests/test_gpu_distributed.py tests/test_gpucheck.py tests/test_gpu_launch.py \
	  tests/test_pairwise.py -k "cuda or nccl or gpu" $(TEST_GPU_ARGS)
	env -u TRITON_INTERPRET $(PY) -m pytest -q tests -m "not triton" -k "not cuda" $(TEST_GPU_ARGS) \
	  --ignore tests/test_aot.py --ignore tests/test_gpu_distributed.py --ignore tests/test_gpucheck.py --ignore tests/test_gpu_launch.py

bench-gpu:
	PY=$(PY) bench/gpu.sh

clean:
	rm -rf build *.egg-info gankernels/*.so
