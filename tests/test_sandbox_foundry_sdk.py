"""The sandbox's Foundry answers satisfy Palantir's own client (foundry-platform-sdk)."""

from __future__ import annotations

import foundry_sdk  # a test dependency (the "test" extra)
import pytest

from modelops_provider.sandbox import foundry as sf

STUDIO = "ri.models.main.model-studio.77777777-7777-4777-8777-777777777777"


@pytest.fixture
def client(modelops_sandbox):
    host = modelops_sandbox.url.split("://", 1)[1]
    return foundry_sdk.FoundryClient(
        auth=foundry_sdk.UserTokenAuth(sf.STATIC_TOKEN), hostname=host, config=foundry_sdk.Config(scheme="http")
    )


def test_models_and_builds_parse_with_the_sdk(client, modelops_sandbox):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.3)
    run = client.models.ModelStudio.launch(STUDIO, preview=True)
    # resolvedOutputs filled from the launch on, as the docs show it on a RUNNING run
    assert run.build_status == "RUNNING" and run.resolved_outputs["model"].model_rid.startswith("ri.models.")
    for _ in range(3):
        client.models.ModelStudio.launch(STUDIO, preview=True)
    listed = list(client.models.ModelStudio.Run.list(STUDIO, page_size=2, preview=True))
    assert len(listed) == 4
    build = client.orchestration.Build.get(run.build_rid)
    assert build.status in ("RUNNING", "SUCCEEDED")
    modelops_sandbox.control.advance(0.3)  # the run's 0.3 s pass in the sandbox, not in the test
    done = next(r for r in client.models.ModelStudio.Run.list(STUDIO, preview=True) if r.run_id == run.run_id)
    assert done.build_status == "SUCCEEDED"
    assert done.resolved_outputs["model"].model_version_rid.startswith("ri.models.main.model-version.")
    assert client.orchestration.Build.cancel(run.build_rid) is None
    live = client.models.LiveDeployment.get(sf.DEFAULT_LIVE_DEPLOYMENT, preview=True)
    assert live.status.state == "ACTIVE" and live.runtime_configuration.sources == []


def test_sdk_sees_typed_errors(client):
    from foundry_sdk.v2.models.errors import ModelStudioNotFound

    with pytest.raises(ModelStudioNotFound):
        client.models.ModelStudio.launch(
            "ri.models.main.model-studio.88888888-8888-4888-8888-888888888888", preview=True
        )


def test_sdk_confidential_client_auth(modelops_sandbox):
    host = modelops_sandbox.url.split("://", 1)[1]
    client = foundry_sdk.FoundryClient(
        auth=foundry_sdk.ConfidentialClientAuth(sf.CLIENT_ID, sf.CLIENT_SECRET, scopes=["api:models-read"]),
        hostname=host,
        config=foundry_sdk.Config(scheme="http"),
    )
    assert client.models.LiveDeployment.get(sf.DEFAULT_LIVE_DEPLOYMENT, preview=True).rid == sf.DEFAULT_LIVE_DEPLOYMENT


# --- section E: versions, experiments, promotion, live-deployment list, inference -----------------
def _trained(client, modelops_sandbox, **studio):
    modelops_sandbox.control.foundry_studio(STUDIO, duration_s=0.2, **studio)
    run = client.models.ModelStudio.launch(STUDIO, preview=True)
    modelops_sandbox.control.advance(0.2)
    return next(r for r in client.models.ModelStudio.Run.list(STUDIO, preview=True) if r.run_id == run.run_id)


def test_versions_and_experiments_parse_with_the_sdk(client, modelops_sandbox):
    from foundry_sdk.v2.models import models as m

    run = _trained(client, modelops_sandbox, metrics={"accuracy": 0.93, "loss": 0.21})
    output = run.resolved_outputs["model"]
    version = client.models.Model.Version.get(output.model_rid, output.model_version_rid, preview=True)
    assert version.linked_experiment == output.experiment_rid
    assert version.source.type == "modelStudio" and version.model_api.inputs[0].name == "df_in"
    listed = list(client.models.Model.Version.list(output.model_rid, branch="master", page_size=1, preview=True))
    assert output.model_version_rid in [v.rid for v in listed] and len(listed) == 2  # first version + this run's
    experiment = client.models.Model.Experiment.get(output.model_rid, output.experiment_rid, preview=True)
    assert experiment.status == "SUCCEEDED" and experiment.job_rid == run.job_rid
    assert experiment.linked_model_version == output.model_version_rid
    accuracy = next(s for s in experiment.series if s.name == "accuracy")
    assert accuracy.value.last == 0.93 and accuracy.value.min == 0.465 and accuracy.length == 5
    assert {(s.series_name, s.aggregation) for s in experiment.summary_metrics} >= {("loss", "LAST"), ("loss", "MIN")}
    where = m.SearchExperimentsAndFilter(
        type="and",
        filters=[
            m.SearchExperimentsEqualsFilter(type="eq", field="JOB_RID", value=run.job_rid),
            m.SearchExperimentsSummaryMetricFilter(
                type="summaryMetricFilter", series_name="loss", aggregation="LAST", operator="LT", value=0.3
            ),
        ],
    )
    found = client.models.Model.Experiment.search(output.model_rid, where=where, page_size=10, preview=True)
    assert [e.rid for e in found.data] == [output.experiment_rid]
    points = client.models.Model.Experiment.Series.json(
        output.model_rid, output.experiment_rid, "accuracy", page_size=3, preview=True
    )
    assert [p.step for p in points.series] == [0, 1, 2]


def test_promotion_deployments_and_inference_parse_with_the_sdk(client, modelops_sandbox):
    promoted = client.models.Model.promote_version(
        sf.SUCCEEDING_MODEL, source_model_version_rid=sf.PROD_VERSION, branch="prod", preview=True
    )
    assert promoted.rid != sf.PROD_VERSION and promoted.source.type == "promoted"
    assert promoted.source.previous_model_version_rid == sf.PROD_VERSION
    deployments = client.models.LiveDeployment.list(model_rid=sf.SUCCEEDING_MODEL, branch="prod", preview=True)
    assert [d.rid for d in deployments.data] == [sf.PROD_LIVE_DEPLOYMENT]
    modelops_sandbox.control.post(
        "/_sandbox/foundry/live-deployments", {"rid": sf.PROD_LIVE_DEPLOYMENT, "state": "ACTIVE"}
    )
    answer = client.models.LiveDeployment.transform_json(
        sf.PROD_LIVE_DEPLOYMENT, input={"df_in": [{"x": 1.5}]}, preview=True
    )
    assert answer.output == {"df_out": [{"x": 1.5, "prediction": 4.0}]}


def test_sdk_sees_the_section_e_typed_errors(client, modelops_sandbox):
    from foundry_sdk.v2.models import errors as e

    missing = "ri.models.main.model-version.99999999-9999-4999-8999-999999999999"
    with pytest.raises(e.ModelVersionNotFound):
        client.models.Model.Version.get(sf.SUCCEEDING_MODEL, missing, preview=True)
    with pytest.raises(e.ModelVersionNotFound):
        client.models.Model.promote_version(sf.SUCCEEDING_MODEL, source_model_version_rid=missing, preview=True)
    with pytest.raises(e.ModelNotFound):
        client.models.LiveDeployment.list(
            model_rid="ri.models.main.model.99999999-9999-4999-8999-999999999999", preview=True
        )
    with pytest.raises(e.ExperimentNotFound):
        client.models.Model.Experiment.get(
            sf.SUCCEEDING_MODEL, "ri.models.main.experiment.99999999-9999-4999-8999-999999999999", preview=True
        )
    with pytest.raises(e.InferenceInvalidInput) as invalid:
        client.models.LiveDeployment.transform_json(sf.DEFAULT_LIVE_DEPLOYMENT, input={"foo": []}, preview=True)
    error_type = invalid.value.parameters["errorType"]
    assert error_type.type == "unknownInputName" and error_type.input_name == "foo"
    modelops_sandbox.control.post(
        "/_sandbox/foundry/live-deployments", {"rid": sf.PROD_LIVE_DEPLOYMENT, "state": "STARTING"}
    )
    with pytest.raises(e.InferenceFailure) as failure:
        client.models.LiveDeployment.transform_json(sf.PROD_LIVE_DEPLOYMENT, input={"df_in": []}, preview=True)
    assert "not ready" in failure.value.parameters["errorMessage"]
    modelops_sandbox.control.post(
        "/_sandbox/foundry/live-deployments",
        {"rid": sf.PROD_LIVE_DEPLOYMENT, "state": "ACTIVE", "inference_timeouts": 1},
    )
    with pytest.raises(e.InferenceTimeout):
        client.models.LiveDeployment.transform_json(sf.PROD_LIVE_DEPLOYMENT, input={"df_in": []}, preview=True)


def test_sdk_transform_json_needs_the_execute_scope(modelops_sandbox):
    from foundry_sdk.v2.models import errors as e

    host = modelops_sandbox.url.split("://", 1)[1]
    client = foundry_sdk.FoundryClient(
        auth=foundry_sdk.ConfidentialClientAuth(sf.CLIENT_ID, sf.CLIENT_SECRET, scopes=["api:models-read"]),
        hostname=host,
        config=foundry_sdk.Config(scheme="http"),
    )
    with pytest.raises(e.TransformJsonLiveDeploymentPermissionDenied):
        client.models.LiveDeployment.transform_json(sf.DEFAULT_LIVE_DEPLOYMENT, input={"df_in": []}, preview=True)
