"""A real Airflow deployment on loopback: the sandbox and the four Airflow components as processes.

Used by the deployment test tier (fixture ``deployment`` in ``conftest.py``) and by ``make airflow``
(``python tests/deployment/airflow_deployment.py``), which brings the same deployment up by hand.

What runs (each a separate process in its own process group, all bound to 127.0.0.1):

- the embedded sandbox (in this process, a thread), playing Foundry, DuckLake and Pluto;
- ``airflow api-server --host 127.0.0.1``, ``airflow scheduler --skip-serve-logs``,
  ``airflow dag-processor``, ``airflow triggerer --skip-serve-logs`` (SQLite, LocalExecutor, simple
  auth manager, a small parallelism);
- Airflow's own log server app (``airflow.utils.serve_logs.log_server``) under uvicorn on
  127.0.0.1: ``airflow scheduler``/``triggerer`` would start it on a wildcard address (not
  configurable), so they skip it and this one process serves the shared log folder for both the
  worker and the triggerer log ports. The api-server thus reads a deferred task's trigger log as
  Airflow designed it, from the "served logs" of the triggerer, without a wildcard listener.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet
from deployment_settings import LOOPBACK

from modelops_provider.sandbox.server import SandboxControl, SandboxServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLE_DAGS = REPO / "example_dags"
TEST_DAGS = HERE / "dags"

# Generous but bounded: the machine is shared, and a loaded 2-core box takes ~60 s to be healthy.
HEALTHY_TIMEOUT_S = float(os.environ.get("MODELOPS_DEPLOYMENT_HEALTHY_TIMEOUT", "240"))
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_TI = {"success", "failed", "skipped", "upstream_failed", "removed"}
TERMINAL_RUN = {"success", "failed"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class ApiError(RuntimeError):
    pass


class AirflowDeployment:
    """Start, drive and stop the deployment. ``start()`` returns once every component is healthy."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        dag_folders: Iterable[Path] = (EXAMPLE_DAGS, TEST_DAGS),
        parallelism: int = 4,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self._own_home = home is None
        self.home = Path(home or tempfile.mkdtemp(prefix="modelops-airflow-"))
        self.dags_folder = self.home / "dags"
        self.log_folder = self.home / "logs"
        self.component_logs = self.home / "components"
        self.dag_folders = list(dag_folders)
        self.port = free_port()
        self.log_server_port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.sandbox = SandboxServer(LOOPBACK, 0)
        self.control: SandboxControl = self.sandbox.control
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: dict[str, Any] = {}
        self._generation: dict[str, int] = {}
        self.parallelism = parallelism
        self.extra_env = dict(extra_env or {})
        self.token = ""
        self.password = ""
        self._client: httpx.Client | None = None

    # --- environment ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deployment_settings.loopback_hostname",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__HOST": LOOPBACK,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__SECRET_KEY": self._secret("api_secret_key"),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
                "AIRFLOW__CORE__FERNET_KEY": self._secret("fernet_key", fernet=True),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_folder),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.log_server_port),
                "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
                # A killed worker's task is noticed within a minute rather than five.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                # A deferred wait's trigger logs only changes and progress lines (not its first look):
                # a progress line every 3 s is how tests see a trigger at work, and its elapsed time.
                "AIRFLOW__MODELOPS__PROGRESS_LOG_INTERVAL": "3",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")])),
                "PYTHONUNBUFFERED": "1",
                "NO_PROXY": "*",
            }
        )
        env.update(self.sandbox.connection_env())
        env.update(self.extra_env)
        return env

    def _secret(self, name: str, *, fernet: bool = False) -> str:
        path = self.home / f".{name}"
        if not path.exists():
            path.write_text(Fernet.generate_key().decode() if fernet else secrets.token_urlsafe(32))
        return path.read_text()

    def airflow_cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "airflow", *args]

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = HEALTHY_TIMEOUT_S) -> AirflowDeployment:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.sandbox.start()
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.log_folder.mkdir(parents=True, exist_ok=True)
        self.component_logs.mkdir(parents=True, exist_ok=True)
        for folder in self.dag_folders:
            for path in sorted(folder.glob("*.py")):
                shutil.copy(path, self.dags_folder / path.name)
        migrate = subprocess.run(
            self.airflow_cmd("db", "migrate"),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=max(30.0, deadline - time.monotonic()),
            check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        self.start_component("log-server")
        for name in COMPONENTS:
            self.start_component(name)
        self.wait_healthy(deadline)
        self.login(deadline)

    def command(self, name: str) -> list[str]:
        if name == "api-server":
            return self.airflow_cmd("api-server", "--host", LOOPBACK, "--port", str(self.port), "--workers", "1")
        if name in ("scheduler", "triggerer"):
            return self.airflow_cmd(name, "--skip-serve-logs")
        if name == "dag-processor":
            return self.airflow_cmd("dag-processor")
        if name == "log-server":
            return [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "airflow.utils.serve_logs.log_server:create_app",
                "--host",
                LOOPBACK,
                "--port",
                str(self.log_server_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        raise ValueError(f"unknown component {name!r}")

    def start_component(self, name: str) -> subprocess.Popen[bytes]:
        generation = self._generation.get(name, 0) + 1
        self._generation[name] = generation
        log = open(self.component_logs / f"{name}.{generation}.log", "wb")  # noqa: SIM115 (closed in stop)
        self._log_files[f"{name}.{generation}"] = log
        proc = subprocess.Popen(
            self.command(name),
            env=self.env(),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends its children too
        )
        self.procs[name] = proc
        return proc

    def stop_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal a component's process group and wait for it (SIGKILL after ``timeout``)."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        _signal_group(proc, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            return proc.wait(timeout=10)

    def restart_component(self, name: str, sig: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
        self.stop_component(name, sig)
        return self.start_component(name)

    def stop(self) -> None:
        """Stop every process this deployment started (SIGTERM, then SIGKILL), then the sandbox."""
        procs = list(self.procs.items())
        self.procs.clear()
        # Task processes run in process groups of their own: remember every descendant first.
        descendants = [child for _, proc in procs for child in _descendants(proc.pid)]
        for _, proc in procs:
            _signal_group(proc, signal.SIGTERM)
        end = time.monotonic() + 30
        for _, proc in procs:
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
            _signal_group(proc, signal.SIGKILL)
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()
        for log in self._log_files.values():
            log.close()
        if self._client is not None:
            self._client.close()
            self._client = None
        with contextlib.suppress(Exception):  # the sandbox was never started
            self.sandbox.stop()

    def cleanup(self) -> None:
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> AirflowDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- health and auth -----------------------------------------------------------------------
    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.component_logs}\n{self.tail(name)}"
                )

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=10).json()  # type: ignore[no-any-return]

    def wait_healthy(self, deadline: float) -> None:
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                last = self.health()
                if all(
                    (last.get(key) or {}).get("status") == "healthy"
                    for key in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                ):
                    return
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
            time.sleep(1)
        raise TimeoutError(f"Airflow not healthy in time: {last!r}")

    def login(self, deadline: float) -> None:
        path = self.home / "simple_auth_manager_passwords.json.generated"
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} was not written")
            time.sleep(0.5)
        self.password = json.loads(path.read_text())["admin"]
        response = httpx.post(
            f"{self.base_url}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        self._client = httpx.Client(
            base_url=f"{self.base_url}/api/v2", headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    # --- REST API v2 ---------------------------------------------------------------------------
    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("the deployment is not started")
        return self._client

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        for _ in range(3):
            response = self.client.request(method, path, **kwargs)
            # SQLite allows one writer: a request can meet a locked database (on Airflow 3.3 + SQLite,
            # PATCHing a running task instance itself waits out the lock timeout and answers 500).
            if response.status_code != 500 or "Database error" not in response.text:
                break
            time.sleep(1)
        if response.status_code >= 400:
            raise ApiError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def wait_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        """Wait until the dag-processor has parsed ``dag_id``; then unpause it."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.client.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                break
            if time.monotonic() > deadline:
                errors = self.client.get("/importErrors").text
                raise TimeoutError(f"DAG {dag_id} not parsed in time; import errors: {errors}")
            self._check_alive()
            time.sleep(1)
        if response.json().get("is_paused"):
            self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.wait_dag(dag_id)
        body = {"logical_date": None, "conf": conf or {}}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def ti(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")  # type: ignore[no-any-return]

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
        return sorted(answer["task_instances"], key=lambda t: t["try_number"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")  # type: ignore[no-any-return]

    def wait_until(self, what: str, check: Callable[[], Any], timeout: float = 180.0, interval: float = 0.2) -> Any:
        """Call ``check`` until it returns something truthy (returned); a TimeoutError names ``what``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            self._check_alive()
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")

    def wait_ti(
        self, dag_id: str, run_id: str, task_id: str, states: Iterable[str], timeout: float = 180.0, **kw: Any
    ) -> dict[str, Any]:
        wanted = set(states)
        return self.wait_until(  # type: ignore[no-any-return]
            f"{dag_id}/{run_id}/{task_id} in {sorted(wanted)}",
            lambda: (ti := self.ti(dag_id, run_id, task_id))["state"] in wanted and ti,
            timeout,
            **kw,
        )

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 240.0) -> str:
        return self.wait_until(  # type: ignore[no-any-return]
            f"DAG run {dag_id}/{run_id} to finish",
            lambda: (state := self.dag_run(dag_id, run_id)["state"]) in TERMINAL_RUN and state,
            timeout,
            interval=0.5,
        )

    def mark(self, dag_id: str, run_id: str, task_id: str, state: str) -> dict[str, Any]:
        return self.api(  # type: ignore[no-any-return]
            "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json={"new_state": state}
        )

    def clear(self, dag_id: str, run_id: str, task_ids: list[str], **options: Any) -> Any:
        body = {"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False, **options}
        return self.api("POST", f"/dags/{dag_id}/clearTaskInstances", json=body)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        response = self.client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()["value"]

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The task log as the UI reads it (``full_content``), one event per line, with its source lines."""
        answer = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        content = answer.get("content") or []
        if isinstance(content, str):
            return content
        lines = []
        for entry in content:
            if not isinstance(entry, dict):
                lines.append(str(entry))
                continue
            lines.append(str(entry.get("event", "")))
            # An exception, as the UI shows it under its line.
            for error in entry.get("error_detail") or []:
                lines.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
        return "\n".join(lines)

    def trigger_kwargs(self, trigger_id: int) -> dict[str, Any]:
        """A trigger's stored kwargs, read from the metadata database (the REST API blanks them)."""
        from airflow.sdk.serde import deserialize

        with contextlib.closing(sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT kwargs FROM trigger WHERE id = ?", (trigger_id,)).fetchone()
        if row is None:
            raise LookupError(f"no trigger {trigger_id}")
        raw = row[0] if row[0].startswith("{") else Fernet(self._secret("fernet_key")).decrypt(row[0].encode()).decode()
        return deserialize(json.loads(raw))  # type: ignore[no-any-return]

    def trigger_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """What the triggerer(s) logged for one try (its ``.trigger.<job id>.log`` files, oldest first)."""
        folder = self.log_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        files = sorted(
            folder.glob(f"attempt={try_number}.log.trigger.*.log"), key=lambda p: int(p.name.rsplit(".", 2)[-2])
        )
        return "".join(path.read_text(errors="replace") for path in files)

    # --- sandbox -------------------------------------------------------------------------------
    def requests(self, *, path_prefix: str = "", method: str | None = None, contains: str = "") -> list[dict[str, Any]]:
        """The sandbox's request log (``GET /_sandbox/requests``), filtered."""
        return [r for r in self.control.requests(path_prefix=path_prefix, method=method) if contains in r["path"]]

    # --- diagnostics ---------------------------------------------------------------------------
    def tail(self, name: str, lines: int = 40) -> str:
        generation = self._generation.get(name, 1)
        path = self.component_logs / f"{name}.{generation}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def is_descendant(pid: int, ancestor: int) -> bool:
    try:
        return any(parent.pid == ancestor for parent in psutil.Process(pid).parents())
    except psutil.Error:
        return False


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group this deployment created for the component


def main() -> int:
    """``make airflow``: bring the deployment up, print how to reach it, run until Ctrl-C."""
    home = Path(os.environ["MODELOPS_AIRFLOW_HOME"]) if os.environ.get("MODELOPS_AIRFLOW_HOME") else None
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
    deployment = AirflowDeployment(home)
    print(f"Starting Airflow in {deployment.home} (about a minute) ...", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        deployment.start()
        print(
            f"Airflow UI     {deployment.base_url}  (user admin, password {deployment.password})\n"
            f"Sandbox        {deployment.sandbox.url}\n"
            f"AIRFLOW_HOME   {deployment.home}  (component logs in {deployment.component_logs})\n"
            "DAGs are paused at creation: unpause one in the UI and trigger it. Ctrl-C stops everything.",
            flush=True,
        )
        while not stop:
            deployment._check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("Stopping ...", flush=True)
        deployment.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
