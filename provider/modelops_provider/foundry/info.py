"""Foundry's part of the provider metadata (see ``modelops_provider.get_provider_info``)."""

from __future__ import annotations

from typing import Any

from modelops_provider import SCHEME_FIELD, TIMEOUT_FIELDS, integration_info

NAME = "Palantir Foundry"

INFO: dict[str, Any] = {
    **integration_info(NAME, "foundry", "https://www.palantir.com/docs/foundry/api/v2/models-v2-resources/"),
    "extra-links": [
        "modelops_provider.foundry.links.ModelStudioRunLink",
        "modelops_provider.foundry.links.LiveDeploymentLink",
    ],
    "connection-types": [
        {
            "connection-type": "foundry",
            "hook-class-name": "modelops_provider.foundry.hooks.FoundryHook",
            "hook-name": NAME,
            "conn-fields": {
                "scheme": SCHEME_FIELD,
                "client_id": {
                    "label": "OAuth2 client id",
                    "schema": {"type": ["string", "null"], "examples": ["<client id of a third-party application>"]},
                    "description": "Client credentials instead of a token.",
                },
                "client_secret": {
                    "label": "OAuth2 client secret",
                    "schema": {"type": ["string", "null"], "format": "password", "examples": ["<client secret>"]},
                },
                "scopes": {
                    "label": "OAuth2 scopes",
                    "schema": {
                        "type": ["string", "null"],
                        "examples": ["api:models-read api:models-write api:orchestration-read api:orchestration-write"],
                    },
                    "description": "Space-separated, e.g. 'api:models-read api:models-write api:orchestration-write'.",
                },
                **TIMEOUT_FIELDS,
            },
            "ui-field-behaviour": {
                "hidden-fields": ["schema", "login", "description"],
                "relabeling": {"host": "Foundry hostname", "password": "Token"},
                "placeholders": {
                    "host": "mycompany.palantirfoundry.com",
                    "port": "443 (leave empty)",
                    "password": "a user or service token (leave empty with client credentials)",
                },
            },
        }
    ],
}
