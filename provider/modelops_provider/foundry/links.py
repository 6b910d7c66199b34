"""Extra links to Foundry pages. URL patterns are documented on the hook's ``*_url`` methods."""

from __future__ import annotations

from typing import Any

from modelops_provider.core.links import XComLink


def model_version_of(run: Any, alias: str | None = None) -> str | None:
    """The model version a Model Studio run produced (``resolvedOutputs``; the given alias, else the
    first model output), for the run record."""
    outputs = run.get("resolvedOutputs") if isinstance(run, dict) else None
    if not isinstance(outputs, dict):
        return None
    chosen = [outputs.get(alias)] if alias else list(outputs.values())
    for output in chosen:
        if isinstance(output, dict) and output.get("modelVersionRid"):
            return str(output["modelVersionRid"])
    return None


class ModelStudioRunLink(XComLink):
    name = "Model Studio run"


class LiveDeploymentLink(XComLink):
    name = "Live deployment"
