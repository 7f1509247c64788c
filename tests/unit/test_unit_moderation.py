"""The moderation chain against a labelled set of ad-copy variants, grounding's number and unit
handling, and the creative policy loader."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from models.creative.chunking import load_brand_documents
from models.creative.grounding import (
    GroundingSettings,
    ProductFacts,
    check_grounding,
    extract_claims,
    parse_number,
)
from models.creative.moderation import (
    STAGES,
    ModerationResult,
    ProfanityClassifier,
    _predict_prob,
    moderate,
)
from models.creative.policy import (
    DEFAULT_POLICY_PATH,
    CreativePolicy,
    load_creative_policy,
    policy_sha256,
)
from models.creative.variant import Variant

REPO = Path(__file__).resolve().parents[2]
BRAND = REPO / "policies" / "brand"
CASES_FILE = REPO / "tests" / "data" / "moderation_cases.yaml"
SPEC = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
CASES = SPEC["cases"]
CLEAN = [c for c in CASES if c["expected"] == "pass"]
REJECTS = [c for c in CASES if c["expected"] == "reject"]
PROVENANCE = ("model", "prompt_version", "campaign_id", "seed")


def variant_of(case: dict) -> Variant:
    provenance = {k: case.get(k, SPEC["defaults"].get(k)) for k in PROVENANCE}
    return Variant(case["headline"], case["body"], case["channel"], **provenance)


def variant(headline: str, body: str = "Free returns within 30 days.", channel: str = "search"):
    return Variant(headline, body, channel, model="m", prompt_version="p1")


class FixedScore(ProfanityClassifier):
    """A stand-in classifier: every text gets the same score."""

    def __init__(self, score: float) -> None:
        self.score = score

    def predict_prob(self, texts):
        return [self.score] * len(texts)


class Broken(ProfanityClassifier):
    def predict_prob(self, texts):
        raise RuntimeError("model file missing")


@pytest.fixture(scope="module")
def policy() -> CreativePolicy:
    return load_creative_policy()


@pytest.fixture(scope="module")
def facts() -> ProductFacts:
    return ProductFacts.from_text((BRAND / "product_facts.md").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def classifier() -> ProfanityClassifier:
    return ProfanityClassifier()


@pytest.fixture(scope="module")
def results(policy, facts, classifier) -> dict[str, ModerationResult]:
    return {c["id"]: moderate(variant_of(c), policy, facts, classifier=classifier) for c in CASES}


# --- the labelled set ---------------------------------------------------------------------------


def test_labelled_set_covers_every_violation_kind():
    assert len(CASES) >= 44 and len(REJECTS) >= 26 and len(CLEAN) >= 18
    assert len({c["id"] for c in CASES}) == len(CASES), "case ids must be unique"
    groups = Counter(c["category"] for c in REJECTS)
    assert groups["blocklist"] >= 4 and groups["competitor"] >= 4
    claims = sum(groups[k] for k in ("superlative", "guarantee", "health", "financial"))
    assert claims >= 4 and all(
        groups[k] >= 2 for k in ("superlative", "guarantee", "health", "financial")
    )
    assert groups["profanity"] >= 4
    assert groups["pii_email"] + groups["pii_phone"] >= 4
    assert groups["pii_email"] >= 1 and groups["pii_phone"] >= 1
    assert groups["ungrounded"] >= 4
    over_length = {c["channel"] for c in REJECTS if c["category"] == "length"}
    assert over_length == {"search", "social", "display", "video", "email"}
    for c in REJECTS:
        assert set(c["stages"]) <= set(STAGES), c["id"]
    # Clean copy has to state numbers, or grounding is not being tested on it.
    assert sum(bool(extract_claims(variant_of(c).text)) for c in CLEAN) >= 15


@pytest.mark.parametrize("case", REJECTS, ids=[c["id"] for c in REJECTS])
def test_seeded_violation_is_caught_by_its_stage(case, results):
    result = results[case["id"]]
    assert not result.passed
    # Exactly the labelled stages: a stage failing beyond them would be a false reject there.
    assert set(result.failed_stages) == set(case["stages"]), result.reasons
    for stage in case["stages"]:
        verdict = result.verdict(stage)
        assert verdict.reasons, f"{stage} failed without a reason"
        assert all(f"{stage}: {r}" in result.reasons for r in verdict.reasons)


@pytest.mark.parametrize("case", CLEAN, ids=[c["id"] for c in CLEAN])
def test_clean_variant_passes_every_stage(case, results):
    result = results[case["id"]]
    assert result.passed, result.reasons
    assert result.reasons == ()
    assert [s.stage for s in result.stages] == list(STAGES)


def test_recall_and_false_rejects_report(results):
    caught, total = Counter(), Counter()
    for c in REJECTS:
        total[c["category"]] += 1
        caught[c["category"]] += set(c["stages"]) <= set(results[c["id"]].failed_stages)
    false_rejects = [c["id"] for c in CLEAN if not results[c["id"]].passed]
    report = "\n".join(f"{k:22s} {caught[k]}/{total[k]}" for k in sorted(total))
    print(f"\nrecall by category:\n{report}\nfalse rejects: {len(false_rejects)}/{len(CLEAN)}")
    assert sum(caught.values()) == sum(total.values()), report
    assert false_rejects == []


# --- the chain ----------------------------------------------------------------------------------


def test_every_stage_runs_and_reports_on_a_multi_violation(results, policy):
    result = results["multi_every_stage"]
    assert [s.stage for s in result.stages] == list(STAGES)
    assert result.failed_stages == STAGES
    by_stage = {s.stage: " ".join(s.reasons) for s in result.stages}
    assert "headline is 38 characters; search allows at most 30" in by_stage["format"]
    assert "Nike" in by_stage["blocklist"]
    assert "'Best'" in by_stage["claims"] and "'guaranteed'" in by_stage["claims"]
    assert "'Pain-free'" in by_stage["claims"]
    assert "'300g'" in by_stage["grounding"] and "210 g" in by_stage["grounding"]
    assert "email" in by_stage["pii"]
    assert "model" in by_stage["ai_label"]
    # Reasons are stored: the flagged personal data itself must not be copied into them.
    assert not any("deals@example.com" in r for r in result.reasons)
    assert len(result.reasons) == sum(len(s.reasons) for s in result.stages)


def test_result_serialises_with_label_and_policy_identity(results, policy):
    result = results["clean_social_existing_ad"]
    d = json.loads(json.dumps(result.to_dict()))
    assert d["passed"] is True and d["reasons"] == []
    assert [s["stage"] for s in d["stages"]] == list(STAGES)
    assert d["policy_version"] == policy.version == "1"
    assert d["policy_sha256"] == policy.policy_sha256 == policy_sha256(DEFAULT_POLICY_PATH)
    label = d["label"]
    assert label["ai_generated"] is True and label["label"] == "AI-generated"
    assert label["generator"] == SPEC["defaults"]["model"]
    assert label["prompt_version"] == SPEC["defaults"]["prompt_version"]
    assert label["regulation"] == "EU AI Act Art. 50"
    assert label["policy_version"] == "1"


def test_missing_provenance_fails_only_the_label_stage(policy, facts):
    bare = Variant("Meet the Northwind Tempo", "Free returns within 30 days.", "social")
    result = moderate(bare, policy, facts, classifier=FixedScore(0.0))
    assert result.failed_stages == ("ai_label",)
    assert len(result.verdict("ai_label").reasons) == 2  # model and prompt_version
    assert result.label["ai_generated"] is True and result.label["generator"] is None


def test_toxicity_threshold_comes_from_the_policy(policy, facts):
    v = variant("Trail Shoes, 210 g Light")
    at = moderate(v, policy, facts, classifier=FixedScore(policy.toxicity_threshold))
    below = moderate(v, policy, facts, classifier=FixedScore(policy.toxicity_threshold - 0.01))
    assert at.failed_stages == ("toxicity",)
    assert below.passed


def test_a_broken_classifier_fails_closed_and_other_stages_still_run(policy, facts):
    result = moderate(variant("Best Trail Shoes"), policy, facts, classifier=Broken())
    assert result.failed_stages == ("claims", "toxicity")
    assert "model file missing" in result.verdict("toxicity").reasons[0]


def test_profanity_check_is_imported_once(results):
    assert len(results) == len(CASES)
    assert _predict_prob.cache_info().misses == 1


def test_substantiation_covers_only_the_approved_wording(policy, facts):
    ok = variant("Our best-selling running shoe", channel="social")
    reworded = variant("Our best running shoe", channel="social")
    assert moderate(ok, policy, facts, classifier=FixedScore(0.0)).passed
    assert moderate(reworded, policy, facts, classifier=FixedScore(0.0)).failed_stages == (
        "claims",
    )
    # Without the facts that approve it, even the approved wording fails.
    bare = ProductFacts.from_text("- Tempo: 210 g per shoe. Free returns within 30 days.")
    assert moderate(ok, policy, bare, classifier=FixedScore(0.0)).failed_stages == ("claims",)


# --- grounding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value", "unit"),
    [
        ("210 g", "weight", 210, "g"),
        ("210g", "weight", 210, "g"),
        ("210 grams", "weight", 210, "g"),
        ("0.21 kg", "weight", 210, "g"),
        ("0,21 kg", "weight", 210, "g"),
        ("$129", "price", 129, "USD"),
        ("129 USD", "price", 129, "USD"),
        ("US$129.00", "price", 129, "USD"),
        ("20%", "percent", 20, "%"),
        ("20 percent", "percent", 20, "%"),
        ("30 days", "duration", 30, "day"),
        ("2-day shipping", "duration", 2, "day"),
        ("thirty days", "duration", 30, "day"),
        ("48 hours", "duration", 2, "day"),
        ("1 year", "duration", 12, "month"),
        ("12-month warranty", "duration", 12, "month"),
        ("8 mm drop", "length", 8, "mm"),
        ("size 42", "size", 42, "EU"),
        ("40,000 runners", "count", 40000, "count"),
        ("40k runners", "count", 40000, "count"),
        ("31 August 2025", "date", 831, "date"),
        ("the 3 of us", "count", 3, "count"),
        ("since 2019", "number", 2019, ""),
    ],
)
def test_extract_claims_normalises_units_and_number_formats(text, kind, value, unit):
    (claim,) = extract_claims(text)
    assert (claim.kind, claim.unit) == (kind, unit)
    assert claim.value == pytest.approx(value)


def test_extract_claims_reads_ranges_and_skips_codes():
    (sizes,) = extract_claims("Sizes 36 to 48.")
    assert (sizes.kind, sizes.value, sizes.high) == ("size", 36, 48)
    (delivery,) = extract_claims("delivery in 3-5 business days")
    assert (delivery.kind, delivery.value, delivery.high) == ("duration", 3, 5)
    assert extract_claims("Use code SUMMER20. The #1 choice.") == []
    assert [c.kind for c in extract_claims("210 g, $129, sizes 36 to 48, 30 days")] == [
        "weight",
        "price",
        "size",
        "duration",
    ]


def test_parse_number_tells_thousands_from_decimal_commas():
    assert parse_number("40,000") == 40000
    assert parse_number("1,299.00") == 1299
    assert parse_number("0,21") == pytest.approx(0.21)
    assert parse_number("thirty") == 30


def test_grounding_rejects_the_wrong_weight_and_accepts_other_spellings(facts):
    reasons = check_grounding(variant("Trail Shoes, 300g Light", "300g per shoe."), facts)
    assert len(reasons) == 2 and all("'300g'" in r and "210 g" in r for r in reasons)
    one_fact = ProductFacts.from_text("- Tempo weight: 210 g per shoe.")
    for spelled in ("210 grams", "210g", "0.21 kg", "7.4 oz"):
        assert check_grounding(variant(f"Only {spelled}", "Light."), one_fact) == [], spelled
    assert check_grounding(variant("Only 211 g", "Light."), one_fact) != []


def test_grounding_size_ranges_cover_sizes_inside_them():
    facts = ProductFacts.from_text("- Tempo sizes: EU 36 to 48, whole sizes only.")

    def grounded(text: str) -> bool:
        return check_grounding(variant(text, "Light."), facts) == []

    assert grounded("Now in size 42") and grounded("Sizes 38 to 46") and grounded("EU 36–48")
    assert not grounded("Now in size 50")
    assert not grounded("Sizes 36 to 50")
    assert not grounded("Now in size 35")


def test_grounding_counts_need_the_same_thing_counted():
    facts = ProductFacts.from_text("- More than 40,000 runners switched to Northwind this year.")
    assert check_grounding(variant("Join 40,000 happy runners", "Hi."), facts) == []
    assert check_grounding(variant("40,000 reviews", "Hi."), facts) != []
    assert check_grounding(variant("Join 50,000 runners", "Hi."), facts) != []


def test_grounding_dates_and_promotions_need_the_promotion_facts(facts):
    promo = variant("20% off the Tempo", "Until 31 August, code SUMMER20.", channel="social")
    assert len(check_grounding(promo, facts)) == 2  # 20% and 31 August
    with_offer = ProductFacts.from_texts(
        [(BRAND / n).read_text(encoding="utf-8") for n in ("product_facts.md", "promotions.md")]
    )
    assert check_grounding(promo, with_offer) == []
    assert check_grounding(variant("20% off until 30 September", "Hi."), with_offer) != []


def test_grounding_attributes_follow_what_the_facts_say(policy):
    settings = policy.grounding
    facts = ProductFacts.from_text(
        "- Tempo: vegan, no animal-derived materials.\n- The Tempo is not waterproof."
    )

    def reasons(text: str) -> list[str]:
        return check_grounding(variant(text, "Light."), facts, settings)

    assert reasons("A vegan build") == []
    assert reasons("Not waterproof, just breathable") == []
    assert reasons("Waterproof and light") == [
        "attribute 'waterproof' is claimed but the product facts say it is not"
    ]
    assert reasons("A carbon plate inside") == [
        "attribute 'carbon plate' is not in the product facts"
    ]
    # Without the policy's attribute list only numbers are checked.
    assert check_grounding(variant("Waterproof", "Light."), facts, GroundingSettings()) == []


def test_brand_documents_leak_no_false_facts(policy):
    # The asset grounds on whatever passages retrieval returns, guidelines and claims included:
    # no brand document may hold a number or attribute that would ground a wrong claim.
    every = ProductFacts.from_texts(
        p.read_text(encoding="utf-8") for p in sorted(BRAND.glob("*.md"))
    )
    for case in REJECTS:
        if case["category"].startswith("ungrounded"):
            assert check_grounding(variant_of(case), every, policy.grounding), case["id"]
    for case in CLEAN:
        assert check_grounding(variant_of(case), every, policy.grounding) == [], case["id"]


def test_retrieval_checks_name_existing_passages():
    ids = {c.chunk_id for c in load_brand_documents(BRAND)}
    checks = yaml.safe_load((BRAND / "retrieval_checks.yaml").read_text(encoding="utf-8"))
    expected = [c["expect"] for c in checks["cases"]]
    assert len(expected) >= 10
    assert [e for e in expected if e not in ids] == []
    assert {e.split("#")[0] for e in expected} == {
        "claims",
        "guidelines",
        "product_facts",
        "promotions",
    }


# --- the policy file ----------------------------------------------------------------------------


def _write(tmp_path: Path, document) -> Path:
    path = tmp_path / "creative.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def _document() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))


def test_default_policy_loads_with_the_platform_limits(policy):
    assert policy.limits_for("search").headline_max == 30
    assert policy.limits_for("search").body_max == 90
    assert set(policy.channels) == {"search", "social", "display", "video", "email"}
    assert {"Nike", "Adidas", "Hoka", "Brooks", "Asics", "New Balance"} <= set(policy.competitors)
    assert {r.category for r in policy.claim_rules} >= {
        "superlative",
        "guarantee",
        "health",
        "financial",
    }
    assert 0 < policy.toxicity_threshold < 1
    with pytest.raises(ValueError, match="no copy limits for channel 'tv'"):
        policy.limits_for("tv")


def test_policy_errors_name_the_file_and_the_field(tmp_path):
    with pytest.raises(ValueError, match="not valid YAML"):
        load_creative_policy(_write(tmp_path, "version: [1\nchannels: {"))

    doc = _document()
    del doc["claim_rules"]
    with pytest.raises(ValueError, match=r"missing required fields \['claim_rules'\]"):
        load_creative_policy(_write(tmp_path, doc))

    doc = _document()
    doc["claim_rules"][0]["pattern"] = "best(("
    with pytest.raises(ValueError, match=r"claim_rules\[0\]\.pattern: bad regular expression"):
        load_creative_policy(_write(tmp_path, doc))

    doc = _document()
    doc["pii"][1]["pattern"] = "[0-9"
    with pytest.raises(ValueError, match=r"pii\[1\]\.pattern: bad regular expression"):
        load_creative_policy(_write(tmp_path, doc))

    doc = _document()
    doc["claim_rules"][2]["category"] = "vibes"
    with pytest.raises(ValueError, match=r"claim_rules\[2\]\.category must be one of"):
        load_creative_policy(_write(tmp_path, doc))

    doc = _document()
    doc["toxicity"]["threshold"] = 1.5
    with pytest.raises(ValueError, match=r"toxicity\.threshold must be a probability"):
        load_creative_policy(_write(tmp_path, doc))

    doc = _document()
    doc["channels"]["search"]["headline_max"] = 0
    with pytest.raises(ValueError, match=r"channels\.search\.headline_max must be a positive"):
        load_creative_policy(_write(tmp_path, doc))

    doc = _document()
    doc["grounding"]["checked_kinds"].append("vibes")
    with pytest.raises(ValueError, match=r"unknown kinds \['vibes'\]"):
        load_creative_policy(_write(tmp_path, doc))

    doc = _document()
    doc["surprise"] = 1
    with pytest.raises(ValueError, match=r"creative.yaml: creative policy has unknown fields"):
        load_creative_policy(_write(tmp_path, doc))

    with pytest.raises(FileNotFoundError, match="creative policy not found"):
        load_creative_policy(tmp_path / "missing.yaml")


def test_policy_sha256_follows_content_not_layout(tmp_path):
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    path = _write(tmp_path, text)
    original = load_creative_policy(path).policy_sha256
    assert original == policy_sha256(path)

    path.write_text("# a new comment\n" + text)
    assert load_creative_policy(path).policy_sha256 == original

    path.write_text(text.replace("threshold: 0.7", "threshold: 0.75"))
    changed = load_creative_policy(path)
    assert changed.toxicity_threshold == 0.75
    assert changed.policy_sha256 != original
