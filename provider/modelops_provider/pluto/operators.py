"""Open a Pluto run when a DAG run starts (setup task) and close it with the DAG run's outcome
(teardown task).

Usage::

    start = PlutoStartRunOperator(task_id="pluto_start", project_name="training")
    keep_alive = PlutoKeepAliveOperator(task_id="pluto_keep_alive")
    finish = PlutoFinishRunOperator(task_id="pluto_finish", metrics_from_xcom={"tests": "verify"})
    start.as_setup() >> train >> verify >> finish.as_teardown(setups=start)
    start >> keep_alive  # heartbeats while the DAG run works; not upstream of anything
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException, BaseOperator

from modelops_provider.core.records import FAILED, RECORD_KEY, RUNNING, SUCCEEDED, RunRecorder
from modelops_provider.core.validation import require_count, seconds
from modelops_provider.pluto import DEFAULT_CONN_ID
from modelops_provider.pluto.links import PlutoRunLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


# The only task states of a tracked DAG run that let its Pluto run be COMPLETED.
DONE_STATES = frozenset({"success", "skipped"})
# Task instances no longer part of the DAG run (e.g. map indexes beyond a shrunk expansion); Airflow
# leaves them out of the DAG run's own outcome, and so do we.
IGNORED_STATES = frozenset({"removed"})
# Where a value comes from: a task id (its return value) or [task id, XCom key].
XComRef = str | Sequence[str]


def default_external_id(dag_id: str, run_id: str) -> str:
    """The Pluto ``externalId`` of a DAG run: stable across task retries and cleared re-runs.

    DAG ids cannot contain ':', so the id is unambiguous. Several Airflow deployments tracking the
    same DAG into the same Pluto project should pass their own ``external_id`` (e.g. with a prefix).
    """
    return f"airflow:{dag_id}:{run_id}"


def dag_run_config(context: Context) -> dict[str, Any]:
    """The DAG run's params with its conf on top, made JSON-able (other values become strings)."""
    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    merged = {**{k: params[k] for k in params}, **dict(conf)}
    return json.loads(json.dumps(merged, default=str))  # type: ignore[no-any-return]


def airflow_metadata(context: Context) -> dict[str, Any]:
    ti = context["ti"]
    dag_run = context.get("dag_run")
    logical_date = context.get("logical_date")
    return {
        "dagId": ti.dag_id,
        "dagRunId": ti.run_id,
        "runType": str(getattr(dag_run, "run_type", "") or "") or None,
        "logicalDate": logical_date.isoformat() if logical_date else None,
    }


def _severity(state: str | None) -> int:
    """How bad a task state is for the DAG run's outcome: failed > upstream_failed > not finished
    (None, queued, running, up_for_retry, deferred, ...) > success/skipped."""
    if state == "failed":
        return 3
    if state == "upstream_failed":
        return 2
    return 0 if state in DONE_STATES else 1


def fold_mapped(states: Mapping[str, str | None], task_ids: Collection[str]) -> dict[str, str | None]:
    """Task states by task id: mapped instances (``<task_id>_<map_index>``, as Airflow reports them)
    folded into their task id, which keeps the worst of its instances' states; removed instances are
    left out."""
    folded: dict[str, str | None] = {}
    for key, state in states.items():
        if state in IGNORED_STATES:
            continue
        task_id = key
        if key not in task_ids and (m := re.fullmatch(r"(.+)_(\d+)", key)) and m.group(1) in task_ids:
            task_id = m.group(1)
        if task_id not in folded or _severity(state) > _severity(folded[task_id]):
            folded[task_id] = state
    return folded


def decide_status(task_states: Mapping[str, str | None]) -> tuple[str, dict[str, list[str]]]:
    """COMPLETED when every tracked task succeeded or was skipped, else FAILED; with the task ids of
    each kind of trouble: ``failedTasks``, ``upstreamFailedTasks``, and ``unfinishedTasks`` (any other
    state: not started, queued, running, up for retry, deferred, ...)."""
    failed = sorted(t for t, s in task_states.items() if s == "failed")
    upstream_failed = sorted(t for t, s in task_states.items() if s == "upstream_failed")
    unfinished = sorted(t for t, s in task_states.items() if _severity(s) == 1)
    status = "FAILED" if failed or upstream_failed or unfinished else "COMPLETED"
    return status, {"failedTasks": failed, "upstreamFailedTasks": upstream_failed, "unfinishedTasks": unfinished}


def _check_refs(name: str, refs: Mapping[str, Any] | None) -> dict[str, tuple[str, str]]:
    """``{name: task_id | [task_id, key]}`` as ``{name: (task_id, key)}``; ValueError if malformed."""
    if refs is None:
        return {}
    if not isinstance(refs, Mapping):
        raise ValueError(f"{name} must be a mapping of name to a task id or [task id, XCom key], got {refs!r}")
    out: dict[str, tuple[str, str]] = {}
    for key, ref in refs.items():
        if isinstance(ref, str) and ref:
            out[str(key)] = (ref, "return_value")
        elif (
            isinstance(ref, Sequence)
            and not isinstance(ref, str)
            and len(ref) == 2
            and all(isinstance(p, str) and p for p in ref)
        ):
            out[str(key)] = (ref[0], ref[1])
        else:
            raise ValueError(f"{name}[{key!r}] must be a task id or [task id, XCom key], got {ref!r}")
    return out


def find_start_task_id(op: BaseOperator, start_task_id: str | None) -> str:
    """The PlutoStartRunOperator whose run ``op`` works on: the given one, or the only one upstream."""
    if start_task_id:
        return start_task_id
    starts = sorted(t.task_id for t in op.get_flat_relatives(upstream=True) if isinstance(t, PlutoStartRunOperator))
    if len(starts) != 1:
        raise ValueError(
            f"start_task_id is not set and {len(starts)} PlutoStartRunOperator tasks are upstream "
            f"of {op.task_id!r} ({starts}); set start_task_id"
        )
    return starts[0]


def started_run(context: Context, start_task_id: str) -> Mapping[str, Any]:
    """What the start task returned (``runId``, ``projectName``, ``url``, ...)."""
    run = context["ti"].xcom_pull(task_ids=start_task_id)
    if not isinstance(run, Mapping) or run.get("runId") is None:
        raise AirflowException(f"no Pluto run: task {start_task_id!r} returned none (did it succeed in this DAG run?)")
    return run


class PlutoRecorder(RunRecorder):
    """Run records of the DAG run's Pluto run: opened by the start task, closed by the finish task."""

    service = "Pluto"
    kind = "tracking run"
    _pluto: tuple[str, str | None] | None = None
    _pluto_details: dict[str, Any] | None = None

    def record_target(self) -> tuple[str, str | None, float | None] | None:
        return None if self._pluto is None else (self._pluto[0], self._pluto[1], None)

    def record_details(self, snap: Any, result: Any, error: BaseException | None) -> dict[str, Any]:
        return self._pluto_details or {}


class PlutoStartRunOperator(PlutoRecorder, BaseOperator):
    """Open the Pluto run of this DAG run (use it as a setup task); a retry or a cleared re-run of the
    DAG run resumes the same Pluto run (Pluto's ``externalId``), which goes back to RUNNING.

    Pushes ``runId``, ``displayId`` and ``url`` to XCom and the "Pluto run" link; returns the run
    (``runId``, ``displayId``, ``projectName``, ``url``, ``resumed``, ``externalId``, ``runName``, ...).

    :param project_name: Pluto project (created if missing). Templated.
    :param run_name: default ``<dag_id>/<run_id>``. Templated.
    :param external_id: default ``airflow:<dag_id>:<run_id>``. Templated.
    :param tags: list of tags; on a resumed run they replace the run's tags. Templated.
    :param config: dict or JSON-object string; default the DAG run's params with its conf on top.
        Pluto deep-merges it into the config of a resumed run. Templated.
    :param system_metadata: dict or JSON-object string, stored with an ``airflow`` entry (DAG id,
        run id, run type, logical date) added. Templated.
    :param logger_settings: dict or JSON-object string, the run's ``loggerSettings``, e.g. threshold
        triggers ``{"trigger": {"train/loss": {"operator": ">", "threshold": 10}}}`` (a matching metric
        makes Pluto cancel the run). On a resumed run they are deep-merged into its settings. Templated.
    :param pluto_conn_id: Airflow connection of type ``pluto``.
    """

    template_fields: Sequence[str] = (
        "project_name",
        "run_name",
        "external_id",
        "tags",
        "config",
        "system_metadata",
        "logger_settings",
        "pluto_conn_id",
    )
    template_fields_renderers = {"config": "json", "system_metadata": "json", "logger_settings": "json"}
    operator_extra_links = (PlutoRunLink(),)
    ui_color = "#e8defc"

    def __init__(
        self,
        *,
        project_name: str,
        run_name: str | None = None,
        external_id: str | None = None,
        tags: Sequence[str] | None = None,
        config: Mapping[str, Any] | str | None = None,
        system_metadata: Mapping[str, Any] | str | None = None,
        logger_settings: Mapping[str, Any] | str | None = None,
        pluto_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.logger_settings = logger_settings
        self.project_name = project_name
        self.run_name = run_name
        self.external_id = external_id
        self.tags = tags
        self.config = config
        self.system_metadata = system_metadata
        self.pluto_conn_id = pluto_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from modelops_provider.pluto.api import json_object
        from modelops_provider.pluto.hooks import PlutoHook

        ti = context["ti"]
        external_id = self.external_id if self.external_id is not None else default_external_id(ti.dag_id, ti.run_id)
        run_name = self.run_name if self.run_name is not None else f"{ti.dag_id}/{ti.run_id}"
        config = self.config if self.config is not None else dag_run_config(context)
        user_metadata = json_object("system_metadata", self.system_metadata)
        system_metadata = {
            **(json.loads(user_metadata) if user_metadata else {}),
            "airflow": airflow_metadata(context),
        }
        hook = PlutoHook(self.pluto_conn_id)
        run = hook.create_run(
            self.project_name,
            run_name,
            external_id=external_id,
            tags=self.tags,
            config=config,
            system_metadata=system_metadata,
            logger_settings=self.logger_settings,
        )
        if run.resumed and self.tags is not None:
            hook.update_tags(run.run_id, self.tags)
        if run.resumed and self.logger_settings is not None:
            # Section C says only that config is merged on resume: merge the settings explicitly (a
            # RUNNING -> RUNNING update deep-merges loggerSettings).
            hook.update_status(run.run_id, "RUNNING", logger_settings=self.logger_settings)
        url = hook.run_url(run)
        self.log.info(
            "%s Pluto run %s (runId %s, externalId %r) in project %r",
            "Resumed" if run.resumed else "Created",
            run.display_id or run.run_id,
            run.run_id,
            external_id,
            run.project_name or self.project_name,
        )
        self.log.info("Pluto run: %s", url)
        ti.xcom_push(key="runId", value=run.run_id)
        ti.xcom_push(key="displayId", value=run.display_id)
        ti.xcom_push(key="url", value=url)
        PlutoRunLink.push(context, url)
        self._pluto = (str(run.run_id), url)
        self.record_run(context, RUNNING, status="RUNNING")
        return {
            **run.to_json(),
            "projectName": run.project_name or self.project_name,
            "url": url,
            "externalId": external_id,
            "runName": run_name,
        }


class PlutoFinishRunOperator(PlutoRecorder, BaseOperator):
    """Close the Pluto run of this DAG run with its outcome (use it as a teardown task).

    Sets COMPLETED when every task of the DAG run succeeded or was skipped, FAILED otherwise, with
    the failed, upstream-failed and unfinished (not started, running, up for retry, deferred, ...)
    task ids in ``statusMetadata``; a mapped task counts as its worst instance. Teardown tasks other
    than this one count only when they fail the DAG run (``on_failure_fail_dagrun``), as Airflow
    itself decides. Before the
    status it optionally merges config and logs one metrics record; values missing from XCom (their
    task did not run) are skipped. The status is set even when config or metrics fail; the task then
    fails with that error.

    Without ``as_teardown()`` it runs with trigger rule ``all_done``.

    The status is read back after it is set: Pluto answers success even when it drops an update
    (a final status never replaces a more severe one), and its stale-run monitor may have closed
    the run FAILED while the DAG run worked, or a stop requested in Pluto CANCELLED it. Such a run is
    reported at ERROR level and handled by ``on_closed_by_server`` (see ``pluto.closing``):
    ``"reopen"`` (default) ends it with the DAG run's outcome, keeping the server's verdict in
    ``statusMetadata.closedByServer``; ``"keep"`` keeps the server's status.

    :param start_task_id: the PlutoStartRunOperator whose run to close; default the only one upstream.
    :param metrics: ``{name: number}`` (numeric strings are accepted, as templates render them). Templated.
    :param metrics_from_xcom: ``{name: task_id | [task_id, key]}``; a number is logged as ``name``, a
        dict's numeric leaves as ``name/<key>`` (other leaves are skipped).
    :param config: dict or JSON-object string, deep-merged into the run's config. Templated.
    :param config_from_xcom: ``{config key: task_id | [task_id, key]}``, any JSON value.
    :param step: the metrics record's step.
    :param on_closed_by_server: ``"reopen"`` (default) or ``"keep"``.
    :param pluto_conn_id: Airflow connection of type ``pluto``.
    """

    template_fields: Sequence[str] = ("start_task_id", "metrics", "config", "pluto_conn_id")
    template_fields_renderers = {"metrics": "json", "config": "json"}
    operator_extra_links = (PlutoRunLink(),)
    ui_color = "#e8defc"

    def __init__(
        self,
        *,
        start_task_id: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        metrics_from_xcom: Mapping[str, XComRef] | None = None,
        config: Mapping[str, Any] | str | None = None,
        config_from_xcom: Mapping[str, XComRef] | None = None,
        step: int = 0,
        on_closed_by_server: str = "reopen",
        pluto_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        from modelops_provider.pluto.closing import require_policy

        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.start_task_id = start_task_id
        self.metrics = metrics
        self.metrics_from_xcom = _check_refs("metrics_from_xcom", metrics_from_xcom)
        self.config = config
        self.config_from_xcom = _check_refs("config_from_xcom", config_from_xcom)
        self.step = require_count("step", step)
        self.on_closed_by_server = require_policy(on_closed_by_server)
        self.pluto_conn_id = pluto_conn_id

    # --- what to close, and with which outcome -----------------------------------------------
    def _start_task_id(self) -> str:
        return find_start_task_id(self, self.start_task_id)

    def tracked_task_states(self, context: Context) -> dict[str, str | None]:
        """States of the DAG run's tasks (mapped instances folded into their task id), minus this task
        and teardowns that do not fail the DAG run."""
        ti = context["ti"]
        raw = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        tasks = self.dag.task_dict if self.dag else {}
        tracked: dict[str, str | None] = {}
        for task_id, state in fold_mapped(raw, tasks).items():
            task = tasks.get(task_id)
            if task_id == self.task_id or (task is not None and task.is_teardown and not task.on_failure_fail_dagrun):
                continue
            if isinstance(task, PlutoKeepAliveOperator):
                continue  # it runs until this task has closed the run
            tracked[task_id] = state
        return tracked

    # --- values pulled from XCom ------------------------------------------------------------
    def _pull(self, context: Context, what: str, name: str, ref: tuple[str, str]) -> Any:
        value = context["ti"].xcom_pull(task_ids=ref[0], key=ref[1])
        if value is None:
            self.log.warning("%s[%r]: no XCom %r of task %r; skipped", what, name, ref[1], ref[0])
        return value

    def _metrics(self, context: Context) -> dict[str, float | int]:
        from modelops_provider.pluto.api import metric_data, metric_value

        data: dict[str, float | int] = dict(metric_data("metrics", self.metrics)) if self.metrics else {}
        for name, ref in self.metrics_from_xcom.items():
            value = self._pull(context, "metrics_from_xcom", name, ref)
            if value is None:
                continue
            if not isinstance(value, Mapping):
                data[name] = metric_value(f"metrics_from_xcom[{name!r}] (XCom of {ref[0]!r})", value)
                continue
            skipped = []
            for leaf, number in _flatten(name, value):
                try:
                    data[leaf] = metric_value(leaf, number)
                except ValueError:
                    skipped.append(leaf)
            if skipped:
                self.log.info("metrics_from_xcom[%r]: not numbers, not logged: %s", name, ", ".join(skipped))
        return data

    def _config(self, context: Context) -> dict[str, Any]:
        from modelops_provider.pluto.api import json_object

        text = json_object("config", self.config)
        config: dict[str, Any] = json.loads(text) if text else {}
        for key, ref in self.config_from_xcom.items():
            value = self._pull(context, "config_from_xcom", key, ref)
            if value is not None:
                config[key] = value
        if config:
            json_object("config_from_xcom", config)  # JSON-able, or ValueError before any request
        return config

    def execute(self, context: Context) -> dict[str, Any]:
        from modelops_provider.pluto.api import require_run_id
        from modelops_provider.pluto.hooks import PlutoHook

        ti = context["ti"]
        start_task_id = self._start_task_id()
        run = started_run(context, start_task_id)
        run_id = require_run_id(run["runId"], f"runId (XCom of {start_task_id!r})")
        # Everything is read and checked before the first request.
        states = self.tracked_task_states(context)
        status, failures = decide_status(states)
        metadata = {"dagId": ti.dag_id, "dagRunId": ti.run_id, **failures}
        metrics = self._metrics(context)
        config = self._config(context)
        hook = PlutoHook(self.pluto_conn_id)
        hook.get_conn()  # the connection (API key, URLs) is checked before any request
        url = run.get("url") or ""
        PlutoRunLink.push(context, url)

        error: Exception | None = None
        if config:
            try:
                hook.update_config(run_id, config)
            except Exception as exc:
                self.log.error("Could not update the config of Pluto run %s: %s", run_id, exc)
                error = exc
        if metrics:
            try:
                hook.log_metrics(run_id, run["projectName"], metrics, step=self.step, run_name=run.get("runName"))
                self.log.info("Logged %d metric(s) to Pluto run %s: %s", len(metrics), run_id, metrics)
            except Exception as exc:
                self.log.error("Could not log metrics to Pluto run %s: %s", run_id, exc)
                error = error or exc
        from modelops_provider.pluto.closing import close_run

        try:
            closed = close_run(hook, run_id, status, metadata, policy=self.on_closed_by_server, log=self.log)
        except Exception as exc:
            # Retried as idempotent already; left as it is, the Pluto run would stay RUNNING for good.
            shown = run.get("displayId") or run_id
            self.log.error("Could not set Pluto run %s (runId %s) to %s: %s", shown, run_id, status, exc)
            raise AirflowException(
                f"could not set Pluto run {shown} (runId {run_id}) to {status}; it still shows its previous "
                f"status ({url}): {exc}"
            ) from exc
        status = closed["status"]
        self._pluto = (str(run_id), url or None)
        troubles = [
            f"{words} {', '.join(failures[kind])}"
            for kind, words in (
                ("failedTasks", "failed:"),
                ("upstreamFailedTasks", "upstream failed:"),
                ("unfinishedTasks", "unfinished:"),
            )
            if failures[kind]
        ]
        from modelops_provider.pluto.api import wire_value

        self._pluto_details = {
            "closes": start_task_id,
            "metrics": {name: wire_value(value) for name, value in metrics.items()},  # JSON: NaN as "NaN"
            "passed": status == "COMPLETED",
            "verdict": "all tasks succeeded"
            if status == "COMPLETED"
            else "not successful" + (f" ({'; '.join(troubles)})" if troubles else ""),
        }
        # The start task's record: this one continues it (its start time and status events).
        opened = ti.xcom_pull(task_ids=start_task_id, key=RECORD_KEY)
        self._record = opened if isinstance(opened, dict) else None
        self.record_run(context, SUCCEEDED if status == "COMPLETED" else FAILED, status=status, error=error)
        # The run's last word, as every provider task ends: status, duration since the start task
        # opened it, the verdict (which tasks did not succeed) and the link.
        self.log_run_summary()
        if error is not None:
            raise error

        return {
            "runId": run_id,
            "status": status,
            "url": url,
            "metrics": {name: wire_value(value) for name, value in metrics.items()},  # XCom is JSON
            **metadata,
            "closedByServer": closed["closedByServer"],
        }


class PlutoKeepAliveOperator(BaseOperator):
    """Keep the DAG run's Pluto run alive: heartbeats while the DAG run works.

    Pluto's server marks a RUNNING run FAILED after 150 s without a heartbeat, or, for a run that
    never sent one, after 30 minutes without a metric or status change. Put this task downstream of
    the start task and upstream of nothing::

        start >> PlutoKeepAliveOperator(task_id="pluto_keep_alive")

    It always defers: a trigger pings ``POST {py_url}/api/runs/trigger`` every
    ``heartbeat_interval`` seconds from the triggerer (no worker slot is held for hours), and the
    task ends when the ping answers a final status (normally because the finish task closed the run),
    or at ``timeout`` (set one: if the finish task cannot close the run, pings go on until then).
    A run cancelled in Pluto (the ping answers
    CANCELLED) and a run the server reaped are reported in the task log; the task itself succeeds
    then, and the finish task applies its ``on_closed_by_server`` policy. Pings that fail for a
    transient reason are logged and retried at the next interval; a permanent error (bad key, run
    deleted) fails the task.

    Under ``dag.test()`` (one task at a time, triggers run inline) it cannot run alongside the work
    and is skipped without pinging.

    :param start_task_id: the PlutoStartRunOperator whose run to keep alive; default the only one upstream.
    :param heartbeat_interval: seconds between pings (default 30; at most 90, so that a run stays
        well inside Pluto's 150 s heartbeat grace even with the server's 30 s coalescing).
    :param timeout: stop pinging this many seconds after the task started (default: never).
    :param pluto_conn_id: Airflow connection of type ``pluto``.
    """

    template_fields: Sequence[str] = ("start_task_id", "pluto_conn_id")
    operator_extra_links = (PlutoRunLink(),)
    ui_color = "#e8defc"
    MAX_INTERVAL = 90.0

    def __init__(
        self,
        *,
        start_task_id: str | None = None,
        heartbeat_interval: float = 30.0,
        timeout: float | None = None,
        pluto_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start_task_id = start_task_id
        interval = seconds("heartbeat_interval", heartbeat_interval, minimum=0.0)
        assert interval is not None
        if not 0 < interval <= self.MAX_INTERVAL:
            raise ValueError(
                f"heartbeat_interval must be more than 0 and at most {self.MAX_INTERVAL:g} seconds "
                f"(Pluto reaps a run 150 s after its last heartbeat), got {heartbeat_interval!r}"
            )
        self.heartbeat_interval = interval
        self.timeout = seconds("timeout", timeout, allow_none=True, minimum=0.0)
        self.pluto_conn_id = pluto_conn_id

    def execute(self, context: Context) -> None:
        import time

        from modelops_provider.pluto.api import require_run_id
        from modelops_provider.pluto.triggers import PlutoKeepAliveTrigger

        ti = context["ti"]
        start_task_id = find_start_task_id(self, self.start_task_id)
        run = started_run(context, start_task_id)
        run_id = require_run_id(run["runId"], f"runId (XCom of {start_task_id!r})")
        if run.get("url"):
            PlutoRunLink.push(context, run["url"])
        self.log.info(
            "Keeping Pluto run %s alive: a heartbeat every %gs until it is closed",
            run.get("displayId") or run_id,
            self.heartbeat_interval,
        )
        self.defer(
            trigger=PlutoKeepAliveTrigger(
                conn_id=self.pluto_conn_id,
                run_id=run_id,
                dag_id=ti.dag_id,
                dag_run_id=ti.run_id,
                interval=self.heartbeat_interval,
                deadline=None if self.timeout is None else time.time() + self.timeout,
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from modelops_provider.pluto import triggers

        event = event or {}
        kind, run_id, status = event.get("status"), event.get("runId"), event.get("plutoStatus")
        pings = event.get("pings", 0)
        if kind == triggers.INLINE:
            raise AirflowSkipException(
                "dag.test() runs one task at a time, so no heartbeat can accompany the work; not pinging"
            )
        if kind == triggers.ERROR:
            raise AirflowException(f"Keep-alive of Pluto run {run_id} failed: {event.get('message')}")
        if kind == triggers.CLOSED and status == "CANCELLED":
            self.log.error(
                "Pluto run %s was CANCELLED in Pluto (a stop requested in its UI, or a threshold trigger). "
                "Airflow does not stop this DAG run's tasks for it; the finish task reports the DAG run's "
                "outcome (policy on_closed_by_server).",
                run_id,
            )
        elif kind == triggers.CLOSED and status == "FAILED" and not self._finish_done(context):
            self.log.error(
                "Pluto run %s was closed FAILED while the DAG run was still working (reaped by Pluto's "
                "stale-run monitor?); the finish task will report the DAG run's outcome.",
                run_id,
            )
        elif kind == triggers.CLOSED:
            self.log.info("Pluto run %s is %s; heartbeats stopped after %d ping(s)", run_id, status, pings)
        elif kind == triggers.TIMEOUT:
            self.log.warning("Keep-alive of Pluto run %s reached its timeout; heartbeats stopped", run_id)
        else:
            raise AirflowException(f"unexpected keep-alive event: {event!r}")
        return {"runId": run_id, "status": status, "stoppedBecause": kind, "pings": pings}

    def _finish_done(self, context: Context) -> bool:
        """Whether a PlutoFinishRunOperator of this DAG run has run (so FAILED is its verdict)."""
        ti = context["ti"]
        tasks = self.dag.task_dict if self.dag else {}
        finishes = [t for t, op in tasks.items() if isinstance(op, PlutoFinishRunOperator)]
        if not finishes:
            return False
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        return any(states.get(t) in ("success", "failed") for t in finishes)


def _flatten(prefix: str, value: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, item in value.items():
        name = f"{prefix}/{key}"
        if isinstance(item, Mapping):
            out.extend(_flatten(name, item))
        else:
            out.append((name, item))
    return out
