"""DuckLake's part of the provider metadata (see ``modelops_provider.get_provider_info``)."""

from __future__ import annotations

from typing import Any

from modelops_provider import SCHEME_FIELD, TIMEOUT_FIELDS, integration_info

NAME = "DuckLake data platform"

INFO: dict[str, Any] = {
    **integration_info(NAME, "ducklake", "https://github.com/Yacobolo/ducklake-dataplatform"),
    "extra-links": ["modelops_provider.ducklake.links.DuckLakeModelRunLink"],
    "connection-types": [
        {
            "connection-type": "ducklake",
            "hook-class-name": "modelops_provider.ducklake.hooks.DuckLakeHook",
            "hook-name": NAME,
            "conn-fields": {
                "scheme": SCHEME_FIELD,
                "path_prefix": {
                    "label": "API path prefix",
                    "schema": {"type": ["string", "null"], "examples": ["/v1"]},
                    "description": "Prefix of the API paths (default /v1).",
                },
                "auth_type": {
                    "label": "Auth kind",
                    "schema": {
                        "type": "string",
                        "enum": ["bearer", "api_key"],
                        "default": "bearer",
                        "values_display": {"bearer": "bearer (JWT)", "api_key": "api_key (X-API-Key)"},
                    },
                    "description": "bearer (default): the password is a JWT sent as 'Authorization: Bearer'; "
                    "api_key: the password is an API key sent as 'X-API-Key'.",
                },
                "ui_url_template": {
                    "label": "UI URL template",
                    "schema": {
                        "type": ["string", "null"],
                        "examples": ["https://ducklake.example.com/model-runs/{run_id}"],
                    },
                    "description": "Link to a run, e.g. https://ducklake.example.com/model-runs/{run_id} "
                    "(may also use {project_name} and {base_url}). Default: the run's API URL.",
                },
                "cancel_route": {
                    "label": "Cancel route",
                    "schema": {
                        "type": "string",
                        "enum": ["detect", "cancel", "cancellations"],
                        "default": "detect",
                        "values_display": {
                            "detect": "detect (try /cancel, then /cancellations)",
                            "cancel": "cancel (2026-03-01 API)",
                            "cancellations": "cancellations (newer servers)",
                        },
                    },
                    "description": "cancel: POST /model-runs/{id}/cancel (the 2026-03-01 API); cancellations: "
                    "POST /model-runs/{id}/cancellations (newer servers). detect: try /cancel, fall back to "
                    "/cancellations on 404/405 and remember the answer for the rest of the task try.",
                },
                **TIMEOUT_FIELDS,
            },
            "ui-field-behaviour": {
                "hidden-fields": ["schema", "login", "description"],
                "relabeling": {"host": "DuckLake API host", "password": "JWT or API key"},
                "placeholders": {
                    "host": "ducklake.example.com",
                    "port": "443",
                    "password": "a JWT bearer token, or an API key (set Auth kind to api_key)",
                },
            },
        }
    ],
}
