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
from modelops_provider.foundry.models import Build, LiveDeployment, ModelStudioRun

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

    def live_deployment_url(self, live_deployment_rid: str) -> str:
        """``https://<host>/workspace/model-live-deployments/<liveDeploymentRid>``"""
        return f"{self.service.base_url}/workspace/model-live-deployments/{quote(live_deployment_rid, safe='')}"
