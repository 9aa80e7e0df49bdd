#!/usr/bin/env python3
"""The PyTorch side of `make parity`: the seed's 2-layer CNN trained by a plain PyTorch recipe on
synthetic CIFAR-shaped data, one run per seed, test accuracies to a CSV.

With --write-data it first writes the data set into --data (unless it is there) as CIFAR-10 binaries (data_batch_1..5.bin,
test_batch.bin), deterministically, so that kdgrid (experiments/parity-cifar.toml) reads the
very same images. The recipe mirrors that manifest: conv 32-64 (3x3, same padding, ReLU, 2x2
max-pool after each), dense 64, Adam lr 1e-3 with PyTorch's defaults, batch 64, inputs scaled
to [0, 1] and standardized per channel with the training split's statistics, shuffled every
epoch by a DataLoader seeded with the run's seed, test accuracy after the last epoch.

usage: study.py --data DIR [--write-data] --seeds N --epochs E --out CSV [--threads T]
"""

import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES, C, H, W = 10, 3, 32, 32
TRAIN, TEST = 6000, 2000


def synthesize(seed=20261129):
    """Class templates of low-frequency colour blobs, mixed with a distractor pattern, shifted
    and noised: hard enough that seeds spread, easy enough to learn in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    def blobs(n):
        coarse = torch.rand(n, C, 4, 4, generator=g)
        return F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)
    templates, distractors = blobs(CLASSES), blobs(32)

    def split(n):
        labels = torch.randint(0, CLASSES, (n,), generator=g)
        mix = distractors[torch.randint(0, 32, (n,), generator=g)]
        x = 0.2 * templates[labels] + 0.8 * mix + 0.4 * torch.randn(n, C, H, W, generator=g)
        shifts = torch.randint(-3, 4, (n, 2), generator=g)
        x = torch.stack([torch.roll(img, (int(s[0]), int(s[1])), dims=(1, 2)) for img, s in zip(x, shifts)])
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), labels.to(torch.uint8)
    return split(TRAIN), split(TEST)


def write_cifar(path, images, labels):
    with open(path, "wb") as f:
        for img, y in zip(images, labels):
            f.write(bytes([int(y)]))
            f.write(bytes(img.flatten().tolist()))


def read_cifar(path):
    raw = open(path, "rb").read()
    rec = 1 + C * H * W
    n = len(raw) // rec
    t = torch.tensor(list(raw), dtype=torch.uint8).reshape(n, rec)
    return t[:, 1:].reshape(n, C, H, W), t[:, 0].long()


def model():
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, CLASSES),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--write-data", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.write_data and not os.path.exists(os.path.join(args.data, "test_batch.bin")):
        os.makedirs(args.data, exist_ok=True)
        (xtr, ytr), (xte, yte) = synthesize()
        per = TRAIN // 5
        for i in range(5):
            write_cifar(os.path.join(args.data, f"data_batch_{i + 1}.bin"), xtr[i * per:(i + 1) * per], ytr[i * per:(i + 1) * per])
        write_cifar(os.path.join(args.data, "test_batch.bin"), xte, yte)
    parts = [read_cifar(os.path.join(args.data, f"data_batch_{i}.bin")) for i in range(1, 6)]
    xtr = torch.cat([p[0] for p in parts]).float() / 255
    ytr = torch.cat([p[1] for p in parts])
    xte, yte = read_cifar(os.path.join(args.data, "test_batch.bin"))
    xte = xte.float() / 255
    mean = xtr.mean(dim=(0, 2, 3), keepdim=True)
    std = xtr.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    rows = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        net = model()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(xtr, ytr), batch_size=64, shuffle=True,
            generator=torch.Generator().manual_seed(seed))
        for _ in range(args.epochs):
            net.train()
            for x, y in loader:
                opt.zero_grad()
                F.cross_entropy(net(x), y).backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            acc = (net(xte).argmax(1) == yte).float().mean().item()
        rows.append((seed, acc))
        print(f"pytorch seed {seed}: test accuracy {acc:.4f}", flush=True)
    with open(args.out, "w") as f:
        f.write("seed,test_accuracy\n")
        for seed, acc in rows:
            f.write(f"{seed},{acc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
