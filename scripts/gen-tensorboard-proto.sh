#!/usr/bin/env bash
# Regenerates src/track/proto/{tensorboard,tensorboard.hparams,google.protobuf}.rs from the
# TensorBoard .proto files under proto/ (copied from tensorflow/tensorboard, see
# proto/README.md). Run it after updating those files; commit its output.
set -euo pipefail
cd "$(dirname "$0")/.."
out=src/track/proto
target="${CARGO_TARGET_DIR:-$HOME/.cache/kdgrid/target}/protogen"
cargo run --quiet --release --manifest-path scripts/protogen/Cargo.toml --target-dir "$target" -- proto "$out"
echo "generated: $(ls "$out"/*.rs | grep -v mod.rs | tr '\n' ' ')"
