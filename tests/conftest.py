"""Test setup: a throwaway Airflow home and database, and helpers to run DAGs with ``dag.test()``.

The ``modelops_sandbox`` fixture comes from the package's own pytest plugin.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="modelops-tests-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
(_HOME / "dags").mkdir()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the metadata database once per session."""
    from airflow.utils import db

    db.resetdb()
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    return _HOME


@pytest.fixture(scope="session")
def sandbox_cli():
    """``modelops-sandbox serve`` as a user runs it, once per session: its first line, its URL and
    the connections of the ``export`` lines it printed (by variable name, parsed as the shell would)."""
    import json
    import shlex
    import subprocess
    import sys

    from modelops_provider.sandbox.server import connection_env

    proc = subprocess.Popen(
        [sys.executable, "-m", "modelops_provider.sandbox.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = first.rsplit(" ", 1)[1].strip()
        exports = {}
        for _ in connection_env(url):  # one export line per service
            name, _, value = proc.stdout.readline().removeprefix("export ").strip().partition("=")
            exports[name] = json.loads(shlex.split(value)[0])
        yield {"first_line": first, "url": url, "exports": exports}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
