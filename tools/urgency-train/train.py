"""Train, measure and export the urgency model (crates/salve-core/src/urgency/model.rs).

    python3 -m venv .venv && .venv/bin/pip install -r tools/urgency-train/requirements.txt
    # the rules' decision and reason kinds per text, for every set (no text is printed):
    cd crates/salve-core/data/urgency && mkdir -p /tmp/ur && for s in dev eval holdout \
      holdout3 holdout4 holdout5 c1 c2; do \
      cargo run --release -p salve-core --example urgency_sets -- --rules-only --bits $s.jsonl \
        > /tmp/ur/rules-$s.bits; \
      cargo run --release -p salve-core --example urgency_sets -- --kinds $s.jsonl \
        > /tmp/ur/kinds-$s.txt; done; cd -
    .venv/bin/python tools/urgency-train/train.py loso --rules-dir /tmp/ur   # the table
    .venv/bin/python tools/urgency-train/train.py loso --rules-dir /tmp/ur --test c1 c2
    .venv/bin/python tools/urgency-train/train.py export --rules-dir /tmp/ur # writes the model

Deterministic: liblinear with a fixed random_state, no shuffling; the same data gives the same
file. Every set was written by a different author, so the measure is leave-one-set-out: the
model is trained on the other sets and tested on the one left out; the threshold is chosen by a
second leave-one-set-out inside the training sets (never on the test set).
"""

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.svm import LinearSVC

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from features import BUCKETS, buckets, normalise  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "crates", "salve-core", "data", "urgency")
SETS = ["dev", "eval", "holdout", "holdout3", "holdout4", "holdout5", "c1", "c2"]
SEED = 20261204
C = 64.0
# Recall the threshold is chosen for, on the inner out-of-fold scores of the model alone. Below
# 0.99 because the rules catch most of what the model misses (an OR; see README.md here).
TARGET_RECALL = 0.95
# Measured, not shipped: where the rules found a sign and undid it (negated, past, look-alike,
# denied, joke), the model would need VETO times the threshold to call the text urgent. On the
# blind c1/c2 measurement it cost more urgent texts than it saved false alarms (README.md here).
VETO = 2.0
# Measured, not shipped: a non-crisis rules verdict dropped when the model scores below the
# score that LOW_RECALL of the urgent training texts reach.
LOW_RECALL = 0.995
UNDONE = ("negated", "past", "look-alike", "denied", "joke")


def load(name):
    path = os.path.join(DATA, name + ".jsonl")
    if not os.path.exists(path):
        return None
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    return rows


def rule_bits(rules_dir, name, n):
    if rules_dir is None:
        return None
    path = os.path.join(rules_dir, "rules-%s.bits" % name)
    bits = open(path).read().strip()
    assert len(bits) == n, (name, len(bits), n)
    return np.array([b == "1" for b in bits])


def kind_flags(rules_dir, name, n, kinds):
    if rules_dir is None:
        return None
    path = os.path.join(rules_dir, "kinds-%s.txt" % name)
    lines = [l.rstrip("\n") for l in open(path)]
    assert len(lines) == n, (name, len(lines), n)
    return np.array([any(k.strip().startswith(kinds) for k in l.split(",")) for l in lines])


def combined(score, t, rules, undone):
    """Rules OR model, with the veto (measured only; src/urgency.rs ships the plain OR)."""
    return rules | ((score >= t) & ~(undone & (score < VETO * t)))


def matrix(texts, n_buckets=BUCKETS):
    rows, cols, vals = [], [], []
    for i, t in enumerate(texts):
        bs = buckets(t, n_buckets)
        v = 1.0 / math.sqrt(len(bs)) if bs else 0.0
        rows.extend([i] * len(bs))
        cols.extend(bs)
        vals.extend([v] * len(bs))
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), n_buckets))


def make(kind):
    if kind == "lr":
        return LogisticRegression(
            C=C, solver="liblinear", class_weight="balanced", random_state=SEED, max_iter=1000
        )
    if kind == "svm":
        return LinearSVC(C=0.5, class_weight="balanced", random_state=SEED, max_iter=5000)
    if kind == "nb":
        return MultinomialNB(alpha=0.1)
    raise ValueError(kind)


def score_of(model, X):
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return 1.0 / (1.0 + np.exp(-model.decision_function(X)))


# src/urgency.rs leaves texts of fewer words to the rules (the model votes 0 on them).
MIN_WORDS = 2
N_WORDS = None  # words per text, set by load_all


def fit_score(kind, X_tr, y_tr, X_te, te=None):
    m = make(kind)
    m.fit(X_tr, y_tr)
    s = score_of(m, X_te)
    if te is not None:
        s = np.where(N_WORDS[te] >= MIN_WORDS, s, 0.0)
    return s


def choose_threshold(scores, y, target=TARGET_RECALL):
    """The highest threshold at which the model alone catches >= target of the urgent texts."""
    urgent = np.sort(scores[y])
    k = int(math.floor((1.0 - target) * len(urgent)))  # misses allowed
    return float(urgent[k]) if len(urgent) else 0.5


def inner_threshold(kind, sets, train_names, X, y, target=TARGET_RECALL):
    """Out-of-fold scores over the training sets by leave-one-set-out, then the threshold."""
    return inner_thresholds(kind, sets, train_names, X, y, [target])[0]


def inner_thresholds(kind, sets, train_names, X, y, targets):
    oof_s, oof_y = [], []
    for inner in train_names:
        tr = np.concatenate([sets[n] for n in train_names if n != inner])
        te = sets[inner]
        oof_s.append(fit_score(kind, X[tr], y[tr], X[te], te))
        oof_y.append(y[te])
    oof_s, oof_y = np.concatenate(oof_s), np.concatenate(oof_y)
    return [choose_threshold(oof_s, oof_y, t) for t in targets]


def pct(a, b):
    return 100.0 * a / b if b else 0.0


def fmt(pred, y):
    u, n = y.sum(), (~y).sum()
    caught, false = (pred & y).sum(), (pred & ~y).sum()
    return "%6.2f%% (%d/%d) / %5.2f%% (%d/%d)" % (pct(caught, u), caught, u, pct(false, n), false, n)


def load_all(rules_dir, only=None):
    texts, labels, rules, undone, crisis, sets, names = [], [], [], [], [], {}, []
    for name in SETS:
        if only is not None and name not in only:
            continue
        rows = load(name)
        if rows is None:
            continue
        start = len(texts)
        texts += [r["text"] for r in rows]
        labels += [bool(r["urgent"]) for r in rows]
        rb = rule_bits(rules_dir, name, len(rows))
        rules += list(rb) if rb is not None else [False] * len(rows)
        ud = kind_flags(rules_dir, name, len(rows), UNDONE)
        undone += list(ud) if ud is not None else [False] * len(rows)
        cr = kind_flags(rules_dir, name, len(rows), ("crisis",))
        crisis += list(cr) if cr is not None else [False] * len(rows)
        sets[name] = np.arange(start, len(texts))
        names.append(name)
    global N_WORDS
    N_WORDS = np.array([len(normalise(t).split()) for t in texts])
    return (texts, np.array(labels), np.array(rules), np.array(undone), np.array(crisis), sets,
            names)


def loso(args):
    texts, y, rules, undone, crisis, sets, names = load_all(args.rules_dir, args.sets)
    X = matrix(texts, args.buckets)
    kinds = args.kinds.split(",")
    tests = args.test or names
    print("buckets %d; C %.2f; threshold for model-alone recall %.3f; veto %.1f" % (
        args.buckets, C, TARGET_RECALL, VETO))
    tot = {k: [] for k in ["rules"] + [kk + x for kk in kinds for x in ("", " OR rules", " OR+veto", " OR, low dropped")]}
    for test in tests:
        train = [n for n in names if n != test and (not args.test or n not in args.test)]
        tr = np.concatenate([sets[n] for n in train])
        te = sets[test]
        print("%s (%d texts; trained on %s): rules %s" % (
            test, len(te), "+".join(train), fmt(rules[te], y[te])))
        tot["rules"].append((rules[te], y[te]))
        for kind in kinds:
            t, lo = inner_thresholds(kind, sets, train, X, y, [TARGET_RECALL, LOW_RECALL])
            s = fit_score(kind, X[tr], y[tr], X[te], te)
            low = (rules[te] & ~crisis[te] & (s < lo)) & ~(s >= t)
            vetoed = ((s >= t) | rules[te]) & ~low
            alone = s >= t
            orr = alone | rules[te]
            comb = combined(s, t, rules[te], undone[te])
            print("   %-4s t=%.3f lo=%.4f model %s | OR %s | OR+veto %s | OR, rules below lo dropped %s" % (
                kind, t, lo, fmt(alone, y[te]), fmt(orr, y[te]), fmt(comb, y[te]), fmt(vetoed, y[te])))
            tot[kind + " OR, low dropped"].append((vetoed, y[te]))
            tot[kind].append((alone, y[te]))
            tot[kind + " OR rules"].append((orr, y[te]))
            tot[kind + " OR+veto"].append((comb, y[te]))
    print("pooled over the held-out sets:")
    for k, parts in tot.items():
        p = np.concatenate([a for a, _ in parts])
        yy = np.concatenate([b for _, b in parts])
        print("   %-16s %s" % (k, fmt(p, yy)))


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def export(args):
    texts, y, rules, undone, crisis, sets, names = load_all(args.rules_dir)
    X = matrix(texts)
    t = inner_threshold("lr", sets, names, X, y)
    m = make("lr")
    m.fit(X, y)
    w = m.coef_[0]
    bias = float(m.intercept_[0])
    nz = np.nonzero(np.round(w, 4))[0]
    out = os.path.join(DATA, "model.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.write("# Urgency model: logistic regression over hashed word uni/bigrams and character\n")
        f.write("# 3-5-grams (tools/urgency-train/features.py = src/urgency/model.rs).\n")
        f.write("# Written by tools/urgency-train/train.py export; do not edit by hand.\n")
        f.write("# scikit-learn %s, numpy %s; liblinear, C %.2f, class_weight balanced, seed %d.\n" % (
            sklearn.__version__, np.__version__, C, SEED))
        f.write("# Threshold: leave-one-set-out over the training sets, model alone, recall %.3f.\n" % TARGET_RECALL)
        f.write("# Trained on (texts, sha256):\n")
        for n in names:
            p = os.path.join(DATA, n + ".jsonl")
            f.write("#   %s.jsonl %d %s\n" % (n, len(sets[n]), sha256(p)))
        f.write("buckets %d\n" % BUCKETS)
        f.write("bias %.6f\n" % bias)
        f.write("threshold %.6f\n" % t)
        for i in nz:
            f.write("%d %.4f\n" % (i, w[i]))
    print("wrote %s: %d weights, bias %.4f, threshold %.4f" % (out, len(nz), bias, t))
    # Parity vectors for the Rust test: the exported (rounded) weights' score.
    wr = np.zeros(BUCKETS)
    for i in nz:
        wr[i] = float("%.4f" % w[i])
    checks = [
        "My chest hurts and my left arm is numb",
        "dying to know my results lol",
        "my chest x-ray results?",
        "No puedo respirar, mi hijo está morado",
        "¿Puedo cambiar mi cita del martes?",
        "I can’t stop throwing up blood!!! 😭",
        "quiero matarme ya no aguanto",
        "Ñandú CAFÉ   naïve  ",
        "",
        "C",
    ]
    with open(os.path.join(DATA, "model_check.jsonl"), "w", encoding="utf-8") as f:
        for c in checks:
            bs = buckets(c)
            s = bias + wr[bs].sum() / math.sqrt(len(bs)) if bs else -math.inf
            f.write(json.dumps({
                "text": c, "normalised": normalise(c), "buckets": len(bs),
                "bucket_sum": int(sum(bs)), "score": round(1.0 / (1.0 + math.exp(-s)), 6) if bs else 0.0,
            }, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["loso", "export"])
    ap.add_argument("--rules-dir")
    ap.add_argument("--kinds", default="lr")
    ap.add_argument("--buckets", type=int, default=BUCKETS)
    ap.add_argument("--sets", nargs="*", help="only these sets")
    ap.add_argument("--test", nargs="*", help="test only on these, never train on them")
    args = ap.parse_args()
    {"loso": loso, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
