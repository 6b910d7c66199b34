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
# The UI plugin's tests sign logins with this: Airflow's generated default is 22 bytes, which PyJWT
# flags as too short for the HS512 it signs with (InsecureKeyLengthWarning).
os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = os.urandom(64).hex()
(_HOME / "dags").mkdir()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Create the metadata database once per session (per xdist worker: each has its own home)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The workers' basetemps share a parent: one worker creates the schema, the others copy it.
        _copy_of_a_shared_db(tmp_path_factory.getbasetemp().parent / "airflow-db-template")
    else:
        from airflow.utils import db

        db.resetdb()
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    return _HOME


def _copy_of_a_shared_db(shared: Path) -> None:
    """``resetdb()`` costs seconds of CPU per worker; the first worker to get here runs it and
    leaves a copy in ``shared``, the others copy that into their own home."""
    import shutil
    import time

    from airflow import settings

    shared.mkdir(exist_ok=True)
    template, ready = shared / "airflow.db", shared / "ready"
    try:
        os.close(os.open(shared / "building", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert time.monotonic() < deadline, f"no template database appeared in {shared}"
            time.sleep(0.1)
        settings.engine.dispose()  # nothing may hold the file being replaced
        shutil.copyfile(template, _HOME / "airflow.db")
        return
    from airflow.utils import db

    db.resetdb()
    settings.engine.dispose()
    shutil.copyfile(_HOME / "airflow.db", shared / "airflow.db.part")
    (shared / "airflow.db.part").rename(template)
    ready.touch()


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
