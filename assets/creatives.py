"""The creative loop: brand documents and creatives embedded and indexed, fatigue measured,
and new ad copy generated from retrieved brand facts by the LLM, then moderated. It proposes;
nothing here touches an ad platform."""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml

from assets.metadata import markdown_table
from assets.resources import EmbeddingModel, LanguageModel, VectorIndex, Warehouse
from connectors.vector_store import VectorRecord
from connectors.warehouse import replace_table
from models.creative.chunking import load_brand_documents
from models.creative.duplicates import dedupe_variants
from models.creative.fatigue import FatigueConfig as FatigueSettings
from models.creative.fatigue import creative_fatigue as fit_fatigue
from models.creative.fatigue import fatigue_frame
from models.creative.generation import CreativeBrief, Exemplar, Passage, generate_variants
from models.creative.grounding import ProductFacts
from models.creative.moderation import ProfanityClassifier, moderate
from models.creative.policy import DEFAULT_POLICY_PATH, load_creative_policy
from models.creative.prompts import load_prompt

REPO = Path(__file__).resolve().parents[1]
BRAND_DIR = REPO / "policies" / "brand"
RETRIEVAL_CHECKS = BRAND_DIR / "retrieval_checks.yaml"
BRAND_COLLECTION = "brand_passages"
CREATIVE_COLLECTION = "creatives"
GENERATED_CHANNELS = ("search", "social", "display", "video")

BRAND_PASSAGES = dg.AssetKey(["features", "brand_passages"])
CREATIVE_EMBEDDINGS = dg.AssetKey(["features", "creative_embeddings"])
CREATIVE_FATIGUE = dg.AssetKey(["measurement", "creative_fatigue"])
CREATIVE_VARIANTS = dg.AssetKey(["decisions", "creative_variants"])
MART_CREATIVES = dg.AssetKey(["marts", "mart_creatives"])
MART_CREATIVE_DAILY = dg.AssetKey(["marts", "mart_creative_daily"])
MART_CAMPAIGNS = dg.AssetKey(["marts", "mart_campaigns"])


def _embed_cache_metadata(embedder) -> dict:
    stats = dict(embedder.stats)
    return {
        "embedding_model": embedder.model_id,
        "embedded_now": int(stats.get("misses", 0)),
        "from_cache": int(stats.get("hits", 0)),
    }


class BrandPassagesConfig(dg.Config):
    brand_dir: str = str(BRAND_DIR)
    max_chars: int = 800


@dg.asset(
    key=BRAND_PASSAGES,
    group_name="creative",
    kinds={"python", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "retrieval_finds_labelled_passages",
            asset=BRAND_PASSAGES,
            blocking=True,
            description="Each labelled brief in policies/brand/retrieval_checks.yaml retrieves "
            "the passage it needs within its top k: generation is only as grounded as retrieval.",
        )
    ],
)
def brand_passages(
    context: dg.AssetExecutionContext,
    config: BrandPassagesConfig,
    warehouse: Warehouse,
    embeddings: EmbeddingModel,
    vector_store: VectorIndex,
):
    """`features.brand_passages`: the brand guidelines, product facts, claim rules and offers in
    `policies/brand/*.md`, chunked by section, embedded (cached by content hash) and indexed in
    the vector store's `brand_passages` collection, which the creative agent retrieves from."""
    chunks = load_brand_documents(Path(config.brand_dir), max_chars=config.max_chars)
    if not chunks:
        raise dg.Failure(f"no brand documents (*.md) under {config.brand_dir}")
    embedder = embeddings.embedder(warehouse)
    vectors = embedder.embed([c.text for c in chunks])
    records = [
        VectorRecord(
            id=c.chunk_id,
            vector=v.tolist(),
            text=c.text,
            metadata={"doc_id": c.doc_id, "heading": " / ".join(c.heading_path)},
        )
        for c, v in zip(chunks, vectors, strict=True)
    ]
    table = pd.DataFrame(
        {
            "chunk_id": [c.chunk_id for c in chunks],
            "doc_id": [c.doc_id for c in chunks],
            "heading": [" / ".join(c.heading_path) for c in chunks],
            "text": [c.text for c in chunks],
            "sha256": [c.sha256 for c in chunks],
            "embedding_model": embedder.model_id,
        }
    )
    with vector_store.store(warehouse) as store:
        # Rebuilt whole: a section deleted from a document must not stay retrievable.
        store.delete_collection(BRAND_COLLECTION)
        store.upsert(BRAND_COLLECTION, records)
        checks = _retrieval_checks(embedder, store)
    with warehouse.connect() as conn:
        replace_table(conn, "features.brand_passages", table)
    context.log.info(f"indexed {len(chunks)} brand passages; retrieval checks: {checks['summary']}")
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "documents": sorted(table["doc_id"].unique().tolist()),
            "vector_store": vector_store.backend,
            **_embed_cache_metadata(embedder),
            "passages": dg.MetadataValue.md(
                markdown_table(["chunk_id", "heading"], table[["chunk_id", "heading"]].values)
            ),
        }
    )
    yield dg.AssetCheckResult(
        check_name="retrieval_finds_labelled_passages",
        passed=checks["failures"] == [],
        metadata={
            "queries": checks["n"],
            "found_in_top_k": checks["found"],
            "top_1": checks["top1"],
            "failures": dg.MetadataValue.json(checks["failures"]),
        },
    )


def _retrieval_checks(embedder, store) -> dict:
    spec = yaml.safe_load(RETRIEVAL_CHECKS.read_text(encoding="utf-8"))
    k = int(spec.get("k", 3))
    cases = spec["cases"]
    qv = embedder.embed([c["brief"] for c in cases])
    failures, found, top1 = [], 0, 0
    for case, v in zip(cases, qv, strict=True):
        ids = [h.id for h in store.query(BRAND_COLLECTION, v.tolist(), k=k)]
        if case["expect"] in ids:
            found += 1
            top1 += ids[0] == case["expect"]
        else:
            failures.append({"brief": case["brief"], "expected": case["expect"], "got": ids})
    return {
        "n": len(cases),
        "found": found,
        "top1": top1,
        "failures": failures,
        "summary": f"{found}/{len(cases)} in top {k}, {top1} first",
    }


@dg.asset(
    key=CREATIVE_EMBEDDINGS,
    deps=[MART_CREATIVES],
    group_name="creative",
    kinds={"python", "duckdb"},
)
def creative_embeddings(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    embeddings: EmbeddingModel,
    vector_store: VectorIndex,
) -> dg.MaterializeResult:
    """`features.creative_embeddings`: every creative's copy (headline and body) embedded and
    indexed in the `creatives` collection with its campaign, channel and recent click rate, so
    new copy can be checked for near-duplicates and exemplars found by similarity."""
    with warehouse.connect(read_only=True) as conn:
        creatives = conn.execute(
            "select creative_id, campaign_id, channel, headline, coalesce(body, '') as body, "
            "ctr_28d, impressions_28d from marts.mart_creatives order by creative_id"
        ).df()
    texts = (creatives["headline"] + "\n" + creatives["body"]).tolist()
    embedder = embeddings.embedder(warehouse)
    vectors = embedder.embed(texts)
    records = [
        VectorRecord(
            id=str(row.creative_id),
            vector=v.tolist(),
            text=text,
            metadata={"campaign_id": str(row.campaign_id), "channel": str(row.channel)},
        )
        for row, text, v in zip(creatives.itertuples(index=False), texts, vectors, strict=True)
    ]
    with vector_store.store(warehouse) as store:
        store.delete_collection(CREATIVE_COLLECTION)
        store.upsert(CREATIVE_COLLECTION, records)
    table = creatives.assign(
        text_sha256=[hashlib.sha256(t.encode()).hexdigest() for t in texts],
        embedding_model=embedder.model_id,
    )
    with warehouse.connect() as conn:
        replace_table(conn, "features.creative_embeddings", table)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "distinct_texts": int(table["text_sha256"].nunique()),
            "vector_store": vector_store.backend,
            **_embed_cache_metadata(embedder),
        }
    )


class FatigueConfig(dg.Config):
    min_days: int = 7
    min_clicks: int = 50
    alpha: float = 0.05  # one-sided: only a falling click rate counts as fatigue
    min_decay: float = 0.20  # a significant but smaller drop is not worth acting on
    exposure: str = "linear"  # linear | log


@dg.asset(
    key=CREATIVE_FATIGUE,
    deps=[MART_CREATIVE_DAILY],
    group_name="creative",
    kinds={"python", "duckdb"},
)
def creative_fatigue(
    context: dg.AssetExecutionContext, config: FatigueConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """`measurement.creative_fatigue`: per creative, how its click rate changes with cumulative
    exposure (a Poisson regression of daily clicks on cumulative impressions, overdispersion
    allowed): slope, relative decay with its interval, and whether that is fatigue, a
    significant decay beyond `min_decay`. Creatives with too little data say so."""
    with warehouse.connect(read_only=True) as conn:
        daily = conn.execute(
            "select date_day, creative_id, impressions, clicks from marts.mart_creative_daily "
            "order by creative_id, date_day"
        ).df()
    settings = FatigueSettings(
        min_days=config.min_days, min_clicks=config.min_clicks, alpha=config.alpha,
        min_decay=config.min_decay, exposure=config.exposure,
    )  # fmt: skip
    table = fatigue_frame(fit_fatigue(daily, settings))
    with warehouse.connect() as conn:
        replace_table(conn, "measurement.creative_fatigue", table)
    counts = table["status"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            **{f"creatives_{k}": int(v) for k, v in sorted(counts.items())},
        }
    )


class CreativeVariantsConfig(dg.Config):
    max_briefs: int = 8  # campaigns to write for, fatigued ones first
    n_variants: int = 3
    k_passages: int = 4
    seed: int = 0
    key_message: str = "Lightweight, comfortable running shoes with free returns"
    audience: str = "runners aged 25-45"
    duplicate_threshold: float = 0.92
    policy_path: str = str(DEFAULT_POLICY_PATH)
    prompt: str = "creative_variants"
    prompt_version: str | None = None  # default: the newest version


MODERATION_STAGES = ("format", "blocklist", "claims", "toxicity", "pii", "grounding", "ai_label")


@dg.asset(
    key=CREATIVE_VARIANTS,
    deps=[BRAND_PASSAGES, CREATIVE_EMBEDDINGS, CREATIVE_FATIGUE, MART_CAMPAIGNS],
    group_name="creative",
    kinds={"python", "duckdb", "openai"},
    check_specs=[
        dg.AssetCheckSpec(
            "every_variant_moderated",
            asset=CREATIVE_VARIANTS,
            blocking=True,
            description="Every variant carries a verdict from every moderation stage, and none "
            "is proposed that failed one.",
        ),
        dg.AssetCheckSpec(
            "proposed_variants_labelled",
            asset=CREATIVE_VARIANTS,
            blocking=True,
            description="Every proposed variant carries the machine-readable AI-generated label.",
        ),
    ],
)
def creative_variants(
    context: dg.AssetExecutionContext,
    config: CreativeVariantsConfig,
    warehouse: Warehouse,
    embeddings: EmbeddingModel,
    vector_store: VectorIndex,
    llm: LanguageModel,
):
    """`decisions.creative_variants`: new ad copy per campaign brief, written by the LLM from
    retrieved brand passages and the campaign channel's best and worst creatives, then
    de-duplicated against existing copy and moderated (format, blocklist, claims, toxicity,
    PII, grounding in the retrieved facts, AI label). Every variant is kept with its status
    (`proposed`, `rejected`, `duplicate`, `failed`) and every reason; `decisions.llm_calls`
    gets each call's model, prompt version, seed, tokens, latency and cost."""
    policy = load_creative_policy(Path(config.policy_path))
    prompt = load_prompt(config.prompt, config.prompt_version)
    briefs = _briefs(warehouse, config)
    if not briefs:
        raise dg.Failure("no campaigns on a channel with generated copy: nothing to write for")
    exemplars = _exemplars(warehouse)
    existing = _existing_copy(warehouse)
    embedder = embeddings.embedder(warehouse)
    classifier = ProfanityClassifier()
    rows, records, errors = [], [], []
    with vector_store.store(warehouse) as store, llm.session(context.log) as client:

        def retrieve(query: str, k: int) -> list[Passage]:
            hits = store.query(BRAND_COLLECTION, embedder.embed([query])[0].tolist(), k=k)
            return [Passage(h.id, h.text, h.score) for h in hits]

        for i, brief in enumerate(briefs, start=1):
            context.log.info(
                f"brief {i}/{len(briefs)}: campaign {brief.campaign_id} ({brief.channel})"
            )
            result = generate_variants(
                client,
                brief,
                retrieve,
                exemplars.get(brief.channel, []),
                prompt=prompt,
                limits=policy.limits_for(brief.channel),
                seed=config.seed,
                k_passages=config.k_passages,
            )
            records.extend(result.records)
            errors.extend(
                {"campaign_id": e.campaign_id, "stage": e.stage, "error": e.message}
                for e in result.errors
            )
            judged = _judge(result, existing, embedder, policy, classifier, config, client.model)
            rows.extend(judged)
            # Later briefs must not propose what an earlier one already proposed.
            existing.extend(
                (f"variant {r['variant_id']}", f"{r['headline']}\n{r['body']}")
                for r in judged
                if r["status"] == "proposed"
            )
    table = pd.DataFrame(rows, columns=VARIANT_COLUMNS)
    calls = _calls_frame(records, context.run_id)
    with warehouse.connect() as conn:
        replace_table(conn, "decisions.creative_variants", table)
        _append_calls(conn, calls)
    status = table["status"].value_counts().to_dict()
    context.log.info(f"variants: {status}; LLM errors: {len(errors)}")
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            **{f"variants_{k}": int(v) for k, v in sorted(status.items())},
            "briefs": len(briefs),
            "llm_model": client.model,
            "llm_calls": len(calls),
            "llm_errors": dg.MetadataValue.json(errors),
            "tokens_in": int(calls["tokens_in"].sum()) if len(calls) else 0,
            "tokens_out": int(calls["tokens_out"].sum()) if len(calls) else 0,
            "llm_cost_usd": float(calls["cost_usd"].sum()) if len(calls) else 0.0,
            "prompt_version": prompt.prompt_version,
            "policy_version": str(policy.version),
            "policy_sha256": policy.policy_sha256,
            **_embed_cache_metadata(embedder),
            "preview": dg.MetadataValue.md(
                markdown_table(
                    ["status", "channel", "headline", "body", "reasons"],
                    table[["status", "channel", "headline", "body", "reasons"]].values[:20],
                )
            ),
        }
    )
    yield from _variant_checks(table)


VARIANT_COLUMNS = [
    "variant_id",
    "campaign_id",
    "channel",
    "headline",
    "body",
    "rationale",
    "status",
    "reasons",
    "stage_verdicts",
    "ai_label",
    "nearest_creative_id",
    "nearest_cosine",
    "retrieved_passage_ids",
    "prompt_version",
    "model",
    "seed",
    "policy_version",
    "policy_sha256",
]


FACT_DOCUMENTS = ("product_facts", "promotions")


def _judge(result, existing, embedder, policy, classifier, config, model) -> list[dict]:
    """Near-duplicates (of existing creatives, earlier proposals and each other), then the
    whole moderation chain on every variant, duplicates included, so each row carries every
    verdict. Grounding facts are the retrieved passages of the product facts and promotions:
    guidelines and claim rules are not facts."""
    variants = result.variants
    if not variants:
        return []
    facts = ProductFacts.from_texts(
        [p.text for p in result.passages if p.passage_id.split("#")[0] in FACT_DOCUMENTS]
    )
    dedup = dedupe_variants(variants, embedder, existing, threshold=config.duplicate_threshold)
    rows = []
    for position, (variant, match) in enumerate(zip(variants, dedup.matches, strict=True)):
        verdict = moderate(variant, policy, facts, classifier=classifier)
        reasons = list(verdict.reasons)
        if match.is_duplicate:
            reasons.insert(0, f"duplicate: {match.reason}")
        status = (
            "duplicate" if match.is_duplicate else ("proposed" if verdict.passed else "rejected")
        )
        ident = json.dumps(
            # the position keeps two identical answers to one brief apart
            [variant.campaign_id, position, variant.headline, variant.body,
             variant.prompt_version, model, variant.seed],
            ensure_ascii=False,
        )  # fmt: skip
        rows.append(
            {
                "variant_id": hashlib.sha256(ident.encode()).hexdigest()[:16],
                "campaign_id": variant.campaign_id,
                "channel": variant.channel,
                "headline": variant.headline,
                "body": variant.body,
                "rationale": variant.rationale,
                "status": status,
                "reasons": json.dumps(reasons, ensure_ascii=False),
                "stage_verdicts": json.dumps(
                    [
                        {"stage": s.stage, "passed": s.passed, "reasons": list(s.reasons)}
                        for s in verdict.stages
                    ],
                    ensure_ascii=False,
                ),
                "ai_label": json.dumps(verdict.label, ensure_ascii=False),
                "nearest_creative_id": match.nearest_existing_id,
                "nearest_cosine": match.existing_cosine,
                "retrieved_passage_ids": json.dumps(list(variant.retrieved_passage_ids)),
                "prompt_version": variant.prompt_version,
                "model": model,
                "seed": variant.seed,
                "policy_version": str(verdict.policy_version),
                "policy_sha256": verdict.policy_sha256,
            }
        )
    return rows


def _briefs(warehouse: Warehouse, config: CreativeVariantsConfig) -> list[CreativeBrief]:
    """One brief per campaign on a channel with generated copy; campaigns with a fatigued
    creative first, then by spend."""
    channels = ", ".join(f"'{c}'" for c in GENERATED_CHANNELS)
    with warehouse.connect(read_only=True) as conn:
        campaigns = conn.execute(
            f"""
            select c.campaign_id, c.channel, c.objective,
                   count(f.creative_id) filter (where f.status = 'fatigued') as fatigued
            from marts.mart_campaigns c
            left join marts.mart_creatives cr on cr.campaign_id = c.campaign_id
            left join measurement.creative_fatigue f on f.creative_id = cr.creative_id
            where c.channel in ({channels})
            group by c.campaign_id, c.channel, c.objective, c.total_spend_usd
            order by fatigued desc, c.total_spend_usd desc, c.campaign_id
            limit ?
            """,
            [config.max_briefs],
        ).fetchall()
    return [
        CreativeBrief(
            campaign_id=str(cid),
            channel=channel,
            objective=objective or "conversions",
            audience=config.audience,
            key_message=config.key_message,
            n_variants=config.n_variants,
        )
        for cid, channel, objective, _ in campaigns
    ]


def _exemplars(warehouse: Warehouse) -> dict[str, list[Exemplar]]:
    """Per channel, the creatives with recent delivery and their click rates; generation
    shows the model the best and the worst of them."""
    with warehouse.connect(read_only=True) as conn:
        df = conn.execute(
            "select creative_id, channel, headline, coalesce(body, '') as body, ctr_28d, "
            "impressions_28d from marts.mart_creatives where impressions_28d > 0 "
            "order by channel, ctr_28d desc, creative_id"
        ).df()
    return {
        str(channel): [
            Exemplar(
                str(r.creative_id), r.headline, r.body, float(r.ctr_28d), int(r.impressions_28d)
            )
            for r in g.drop_duplicates(["headline", "body"]).itertuples(index=False)
        ]
        for channel, g in df.groupby("channel", sort=True)
    }


def _existing_copy(warehouse: Warehouse) -> list[tuple[str, str]]:
    with warehouse.connect(read_only=True) as conn:
        rows = conn.execute(
            "select creative_id, headline || chr(10) || coalesce(body, '') from "
            "marts.mart_creatives order by creative_id"
        ).fetchall()
    return [(str(cid), text) for cid, text in rows]


def _calls_frame(records, run_id: str) -> pd.DataFrame:
    frame = pd.DataFrame([r.__dict__ for r in records])
    if frame.empty:
        return frame
    return frame.assign(run_id=run_id)


def _append_calls(conn, calls: pd.DataFrame) -> None:
    """Append-only: every call cost something, reruns included. A rerun of the same run id
    replaces that run's rows, so retrying a failed write does not double-count."""
    if calls.empty:
        return
    conn.register("_calls", calls)
    conn.execute("create table if not exists decisions.llm_calls as select * from _calls limit 0")
    conn.execute("delete from decisions.llm_calls where run_id = ?", [calls["run_id"].iloc[0]])
    conn.execute("insert into decisions.llm_calls by name select * from _calls")
    conn.unregister("_calls")


def _variant_checks(table: pd.DataFrame):
    verdicts = [json.loads(v) for v in table["stage_verdicts"]]
    incomplete = [
        vid
        for vid, stages in zip(table["variant_id"], verdicts, strict=True)
        if [s["stage"] for s in stages] != list(MODERATION_STAGES)
    ]
    wrongly_proposed = [
        vid
        for vid, status, stages in zip(table["variant_id"], table["status"], verdicts, strict=True)
        if status == "proposed" and not all(s["passed"] for s in stages)
    ]
    yield dg.AssetCheckResult(
        check_name="every_variant_moderated",
        passed=not incomplete and not wrongly_proposed,
        metadata={
            "variants": len(table),
            "incomplete": dg.MetadataValue.json(incomplete),
            "proposed_despite_failure": dg.MetadataValue.json(wrongly_proposed),
        },
    )
    proposed = table[table["status"] == "proposed"]
    unlabelled = [
        vid
        for vid, label in zip(proposed["variant_id"], proposed["ai_label"], strict=True)
        if not json.loads(label).get("ai_generated")
    ]
    yield dg.AssetCheckResult(
        check_name="proposed_variants_labelled",
        passed=not unlabelled,
        metadata={"proposed": len(proposed), "unlabelled": dg.MetadataValue.json(unlabelled)},
    )
