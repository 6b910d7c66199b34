"""LiveDeploymentSensor/Trigger and model asset events, against the sandbox."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import pytest

from dagrun import run_dag
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.status import LiveDeploymentWatch
from modelops_provider.foundry.triggers import LiveDeploymentTrigger

pytestmark = pytest.mark.usefixtures("airflow_db")

STUDIO = "ri.models.main.model-studio.99999999-9999-4999-8999-999999999999"
LIVE = "ri.foundry-ml-live.main.live-deployment.99999999-9999-4999-8999-999999999999"


def _script(sandbox, *, duration_s=0.2, rollout_s=0.6, ready_after_s=0.4, outcome="ACTIVE", **extra):
    sandbox.control.foundry_studio(STUDIO, duration_s=duration_s)
    return sandbox.control.post(
        "/_sandbox/foundry/live-deployments",
        {
            "rid": LIVE,
            "studio_rid": STUDIO,
            "rollout_s": rollout_s,
            "ready_after_s": ready_after_s,
            "outcome": outcome,
            **extra,
        },
    )


def _sensor_dag(dag_id, expected, **kwargs):
    from airflow.sdk import DAG

    from modelops_provider.foundry.sensors import LiveDeploymentSensor

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        LiveDeploymentSensor(
            task_id="verify",
            live_deployment_rid=LIVE,
            expected_model_version_rid=expected,
            **{"poke_interval": 0.1, "timeout": 30, **kwargs},
        )
    return dag


def _launch_and_finish(sandbox) -> str:
    hook = FoundryHook()
    run = hook.launch_model_studio(STUDIO)
    while (snap := hook.call(hook.api.model_studio_run_snapshot(STUDIO, run.run_id))).status == "RUNNING":
        time.sleep(0.05)
    return snap.data["resolvedOutputs"]["model"]["modelVersionRid"]


def test_watch_mapping():
    from modelops_provider.foundry.models import LiveDeployment

    def dep(state, ready, version="v-new"):
        return LiveDeployment.model_validate(
            {
                "rid": LIVE,
                "modelVersion": {"modelRid": "m", "modelVersionRid": version},
                "status": {"state": state, "isReady": ready},
            }
        )

    watch = LiveDeploymentWatch("v-new", require_ready=True, degraded_grace=10)
    assert watch.evaluate(dep("STARTING", False, "v-old")).outcome == "waiting"
    assert watch.evaluate(dep("ACTIVE", True, "v-old")).outcome == "waiting"
    assert watch.evaluate(dep("ACTIVE", False)).outcome == "waiting"
    assert watch.evaluate(dep("ACTIVE", True)).outcome == "succeeded"
    assert LiveDeploymentWatch("v-new", require_ready=False).evaluate(dep("ACTIVE", False)).outcome == "succeeded"
    assert LiveDeploymentWatch(None).evaluate(dep("ACTIVE", True, "anything")).outcome == "succeeded"
    assert watch.evaluate(dep("FAILED", False)).outcome == "failed"
    assert watch.evaluate(dep("DISABLED", True)).outcome == "failed"
    assert watch.evaluate(dep("DEGRADED", False), now=100).outcome == "waiting"
    assert watch.evaluate(dep("DEGRADED", False), now=105).outcome == "waiting"
    snap = watch.evaluate(dep("DEGRADED", False), now=111)
    assert snap.outcome == "failed" and "DEGRADED for 11s (grace 10s" in snap.reason
    assert watch.evaluate(dep("ACTIVE", False), now=112).outcome == "waiting" and watch.degraded_since is None


def test_sandbox_deployment_tracks_the_studio_branch(modelops_sandbox):
    _script(modelops_sandbox, duration_s=0.3, rollout_s=0.5, ready_after_s=0.5)
    hook = FoundryHook()
    old = hook.get_live_deployment(LIVE).model_version.model_version_rid
    run = hook.launch_model_studio(STUDIO)
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        dep = hook.get_live_deployment(LIVE)
        phase = (dep.model_version.model_version_rid, dep.status.state, dep.status.is_ready)
        if not seen or seen[-1] != phase:
            seen.append(phase)
        if phase[1:] == ("ACTIVE", True) and phase[0] != old:
            break
        time.sleep(0.05)
    new = hook.get_model_studio_run(STUDIO, run.run_id).resolved_outputs["model"].model_version_rid
    assert seen == [(old, "ACTIVE", True), (old, "STARTING", False), (new, "ACTIVE", False), (new, "ACTIVE", True)]


ROLLOUT = [
    {"model_version_rid": "ri.models.main.model-version.old", "state": "ACTIVE", "is_ready": True},
    {"model_version_rid": "ri.models.main.model-version.old", "state": "STARTING", "is_ready": False},
    {"model_version_rid": "ri.models.main.model-version.new", "state": "ACTIVE", "is_ready": False},
    {"model_version_rid": "ri.models.main.model-version.new", "state": "ACTIVE", "is_ready": True},
]


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_succeeds_only_once_new_version_active_and_ready(modelops_sandbox, mode, capfd):
    modelops_sandbox.control.post("/_sandbox/foundry/live-deployments", {"rid": LIVE, "steps": ROLLOUT})
    kwargs = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
    result = run_dag(_sensor_dag(f"t_live_{mode}", "ri.models.main.model-version.new", **kwargs))
    assert result.state == "success"
    deployment = result.task("verify").xcom["return_value"]
    assert deployment["modelVersion"]["modelVersionRid"] == "ri.models.main.model-version.new"
    assert deployment["status"] == {"state": "ACTIVE", "isReady": True}
    assert deployment["runtimeConfiguration"]["sources"] == []
    assert result.task("verify").xcom["_link_LiveDeploymentLink"] == (
        f"{modelops_sandbox.url}/workspace/model-live-deployments/{LIVE}"
    )
    polls = modelops_sandbox.control.requests(path_prefix=f"/api/v2/models/liveDeployments/{LIVE}")
    assert len(polls) == 4, "it waited through the old version, STARTING and not-ready, and stopped when ready"
    if mode != "deferrable":
        text = "".join(capfd.readouterr())
        # Each change is logged once.
        for phase in (
            "model-version.old: ACTIVE, ready (waiting for",
            "model-version.old: STARTING, not ready",
            "model-version.new: ACTIVE, not ready",
            "model-version.new: ACTIVE, ready",
        ):
            assert text.count(phase) == 1, phase


def test_old_version_active_and_ready_is_not_enough(modelops_sandbox, capfd):
    # A version that never arrives: the sensor times out rather than accepting the old one.
    modelops_sandbox.control.post("/_sandbox/foundry/live-deployments", {"rid": LIVE, "steps": ROLLOUT[:1]})
    result = run_dag(_sensor_dag("t_live_old", "ri.models.main.model-version.new", timeout=1))
    assert result.state == "failed"
    assert "AirflowSensorTimeout" in "".join(capfd.readouterr())


@pytest.mark.parametrize(
    ("outcome", "message"),
    [("FAILED", "is FAILED (serving"), ("DISABLED", "is DISABLED (serving"), ("DEGRADED", "has been DEGRADED for")],
)
@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_fails_fast_with_the_reason(modelops_sandbox, outcome, message, deferrable, capfd):
    _script(modelops_sandbox, rollout_s=0.2, outcome=outcome)
    version = _launch_and_finish(modelops_sandbox)
    started = time.monotonic()
    result = run_dag(_sensor_dag(f"t_live_{outcome}_{deferrable}", version, degraded_grace=0.5, deferrable=deferrable))
    assert result.state == "failed"
    assert time.monotonic() - started < 20
    assert message in "".join(capfd.readouterr())


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
@pytest.mark.parametrize(
    ("rid", "setup", "message"),
    [
        (
            "ri.foundry-ml-live.main.live-deployment.00000000-0000-4000-8000-0000000000ff",
            None,
            "LiveDeploymentNotFound",
        ),
        (LIVE, {"supported": False}, "UnsupportedLiveDeployment"),
    ],
    ids=["not-found", "unsupported"],
)
def test_missing_or_unsupported_deployment_fails(modelops_sandbox, rid, setup, message, deferrable, capfd):
    from airflow.sdk import DAG

    from modelops_provider.foundry.sensors import LiveDeploymentSensor

    if setup:
        _script(modelops_sandbox, **setup)
    with DAG(f"t_live_missing_{message}_{deferrable}", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        LiveDeploymentSensor(
            task_id="verify", live_deployment_rid=rid, poke_interval=0.1, timeout=30, deferrable=deferrable
        )
    result = run_dag(dag)
    assert result.state == "failed"
    assert message in "".join(capfd.readouterr())


def test_bad_expected_version_fails_before_any_request(modelops_sandbox, capfd):
    result = run_dag(_sensor_dag("t_live_bad", {"resolvedOutputs": {"other": {}}}))
    assert result.state == "failed"
    assert "run without output 'model' (output_alias)" in "".join(capfd.readouterr())
    assert modelops_sandbox.control.requests() == []


def test_trigger_is_json_and_judges_like_the_sensor(modelops_sandbox):
    _script(modelops_sandbox)
    version = _launch_and_finish(modelops_sandbox)
    trigger = LiveDeploymentTrigger(
        live_deployment_rid=LIVE, expected_model_version_rid=version, conn_id="foundry_default", poll_interval=0.1
    )
    path, kwargs = trigger.serialize()
    assert path == "modelops_provider.foundry.triggers.LiveDeploymentTrigger"
    assert LiveDeploymentTrigger(**kwargs).serialize() == (path, kwargs)

    async def run():
        return [e.payload async for e in trigger.run()]

    events = asyncio.run(run())
    assert len(events) == 1 and events[0]["status"] == "done"
    assert events[0]["snapshot"]["data"]["modelVersion"]["modelVersionRid"] == version


def test_train_and_verify_chain_deferrable(modelops_sandbox):
    from airflow.sdk import DAG

    from modelops_provider.foundry.operators import ModelStudioLaunchOperator
    from modelops_provider.foundry.sensors import LiveDeploymentSensor

    _script(modelops_sandbox)
    with DAG("t_train_and_verify", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        train = ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO, deferrable=True, poll_interval=0.1)
        LiveDeploymentSensor(
            task_id="verify",
            live_deployment_rid=LIVE,
            expected_model_version_rid=train.output,
            deferrable=True,
            poke_interval=0.1,
            timeout=30,
        )
    result = run_dag(dag)
    assert result.state == "success"
    produced = result.task("train").xcom["return_value"]["resolvedOutputs"]["model"]["modelVersionRid"]
    assert result.task("verify").xcom["return_value"]["modelVersion"]["modelVersionRid"] == produced


def test_asset_event_emitted_and_schedules_the_verifier(modelops_sandbox):
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    from modelops_provider.foundry.assets import model_asset
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    model_rid = modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2)["modelRid"]
    asset = model_asset("127.0.0.1", model_rid)
    assert asset.uri == f"foundry://127.0.0.1/models/{model_rid}"
    assert type(asset).__name__ == "Model"

    with DAG("t_asset_consumer", schedule=[asset], start_date=datetime(2026, 1, 1)) as consumer:
        from airflow.providers.standard.operators.empty import EmptyOperator

        EmptyOperator(task_id="noop")
    bag = DagBag(dag_folder="/nonexistent-modelops-dags")
    bag.bag_dag(consumer)
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        session.query(DagModel).filter_by(dag_id="t_asset_consumer").update({"is_paused": False})

    with DAG("t_asset_producer", schedule=None, start_date=datetime(2026, 1, 1)) as producer:
        ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO, poll_interval=0.1)
    result = run_dag(producer)
    assert result.state == "success"
    run = result.task("train").xcom["return_value"]

    with create_session() as session:
        model = session.query(AssetModel).filter_by(uri=asset.uri).one()
        events = session.query(AssetEvent).filter_by(asset_id=model.id).all()
        assert [e.extra for e in events] == [
            {
                "modelVersionRid": run["resolvedOutputs"]["model"]["modelVersionRid"],
                "runId": run["runId"],
                "configVersion": 1,
                "outputAlias": "model",
                "modelStudioRid": STUDIO,
            }
        ]
        assert session.query(AssetDagRunQueue).filter_by(target_dag_id="t_asset_consumer").count() == 1
        # The scheduler's own decision: which DAGs are due a run because of asset events.
        _, triggered = DagModel.dags_needing_dagruns(session)
        assert "t_asset_consumer" in triggered


def test_no_asset_events_when_disabled():
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    op = ModelStudioLaunchOperator(task_id="x", model_studio_rid=STUDIO, emit_asset_events=False)
    assert op.outlets == []
    assert [o.name for o in ModelStudioLaunchOperator(task_id="y", model_studio_rid=STUDIO).outlets] == [
        "modelops-foundry-model-versions"
    ]
