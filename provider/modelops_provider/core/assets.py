"""Asset events for what a task produced, when the asset is only known at run time.

The operator declares an :class:`AssetAlias` in its outlets; at run time it attaches one event per
produced asset to that alias, and Airflow resolves the alias to the concrete asset, so a DAG
scheduled on ``Asset("<uri>")`` (or ``Model``) runs when the event is emitted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


def model_asset_class() -> Any:
    """Airflow's ``Model`` asset type where the installed Airflow has it, else plain ``Asset``."""
    try:
        # Airflow 3 defines it here (airflow.sdk does not re-export it).
        from airflow.sdk.definitions.asset import Model

        return Model
    except ImportError:  # pragma: no cover - older Airflow
        from airflow.providers.common.compat.sdk import Asset

        return Asset


def alias(name: str) -> Any:
    from airflow.providers.common.compat.sdk import AssetAlias

    return AssetAlias(name=name)


def emit(context: Context, alias_name: str, uri: str, extra: dict[str, Any], *, model: bool = False) -> None:
    """Attach an event for the asset ``uri`` (named by its URI) to the alias ``alias_name``."""
    from airflow.providers.common.compat.sdk import Asset

    cls = model_asset_class() if model else Asset
    context["outlet_events"][alias(alias_name)].add(cls(uri=uri, name=uri), extra=extra)
