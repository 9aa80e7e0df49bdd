# kdgrid: the two commands that matter are `make run` and `make test`.
CARGO ?= cargo
MANIFEST ?= experiments/default.toml

.PHONY: run data build test lint fmt bench clean

## Train the default experiment on Fashion-MNIST and print its summary.
run: data build
	$(CARGO) run --release --quiet -- run $(MANIFEST)

## Fetch Fashion-MNIST into data/ (from Debian's package; once).
data:
	@scripts/fetch-fashion-mnist.sh data/fashion-mnist

build:
	$(CARGO) build --release

## The full test suite (release mode: the tests train real, tiny models).
test:
	$(CARGO) test --release

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
