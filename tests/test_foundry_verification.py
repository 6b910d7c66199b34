"""The verification chain against the sandbox: the metrics gate, promotion and the inference check,
run by dag.test(); plus the section E hook calls they stand on."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from dagrun import run_dag
from modelops_provider.core import errors
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.sandbox import foundry as sf

pytestmark = pytest.mark.usefixtures("airflow_db")

STUDIO = "ri.models.main.model-studio.66666666-6666-4666-8666-666666666666"
LIVE = "ri.foundry-ml-live.main.live-deployment.66666666-6666-4666-8666-666666666666"
UNMEASURED_LIVE = "ri.foundry-ml-live.main.live-deployment.67676767-6767-4767-8767-676767676767"
BARS = [
    {"metric": "accuracy", "comparison": ">=", "value": 0.90, "tolerance": 0.005},
    {"metric": "loss", "comparison": "<=", "value": 0.30},
]
PROMOTE_PATH = f"/api/v2/models/{sf.SUCCEEDING_MODEL}/promoteVersion"
INFER_PATH = f"/api/v2/models/liveDeployments/{LIVE}/transformJson"


def output(capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


def _dag(dag_id: str, *factories: Any):
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        previous = None
        for factory in factories:
            task = factory(previous)
            if previous is not None:
                previous >> task
            previous = task
    return dag


def _train(_: Any):
    from modelops_provider.foundry.operators import ModelStudioLaunchOperator

    return ModelStudioLaunchOperator(task_id="train", model_studio_rid=STUDIO, poll_interval=0.1)


def _gate(**kwargs: Any):
    def make(train: Any):
        from modelops_provider.foundry.operators import ModelMetricsCheckOperator

        return ModelMetricsCheckOperator(
            task_id="gate",
            **{"model_version": train.output, "thresholds": BARS, "no_worse_than": sf.PROD_LIVE_DEPLOYMENT, **kwargs},
        )

    return make


def _script(sandbox, **metrics: Any) -> None:
    sandbox.control.foundry_studio(STUDIO, duration_s=0.3, metrics=metrics)


# --- ModelMetricsCheckOperator ------------------------------------------------------------------------
def test_gate_passes_against_production_and_returns_the_metrics(modelops_sandbox, capfd):
    _script(modelops_sandbox, accuracy=0.93, loss=0.21)
    result = run_dag(_dag("t_gate_pass", _train, _gate()))
    assert result.state == "success", result.tasks
    gate = result.task("gate").xcom
    assert gate["return_value"] == {"accuracy": 0.93, "loss": 0.21}
    assert [v["verdict"] for v in gate["verdicts"]] == ["PASS", "PASS"]
    # Production serves a promoted copy without an experiment: the first version's is found through it.
    assert gate["production"]["modelVersionRid"] == sf.PROD_VERSION
    assert gate["production"]["metrics"] == {"accuracy": 0.92, "loss": 0.25}
    log = output(capfd)
    assert "metric    value   bar     production  tolerance  verdict" in log
    assert "accuracy  0.9300  >= 0.9  0.9200      0.005      PASS" in log


def test_gate_fails_naming_every_failing_metric_and_margin(modelops_sandbox, capfd):
    _script(modelops_sandbox, accuracy=0.905, loss=0.35)
    result = run_dag(_dag("t_gate_margin", _train, _gate()))
    assert result.state == "failed"
    gate = result.task("gate")
    assert gate.try_number == 1 and "return_value" not in gate.xcom
    assert [v["verdict"] for v in gate.xcom["verdicts"]] == ["FAIL", "FAIL"]
    log = output(capfd)
    assert "failed the metrics gate (2 problem(s))" in log
    assert f"accuracy = 0.9050 is 0.0150 worse than production ({sf.PROD_VERSION})'s 0.9200 (tolerance 0.005)" in log
    assert "loss = 0.3500 is not <= 0.3 (off by 0.0500)" in log


def test_gate_within_tolerance_of_production_passes(modelops_sandbox):
    _script(modelops_sandbox, accuracy=0.916, loss=0.21)  # 0.004 worse than prod's 0.92, tolerance 0.005
    assert run_dag(_dag("t_gate_tolerance", _train, _gate())).state == "success"


def test_missing_metric_fails_never_passes(modelops_sandbox, capfd):
    _script(modelops_sandbox, accuracy=0.93, loss=0.21)
    bars = [*BARS, {"metric": "f1", "aggregation": "MAX", "comparison": ">=", "value": 0.5}]
    result = run_dag(_dag("t_gate_missing", _train, _gate(thresholds=bars)))
    assert result.state == "failed"
    assert result.task("gate").xcom["metrics"] == {"accuracy": 0.93, "loss": 0.21}
    log = output(capfd)
    assert "f1_max: missing (the experiment has no MAX of series 'f1')" in log
    assert "(1 problem(s))" in log


def _unmeasured_production(sandbox) -> None:
    # A deployment serving a version with no experiment (nor any up a promotion chain).
    sandbox.control.post("/_sandbox/foundry/live-deployments", {"rid": UNMEASURED_LIVE, "state": "ACTIVE"})


def test_production_without_experiment_fails_by_default(modelops_sandbox, capfd):
    _script(modelops_sandbox, accuracy=0.93, loss=0.21)
    _unmeasured_production(modelops_sandbox)
    result = run_dag(_dag("t_gate_unmeasured", _train, _gate(no_worse_than=UNMEASURED_LIVE)))
    assert result.state == "failed"
    assert result.task("gate").xcom["production"]["experimentRid"] is None
    log = output(capfd)
    assert "has no experiment, so it cannot be compared (if_production_unmeasured='fail')" in log


def test_production_without_experiment_can_be_accepted(modelops_sandbox, capfd):
    _script(modelops_sandbox, accuracy=0.93, loss=0.21)
    _unmeasured_production(modelops_sandbox)
    result = run_dag(
        _dag("t_gate_unmeasured_pass", _train, _gate(no_worse_than=UNMEASURED_LIVE, if_production_unmeasured="pass"))
    )
    assert result.state == "success"
    assert "accuracy  0.9300  >= 0.9  missing     0.005      PASS" in output(capfd)


def test_gate_with_a_bare_version_rid_and_bad_input(modelops_sandbox, capfd):
    from modelops_provider.foundry.operators import ModelMetricsCheckOperator

    _script(modelops_sandbox, accuracy=0.93, loss=0.21)
    run = FoundryHook().launch_model_studio(STUDIO)
    modelops_sandbox.control.advance(0.4)
    version = FoundryHook().get_model_studio_run(STUDIO, run.run_id).resolved_outputs["model"]
    before = len(modelops_sandbox.control.requests(path_prefix="/api/v2/models"))

    def gate(**kw: Any):
        return lambda _: ModelMetricsCheckOperator(task_id="gate", model_version=version.model_version_rid, **kw)

    ok = run_dag(_dag("t_gate_rid", gate(model_rid=version.model_rid, thresholds=BARS[1:])))
    assert ok.state == "success" and ok.task("gate").xcom["return_value"] == {"loss": 0.21}
    after = len(modelops_sandbox.control.requests(path_prefix="/api/v2/models"))
    for dag_id, kw, message in [
        ("t_gate_no_model", {"thresholds": BARS[1:]}, "model_rid is needed with a bare model version RID"),
        (
            "t_gate_bad_cmp",
            {"model_rid": version.model_rid, "thresholds": [{"metric": "loss", "comparison": "=<", "value": 1}]},
            "thresholds[0].comparison must be one of >=, >, <=, <, ==, got '=<'",
        ),
        (
            "t_gate_tol_alone",
            {"model_rid": version.model_rid, "thresholds": BARS},
            "thresholds ['accuracy'] have a 'tolerance' but no_worse_than",
        ),
    ]:
        assert run_dag(_dag(dag_id, gate(**kw))).state == "failed"
        assert message in output(capfd)
    assert len(modelops_sandbox.control.requests(path_prefix="/api/v2/models")) == after > before


# --- PromoteModelVersionOperator --------------------------------------------------------------------
def _promote(source: str):
    def make(_: Any):
        from modelops_provider.foundry.operators import PromoteModelVersionOperator

        return PromoteModelVersionOperator(
            task_id="promote", model_rid=sf.SUCCEEDING_MODEL, model_version=source, branch=sf.PROD_BRANCH
        )

    return make


def _trained_version(sandbox) -> str:
    """A new version of the first model (its studio trains for 0.2 s)."""
    sandbox.control.foundry_studio(sf.SUCCEEDING_STUDIO, duration_s=0.2)
    hook = FoundryHook()
    run = hook.launch_model_studio(sf.SUCCEEDING_STUDIO)
    sandbox.control.advance(0.2)
    return hook.get_model_studio_run(sf.SUCCEEDING_STUDIO, run.run_id).resolved_outputs["model"].model_version_rid


def _prod_versions() -> list[Any]:
    return list(FoundryHook().list_model_versions(sf.SUCCEEDING_MODEL, branch=sf.PROD_BRANCH))


def test_promotion_returns_the_new_version_and_emits_an_asset_event(modelops_sandbox):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    source = _trained_version(modelops_sandbox)
    result = run_dag(_dag("t_promote", _promote(source)))
    assert result.state == "success"
    new = result.task("promote").xcom["return_value"]
    assert new.startswith("ri.models.main.model-version.") and new != source
    assert len(modelops_sandbox.control.requests(path_prefix=PROMOTE_PATH, method="POST")) == 1
    latest = max(_prod_versions(), key=lambda v: v.created_time or "")
    assert latest.rid == new and latest.source == {
        "type": "promoted",
        "previousModelRid": sf.SUCCEEDING_MODEL,
        "previousModelVersionRid": source,
    }
    with create_session() as session:
        events = [
            dict(e.extra) for e in session.query(AssetEvent).all() if (e.extra or {}).get("modelVersionRid") == new
        ]
    assert events == [{"modelVersionRid": new, "sourceModelVersionRid": source, "branch": "prod", "promoted": True}]
    record = result.task("promote").xcom["modelops_run"]  # listed on the Model runs page
    assert (record["kind"], record["remote_id"], record["model_version"], record["status"]) == (
        "promotion",
        source,  # the version it promoted; the new copy is the version it produced
        new,
        "PROMOTED",
    )
    assert record["verdict"] == "promoted to branch prod"
    # The prod deployment tracks the branch: it rolls the new version out (in 2 s of sandbox time).
    modelops_sandbox.control.advance(2)
    deadline = time.time() + 10
    while FoundryHook().get_live_deployment(sf.PROD_LIVE_DEPLOYMENT).model_version.model_version_rid != new:
        assert time.time() < deadline, "the prod deployment never served the promoted version"
        time.sleep(0.2)


def test_promotion_retried_does_not_promote_twice(modelops_sandbox):
    source = _trained_version(modelops_sandbox)
    first = run_dag(_dag("t_promote_retry", _promote(source)))
    # A later try (here: the same task again) finds the branch's newest version is already the copy.
    second = run_dag(_dag("t_promote_retry", _promote(source)))
    assert first.state == second.state == "success"
    assert second.task("promote").xcom["return_value"] == first.task("promote").xcom["return_value"]
    assert len(modelops_sandbox.control.requests(path_prefix=PROMOTE_PATH, method="POST")) == 1
    assert len(_prod_versions()) == 2  # the seeded prod version and one copy


def test_promotion_whose_answer_was_lost_is_adopted(modelops_sandbox, caplog):
    source = _trained_version(modelops_sandbox)
    modelops_sandbox.control.fault([{"kind": "drop"}], method="POST", path_prefix=PROMOTE_PATH)
    result = run_dag(_dag("t_promote_lost", _promote(source)))
    assert result.state == "success"
    assert len(modelops_sandbox.control.requests(path_prefix=PROMOTE_PATH, method="POST")) == 1
    assert [v.rid for v in _prod_versions() if v.rid != sf.PROD_VERSION] == [
        result.task("promote").xcom["return_value"]
    ]
    assert "adopting it instead of creating again" in caplog.text


def test_a_superseded_promotion_is_promoted_again(modelops_sandbox):
    hook = FoundryHook()
    # The seeded prod version is a copy of the first version: promoting that again is a no-op.
    first_version = modelops_sandbox.control.foundry_studio(sf.SUCCEEDING_STUDIO)["initialModelVersionRid"]
    assert hook.promote_model_version(sf.SUCCEEDING_MODEL, first_version, "prod").rid == sf.PROD_VERSION
    assert modelops_sandbox.control.requests(path_prefix=PROMOTE_PATH, method="POST") == []
    first = hook.promote_model_version(sf.SUCCEEDING_MODEL, sf.PROD_VERSION, "prod")
    other = _trained_version(modelops_sandbox)
    hook.promote_model_version(sf.SUCCEEDING_MODEL, other, "prod")
    again = hook.promote_model_version(sf.SUCCEEDING_MODEL, sf.PROD_VERSION, "prod")  # a rollback
    assert again.rid != first.rid
    assert len(modelops_sandbox.control.requests(path_prefix=PROMOTE_PATH, method="POST")) == 3


# --- LiveDeploymentInferenceOperator ----------------------------------------------------------------
def _tracking_prod(sandbox, **settings: Any) -> None:
    """LIVE tracks the prod branch of the first model."""
    body = {"rid": LIVE, "model_rid": sf.SUCCEEDING_MODEL, "branch": "prod", "model_version_rid": sf.PROD_VERSION}
    sandbox.control.post("/_sandbox/foundry/live-deployments", {**body, **settings})


def _infer(cases: list[dict[str, Any]], **kwargs: Any):
    def make(_: Any):
        from modelops_provider.foundry.operators import LiveDeploymentInferenceOperator

        return LiveDeploymentInferenceOperator(
            task_id="infer", live_deployment_rid=LIVE, cases=cases, **{"retry_interval": 0.2, "timeout": 10, **kwargs}
        )

    return make


def _positive(out: dict[str, Any]) -> bool:
    return all(row["prediction"] > 0 for row in out["df_out"])


CASES = [
    {"input": {"df_in": [{"x": 1.0}]}, "expected": {"df_out": [{"prediction": 3.0}]}},
    {"input": {"df_in": [{"x": 0.5, "id": "b"}]}, "expected": {"df_out": [{"id": "b", "prediction": 2.0000001}]}},
    {"input": {"df_in": [{"x": 2.0}]}, "expected": _positive},
]


def test_inference_checks_answers_and_reports_latency(modelops_sandbox, capfd):
    _tracking_prod(modelops_sandbox)
    result = run_dag(_dag("t_infer", _infer(CASES, expected_model_version=sf.PROD_VERSION)))
    assert result.state == "success", result.tasks
    value = result.task("infer").xcom["return_value"]
    assert value["modelVersionRid"] == sf.PROD_VERSION and len(value["latencyMs"]) == 3
    assert value["results"][2]["output"] == {"df_out": [{"x": 2.0, "prediction": 5.0}]}
    assert len(modelops_sandbox.control.requests(path_prefix=INFER_PATH)) == 3
    assert "Latency per request (ms):" in output(capfd)


def test_inference_wrong_answer_fails_with_input_answer_and_expectation(modelops_sandbox, capfd):
    _tracking_prod(modelops_sandbox, transform={"slope": 2.0, "intercept": 0.9})
    result = run_dag(_dag("t_infer_wrong", _infer(CASES, tolerance=0.01)))
    assert result.state == "failed" and result.task("infer").try_number == 1
    log = output(capfd)
    assert "2 of 3 inference check(s)" in log
    assert (
        'case 1: input {"df_in": [{"x": 1.0}]} answered {"df_out": [{"x": 1.0, "prediction": 2.9}]}; expected '
        '{"df_out": [{"prediction": 3.0}]}: output.df_out[0].prediction: expected 3.0 ± 0.01, got 2.9 (off by 0.1)'
    ) in log
    assert "case 3" not in log  # the callable's answer was right


def test_inference_callable_that_rejects_fails(modelops_sandbox, capfd):
    _tracking_prod(modelops_sandbox)

    def prediction_is_small(out: dict[str, Any]) -> bool:
        assert out["df_out"][0]["prediction"] < 4, f"prediction {out['df_out'][0]['prediction']} >= 4"
        return True

    result = run_dag(
        _dag("t_infer_callable", _infer([{"input": {"df_in": [{"x": 2.0}]}, "expected": prediction_is_small}]))
    )
    assert result.state == "failed"
    assert "expected prediction_is_small(output) is True: prediction_is_small: prediction 5.0 >= 4" in output(capfd)


def test_inference_rides_out_not_ready_and_timeouts(modelops_sandbox, capfd):
    new = "ri.models.main.model-version.34343434-3434-4434-8434-343434343434"
    # One step per GET (transformJson answers from the current step): serving the expected version,
    # ACTIVE but not ready (scaled to zero) for two looks, then ready; the first inference times out.
    steps = [{"model_version_rid": new, "state": "ACTIVE", "is_ready": ready} for ready in (False, False, True)]
    _tracking_prod(modelops_sandbox, steps=steps, inference_timeouts=1)
    result = run_dag(_dag("t_infer_not_ready", _infer(CASES[:1], expected_model_version=new)))
    assert result.state == "success", result.tasks
    sent = modelops_sandbox.control.requests(path_prefix=INFER_PATH)
    assert [r["status"] for r in sent] == [500, 400, 200]
    log = output(capfd)
    assert "InferenceTimeout" in log and "the live deployment is not ready" in log


def test_inference_gives_up_at_its_deadline(modelops_sandbox, capfd):
    _tracking_prod(modelops_sandbox, state="STARTING")
    result = run_dag(_dag("t_infer_deadline", _infer(CASES[:1], timeout=1.0)))
    assert result.state == "failed"
    assert "did not answer input" in output(capfd)
    # Every try was a not-ready answer, re-read against the deployment, until the deadline.
    assert len(modelops_sandbox.control.requests(path_prefix=INFER_PATH)) >= 2


def test_inference_refuses_a_deployment_serving_another_version(modelops_sandbox, capfd):
    _tracking_prod(modelops_sandbox)
    other = "ri.models.main.model-version.12121212-1212-4212-8212-121212121212"
    result = run_dag(_dag("t_infer_refuse", _infer(CASES[:1], expected_model_version=other)))
    assert result.state == "failed"
    assert f"serves {sf.PROD_VERSION}, not the expected {other} (before the first request)" in output(capfd)
    assert modelops_sandbox.control.requests(path_prefix=INFER_PATH) == []


def test_inference_invalid_input_fails_at_once(modelops_sandbox, capfd):
    _tracking_prod(modelops_sandbox)
    result = run_dag(_dag("t_infer_invalid", _infer([{"input": {"df_in": [{"x": "one"}]}, "expected": {}}])))
    assert result.state == "failed"
    assert len(modelops_sandbox.control.requests(path_prefix=INFER_PATH)) == 1
    assert "InferenceInvalidInput" in output(capfd)


# --- the hook calls underneath -------------------------------------------------------------------------
def test_hook_experiments_series_and_deployments(modelops_sandbox):
    hook = FoundryHook()
    _script(modelops_sandbox, accuracy=[0.5, 0.9, 0.8], loss=0.2)
    run = hook.launch_model_studio(STUDIO)
    modelops_sandbox.control.advance(0.4)
    output_ = hook.get_model_studio_run(STUDIO, run.run_id).resolved_outputs["model"]
    experiment = hook.get_experiment(output_.model_rid, output_.experiment_rid)
    assert (experiment.metric("accuracy", "MAX"), experiment.metric("accuracy", "LAST")) == (0.9, 0.8)
    where = {"type": "and", "filters": [{"type": "eq", "field": "JOB_RID", "value": run.job_rid}]}
    assert [e.rid for e in hook.search_experiments(output_.model_rid, where=where)] == [experiment.rid]
    points = hook.get_experiment_series_points(output_.model_rid, experiment.rid, "accuracy", offset=1)
    assert [p.value for p in points.series] == [0.9, 0.8]
    assert [d.rid for d in hook.list_live_deployments(sf.SUCCEEDING_MODEL, branch="prod")] == [sf.PROD_LIVE_DEPLOYMENT]
    with pytest.raises(errors.NotFoundError) as missing:
        hook.get_experiment_series_points(output_.model_rid, experiment.rid, "f1")
    assert missing.value.error_name == "ExperimentSeriesNotFound"


def test_hook_validates_before_any_request(modelops_sandbox):
    hook = FoundryHook()
    cases = [
        (lambda: hook.get_model_version("model-1", sf.PROD_VERSION), "model_rid must be a Foundry RID"),
        (
            lambda: list(hook.search_experiments(sf.SUCCEEDING_MODEL, where={"eq": {"field": "STATUS"}})),
            "where is not an experiment search filter",
        ),
        (lambda: list(hook.search_experiments(sf.SUCCEEDING_MODEL, page_size=500)), "page_size must be at most 100"),
        (lambda: hook.transform_json(LIVE, {"df_in": [{"x": float("nan")}]}), "input must be JSON"),
        (lambda: hook.promote_model_version(sf.SUCCEEDING_MODEL, sf.PROD_VERSION, ""), "branch must be a non-empty"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert modelops_sandbox.control.requests(path_prefix="/api/v2") == []


def test_transform_json_needs_the_execute_scope(modelops_sandbox, monkeypatch):
    import json

    host, port = modelops_sandbox.url.split("://")[1].split(":")
    conn = {"client_id": sf.CLIENT_ID, "client_secret": sf.CLIENT_SECRET, "scopes": "api:models-read", "scheme": "http"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_FOUNDRY_READONLY",
        json.dumps({"conn_type": "foundry", "host": host, "port": int(port), "extra": conn}),
    )
    with pytest.raises(errors.PermissionDeniedError) as denied:
        FoundryHook("foundry_readonly").transform_json(sf.DEFAULT_LIVE_DEPLOYMENT, {"df_in": []})
    assert denied.value.error_name == "TransformJsonLiveDeploymentPermissionDenied"
