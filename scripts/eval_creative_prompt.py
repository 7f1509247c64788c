"""Evaluate creative-variant prompt versions end to end on the local model.

For a fixed set of briefs (search, social, display, video), each prompt version goes through what
the `decisions.creative_variants` asset does: retrieve brand passages (top 4 by MiniLM cosine to
`brief_query`), generate with SmolLM2 through llama.cpp (schema-constrained, fixed seeds), drop
near-duplicates of existing creatives (cosine >= 0.92), and run the moderation chain with facts
built from the retrieved `product_facts` and `promotions` passages only. It prints, per version:
variants produced, schema/LLM errors, duplicates, moderation rejections by stage, the proposed
count and the proposed texts. Nothing is rewritten: what is printed is what the model wrote.

"plausible proposed" is a rough screen (two-word headline, five-word body that is not the
headline again, no prompt scaffolding) for the report only; moderation does not judge relevance,
so read the texts. It also flags proposed copy that echoes the prompt itself (a headline or body
found verbatim in the prompt file), so that a prompt cannot "win" by carrying the copy in it.

    .venv/bin/python scripts/eval_creative_prompt.py                      # every version
    .venv/bin/python scripts/eval_creative_prompt.py --versions v2 --repeat  # determinism check
    .venv/bin/python scripts/eval_creative_prompt.py --versions v2 --temperature 0.3 --all

One llama.cpp server with one thread; about 10 to 20 s per brief and version.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from connectors.embeddings import LocalMiniLMEmbedder  # noqa: E402
from connectors.llm import LocalLLMServer  # noqa: E402
from models.creative.chunking import load_brand_documents  # noqa: E402
from models.creative.duplicates import DEFAULT_THRESHOLD, dedupe_variants  # noqa: E402
from models.creative.generation import (  # noqa: E402
    CreativeBrief,
    Exemplar,
    GenerationResult,
    InMemoryRetriever,
    generate_variants,
)
from models.creative.grounding import ProductFacts  # noqa: E402
from models.creative.moderation import STAGES, ProfanityClassifier, moderate  # noqa: E402
from models.creative.policy import load_creative_policy  # noqa: E402
from models.creative.prompts import available_versions, load_prompt  # noqa: E402
from models.simulation.generator import _BODIES, _HEADLINES  # noqa: E402

PROMPT_NAME = "creative_variants"
BRAND_DIR = REPO / "policies" / "brand"
# As in the asset: grounding facts come only from these documents' retrieved passages.
FACT_DOCS = ("product_facts", "promotions")
AUDIENCE = "everyday runners in the United States"

BRIEFS = [
    CreativeBrief("21000000001", "search", "conversions", AUDIENCE,
                  "The Northwind Tempo is light: 210 g per shoe"),
    CreativeBrief("21000000002", "search", "conversions", AUDIENCE,
                  "Free returns within 30 days: the 30-day run trial"),
    CreativeBrief("23851000000001", "social", "conversions", AUDIENCE,
                  "Summer Miles: 20% off the Tempo and the Tempo Trail until 31 August"),
    CreativeBrief("23851000000002", "social", "conversions", AUDIENCE,
                  "The Tempo has an upper made from recycled polyester mesh"),
    CreativeBrief("21000000003", "display", "awareness", AUDIENCE,
                  "The Tempo comes in sizes EU 36 to 48 and fits true to size"),
    CreativeBrief("21000000004", "display", "awareness", AUDIENCE,
                  "The Tempo Trail grips rocky and muddy trails"),
    CreativeBrief("21000000005", "video", "awareness", AUDIENCE,
                  "The Tempo is cushioned for daily training and long runs"),
    CreativeBrief("21000000006", "video", "awareness", AUDIENCE,
                  "Orders ship within 2 business days"),
]  # fmt: skip


def existing_creatives() -> dict[str, list[Exemplar]]:
    """Per channel, every headline x body the simulated ad accounts run, with a made-up but fixed
    CTR (a hash of the text): what `split_exemplars` picks the top 2 and bottom 1 from."""
    out: dict[str, list[Exemplar]] = {}
    for channel in ("search", "social", "display", "video"):
        rows = []
        for i, headline in enumerate(_HEADLINES[channel]):
            for j, body in enumerate(_BODIES):
                h = hashlib.sha256(f"{channel}|{headline}|{body}".encode()).digest()
                ctr = 0.005 + int.from_bytes(h[:4], "big") / 2**32 * 0.03
                rows.append(Exemplar(f"{channel}-{i}{j}", headline, body, ctr, 10_000))
        out[channel] = rows
    return out


def echoes_prompt(text: str, prompt_text: str) -> bool:
    t = " ".join(text.lower().split())
    return len(t) >= 12 and t in " ".join(prompt_text.lower().split())


def plausible(headline: str, body: str) -> bool:
    """A rough screen for copy a person would read as an ad, for the report only (it filters
    nothing): a headline of two words or more, a body of five words or more that is not the
    headline again, and no prompt scaffolding (markdown, ids, the words "ad"/"facts"/"CTR")."""
    h, b = headline.strip(), body.strip()
    junk = ("#", "[", "]", "{", "}", "ctr", "facts", " ad ", "ads ", "headline", "variant")
    text = f" {h} {b} ".lower()
    return (
        len(h.split()) >= 2
        and len(b.split()) >= 5
        and h.lower().rstrip(".!,") != b.lower().rstrip(".!,")
        and not any(j in text for j in junk)
    )


def evaluate(version: str, args, llm, retriever, embedder, policy, classifier) -> dict:
    prompt = load_prompt(PROMPT_NAME, version)
    prompt_text = prompt.system + "\n" + prompt.user_template
    exemplars = existing_creatives()
    existing = [(e.creative_id, f"{e.headline}\n{e.body}") for ex in exemplars.values() for e in ex]
    stats: Counter[str] = Counter()
    stage_fail: Counter[str] = Counter()
    proposed, others, fingerprints = [], [], []
    started = time.perf_counter()
    for brief in BRIEFS[: args.briefs]:
        if args.n_variants != brief.n_variants:
            brief = CreativeBrief(**{**brief.__dict__, "n_variants": args.n_variants})
        results: list[GenerationResult] = []
        for call in range(args.calls):
            results.append(
                generate_variants(
                    llm,
                    brief,
                    retriever,
                    exemplars[brief.channel],
                    prompt=prompt,
                    limits=policy.limits_for(brief.channel),
                    seed=args.seed + call,
                    temperature=args.temperature,
                    max_tokens=args.max_tokens,
                )
            )
        for result in results:
            stats["calls"] += 1
            for e in result.errors:
                stats[f"errors_{e.stage}"] += 1
                if args.all:
                    print(f"  [{version}] error {brief.channel} {e.stage}: {e.message[:160]}")
            fingerprints.append([(v.headline, v.body) for v in result.variants])
        variants = [v for r in results for v in r.variants]
        passages = {p.passage_id: p for r in results for p in r.passages}
        stats["variants"] += len(variants)
        if not variants:
            continue
        facts = ProductFacts.from_texts(
            [p.text for pid, p in passages.items() if pid.split("#")[0] in FACT_DOCS]
        )
        dedup = dedupe_variants(variants, embedder, existing, DEFAULT_THRESHOLD)
        dropped = {id(v): why for v, why in dedup.dropped}
        for v in variants:
            verdict = moderate(v, policy, facts, classifier=classifier)
            echo = echoes_prompt(v.headline, prompt_text) or echoes_prompt(v.body, prompt_text)
            stats["prompt_echoes"] += echo
            if id(v) in dropped:
                stats["duplicates"] += 1
                status, why = "duplicate", [dropped[id(v)]]
            elif not verdict.passed:
                stats["rejected"] += 1
                for s in verdict.failed_stages:
                    stage_fail[s] += 1
                status, why = "rejected", list(verdict.reasons)
            else:
                stats["proposed"] += 1
                stats["plausible"] += plausible(v.headline, v.body) and not echo
                status, why = "proposed", []
            line = (brief.channel, brief.key_message[:40], v.headline, v.body, status, why, echo)
            (proposed if status == "proposed" else others).append(line)
    stats["seconds"] = round(time.perf_counter() - started)
    return {
        "version": prompt.prompt_version,
        "stats": stats,
        "stage_fail": stage_fail,
        "proposed": proposed,
        "others": others,
        "fingerprint": hashlib.sha256(json.dumps(fingerprints).encode()).hexdigest()[:12],
    }


def report(out: dict, show_all: bool) -> None:
    s = out["stats"]
    print(f"\n=== {out['version']}  (outputs {out['fingerprint']}, {s['seconds']} s)")
    errors = {k: v for k, v in s.items() if k.startswith("errors_")}
    print(
        f"calls {s['calls']}  variants {s['variants']}  errors {dict(errors) or 0}  "
        f"duplicates {s['duplicates']}  rejected {s['rejected']}  proposed {s['proposed']}  "
        f"plausible proposed {s['plausible']}  prompt echoes {s['prompt_echoes']}"
    )
    by_stage = {st: out["stage_fail"][st] for st in STAGES if out["stage_fail"][st]}
    print(f"rejections by stage (a variant can fail several): {by_stage or '-'}")
    print("proposed:")
    for ch, _key, h, b, _, _, echo in out["proposed"]:
        flag = "  (ECHOES PROMPT)" if echo else ("" if plausible(h, b) else "  (implausible)")
        print(f"  [{ch:7}] {h!r} / {b!r}{flag}")
    if show_all:
        print("not proposed:")
        for ch, _key, h, b, status, why, _ in out["others"]:
            print(f"  [{ch:7}] {status}: {h!r} / {b!r}")
            for w in why[:3]:
                print(f"             - {w[:150]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="*", help="prompt versions (default: all)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--n-variants", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1, help="calls per brief (seed, seed+1..)")
    parser.add_argument("--briefs", type=int, default=len(BRIEFS), help="use the first N")
    parser.add_argument("--repeat", action="store_true", help="run twice, compare the outputs")
    parser.add_argument("--all", action="store_true", help="also print rejected copy and why")
    args = parser.parse_args()

    versions = args.versions or available_versions(PROMPT_NAME)
    policy = load_creative_policy()
    embedder = LocalMiniLMEmbedder()
    retriever = InMemoryRetriever(load_brand_documents(BRAND_DIR), embedder)
    classifier = ProfanityClassifier()
    print(
        f"{len(BRIEFS[: args.briefs])} briefs x {args.calls} call(s), n_variants "
        f"{args.n_variants}, seed {args.seed}, temperature {args.temperature}"
    )
    with LocalLLMServer(threads=1) as server:
        llm = server.llm(max_retries=0, timeout_s=120)
        for version in versions:
            out = evaluate(version, args, llm, retriever, embedder, policy, classifier)
            report(out, args.all)
            if args.repeat:
                again = evaluate(version, args, llm, retriever, embedder, policy, classifier)
                same = again["fingerprint"] == out["fingerprint"]
                print(f"repeat: outputs {again['fingerprint']} -> {'SAME' if same else 'DIFFER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
