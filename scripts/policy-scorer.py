#!/usr/bin/env python3
"""Train the channel policy's learned direct scorer (crates/salve-core/src/policy/scorer.rs).

A logistic regression over hashed word unigrams and bigrams of the folded text, trained on the
labelled message sets in crates/salve-core/data/policy/ (see EVAL_README.md). At run time it may
only turn a `secure` decision whose every reason is unrecognised wording into `direct`, and only
when its probability of `direct` reaches the threshold written with the weights.

    python3 -m pip install -r scripts/policy-scorer-requirements.txt
    python3 scripts/policy-scorer.py                 # writes data/policy/scorer/weights.tsv
    python3 scripts/policy-scorer.py --leave-out     # leave-one-set-out: one weights file per
                                                     # held-out set, in /tmp/policy-scorer/

The threshold is chosen without looking at the set being measured: inside the training sets,
each set in turn is scored by a model trained on the others (nested leave-one-set-out), and the
threshold is put MARGIN above the highest probability of `direct` that any secure-labelled
message the scorer may overturn got (those the rules sent secure for unrecognised words only,
none medical-looking: the script asks the Rust rules, through `policy_report --json`, which
ones they are), and never
below MIN_THRESHOLD. Output is deterministic (liblinear, fixed data order).
"""

import json
import os
import subprocess
import sys
import unicodedata

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "crates/salve-core/data/policy")
OUT = os.path.join(DATA, "scorer")

# The labelled sets, each written by a different author (EVAL_README.md).
SETS = ["dev", "dev2", "eval", "holdout", "holdout2", "holdout3", "c3"]
BUCKETS = 1 << 18
C = 1.0
# Secure messages weigh more: a missed one is a privacy breach.
SECURE_WEIGHT = 2.0
# The threshold is the highest inner-held-out secure probability plus this margin, at least MIN.
MARGIN = 0.02
MIN_THRESHOLD = 0.90


def fold(text):
    """As `text::fold` in Rust: apostrophes dropped, lowercase, accents stripped, runs of
    anything else one space."""
    out = []
    space = True
    for c in text:
        if c in "'\u2019\u2018":
            continue
        if c.isalnum():
            for d in unicodedata.normalize("NFD", c.lower()):
                if not unicodedata.combining(d):
                    out.append(d)
            space = False
        elif not space:
            out.append(" ")
            space = True
    return "".join(out).strip(" ")


def fnv1a(s):
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def features(text):
    """Hashed buckets present in the text (as `scorer::features` in Rust)."""
    toks = ["0" if any(ch in "0123456789" for ch in t) else t for t in fold(text).split(" ") if t]
    feats = ["w:" + t for t in toks]
    feats += ["b:" + a + " " + b for a, b in zip(toks, toks[1:])]
    return sorted({fnv1a(f) % BUCKETS for f in feats})


def load(name):
    path = os.path.join(DATA, name + ".jsonl")
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append((r["text"], 1 if r["expected"] == "direct" else 0))
    return rows


def matrix(rows):
    indptr, indices = [0], []
    for text, _ in rows:
        indices += features(text)
        indptr.append(len(indices))
    data = np.ones(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(rows), BUCKETS))


def fit(rows):
    x = matrix(rows)
    y = np.array([lab for _, lab in rows])
    w = np.where(y == 1, 1.0, SECURE_WEIGHT)
    model = LogisticRegression(C=C, solver="liblinear", max_iter=1000)
    model.fit(x, y, sample_weight=w)
    return model


def proba(model, rows):
    return model.predict_proba(matrix(rows))[:, 1]


def gate(sets):
    """Texts the scorer may overturn, per the Rust rules (weights do not change which)."""
    files = [os.path.join(DATA, s + ".jsonl") for s in sets]
    out = subprocess.run(
        ["cargo", "run", "-q", "--release", "-p", "salve-core", "--example", "policy_report",
         "--", "--json"] + files,
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    texts = set()
    for line in out.splitlines():
        d = json.loads(line)
        if d["scorer_asked"]:
            texts.add(d["text"])
    return texts


def threshold(train_sets, data, eligible):
    """Nested leave-one-set-out over the training sets only."""
    top = 0.0
    for inner in train_sets:
        rest = [r for s in train_sets if s != inner for r in data[s]]
        held = [r for r in data[inner] if r[1] == 0 and r[0] in eligible]
        if not rest or not held:
            continue
        top = max(top, float(proba(fit(rest), held).max()))
    return max(MIN_THRESHOLD, min(0.995, top + MARGIN))


def write(path, model, thr, train_sets, data, check_rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    coef = model.coef_[0]
    nz = np.nonzero(coef)[0]
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Generated by scripts/policy-scorer.py. Do not edit.\n")
        f.write(f"# trained on: {' '.join(s + '.jsonl' for s in train_sets)} "
                f"({sum(len(data[s]) for s in train_sets)} messages)\n")
        f.write(f"# model: logistic regression (scikit-learn liblinear, C={C}, secure weight "
                f"{SECURE_WEIGHT}), FNV-1a hashed unigrams and bigrams, {BUCKETS} buckets\n")
        f.write(f"threshold\t{thr:.6f}\n")
        f.write(f"intercept\t{model.intercept_[0]:.6f}\n")
        for i in nz:
            f.write(f"{i}\t{coef[i]:.6f}\n")
        # Check lines: the Rust side must give the same probability for these texts.
        for text, _ in check_rows:
            p = float(proba(model, [(text, 0)])[0])
            f.write(f"check\t{p:.6f}\t{text}\n")


def main():
    data = {s: load(s) for s in SETS}
    sets = [s for s in SETS if data[s]]
    eligible = gate(sets)
    if "--leave-out" in sys.argv:
        for held in sets:
            train = [s for s in sets if s != held]
            rows = [r for s in train for r in data[s]]
            thr = threshold(train, data, eligible)
            model = fit(rows)
            write(f"/tmp/policy-scorer/{held}.tsv", model, thr, train, data, data[held][:3])
            p = proba(model, data[held])
            up = [(y, q >= thr) for (t, y), q in zip(data[held], p) if t in eligible]
            sec = sum(1 for y, over in up if y == 0 and over)
            dire = sum(1 for y, over in up if y == 1 and over)
            print(f"{held}: threshold {thr:.3f}; of {len(up)} it may overturn, it would "
                  f"overturn {sec} secure-labelled and {dire} direct-labelled")
        return
    rows = [r for s in sets for r in data[s]]
    thr = threshold(sets, data, eligible)
    model = fit(rows)
    check = [r for s in sets for r in data[s][:2]]
    write(os.path.join(OUT, "weights.tsv"), model, thr, sets, data, check)
    print(f"trained on {len(rows)} messages from {', '.join(sets)}; threshold {thr:.3f}")


if __name__ == "__main__":
    main()
