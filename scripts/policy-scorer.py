#!/usr/bin/env python3
"""Train the channel policy's learned direct scorer (crates/salve-core/src/policy/scorer.rs).

A logistic regression over hashed word unigrams and bigrams of the folded text, trained on the
labelled message sets in crates/salve-core/data/policy/ (see EVAL_README.md). At run time it may
turn a `secure` decision whose every reason is unrecognised wording into `direct` when its
probability of `direct` reaches `threshold`, and turn any `direct` decision of the rules into
`secure` when its probability of `secure` reaches `secure_threshold` (both written with the
weights).

    python3 -m pip install -r scripts/policy-scorer-requirements.txt
    python3 scripts/policy-scorer.py                 # writes data/policy/scorer/weights.tsv
    python3 scripts/policy-scorer.py --leave-out     # leave-one-set-out: one weights file per
                                                     # held-out set, in /tmp/policy-scorer/, and
                                                     # recall/false-secure with and without the
                                                     # learned secure check, per set and pooled

The threshold is chosen without looking at the set being measured: inside the training sets,
each set in turn is scored by a model trained on the others (nested leave-one-set-out), and the
threshold is put MARGIN above the highest probability of `direct` that any secure-labelled
message the scorer may overturn got (those the rules sent secure for unrecognised words only,
none medical-looking: the script asks the Rust rules, through `policy_report --json`, which
ones they are), and never
below MIN_THRESHOLD. The secure threshold comes from the same nested runs: the lowest on
SECURE_GRID at which, pooled over the inner held-out sets, the direct-labelled messages it would
turn secure are at most MAX_FALSE_SECURE_SPEND of all direct-labelled ones. Output is deterministic (liblinear,
fixed data order).
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
SETS = ["dev", "dev2", "eval", "holdout", "holdout2", "holdout3", "c3", "holdout4", "holdout5",
        "c5", "c6"]
BUCKETS = 1 << 18
C = 1.0
# Secure messages weigh more: a missed one is a privacy breach.
SECURE_WEIGHT = 2.0
# The threshold is the highest inner-held-out secure probability plus this margin, at least MIN.
MARGIN = 0.02
MIN_THRESHOLD = 0.90
# The learned secure check may turn a rules-direct message secure. Its threshold is the lowest
# at which its wrong flips (direct-labelled messages turned secure, pooled over the inner
# held-out sets) cost at most this share of all direct-labelled messages: half a point of the
# 10% false-secure budget is spent on catching secure messages the rules let through. (A rule on
# the flips' precision picks 0.99 here: the rules are tuned on every set but the newest, so the
# inner sets hold almost no misses left to catch, only the cost.)
MAX_FALSE_SECURE_SPEND = 0.005
SECURE_GRID = [round(0.50 + 0.01 * i, 2) for i in range(50)]  # 0.50 .. 0.99


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


def gate(sets, data):
    """Per set, per message (in file order): (scorer_asked, rules_direct) as the Rust rules say
    before the learned scorer (weights do not change either)."""
    files = [os.path.join(DATA, s + ".jsonl") for s in sets]
    out = subprocess.run(
        ["cargo", "run", "-q", "--release", "--locked", "-p", "salve-core", "--example",
         "policy_report", "--", "--json"] + files,
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    info, i = {}, 0
    for s in sets:
        info[s] = []
        for text, _ in data[s]:
            d = lines[i]
            assert d["text"] == text, (s, i)
            info[s].append((d["scorer_asked"], d["rules_direct"]))
            i += 1
    return info


def thresholds(train_sets, data, info):
    """Nested leave-one-set-out over the training sets only: (direct, secure) thresholds."""
    top = 0.0
    flips = []  # (probability of secure, secure-labelled) of inner held-out rules-direct texts
    direct_labelled = 0
    for inner in train_sets:
        rest = [r for s in train_sets if s != inner for r in data[s]]
        if not rest:
            continue
        p = proba(fit(rest), data[inner])
        for (text, y), q, (asked, direct) in zip(data[inner], p, info[inner]):
            direct_labelled += y
            if asked and y == 0:
                top = max(top, float(q))
            if direct:
                flips.append((1.0 - float(q), y == 0))
    direct_thr = max(MIN_THRESHOLD, min(0.995, top + MARGIN))
    secure_thr = 1.0
    for t in SECURE_GRID:
        wrong = sum(1 for q, sec in flips if q >= t and not sec)
        if wrong <= MAX_FALSE_SECURE_SPEND * direct_labelled:
            secure_thr = t
            break
    return direct_thr, secure_thr


def routes(rows, p, info, thr, secure_thr):
    """(route without, route with the learned secure check) per message; 1 = direct."""
    out = []
    for (_, _), q, (asked, direct) in zip(rows, p, info):
        base = 1 if direct or (asked and q >= thr) else 0
        veto = 0 if direct and 1.0 - q >= secure_thr else base
        out.append((base, veto))
    return out


def tally(labels, routes_):
    sec = [r for y, r in zip(labels, routes_) if y == 0]
    dire = [r for y, r in zip(labels, routes_) if y == 1]
    caught = sum(1 for r in sec if r == 0)
    false_sec = sum(1 for r in dire if r == 0)
    return caught, len(sec), false_sec, len(dire)


def fmt(t):
    caught, n_sec, false_sec, n_dir = t
    return (f"{100 * caught / max(n_sec, 1):6.2f}% ({caught}/{n_sec}) "
            f"{100 * false_sec / max(n_dir, 1):6.2f}% ({false_sec}/{n_dir})")


def write(path, model, thr, secure_thr, train_sets, data, check_rows):
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
        f.write(f"secure_threshold\t{secure_thr:.6f}\n")
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
    info = gate(sets, data)
    if "--leave-out" in sys.argv:
        print("held out: thresholds direct/secure | recall, false-secure without the secure "
              "check | with it | flips (secure/direct-labelled)")
        pooled_base, pooled_veto = [0, 0, 0, 0], [0, 0, 0, 0]
        for held in sets:
            train = [s for s in sets if s != held]
            rows = [r for s in train for r in data[s]]
            thr, secure_thr = thresholds(train, data, info)
            model = fit(rows)
            write(f"/tmp/policy-scorer/{held}.tsv", model, thr, secure_thr, train, data,
                  data[held][:3])
            p = proba(model, data[held])
            both = routes(data[held], p, info[held], thr, secure_thr)
            labels = [y for _, y in data[held]]
            base = tally(labels, [b for b, _ in both])
            veto = tally(labels, [v for _, v in both])
            flips = [(y, b, v) for y, (b, v) in zip(labels, both) if b != v]
            fs = sum(1 for y, _, _ in flips if y == 0)
            for acc, t in ((pooled_base, base), (pooled_veto, veto)):
                for i in range(4):
                    acc[i] += t[i]
            print(f"{held:9} {thr:.3f}/{secure_thr:.2f} | {fmt(base)} | {fmt(veto)} | "
                  f"{fs}/{len(flips) - fs}")
        print(f"{'pooled':9} {'':10} | {fmt(pooled_base)} | {fmt(pooled_veto)}")
        return
    rows = [r for s in sets for r in data[s]]
    thr, secure_thr = thresholds(sets, data, info)
    model = fit(rows)
    check = [r for s in sets for r in data[s][:2]]
    write(os.path.join(OUT, "weights.tsv"), model, thr, secure_thr, sets, data, check)
    print(f"trained on {len(rows)} messages from {', '.join(sets)}; threshold {thr:.3f}, "
          f"secure threshold {secure_thr:.2f}")


if __name__ == "__main__":
    main()
