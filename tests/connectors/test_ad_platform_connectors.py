"""The Google Ads and Meta clients against the sandbox: the `AdPlatform` contract, the mapping
of every failure onto base.py's errors, retries, and that no credential ever leaks. The
contract tests also run against the real APIs when their variables are set (read-only there:
a read and validate_only writes)."""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from dataclasses import asdict

import pytest

from connectors.ad_platforms import (
    ENABLED,
    PAUSED,
    AdPlatform,
    AdPlatformError,
    BudgetReading,
    BudgetTarget,
    CallRecord,
    GoogleAdsClient,
    MetaClient,
    OutcomeUnknown,
    PermanentError,
    RetryPolicy,
    Throttled,
    TransientError,
    call_with_retries,
)
from connectors.ad_platforms.google_ads import GOOGLE_ADS_BASE_URL, parse_duration
from connectors.ad_platforms.meta import META_BASE_URL
from connectors.ad_platforms.sandbox import seed_entry

API_TOKEN = "ya29.adloop-test-access-token-NOT-REAL-0123456789"
DEV_TOKEN = "adloop-test-developer-token-NOT-REAL-42"
ADMIN_TOKEN = "adloop-test-admin-token-NOT-REAL-77"
SECRETS = (API_TOKEN, DEV_TOKEN, ADMIN_TOKEN)
CUSTOMER = "1234567890"
AD_ACCOUNT = "556677"
_ids = itertools.count(5000)


pytestmark = pytest.mark.usefixtures("clean_sandbox")


@pytest.fixture(scope="module")
def sandbox_tokens():
    return {"api_token": API_TOKEN, "admin_token": ADMIN_TOKEN, "developer_token": DEV_TOKEN}


def google_client(url: str, **kwargs) -> GoogleAdsClient:
    kwargs = {"access_token": API_TOKEN, "developer_token": DEV_TOKEN, **kwargs}
    return GoogleAdsClient(url, **kwargs)


def meta_client(url: str, **kwargs) -> MetaClient:
    return MetaClient(url, **{"access_token": API_TOKEN, **kwargs})


CLIENTS = {"google_ads": google_client, "meta": meta_client}
# A valid budget and a second valid one, in each platform's unit.
AMOUNTS = {"google_ads": (5_000_000, 7_250_000), "meta": (2500, 3100)}


@pytest.fixture(params=["google_ads", "meta"])
def platform(request):
    return request.param


@pytest.fixture
def client(server, platform):
    with CLIENTS[platform](server.url) as built:
        yield built


def seeded(
    admin, platform: str, *, amount: int | None = None, status: str = ENABLED, **fields
) -> BudgetTarget:
    """A new target on `platform`, seeded in the sandbox at the platform's first amount unless
    `amount` is given; `fields` replace its channel (search), geo (US), currency (USD) or name."""
    built = BudgetTarget(
        **{
            "platform": platform,
            "account_id": CUSTOMER if platform == "google_ads" else AD_ACCOUNT,
            "target_id": str(next(_ids)),
            "channel": "search",
            "geo": "US",
            "currency": "USD",
            **fields,
        }
    )
    admin.seed([seed_entry(built, AMOUNTS[platform][0] if amount is None else amount, status)])
    return built


@pytest.fixture
def target(admin, platform) -> BudgetTarget:
    channel = "search" if platform == "google_ads" else "social"
    return seeded(admin, platform, channel=channel, geo="US-TX", name="test target")


def key() -> str:
    return f"test-{uuid.uuid4()}"


def assert_no_secret(*things) -> None:
    for thing in things:
        texts = [repr(thing), str(thing)]
        if isinstance(thing, CallRecord):
            texts.append(repr(asdict(thing)))
        if isinstance(thing, AdPlatformError):
            texts += [
                repr(thing.args),
                repr(thing.call),
                repr(thing.__cause__),
                repr(thing.__context__),
            ]
        for text in texts:
            for secret in SECRETS:
                assert secret not in text, f"a credential leaked into {type(thing).__name__}"


# --- the contract, against the sandbox ---------------------------------------------------------


def test_clients_are_ad_platforms(client, platform):
    assert isinstance(client, AdPlatform)
    assert client.platform == platform


def test_read_update_and_read_back(client, target, admin, platform):
    start, new = AMOUNTS[platform]
    assert client.read_budget(target) == BudgetReading(amount=start, status=ENABLED)
    record = client.update_budget(target, new, validate_only=False, idempotency_key=key())
    assert isinstance(record, CallRecord) and record.status == 200
    assert record.method == "POST" and record.latency_s >= 0
    assert client.read_budget(target).amount == new
    [logged] = admin.mutations(target_id=target.target_id)
    assert logged["new_value"] == str(new)
    assert_no_secret(record, client)


def test_request_shapes_on_the_wire(client, target, platform):
    record = client.update_budget(
        target, AMOUNTS[platform][1], validate_only=True, idempotency_key="shape-1"
    )
    assert record.request["headers"] == {"Idempotency-Key": "shape-1"}
    if platform == "google_ads":
        assert record.url.endswith(f"/v18/customers/{CUSTOMER}/campaignBudgets:mutate")
        [operation] = record.request["json"]["operations"]
        assert operation == {
            "update": {
                "resourceName": f"customers/{CUSTOMER}/campaignBudgets/{target.target_id}",
                "amountMicros": str(AMOUNTS[platform][1]),
            },
            "updateMask": "amount_micros",
        }
        assert record.request["json"]["validateOnly"] is True
        assert record.response["headers"]["request-id"]
    else:
        assert record.url.endswith(f"/v21.0/{target.target_id}")
        assert "access_token" not in record.url
        assert record.request["form"] == {
            "daily_budget": str(AMOUNTS[platform][1]),
            "execution_options": '["validate_only"]',
        }
        assert record.response["body"] == {"success": True}
        assert "x-business-use-case-usage" in record.response["headers"]


def test_validate_only_changes_nothing(client, target, admin, platform):
    before = len(admin.mutations())
    client.update_budget(target, AMOUNTS[platform][1], validate_only=True, idempotency_key=key())
    client.set_status(target, PAUSED, validate_only=True, idempotency_key=key())
    assert client.read_budget(target) == BudgetReading(AMOUNTS[platform][0], ENABLED)
    assert len(admin.mutations()) == before


def test_pause_and_resume(client, target, admin):
    client.set_status(target, PAUSED, validate_only=False, idempotency_key=key())
    assert client.read_budget(target).status == PAUSED
    assert (
        next(b for b in admin.budgets() if b["target_id"] == target.target_id)["status"] == PAUSED
    )
    client.set_status(target, ENABLED, validate_only=False, idempotency_key=key())
    assert client.read_budget(target).status == ENABLED
    fields = [(m["field"], m["new_value"]) for m in admin.mutations(target_id=target.target_id)]
    assert fields == [("status", PAUSED), ("status", ENABLED)]


def test_google_budget_without_live_campaign_reads_paused(server, admin):
    # Guards the fallback query: no campaign row, but the budget exists.
    built = seeded(admin, "google_ads", amount=1_000_000, status=PAUSED)
    with google_client(server.url) as client:
        assert client.read_budget(built) == BudgetReading(1_000_000, PAUSED)


# --- errors ------------------------------------------------------------------------------------


def test_refusals_are_permanent_errors_with_a_code(client, target, platform):
    bad_amount = 1_234_567 if platform == "google_ads" else 50
    with pytest.raises(PermanentError) as caught:
        client.update_budget(target, bad_amount, validate_only=True, idempotency_key=key())
    expected = (
        "campaignBudgetError.NON_MULTIPLE_OF_MINIMUM_CURRENCY_UNIT"
        if platform == "google_ads"
        else "100.1885272"
    )
    assert caught.value.code == expected
    assert caught.value.call is not None and caught.value.call.status == 400
    assert_no_secret(caught.value)

    missing = BudgetTarget(platform, target.account_id, "987654321", "search", "US", "USD")
    with pytest.raises(PermanentError) as caught:
        client.read_budget(missing)
    assert caught.value.code == ("NOT_FOUND" if platform == "google_ads" else "100.33")

    other = "meta" if platform == "google_ads" else "google_ads"
    with pytest.raises(PermanentError) as caught:
        client.read_budget(BudgetTarget(other, "1", "2", "search", "US", "USD"))
    assert caught.value.code == "WRONG_PLATFORM"

    with pytest.raises(PermanentError) as caught:
        client.set_status(target, "ARCHIVED", validate_only=True, idempotency_key=key())
    assert caught.value.code == "INVALID_STATUS"


def test_bad_credentials_are_permanent_and_never_echoed(server, target, platform):
    with (
        CLIENTS[platform](server.url, access_token=API_TOKEN + "-revoked") as client,
        pytest.raises(PermanentError) as caught,
    ):
        client.read_budget(target)
    expected = "authenticationError.OAUTH_TOKEN_INVALID" if platform == "google_ads" else "190"
    assert caught.value.code == expected
    assert_no_secret(caught.value, client)
    assert "-revoked" not in str(caught.value)  # scrubbed as part of the (wrong) token


def test_google_throttle_honours_retry_delay(server, admin):
    built = seeded(admin, "google_ads", amount=5_000_000)
    admin.set_faults(throttle=1.0, max_faults=2, throttle_retry_after_s=2.5)
    sleeps: list[float] = []
    retries: list[tuple[int, str]] = []
    with google_client(server.url) as client:
        record = call_with_retries(
            lambda: client.update_budget(
                built, 6_000_000, validate_only=False, idempotency_key=key()
            ),
            RetryPolicy(base_s=0.1, seed=3),
            sleep=sleeps.append,
            on_retry=lambda n, error, wait: retries.append((n, type(error).__name__)),
        )
    assert record.status == 200
    assert len(sleeps) == 2 and all(s >= 2.5 for s in sleeps)
    assert retries == [(1, "Throttled"), (2, "Throttled")]
    assert len(admin.mutations(target_id=built.target_id)) == 1


@pytest.mark.parametrize("code", [17, 613, 80004])
def test_meta_throttle_codes_become_throttled_with_the_header_hint(server, admin, code):
    built = seeded(admin, "meta", amount=2500, channel="social")
    admin.set_faults(throttle=1.0, meta_throttle_code=code, max_faults=1, throttle_retry_after_s=30)
    with meta_client(server.url) as client:
        with pytest.raises(Throttled) as caught:
            client.update_budget(built, 2600, validate_only=False, idempotency_key=key())
        # 30 s rounds up to Meta's one minute of estimated_time_to_regain_access.
        assert caught.value.retry_after_s == 60.0
        assert str(code) in str(caught.value)
        assert_no_secret(caught.value)
        sleeps: list[float] = []
        call_with_retries(lambda: client.read_budget(built), sleep=sleeps.append)
        assert sleeps == []
    assert admin.mutations(target_id=built.target_id) == []


def test_server_errors_are_transient_and_retried(client, target, admin, platform):
    admin.set_faults(server_error=1.0, max_faults=2)
    sleeps: list[float] = []
    record = call_with_retries(
        lambda: client.update_budget(
            target, AMOUNTS[platform][1], validate_only=False, idempotency_key=key()
        ),
        RetryPolicy(base_s=0.5, jitter=0.0),
        sleep=sleeps.append,
    )
    assert record.status == 200 and sleeps == [0.5, 1.0]
    assert len(admin.mutations(target_id=target.target_id)) == 1


def test_a_refused_connection_is_transient(platform, target):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with CLIENTS[platform](f"http://127.0.0.1:{port}", timeout_s=2.0) as client:
        with pytest.raises(TransientError) as read:
            client.read_budget(target)
        with pytest.raises(TransientError) as write:
            client.update_budget(
                target, AMOUNTS[platform][1], validate_only=False, idempotency_key=key()
            )
    assert write.value.call is not None and write.value.call.status is None
    assert_no_secret(read.value, write.value)


def test_timeouts_are_unknown_on_writes_and_transient_on_reads(server, target, admin, platform):
    admin.set_faults(timeout=1.0, timeout_applies=1.0, timeout_sleep_s=0.8, max_faults=1)
    with CLIENTS[platform](server.url, timeout_s=0.25) as client:
        with pytest.raises(OutcomeUnknown) as caught:
            client.update_budget(
                target, AMOUNTS[platform][1], validate_only=False, idempotency_key=key()
            )
        assert caught.value.call is not None and caught.value.call.status is None
        assert "read back" in str(caught.value)
        assert_no_secret(caught.value)
        # It was applied after all: reading back is how the caller finds out.
        assert client.read_budget(target).amount == AMOUNTS[platform][1]
        admin.set_faults(timeout=1.0, timeout_sleep_s=0.8, max_faults=1, apply_to="reads")
        with pytest.raises(TransientError):
            client.read_budget(target)


@pytest.mark.parametrize("mode", ["drop", "exit"])
def test_crash_after_apply_is_an_unknown_outcome(server, platform, mode):
    admin = server.admin
    built = seeded(admin, platform)
    admin.set_faults(crash_after_apply=1.0, crash_mode=mode, max_faults=1)
    with CLIENTS[platform](server.url) as client:
        with pytest.raises(OutcomeUnknown):
            client.update_budget(
                built, AMOUNTS[platform][1], validate_only=False, idempotency_key=key()
            )
        if mode == "exit":
            server.wait_for_exit(5.0)
            assert server.crashed
            server.restart()  # same port: the client keeps its base URL
        assert client.read_budget(built).amount == AMOUNTS[platform][1]
    assert len(server.admin.mutations(target_id=built.target_id)) == 1


def test_a_retry_with_the_same_key_is_not_applied_twice(client, target, admin, platform):
    admin.set_faults(crash_after_apply=1.0, crash_mode="drop", max_faults=1)
    action_key = key()
    with pytest.raises(OutcomeUnknown):
        client.update_budget(
            target, AMOUNTS[platform][1], validate_only=False, idempotency_key=action_key
        )
    record = client.update_budget(
        target, AMOUNTS[platform][1], validate_only=False, idempotency_key=action_key
    )
    assert record.response["headers"]["idempotent-replayed"] == "true"
    assert len(admin.mutations(target_id=target.target_id)) == 1


def test_read_back_gives_exactly_once_without_server_idempotency(client, target, admin, platform):
    # What the actuator must do against the real APIs, which ignore the key: on an unknown
    # outcome, read back and retry only if the change is not there.
    admin.set_faults(
        crash_after_apply=1.0, crash_mode="drop", max_faults=1, honour_idempotency_key=False
    )
    wanted = AMOUNTS[platform][1]
    try:
        client.update_budget(target, wanted, validate_only=False, idempotency_key=key())
    except OutcomeUnknown:
        if client.read_budget(target).amount != wanted:
            client.update_budget(target, wanted, validate_only=False, idempotency_key=key())
    assert len(admin.mutations(target_id=target.target_id)) == 1
    # Retrying blindly instead would apply twice: the switch makes that visible.
    client.update_budget(target, wanted, validate_only=False, idempotency_key="same")
    client.update_budget(target, wanted, validate_only=False, idempotency_key="same")
    assert len(admin.mutations(target_id=target.target_id)) == 3


# --- retries ------------------------------------------------------------------------------------


def test_call_with_retries_never_retries_unknown_or_permanent():
    for error in (OutcomeUnknown("lost"), PermanentError("no", code="X"), ValueError("bug")):
        calls = []

        def fn(error=error, calls=calls):
            calls.append(1)
            raise error

        with pytest.raises(type(error)):
            call_with_retries(fn, sleep=lambda s: pytest.fail("slept"))
        assert calls == [1]


def test_call_with_retries_backoff_is_capped_seeded_and_raises_the_last_error():
    errors = [TransientError(f"attempt {n}") for n in range(1, 7)]
    attempts = iter(errors)

    def fn():
        raise next(attempts)

    sleeps: list[float] = []
    policy = RetryPolicy(max_attempts=6, base_s=1.0, cap_s=4.0, jitter=0.1, seed=5)
    with pytest.raises(TransientError) as caught:
        call_with_retries(fn, policy, sleep=sleeps.append)
    assert caught.value is errors[-1]
    assert len(sleeps) == 5
    for wait, base in zip(sleeps, [1.0, 2.0, 4.0, 4.0, 4.0], strict=True):
        assert base * 0.9 <= wait <= base * 1.1
    again: list[float] = []
    attempts = iter([TransientError("x")] * 6)
    with pytest.raises(TransientError):
        call_with_retries(fn, policy, sleep=again.append)
    assert again == sleeps


def test_call_with_retries_waits_at_least_the_hint_and_gives_up_on_long_bans():
    outcomes = iter([Throttled("slow down", retry_after_s=7.0), "ok"])

    def fn():
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    sleeps: list[float] = []
    assert call_with_retries(fn, RetryPolicy(base_s=0.1), sleep=sleeps.append) == "ok"
    assert sleeps == [7.0]

    def banned():
        raise Throttled("come back tomorrow", retry_after_s=3600.0)

    with pytest.raises(Throttled):
        call_with_retries(banned, RetryPolicy(max_wait_s=900), sleep=lambda s: pytest.fail("slept"))


def test_duration_parsing():
    assert parse_duration("2s") == 2.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("0.250s") == 0.25
    assert parse_duration({"seconds": 3, "nanos": 500_000_000}) == 3.5
    assert parse_duration("soon") is None


# --- construction and credentials ---------------------------------------------------------------


def test_from_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("ADLOOP_GOOGLE_ADS_", "ADLOOP_META_")):
            monkeypatch.delenv(name)
    with pytest.raises(
        ValueError, match="ADLOOP_GOOGLE_ADS_ACCESS_TOKEN and ADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN"
    ):
        GoogleAdsClient.from_env()
    with pytest.raises(ValueError, match="ADLOOP_META_ACCESS_TOKEN"):
        MetaClient.from_env()
    monkeypatch.setenv("ADLOOP_GOOGLE_ADS_ACCESS_TOKEN", API_TOKEN)
    monkeypatch.setenv("ADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN", DEV_TOKEN)
    monkeypatch.setenv("ADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID", "111-222-3333")
    monkeypatch.setenv("ADLOOP_META_ACCESS_TOKEN", API_TOKEN)
    google, meta = GoogleAdsClient.from_env(), MetaClient.from_env()
    assert google.base_url == GOOGLE_ADS_BASE_URL and meta.base_url == META_BASE_URL
    assert google.login_customer_id == "1112223333"
    monkeypatch.setenv("ADLOOP_GOOGLE_ADS_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ADLOOP_META_BASE_URL", "http://127.0.0.1:9")
    assert GoogleAdsClient.from_env(api_version="v17").api_version == "v17"
    assert MetaClient.from_env().base_url == "http://127.0.0.1:9"
    assert_no_secret(google, meta)


def test_login_customer_id_is_sent_and_recorded(server, admin):
    built = seeded(admin, "google_ads", amount=5_000_000)
    with google_client(server.url, login_customer_id="9998887777") as client:
        record = client.update_budget(built, 5_010_000, validate_only=True, idempotency_key="k")
    assert record.request["headers"]["login-customer-id"] == "9998887777"
    assert_no_secret(record)


# --- the contract, against the real APIs when configured ----------------------------------------

REAL_GOOGLE_VARS = (
    "ADLOOP_GOOGLE_ADS_ACCESS_TOKEN",
    "ADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN",
    "ADLOOP_GOOGLE_ADS_CUSTOMER_ID",
    "ADLOOP_GOOGLE_ADS_BUDGET_ID",
)
REAL_META_VARS = ("ADLOOP_META_ACCESS_TOKEN", "ADLOOP_META_AD_ACCOUNT_ID", "ADLOOP_META_ADSET_ID")


def _real_backend(platform: str):
    names = REAL_GOOGLE_VARS if platform == "google_ads" else REAL_META_VARS
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        optional = (
            " (optional: ADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID, ADLOOP_GOOGLE_ADS_API_VERSION, "
            "ADLOOP_GOOGLE_ADS_CURRENCY)"
            if platform == "google_ads"
            else " (optional: ADLOOP_META_API_VERSION, ADLOOP_META_CURRENCY)"
        )
        pytest.skip(
            f"real {platform} contract test: set {', '.join(names)}{optional}; missing "
            f"{', '.join(missing)}. It only reads one budget and sends validate_only updates."
        )
    if platform == "google_ads":
        client = GoogleAdsClient.from_env()
        account, target_id = (
            os.environ["ADLOOP_GOOGLE_ADS_CUSTOMER_ID"],
            os.environ["ADLOOP_GOOGLE_ADS_BUDGET_ID"],
        )
        currency = os.environ.get("ADLOOP_GOOGLE_ADS_CURRENCY", "USD")
    else:
        client = MetaClient.from_env()
        account, target_id = (
            os.environ["ADLOOP_META_AD_ACCOUNT_ID"],
            os.environ["ADLOOP_META_ADSET_ID"],
        )
        currency = os.environ.get("ADLOOP_META_CURRENCY", "USD")
    target = BudgetTarget(
        platform,
        account.replace("-", "").removeprefix("act_"),
        target_id,
        "contract",
        "contract",
        currency,
    )
    return client, target, None


@pytest.fixture(params=["sandbox-google_ads", "sandbox-meta", "real-google_ads", "real-meta"])
def backend(request, server):
    where, platform = request.param.split("-", 1)
    if where == "real":
        client, target, admin = _real_backend(platform)
    else:
        admin = server.admin
        target = seeded(admin, platform)
        client = CLIENTS[platform](server.url)
    with client:
        yield client, target, admin


def test_contract_read_and_validate_only(backend):
    client, target, admin = backend
    before = len(admin.mutations()) if admin else None
    reading = client.read_budget(target)
    assert isinstance(reading, BudgetReading)
    assert isinstance(reading.amount, int) and reading.amount >= 0
    assert reading.status in (ENABLED, PAUSED)
    # The current values, validated only: nothing changes even if validation were ignored.
    record = client.update_budget(target, reading.amount, validate_only=True, idempotency_key=key())
    assert 200 <= record.status < 300
    record = client.set_status(target, reading.status, validate_only=True, idempotency_key=key())
    assert 200 <= record.status < 300
    assert client.read_budget(target) == reading
    assert_no_secret(record, client)
    for name in (
        "ADLOOP_GOOGLE_ADS_ACCESS_TOKEN",
        "ADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN",
        "ADLOOP_META_ACCESS_TOKEN",
    ):
        secret = os.environ.get(name)
        if secret:
            assert secret not in repr(record) and secret not in repr(client)
    if admin:
        assert len(admin.mutations()) == before
