#!/usr/bin/env bash
# Puts Fashion-MNIST (IDX, gzipped) into $1 (default data/fashion-mnist) from Debian's
# `dataset-fashion-mnist` package; no other download is needed or attempted.
set -euo pipefail
dest=${1:-data/fashion-mnist}
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have=1
for f in "${files[@]}"; do [ -s "$dest/$f" ] || have=0; done
[ "$have" = 1 ] && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download dataset-fashion-mnist >/dev/null 2>&1; then
  echo "fetch-fashion-mnist: refreshing the package lists" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
  apt-get download dataset-fashion-mnist
fi
dpkg-deb -x dataset-fashion-mnist_*.deb pkg
cd - >/dev/null
mkdir -p "$dest"
for f in "${files[@]}"; do
  cp "$work/pkg/usr/share/datasets/fashion-mnist/$f" "$dest/$f.part"
  mv "$dest/$f.part" "$dest/$f"
done
echo "Fashion-MNIST is in $dest"
