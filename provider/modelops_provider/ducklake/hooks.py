"""DuckLakeHook: auth and endpoints of the DuckLake data platform's Model Runs API."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import string
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from modelops_provider.core.hook import ApiHook, service_options, split_host
from modelops_provider.core.secrets import mask
from modelops_provider.core.transport import HeaderAuth, Service, bearer
from modelops_provider.core.validation import clean_secret
from modelops_provider.ducklake.api import CANCEL_ROUTES, DuckLakeApi, DuckLakeSettings
from modelops_provider.ducklake.errors import ducklake_error_body
from modelops_provider.ducklake.models import ModelRun, ModelRunStep, ModelTestResult
from modelops_provider.ducklake.report import RunReport

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

AUTH_TYPES = ("bearer", "api_key")
DEFAULT_PATH_PREFIX = "/v1"
UI_TEMPLATE_FIELDS = ("base_url", "run_id", "project_name")
ASSET_SCHEME = "ducklake"


def path_prefix(value: Any) -> str:
    """``/v1`` by default; '' or '/' for none. Always one leading slash and no trailing one."""
    if value is None:
        return DEFAULT_PATH_PREFIX
    if not isinstance(value, str) or any(c.isspace() for c in value) or "?" in value or "#" in value:
        raise ValueError(f"connection extra 'path_prefix' must be a URL path like '/v1', got {value!r}")
    value = value.strip("/")
    return f"/{value}" if value else ""


def ui_url_template(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"connection extra 'ui_url_template' must be a string, got {value!r}")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError:
        names = {"<malformed>"}
    unknown = names - set(UI_TEMPLATE_FIELDS)
    if unknown or "run_id" not in names:
        raise ValueError(
            "connection extra 'ui_url_template' must contain {run_id} and may use "
            f"{', '.join('{' + n + '}' for n in UI_TEMPLATE_FIELDS)}; got {value!r}"
        )
    return value


def cancel_route(value: Any) -> str | None:
    """The connection extra ``cancel_route``: None (not set, or ``detect``, the connection form's
    default) lets the hook find the route itself."""
    if value in (None, "", "detect"):
        return None
    if value not in CANCEL_ROUTES:
        raise ValueError(
            f"connection extra 'cancel_route' must be one of {', '.join(map(repr, CANCEL_ROUTES))}, got {value!r}"
        )
    return str(value)


def token_principals(token: str) -> frozenset[str]:
    """The names the platform may know the holder of a JWT by, lower-cased: the platform takes its
    principal's name from one claim (by default ``email``, then ``preferred_username``, then ``sub``;
    the claim is configurable), so every string claim is a candidate. Empty for a token that is not a
    JWT. The signature is not checked: this only decides whose runs are *not* ours."""
    parts = token.split(".")
    if len(parts) != 3:
        return frozenset()
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return frozenset()
    if not isinstance(claims, dict):
        return frozenset()
    return frozenset(v.strip().lower() for v in claims.values() if isinstance(v, str) and v.strip())


class DuckLakeHook(ApiHook):
    """Talks to a DuckLake data platform (``/v1`` API) with a JWT bearer token or an API key.

    Connection: ``host`` (and ``port``); the password holds the secret. Extra: ``scheme``
    (``https`` unless ``http``), ``path_prefix`` (default ``/v1``), ``auth_type`` (``bearer``, the
    default, sends ``Authorization: Bearer <password>``; ``api_key`` sends ``X-API-Key: <password>``),
    ``ui_url_template`` (for the extra link, e.g. ``https://ducklake.example.com/runs/{run_id}``),
    ``cancel_route`` (``cancel`` or ``cancellations`` pins the cancel route; unset, the hook tries
    ``/cancel`` and falls back to ``/cancellations``), plus the shared ``connect_timeout``,
    ``read_timeout``, ``retry_max_attempts``.
    """

    conn_name_attr = "ducklake_conn_id"
    default_conn_name = "ducklake_default"
    conn_type = "ducklake"
    hook_name = "DuckLake data platform"

    def __init__(self, ducklake_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(ducklake_conn_id, **kwargs)
        self.api = DuckLakeApi(lambda: self.service, self.conn_id, lambda: self.settings)
        self._settings: DuckLakeSettings | None = None

    def build_service(self, conn: Connection) -> Service:
        extra = dict(conn.extra_dejson or {})
        origin = split_host(conn.host, conn.port, extra.get("scheme") or None)
        auth_type = str(extra.get("auth_type") or "bearer").strip().lower()
        if auth_type not in AUTH_TYPES:
            raise ValueError(
                f"connection {self.conn_id!r}: extra 'auth_type' must be one of "
                f"{', '.join(AUTH_TYPES)}, got {auth_type!r}"
            )
        password = clean_secret(self.conn_id, "token or API key (password)", conn.password)
        if not password:
            raise ValueError(f"connection {self.conn_id!r} has no token or API key (password)")
        mask(password)
        auth = bearer(password) if auth_type == "bearer" else HeaderAuth("X-API-Key", password)
        self._settings = DuckLakeSettings(
            host=urlsplit(origin).hostname or "",
            ui_url_template=ui_url_template(extra.get("ui_url_template")),
            cancel_route=cancel_route(extra.get("cancel_route")),
            principals=token_principals(password) if auth_type == "bearer" else frozenset(),
        )
        return Service(
            name="DuckLake",
            base_url=origin + path_prefix(extra.get("path_prefix")),
            auth=auth,
            parse_error=ducklake_error_body,
            **service_options(extra),
        )

    @property
    def settings(self) -> DuckLakeSettings:
        self.get_conn()
        assert self._settings is not None
        return self._settings

    # --- endpoints (sync); the trigger runs the same calls with acall() ----------------------
    def list_model_runs(self, *, status: str | None = None, max_results: int | None = None) -> Iterator[ModelRun]:
        """All runs (optionally of one status), lazily: the next page is fetched only when needed.
        ``max_results`` is the page size (1-1000)."""
        return self.iterate(self.api.pages(status=status, max_results=max_results))

    def trigger_model_run(
        self,
        project_name: str,
        model_names: Sequence[str] | None = None,
        full_refresh: bool | None = None,
        **fields: Any,
    ) -> ModelRun:
        """Fields: ``target_catalog``, ``target_schema``, ``environment_name`` (sent only when set)."""
        return self.call(self.api.trigger_model_run(project_name, model_names, full_refresh, **fields))

    def get_model_run(self, run_id: str) -> ModelRun:
        return self.call(self.api.get_model_run(run_id))

    def cancel_model_run(self, run_id: str) -> ModelRun | None:
        """Cancel a PENDING or RUNNING run (400 on a finished one); falls back to ``/cancellations``."""
        return self.call(self.api.cancel_model_run(run_id))

    def list_model_run_steps(self, run_id: str) -> list[ModelRunStep]:
        """Every step of a run (one per model)."""
        return list(self.iterate(self.api.step_pages(run_id)))

    def list_model_test_results(self, run_id: str, step_id: str) -> list[ModelTestResult]:
        return self.call(self.api.list_model_test_results(run_id, step_id))

    def run_report(self, run_id: str, run: ModelRun | None = None) -> RunReport:
        """A run's steps, and the test results of every step that ran (``run``: the run, if read already)."""
        return self.call(self.api.run_report(run_id, run))

    def test_connection(self) -> tuple[bool, str]:
        """Lists one run: an authenticated read, so a wrong token or key is reported as such."""
        from modelops_provider.core.errors import ApiError

        try:
            runs, _ = self.call(self.api.list_model_runs_page(max_results=1))
        except (ApiError, ValueError) as exc:
            return False, str(exc)
        return True, f"Connected to {self.service.base_url} ({'runs visible' if runs else 'no runs yet'})."

    # --- links and assets -------------------------------------------------------------------
    def run_url(self, run_id: str, project_name: str | None = None) -> str:
        """The connection's ``ui_url_template`` filled in; without one, the run's API URL
        (``<base URL>/model-runs/<run_id>``)."""
        base = self.service.base_url
        template = self.settings.ui_url_template
        if template is None:
            return f"{base}/model-runs/{quote(run_id, safe='')}"
        return template.format(
            base_url=base, run_id=quote(run_id, safe=""), project_name=quote(project_name or "", safe="")
        )

    def asset_uri(self, project_name: str, model_name: str) -> str:
        """``ducklake://<host>/<project>/<model>`` (the host without port, so that the URI is stable)."""
        return f"{ASSET_SCHEME}://{self.settings.host}/{quote(project_name, safe='')}/{quote(model_name, safe='')}"
