"""PlutoHook: auth and endpoints of Pluto by Trainy (experiment tracking), over the shared HTTP core.

Pluto is three services behind one API key: the API service (runs, status, tags, config), the
ingest service (metrics as NDJSON) and the py service (heartbeats). The hook resolves one Airflow
connection into all three.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from modelops_provider.core.hook import ApiHook, service_options
from modelops_provider.core.secrets import mask
from modelops_provider.core.transport import Service, bearer
from modelops_provider.core.validation import clean_secret
from modelops_provider.pluto import (
    DEFAULT_API_URL,
    DEFAULT_APP_URL,
    DEFAULT_CONN_ID,
    DEFAULT_INGEST_URL,
    DEFAULT_PY_URL,
)
from modelops_provider.pluto.api import PlutoApi
from modelops_provider.pluto.errors import api_error_body, ingest_error_body
from modelops_provider.pluto.models import Heartbeat, PlutoRun, RunDetails, RunStatus, StatusHistory

if TYPE_CHECKING:
    from airflow.sdk import Connection

KEY_PREFIXES = ("mlps_", "mlpi_")


def _base_url(conn_id: str, field: str, value: Any, default: str) -> str:
    if value in (None, ""):
        return default
    url = str(value).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"connection {conn_id!r}: {field} must be an http(s) URL like {default!r}, got {value!r}")
    return url


class PlutoHook(ApiHook):
    """Talks to Pluto with the API key in the connection's password (``mlps_...`` or ``mlpi_...``).

    Connection extra: ``api_url`` (default ``https://pluto-api.trainy.ai``), ``ingest_url`` (default
    ``https://pluto-ingest.trainy.ai``), ``py_url`` (default ``https://pluto-py.trainy.ai``; heartbeats),
    ``app_url`` (default ``https://pluto.trainy.ai``; where run
    links point, see :meth:`run_url`),
    plus the shared ``connect_timeout``, ``read_timeout``, ``retry_*`` and ``verify_ssl``.
    """

    conn_name_attr = "pluto_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "pluto"
    hook_name = "Pluto (Trainy)"

    def __init__(self, pluto_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(pluto_conn_id, **kwargs)
        self._ingest_service: Service | None = None
        self._py_service: Service | None = None
        self._app_url: str | None = None
        self.api = PlutoApi(lambda: self.service, lambda: self.ingest_service, lambda: self.py_service)

    def build_service(self, conn: Connection) -> Service:
        """The API service; the ingest and py services and the app URL are resolved alongside it."""
        extra = dict(conn.extra_dejson or {})
        key = clean_secret(self.conn_id, "Pluto API key (password)", conn.password)
        if not key:
            raise ValueError(f"connection {self.conn_id!r} has no Pluto API key (set it as the password)")
        mask(key)
        if not key.startswith(KEY_PREFIXES) or len(key) <= len(KEY_PREFIXES[0]) or any(c.isspace() for c in key):
            # Never echo the key, not even a part of it.
            raise ValueError(
                f"connection {self.conn_id!r}: the Pluto API key (password) must start with 'mlps_' or "
                f"'mlpi_', be followed by the key itself and hold no spaces; the one set ({len(key)} characters) "
                "does not. "
                f"Create a key at {DEFAULT_APP_URL}/api-keys"
            )
        api_url = _base_url(self.conn_id, "api_url", extra.get("api_url"), DEFAULT_API_URL)
        ingest_url = _base_url(self.conn_id, "ingest_url", extra.get("ingest_url"), DEFAULT_INGEST_URL)
        py_url = _base_url(self.conn_id, "py_url", extra.get("py_url"), DEFAULT_PY_URL)
        self._app_url = _base_url(self.conn_id, "app_url", extra.get("app_url"), DEFAULT_APP_URL)
        common: dict[str, Any] = {"auth": bearer(key), **service_options(extra)}
        self._ingest_service = Service(
            name="Pluto ingest", base_url=ingest_url, parse_error=ingest_error_body, **common
        )
        # A heartbeat is worth little late: the next one follows within the interval anyway, so
        # one is retried at most once and within 10 s, not with the connection's whole budget.
        py_retry = dataclasses.replace(
            common["retry"], max_attempts=min(common["retry"].max_attempts, 2), max_elapsed=10.0
        )
        self._py_service = Service(name="Pluto py", base_url=py_url, **{**common, "retry": py_retry})
        # The py service is FastAPI: its {"detail": ...} is what the generic parser reads.
        return Service(name="Pluto", base_url=api_url, parse_error=api_error_body, **common)

    @property
    def ingest_service(self) -> Service:
        self.get_conn()
        assert self._ingest_service is not None
        return self._ingest_service

    @property
    def py_service(self) -> Service:
        self.get_conn()
        assert self._py_service is not None
        return self._py_service

    # --- endpoints (sync); async code runs the same calls with acall(hook.api....) ------------
    def create_run(self, project_name: str, run_name: str, **fields: Any) -> PlutoRun:
        """Create a run, or resume the one with the same ``external_id``.

        Fields: ``external_id``, ``tags``, ``config``, ``logger_settings``, ``system_metadata``
        (dicts or JSON strings), ``created_at``, ``updated_at`` (datetimes or epoch ms),
        ``fork_run_id``, ``fork_step``, ``inherit_config``, ``inherit_tags``.
        """
        return self.call(self.api.create_run(project_name, run_name, **fields))

    def resume_run(self, **which: Any) -> PlutoRun:
        """Reopen a run by exactly one of ``run_id``, ``display_id``, ``external_id`` (+ ``project_name``)."""
        return self.call(self.api.resume_run(**which))

    def update_status(self, run_id: int, status: RunStatus | str, **fields: Any) -> None:
        """Fields: ``status_metadata``, ``logger_settings`` (dicts or JSON strings), ``status_updated``."""
        self.call(self.api.update_status(run_id, status, **fields))

    def update_tags(self, run_id: int, tags: Sequence[str]) -> None:
        """Replace the run's whole tag set."""
        self.call(self.api.update_tags(run_id, tags))

    def update_config(self, run_id: int, config: Mapping[str, Any] | str) -> None:
        """Deep-merge ``config`` into the run's config."""
        self.call(self.api.update_config(run_id, config))

    def log_metrics(
        self,
        run_id: int,
        project_name: str,
        metrics: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        **fields: Any,
    ) -> int:
        """Send metrics (NDJSON) to the ingest service. Fields: ``step``, ``timestamp``, ``run_name``."""
        return self.call(self.api.log_metrics(run_id, project_name, metrics, **fields))

    def run_details(self, run_id: int) -> RunDetails:
        return self.call(self.api.run_details(run_id))

    def status_history(self, run_id: int) -> StatusHistory:
        return self.call(self.api.status_history(run_id))

    def heartbeat(self, run_id: int) -> Heartbeat:
        """Ping the py service for the run; returns its status as the server sees it."""
        return self.call(self.api.heartbeat(run_id))

    def test_connection(self) -> tuple[bool, str]:
        from modelops_provider.core.errors import ApiError

        try:
            answer = self.call(self.api.validate_auth())
        except (ApiError, ValueError) as exc:
            return False, str(exc)
        if not answer.valid:
            return False, "Pluto answered that the API key is not valid."
        return True, f"Authenticated to organization {answer.organization.get('slug') or '?'}."

    # --- links ----------------------------------------------------------------------------
    def run_url(self, run: PlutoRun) -> str:
        """The run's page in the app: ``<app_url>/o/<org>/projects/<project>/<run>``.

        The path is the one of the ``url`` Pluto returned; the connection's ``app_url`` (default
        ``https://pluto.trainy.ai``) supplies scheme, host and path prefix, so a self-hosted server
        that reports an internal address still yields a link users can open.
        """
        self.get_conn()
        base = self._app_url or DEFAULT_APP_URL
        if not run.url:
            org, project = quote(run.organization_slug, safe=""), quote(run.project_name, safe="")
            return f"{base}/o/{org}/projects/{project}"
        parts = urlsplit(run.url)
        return base + parts.path + (f"?{parts.query}" if parts.query else "")
