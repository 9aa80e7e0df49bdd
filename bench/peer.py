#!/usr/bin/env python3
"""PyTorch peer of `kdgrid bench`: the same models, batch, optimizer, threads and data layout.

Prints one JSON object per workload: {"workload": ..., "images_per_second": ...}. Data is
synthetic (normalized float32 NCHW, integer labels), built once; timing covers optimizer steps
(forward, loss, backward, Adam update, loss read back to the host as kdgrid does) or evaluation
forward passes, after a warm-up. Run with the torch 2.9.0 of `make torch`.
"""
import json, sys, time, tomllib
import torch
import torch.nn as nn
import torch.nn.functional as F

def cnn(conv, dense, channels, size, classes, batch_norm=False, pool=None):
    layers, c, h = [], channels, size
    for i, out in enumerate(conv):
        layers.append(nn.Conv2d(c, out, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU())
        if pool is None or (i + 1) in pool:
            layers.append(nn.MaxPool2d(2))
            h //= 2
        c = out
    layers.append(nn.Flatten())
    d = c * h * h
    for w in dense:
        layers += [nn.Linear(d, w), nn.ReLU()]
        d = w
    layers.append(nn.Linear(d, classes))
    return nn.Sequential(*layers)

def step_on(model, opt, xb, yb, teacher_logits, T, alpha):
    """One optimizer step on labels, distilled from `teacher_logits` when given (Hinton's loss
    with the KL averaged per sample), the loss read back to the host as kdgrid does."""
    out = model(xb)
    loss = F.cross_entropy(out, yb)
    if teacher_logits is not None:
        kl = F.kl_div(F.log_softmax(out / T, 1), F.softmax(teacher_logits / T, 1), reduction="batchmean")
        loss = alpha * T * T * kl + (1 - alpha) * loss
    opt.zero_grad()
    loss.backward()
    opt.step()
    loss.item()

MODELS = {
    "cnn2": dict(conv=[32, 64], dense=[64]),
    "plain4": dict(conv=[16, 16, 32, 32], dense=[], batch_norm=True, pool=[2, 4]),
}
SHAPES = {"fmnist": (1, 28), "cifar": (3, 32)}

def run(workload, seconds):
    model_name, shape_name, mode = workload.split("/")
    channels, size = SHAPES[shape_name]
    torch.manual_seed(0)
    model = cnn(**MODELS[model_name], channels=channels, size=size, classes=10)
    batch = 500 if mode == "eval" else 64
    n = 2048
    x = torch.randn(n, channels, size, size)
    y = torch.randint(0, 10, (n,))
    teacher_logits = torch.randn(n, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    T, alpha = 4.0, 0.5

    def step(i):
        lo = (i * batch) % (n - batch)
        xb, yb = x[lo:lo + batch], y[lo:lo + batch]
        if mode == "eval":
            with torch.no_grad():
                model.eval()
                model(xb).argmax(1)
            return
        model.train()
        step_on(model, opt, xb, yb, teacher_logits[lo:lo + batch] if mode == "kd" else None, T, alpha)

    for i in range(5):
        step(i)
    start, i = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step(i)
        i += 1
    return i * batch / (time.perf_counter() - start)

def grid(path):
    """The straightforward grid script: every cell trains its chain from scratch (the teacher
    again for each temperature and alpha), evaluating on the test split after each epoch.
    Returns the wall seconds and the training images it processed."""
    m = tomllib.load(open(path, "rb"))
    d, t, g = m["dataset"], m["training"], m["grid"]
    c, size, classes = d["channels"], d["image-size"], d["classes"]
    x = torch.randn(d["train-size"], c, size, size)
    y = torch.randint(0, classes, (d["train-size"],))
    xt = torch.randn(d["test-size"], c, size, size)
    yt = torch.randint(0, classes, (d["test-size"],))
    batch = t["batch-size"]
    images = 0

    def train(name, seed, teacher=None, T=1.0, alpha=0.0):
        nonlocal images
        spec = m["models"][name]
        torch.manual_seed(seed)
        model = cnn(spec["conv"], spec["dense"], c, size, classes)
        opt = torch.optim.Adam(model.parameters(), lr=t["lr"])
        for _ in range(spec.get("epochs", t["epochs"])):
            model.train()
            for idx in torch.randperm(len(x)).split(batch):
                tl = None
                if teacher is not None:
                    with torch.no_grad():
                        teacher.eval()
                        tl = teacher(x[idx])
                step_on(model, opt, x[idx], y[idx], tl, T, alpha)
                images += len(idx)
            model.eval()
            with torch.no_grad():
                for lo in range(0, len(xt), 500):
                    model(xt[lo:lo + 500]).argmax(1).eq(yt[lo:lo + 500]).sum().item()
        return model

    start = time.perf_counter()
    for seed in g["seed"]:
        for chain in g["chains"]:
            if len(chain) == 1:
                train(chain[0], seed)
                continue
            for T in g["temperature"]:
                for alpha in g["alpha"]:
                    teacher = None
                    for name in chain:
                        teacher = train(name, seed, teacher, T, alpha)
    return time.perf_counter() - start, images

def folder(path):
    """One epoch of the seed's 2-layer CNN (conv 32-64 same padding, dense 64, Adam 1e-3, batch
    64, shuffled) on an ImageFolder data set (`train/<class>/*`, `test/<class>/*`, e.g.
    CIFAR-10 as PNG or JPEG files), then the test pass; images decoded by PIL once beforehand
    (kdgrid too decodes before training) and standardized per channel with the training split's
    statistics. Returns the wall seconds of the epoch and test pass, and the training images."""
    import os
    from PIL import Image
    def load(split):
        classes = sorted(os.listdir(os.path.join(path, split)))
        xs, ys = [], []
        for k, c in enumerate(classes):
            d = os.path.join(path, split, c)
            for f in sorted(os.listdir(d)):
                img = Image.open(os.path.join(d, f)).convert("RGB")
                xs.append(torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
                          .view(img.size[1], img.size[0], 3).permute(2, 0, 1))
                ys.append(k)
        return torch.stack(xs).float() / 255, torch.tensor(ys), len(classes)
    x, y, classes = load("train")
    xt, yt, _ = load("test")
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    x, xt = (x - mean) / std, (xt - mean) / std
    torch.manual_seed(0)
    model = cnn([32, 64], [64], x.shape[1], x.shape[2], classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    model.train()
    for idx in torch.randperm(len(x)).split(64):
        step_on(model, opt, x[idx], y[idx], None, 1.0, 0.0)
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(xt), 500):
            model(xt[lo:lo + 500]).argmax(1).eq(yt[lo:lo + 500]).sum().item()
    return time.perf_counter() - start, len(x)

def onnx_teacher():
    """Milliseconds per image of the MobileNetV2 that `make bench` exports to ONNX, in PyTorch
    eager, at batch 1 and 256: the median of 30 and 5 timed calls after a warm-up, as kdgrid
    measures a stage's latency (`latency_ms` of its record)."""
    import importlib.util, os, statistics
    spec = importlib.util.spec_from_file_location(
        "teacher", os.path.join(os.path.dirname(__file__), "..", "scripts", "examples",
                                "pytorch-teacher.py"))
    teacher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(teacher)
    torch.manual_seed(0)
    model = teacher.MobileNetV2(3, 10).eval()
    out = {}
    for batch, repeats in [(1, 30), (256, 5)]:
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            model(x)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - start) * 1e3 / batch)
        out[batch] = statistics.median(times)
    return out

if __name__ == "__main__":
    if sys.argv[1:2] == ["onnx"]:
        torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
        for batch, ms in onnx_teacher().items():
            print(json.dumps({"system": "pytorch", "workload": f"onnx/mobilenetv2/batch{batch}",
                              "images_per_second": 1e3 / ms}), flush=True)
        sys.exit(0)
    if sys.argv[1:2] == ["folder"]:
        torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
        seconds, images = folder(sys.argv[2])
        print(json.dumps({"system": "pytorch", "workload": "cnn2/image-folder/epoch",
                          "seconds": seconds, "images": images}), flush=True)
        sys.exit(0)
    if sys.argv[1:2] == ["grid"]:
        torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
        seconds, images = grid(sys.argv[2])
        print(json.dumps({"system": "pytorch", "workload": "grid/fmnist", "seconds": seconds,
                          "images": images}), flush=True)
        sys.exit(0)
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    torch.set_num_threads(threads)
    for w in ["cnn2/fmnist/plain", "cnn2/fmnist/kd", "cnn2/fmnist/eval",
              "cnn2/cifar/plain", "cnn2/cifar/kd", "cnn2/cifar/eval",
              "plain4/cifar/plain", "plain4/cifar/eval"]:
        print(json.dumps({"system": "pytorch", "workload": w,
                          "images_per_second": run(w, seconds)}), flush=True)
