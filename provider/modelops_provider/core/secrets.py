"""Keep secrets out of task logs."""

from __future__ import annotations


def mask(secret: str | None) -> None:
    """Register ``secret`` with Airflow's log masker, when Airflow's masker is importable."""
    if not secret:
        return
    try:
        from airflow.providers.common.compat.sdk import mask_secret
    except Exception:  # pragma: no cover - outside Airflow (sandbox CLI, plain scripts)
        return
    mask_secret(secret)
