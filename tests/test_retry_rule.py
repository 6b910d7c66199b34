"""The one retry rule (core/retry.py), as a pure function: no HTTP, no sandbox."""

from __future__ import annotations

import httpx
import pytest

from modelops_provider.core.retry import (
    Action,
    Kind,
    MalformedBody,
    MissedPolls,
    RetryPolicy,
    decide,
    describe_failure,
    parse_retry_after,
)

POLICY = RetryPolicy(max_attempts=4, max_elapsed=100, base_delay=0.5, max_delay=4, retry_after_cap=60)


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def verdict(failure, kind=Kind.READ, attempt=1, policy=POLICY, now=0.0):
    return decide(failure, attempt=attempt, kind=kind, policy=policy, started=0.0, now=now)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        # status: read, idempotent, append, create
        (answer(500), ("retry", "retry", "fail", "ambiguous")),
        (answer(502), ("retry", "retry", "retry", "ambiguous")),
        (answer(504), ("retry", "retry", "retry", "ambiguous")),
        (answer(503), ("retry", "retry", "retry", "retry")),
        (answer(429), ("retry", "retry", "retry", "retry")),
        (answer(400), ("fail", "fail", "fail", "fail")),
        (answer(404), ("fail", "fail", "fail", "fail")),
        (answer(409), ("fail", "fail", "fail", "fail")),
        (httpx.ConnectError("refused"), ("retry", "retry", "retry", "retry")),
        (httpx.ConnectTimeout("timed out"), ("retry", "retry", "retry", "retry")),
        (httpx.ReadTimeout("timed out"), ("retry", "retry", "retry", "ambiguous")),
        (httpx.RemoteProtocolError("closed"), ("retry", "retry", "retry", "ambiguous")),
        (httpx.ReadError("reset"), ("retry", "retry", "retry", "ambiguous")),
        (MalformedBody(200), ("retry", "retry", "retry", "ambiguous")),
        # Could not even be written (an illegal header value): never retried, never ambiguous.
        (httpx.LocalProtocolError("Illegal header value b'Bearer x\\n'"), ("fail", "fail", "fail", "fail")),
        (ValueError("not an HTTP failure"), ("fail", "fail", "fail", "fail")),
    ],
)
def test_rule_by_failure_and_kind(failure, expected):
    kinds = (Kind.READ, Kind.IDEMPOTENT, Kind.APPEND, Kind.CREATE)
    assert tuple(verdict(failure, kind).action.value for kind in kinds) == expected


def test_budget_by_attempts_and_by_time():
    assert verdict(answer(503), attempt=3).action is Action.RETRY
    spent = verdict(answer(503), attempt=4)
    assert spent.action is Action.FAIL and spent.why == "budget"
    # A wait that would end past max_elapsed is not taken.
    late = verdict(answer(503, **{"Retry-After": "10"}), now=95.0)
    assert late.action is Action.FAIL and late.why == "budget"
    assert verdict(answer(503, **{"Retry-After": "10"}), now=85.0).wait == 10


def test_retry_after_is_honoured_and_capped_with_the_asked_value_kept():
    honoured = verdict(answer(429, **{"Retry-After": "1.5"}))
    assert (honoured.wait, honoured.retry_after, honoured.capped) == (1.5, 1.5, False)
    policy = RetryPolicy(max_elapsed=3600, retry_after_cap=60)
    capped = verdict(answer(429, **{"Retry-After": "100000"}), policy=policy)
    assert (capped.action, capped.wait, capped.retry_after, capped.capped) == (Action.RETRY, 60, 100000, True)


def test_backoff_without_retry_after_grows_within_the_max_delay():
    waits = [verdict(answer(502), attempt=a).wait for a in (1, 2, 3)]
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1 and 1 <= waits[2] <= 2
    big = RetryPolicy(max_attempts=100, max_elapsed=3600, base_delay=1, max_delay=4)
    assert 2 <= verdict(answer(502), attempt=90, policy=big).wait <= 4


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_retry_after_that_is_not_a_finite_delay_is_ignored(value):
    assert parse_retry_after(value) is None


def test_retry_after_as_an_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("not a date") is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retry_max_attempts", "nan"),
        ("retry_max_attempts", 0),
        ("retry_max_attempts", 2.5),
        ("retry_max_attempts", 10**9),
        ("retry_max_attempts", True),
        ("retry_max_elapsed", "inf"),
        ("retry_max_elapsed", float("nan")),
        ("retry_max_elapsed", -1),
        ("retry_base_delay", "abc"),
        ("retry_max_delay", 1e300),
        ("retry_after_cap", "-5"),
    ],
)
def test_bad_retry_extras_name_the_extra_key_and_value(key, value):
    with pytest.raises(ValueError) as info:
        RetryPolicy.from_extra({key: value})
    assert f"connection extra {key!r}" in str(info.value)
    assert repr(value) in str(info.value)


def test_retry_extras_within_bounds_are_taken():
    policy = RetryPolicy.from_extra({"retry_max_attempts": "3", "retry_max_elapsed": 10, "retry_after_cap": "2.5"})
    assert (policy.max_attempts, policy.max_elapsed, policy.retry_after_cap) == (3, 10.0, 2.5)


def test_describe_failure_never_quotes_a_header():
    secret = "Bearer tok-SECRET-1234\n"
    for exc in (
        httpx.LocalProtocolError(f"Illegal header value {secret.encode()!r}"),
        httpx.RemoteProtocolError(f"Illegal header value {secret.encode()!r}"),
        httpx.ReadError(f"weird {secret!r}"),
    ):
        text = describe_failure(exc)
        assert "SECRET" not in text and type(exc).__name__ in text
    assert describe_failure(httpx.ConnectError("[Errno 111] Connection refused")).endswith("Connection refused")


def test_missed_polls_rule():
    rule = MissedPolls(3)
    assert [rule.missed(), rule.missed()] == [False, False] and rule.left == 0
    rule.seen()
    assert rule.count == 0 and rule.left == 2
    assert [rule.missed(), rule.missed(), rule.missed()] == [False, False, True]
