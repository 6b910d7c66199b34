"""FoundryHook: auth and endpoints of Palantir Foundry (Models v2 preview, Orchestration)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from modelops_provider.core.hook import ApiHook, service_options, split_host
from modelops_provider.core.secrets import mask
from modelops_provider.core.transport import Auth, OAuth2ClientCredentials, Service, bearer
from modelops_provider.core.validation import clean_secret
from modelops_provider.foundry.api import FoundryApi
from modelops_provider.foundry.errors import foundry_error_body
from modelops_provider.foundry.models import (
    Build,
    Experiment,
    ExperimentSeriesPoints,
    LiveDeployment,
    ModelStudioRun,
    ModelVersion,
)
from modelops_provider.foundry.registry_api import ModelRegistryApi

if TYPE_CHECKING:
    from airflow.sdk import Connection

TOKEN_PATH = "/multipass/api/oauth2/token"


class FoundryHook(ApiHook):
    """Talks to Foundry with a bearer token (the connection's password) or OAuth2 client credentials
    (``client_id``, ``client_secret``, ``scopes`` in the extra). ``host`` is the Foundry hostname;
    https unless the extra says ``"scheme": "http"``."""

    conn_name_attr = "foundry_conn_id"
    default_conn_name = "foundry_default"
    conn_type = "foundry"
    hook_name = "Palantir Foundry"

    def __init__(self, foundry_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(foundry_conn_id, **kwargs)
        self.api = FoundryApi(lambda: self.service)

    def build_service(self, conn: Connection) -> Service:
        extra = dict(conn.extra_dejson or {})
        base_url = split_host(conn.host, conn.port, extra.get("scheme") or None)
        auth: Auth
        client_id = clean_secret(self.conn_id, "extra client_id", extra.get("client_id"))
        password = clean_secret(self.conn_id, "token (password)", conn.password)
        if client_id:
            secret = clean_secret(self.conn_id, "extra client_secret", extra.get("client_secret"))
            if not secret:
                raise ValueError(f"connection {self.conn_id!r}: client_id is set but client_secret is empty")
            mask(secret)
            scopes = extra.get("scopes") or ()
            if isinstance(scopes, str):
                scopes = scopes.replace(",", " ").split()
            auth = OAuth2ClientCredentials(TOKEN_PATH, str(client_id), str(secret), tuple(scopes))
        elif password:
            mask(password)
            auth = bearer(password)
        else:
            raise ValueError(f"connection {self.conn_id!r} has no token (password) and no client_id/client_secret")
        return Service(
            name="Foundry",
            base_url=base_url,
            auth=auth,
            parse_error=foundry_error_body,
            **service_options(extra),
        )

    # --- endpoints (sync); the trigger runs the same calls with acall() ----------------------
    def launch_model_studio(self, model_studio_rid: str) -> ModelStudioRun:
        return self.call(self.api.launch_model_studio(model_studio_rid))

    def list_model_studio_runs(
        self, model_studio_rid: str, *, config_version: int | None = None, page_size: int | None = None
    ) -> Iterator[ModelStudioRun]:
        """All runs, lazily: the next page is fetched only when the caller gets that far."""
        return self.iterate(self.api.pages(model_studio_rid, config_version=config_version, page_size=page_size))

    def get_model_studio_run(
        self, model_studio_rid: str, run_id: str, config_version: int | None = None
    ) -> ModelStudioRun:
        return self.call(self.api.get_model_studio_run(model_studio_rid, run_id, config_version))

    def get_build(self, build_rid: str) -> Build:
        return self.call(self.api.get_build(build_rid))

    def cancel_build(self, build_rid: str) -> None:
        self.call(self.api.cancel_build(build_rid))

    def get_live_deployment(self, live_deployment_rid: str) -> LiveDeployment:
        return self.call(self.api.get_live_deployment(live_deployment_rid))

    # --- model versions, experiments, promotion, inference (section E) --------------------------
    @property
    def registry(self) -> ModelRegistryApi:
        """Call builders for the verification endpoints (sync here, ``acall`` in async code)."""
        if getattr(self, "_registry", None) is None:
            self._registry = ModelRegistryApi(lambda: self.service)
        return self._registry

    def get_model_version(self, model_rid: str, model_version_rid: str) -> ModelVersion:
        return self.call(self.registry.get_model_version(model_rid, model_version_rid))

    def list_model_versions(
        self, model_rid: str, *, branch: str | None = None, page_size: int | None = None
    ) -> Iterator[ModelVersion]:
        """All versions (of ``branch``), lazily page by page."""
        return self.iterate(self.registry.version_pages(model_rid, branch=branch, page_size=page_size))

    def promote_model_version(
        self, model_rid: str, source_model_version_rid: str, branch: str | None = None
    ) -> ModelVersion:
        """Promote once: returns the existing promoted copy if the branch's newest version is one."""
        return self.call(self.registry.promote_version(model_rid, source_model_version_rid, branch))

    def get_experiment(self, model_rid: str, experiment_rid: str) -> Experiment:
        return self.call(self.registry.get_experiment(model_rid, experiment_rid))

    def search_experiments(
        self,
        model_rid: str,
        *,
        where: dict[str, Any] | None = None,
        order_by: dict[str, Any] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Experiment]:
        """Experiments matching ``where`` (the SDK's flat filter form), lazily page by page."""
        return self.iterate(
            self.registry.experiment_pages(model_rid, where=where, order_by=order_by, page_size=page_size)
        )

    def get_experiment_series_points(
        self,
        model_rid: str,
        experiment_rid: str,
        series_name: str,
        *,
        offset: int | None = None,
        page_size: int | None = None,
    ) -> ExperimentSeriesPoints:
        return self.call(
            self.registry.get_series_points(model_rid, experiment_rid, series_name, offset=offset, page_size=page_size)
        )

    def list_live_deployments(self, model_rid: str, *, branch: str | None = None) -> list[LiveDeployment]:
        return self.call(self.registry.list_live_deployments(model_rid, branch=branch))

    def transform_json(self, live_deployment_rid: str, input: dict[str, Any]) -> dict[str, Any]:
        """Inference on a live deployment (scope ``api:models-execute``); returns the ``output`` object."""
        return self.call(self.registry.transform_json(live_deployment_rid, input))

    def test_connection(self) -> tuple[bool, str]:
        """Calls an authenticated endpoint, so a wrong token is reported as such."""
        from modelops_provider.core.errors import ApiError, PermissionDeniedError

        try:
            user = self.call(self.api.get_current_user())
        except PermissionDeniedError:
            return True, "Authenticated (the credentials lack the scope to read the current user)."
        except (ApiError, ValueError) as exc:
            return False, str(exc)
        return True, f"Authenticated as {user.username or user.id}."

    # --- links ----------------------------------------------------------------------------
    def run_url(self, model_studio_rid: str, run_id: str) -> str:
        """``https://<host>/workspace/model-studio/<modelStudioRid>/runs/<runId>``"""
        studio, run = quote(model_studio_rid, safe=""), quote(run_id, safe="")
        return f"{self.service.base_url}/workspace/model-studio/{studio}/runs/{run}"

    def model_url(self, model_rid: str) -> str:
        """``https://<host>/workspace/models/<modelRid>``: the model, its versions by branch."""
        return f"{self.service.base_url}/workspace/models/{quote(model_rid, safe='')}"

    def live_deployment_url(self, live_deployment_rid: str) -> str:
        """``https://<host>/workspace/model-live-deployments/<liveDeploymentRid>``"""
        return f"{self.service.base_url}/workspace/model-live-deployments/{quote(live_deployment_rid, safe='')}"
