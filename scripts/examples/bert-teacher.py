#!/usr/bin/env python3
"""A BERT teacher built with Hugging Face `transformers`: trains a WordPiece vocabulary with
`tokenizers` on a text dataset's training split, fine-tunes a small BERT (or DistilBERT) on it
and saves model and tokenizer with `save_pretrained`, the folder kdgrid imports with
`weights = "folder"`; checks kdgrid's token ids and logits against Python's; counts a model's
parameters and forward FLOPs as PyTorch does.

    # build: experiments/data/reviews-bert (config.json, model.safetensors, tokenizer.json, ...)
    python bert-teacher.py build --data experiments/data/reviews --out experiments/data/reviews-bert \
        --layers 2 --hidden 64 --heads 4 --intermediate 128 --vocab 400 --max-length 24 --epochs 6
    # check: `kdgrid predict --inputs` output against the same folder in PyTorch
    python bert-teacher.py check --model experiments/data/reviews-bert --data experiments/data/reviews \
        --predictions predictions.json --max-length 24 --row 1
    # count: parameters and FLOPs (torch.utils.flop_counter) of a configuration, as JSON
    python bert-teacher.py count --family bert --layers 2 --hidden 64 --heads 4 \
        --intermediate 128 --vocab 400 --classes 2 --length 24

Labels are indexed in sorted order, as kdgrid indexes a text dataset's classes; texts are read
as kdgrid reads `train.tsv`/`test.tsv` (`label<TAB>text`, blank lines skipped). Needs torch,
transformers and tokenizers (`make torch` installs them into the venv).
"""
import argparse
import json
import os
import random
import sys

import torch


def read_tsv(path):
    with open(path, encoding="utf-8-sig") as f:
        rows = []
        for line in f.read().splitlines():
            if not line.strip():
                continue
            label, text = line.split("\t", 1)
            rows.append((label.strip(), text))
    return rows


def config_of(args, classes, pad_id=0):
    from transformers import BertConfig, DistilBertConfig
    labels = {str(i): str(i) for i in range(classes)}
    if args.family == "distilbert":
        return DistilBertConfig(
            vocab_size=args.vocab, dim=args.hidden, n_layers=args.layers, n_heads=args.heads,
            hidden_dim=args.intermediate, max_position_embeddings=args.positions,
            num_labels=classes, id2label=labels, label2id={v: int(k) for k, v in labels.items()},
            pad_token_id=pad_id, initializer_range=args.init_std)
    return BertConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=args.intermediate,
        max_position_embeddings=args.positions, num_labels=classes, id2label=labels,
        label2id={v: int(k) for k, v in labels.items()}, pad_token_id=pad_id,
        initializer_range=args.init_std)


def model_class(family):
    from transformers import BertForSequenceClassification, DistilBertForSequenceClassification
    return DistilBertForSequenceClassification if family == "distilbert" else BertForSequenceClassification


def train_tokenizer(texts, vocab_size, family):
    """A lowercasing WordPiece vocabulary of the texts, as BERT's (`[CLS] text [SEP]`)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece
    from transformers import BertTokenizerFast, DistilBertTokenizerFast
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=special, show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = DistilBertTokenizerFast if family == "distilbert" else BertTokenizerFast
    return fast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                sep_token="[SEP]", mask_token="[MASK]")


def build(args):
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    train = read_tsv(os.path.join(args.data, "train.tsv"))
    classes = sorted({label for label, _ in train})
    tokenizer = train_tokenizer([t for _, t in train], args.vocab, args.family)
    args.vocab = len(tokenizer)
    model = model_class(args.family)(config_of(args, len(classes), tokenizer.pad_token_id))
    enc = tokenizer([t for _, t in train], truncation=True, max_length=args.max_length,
                    padding="max_length", return_tensors="pt")
    labels = torch.tensor([classes.index(label) for label, _ in train])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train))
        total = 0.0
        for start in range(0, len(train), args.batch_size):
            idx = order[start:start + args.batch_size]
            out = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx],
                        labels=labels[idx])
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            total += out.loss.item() * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(train):.4f}", file=sys.stderr)
    model.eval()
    test = read_tsv(os.path.join(args.data, "test.tsv"))
    t_enc = tokenizer([t for _, t in test], truncation=True, max_length=args.max_length,
                      padding="max_length", return_tensors="pt")
    with torch.no_grad():
        pred = model(input_ids=t_enc["input_ids"], attention_mask=t_enc["attention_mask"]).logits
    accuracy = (pred.argmax(1) == torch.tensor([classes.index(l) for l, _ in test])).float().mean()
    print(json.dumps({"test_accuracy": round(accuracy.item(), 4),
                      "params": sum(p.numel() for p in model.parameters())}))
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)


def check(args):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    with open(args.predictions) as f:
        p = json.load(f)
    logits = torch.tensor(p["logits"]).reshape(-1, p["classes"])
    n = logits.shape[0]
    test = read_tsv(os.path.join(args.data, "test.tsv"))[:n]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    enc = tokenizer([t for _, t in test], truncation=True, max_length=args.max_length,
                    padding="max_length", return_tensors="pt")
    report = {"texts": n}
    if p.get("inputs") is not None:
        # kdgrid's inputs: [n, 2 planes, rows, length], id = low + 256 * high.
        planes = torch.tensor(p["inputs"]).reshape(n, 2, -1, args.max_length)
        ids = (planes[:, 0, args.row] + 256 * planes[:, 1, args.row]).round().long()
        report["ids_equal"] = bool(torch.equal(ids, enc["input_ids"]))
        if not report["ids_equal"]:
            bad = (ids != enc["input_ids"]).any(1).nonzero()[0].item()
            report["first_different"] = {"text": test[bad][1], "kdgrid": ids[bad].tolist(),
                                         "python": enc["input_ids"][bad].tolist()}
    model = AutoModelForSequenceClassification.from_pretrained(args.model)
    model.eval()
    with torch.no_grad():
        ours = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    report["params"] = sum(p.numel() for p in model.parameters())
    report["max_abs_diff"] = (ours - logits).abs().max().item()
    report["logit_range"] = ours.abs().max().item()
    print(json.dumps(report))
    ok = report["max_abs_diff"] <= args.tolerance and report.get("ids_equal", True)
    sys.exit(0 if ok else 1)


def count(args):
    from torch.utils.flop_counter import FlopCounterMode
    # Eager attention: the counter sees its two batched products (CPU's fused attention kernel
    # is not counted).
    config = config_of(args, args.classes)
    config._attn_implementation = "eager"
    model = model_class(args.family)(config)
    model.eval()
    ids = torch.full((1, args.length), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()),
                      "forward_flops": counter.get_total_flops()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("build", "count"):
        s = sub.add_parser(name)
        s.add_argument("--family", choices=["bert", "distilbert"], default="bert")
        s.add_argument("--layers", type=int, default=2)
        s.add_argument("--hidden", type=int, default=64)
        s.add_argument("--heads", type=int, default=4)
        s.add_argument("--intermediate", type=int, default=128)
        s.add_argument("--vocab", type=int, default=400)
        s.add_argument("--positions", type=int, default=512)
        s.add_argument("--init-std", type=float, default=0.02,
                       help="initializer_range; larger gives larger logits (parity tests)")
    b = sub.choices["build"]
    b.add_argument("--data", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--max-length", type=int, default=24)
    b.add_argument("--epochs", type=int, default=6)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--lr", type=float, default=1e-3)
    b.add_argument("--seed", type=int, default=0)
    c = sub.choices["count"]
    c.add_argument("--classes", type=int, required=True)
    c.add_argument("--length", type=int, required=True)
    k = sub.add_parser("check")
    k.add_argument("--model", required=True)
    k.add_argument("--data", required=True)
    k.add_argument("--predictions", required=True)
    k.add_argument("--max-length", type=int, required=True)
    k.add_argument("--row", type=int, default=1, help="kdgrid's token row of this model")
    k.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    {"build": build, "check": check, "count": count}[args.command](args)


if __name__ == "__main__":
    main()
