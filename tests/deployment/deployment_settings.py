"""Settings the deployment's Airflow components import by path (kept free of heavy imports: every
task process loads this module)."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"


def loopback_hostname() -> str:
    """``[core] hostname_callable``: components record 127.0.0.1 as their host, so the api-server
    fetches served logs over loopback."""
    return LOOPBACK
