"""Train, measure and export the urgency model (crates/salve-core/src/urgency/model.rs).

    python3 -m venv .venv && .venv/bin/pip install -r tools/urgency-train/requirements.txt
    # the rules' decision and reason kinds per text, for every set (no text is printed):
    cd crates/salve-core/data/urgency && mkdir -p /tmp/ur && for s in dev eval holdout \
      holdout3 holdout4 holdout5 c1 c2 c4; do \
      cargo run --release -p salve-core --example urgency_sets -- --rules-only --bits $s.jsonl \
        > /tmp/ur/rules-$s.bits; \
      cargo run --release -p salve-core --example urgency_sets -- --kinds $s.jsonl \
        > /tmp/ur/kinds-$s.txt; done; cd -
    .venv/bin/python tools/urgency-train/train.py loso --rules-dir /tmp/ur   # the table
    .venv/bin/python tools/urgency-train/train.py loso --rules-dir /tmp/ur --test c4  # blind
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
SETS = [
    "dev", "eval", "holdout", "holdout3", "holdout4", "holdout5", "holdout6", "holdout7",
    "c1", "c2", "c4", "c6", "c7",
]
SEED = 20261204
C = 64.0
# Recall the threshold is chosen for, on the inner out-of-fold scores of the model alone. Below
# 0.99 because the rules catch most of what the model misses (an OR; see README.md here). 0.97
# with the gate: on the eight sets the rules were never tuned on, pooled leave-one-set-out gave
# 98.43% / 13.91% against 97.90% / 15.18% for the plain OR at 0.95 (0.98: 98.91% / 17.13%).
TARGET_RECALL = 0.97
# The rules' kinds of undone sign (read, not used by the combination).
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
PHRASE = None  # the rules' verdict rests on a sign phrase or nearness rule (not concepts only)

# The gated combination (what src/urgency.rs ships, see `gated`): a crisis or a sign phrase of
# the rules is urgent as it is; a verdict of the concept layer alone stands only when the model
# scores at least the gate g; and the model alone is urgent from t. t and g are the scores that
# a share of the urgent training texts reach (out of fold, leave-one-set-out inside the training
# sets); the pair of shares is chosen there too: the fewest false alarms whose recall, rules and
# model together, stays >= MIN_RECALL.
T_SHARES = [0.90, 0.925, 0.95, 0.97]
G_SHARES = [None, 0.999, 0.995, 0.99, 0.985, 0.98, 0.97, 0.95, 0.90]
MIN_RECALL = 0.99
# The second way ("gated, t fixed"): t stays at TARGET_RECALL's score (the plain OR's) and g is
# the most selective gate that loses at most MAX_LOSS of the OR's own recall inside.
MAX_LOSS = 0.001
# What export writes: "OR" (gate 0), "gated" or "gated, t fixed" (see loso's table).
SHIP = "gated, t fixed"


def gated(s, t, g, rules, crisis, phrase):
    strong = rules & (crisis | phrase)
    weak = rules & ~strong
    return strong | (weak & (s >= g)) | (s >= t)


def dropped(s, t, g, rules, crisis):
    """Measured: any non-crisis rules verdict needs the model at g."""
    return (rules & (crisis | (s >= g))) | (s >= t)


def choose_pair(oof_s, oof_y, rules, crisis, phrase, how, t_shares=None, floor=MIN_RECALL):
    best = None
    for ts in t_shares or T_SHARES:
        t = choose_threshold(oof_s, oof_y, ts)
        for gs in G_SHARES:
            g = -1.0 if gs is None else choose_threshold(oof_s, oof_y, gs)
            if how == "gated":
                p = gated(oof_s, t, g, rules, crisis, phrase)
            else:
                p = dropped(oof_s, t, g, rules, crisis)
            rec = (p & oof_y).sum() / oof_y.sum()
            fa = (p & ~oof_y).sum() / (~oof_y).sum()
            if rec >= floor - 1e-12 and (best is None or (fa, -rec) < best[0]):
                best = ((fa, -rec), t, g, ts, gs)
    if best is None:  # nothing reaches the floor inside: the most recall
        ts = (t_shares or T_SHARES)[-1]
        return choose_threshold(oof_s, oof_y, ts), -1.0, ts, None
    return best[1:]


def inner_oof(kind, sets, train_names, X, y):
    idx, oof_s = [], []
    for inner in train_names:
        tr = np.concatenate([sets[n] for n in train_names if n != inner])
        te = sets[inner]
        oof_s.append(fit_score(kind, X[tr], y[tr], X[te], te))
        idx.append(te)
    return np.concatenate(idx), np.concatenate(oof_s)


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


def pct(a, b):
    return 100.0 * a / b if b else 0.0


def fmt(pred, y):
    u, n = y.sum(), (~y).sum()
    caught, false = (pred & y).sum(), (pred & ~y).sum()
    return "%6.2f%% (%d/%d) / %5.2f%% (%d/%d)" % (pct(caught, u), caught, u, pct(false, n), false, n)


def load_all(rules_dir, only=None):
    texts, labels, rules, undone, crisis, phrase, sets, names = [], [], [], [], [], [], {}, []
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
        ph = kind_flags(rules_dir, name, len(rows), ("phrase",))
        phrase += list(ph) if ph is not None else [False] * len(rows)
        sets[name] = np.arange(start, len(texts))
        names.append(name)
    global N_WORDS
    N_WORDS = np.array([len(normalise(t).split()) for t in texts])
    global PHRASE
    PHRASE = np.array(phrase)
    return (texts, np.array(labels), np.array(rules), np.array(undone), np.array(crisis), sets,
            names)


def loso(args):
    texts, y, rules, undone, crisis, sets, names = load_all(args.rules_dir, args.sets)
    X = matrix(texts, args.buckets)
    tests = args.test or names
    print("buckets %d; C %.2f; OR threshold for model-alone recall %.3f" % (
        args.buckets, C, TARGET_RECALL))
    keys = ["rules", "model", "OR", "gated", "gated, t fixed", "OR, low dropped"]
    tot = {k: [] for k in keys}
    for test in tests:
        train = [n for n in names if n != test and (not args.test or n not in args.test)]
        tr = np.concatenate([sets[n] for n in train])
        te = sets[test]
        idx, oof = inner_oof("lr", sets, train, X, y)
        oy = y[idx]
        t = choose_threshold(oof, oy, TARGET_RECALL)
        gt, gg, gts, ggs = choose_pair(oof, oy, rules[idx], crisis[idx], PHRASE[idx], "gated")
        ri, ci, pi = rules[idx], crisis[idx], PHRASE[idx]
        floor = ((ri | (oof >= t)) & oy).sum() / oy.sum() - MAX_LOSS
        ft, fg, _, fgs = choose_pair(oof, oy, ri, ci, pi, "gated", [TARGET_RECALL], floor)
        dt, dg, dts, dgs = choose_pair(oof, oy, ri, ci, pi, "dropped", [TARGET_RECALL], floor)
        s = fit_score("lr", X[tr], y[tr], X[te], te)
        preds = {
            "rules": rules[te],
            "model": s >= t,
            "OR": rules[te] | (s >= t),
            "gated": gated(s, gt, gg, rules[te], crisis[te], PHRASE[te]),
            "gated, t fixed": gated(s, ft, fg, rules[te], crisis[te], PHRASE[te]),
            "OR, low dropped": dropped(s, dt, dg, rules[te], crisis[te]),
        }
        print("%s (%d texts; trained on %s)" % (test, len(te), "+".join(train)))
        print("   t=%.3f; gated t=%.3f (%.3f) g=%.4f (%s); t fixed g=%.4f (%s); dropped g=%.4f (%s)" % (
            t, gt, gts, gg, ggs, fg, fgs, dg, dgs))
        for k in keys:
            print("   %-16s %s" % (k, fmt(preds[k], y[te])))
            tot[k].append((test, preds[k], y[te]))
    groups = [("all held-out sets", None)]
    blind = [n for n in ("holdout5", "holdout6", "holdout7", "c1", "c2", "c4", "c6", "c7") if n in tests]
    if blind and len(tests) > len(blind):
        groups.append(("sets blind for the rules (%s)" % "+".join(blind), blind))
    for title, only in groups:
        print("pooled over %s:" % title)
        for k, parts in tot.items():
            sel = [(p, yy) for n, p, yy in parts if only is None or n in only]
            p = np.concatenate([a for a, _ in sel])
            yy = np.concatenate([b for _, b in sel])
            print("   %-16s %s" % (k, fmt(p, yy)))


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def export(args):
    texts, y, rules, undone, crisis, sets, names = load_all(args.rules_dir)
    X = matrix(texts)
    idx, oof = inner_oof("lr", sets, names, X, y)
    oy, ri, ci, pi = y[idx], rules[idx], crisis[idx], PHRASE[idx]
    if SHIP == "gated":
        t, g, ts, gs = choose_pair(oof, oy, ri, ci, pi, "gated")
    elif SHIP == "gated, t fixed":
        t0 = choose_threshold(oof, oy, TARGET_RECALL)
        floor = ((ri | (oof >= t0)) & oy).sum() / oy.sum() - MAX_LOSS
        t, g, ts, gs = choose_pair(oof, oy, ri, ci, pi, "gated", [TARGET_RECALL], floor)
    else:
        t, g, ts, gs = choose_threshold(oof, oy, TARGET_RECALL), -1.0, TARGET_RECALL, None
    g = max(g, 0.0)  # no gate: every concept verdict stands
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
        if SHIP == "gated, t fixed":
            how = ("the most selective gate losing at most %.3f of the OR's recall there"
                   % MAX_LOSS)
        else:
            how = "the pair with the fewest false alarms at rules-and-model recall >= %.2f there" % (
                MIN_RECALL)
        f.write("# Threshold and gate (%s): leave-one-set-out over the training sets; the scores\n"
                "# that %.3f and %s of the urgent texts reach out of fold,\n"
                "# %s (train.py choose_pair).\n" % (
                    SHIP, ts, "%.3f" % gs if gs is not None else "none (gate 0)", how))
        f.write("# Trained on (texts, sha256):\n")
        for n in names:
            p = os.path.join(DATA, n + ".jsonl")
            f.write("#   %s.jsonl %d %s\n" % (n, len(sets[n]), sha256(p)))
        f.write("buckets %d\n" % BUCKETS)
        f.write("bias %.6f\n" % bias)
        f.write("threshold %.6f\n" % t)
        f.write("gate %.6f\n" % g)
        for i in nz:
            f.write("%d %.4f\n" % (i, w[i]))
    print("wrote %s: %d weights, bias %.4f, threshold %.4f (%.3f), gate %.4f (%s)" % (
        out, len(nz), bias, t, ts, g, gs))
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
