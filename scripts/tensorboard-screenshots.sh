#!/usr/bin/env bash
# docs/img/tensorboard-{scalars,hparams}.png: TensorBoard's views of the default study, taken
# with headless Chromium against a local `tensorboard --logdir` (make screenshots).
#   scripts/tensorboard-screenshots.sh KDGRID PYTHON_BIN_DIR
# Needs the default study's store (results/default/stages, from `make run`) and Debian's
# chromium (`apt-get install chromium`).
set -euo pipefail
cd "$(dirname "$0")/.."
kdgrid="$1"
bin="$2"
chromium="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$chromium" ] || { echo "chromium is required: apt-get install chromium" >&2; exit 2; }
scratch="$(mktemp -d)"
trap 'kill "$tb" 2>/dev/null || true; rm -rf "$scratch"' EXIT
"$kdgrid" export --tensorboard "$scratch/tb" experiments/default.toml
port="$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin/tensorboard" --logdir "$scratch/tb" --host 127.0.0.1 --port "$port" >"$scratch/tb.log" 2>&1 &
tb=$!
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$port/data/plugin/scalars/tags" | grep -q 'final/test_loss' && break
  sleep 1
done
mkdir -p docs/img
shot() {
  "$chromium" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1800,950 --virtual-time-budget=20000 \
    --user-data-dir="$scratch/chrome" --screenshot="$1" "$2" 2>/dev/null
  echo "wrote $1"
}
# Scalars dashboard, test accuracy and loss of every stage.
shot docs/img/tensorboard-scalars.png "http://127.0.0.1:$port/#scalars&tagFilter=accuracy%2Ftest%7Closs%2Ftest"
shot docs/img/tensorboard-hparams.png "http://127.0.0.1:$port/#hparams"
