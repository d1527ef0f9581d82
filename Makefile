# make demo: create .venv, install, build the extension, run the quick benchmark and a short training run.
# make test: create .venv, install, build, run the test suite (C++ engine, then Triton under TRITON_INTERPRET=1).
# make bench: regenerate bench/RESULTS.md (section "CPU: every op and the mmd2 scaling sweep"), the scaling
#             plot and the JSON / CSV rows with `gankernels bench --results` (about 40 min on 2 cores).
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCES := $(wildcard csrc/*.cpp csrc/*.h) setup.py

.PHONY: demo test build bench clean

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

test: build
	OMP_NUM_THREADS=2 $(VPY) -m pytest -q tests -m "not triton"
	TRITON_INTERPRET=1 $(VPY) -m pytest -q tests -m triton

clean:
	rm -rf build *.egg-info gankernels/*.so
