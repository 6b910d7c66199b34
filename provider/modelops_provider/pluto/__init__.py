"""Pluto by Trainy: one experiment-tracking run per DAG run, opened by a setup task and closed by a
teardown task with the DAG run's outcome (see ``docs/pluto.md``)."""

from __future__ import annotations

# Here rather than in hooks.py: the provider info and the operators import them without pulling in
# the hook (which imports Airflow, whose start-up reads the provider info).
DEFAULT_CONN_ID = "pluto_default"
DEFAULT_API_URL = "https://pluto-api.trainy.ai"
DEFAULT_INGEST_URL = "https://pluto-ingest.trainy.ai"
DEFAULT_APP_URL = "https://pluto.trainy.ai"
# The py service: heartbeats (``POST /api/runs/trigger``) that keep a run from being reaped.
DEFAULT_PY_URL = "https://pluto-py.trainy.ai"
