#!/usr/bin/env python3
"""Lays out a public sentiment set you have as kdgrid's text dataset: `train.tsv` and
`test.tsv`, one `label<TAB>text` per line (docs/manifest.md, `text`). Standard library only;
nothing is downloaded.

    # SST-2 from GLUE (SST-2/train.tsv and SST-2/dev.tsv, `sentence<TAB>label` with a header;
    # GLUE's test split has no labels, so dev becomes the test split)
    python3 scripts/examples/sentiment-data.py sst2 path/to/SST-2 data/sst2
    # IMDB (Maas et al. 2011): aclImdb/{train,test}/{pos,neg}/*.txt, one review per file
    python3 scripts/examples/sentiment-data.py imdb path/to/aclImdb data/imdb

Labels become `negative` and `positive`. Tabs and line breaks inside a text become spaces (a
line holds one example); IMDB's `<br />` tags become spaces too. Files are read in sorted
order, so the output is the same on every machine; kdgrid's `train-limit`/`test-limit` keep
classes balanced even though IMDB's files list one class after the other.
"""
import csv
import os
import sys

LABELS = {"0": "negative", "1": "positive", "neg": "negative", "pos": "positive"}


def clean(text):
    return " ".join(text.replace("<br />", " ").split())


def write(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for label, text in rows:
            f.write(f"{label}\t{text}\n")
    os.replace(tmp, path)


def sst2(src):
    splits = {}
    for ours, theirs in (("train", "train.tsv"), ("test", "dev.tsv")):
        with open(os.path.join(src, theirs), encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if reader.fieldnames is None or not {"sentence", "label"} <= set(reader.fieldnames):
                raise SystemExit(f"{theirs}: expected a `sentence<TAB>label` header, found {reader.fieldnames}")
            splits[ours] = [(LABELS[r["label"]], clean(r["sentence"])) for r in reader]
    return splits


def imdb(src):
    splits = {}
    for split in ("train", "test"):
        rows = []
        for label in ("neg", "pos"):
            folder = os.path.join(src, split, label)
            if not os.path.isdir(folder):
                raise SystemExit(f"no folder {folder} (expected aclImdb/{{train,test}}/{{pos,neg}})")
            for name in sorted(os.listdir(folder)):
                if name.endswith(".txt"):
                    with open(os.path.join(folder, name), encoding="utf-8") as f:
                        rows.append((LABELS[label], clean(f.read())))
        splits[split] = rows
    return splits


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("sst2", "imdb"):
        raise SystemExit(__doc__)
    kind, src, out = sys.argv[1:]
    splits = (sst2 if kind == "sst2" else imdb)(src)
    os.makedirs(out, exist_ok=True)
    for split, rows in splits.items():
        write(os.path.join(out, f"{split}.tsv"), rows)
        print(f"{split}: {len(rows)} texts", file=sys.stderr)


if __name__ == "__main__":
    main()
