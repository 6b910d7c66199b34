"""The sandbox's Foundry answers satisfy Palantir's own client (foundry-platform-sdk)."""

from __future__ import annotations

import time

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
    assert run.build_status == "RUNNING" and run.resolved_outputs == {}
    for _ in range(3):
        client.models.ModelStudio.launch(STUDIO, preview=True)
    listed = list(client.models.ModelStudio.Run.list(STUDIO, page_size=2, preview=True))
    assert len(listed) == 4
    build = client.orchestration.Build.get(run.build_rid)
    assert build.status in ("RUNNING", "SUCCEEDED")
    time.sleep(0.4)
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
