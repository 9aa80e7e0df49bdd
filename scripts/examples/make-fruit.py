#!/usr/bin/env python3
"""Writes the small image folder `experiments/data/fruit/` (ImageFolder layout) that the
example manifests and tests use: five classes of fruit-like shapes (apple, banana, lime, plum,
orange) on 40x40 RGB images, with random position, size, colour jitter and background.
Standard library only; the same seed always writes the same files.

    python3 scripts/examples/make-fruit.py experiments/data/fruit
"""
import math
import os
import random
import struct
import sys
import zlib

SIZE = 40
CLASSES = {
    # name: (rgb, shape)
    "apple": ((200, 30, 40), "disk"),
    "banana": ((230, 210, 60), "crescent"),
    "lime": ((90, 190, 60), "small-disk"),
    "plum": ((110, 40, 120), "ellipse"),
    "orange": ((240, 140, 30), "dotted-disk"),
}
SPLITS = {"train": 40, "test": 20}


def png(path, pixels):
    """Writes `pixels` (rows of (r, g, b)) as an 8-bit RGB PNG."""
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def inside(shape, dx, dy, r):
    d = math.hypot(dx, dy)
    if shape == "disk":
        return d < r
    if shape == "small-disk":
        return d < 0.6 * r
    if shape == "ellipse":
        return (dx / (0.6 * r)) ** 2 + (dy / r) ** 2 < 1
    if shape == "dotted-disk":
        return d < r and not (d < 0.25 * r)
    if shape == "crescent":
        return d < r and math.hypot(dx - 0.45 * r, dy - 0.2 * r) > 0.8 * r
    raise ValueError(shape)


def image(rng, colour, shape):
    bg = tuple(rng.randrange(60, 220) for _ in range(3))
    cx, cy = rng.uniform(14, 26), rng.uniform(14, 26)
    r = rng.uniform(9, 13)
    col = tuple(max(0, min(255, c + rng.randrange(-30, 31))) for c in colour)
    rows = []
    for y in range(SIZE):
        row = []
        for x in range(SIZE):
            px = col if inside(shape, x - cx, y - cy, r) else bg
            row.append(px)
        rows.append(row)
    return rows


def main(out):
    rng = random.Random(2026)
    for split, n in SPLITS.items():
        for name, (colour, shape) in CLASSES.items():
            folder = os.path.join(out, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                png(os.path.join(folder, f"{i:03d}.png"), image(rng, colour, shape))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiments/data/fruit")
