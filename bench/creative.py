"""Benchmark: the creative loop's embedded defaults, in one run.

- Embeddings: sentences per second of the local MiniLM (int8 ONNX) on short ad copy, batched
  (64) against one sentence per call (the baseline, measured in the same run), with 1 and 2
  threads, and peak memory.
- Generation: the local llama.cpp server with SmolLM2-135M-Instruct: start-up time, time to
  first token (streamed), decode tokens per second for free text, and the same request with a
  JSON schema (the creative agent's structured output) as a ratio against free text.

    .venv/bin/python bench/creative.py                 # both
    .venv/bin/python bench/creative.py --only embeddings
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEADLINES = [
    "Trail shoes, {w} g light",
    "Run farther in comfort",
    "Free returns for {d} days",
    "Meet the Northwind Tempo",
    "Built for early miles in {c}",
    "Your next PR starts here",
]
BODIES = [
    "Cushioned, breathable and {w} g per shoe. Free returns within {d} days.",
    "Recycled mesh upper and a grippy outsole. Sizes 36 to 48.",
    "Join {n},000 runners who switched this year. Ships in 2 days to {c}.",
]
# As the creative agent calls the local server: without llama.cpp's prompt cache, so every
# request pays for its whole prompt (time to first token included).
COLD = {"cache_prompt": False}
CITIES = ["Berlin", "Lyon", "Leeds", "Austin", "Oslo", "Porto", "Turin", "Ghent"]


def sentences(n: int, seed: int = 0) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h = HEADLINES[rng.integers(len(HEADLINES))]
        b = BODIES[rng.integers(len(BODIES))]
        fill = {
            "w": int(rng.integers(180, 320)),
            "d": int(rng.choice([14, 30, 60])),
            "c": CITIES[rng.integers(len(CITIES))],
            "n": int(rng.integers(10, 90)),
        }
        out.append(f"{h.format(**fill)}\n{b.format(**fill)}")
    return out


def bench_embeddings(n: int) -> list[dict]:
    import psutil

    from connectors.embeddings import LocalMiniLMEmbedder

    texts = sentences(n)
    rows = []
    proc = psutil.Process()
    for threads in (1, 2):
        model = LocalMiniLMEmbedder(threads=threads, batch_size=64)
        model.embed(texts[:8])  # load the session outside the timing
        for batch in (1, 64):
            t0 = time.perf_counter()
            if batch == 1:
                for t in texts[: n // 4]:
                    model.embed([t])
                done = n // 4
            else:
                model.embed(texts)
                done = n
            dt = time.perf_counter() - t0
            rows.append(
                {
                    "threads": threads,
                    "batch": batch,
                    "sentences": done,
                    "seconds": round(dt, 2),
                    "sentences_per_s": round(done / dt, 1),
                    "rss_mb": round(proc.memory_info().rss / 2**20),
                }
            )
    base = rows[0]["sentences_per_s"]
    for r in rows:
        r["ratio_vs_batch1_1thread"] = round(r["sentences_per_s"] / base, 2)
    return rows


def bench_generation(repeats: int, threads: int) -> dict:
    from openai import OpenAI

    from connectors.llm import LocalLLMServer

    t0 = time.perf_counter()
    server = LocalLLMServer(threads=threads)
    server.start()
    startup = time.perf_counter() - t0
    try:
        client = OpenAI(base_url=server.base_url, api_key="local")
        messages = [
            {"role": "system", "content": "You write short ad copy for running shoes."},
            {"role": "user", "content": "Write three headlines for a 210 g trail shoe."},
        ]
        schema = {
            "type": "object",
            "properties": {
                "variants": {
                    "type": "array",
                    "minItems": 3,
                    "maxItems": 3,
                    "items": {
                        "type": "object",
                        "properties": {
                            "headline": {"type": "string", "maxLength": 30},
                            "body": {"type": "string", "maxLength": 90},
                        },
                        "required": ["headline", "body"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["variants"],
            "additionalProperties": False,
        }
        free, structured, ttft = [], [], []
        for i in range(repeats):
            t0 = time.perf_counter()
            first = None
            stream = client.chat.completions.create(
                model=server.model, messages=messages, temperature=0, seed=i, max_tokens=400,
                stream=True, extra_body=COLD,
            )  # fmt: skip
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - t0
            ttft.append(first or float("nan"))
            for kind, sink in (("free", free), ("schema", structured)):
                kwargs = {}
                if kind == "schema":
                    kwargs["response_format"] = {
                        "type": "json_schema",
                        "json_schema": {"name": "variants", "schema": schema, "strict": True},
                    }
                t0 = time.perf_counter()
                resp = client.chat.completions.create(
                    model=server.model, messages=messages, temperature=0, seed=i,
                    max_tokens=400, extra_body=COLD, **kwargs,
                )  # fmt: skip
                dt = time.perf_counter() - t0
                if kind == "schema":
                    json.loads(resp.choices[0].message.content)  # must parse
                sink.append((resp.usage.completion_tokens, dt))
    finally:
        server.stop()

    def tps(runs):
        return statistics.median(t / dt for t, dt in runs)

    return {
        "threads": threads,
        "startup_s": round(startup, 2),
        "time_to_first_token_s": round(statistics.median(ttft), 3),
        "free_tokens_per_s": round(tps(free), 1),
        "schema_tokens_per_s": round(tps(structured), 1),
        "schema_vs_free_ratio": round(tps(structured) / tps(free), 2),
        "schema_request_s": round(statistics.median(dt for _, dt in structured), 2),
        "repeats": repeats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["embeddings", "generation"])
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.only in (None, "embeddings"):
        print("embeddings (local MiniLM int8 ONNX):", flush=True)
        for row in bench_embeddings(args.sentences):
            print("  " + json.dumps(row), flush=True)
    if args.only in (None, "generation"):
        print("generation (llama.cpp server, SmolLM2-135M-Instruct Q4_1):", flush=True)
        for threads in (1, 2):
            print("  " + json.dumps(bench_generation(args.repeats, threads)), flush=True)


if __name__ == "__main__":
    main()
