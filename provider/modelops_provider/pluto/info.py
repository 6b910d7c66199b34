"""Pluto's part of the provider metadata (see ``modelops_provider.get_provider_info``)."""

from __future__ import annotations

from typing import Any

from modelops_provider import TIMEOUT_FIELDS, integration_info
from modelops_provider.pluto import DEFAULT_API_URL, DEFAULT_APP_URL, DEFAULT_INGEST_URL, DEFAULT_PY_URL

NAME = "Pluto (Trainy)"


def _url_field(label: str, default: str, description: str) -> dict[str, Any]:
    return {
        "label": label,
        "schema": {"type": ["string", "null"], "format": "uri", "default": default, "examples": [default]},
        "description": f"{description} Default {default}.",
    }


INFO: dict[str, Any] = {
    **integration_info(NAME, "pluto", "https://docs.trainy.ai/", kinds=("operators", "hooks")),
    "extra-links": ["modelops_provider.pluto.links.PlutoRunLink"],
    "connection-types": [
        {
            "connection-type": "pluto",
            "hook-class-name": "modelops_provider.pluto.hooks.PlutoHook",
            "hook-name": NAME,
            "conn-fields": {
                "api_url": _url_field("API URL", DEFAULT_API_URL, "Pluto's API service."),
                "ingest_url": _url_field("Ingest URL", DEFAULT_INGEST_URL, "Pluto's ingest service (metrics)."),
                "py_url": _url_field(
                    "Py service URL", DEFAULT_PY_URL, "Pluto's py service, where keep-alive heartbeats go."
                ),
                "app_url": _url_field(
                    "App URL",
                    DEFAULT_APP_URL,
                    "Pluto's web app, where the 'Pluto run' link points (set it for a self-hosted server).",
                ),
                **TIMEOUT_FIELDS,
            },
            "ui-field-behaviour": {
                "hidden-fields": ["host", "port", "schema", "login", "description"],
                "relabeling": {"password": "API key"},
                "placeholders": {"password": "mlps_... or mlpi_... (from the Pluto app's API keys page)"},
            },
        }
    ],
}
