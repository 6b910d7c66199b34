"""Airflow assets for Foundry models: one asset per model, one event per new version.

URI scheme: ``foundry://<host>/models/<modelRid>``, where ``<host>`` is the Foundry hostname of the
connection (no scheme, no port). The event's extra carries ``modelVersionRid``, ``runId``,
``configVersion``, ``outputAlias`` and ``modelStudioRid``. Schedule a DAG on a new version with::

    from modelops_provider.foundry.assets import model_asset

    with DAG(..., schedule=[model_asset("mycompany.palantirfoundry.com", "ri.models.main.model.<uuid>")]):
        ...
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from modelops_provider.core.assets import model_asset_class

# The alias through which ModelStudioLaunchOperator attaches its events (the model is only known
# once the run has succeeded).
MODEL_VERSIONS_ALIAS = "modelops-foundry-model-versions"


def model_asset_uri(host: str, model_rid: str) -> str:
    if "://" in host:
        host = urlsplit(host).hostname or host
    return f"foundry://{host.split(':')[0]}/models/{model_rid}"


def model_asset(host: str, model_rid: str) -> Any:
    """The asset of a Foundry model (Airflow's ``Model`` asset type where available)."""
    uri = model_asset_uri(host, model_rid)
    return model_asset_class()(uri=uri, name=uri)
