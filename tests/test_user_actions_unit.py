"""The pieces behind the user actions that need no running Airflow (the deployment tier,
``tests/deployment/test_user_actions.py``, checks the actions themselves)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest

from modelops_provider.core.operators import first_try_since_clear
from modelops_provider.core.results import JobResultArg, MissingResultError
from modelops_provider.foundry.operators import ModelStudioLaunchOperator

STUDIO = "ri.models.main.model-studio.00000000-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("try_number", "max_tries", "retries", "expected"),
    [
        (1, 0, 0, True),  # a new task instance, no retries
        (1, 2, 2, True),  # a new task instance with retries
        (2, 2, 2, False),  # a retry
        (3, 2, 2, False),  # the last retry
        (2, 1, 0, True),  # first try after clearing try 1 (max_tries = 1 + 0)
        (4, 5, 2, True),  # first try after clearing try 3 (max_tries = 3 + 2)
        (5, 5, 2, False),  # a retry after that
    ],
)
def test_first_try_since_clear_follows_airflows_max_tries(try_number, max_tries, retries, expected):
    context = {"ti": SimpleNamespace(try_number=try_number, max_tries=max_tries)}
    assert first_try_since_clear(context, retries) is expected


def test_first_try_since_clear_is_false_when_airflow_does_not_say():
    assert first_try_since_clear({"ti": SimpleNamespace(try_number=1)}, 0) is False


def _output_of_launch_task() -> JobResultArg:
    from airflow.sdk import DAG

    with DAG("t_results", schedule=None, start_date=datetime(2026, 1, 1)):
        train = ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO)
    return train.output  # type: ignore[no-any-return]


def test_reading_a_missing_result_names_the_task_not_a_type_error():
    from airflow.sdk.definitions._internal.types import NOTSET

    output = _output_of_launch_task()
    assert isinstance(output, JobResultArg)
    ti = SimpleNamespace(xcom_pull=lambda **kw: NOTSET)
    with pytest.raises(MissingResultError, match=r"Task 'train' left no return value.*Clear 'train'"):
        output.resolve({"ti": ti})


def test_reading_a_present_result_returns_it_and_other_keys_stay_plain():
    output = _output_of_launch_task()
    ti = SimpleNamespace(xcom_pull=lambda **kw: {"runId": "r1"})
    assert output.resolve({"ti": ti}) == {"runId": "r1"}
    assert type(output["run_id"]).__name__ == "PlainXComArg"


class _Store:
    def __init__(self, **values):
        self.values = dict(values)

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value, **kw):
        self.values[key] = value

    def delete(self, key):
        self.values.pop(key, None)


def _launch_with_stored_job(job):
    op = ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO, deferrable=True, poll_interval=1)
    pushed = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.__setitem__(key, value), try_number=1, max_tries=0)
    store = _Store(**({op.external_id_key: job} if job else {}))
    return op, {"ti": ti, "task_state_store": store}, pushed


def test_an_earlier_tries_trigger_event_is_ignored_and_the_task_waits_for_its_own_job(modelops_sandbox):
    from airflow.providers.common.compat.sdk import TaskDeferred

    own = {"model_studio_rid": STUDIO, "run_id": "new", "build_rid": "ri.foundry-build.main.build.new"}
    own["started_at"] = 1.0
    op, context, pushed = _launch_with_stored_job(own)
    stale = {
        "status": "done",
        "target": {"model_studio_rid": STUDIO, "run_id": "old", "build_rid": "ri.foundry-build.main.build.old"},
        "snapshot": {"outcome": "cancelled", "status": "CANCELED", "summary": "old: CANCELED", "data": {}},
    }
    with pytest.raises(TaskDeferred) as deferred:
        op.execute_complete(context, stale)
    assert deferred.value.trigger.target()["run_id"] == "new"
    assert deferred.value.trigger.started_at == 1.0
    assert pushed["run_id"] == "new"
