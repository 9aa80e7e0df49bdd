#!/usr/bin/env python3
"""A teacher trained elsewhere: trains a torchvision-style ResNet (or MobileNetV2, or a small
ConvNeXt, a family kdgrid does not have) in PyTorch on an image folder and saves its
`state_dict` (safetensors and/or `torch.save`), exports it to ONNX, or checks that kdgrid
computes the same logits from such a file.

    # train: writes the weights kdgrid imports with `weights = "..."`
    python pytorch-teacher.py train --data experiments/data/fruit --depth 8 --epochs 40 \
        --out experiments/data/fruit-resnet8.safetensors [--pt teacher.pt]
    # export: the same network to ONNX (`onnx = "..."`), from weights or seeded random ones
    python pytorch-teacher.py export --weights experiments/data/fruit-resnet8.safetensors \
        --depth 8 --classes 5 --size 40 --onnx experiments/data/fruit-resnet8.onnx
    # check: kdgrid's logits (from `kdgrid predict --inputs`) against PyTorch's on the same images
    python pytorch-teacher.py check --weights teacher.pt --depth 8 --classes 5 \
        --predictions predictions.json

The network is the `resnet` family of docs/manifest.md: torchvision's BasicBlock ResNet (1x1
conv + batch norm shortcuts), with the CIFAR stem (3x3 conv, depth 6n + 2) or the ImageNet stem
(7x7 stride-2 conv and max-pool, depth 18 or 34). Images are normalized per channel with the
training split's mean and standard deviation, as kdgrid does, unless `--mean`/`--std` give the
normalization (in [0, 1] pixel units) an ONNX teacher declares in `input`; `--train-size`
trains on images resized to that size (bilinear), as `input.size` makes kdgrid feed them. Needs torch, pillow and
safetensors (`make torch` installs them into the venv).
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + shortcut)


class ResNet(nn.Module):
    def __init__(self, depth, channels, classes):
        super().__init__()
        if depth in (18, 34):
            blocks = [2, 2, 2, 2] if depth == 18 else [3, 4, 6, 3]
            widths = [64, 128, 256, 512]
            self.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
            self.pool = nn.MaxPool2d(3, 2, 1)
        else:
            assert depth >= 8 and (depth - 2) % 6 == 0, "CIFAR ResNets have depth 6n + 2"
            blocks = [(depth - 2) // 6] * 3
            widths = [16, 32, 64]
            self.conv1 = nn.Conv2d(channels, 16, 3, 1, 1, bias=False)
            self.pool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(widths[0])
        c = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layer = []
            for b in range(n):
                layer.append(BasicBlock(c, w, 2 if i > 0 and b == 0 else 1))
                c = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.stages = len(blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, k=3, stride=1, groups=1, act=True):
        layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(c_out)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, t):
        super().__init__()
        hidden = c_in * t
        self.residual = stride == 1 and c_in == c_out
        layers = [ConvBN(c_in, hidden, 1)] if t != 1 else []
        layers += [ConvBN(hidden, hidden, 3, stride, hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's mobilenet_v2 (width 1.0): the same modules under the same names."""

    def __init__(self, channels, classes):
        super().__init__()
        features = [ConvBN(channels, 32, 3, 2)]
        c = 32
        for t, out, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                features.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        features.append(ConvBN(c, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ConvNeXt's `channels_first` norm)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """A two-stage ConvNeXt (patchify stem, depthwise 7x7 convs, LayerNorm, GELU, layer scale):
    an architecture kdgrid has no family for, so it can only teach as ONNX."""

    def __init__(self, channels, classes, dims=(24, 48)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, dims[0], 4, 4), LayerNorm2d(dims[0]))
        self.stage1 = nn.Sequential(ConvNeXtBlock(dims[0]), ConvNeXtBlock(dims[0]))
        self.down = nn.Sequential(LayerNorm2d(dims[0]), nn.Conv2d(dims[0], dims[1], 2, 2))
        self.stage2 = nn.Sequential(ConvNeXtBlock(dims[1]), ConvNeXtBlock(dims[1]))
        self.norm = nn.LayerNorm(dims[1])
        self.head = nn.Linear(dims[1], classes)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(self.norm(x.mean(dim=(2, 3))))


def network(args, channels, classes):
    if args.arch == "mobilenet-v2":
        return MobileNetV2(channels, classes)
    if args.arch == "convnext":
        return ConvNeXt(channels, classes)
    return ResNet(args.depth, channels, classes)


def preprocess(args, x, mean, std):
    """Training-split-normalized images `x` as the network reads them: renormalized with
    `--mean`/`--std` when given, resized to `--train-size` when given."""
    if args.mean:
        raw = x * std + mean
        m = torch.tensor(args.mean).view(1, -1, 1, 1)
        s = torch.tensor(args.std).view(1, -1, 1, 1)
        x = (raw - m) / s
    if args.train_size:
        x = F.interpolate(x, size=(args.train_size, args.train_size), mode="bilinear",
                          align_corners=False)
    return x


def load_folder(root, split):
    from PIL import Image
    classes = sorted(d for d in os.listdir(os.path.join(root, "train"))
                     if os.path.isdir(os.path.join(root, "train", d)))
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, split, name)
        for f in sorted(os.listdir(folder)):
            if f.lower().endswith((".png", ".jpg", ".jpeg")):
                img = Image.open(os.path.join(folder, f)).convert("RGB")
                t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
                images.append(t.view(img.height, img.width, 3).permute(2, 0, 1))
                labels.append(label)
    return torch.stack(images).float() / 255.0, torch.tensor(labels), classes


def train(args):
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x, y, classes = load_folder(args.data, "train")
    tx, ty, _ = load_folder(args.data, "test")
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = (x.pow(2).mean(dim=(0, 2, 3), keepdim=True) - mean.pow(2)).sqrt()
    x, tx = (x - mean) / std, (tx - mean) / std
    x, tx = preprocess(args, x, mean, std), preprocess(args, tx, mean, std)
    model = network(args, x.shape[1], len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            batch = order[i:i + 32]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(tx).argmax(1) == ty).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f} test accuracy {acc:.4f}")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if args.out:
        from safetensors.torch import save_file
        save_file(state, args.out)
        print(f"saved {args.out}")
    if args.pt:
        torch.save(state, args.pt)
        print(f"saved {args.pt}")
    if args.onnx:
        export_onnx(model, x.shape[1], x.shape[2], args.onnx, args.fixed_batch)
    if args.checkpoint:
        # As training scripts save (the TAKD code, torchvision's references, Lightning): the
        # weights nested under `state_dict`, next to the epoch and the optimizer's own tensors.
        torch.save({"state_dict": state, "epoch": args.epochs, "optimizer": opt.state_dict()},
                   args.checkpoint)
        print(f"saved {args.checkpoint}")


class ChannelsLast(nn.Module):
    """`model` reading `[batch, height, width, channels]` images, as TensorFlow exports do."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.permute(0, 3, 1, 2))


class Heads(nn.Module):
    """`model` with what other exports put around its logits: a softmax (`softmax`: the graph
    gives probabilities), and an auxiliary head as the graph's first output (`aux`)."""

    def __init__(self, model, classes, softmax=False, aux=False):
        super().__init__()
        self.model, self.softmax = model, softmax
        self.aux = nn.Linear(classes, 3) if aux else None

    def forward(self, x):
        logits = self.model(x)
        out = F.softmax(logits, 1) if self.softmax else logits
        return (self.aux(logits), out) if self.aux is not None else out


def export_onnx(model, channels, size, path, fixed_batch=None, nhwc=False, dynamo=False,
                softmax=False, aux=False, classes=None):
    """`model` (in evaluation mode) to ONNX, the batch left open unless `fixed_batch` (then
    the export takes batches of exactly that many images); `nhwc` exports it reading
    channels-last images. `dynamo` uses torch 2.9's default exporter (torch.export; the weights
    go to `<path>.data` beside the graph), else the TorchScript one at opset 17 (one file).
    `softmax` and `aux` wrap the network (see `Heads`)."""
    import warnings
    model.eval()
    outputs = ["probabilities" if softmax else "logits"]
    if aux:
        model, outputs = Heads(model, classes, softmax, aux).eval(), ["aux"] + outputs
    elif softmax:
        model = Heads(model, classes, softmax).eval()
    dynamic = None if fixed_batch else {"images": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    # torch.export specializes a dim of size 1: an open batch is exported from an example of 2.
    example = torch.zeros(fixed_batch or (2 if dynamo else 1), channels, size, size)
    if nhwc:
        model, example = ChannelsLast(model), example.permute(0, 2, 3, 1)
    if dynamo:
        # What a plain `torch.onnx.export(model, (x,), path)` does in torch 2.9.
        torch.onnx.export(model, (example,), path, input_names=["images"], output_names=outputs,
                          dynamic_axes=dynamic, verbose=False)
        print(f"saved {path}")
        return
    with warnings.catch_warnings():
        # torch 2.9 calls the TorchScript exporter legacy; it needs only the `onnx` package.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), path, dynamo=False,
                          input_names=["images"], output_names=outputs,
                          dynamic_axes=dynamic, opset_version=17)
    print(f"saved {path}")


def load_state(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    state = torch.load(path, map_location="cpu")
    return state.get("state_dict", state)


def export(args):
    """Exports a network to ONNX: from `--weights`, or seeded random weights (written to
    `--out` as safetensors so `check` can rebuild the same network)."""
    torch.manual_seed(args.seed)
    model = network(args, args.channels, args.classes)
    if args.weights:
        model.load_state_dict(load_state(args.weights))
    elif args.out:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
    export_onnx(model, args.channels, args.size, args.onnx, args.fixed_batch, args.nhwc,
                args.dynamo, args.softmax, args.aux, args.classes)


def check(args):
    p = json.load(open(args.predictions))
    n, classes = len(p["labels"]), p["classes"]
    state = load_state(args.weights)
    inputs = torch.tensor(p["inputs"], dtype=torch.float32)
    channels = 3 if inputs.numel() % 3 == 0 and args.channels is None else (args.channels or 1)
    side = int(round((inputs.numel() / n / channels) ** 0.5))
    model = network(args, channels, args.outputs or classes)
    model.load_state_dict(state)
    model.eval()
    x = inputs.view(n, channels, side, side)
    if args.mean or args.train_size:
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in p["normalization"])
        x = preprocess(args, x, mean, std)
    with torch.no_grad():
        ours = model(x)
    if args.log_softmax:
        # A graph ending in softmax: kdgrid's logits are the log of its probabilities.
        ours = F.log_softmax(ours, 1)
    if args.class_map:
        ours = ours[:, args.class_map]
    theirs = torch.tensor(p["logits"], dtype=torch.float32).view(n, classes)
    diff = (ours - theirs).abs().max().item()
    agree = (ours.argmax(1) == theirs.argmax(1)).float().mean().item()
    print(f"max |logit difference| over {n} images: {diff:.3g} (predictions agree on {agree:.1%})")
    if diff > args.tolerance:
        print(f"FAIL: above the tolerance {args.tolerance:g}")
        sys.exit(1)
    print("OK: kdgrid computes PyTorch's logits")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def network_args(p):
        p.add_argument("--arch", choices=["resnet", "mobilenet-v2", "convnext"], default="resnet")
        p.add_argument("--depth", type=int, default=8, help="ResNet depth")

    def input_args(p):
        p.add_argument("--mean", type=float, nargs="+", help="the network's own normalization")
        p.add_argument("--std", type=float, nargs="+")
        p.add_argument("--train-size", type=int, help="images resized to this size (bilinear)")

    t = sub.add_parser("train")
    network_args(t)
    input_args(t)
    t.add_argument("--data", required=True)
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--lr", type=float, default=0.001)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="safetensors file to write")
    t.add_argument("--pt", help="torch.save file to write")
    t.add_argument("--checkpoint", help="torch.save file with the weights under `state_dict`")
    t.add_argument("--onnx", help="ONNX file to export the trained network to")
    t.add_argument("--fixed-batch", type=int, help="export for batches of exactly N images")
    e = sub.add_parser("export")
    network_args(e)
    e.add_argument("--weights", help="state_dict to export (else seeded random weights)")
    e.add_argument("--out", help="with random weights: safetensors file to write them to")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--channels", type=int, default=3)
    e.add_argument("--classes", type=int, required=True)
    e.add_argument("--size", type=int, required=True, help="input height and width")
    e.add_argument("--onnx", required=True)
    e.add_argument("--fixed-batch", type=int, help="export for batches of exactly N images")
    e.add_argument("--nhwc", action="store_true", help="export reading channels-last images")
    e.add_argument("--dynamo", action="store_true",
                   help="torch 2.9's default exporter (weights in <onnx>.data beside it)")
    e.add_argument("--softmax", action="store_true", help="the graph gives probabilities")
    e.add_argument("--aux", action="store_true", help="an auxiliary head as the first output")
    c = sub.add_parser("check")
    network_args(c)
    input_args(c)
    c.add_argument("--weights", required=True)
    c.add_argument("--channels", type=int)
    c.add_argument("--outputs", type=int, help="the network's outputs (with --class-map)")
    c.add_argument("--class-map", type=int, nargs="+", help="the output of each class")
    c.add_argument("--predictions", required=True)
    c.add_argument("--tolerance", type=float, default=1e-4)
    c.add_argument("--log-softmax", action="store_true",
                   help="compare with the log of the network's softmax (a softmax-ending export)")
    args = ap.parse_args()
    if getattr(args, "mean", None) is not None or getattr(args, "std", None) is not None:
        if not args.mean or not args.std or len(args.mean) != len(args.std):
            ap.error("--mean and --std go together, one value per channel each")
    if getattr(args, "class_map", None) and not args.outputs:
        ap.error("--class-map needs --outputs (the network's output count)")
    {"train": train, "export": export, "check": check}[args.command](args)


if __name__ == "__main__":
    main()
