"""Hashed text features of the urgency model, byte-for-byte the same as
crates/salve-core/src/urgency/model.rs (tested there against model_check.jsonl).

normalise: Unicode NFD; combining marks (canonical combining class not 0) and apostrophes
(' and U+2019) removed; every ASCII letter or digit kept,
lowercased; every other character (accents, punctuation, emoji, spaces) becomes a space; runs of
spaces collapse; no space at either end.

features: word unigrams "w:<word>", word bigrams "b:<w1> <w2>", and character 3-, 4- and 5-grams
"c:<gram>" of " " + normalised + " "; each hashed with 64-bit FNV-1a over its UTF-8 (ASCII) bytes,
modulo BUCKETS; the distinct buckets are the features, each worth 1/sqrt(count of distinct
buckets) (binary, L2-normalised).
"""

import unicodedata

BUCKETS = 1 << 18
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & MASK
    return h


def normalise(text: str) -> str:
    out = []
    for ch in unicodedata.normalize("NFD", text):
        if ch in ("'", "\u2019") or unicodedata.combining(ch):
            continue
        if ch.isascii() and ch.isalnum():
            out.append(ch.lower())
        else:
            out.append(" ")
    return " ".join("".join(out).split())


def feature_strings(norm: str):
    words = norm.split()
    for w in words:
        yield "w:" + w
    for a, b in zip(words, words[1:]):
        yield "b:" + a + " " + b
    padded = " " + norm + " "
    for n in (3, 4, 5):
        for i in range(len(padded) - n + 1):
            yield "c:" + padded[i : i + n]


def buckets(text: str, n_buckets: int = BUCKETS):
    """The sorted distinct buckets of a text."""
    norm = normalise(text)
    return sorted({fnv1a64(f.encode("utf-8")) % n_buckets for f in feature_strings(norm)})
