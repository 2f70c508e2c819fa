#!/usr/bin/env python3
"""nlu-reference.py: an independent reference for voicegate's sentence
embedder (src/nlu/embed/), written to tests/data/nlu/reference.json.

Why it exists: the Rust embedder reimplements all-MiniLM-L6-v2's tokenizer
and forward pass. This script computes the same thing another way —
Hugging Face's `tokenizers` (the reference WordPiece implementation) for the
token ids, and the BERT forward written out in numpy (no torch) — so the
Rust tests can check ids exactly and embeddings to ~1e-4.

Run it (from the repository root; needs the model installed by
`voicegate models install all-minilm-l6-v2`, or any directory holding
model.safetensors and tokenizer.json):

    python3 -m venv /tmp/nlu-venv
    /tmp/nlu-venv/bin/pip install numpy safetensors tokenizers
    /tmp/nlu-venv/bin/python scripts/nlu-reference.py \
        ~/.local/share/voicegate/models/all-minilm-l6-v2 > tests/data/nlu/reference.json
"""

import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

# Varied on purpose: punctuation, accents, numbers and currency, a long word
# (split into many pieces), a word over 100 characters ([UNK]), CJK and
# full-width punctuation, a control character and a tab, and a sentence
# longer than the 128-token limit; then the sanity triple (8, 9, 10); then
# Greek, a dotted capital I, an emoji, Arabic and Devanagari.
SENTENCES = [
    "Set a timer for ten minutes.",
    "Café crème, s'il vous plaît — naïve façade!",
    "Order 12 packs of paper towels at $3.99 each (2x), ok?",
    "pneumonoultramicroscopicsilicovolcanoconiosis is a long word",
    "x" * 101 + " is too long for a word",
    "東京の天気は？ Hello,world!!",
    "tab\there\u0000 and\u200b zero-width",
    " ".join(["remind me to buy milk and eggs"] * 20),
    "set a timer for ten minutes",
    "start a 10 minute countdown",
    "what's the weather in Paris",
    "ΣΊΣΥΦΟΣ in İstanbul 😀, naïve ½ café",
    "مرحبا بالعالم؟ नमस्ते दुनिया",
]

MAX_TOKENS = 128
LAYERS = 6
HEADS = 12
EPS = 1e-12


def layer_norm(x, w, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * w + b


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    # The exact (erf) GELU BERT was trained with, in float64.
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def embed(w, ids):
    """One sentence (no padding) → its 384-dim sentence embedding."""
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def lin(name, h):
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        d = x.shape[1] // HEADS
        q = lin("attention.self.query", x).reshape(n, HEADS, d).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, HEADS, d).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, HEADS, d).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(n, HEADS * d)
        x = layer_norm(
            lin("attention.output.dense", ctx) + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        h = gelu(lin("intermediate.dense", x))
        x = layer_norm(
            lin("output.dense", h) + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    pooled = x.mean(0)  # every token is real: the mask is all ones
    return pooled / np.linalg.norm(pooled)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    model_dir = sys.argv[1]
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    w = {k: v.astype(np.float64) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    cases = []
    vectors = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        e = embed(w, ids)
        vectors.append(e)
        cases.append({"text": s, "ids": ids, "first16": [round(float(v), 6) for v in e[:16]]})
    pairs = [(8, 9), (8, 10), (9, 10), (0, 8), (1, 2), (3, 4)]
    cosines = [
        {"a": a, "b": b, "cos": round(float(vectors[a] @ vectors[b]), 6)} for a, b in pairs
    ]
    out = {
        "source": "scripts/nlu-reference.py (tokenizers + numpy float64 forward)",
        "tokenizers_version": __import__("tokenizers").__version__,
        "cases": cases,
        "cosines": cosines,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
