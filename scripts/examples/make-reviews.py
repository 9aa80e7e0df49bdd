#!/usr/bin/env python3
"""Writes the small labelled text sample `experiments/data/reviews/` (train.tsv, test.tsv: one
`label<TAB>text` per line) that `experiments/text-kd.toml` and the tests use: short, made-up
movie reviews, positive or negative, where word order matters ("not good" is negative, "not
bad" positive). Standard library only; the same seed always writes the same files.

For real work use a public sentiment set laid out the same way (docs/manifest.md, `text`).

    python3 scripts/examples/make-reviews.py experiments/data/reviews
"""
import os
import random
import sys

GOOD = ["good", "great", "wonderful", "moving", "funny", "gripping", "beautiful", "clever",
        "charming", "superb"]
BAD = ["bad", "dull", "boring", "awful", "clumsy", "tedious", "silly", "weak", "messy",
       "predictable"]
THINGS = ["the film", "the plot", "the acting", "the script", "the ending", "the score",
          "the cast", "the direction", "this movie", "the story"]
FILLER = ["honestly", "overall", "i think", "to be fair", "in the end", "for me", "frankly",
          "as a whole", "sadly", "happily"]


def review(rng):
    positive = rng.random() < 0.5
    parts = []
    for _ in range(rng.randint(1, 3)):
        # Half the clauses negate a word of the other polarity.
        negate = rng.random() < 0.5
        words = (BAD if negate else GOOD) if positive else (GOOD if negate else BAD)
        clause = f"{rng.choice(THINGS)} was {'not ' if negate else ''}{rng.choice(words)}"
        if rng.random() < 0.4:
            clause = f"{rng.choice(FILLER)} {clause}"
        parts.append(clause)
    return ("positive" if positive else "negative"), " and ".join(parts) + "."


def main(out):
    rng = random.Random(2026)
    os.makedirs(out, exist_ok=True)
    for split, n in [("train", 600), ("test", 200)]:
        with open(os.path.join(out, f"{split}.tsv"), "w") as f:
            for _ in range(n):
                label, text = review(rng)
                f.write(f"{label}\t{text}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "experiments/data/reviews")
