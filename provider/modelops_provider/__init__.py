"""Apache Airflow provider: train models in Palantir Foundry Model Studio, verify them, check what
production serves, and track the runs."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Connection form fields (``conn-fields``). The form shows a literal "null" option for an enum that
# allows null, so every enum has a default instead; text fields suggest values (``examples``, the
# form's placeholder and suggestion list) and number fields show their default.
SCHEME_FIELD: dict[str, Any] = {
    "label": "Scheme",
    "schema": {
        "type": "string",
        "enum": ["https", "http"],
        "default": "https",
        "values_display": {"https": "https", "http": "http (only for a local sandbox)"},
    },
    "description": "https unless set to http (only for a local sandbox).",
}

TIMEOUT_FIELDS: dict[str, Any] = {
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "schema": {"type": ["number", "null"], "minimum": 0, "default": 10},
        "description": "Seconds to wait for a connection (default 10).",
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "schema": {"type": ["number", "null"], "minimum": 0, "default": 30},
        "description": "Seconds to wait for an answer (default 30).",
    },
    "retry_max_attempts": {
        "label": "Max attempts per request",
        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 6},
        "description": "Attempts on 429/502/503/504 and connection errors (default 6).",
    },
}


def integration_info(
    name: str, subpackage: str, doc_url: str, kinds: tuple[str, ...] = ("operators", "sensors", "hooks", "triggers")
) -> dict[str, Any]:
    """The parts of an integration's provider metadata that follow from its name and layout."""
    info: dict[str, Any] = {
        "integrations": [{"integration-name": name, "external-doc-url": doc_url, "tags": ["service"]}]
    }
    for kind in kinds:
        info[kind] = [{"integration-name": name, "python-modules": [f"modelops_provider.{subpackage}.{kind}"]}]
    return info


# One module per integration, each exposing INFO (its part of the provider metadata).
INTEGRATION_INFO_MODULES = [
    "modelops_provider.foundry.info",
    "modelops_provider.ducklake.info",
    "modelops_provider.pluto.info",
]


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow (``apache_airflow_provider`` entry point)."""
    import importlib

    info: dict[str, Any] = {
        "package-name": "airflow-provider-modelops",
        "name": "ModelOps (Foundry, DuckLake, Pluto)",
        "description": __doc__,
        "versions": [__version__],
    }
    for key in ("integrations", "operators", "sensors", "hooks", "triggers", "extra-links", "connection-types"):
        info[key] = []
    for module_name in INTEGRATION_INFO_MODULES:
        part = importlib.import_module(module_name).INFO
        for key, value in part.items():
            info[key].extend(value)
    return info
