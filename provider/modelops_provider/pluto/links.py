"""Extra link to the Pluto run page. The URL rule is documented on ``PlutoHook.run_url``."""

from __future__ import annotations

from modelops_provider.core.links import XComLink


class PlutoRunLink(XComLink):
    name = "Pluto run"
