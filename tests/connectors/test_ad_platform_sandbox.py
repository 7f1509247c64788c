"""The ad-platform sandbox over raw HTTP: both APIs' request and response shapes, auth, the
admin API, idempotency keys, persistence across restarts and every injected fault."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from connectors.ad_platforms.sandbox import (
    ADMIN_TOKEN_HEADER,
    EXIT_INJECTED_CRASH,
    REPLAYED_HEADER,
    FaultConfig,
    SandboxAdmin,
    SandboxError,
    SandboxServer,
    gaql,
)
from connectors.ad_platforms.sandbox.faults import FaultInjector

REPO = Path(__file__).resolve().parents[2]
API_TOKEN = "sbx-api-token-NOT-A-SECRET-0123456789"
ADMIN_TOKEN = "sbx-admin-token-NOT-A-SECRET-0123456789"
DEV_TOKEN = "sbx-developer-token-NOT-A-SECRET-0123"
CUSTOMER = "1234567890"
AD_ACCOUNT = "998877"
GOOGLE_HEADERS = {"Authorization": f"Bearer {API_TOKEN}", "developer-token": DEV_TOKEN}
META_HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}
_ids = itertools.count(1000)


pytestmark = pytest.mark.usefixtures("clean_sandbox")


@pytest.fixture(scope="module")
def sandbox_tokens():
    return {"api_token": API_TOKEN, "admin_token": ADMIN_TOKEN, "developer_token": DEV_TOKEN}


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=5.0, trust_env=False) as client:
        yield client


def new_id() -> str:
    return str(next(_ids))


# Each platform's account, channel, geo and currency in a seed entry, unless a test says otherwise.
ENTRY_DEFAULTS = {
    "google_ads": {"account_id": CUSTOMER, "channel": "search", "geo": "US-CA", "currency": "USD"},
    "meta": {"account_id": AD_ACCOUNT, "channel": "social", "geo": "DE", "currency": "EUR"},
}


def entry_for(platform: str, /, **fields) -> dict:
    """A seed entry for a new target on `platform`: a fresh id, the platform's defaults, and
    `fields` over them."""
    return {"platform": platform, **ENTRY_DEFAULTS[platform], "target_id": new_id(), **fields}


def seed(admin: SandboxAdmin, platform: str, amount: int, **extra) -> str:
    """Seed a new target named after its channel, geo and id; its id."""
    entry = entry_for(platform, amount=amount)
    entry["name"] = f"{entry['channel']} {entry['geo']} {entry['target_id']}"
    admin.seed([{**entry, **extra}])
    return entry["target_id"]


def seed_google(admin: SandboxAdmin, amount: int = 5_000_000, **extra) -> str:
    return seed(admin, "google_ads", amount, **extra)


def seed_meta(admin: SandboxAdmin, amount: int = 2500, **extra) -> str:
    return seed(admin, "meta", amount, **extra)


def budget_of(admin: SandboxAdmin, target_id: str) -> dict:
    return next(b for b in admin.budgets() if b["target_id"] == target_id)


def budget_op(budget: str, micros, *, customer: str = CUSTOMER, mask: str = "amount_micros"):
    return {
        "update": {
            "resourceName": f"customers/{customer}/campaignBudgets/{budget}",
            "amountMicros": str(micros),
        },
        "updateMask": mask,
    }


def mutate_budgets(http, ops, *, version="v18", headers=None, **flags):
    body = {"operations": ops, "partialFailure": False, "validateOnly": False, **flags}
    return http.post(
        f"/{version}/customers/{CUSTOMER}/campaignBudgets:mutate",
        json=body,
        headers={**GOOGLE_HEADERS, **(headers or {})},
    )


def search(http, query, *, version="v18"):
    return http.post(
        f"/{version}/customers/{CUSTOMER}/googleAds:search",
        json={"query": query},
        headers=GOOGLE_HEADERS,
    )


def failure_of(response) -> dict:
    """The GoogleAdsFailure inside a google.rpc.Status error."""
    details = response.json()["error"]["details"]
    return next(d for d in details if d["@type"].endswith("errors.GoogleAdsFailure"))


# --- process, admin API ------------------------------------------------------------------------


def test_starts_fast_and_reports_health(server, admin):
    assert server.startup_s is not None and server.startup_s < 1.0
    health = admin.health()
    assert health["status"] == "ok" and health["pid"] == server.pid
    assert ADMIN_TOKEN not in repr(server) and API_TOKEN not in repr(server)


def test_admin_api_needs_the_admin_token(server, http):
    assert http.get("/_sandbox/health").status_code == 401
    # The API token is not an admin token.
    assert http.get("/_sandbox/budgets", headers={ADMIN_TOKEN_HEADER: API_TOKEN}).status_code == 401
    assert (
        http.get("/_sandbox/budgets", headers={ADMIN_TOKEN_HEADER: ADMIN_TOKEN}).status_code == 200
    )
    with pytest.raises(ValueError, match="must differ"):
        SandboxServer("unused", api_token="same", admin_token="same", developer_token="dev")


def test_seed_is_an_idempotent_upsert_and_not_a_mutation(admin):
    before = len(admin.mutations())
    entry = entry_for("meta", geo="FR", name="social FR", amount=1500, status="PAUSED")
    assert admin.seed([entry]) == 1
    assert admin.seed([entry]) == 1
    assert budget_of(admin, entry["target_id"]) == entry
    admin.seed([{**entry, "amount": 1700}])
    assert budget_of(admin, entry["target_id"])["amount"] == 1700
    assert len(admin.mutations()) == before
    listed = admin.budgets(platform="meta", account_id=AD_ACCOUNT)
    assert {b["platform"] for b in listed} == {"meta"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"platform": "bing"}, "platform"),
        ({"amount": 0}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"status": "ACTIVE"}, "status"),
        ({"target_id": "abc"}, "target_id"),
        ({"platform": "google_ads", "amount": 5_000_001}, "multiple of 10000"),
    ],
)
def test_seed_rejects_bad_targets(admin, change, message):
    entry = entry_for("meta", **{"geo": "FR", "currency": "USD", "amount": 1500, **change})
    with pytest.raises(SandboxError, match=message):
        admin.seed([entry])


# --- Google Ads ---------------------------------------------------------------------------------


def test_google_budget_mutate_shape_and_mutation_log(admin, http):
    budget = seed_google(admin)
    response = mutate_budgets(
        http, [budget_op(budget, 7_500_000)], headers={"Idempotency-Key": "g-1"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "results": [{"resourceName": f"customers/{CUSTOMER}/campaignBudgets/{budget}"}]
    }
    assert response.headers["request-id"]
    assert budget_of(admin, budget)["amount"] == 7_500_000
    [logged] = admin.mutations(target_id=budget)
    assert logged["platform"] == "google_ads" and logged["account_id"] == CUSTOMER
    assert (logged["field"], logged["old_value"], logged["new_value"]) == (
        "amount",
        "5000000",
        "7500000",
    )
    assert logged["idempotency_key"] == "g-1"
    assert logged["request_id"] == response.headers["request-id"]
    assert logged["at"].endswith("Z")


def test_google_any_version_and_mutable_resource(admin, http):
    budget = seed_google(admin)
    response = mutate_budgets(
        http,
        [budget_op(budget, 6_000_000, mask="amountMicros")],
        version="v17",
        responseContentType="MUTABLE_RESOURCE",
    )
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["campaignBudget"]["amountMicros"] == "6000000"


def test_google_search_shapes(admin, http):
    first, second = seed_google(admin, 3_000_000), seed_google(admin, 4_000_000, status="PAUSED")
    response = search(
        http,
        "SELECT campaign_budget.resource_name, campaign_budget.amount_micros "
        f"FROM campaign_budget WHERE campaign_budget.id = {first}",
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"] == [
        {
            "campaignBudget": {
                "resourceName": f"customers/{CUSTOMER}/campaignBudgets/{first}",
                "amountMicros": "3000000",
            }
        }
    ]
    assert body["fieldMask"] == "campaignBudget.resourceName,campaignBudget.amountMicros"

    response = search(
        http,
        "select campaign.status, campaign_budget.amount_micros from campaign "
        f"where campaign_budget.id in ({first}, {second}) and campaign.status != 'REMOVED'",
    )
    rows = response.json()["results"]
    assert [(r["campaign"]["status"], r["campaignBudget"]["amountMicros"]) for r in rows] == [
        ("ENABLED", "3000000"),
        ("PAUSED", "4000000"),
    ]
    assert rows[0]["campaign"]["resourceName"] == f"customers/{CUSTOMER}/campaigns/{first}"

    nothing = search(
        http, "SELECT campaign_budget.id FROM campaign_budget WHERE campaign_budget.id = 1"
    )
    assert nothing.status_code == 200 and "results" not in nothing.json()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("SELECT ad_group.id FROM ad_group", "INVALID_RESOURCE_TYPE_IN_FROM_CLAUSE"),
        ("SELECT campaign_budget.foo FROM campaign_budget", "UNRECOGNIZED_FIELD"),
        (
            "SELECT campaign.status FROM campaign_budget",
            "PROHIBITED_RESOURCE_TYPE_IN_SELECT_CLAUSE",
        ),
        ("SELECT campaign.id FROM campaign ORDER BY campaign.id", "UNEXPECTED_INPUT"),
        ("SELECT campaign.id FROM campaign WHERE campaign.id > 3", "BAD_OPERATOR"),
        ("", "QUERY_ERROR"),
    ],
)
def test_google_search_rejects_other_queries(http, admin, query, code):
    seed_google(admin)
    response = search(http, query)
    assert response.status_code == 400
    error = failure_of(response)["errors"][0]
    assert error["errorCode"] == {"queryError": code}
    assert error["message"]


def test_gaql_parser_directly():
    query = gaql.parse(
        "SELECT campaign.resource_name, campaign.status FROM campaign "
        "WHERE campaign_budget.id IN (1, 2) AND campaign.status NOT IN ('REMOVED') LIMIT 1"
    )
    assert query.resource == "campaign" and query.limit == 1
    rows = [
        {"campaign_budget.id": 2, "campaign.status": "PAUSED", "campaign.resource_name": "c/2"},
        {"campaign_budget.id": 3, "campaign.status": "ENABLED", "campaign.resource_name": "c/3"},
    ]
    assert query.run(rows) == [{"campaign": {"resourceName": "c/2", "status": "PAUSED"}}]
    with pytest.raises(gaql.GaqlError, match="needs a number") as caught:
        gaql.parse("SELECT campaign.id FROM campaign WHERE campaign.id = 'x'")
    assert caught.value.code == "BAD_NUMBER"


@pytest.mark.parametrize(
    ("op", "code", "last_field"),
    [
        (
            lambda b: budget_op(b, 5_000_001),
            {"campaignBudgetError": "NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"},
            "amount_micros",
        ),
        (lambda b: budget_op(b, 0), {"rangeError": "TOO_LOW"}, "amount_micros"),
        (lambda b: budget_op(b, -10_000), {"rangeError": "TOO_LOW"}, "amount_micros"),
        (
            lambda b: budget_op(b, 5_000_000, mask="name"),
            {"fieldMaskError": "FIELD_MASK_MISSING"},
            "update_mask",
        ),
        (
            lambda b: budget_op(b, 5_000_000, mask=""),
            {"fieldMaskError": "FIELD_MASK_MISSING"},
            "update_mask",
        ),
        (
            lambda b: budget_op("999999999", 5_000_000),
            {"mutateError": "RESOURCE_NOT_FOUND"},
            "resource_name",
        ),
        (
            lambda b: budget_op(b, 5_000_000, customer="1111111111"),
            {"requestError": "INVALID_CUSTOMER_ID"},
            "resource_name",
        ),
    ],
)
def test_google_budget_validation_errors(admin, http, op, code, last_field):
    budget = seed_google(admin)
    response = mutate_budgets(http, [op(budget)])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == "Request contains an invalid argument."
    failure = failure_of(response)
    assert (
        failure["@type"] == "type.googleapis.com/google.ads.googleads.v18.errors.GoogleAdsFailure"
    )
    assert failure["requestId"] == response.headers["request-id"]
    [problem] = failure["errors"]
    assert problem["errorCode"] == code
    path = problem["location"]["fieldPathElements"]
    assert path[0] == {"fieldName": "operations", "index": 0}
    assert path[-1]["fieldName"] == last_field
    assert budget_of(admin, budget)["amount"] == 5_000_000
    assert admin.mutations(target_id=budget) == []


def test_google_malformed_body_fails_whole_request(admin, http):
    budget = seed_google(admin)
    bad_type = mutate_budgets(http, [budget_op(budget, "five")], partialFailure=True)
    assert bad_type.status_code == 400
    assert (
        bad_type.json()["error"]["details"][0]["@type"]
        == "type.googleapis.com/google.rpc.BadRequest"
    )
    unknown = mutate_budgets(http, [budget_op(budget, 5_000_000)], surprise=True)
    assert unknown.status_code == 400 and "surprise" in unknown.json()["error"]["message"]


def test_google_unknown_customer_is_permission_denied(admin, http):
    seed_google(admin)
    response = http.post(
        "/v18/customers/5555555555/googleAds:search",
        json={"query": "SELECT campaign.id FROM campaign"},
        headers=GOOGLE_HEADERS,
    )
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"
    assert failure_of(response)["errors"][0]["errorCode"] == {
        "authorizationError": "USER_PERMISSION_DENIED"
    }


def test_google_partial_failure(admin, http):
    good, bad = seed_google(admin), seed_google(admin)
    response = mutate_budgets(
        http, [budget_op(good, 8_000_000), budget_op(bad, 8_000_001)], partialFailure=True
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"] == [
        {"resourceName": f"customers/{CUSTOMER}/campaignBudgets/{good}"},
        {},
    ]
    status = body["partialFailureError"]
    assert status["code"] == 3
    [failure] = status["details"]
    assert failure["@type"].endswith("errors.GoogleAdsFailure")
    [problem] = failure["errors"]
    assert problem["location"]["fieldPathElements"][0] == {"fieldName": "operations", "index": 1}
    assert budget_of(admin, good)["amount"] == 8_000_000
    assert budget_of(admin, bad)["amount"] == 5_000_000
    assert len(admin.mutations(target_id=good)) == 1 and admin.mutations(target_id=bad) == []


def test_google_without_partial_failure_one_bad_operation_fails_all(admin, http):
    good, bad = seed_google(admin), seed_google(admin)
    response = mutate_budgets(http, [budget_op(good, 8_000_000), budget_op(bad, 1)])
    assert response.status_code == 400
    [problem] = failure_of(response)["errors"]
    assert problem["location"]["fieldPathElements"][0]["index"] == 1
    assert budget_of(admin, good)["amount"] == 5_000_000
    assert admin.mutations(target_id=good) == []


def test_google_validate_only_changes_nothing(admin, http):
    budget = seed_google(admin)
    before = len(admin.mutations())
    response = mutate_budgets(http, [budget_op(budget, 9_000_000)], validateOnly=True)
    assert response.status_code == 200 and response.json() == {}
    invalid = mutate_budgets(http, [budget_op(budget, 9_000_001)], validateOnly=True)
    assert invalid.status_code == 400
    assert budget_of(admin, budget)["amount"] == 5_000_000
    assert len(admin.mutations()) == before


def test_google_campaign_status(admin, http):
    budget = seed_google(admin)
    name = f"customers/{CUSTOMER}/campaigns/{budget}"

    def set_status(status: str):
        operation = {"update": {"resourceName": name, "status": status}, "updateMask": "status"}
        return http.post(
            f"/v18/customers/{CUSTOMER}/campaigns:mutate",
            json={"operations": [operation]},
            headers=GOOGLE_HEADERS,
        )

    response = set_status("PAUSED")
    assert response.status_code == 200 and response.json()["results"] == [{"resourceName": name}]
    assert budget_of(admin, budget)["status"] == "PAUSED"
    [logged] = admin.mutations(target_id=budget)
    assert (logged["field"], logged["old_value"], logged["new_value"]) == (
        "status",
        "ENABLED",
        "PAUSED",
    )
    assert set_status("SLEEPING").status_code == 400


@pytest.mark.parametrize(
    ("headers", "http_status", "status"),
    [
        ({"developer-token": DEV_TOKEN}, 401, "UNAUTHENTICATED"),
        ({"Authorization": "Bearer wrong", "developer-token": DEV_TOKEN}, 401, "UNAUTHENTICATED"),
        ({"Authorization": f"Bearer {API_TOKEN}"}, 400, "INVALID_ARGUMENT"),
        (
            {"Authorization": f"Bearer {API_TOKEN}", "developer-token": "wrong"},
            403,
            "PERMISSION_DENIED",
        ),
    ],
)
def test_google_auth(admin, http, headers, http_status, status):
    budget = seed_google(admin)
    response = http.post(
        f"/v18/customers/{CUSTOMER}/campaignBudgets:mutate",
        json={"operations": [budget_op(budget, 6_000_000)]},
        headers=headers,
    )
    assert response.status_code == http_status
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (http_status, status)
    assert API_TOKEN not in response.text and DEV_TOKEN not in response.text
    assert admin.mutations(target_id=budget) == []


def test_google_quota_error_shape(admin, http):
    budget = seed_google(admin)
    admin.set_faults(throttle=1.0, max_faults=1, throttle_retry_after_s=1.5)
    response = mutate_budgets(http, [budget_op(budget, 6_000_000)])
    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    [problem] = failure_of(response)["errors"]
    assert problem["errorCode"] == {"quotaError": "RESOURCE_EXHAUSTED"}
    assert problem["details"]["quotaErrorDetails"]["retryDelay"] == "1.5s"
    retry_info = next(d for d in error["details"] if d["@type"].endswith("google.rpc.RetryInfo"))
    assert retry_info["retryDelay"] == "1.5s"
    assert admin.mutations(target_id=budget) == []
    assert mutate_budgets(http, [budget_op(budget, 6_000_000)]).status_code == 200


# --- Meta -----------------------------------------------------------------------------------


def test_meta_get_shape_and_usage_header(admin, http):
    adset = seed_meta(admin, 1234)
    response = http.get(
        f"/v21.0/{adset}",
        params={"fields": "daily_budget,status,name,account_id"},
        headers=META_HEADERS,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "daily_budget": "1234",
        "status": "ACTIVE",
        "name": f"social DE {adset}",
        "account_id": AD_ACCOUNT,
        "id": adset,
    }
    usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
    [entry] = usage[AD_ACCOUNT]
    assert entry["type"] == "ads_management"
    assert set(entry) >= {
        "call_count",
        "total_cputime",
        "total_time",
        "estimated_time_to_regain_access",
    }
    assert entry["estimated_time_to_regain_access"] == 0


def test_meta_errors_have_meta_shape(admin, http):
    adset = seed_meta(admin)
    unknown_field = http.get(f"/v22.0/{adset}", params={"fields": "bid_cap"}, headers=META_HEADERS)
    assert unknown_field.status_code == 400
    error = unknown_field.json()["error"]
    assert error["code"] == 100 and error["type"] == "OAuthException" and error["fbtrace_id"]
    missing = http.post("/v21.0/424242424242", data={"daily_budget": "1000"}, headers=META_HEADERS)
    error = missing.json()["error"]
    assert (error["code"], error["error_subcode"], error["type"]) == (
        100,
        33,
        "GraphMethodException",
    )
    assert "X-Business-Use-Case-Usage" in missing.headers


@pytest.mark.parametrize("encoding", ["form", "json", "query"])
def test_meta_post_encodings_and_validate_only(admin, http, encoding):
    adset = seed_meta(admin, 2500)

    def post(params):
        if encoding == "form":
            form = {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
            return http.post(f"/v21.0/{adset}", data=form, headers=META_HEADERS)
        if encoding == "json":
            return http.post(f"/v21.0/{adset}", json=params, headers=META_HEADERS)
        query = {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}
        return http.post(f"/v21.0/{adset}", params=query, headers=META_HEADERS)

    validated = post(
        {"daily_budget": 4000, "status": "PAUSED", "execution_options": ["validate_only"]}
    )
    assert validated.status_code == 200 and validated.json() == {"success": True}
    assert budget_of(admin, adset)["amount"] == 2500
    assert admin.mutations(target_id=adset) == []

    applied = post({"daily_budget": 4000, "status": "PAUSED"})
    assert applied.status_code == 200 and applied.json() == {"success": True}
    state = budget_of(admin, adset)
    assert (state["amount"], state["status"]) == (4000, "PAUSED")
    logged = admin.mutations(target_id=adset)
    assert [(m["field"], m["old_value"], m["new_value"]) for m in logged] == [
        ("amount", "2500", "4000"),
        ("status", "ENABLED", "PAUSED"),
    ]
    assert logged[0]["request_id"] == logged[1]["request_id"] == applied.headers["x-fb-trace-id"]
    read = http.get(f"/v21.0/{adset}", params={"fields": "status"}, headers=META_HEADERS)
    assert read.json()["status"] == "PAUSED"


@pytest.mark.parametrize(
    ("params", "code", "subcode"),
    [
        ({"daily_budget": "99"}, 100, 1885272),
        ({"daily_budget": "12.5"}, 100, None),
        ({"status": "DELETED"}, 100, None),
        ({"status": "SLEEPING"}, 100, None),
        ({"bid_amount": "3"}, 100, None),
        ({}, 100, None),
        ({"daily_budget": "500", "execution_options": '["dry_run"]'}, 100, None),
    ],
)
def test_meta_validation_errors(admin, http, params, code, subcode):
    adset = seed_meta(admin)
    response = http.post(f"/v21.0/{adset}", data=params, headers=META_HEADERS)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and error.get("error_subcode") == subcode
    assert admin.mutations(target_id=adset) == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"headers": {}}, 104),
        ({"headers": {"Authorization": "Bearer wrong"}}, 190),
        ({"headers": {}, "params": {"access_token": "wrong"}}, 190),
    ],
)
def test_meta_auth_failures(admin, http, kwargs, code):
    adset = seed_meta(admin)
    response = http.get(f"/v21.0/{adset}", **kwargs)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, "OAuthException")


def test_meta_access_token_parameter_is_accepted(admin, http):
    adset = seed_meta(admin)
    response = http.get(
        f"/v21.0/{adset}", params={"access_token": API_TOKEN, "fields": "daily_budget"}
    )
    assert response.status_code == 200 and response.json()["daily_budget"] == "2500"


@pytest.mark.parametrize(("code", "http_status"), [(17, 400), (613, 403), (80004, 400)])
def test_meta_throttle_codes_and_usage_header(admin, http, code, http_status):
    adset = seed_meta(admin)
    admin.set_faults(throttle=1.0, meta_throttle_code=code, max_faults=1, throttle_retry_after_s=90)
    response = http.post(f"/v21.0/{adset}", data={"daily_budget": "3000"}, headers=META_HEADERS)
    assert response.status_code == http_status
    error = response.json()["error"]
    assert error["code"] == code and error["is_transient"] is True
    [usage] = json.loads(response.headers["X-Business-Use-Case-Usage"])[AD_ACCOUNT]
    assert usage["call_count"] == 100
    assert usage["estimated_time_to_regain_access"] == 2  # 90 s, in whole minutes
    assert admin.mutations(target_id=adset) == []
    ok = http.post(f"/v21.0/{adset}", data={"daily_budget": "3000"}, headers=META_HEADERS)
    assert ok.status_code == 200


# --- idempotency ------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer(admin, http):
    adset, budget = seed_meta(admin), seed_google(admin)
    key = f"meta-{uuid.uuid4()}"
    first = http.post(
        f"/v21.0/{adset}",
        data={"daily_budget": "3000"},
        headers={**META_HEADERS, "Idempotency-Key": key},
    )
    again = http.post(
        f"/v21.0/{adset}",
        data={"daily_budget": "3000"},
        headers={**META_HEADERS, "Idempotency-Key": key},
    )
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers[REPLAYED_HEADER] == "true"
    assert REPLAYED_HEADER not in first.headers
    assert len(admin.mutations(target_id=adset)) == 1
    reused = http.post(
        f"/v21.0/{adset}",
        data={"daily_budget": "3100"},
        headers={**META_HEADERS, "Idempotency-Key": key},
    )
    assert reused.status_code == 400 and "Idempotency-Key" in reused.json()["error"]["message"]

    gkey = f"google-{uuid.uuid4()}"
    one = mutate_budgets(http, [budget_op(budget, 6_000_000)], headers={"Idempotency-Key": gkey})
    two = mutate_budgets(http, [budget_op(budget, 6_000_000)], headers={"Idempotency-Key": gkey})
    assert two.json() == one.json() and two.headers[REPLAYED_HEADER] == "true"
    assert len(admin.mutations(target_id=budget)) == 1
    # validate_only requests neither use nor store the key.
    checked = mutate_budgets(
        http, [budget_op(budget, 7_000_000)], headers={"Idempotency-Key": gkey}, validateOnly=True
    )
    assert checked.status_code == 200 and checked.json() == {}


def test_idempotency_switch_off_applies_twice(admin, http):
    budget = seed_google(admin)
    admin.set_faults(honour_idempotency_key=False)
    key = f"google-{uuid.uuid4()}"
    for _ in range(2):
        response = mutate_budgets(
            http, [budget_op(budget, 6_000_000)], headers={"Idempotency-Key": key}
        )
        assert response.status_code == 200 and REPLAYED_HEADER not in response.headers
    logged = admin.mutations(target_id=budget)
    # Writing the same value again is still an applied write: the double application shows.
    assert [(m["new_value"], m["idempotency_key"]) for m in logged] == [("6000000", key)] * 2


# --- persistence and crashes ----------------------------------------------------------------


def test_state_survives_a_restart_on_the_same_port(server, admin, http):
    budget = seed_google(admin)
    assert mutate_budgets(http, [budget_op(budget, 6_500_000)]).status_code == 200
    url, pid = server.url, server.pid
    server.restart()
    assert server.url == url and server.pid != pid
    assert budget_of(server.admin, budget)["amount"] == 6_500_000
    assert len(server.admin.mutations(target_id=budget)) == 1


def test_crash_after_apply_drop_mode(admin, http, server):
    budget = seed_google(admin)
    admin.set_faults(crash_after_apply=1.0, crash_mode="drop", max_faults=1)
    with pytest.raises(httpx.RemoteProtocolError):
        mutate_budgets(http, [budget_op(budget, 6_600_000)])
    assert server.running
    assert budget_of(admin, budget)["amount"] == 6_600_000
    assert len(admin.mutations(target_id=budget)) == 1


def test_crash_after_apply_exit_mode(admin, http, server):
    adset = seed_meta(admin)
    admin.set_faults(crash_after_apply=1.0, crash_mode="exit")
    with pytest.raises(httpx.TransportError):
        http.post(f"/v21.0/{adset}", data={"daily_budget": "7700"}, headers=META_HEADERS)
    assert server.wait_for_exit(5.0) == EXIT_INJECTED_CRASH
    assert server.crashed and not server.running
    server.restart()
    admin = server.admin
    assert budget_of(admin, adset)["amount"] == 7700
    [logged] = admin.mutations(target_id=adset)
    assert logged["new_value"] == "7700"
    # Faults set through the admin API do not survive the restart.
    assert admin.faults()["config"] == FaultConfig().to_dict()


def test_crash_is_not_injected_when_nothing_was_applied(admin, http, server):
    budget = seed_google(admin)
    admin.set_faults(crash_after_apply=1.0, crash_mode="exit")
    response = mutate_budgets(http, [budget_op(budget, 6_000_000)], validateOnly=True)
    assert response.status_code == 200 and server.running


@pytest.mark.parametrize(("applies", "expected"), [(1.0, 6_400_000), (0.0, 5_000_000)])
def test_timeout_fault(server, admin, applies, expected):
    budget = seed_google(admin)
    admin.set_faults(timeout=1.0, timeout_applies=applies, timeout_sleep_s=0.6, max_faults=1)
    with (
        httpx.Client(base_url=server.url, timeout=0.2, trust_env=False) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        mutate_budgets(impatient, [budget_op(budget, 6_400_000)])
    assert budget_of(admin, budget)["amount"] == expected
    assert len(admin.mutations(target_id=budget)) == (1 if applies else 0)


def test_slow_and_server_error_faults(admin, http):
    budget = seed_google(admin)
    admin.set_faults(slow=1.0, slow_s=0.25)
    started = time.perf_counter()
    assert mutate_budgets(http, [budget_op(budget, 6_000_000)]).status_code == 200
    assert time.perf_counter() - started >= 0.25

    admin.set_faults(server_error=1.0)
    google = mutate_budgets(http, [budget_op(budget, 7_000_000)])
    assert google.status_code == 503 and google.json()["error"]["status"] == "UNAVAILABLE"
    adset = seed_meta(admin)
    meta = http.post(f"/v21.0/{adset}", data={"daily_budget": "3000"}, headers=META_HEADERS)
    assert meta.status_code == 503 and meta.json()["error"]["code"] == 2
    assert budget_of(admin, budget)["amount"] == 6_000_000
    assert admin.mutations(target_id=adset) == []


def test_faults_are_seeded_and_deterministic(admin, http):
    adset = seed_meta(admin)

    def statuses(seed: int) -> list[int]:
        admin.set_faults(seed=seed, throttle=0.3, server_error=0.2)
        return [
            http.get(
                f"/v21.0/{adset}", params={"fields": "status"}, headers=META_HEADERS
            ).status_code
            for _ in range(16)
        ]

    first = statuses(11)
    assert first == statuses(11)
    assert set(first) > {200}
    assert statuses(12) != first
    snapshot = admin.faults()
    assert snapshot["requests"] == 16 and snapshot["config"]["seed"] == 12


def test_fault_settings_are_checked(admin):
    with pytest.raises(ValueError, match="throttle"):
        admin.set_faults(throttle=1.5)
    with pytest.raises(ValueError, match="unknown fault settings"):
        admin.set_faults(meteor_strike=0.1)
    with pytest.raises(ValueError, match="crash_mode"):
        FaultConfig(crash_mode="explode")


def test_fault_injector_apply_to_and_max_faults():
    injector = FaultInjector(FaultConfig(throttle=1.0, apply_to="writes", max_faults=2))
    assert injector.draw(is_write=False).kind is None
    assert [injector.draw(is_write=True).kind for _ in range(3)] == ["throttle", "throttle", None]


def test_no_token_reaches_the_state_files(server, admin, http):
    adset = seed_meta(admin)
    http.post(
        f"/v21.0/{adset}",
        params={"access_token": API_TOKEN},
        data={"daily_budget": "5100"},
        headers={"Idempotency-Key": "tok-check"},
    )
    http.post(
        f"/v21.0/{adset}",
        data={"daily_budget": "5200"},
        headers={**META_HEADERS, "Idempotency-Key": "tok-check-2"},
    )
    for path in Path(admin.health()["state_db"]).parent.iterdir():
        data = path.read_bytes()
        assert API_TOKEN.encode() not in data and DEV_TOKEN.encode() not in data, path


# --- the command line and the process ---------------------------------------------------------


def test_cli_serve_in_the_foreground(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "ADLOOP_SANDBOX_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connectors.ad_platforms.sandbox",
            "serve",
            "--state-dir",
            str(tmp_path),
            "--port",
            "0",
            "--throttle",
            "0.5",
            "--no-honour-idempotency-key",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ADLOOP_SANDBOX_LISTENING http://127.0.0.1:")
        cli_admin = SandboxAdmin(line.split()[1], ADMIN_TOKEN)
        assert cli_admin.health()["status"] == "ok"
        config = cli_admin.faults()["config"]
        assert config["throttle"] == 0.5 and config["honour_idempotency_key"] is False
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert "development default" in proc.stderr.read()  # no API token was given


def test_child_dies_with_its_parent(tmp_path):
    parent = textwrap.dedent(
        f"""
        import sys, time
        from connectors.ad_platforms.sandbox import SandboxServer
        server = SandboxServer({str(tmp_path)!r}, api_token="a", admin_token="b", developer_token="c")
        server.start()
        print(server.pid, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    child_pid = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"sandbox child {child_pid} outlived its killed parent")


def test_start_up_faults_come_back_after_a_restart(tmp_path):
    faults = {"throttle": 0.25, "crash_mode": "exit", "honour_idempotency_key": False}
    with SandboxServer(
        tmp_path,
        api_token="a-token",
        admin_token="an-admin-token",
        developer_token="a-dev-token",
        faults=faults,
    ) as own:
        own.admin.set_faults()
        assert own.admin.faults()["config"]["throttle"] == 0.0
        own.restart()
        config = own.admin.faults()["config"]
        assert {name: config[name] for name in faults} == faults
