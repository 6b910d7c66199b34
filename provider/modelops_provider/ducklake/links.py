"""Extra link to a DuckLake model run. The URL pattern is documented on ``DuckLakeHook.run_url``."""

from __future__ import annotations

from modelops_provider.core.links import XComLink


class DuckLakeModelRunLink(XComLink):
    name = "DuckLake model run"
