"""The Airflow plugin (``airflow.plugins`` entry point): the "Model runs" page in the Browse menu and
the "Remote run" tab of every task instance.

Every Airflow component loads plugins, so this module imports nothing but the plugin base class: the
FastAPI app (and with it the ORM queries) is built only when the API server asks for it.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import AirflowPlugin

URL_PREFIX = "/modelops"


class ModelOpsPlugin(AirflowPlugin):  # type: ignore[misc]
    name = "modelops"
    external_views = [
        {
            "name": "Model runs",
            "href": f"{URL_PREFIX}/runs",
            "url_route": "model-runs",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Remote run",
            # The UI fills in (and URL-encodes) the task instance's ids.
            "href": f"{URL_PREFIX}/task?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}"
            "&map_index={MAP_INDEX}",
            "url_route": "remote-run",
            "destination": "task_instance",
        },
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from modelops_provider.ui.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "ModelOps model runs"}]
