"""The plugin's FastAPI app, served by the API server under ``/modelops``.

Airflow serves a plugin app without authentication unless the app asks for it: every route here
requires an authenticated Airflow user and reads only the DAGs that user may read (the auth
manager's readable-DAGs filter, as the core API's XCom endpoints use it).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import (
    ReadableXComFilterDep,
    auth_manager_from_app,
    requires_authenticated,
)
from airflow.providers.common.compat.sdk import conf
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

from modelops_provider.core.records import OUTCOMES
from modelops_provider.ui import pages
from modelops_provider.ui.plugin import URL_PREFIX
from modelops_provider.ui.query import list_runs, task_record

PER_PAGE = pages.DEFAULT_PER_PAGE


def _links() -> pages.Links:
    base_path = urlsplit(conf.get("api", "base_url", fallback="") or "").path
    return pages.Links(base_path, URL_PREFIX)


def create_app() -> FastAPI:
    app = FastAPI(
        title="ModelOps model runs",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    # The core API keeps its auth manager on its own app's state; a mounted plugin app has its own
    # state, so hand the readable-DAGs filter the same (singleton) auth manager.
    app.dependency_overrides[auth_manager_from_app] = get_auth_manager

    @app.get("/runs", response_class=HTMLResponse)
    def runs(
        session: SessionDep,
        readable: ReadableXComFilterDep,
        dag_id: Annotated[str | None, Query()] = None,
        service: Annotated[str | None, Query()] = None,
        status: Annotated[str | None, Query()] = None,
        page: Annotated[int, Query(ge=1)] = 1,
        per_page: Annotated[int, Query(ge=1, le=500)] = PER_PAGE,
    ) -> str:
        if status and status not in OUTCOMES:
            raise HTTPException(400, f"status must be one of {', '.join(OUTCOMES)}; got {status!r}")
        if service and service not in pages.SERVICES:
            raise HTTPException(400, f"service must be one of {', '.join(pages.SERVICES)}; got {service!r}")
        result = list_runs(
            session,
            readable,
            dag_id=dag_id or None,
            service=service or None,
            outcome=status or None,
            page=page,
            per_page=per_page,
        )
        return pages.runs_page(result, _links(), dag_id=dag_id, service=service, outcome=status)

    @app.get("/task", response_class=HTMLResponse)
    def task(
        session: SessionDep,
        readable: ReadableXComFilterDep,
        dag_id: Annotated[str, Query()],
        run_id: Annotated[str, Query()],
        task_id: Annotated[str, Query()],
        map_index: Annotated[str, Query()] = "-1",
    ) -> str:
        if dag_id not in (readable.value or set()):
            raise HTTPException(403, "You may not read this DAG")
        try:
            index = int(map_index)
        except ValueError:
            index = -1  # the UI passes no map index for an unmapped task
        row, detail, result = task_record(session, dag_id, run_id, task_id, index)
        if row is None:
            return pages.no_record_page(dag_id, task_id)
        return pages.task_page(row, detail, result, _links())

    return app
