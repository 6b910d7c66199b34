"""User actions in a real Airflow, for the Foundry launch and the DuckLake run alike.

Each test scripts a studio (Foundry) and a project (DuckLake) of its own, runs the tier's DAGs
(``tests/deployment/dags``) for both systems at once, acts through the REST API as a user would
(mark failed/success, clear) or on the processes (SIGKILL a worker, SIGTERM the triggerer), and
checks what reached the remote service in the sandbox's request log.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from airflow_deployment import AirflowDeployment, is_descendant
from remote import RemoteRuns, Run

SYSTEMS = ("foundry", "ducklake")
WAIT_S = 240.0  # generous (a shared, loaded machine) but bounded


@dataclass
class Case:
    """One DAG run of ``deploy_<system>_<mode>_r<retries>`` against this case's own studio/project."""

    dep: AirflowDeployment
    system: str
    mode: str = "deferred"
    retries: int = 0
    duration_s: float = 20.0
    key: str = ""
    run_id: str = ""
    remote: RemoteRuns = field(init=False)

    def __post_init__(self) -> None:
        if self.system == "foundry":
            self.key = f"ri.models.main.model-studio.{uuid.uuid4()}"
        else:
            self.key = f"p{uuid.uuid4().hex[:12]}"
        self.script(self.duration_s)
        self.remote = RemoteRuns(self.dep, self.system, self.key)

    def script(self, duration_s: float) -> None:
        """How long this case's next remote runs take (they succeed)."""
        if self.system == "foundry":
            self.dep.control.foundry_studio(self.key, outcome="SUCCEEDED", duration_s=duration_s)
        else:
            self.dep.control.ducklake_model("orders", project=self.key, duration_s=duration_s, replace_project=True)

    @property
    def dag_id(self) -> str:
        return f"deploy_{self.system}_{self.mode}_r{self.retries}"

    def trigger(self) -> Case:
        conf = {"studio": self.key} if self.system == "foundry" else {"project": self.key}
        self.run_id = self.dep.trigger(self.dag_id, conf)
        return self

    def ti(self, task_id: str = "launch") -> dict[str, Any]:
        return self.dep.ti(self.dag_id, self.run_id, task_id)

    def tries(self, task_id: str = "launch") -> list[dict[str, Any]]:
        return self.dep.tries(self.dag_id, self.run_id, task_id)

    def wait_state(self, *states: str, task_id: str = "launch") -> dict[str, Any]:
        return self.dep.wait_ti(self.dag_id, self.run_id, task_id, states, timeout=WAIT_S)

    def wait_run(self) -> str:
        return self.dep.wait_run(self.dag_id, self.run_id, timeout=WAIT_S)

    def wait_polled(self, count: int = 1) -> Run:
        """Wait for the ``count``-th remote run to be polled (by the trigger, or the waiting worker)."""

        def polled() -> Run | None:
            runs = self.remote.runs()
            if len(runs) < count:
                return None
            run = runs[count - 1]
            return run if self.remote.polls(run) else None

        return self.dep.wait_until(f"{self.system} run #{count} to be polled", polled, timeout=WAIT_S)  # type: ignore[no-any-return]

    def wait_trigger_polling(self, try_number: int = 1) -> Run:
        """Wait until the triggerer runs this try's trigger and it has polled (logged a progress line:
        every 3 s in this deployment); return the newest remote run. Before a triggerer picked a
        trigger up, nobody could cancel its run."""
        self.dep.wait_until(
            f"{self} try {try_number}: the trigger's first poll",
            lambda: "elapsed)" in self.dep.trigger_log(self.dag_id, self.run_id, "launch", try_number),
            timeout=WAIT_S,
            interval=0.5,
        )
        return self.remote.runs()[-1]

    def wait_cancel(self, run: Run) -> dict[str, Any]:
        return self.dep.wait_until(  # type: ignore[no-any-return]
            f"a cancel of {self.system} run {run.id}",
            lambda: self.remote.cancel_requests(run)[:1],
            timeout=60,
        )[0]

    def log(self, task_id: str = "launch", try_number: int = 1) -> str:
        return self.dep.log(self.dag_id, self.run_id, task_id, try_number)

    def __str__(self) -> str:
        return f"{self.dag_id}/{self.run_id}"


def both(dep: AirflowDeployment, **kwargs: Any) -> list[Case]:
    return [Case(dep, system, **kwargs) for system in SYSTEMS]


def assert_no_poll_after(case: Case, run: Run, when: float) -> None:
    late = [r for r in case.remote.polls(run) if r["time"] > when]
    assert not late, f"{case}: polled after the cancel: {late}"


def report(name: str, values: list[float]) -> None:
    """Figures for the report: printed (``-s``) and appended to ``$MODELOPS_DEPLOYMENT_FIGURES``."""
    line = f"{name}: " + ", ".join(f"{v:.2f}" for v in values)
    print(line)
    if os.environ.get("MODELOPS_DEPLOYMENT_FIGURES"):
        with open(os.environ["MODELOPS_DEPLOYMENT_FIGURES"], "a") as out:
            out.write(line + "\n")


# --- mark failed / mark success while deferred ---------------------------------------------------


def test_mark_failed_while_deferred_cancels_the_remote_run(deployment: AirflowDeployment) -> None:
    cases = [Case(deployment, system, duration_s=300) for system in SYSTEMS for _ in range(2)]
    for case in cases:
        case.trigger()
    latencies = []
    cancelled: list[tuple[Case, Run]] = []
    for case in cases:
        case.wait_state("deferred")
        run = case.wait_trigger_polling()
        marked = time.time()
        deployment.mark(case.dag_id, case.run_id, "launch", "failed")
        cancel = case.wait_cancel(run)
        latencies.append(cancel["time"] - marked)
        cancelled.append((case, run))
    last_cancel = max(case.remote.cancel_requests(run)[0]["time"] for case, run in cancelled)
    time.sleep(4)  # several poll intervals: a trigger still running would have polled again
    for case, run in cancelled:
        assert case.remote.status(run) == case.remote.cancelled_status, case
        assert case.ti()["state"] == "failed", case
        assert len(case.remote.runs()) == 1, case
        assert_no_poll_after(case, run, case.remote.cancel_requests(run)[0]["time"])
        # Shared polling reads many runs per request: once the last wait was cancelled, none at all.
        late = [r for r in case.remote.all_polls() if r["time"] > last_cancel]
        assert not late, f"{case.system}: polls after the last cancel: {late}"
        assert case.wait_run() == "failed"
    report("mark failed while deferred: seconds from PATCH to cancel request", latencies)
    assert statistics.median(latencies) <= 3.0, latencies


def test_mark_success_while_deferred_cancels_and_downstream_names_the_task(deployment: AirflowDeployment) -> None:
    cases = [case.trigger() for case in both(deployment, duration_s=300)]
    runs = {}
    for case in cases:
        case.wait_state("deferred")
        runs[case.system] = case.wait_trigger_polling()
        deployment.mark(case.dag_id, case.run_id, "launch", "success")
    for case in cases:
        run = runs[case.system]
        case.wait_cancel(run)
        assert case.wait_run() == "failed", case  # the downstream task fails, clearly
        assert case.ti()["state"] == "success"
        assert case.remote.status(run) == case.remote.cancelled_status, case
        assert case.ti("use_result")["state"] == "failed"
        text = case.log("use_result")
        assert "Task 'launch' left no return value" in text, text[-3000:]
        assert "Clear 'launch' to run it again" in text
        assert "TypeError" not in text


# --- clear ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 2])
def test_clear_while_deferred_cancels_the_old_run_and_succeeds_on_one_new_run(
    deployment: AirflowDeployment, retries: int
) -> None:
    cases = [case.trigger() for case in both(deployment, retries=retries, duration_s=15)]
    old: dict[str, Run] = {}
    for case in cases:
        case.wait_state("deferred")
        old[case.system] = case.wait_trigger_polling()
        deployment.clear(case.dag_id, case.run_id, ["launch"])
    for case in cases:
        assert case.wait_run() == "success", (case, case.tries())
        runs = case.remote.runs()
        assert len(runs) == 2, (case, runs)  # exactly one new run
        first, second = runs
        assert first.id == old[case.system].id
        assert first.status == case.remote.cancelled_status, case
        assert second.status == case.remote.succeeded_status, case
        assert case.remote.cancel_requests(first), case
        assert not case.remote.cancel_requests(second), case
        tries = case.tries()
        # Airflow records the cleared try itself as it likes; every try after it succeeded.
        assert [t["state"] for t in tries[1:]] == ["success"], (case, tries)
        result = deployment.xcom(case.dag_id, case.run_id, "use_result")
        assert result == second.id, (case, result, second)


def test_clear_of_a_finished_task_starts_one_new_run(deployment: AirflowDeployment) -> None:
    cases = [case.trigger() for case in both(deployment, duration_s=12)]
    for case in cases:
        assert case.wait_run() == "success", (case, case.tries())
        assert len(case.remote.runs()) == 1
        deployment.clear(case.dag_id, case.run_id, ["launch", "use_result"])
    for case in cases:
        case.wait_state("queued", "scheduled", "running", "deferred", "success")
        assert case.wait_run() == "success", (case, case.tries())
        runs = case.remote.runs()
        assert [r.status for r in runs] == [case.remote.succeeded_status] * 2, (case, runs)
        assert not any(case.remote.cancel_requests(r) for r in runs)
        assert deployment.xcom(case.dag_id, case.run_id, "use_result") == runs[1].id


# --- processes dying -----------------------------------------------------------------------------


def test_retry_after_worker_sigkill_reattaches_to_the_same_run(deployment: AirflowDeployment) -> None:
    cases = [case.trigger() for case in both(deployment, mode="sync", retries=2, duration_s=40)]
    killed: dict[str, Run] = {}
    for case in cases:
        ti = case.wait_state("running")
        run = case.wait_polled()
        pid = int(ti["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        # Our own task process: started by this deployment's scheduler (LocalExecutor).
        assert is_descendant(pid, deployment.procs["scheduler"].pid), cmdline
        os.kill(pid, signal.SIGKILL)
        killed[case.system] = run
    for case in cases:
        assert case.wait_run() == "success", (case, case.tries())
        runs = case.remote.runs()
        assert [r.id for r in runs] == [killed[case.system].id], (case, runs)
        assert not case.remote.cancel_requests(runs[0])
        tries = case.tries()
        assert [t["state"] for t in tries] == ["failed", "success"], (case, tries)
        assert "Reconnecting to existing job" in case.log(try_number=2)


ELAPSED = re.compile(r"\((\d+)s elapsed\)")


def test_triggerer_restart_keeps_the_run_its_deadline_and_elapsed_time(deployment: AirflowDeployment) -> None:
    # Long enough that a slow restart on a loaded machine still finds the runs going.
    cases = [case.trigger() for case in both(deployment, duration_s=75)]
    runs = {}
    for case in cases:
        case.wait_state("deferred")
        runs[case.system] = case.wait_trigger_polling()
    # The trigger rows outlive the triggerer: the new one takes the same rows over.
    trigger_ids = {case.system: case.ti()["trigger"]["id"] for case in cases}
    before = {system: deployment.trigger_kwargs(trigger_id) for system, trigger_id in trigger_ids.items()}
    restarted = time.time()
    deployment.restart_component("triggerer", signal.SIGTERM)
    for case in cases:
        # The new triggerer picks the trigger up and polls again.
        deployment.wait_until(
            "a poll after the restart",
            lambda case=case: any(r["time"] > restarted for r in case.remote.polls(runs[case.system])),
            timeout=WAIT_S,
            interval=1,
        )
        after = deployment.trigger_kwargs(trigger_ids[case.system])
        assert after["deadline"] == before[case.system]["deadline"], case
        assert after["started_at"] == before[case.system]["started_at"], case
    for case in cases:
        assert case.wait_run() == "success", (case, case.tries())
        run = runs[case.system]
        assert [r.id for r in case.remote.runs()] == [run.id], case  # one launch
        assert not case.remote.cancel_requests(run), case  # no cancel
        assert [t["state"] for t in case.tries()] == ["success"]
        # The new triggerer's first line (a progress line) counts from the launch, not from its own start.
        files = sorted(
            deployment.log_folder.glob(
                f"dag_id={case.dag_id}/run_id={case.run_id}/task_id=launch/attempt=1.log.trigger.*.log"
            ),
            key=lambda p: int(p.name.rsplit(".", 2)[-2]),
        )
        assert len(files) == 2, files
        elapsed = [int(m) for m in ELAPSED.findall(files[-1].read_text())]
        launched = before[case.system]["started_at"]
        assert elapsed and elapsed[0] >= int(restarted - launched), (case, elapsed, restarted - launched)


# --- sync mode -----------------------------------------------------------------------------------


def test_sync_task_marked_failed_cancels_the_remote_run(deployment: AirflowDeployment) -> None:
    cases = [case.trigger() for case in both(deployment, mode="sync", duration_s=300)]
    latencies = []
    for case in cases:
        case.wait_state("running")
        run = case.wait_polled()
        marked = time.time()
        deployment.mark(case.dag_id, case.run_id, "launch", "failed")
        cancel = case.wait_cancel(run)
        latencies.append(cancel["time"] - marked)
        assert case.wait_run() == "failed"
        assert case.ti()["state"] == "failed"
        assert case.remote.status(run) == case.remote.cancelled_status, case
        assert len(case.remote.runs()) == 1
    report("sync task marked failed: seconds from PATCH to cancel request", latencies)
