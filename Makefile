# kdgrid: the two commands that matter are `make run` and `make test`.
CARGO ?= cargo
MANIFEST ?= experiments/default.toml

# LibTorch for the `tch` backend: the torch 2.9.0 wheel, installed once into a cache outside the
# checkout (~7 GB with its CUDA libraries), used at build time through LIBTORCH_USE_PYTORCH and
# baked into the binary's rpath by build.rs.
TORCH_VENV ?= $(HOME)/.cache/kdgrid/torch-2.9.0
TCH_ENV = PATH="$(TORCH_VENV)/bin:$$PATH" LIBTORCH_USE_PYTORCH=1

.PHONY: run data build build-tch torch test test-flex test-tch lint fmt clean

## Train the default experiment on Fashion-MNIST and print its summary.
run: data build
	$(CARGO) run --release --quiet -- run $(MANIFEST)

## Fetch Fashion-MNIST into data/ (from Debian's package; once).
data:
	@scripts/fetch-fashion-mnist.sh data/fashion-mnist

build:
	$(CARGO) build --release

## kdgrid with both backends (flex and LibTorch CPU/CUDA).
build-tch: torch
	$(TCH_ENV) $(CARGO) build --release --features tch

torch: $(TORCH_VENV)/.installed

$(TORCH_VENV)/.installed:
	python3 -m venv "$(TORCH_VENV)"
	"$(TORCH_VENV)/bin/pip" install --quiet --disable-pip-version-check torch==2.9.0
	touch "$@"

## The full test suite on both backends (release mode: the tests train real, tiny models).
## With `tch` compiled in, every flex test runs too, plus the LibTorch ones.
test: test-tch

## The suite without LibTorch (no torch download).
test-flex:
	$(CARGO) test --release

test-tch: torch
	$(TCH_ENV) $(CARGO) test --release --features tch

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
