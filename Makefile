# kdgrid: the two commands that matter are `make run` and `make test`.
CARGO ?= cargo
MANIFEST ?= experiments/default.toml

# LibTorch for the `tch` backend: the torch 2.9.0 wheel, installed once into a cache outside the
# checkout (~7 GB with its CUDA libraries), used at build time through LIBTORCH_USE_PYTORCH and
# baked into the binary's rpath by build.rs.
TORCH_VENV ?= $(HOME)/.cache/kdgrid/torch-2.9.0
TCH_ENV = PATH="$(TORCH_VENV)/bin:$$PATH" LIBTORCH_USE_PYTORCH=1

# `make TCH=1 <target>` runs the kdgrid binary that `make test` built (LibTorch compiled in), so
# CI does not compile the heavy crates a second time (`cargo run` would: dev-dependencies change
# the feature set of shared crates).
ifeq ($(TCH),1)
KDGRID = $(TCH_ENV) $(or $(CARGO_TARGET_DIR),target)/release/kdgrid
else
KDGRID = $(CARGO) run --release --quiet --
endif

# Studies whose `ci` profile CI trains and checks against the committed `results/<name>-ci/`.
CI_STUDIES ?= default seed-variance kd-sweep pretrained-teacher text-kd onnx-teacher bert-distill
CHECK_DIR ?= $(CURDIR)/target/check-results
# Empty: bit for bit, which the committed flex tables promise on every x86-64-v3 processor
# (docs/reproducibility.md). Set it (e.g. 0.02) only on a machine the promise does not cover.
CHECK_ACROSS ?=

.PHONY: run data build build-tch torch screenshots test test-flex test-tch test-slurm test-processors lint fmt clean results-ci check-results bench bench-scale build-timings parity

## Train the default experiment on Fashion-MNIST and print its summary.
run: data build
	$(CARGO) run --release --quiet -- run $(MANIFEST)

## Retrain the `ci` profiles of the committed studies into results/<name>-ci/ (rewrites the
## committed tables: review with `git diff`, commit when the change is meant).
results-ci: data
	for s in $(CI_STUDIES); do $(KDGRID) --profile ci run --quiet experiments/$$s.toml || exit 1; done

## Train the `ci` profiles into a scratch folder and compare with the committed tables bit for
## bit, Markdown reports included (flex gives the same bits on every x86-64-v3 processor, AVX2
## and AVX-512 alike); exit 1 with the rows and columns that differ.
check-results: data
	rm -rf "$(CHECK_DIR)"
	for s in $(CI_STUDIES); do \
	  $(KDGRID) --results "$(CHECK_DIR)" --profile ci run --quiet experiments/$$s.toml >/dev/null || exit 1; \
	  $(KDGRID) diff $(if $(CHECK_ACROSS),--across $(CHECK_ACROSS)) results/$$s-ci "$(CHECK_DIR)/$$s-ci" || exit 1; \
	done

## A real single-node Slurm cluster (installed from Debian and started as root, with a private
## configuration) runs the default study's `ci` profile as job arrays; its tables must equal a
## local run's bit for bit. Compares with what check-results trained when it is there.
test-slurm: data $(if $(filter 1,$(TCH)),,build)
	scripts/test-slurm.sh "$(or $(CARGO_TARGET_DIR),target)/release/kdgrid" experiments/default.toml \
	  $(wildcard $(CHECK_DIR)/default-ci)

## The seed CNN trained by kdgrid and by the same recipe in PyTorch (scripts/parity/study.py),
## 8 seeds each on synthetic CIFAR-shaped data the script writes to data/parity-cifar; prints
## both means and the difference with its 95% intervals (`kdgrid stats`).
PARITY_DIR ?= $(CURDIR)/target/parity
parity: torch
	"$(TORCH_VENV)/bin/python" scripts/parity/study.py --data data/parity-cifar --write-data \
	  --seeds 8 --epochs 2 --out "$(PARITY_DIR)/pytorch.csv"
	$(KDGRID) --results "$(PARITY_DIR)" run --quiet experiments/parity-cifar.toml
	$(KDGRID) stats "$(PARITY_DIR)/parity-cifar/runs.csv:test_accuracy" \
	  "$(PARITY_DIR)/pytorch.csv:test_accuracy" --labels kdgrid,pytorch

## What holds on processors the promise does not cover (docs/reproducibility.md): the processor
## study trained natively and under qemu as an x86-64-v2 processor (SSE4.2, no AVX2/FMA) and as
## 64-bit ARM (cross-built with Debian's gcc-aarch64-linux-gnu; `rustup target add
## aarch64-unknown-linux-gnu`). Prints each run's digest and whether they equal this machine's.
AARCH64 = aarch64-unknown-linux-gnu
AARCH64_ENV = CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
	AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
test-processors: build
	-scripts/compare-processors.sh target/release/kdgrid -- qemu-x86_64 -cpu Nehalem target/release/kdgrid 2>&1 | grep -v "TCG doesn't support"
	$(AARCH64_ENV) $(CARGO) build --release --target $(AARCH64)
	-scripts/compare-processors.sh target/release/kdgrid -- qemu-aarch64 -L /usr/aarch64-linux-gnu \
	  target/$(AARCH64)/release/kdgrid

## Fetch Fashion-MNIST into data/ (from Debian's package; once).
data:
	@scripts/fetch-fashion-mnist.sh data/fashion-mnist

build:
	$(CARGO) build --release

## kdgrid with both backends (flex and LibTorch CPU/CUDA).
build-tch: torch
	$(TCH_ENV) $(CARGO) build --release --features tch

torch: $(TORCH_VENV)/.installed-io $(TORCH_VENV)/.installed-scipy $(TORCH_VENV)/.installed-onnxscript \
	$(TORCH_VENV)/.installed-transformers $(TORCH_VENV)/.installed-viewers

$(TORCH_VENV)/.installed:
	python3 -m venv "$(TORCH_VENV)"
	"$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check torch==2.9.0
	touch "$@"

# What the teacher-export script needs next to torch: safetensors files (which go through numpy)
# and image folders.
$(TORCH_VENV)/.installed-io: $(TORCH_VENV)/.installed
	"$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check safetensors==0.8.0 numpy==2.3.4 pillow==11.3.0
	touch "$@"

# scipy for the differential test of the statistics (scripts/statistics-reference.py recomputes
# every committed study's summary, comparisons and variance tables). A stamp of its own, so
# caches that already hold `.installed-io` get it too.
$(TORCH_VENV)/.installed-scipy: $(TORCH_VENV)/.installed-io
	"$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check scipy==1.17.1
	touch "$@"

# `onnx` for `torch.onnx.export` (scripts/examples/pytorch-teacher.py export): the ONNX teachers'
# parity tests export PyTorch models and compare kdgrid's logits with PyTorch's.
$(TORCH_VENV)/.installed-onnx: $(TORCH_VENV)/.installed-io
	"$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check onnx==1.19.1
	touch "$@"

# `onnxscript` for torch 2.9's default exporter (`torch.onnx.export` without `dynamo=False`:
# torch.export, weights in `<file>.data`), which the ONNX tests and `make bench` export with. A
# stamp of its own, so caches that already hold `.installed-onnx` get it too.
$(TORCH_VENV)/.installed-onnxscript: $(TORCH_VENV)/.installed-onnx
	"$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check onnxscript==0.7.2
	touch "$@"

# `transformers` and `tokenizers` for the BERT teachers: scripts/examples/bert-teacher.py builds
# Hugging Face checkpoints, and the tests compare kdgrid's token ids and logits with Python's.
$(TORCH_VENV)/.installed-transformers: $(TORCH_VENV)/.installed-io
	"$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check transformers==4.57.1 tokenizers==0.22.2
	touch "$@"

# The viewers `kdgrid run --tensorboard` and `kdgrid export --mlflow` feed: the tests read
# the event files through a real `tensorboard` server and the runs through MLflow's client
# against a real `mlflow server` (scripts/check-tensorboard.py, scripts/check-mlflow.py).
$(TORCH_VENV)/.installed-viewers: $(TORCH_VENV)/.installed-io
	"$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check tensorboard==2.21.0 mlflow==3.18.0
	touch "$@"

## docs/img/tensorboard-*.png: TensorBoard's scalars and HParams views of the default study
## (its store from `make run`), taken with headless Chromium (Debian's `chromium`).
screenshots: build torch
	scripts/tensorboard-screenshots.sh "$(or $(CARGO_TARGET_DIR),target)/release/kdgrid" "$(TORCH_VENV)/bin"

## The full test suite on both backends (release mode: the tests train real, tiny models).
## With `tch` compiled in, every flex test runs too, plus the LibTorch ones.
test: test-tch

## The suite without LibTorch (no torch download).
test-flex:
	$(CARGO) test --release

test-tch: torch
	$(TCH_ENV) KDGRID_TORCH_PYTHON="$(TORCH_VENV)/bin/python" $(CARGO) test --release --features tch

## kdgrid (flex, and tch) against the PyTorch peer on the same workloads: bench/results.csv.
bench: torch
	$(TCH_ENV) $(CARGO) build --release --quiet --features tch
	scripts/bench.sh "$(or $(CARGO_TARGET_DIR),target)/release/kdgrid" "$(TORCH_VENV)/bin/python" 2 5

## kdgrid's own work (plan, status, report, diff, per-stage overhead of run) on synthetic studies
## of tiny stages: time, peak memory and the fitted exponent (docs/performance.md). Sizes in
## stages: BENCH_SCALE="1000 10000 100000" (100k takes hours of `run` on 2 cores).
BENCH_SCALE ?= 1000 10000
bench-scale: build
	python3 scripts/bench-scale.py "$(or $(CARGO_TARGET_DIR),target)/release/kdgrid" $(BENCH_SCALE)

## A fresh machine's two builds (`make run`'s, then `make test`'s) from an empty target folder,
## timed by `cargo --timings`: wall time and the longest crates (docs/performance.md).
build-timings: torch
	$(TCH_ENV) scripts/build-timings.sh

lint:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --release --quiet
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
