"""Bad input fails before any request, naming the parameter (or connection extra) and the value;
credentials are stripped or refused without being echoed; no text of the HTTP library that can hold
a header value reaches a log, an exception or a trigger event."""

from __future__ import annotations

import asyncio
import json
import logging
import math

import pytest

from modelops_provider.core import errors
from modelops_provider.core.transport import HeaderAuth
from modelops_provider.core.validation import require_rid
from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.operators import ModelStudioLaunchOperator
from modelops_provider.foundry.sensors import ModelStudioRunSensor
from modelops_provider.foundry.triggers import ModelStudioRunTrigger
from modelops_provider.pluto.hooks import PlutoHook
from modelops_provider.sandbox import foundry as sf

STUDIO = "ri.models.main.model-studio.11111111-1111-4111-8111-111111111111"
BUILD = "ri.foundry-build.main.build.44444444-4444-4444-8444-444444444444"
SECRET = "tok-SECRET-5e1f"


def foundry_conn(monkeypatch, url: str, conn_id: str, *, password: str | None = sf.STATIC_TOKEN, **extra) -> str:
    host, port = url.split("://")[1].split(":")
    conn = {"conn_type": "foundry", "host": host, "port": int(port), "extra": {"scheme": "http", **extra}}
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def service_requests(control) -> list[dict]:
    return [r for r in control.requests() if not r["path"].startswith("/_sandbox")]


# --- ids, names, durations ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [STUDIO + "\n", STUDIO + " ", " " + STUDIO, STUDIO + "\r\n"])
def test_rids_must_match_in_full(bad, modelops_sandbox):
    with pytest.raises(ValueError, match="model_studio_rid must be a Foundry RID") as info:
        FoundryHook().launch_model_studio(bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(ValueError):
        require_rid("rid", bad)
    assert service_requests(modelops_sandbox.control) == []


@pytest.mark.parametrize("bad", ["analytics\n", "my project", "tab\there", " analytics", ""])
def test_ducklake_names_with_whitespace_are_refused(bad, modelops_sandbox):
    hook = DuckLakeHook()
    with pytest.raises(ValueError, match="project_name must be a non-empty name without whitespace"):
        hook.trigger_model_run(bad)
    with pytest.raises(ValueError, match="model_names must hold non-empty model names without whitespace"):
        hook.trigger_model_run("analytics", [bad or "x y"])
    assert service_requests(modelops_sandbox.control) == []


@pytest.mark.parametrize("run_id", ["abc\n", " abc", "a\x00b"])
def test_run_ids_with_surrounding_whitespace_or_control_characters_are_refused(run_id, modelops_sandbox):
    with pytest.raises(ValueError, match="run_id must be a non-empty string"):
        FoundryHook().get_model_studio_run(STUDIO, run_id)
    assert service_requests(modelops_sandbox.control) == []


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": math.nan}, "poll_interval"),
        ({"poll_interval": math.inf}, "poll_interval"),
        ({"poll_interval": 1e300}, "poll_interval"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": 1e300}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
    ],
)
def test_operator_durations_are_finite_and_bounded(kwargs, param):
    with pytest.raises(ValueError, match=rf"^{param} must be a number of seconds") as info:
        ModelStudioLaunchOperator(task_id="t", model_studio_rid=STUDIO, **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


@pytest.mark.parametrize("value", [math.nan, 0, 0.001, 1e300])
def test_sensor_poke_interval_is_bounded(value):
    with pytest.raises(ValueError, match="poke_interval"):
        ModelStudioRunSensor(task_id="s", model_studio_rid=STUDIO, run_id="r", poke_interval=value)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"read_timeout": "nan"}, "read_timeout"),
        ({"read_timeout": "inf"}, "read_timeout"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"connect_timeout": 1e9}, "connect_timeout"),
        ({"retry_max_attempts": "nan"}, "retry_max_attempts"),
        ({"retry_max_elapsed": "inf"}, "retry_max_elapsed"),
        ({"adoption_window": -1}, "adoption_window"),
        ({"adoption_window": "nan"}, "adoption_window"),
    ],
)
def test_connection_extras_are_checked_and_named_by_their_key(extra, key, modelops_sandbox, monkeypatch):
    conn_id = foundry_conn(monkeypatch, modelops_sandbox.url, "foundry_bad_extra", **extra)
    with pytest.raises(ValueError, match=rf"connection extra '{key}'"):
        FoundryHook(conn_id).get_build(BUILD)
    assert service_requests(modelops_sandbox.control) == []


@pytest.mark.parametrize("as_text", [True, False])
def test_too_deep_config_is_a_value_error(as_text, modelops_sandbox):
    deep: object = 1
    for _ in range(5000):
        deep = {"a": deep}
    config = ('{"a":' * 5000 + "1" + "}" * 5000) if as_text else deep
    with pytest.raises(ValueError, match="config nests deeper than 64 levels"):
        PlutoHook().create_run("p", "r", config=config)
    with pytest.raises(ValueError, match="config is not valid JSON"):
        PlutoHook().create_run("p", "r", config="{not json")
    with pytest.raises(ValueError, match="config cannot be sent as JSON"):
        PlutoHook().create_run("p", "r", config={"when": object()})
    assert service_requests(modelops_sandbox.control) == []


# --- credentials ---------------------------------------------------------------------------------
def test_a_credential_pasted_with_surrounding_whitespace_is_stripped(modelops_sandbox, monkeypatch):
    conn_id = foundry_conn(monkeypatch, modelops_sandbox.url, "foundry_pasted", password=f" {sf.STATIC_TOKEN}\n")
    assert FoundryHook(conn_id).get_live_deployment(sf.DEFAULT_LIVE_DEPLOYMENT)


@pytest.mark.parametrize("password", [f"{SECRET}\nx", f"{SECRET}\x00", f"{SECRET}é", f"{SECRET}\u200b"])
def test_a_credential_with_control_or_non_ascii_characters_is_refused_unechoed(password, modelops_sandbox, monkeypatch):
    conn_id = foundry_conn(monkeypatch, modelops_sandbox.url, "foundry_badtok", password=password)
    with pytest.raises(ValueError, match="token \\(password\\) holds a") as info:
        FoundryHook(conn_id).get_build(BUILD)
    assert "SECRET" not in str(info.value)
    assert service_requests(modelops_sandbox.control) == []


@pytest.mark.parametrize("key", ["mlps_", "mlpi_", "mlps_abc def", "mlpi_abc  def"])
def test_pluto_keys_that_are_only_a_prefix_or_hold_spaces_are_refused(key, modelops_sandbox, monkeypatch):
    conn = {"conn_type": "pluto", "password": key, "extra": {"api_url": modelops_sandbox.url}}
    monkeypatch.setenv("AIRFLOW_CONN_PLUTO_BADKEY", json.dumps(conn))
    with pytest.raises(ValueError, match="must start with 'mlps_' or 'mlpi_'") as info:
        PlutoHook("pluto_badkey").create_run("p", "r")
    assert "abc" not in str(info.value)
    assert service_requests(modelops_sandbox.control) == []


def _leaky_bearer(token: str) -> HeaderAuth:
    # What a connection handed over unchecked would send: a header h11 refuses to write.
    return HeaderAuth("Authorization", f"Bearer {SECRET}\n")


def test_an_illegal_header_never_reaches_a_message_a_log_or_a_retry(modelops_sandbox, monkeypatch, caplog):
    import modelops_provider.foundry.hooks as foundry_hooks

    monkeypatch.setattr(foundry_hooks, "bearer", _leaky_bearer)
    hook = FoundryHook()
    with caplog.at_level(logging.DEBUG), pytest.raises(errors.InvalidRequestError) as info:
        hook.get_build(BUILD)
    assert "could not be sent" in str(info.value)
    with caplog.at_level(logging.DEBUG), pytest.raises(errors.InvalidRequestError) as launch:
        hook.launch_model_studio(STUDIO)
    assert not isinstance(launch.value, errors.AmbiguousRequestError)  # never sent: nothing to look for
    texts = [str(info.value), str(launch.value), json.dumps(info.value.to_dict())]
    texts += [r.getMessage() for r in caplog.records]
    assert [r for r in caplog.records if "details withheld" in r.getMessage()]  # httpcore's trace, redacted
    assert not [t for t in texts if SECRET in t]
    assert not [r for r in caplog.records if "retry" in r.getMessage()]  # not retried as a network fault
    assert service_requests(modelops_sandbox.control) == []


def test_an_illegal_header_never_reaches_a_trigger_event(modelops_sandbox, monkeypatch, caplog):
    import modelops_provider.foundry.hooks as foundry_hooks

    monkeypatch.setattr(foundry_hooks, "bearer", _leaky_bearer)
    trigger = ModelStudioRunTrigger(
        model_studio_rid=STUDIO, run_id="r-1", build_rid=BUILD, conn_id="foundry_default", poll_interval=0.1
    )

    async def first_event():
        async for event in trigger.run():
            return event.payload

    with caplog.at_level(logging.DEBUG):
        event = asyncio.run(first_event())
    # Not a transient error: the wait ends at the first poll instead of riding it out.
    assert event["status"] == "error" and event["error"]["type"] == "InvalidRequestError"
    assert not [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert SECRET not in json.dumps(event)
    assert not [r for r in caplog.records if SECRET in r.getMessage() or SECRET in (r.exc_text or "")]
