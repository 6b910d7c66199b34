"""Extra links to Foundry pages. URL patterns are documented on the hook's ``*_url`` methods."""

from __future__ import annotations

from modelops_provider.core.links import XComLink


class ModelStudioRunLink(XComLink):
    name = "Model Studio run"


class LiveDeploymentLink(XComLink):
    name = "Live deployment"
