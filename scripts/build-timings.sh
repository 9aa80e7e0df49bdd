#!/usr/bin/env bash
# `make build-timings`: the two builds a fresh machine does, from an empty target folder, timed by
# cargo itself: `make run`'s (flex) and then `make test`'s (LibTorch and the test dependencies) on
# top of it. Prints each build's wall time and the crates that took longest; cargo's HTML reports
# stay in TARGET/cargo-timings/. Usage: scripts/build-timings.sh [TARGET] (default
# target/build-timings; it is emptied first). LibTorch comes from the environment `make torch`
# sets up (LIBTORCH_USE_PYTORCH with the cached venv's python on PATH).
set -euo pipefail
target=${1:-target/build-timings}
rm -rf "$target"
mkdir -p "$target"

timed() { # LABEL COMMAND...: runs the build, prints its wall seconds
  local label=$1 start end
  shift
  start=$(date +%s)
  "$@" --timings --target-dir "$target" >"$target/$label.log" 2>&1 || {
    tail -30 "$target/$label.log" >&2
    exit 1
  }
  end=$(date +%s)
  echo "$label: $((end - start)) s"
}

timed make-run cargo build --release
cp "$(ls -t "$target"/cargo-timings/cargo-timing-2*.html | head -1)" "$target/make-run.html"
timed make-test cargo test --release --features tch --no-run
cp "$(ls -t "$target"/cargo-timings/cargo-timing-2*.html | head -1)" "$target/make-test.html"

python3 - "$target/make-run.html" "$target/make-test.html" <<'PY'
import json, re, sys
for path in sys.argv[1:]:
    m = re.search(r"const UNIT_DATA = (\[.*?\]);", open(path).read(), re.S)
    if not m:
        print(f"{path}: cargo's report format changed; open it in a browser")
        continue
    units = sorted(json.loads(m.group(1)), key=lambda u: -u["duration"])
    total = sum(u["duration"] for u in units)
    print(f"\n{path}: {len(units)} units, {total:.0f} s of compiler time; longest:")
    for u in units[:12]:
        if u["mode"] == "run-custom-build":
            what = " (build script run)"
        else:
            what = f" ({u['target'].strip()})" if u["target"].strip() else ""
        print(f"  {u['duration']:6.1f} s  {u['name']} {u['version']}{what}")
PY
