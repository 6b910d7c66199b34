"""Apache Airflow provider: train models in Palantir Foundry Model Studio, verify them, check what
production serves, and track the runs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_TIMEOUT_FIELDS: dict[str, Any] = {
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "schema": {"type": ["number", "null"], "minimum": 0},
        "description": "Seconds to wait for a connection (default 10).",
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "schema": {"type": ["number", "null"], "minimum": 0},
        "description": "Seconds to wait for an answer (default 30).",
    },
    "retry_max_attempts": {
        "label": "Max attempts per request",
        "schema": {"type": ["integer", "null"], "minimum": 1},
        "description": "Attempts on 429/502/503/504 and connection errors (default 6).",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow (``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "airflow-provider-modelops",
        "name": "ModelOps (Foundry, DuckLake, Pluto)",
        "description": __doc__,
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Palantir Foundry",
                "external-doc-url": "https://www.palantir.com/docs/foundry/api/v2/models-v2-resources/",
                "tags": ["service"],
            }
        ],
        "operators": [
            {"integration-name": "Palantir Foundry", "python-modules": ["modelops_provider.foundry.operators"]}
        ],
        "sensors": [
            {"integration-name": "Palantir Foundry", "python-modules": ["modelops_provider.foundry.sensors"]}
        ],
        "hooks": [{"integration-name": "Palantir Foundry", "python-modules": ["modelops_provider.foundry.hooks"]}],
        "triggers": [
            {"integration-name": "Palantir Foundry", "python-modules": ["modelops_provider.foundry.triggers"]}
        ],
        "extra-links": [
            "modelops_provider.foundry.links.ModelStudioRunLink",
            "modelops_provider.foundry.links.LiveDeploymentLink",
        ],
        "connection-types": [
            {
                "connection-type": "foundry",
                "hook-class-name": "modelops_provider.foundry.hooks.FoundryHook",
                "hook-name": "Palantir Foundry",
                "conn-fields": {
                    "scheme": {
                        "label": "Scheme",
                        "schema": {"type": ["string", "null"], "enum": ["https", "http", None]},
                        "description": "https unless set to http (only for a local sandbox).",
                    },
                    "client_id": {
                        "label": "OAuth2 client id",
                        "schema": {"type": ["string", "null"]},
                        "description": "Client credentials instead of a token.",
                    },
                    "client_secret": {
                        "label": "OAuth2 client secret",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "scopes": {
                        "label": "OAuth2 scopes",
                        "schema": {"type": ["string", "null"]},
                        "description": "Space-separated, e.g. 'api:models-read api:models-write api:orchestration-write'.",
                    },
                    **_TIMEOUT_FIELDS,
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "description"],
                    "relabeling": {"host": "Foundry hostname", "password": "Token"},
                    "placeholders": {
                        "host": "mycompany.palantirfoundry.com",
                        "password": "a user or service token (leave empty with client credentials)",
                    },
                },
            }
        ],
    }
