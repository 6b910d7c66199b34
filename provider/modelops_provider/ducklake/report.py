"""What a finished DuckLake model run did: its steps (one per model) and each step's test results,
as a compact log table, a JSON-able summary, and the verdict of the test gate.

A :class:`RunReport` is a plain value: ``DuckLakeApi.run_report()`` (ducklake/api.py) is the call that
fetches it, run by the hook's sync or async client like any other endpoint. This module imports
neither the hook nor the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from modelops_provider.core.errors import ApiError, JobFailedError
from modelops_provider.core.timestamps import parse_timestamp
from modelops_provider.core.waiting import Outcome, Snapshot
from modelops_provider.ducklake.models import ModelRun, ModelRunStep, ModelTestResult
from modelops_provider.ducklake.status import (
    BULKY_RUN_FIELDS,
    BULKY_STEP_FIELDS,
    TEST_STATUSES,
    step_outcome,
    test_outcome,
)


class ReportSource(Protocol):
    """What reads a report: the DuckLake hook (``hook.call(hook.api.run_report(...))``)."""

    def run_report(self, run_id: str, run: ModelRun | None = None) -> RunReport: ...


def duration_s(item: ModelRunStep | ModelRun) -> float | None:
    start, end = parse_timestamp(item.started_at), parse_timestamp(item.finished_at)
    return None if start is None or end is None else max(0.0, end - start)


def _clip(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class RunReport:
    run: ModelRun
    steps: list[ModelRunStep]
    # Test results by step id; steps that did not run (skipped, cancelled, pending) have none.
    tests: dict[str, list[ModelTestResult]] = field(default_factory=dict)

    def tests_of(self, step: ModelRunStep) -> list[ModelTestResult]:
        return self.tests.get(step.id or "", [])

    def built_steps(self) -> list[ModelRunStep]:
        """Steps whose model was built successfully (each gets an asset event)."""
        return [s for s in self.steps if step_outcome(s.status) is Outcome.SUCCEEDED]

    def failed_steps(self) -> list[ModelRunStep]:
        return [s for s in self.steps if step_outcome(s.status) is Outcome.FAILED]

    def not_run_steps(self) -> list[ModelRunStep]:
        return [s for s in self.steps if step_outcome(s.status) is Outcome.CANCELLED]

    def failing_tests(self) -> list[tuple[ModelRunStep, ModelTestResult]]:
        """Tests that did not PASS: FAIL, ERROR, or a status we do not know (or none)."""
        return [
            (step, test)
            for step in self.steps
            for test in self.tests_of(step)
            if test_outcome(test.status) is Outcome.FAILED
        ]

    # --- words --------------------------------------------------------------------------------
    def failure_text(self) -> str:
        """Why a FAILED or CANCELLED run failed: its error message, the failing and the unbuilt steps."""
        parts = [self.run.error_message or f"run is {self.run.status}"]
        failed = self.failed_steps()
        if failed:
            parts.append(
                "failed models: "
                + "; ".join(
                    f"{s.model_name}" + (f" ({_clip(s.error_message)})" if s.error_message else "") for s in failed
                )
            )
        not_run = self.not_run_steps()
        if not_run:
            parts.append("not built: " + ", ".join(f"{s.model_name} ({s.status})" for s in not_run))
        return ". ".join(parts)

    def test_failure_text(self) -> str:
        failing = self.failing_tests()
        items = []
        for step, test in failing:
            # FAIL and ERROR speak for themselves; any other status is named as what it is not.
            detail = f"{test.status}" if test.status in TEST_STATUSES else f"status {test.status!r} is not PASS"
            if test.rows_returned:
                detail += f", {test.rows_returned} rows returned"
            if test.error_message:
                detail += f": {_clip(test.error_message)}"
            items.append(f"{test.test_name} on model {step.model_name} ({detail})")
        models = sorted({step.model_name or "?" for step, _ in failing})
        return f"{len(failing)} test(s) did not pass on model(s) {', '.join(models)}: " + "; ".join(items)

    def table(self) -> str:
        """A compact table: one line per model, one indented line per test."""
        rows: list[tuple[str, ...]] = [("model", "status", "rows affected", "duration")]
        for step in self.steps:
            took = duration_s(step)
            rows.append(
                (
                    step.model_name or "?",
                    step.status or "?",
                    "-" if step.rows_affected is None else str(step.rows_affected),
                    "-" if took is None else f"{took:.1f}s",
                )
            )
            for test in self.tests_of(step):
                returned = "-" if test.rows_returned is None else f"{test.rows_returned} rows returned"
                rows.append((f"  test {test.test_name}", test.status or "?", returned, ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        counts: dict[str, int] = {}
        for step in self.steps:
            for test in self.tests_of(step):
                counts[test.status or "?"] = counts.get(test.status or "?", 0) + 1
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no tests"
        head = f"DuckLake model run {self.run.id} {self.run.status}: {len(self.steps)} model(s), tests: {tally}"
        return "\n".join([head, *lines])

    def summary(self) -> dict[str, Any]:
        """JSON-able ``{run, steps, tests}`` (without the bulky compiled manifest and SQL)."""
        names = {s.id: s.model_name for s in self.steps}
        tests = []
        for step_id, results in self.tests.items():
            for test in results:
                tests.append(
                    {**test.to_json(), "run_step_id": test.run_step_id or step_id, "model_name": names.get(step_id)}
                )
        return {
            "run": self.run.to_json(exclude=BULKY_RUN_FIELDS),
            "steps": [s.to_json(exclude=BULKY_STEP_FIELDS) for s in self.steps],
            "tests": tests,
        }


# What the task's "Remote run" tab shows of each step and test.
STEP_DETAIL = ("model_name", "status", "rows_affected", "started_at", "finished_at", "error_message")
TEST_DETAIL = ("model_name", "test_name", "status", "rows_returned", "error_message")


def record_details(report: RunReport | None, project: str | None) -> dict[str, Any]:
    """The run record's verdict (core/records.py): the tests' tally and whether they all passed."""
    if report is None:
        return {"project": project}
    tests = [t for step in report.steps for t in report.tests_of(step)]
    failing = len(report.failing_tests())
    if not tests:
        verdict, passed = "no tests", None
    elif failing:
        verdict, passed = f"{failing} of {len(tests)} tests did not pass", False
    else:
        verdict, passed = f"{len(tests)} test{'s' if len(tests) > 1 else ''} passed", True
    built = len(report.built_steps())
    summary = report.summary()
    return {
        "project": report.run.project_name or project,
        "verdict": f"{verdict}; {built} of {len(report.steps)} models built",
        "passed": passed if not report.failed_steps() else False,
        "detail": {
            "steps": [{k: s.get(k) for k in STEP_DETAIL} for s in summary["steps"]],
            "tests": [{k: t.get(k) for k in TEST_DETAIL} for t in summary["tests"]],
        },
    }


def read_report(hook: ReportSource, run_id: str, snap: Snapshot, log: Any) -> RunReport:
    """Read a finished run's steps and test results, and log them as a table."""
    report = hook.run_report(run_id, run=ModelRun.model_validate(snap.data))
    log.info("%s", report.table())
    return report


def read_failed_run(
    hook: ReportSource, what: str, run_id: str, snap: Snapshot, url: str, log: Any
) -> tuple[RunReport | None, str]:
    """A FAILED or CANCELLED run's report (None if its steps cannot be read), for the run record, and
    why it failed, for the operator and the sensor alike: the run's error message, failed and unbuilt
    models (or the run's own reason), and where to look."""
    report: RunReport | None = None
    try:
        report = read_report(hook, run_id, snap, log)
        detail = report.failure_text()
    except (ApiError, ValueError) as exc:
        detail = f"{snap.reason or snap.summary} (its steps could not be read: {exc})"
    return report, f"{what} ended {snap.status}: {detail}. See {url}"


def gate(report: RunReport, *, fail_on_test_failure: bool, what: str, log: Any) -> None:
    """Raise if any test did not PASS (FAIL, ERROR, or an unknown or missing status), or only warn,
    with ``fail_on_test_failure=False``."""
    if not report.failing_tests():
        return
    text = f"{what}: {report.test_failure_text()}"
    if fail_on_test_failure:
        raise JobFailedError(text)
    log.warning("%s (fail_on_test_failure=False: not failing the task)", text)
