"""Operators that start work in Foundry."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from modelops_provider.core import assets
from modelops_provider.core.errors import ApiError, RateLimitedError, ServerError, TransportError
from modelops_provider.core.links import XComLink
from modelops_provider.core.operators import RemoteJobOperator
from modelops_provider.core.records import RunRecorder
from modelops_provider.core.validation import require_rid, require_text, seconds
from modelops_provider.core.waiting import Outcome, Snapshot
from modelops_provider.foundry.assets import MODEL_VERSIONS_ALIAS, model_asset_uri
from modelops_provider.foundry.checks import (
    UNMEASURED_RULES,
    Threshold,
    check_answer,
    describe_expected,
    judge,
    non_negative,
    parse_thresholds,
    short,
    table,
)
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.foundry.links import ModelStudioRunLink, model_version_of
from modelops_provider.foundry.outputs import VersionRef, resolve_version
from modelops_provider.foundry.registry_api import (
    INFERENCE_FAILURE,
    INFERENCE_INVALID_INPUT,
    INFERENCE_TIMEOUT,
    check_inference_input,
)
from modelops_provider.foundry.triggers import ModelStudioRunTrigger

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from modelops_provider.foundry.models import Experiment


class ModelStudioLaunchOperator(RemoteJobOperator):
    """Launch a training run of a Foundry Model Studio and (by default) wait for its build.

    Returns the run as a JSON-able dict (camelCase, as Foundry spells it) with ``resolvedOutputs``;
    downstream tasks read the new model version from
    ``resolvedOutputs.<alias>.modelVersionRid``. Before waiting it pushes ``run_id``, ``build_rid``
    and ``model_studio_rid`` to XCom and the "Model Studio run" link.

    A task retry re-attaches to the run an earlier try launched (Airflow 3.3's task state store) while
    that run is running or succeeded; only a failed or cancelled run is launched anew.

    :param model_studio_rid: RID of the Model Studio (templated).
    :param wait_for_completion: wait for the build to end (default) or return right after launch.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: seconds between looks at the run.
    :param timeout: seconds from launch after which the build is cancelled and the task fails.
    :param foundry_conn_id: Airflow connection of type ``foundry``.
    :param emit_asset_events: emit an asset event per model version produced (default True); see
        :mod:`modelops_provider.foundry.assets` for the URI scheme.
    """

    template_fields: Sequence[str] = ("model_studio_rid", "foundry_conn_id")
    operator_extra_links = (ModelStudioRunLink(),)
    hook_class = FoundryHook
    trigger_class = ModelStudioRunTrigger
    external_id_key = "foundry_model_studio_run"
    what = "Model Studio run"
    service = "Foundry"
    kind = "training run"
    ui_color = "#d6e4f0"

    def __init__(
        self,
        *,
        model_studio_rid: str,
        foundry_conn_id: str = FoundryHook.default_conn_name,
        emit_asset_events: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_studio_rid = model_studio_rid
        self.foundry_conn_id = foundry_conn_id
        self.emit_asset_events = emit_asset_events
        if emit_asset_events:
            self.outlets = [*self.outlets, assets.alias(MODEL_VERSIONS_ALIAS)]

    @property
    def conn_id(self) -> str:
        return self.foundry_conn_id

    def validate(self) -> None:
        require_rid("model_studio_rid", self.model_studio_rid)

    def submit(self, hook: FoundryHook, context: Context) -> dict[str, Any]:
        run = hook.call(hook.api.launch_model_studio(self.model_studio_rid, unknown_since=self.unknown_since))
        return {
            "model_studio_rid": self.model_studio_rid,
            "run_id": run.run_id,
            "build_rid": run.build_rid,
            "config_version": run.config_version,
        }

    def describe(self, job: dict[str, Any]) -> str:
        return f"Model Studio run {job.get('run_id')} (build {job.get('build_rid')})"

    def link_urls(self, hook: FoundryHook, job: dict[str, Any]) -> dict[type[XComLink], str]:
        return {ModelStudioRunLink: hook.run_url(job["model_studio_rid"], job["run_id"])}

    def on_success(self, hook: FoundryHook, job: dict[str, Any], snap: Snapshot, context: Context) -> Any:
        run = snap.data
        if self.emit_asset_events:
            for alias_name, output in (run.get("resolvedOutputs") or {}).items():
                if output.get("type") != "model" or not output.get("modelRid"):
                    continue
                uri = model_asset_uri(hook.service.base_url, output["modelRid"])
                extra = {
                    "modelVersionRid": output.get("modelVersionRid"),
                    "runId": run.get("runId"),
                    "configVersion": run.get("configVersion"),
                    "outputAlias": alias_name,
                    "modelStudioRid": job["model_studio_rid"],
                }
                assets.emit(context, MODEL_VERSIONS_ALIAS, uri, extra, model=True)
                self.log.info("Asset event for %s: %s", uri, extra)
        self._version_metrics = self._experiment_metrics(hook, run)
        return run

    def _experiment_metrics(self, hook: FoundryHook, run: dict[str, Any]) -> dict[str, float] | None:
        """The metrics of the version produced (the last value of each series of its experiment), for
        the run record and the task's Remote run tab. One read; if it fails the training still
        succeeded, so the record goes without them."""
        for output in (run.get("resolvedOutputs") or {}).values():
            if not isinstance(output, dict) or not output.get("modelRid") or not output.get("experimentRid"):
                continue
            try:
                experiment = hook.get_experiment(output["modelRid"], output["experimentRid"])
            except ApiError as exc:
                self.log.warning("Could not read the metrics of experiment %s: %s", output["experimentRid"], exc)
                return None
            names = [s.name for s in experiment.series] + [m.series_name for m in experiment.summary_metrics]
            return {name: value for name in names if (value := experiment.metric(name, "LAST")) is not None}
        return None

    def failure_message(self, hook: FoundryHook, job: dict[str, Any], snap: Snapshot) -> str:
        return (
            f"Model Studio run {job['run_id']} (build {job['build_rid']}) ended {snap.status}. "
            f"See {hook.run_url(job['model_studio_rid'], job['run_id'])}"
        )

    # The produced version's metrics, once the run succeeded.
    _version_metrics: dict[str, float] | None = None

    def record_details(self, snap: Snapshot | None, result: Any, error: BaseException | None) -> dict[str, Any]:
        return {"model_version": model_version_of(snap.data if snap else None), "metrics": self._version_metrics}


# --- the verification chain: metrics gate, promotion, inference check ------------------------------
class ModelMetricsCheckOperator(RunRecorder, BaseOperator):
    """Gate a model version on its experiment's metrics, and optionally on production's.

    Finds the version's experiment (``resolvedOutputs[output_alias].experimentRid`` of a launch task's
    run, the version's ``linkedExperiment`` — for a promoted copy, that of the version it was promoted
    from — or the experiment whose ``jobRid`` is the run's job) and checks each threshold::

        thresholds=[
            {"metric": "accuracy", "comparison": ">=", "value": 0.90, "tolerance": 0.005},
            {"metric": "loss", "aggregation": "MIN", "comparison": "<=", "value": 0.30},
        ]

    ``aggregation`` is MIN, MAX or LAST (default LAST); ``comparison`` is ``>=``, ``>``, ``<=``, ``<``
    or ``==``. With ``no_worse_than=<liveDeploymentRid>``, each threshold that has a ``tolerance`` is
    also compared with the same metric of the version that deployment serves now: it may be worse by
    at most ``tolerance`` (higher is better for ``>=``/``>``, lower for ``<=``/``<``).

    **Production without an experiment** (no experiment on the served version or up its promotion
    chain, or one without that metric): with ``if_production_unmeasured="fail"`` (default) each
    compared metric fails, saying so; with ``"pass"`` the absolute bars alone decide and the table
    shows the production value as missing.

    A metric missing from the candidate's experiment always fails. The task logs a table (metric,
    value, bar, production's value, tolerance, verdict), pushes ``verdicts`` (a list of dicts) and
    ``production`` to XCom, fails naming every failing metric and its margin (no retry: the numbers
    will not change), and returns the metrics it checked, ``{metric or metric_min/_max: value}``.

    :param model_version: a model version RID, or a launch task's return value (templated).
    :param model_rid: the model of a bare version RID (templated; read from the run otherwise).
    :param output_alias: which output of the run (default ``model``).
    :param thresholds: list of dicts as above (templated).
    :param no_worse_than: live deployment RID whose served version is the reference (templated).
    :param if_production_unmeasured: ``"fail"`` (default) or ``"pass"``, see above.
    """

    template_fields: Sequence[str] = (
        "model_version",
        "model_rid",
        "output_alias",
        "thresholds",
        "no_worse_than",
        "if_production_unmeasured",
        "foundry_conn_id",
    )
    template_fields_renderers = {"thresholds": "json"}
    ui_color = "#e2f0d9"
    service = "Foundry"
    kind = "metrics gate"

    def __init__(
        self,
        *,
        model_version: str | dict[str, Any],
        thresholds: list[dict[str, Any]],
        model_rid: str | None = None,
        output_alias: str = "model",
        no_worse_than: str | None = None,
        if_production_unmeasured: str = "fail",
        foundry_conn_id: str = FoundryHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_version = model_version
        self.model_rid = model_rid
        self.output_alias = output_alias
        self.thresholds = thresholds
        self.no_worse_than = no_worse_than
        self.if_production_unmeasured = if_production_unmeasured
        self.foundry_conn_id = foundry_conn_id

    def _validated(self) -> tuple[VersionRef, list[Threshold]]:
        thresholds = parse_thresholds(self.thresholds)
        if self.if_production_unmeasured not in UNMEASURED_RULES:
            raise ValueError(
                f"if_production_unmeasured must be 'fail' or 'pass', got {self.if_production_unmeasured!r}"
            )
        if self.model_rid not in (None, ""):
            require_rid("model_rid", self.model_rid)
        ref = resolve_version(self.model_version, self.output_alias, "model_version", model_rid=self.model_rid or None)
        if ref is None:
            raise ValueError(
                f"model_version must be a model version RID or a launch task's run, got {self.model_version!r}"
            )
        if ref.model_rid is None:
            raise ValueError(f"model_rid is needed with a bare model version RID ({ref.model_version_rid})")
        compared = [t.key for t in thresholds if t.tolerance is not None]
        if self.no_worse_than not in (None, ""):
            require_rid("no_worse_than", self.no_worse_than)
            if not compared:
                raise ValueError("no_worse_than is set but no threshold has a 'tolerance': nothing would be compared")
        elif compared:
            raise ValueError(
                f"thresholds {compared} have a 'tolerance' but no_worse_than (the live deployment) is not set"
            )
        return ref, thresholds

    def execute(self, context: Context) -> dict[str, float]:
        ref, thresholds = self._validated()
        hook = FoundryHook(self.foundry_conn_id)
        record: dict[str, Any] = {"model_version": ref.model_version_rid}  # the run record's details
        self.record_known(ref.model_version_rid, hook.model_url(str(ref.model_rid)), record)
        with self.recording(context):
            return self._gate_check(context, hook, ref, thresholds, record)

    def _gate_check(
        self,
        context: Context,
        hook: FoundryHook,
        ref: VersionRef,
        thresholds: list[Threshold],
        record: dict[str, Any],
    ) -> dict[str, float]:
        experiment = self._experiment(hook, ref)
        if experiment is None:
            self.log.warning("Model version %s has no experiment: every metric is missing", ref.model_version_rid)
        else:
            self.log.info(
                "Model version %s: experiment %s (%s)", ref.model_version_rid, experiment.rid, experiment.status
            )
        production: dict[str, Any] | None = None
        prod_experiment = None
        if self.no_worse_than:
            production, prod_experiment = self._production(hook, str(self.no_worse_than))
        label = f"production ({production['modelVersionRid']})" if production else "production"
        verdicts = [
            judge(
                t,
                experiment.metric(t.metric, t.aggregation) if experiment is not None else None,
                production=prod_experiment.metric(t.metric, t.aggregation) if prod_experiment is not None else None,
                production_measured=prod_experiment is not None,
                compare_production=production is not None,
                unmeasured=self.if_production_unmeasured,
                production_label=label,
            )
            for t in thresholds
        ]
        metrics = {v.threshold.key: v.value for v in verdicts if v.value is not None}
        self.log.info(
            "Metrics of %s%s:\n%s",
            ref.model_version_rid,
            f" against {label}" if production else "",
            table(verdicts, with_production=production is not None),
        )
        ti = context["ti"]
        # Pushed before failing: a teardown (Pluto) records the verdicts either way.
        ti.xcom_push(key="verdicts", value=[v.to_json() for v in verdicts])
        ti.xcom_push(key="metrics", value=metrics)
        if production is not None:
            if prod_experiment is not None:
                production["metrics"] = {
                    t.key: value
                    for t in thresholds
                    if (value := prod_experiment.metric(t.metric, t.aggregation)) is not None
                }
            ti.xcom_push(key="production", value=production)
        failed = [reason for v in verdicts for reason in v.reasons]
        passed = sum(1 for v in verdicts if not v.reasons)
        verdict = f"{passed} of {len(verdicts)} threshold(s) met" + (f": {'; '.join(failed)}" if failed else "")
        record.update(metrics=metrics, passed=not failed, verdict=verdict)
        self._record_snap = Snapshot(
            outcome=Outcome.FAILED if failed else Outcome.SUCCEEDED,
            status="FAILED" if failed else "PASSED",
            summary=verdict,
        )
        if failed:
            raise AirflowFailException(
                f"Model version {ref.model_version_rid} failed the metrics gate ({len(failed)} problem(s)): "
                + "; ".join(failed)
            )
        self.log.info("Model version %s passed every threshold", ref.model_version_rid)
        return metrics

    def _experiment(self, hook: FoundryHook, ref: VersionRef) -> Experiment | None:
        model_rid = str(ref.model_rid)
        if ref.experiment_rid:
            return hook.get_experiment(model_rid, ref.experiment_rid)
        _, experiment = hook.call(hook.registry.experiment_of_version(model_rid, ref.model_version_rid))
        if experiment is None and ref.job_rid:
            experiment = hook.call(hook.registry.find_experiment_by_job(model_rid, ref.job_rid))
        return experiment

    def _production(self, hook: FoundryHook, live_rid: str) -> tuple[dict[str, Any], Experiment | None]:
        deployment = hook.get_live_deployment(live_rid)
        served = deployment.model_version
        if served is None or not served.model_rid or not served.model_version_rid:
            raise AirflowFailException(f"Live deployment {live_rid} serves no model version to compare with")
        _, experiment = hook.call(hook.registry.experiment_of_version(served.model_rid, served.model_version_rid))
        production = {
            "liveDeploymentRid": live_rid,
            "modelRid": served.model_rid,
            "modelVersionRid": served.model_version_rid,
            "experimentRid": experiment.rid if experiment is not None else None,
        }
        if experiment is None:
            self.log.warning(
                "Production (%s, version %s) has no experiment; rule if_production_unmeasured=%r",
                live_rid,
                served.model_version_rid,
                self.if_production_unmeasured,
            )
        else:
            self.log.info("Production serves %s, measured by experiment %s", served.model_version_rid, experiment.rid)
        return production, experiment


class PromoteModelVersionOperator(RunRecorder, BaseOperator):
    """Promote a model version to a branch of a (target) model; returns the new version's RID.

    Promoting copies the version (new RID) and makes it the newest on ``branch``; live deployments
    tracking that branch then roll it out (wait for it with ``LiveDeploymentSensor`` given this task's
    output). Emits an asset event on ``foundry://<host>/models/<model_rid>`` (extra:
    ``modelVersionRid``, ``sourceModelVersionRid``, ``branch``, ``promoted``), like the launch operator.

    **Idempotent:** if the newest version on the branch already is a promoted copy of the source (an
    earlier try promoted it, or its answer was lost), that copy is returned and nothing is promoted
    again. A version promoted long ago and since superseded is promoted anew (a rollback).

    :param model_rid: the target model (templated).
    :param model_version: the source version: a RID or a launch task's run (templated).
    :param branch: the target branch (templated; None: Foundry's default, master on most enrollments).
    :param output_alias: which output of the run (default ``model``).
    """

    template_fields: Sequence[str] = ("model_rid", "model_version", "branch", "output_alias", "foundry_conn_id")
    ui_color = "#fce4d6"
    service = "Foundry"
    kind = "promotion"

    def __init__(
        self,
        *,
        model_rid: str,
        model_version: str | dict[str, Any],
        branch: str | None = None,
        output_alias: str = "model",
        foundry_conn_id: str = FoundryHook.default_conn_name,
        emit_asset_events: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_rid = model_rid
        self.model_version = model_version
        self.branch = branch
        self.output_alias = output_alias
        self.foundry_conn_id = foundry_conn_id
        self.emit_asset_events = emit_asset_events
        if emit_asset_events:
            self.outlets = [*self.outlets, assets.alias(MODEL_VERSIONS_ALIAS)]

    def execute(self, context: Context) -> str:
        require_rid("model_rid", self.model_rid)
        if self.branch is not None:
            require_text("branch", self.branch)
        ref = resolve_version(self.model_version, self.output_alias, "model_version")
        if ref is None:
            raise ValueError(
                f"model_version must be a model version RID or a launch task's run, got {self.model_version!r}"
            )
        hook = FoundryHook(self.foundry_conn_id)
        branch = self.branch or "(default)"
        record: dict[str, Any] = {"verdict": f"not promoted to branch {branch}", "passed": False}
        # Known once the input is valid: a promotion that fails is listed with the version it tried.
        self.record_known(ref.model_version_rid, hook.model_url(self.model_rid), record)
        with self.recording(context):
            return self._promote(context, hook, ref, record)

    def _promote(self, context: Context, hook: FoundryHook, ref: VersionRef, record: dict[str, Any]) -> str:
        promoted = hook.promote_model_version(self.model_rid, ref.model_version_rid, self.branch)
        self.log.info(
            "Promoted %s to branch %s of %s: new version %s",
            ref.model_version_rid,
            self.branch or "(default)",
            self.model_rid,
            promoted.rid,
        )
        if self.emit_asset_events:
            uri = model_asset_uri(hook.service.base_url, self.model_rid)
            extra = {
                "modelVersionRid": promoted.rid,
                "sourceModelVersionRid": ref.model_version_rid,
                "branch": self.branch,
                "promoted": True,
            }
            assets.emit(context, MODEL_VERSIONS_ALIAS, uri, extra, model=True)
            self.log.info("Asset event for %s: %s", uri, extra)
        record.update(
            model_version=promoted.rid, verdict=f"promoted to branch {self.branch or '(default)'}", passed=True
        )
        self._record_snap = Snapshot(outcome=Outcome.SUCCEEDED, status="PROMOTED", summary=record["verdict"])
        return promoted.rid


class LiveDeploymentInferenceOperator(RunRecorder, BaseOperator):
    """Send known inputs through a live deployment (``transformJson``) and check the answers.

    Each case is ``{"input": {...}, "expected": ..., "tolerance": 1e-6}``: ``input`` is the request's
    ``input`` object (``{inputName: value}``); ``expected`` is a JSON subset of the ``output`` object
    (dicts may have more keys, lists match element by element, numbers within ``tolerance``) or a
    callable taking the output and returning True (False, or an AssertionError, fails it).

    Not-ready answers are ridden out until ``timeout`` seconds have passed since the task started:
    ``InferenceTimeout``, 5xx/429 and unreachable answers, and ``InferenceFailure`` while the
    deployment is not ACTIVE and ready (re-read after each such answer). ``InferenceInvalidInput``,
    and ``InferenceFailure`` from a ready deployment, fail at once. With ``expected_model_version``
    (a RID or a launch task's run) the operator refuses to judge a deployment serving another version,
    checked before the first request, after a failed one, and after the last.

    Logs each request's latency (and pushes ``latency_ms``, ``{"case_1": ms, ..., "max": ms}``, to
    XCom); fails listing every wrong case with its input, answer and expectation (no retry); returns
    ``{"liveDeploymentRid", "modelVersionRid", "results": [{"input", "output", "latencyMs", "passed"}],
    "latencyMs": [...]}``.

    :param live_deployment_rid: the deployment (templated).
    :param cases: list of ``{"input", "expected", "tolerance"?}`` (templated).
    :param expected_model_version: the version that must be served: a RID or a launch task's run (templated).
    :param tolerance: default numeric tolerance of every case (default 1e-6).
    :param timeout: seconds, from the task's start, to ride out not-ready answers (default 300).
    :param retry_interval: seconds between tries of a not-ready answer (default 5).
    """

    template_fields: Sequence[str] = (
        "live_deployment_rid",
        "cases",
        "expected_model_version",
        "output_alias",
        "foundry_conn_id",
    )
    template_fields_renderers = {"cases": "json"}
    ui_color = "#ddebf7"
    service = "Foundry"
    kind = "inference check"

    def __init__(
        self,
        *,
        live_deployment_rid: str,
        cases: list[dict[str, Any]],
        expected_model_version: str | dict[str, Any] | None = None,
        output_alias: str = "model",
        tolerance: float = 1e-6,
        timeout: float = 300.0,
        retry_interval: float = 5.0,
        foundry_conn_id: str = FoundryHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.live_deployment_rid = live_deployment_rid
        self.cases = cases
        self.expected_model_version = expected_model_version
        self.output_alias = output_alias
        self.tolerance = non_negative("tolerance", tolerance)
        self.inference_timeout = seconds("timeout", timeout)
        self.retry_interval = seconds("retry_interval", retry_interval)
        self.foundry_conn_id = foundry_conn_id

    def _validated(self) -> tuple[list[dict[str, Any]], str | None]:
        require_rid("live_deployment_rid", self.live_deployment_rid)
        if not isinstance(self.cases, list) or not self.cases:
            raise ValueError(f"cases must be a non-empty list of {{'input', 'expected'}} dicts, got {self.cases!r}")
        cases = []
        for i, case in enumerate(self.cases):
            if not isinstance(case, dict) or "input" not in case or "expected" not in case:
                raise ValueError(f"cases[{i}] must be a dict with 'input' and 'expected', got {case!r}")
            unknown = set(case) - {"input", "expected", "tolerance"}
            if unknown:
                raise ValueError(f"cases[{i}] has unknown keys {sorted(unknown)}")
            check_inference_input(case["input"], f"cases[{i}].input")
            tolerance = non_negative(f"cases[{i}].tolerance", case.get("tolerance", self.tolerance))
            cases.append({**case, "tolerance": tolerance})
        ref = resolve_version(self.expected_model_version, self.output_alias, "expected_model_version")
        return cases, None if ref is None else ref.model_version_rid

    def execute(self, context: Context) -> dict[str, Any]:
        cases, expected_version = self._validated()
        hook = FoundryHook(self.foundry_conn_id)
        record: dict[str, Any] = {}  # the run record's details, filled in as the check goes
        self.record_known(self.live_deployment_rid, hook.live_deployment_url(self.live_deployment_rid), record)
        self.record_run(context)  # listed as running while not-ready answers are ridden out
        with self.recording(context):
            return self._run_cases(context, hook, cases, expected_version, record)

    def _run_cases(
        self,
        context: Context,
        hook: FoundryHook,
        cases: list[dict[str, Any]],
        expected_version: str | None,
        record: dict[str, Any],
    ) -> dict[str, Any]:
        deadline = time.monotonic() + float(self.inference_timeout or 0)
        served = self._served(hook, expected_version, "before the first request")[0]
        record["model_version"] = served
        results: list[dict[str, Any]] = []
        for i, case in enumerate(cases, start=1):
            output, latency_ms = self._infer(hook, case["input"], expected_version, deadline)
            problems = check_answer(case["expected"], output, float(case["tolerance"]))
            results.append({"input": case["input"], "output": output, "latencyMs": latency_ms, "passed": not problems})
            self.log.info(
                "Case %d/%d: %s in %.1f ms -> %s",
                i,
                len(cases),
                "PASS" if not problems else "FAIL",
                latency_ms,
                short(output),
            )
            if problems:
                results[-1]["problems"] = problems
                results[-1]["expected"] = describe_expected(case["expected"])
        if expected_version is not None:
            self._served(hook, expected_version, "after the last request")
        latencies = [r["latencyMs"] for r in results]
        # Numbers a teardown can log as metrics (e.g. Pluto's metrics_from_xcom), pass or fail.
        context["ti"].xcom_push(
            key="latency_ms",
            value={**{f"case_{i}": ms for i, ms in enumerate(latencies, start=1)}, "max": max(latencies)},
        )
        self.log.info(
            "Latency per request (ms): %s; max %.1f", ", ".join(f"{ms:.1f}" for ms in latencies), max(latencies)
        )
        wrong = [(i, r) for i, r in enumerate(results, start=1) if not r["passed"]]
        verdict = (
            f"{len(results) - len(wrong)} of {len(results)} case(s) answered as expected; max {max(latencies):.1f} ms"
        )
        record.update(
            passed=not wrong,
            verdict=verdict,
            metrics={
                "latency_ms_max": max(latencies),
                **{f"latency_ms_case_{i}": ms for i, ms in enumerate(latencies, 1)},
            },
        )
        self._record_snap = Snapshot(
            outcome=Outcome.FAILED if wrong else Outcome.SUCCEEDED,
            status="FAILED" if wrong else "PASSED",
            summary=verdict,
        )
        if wrong:
            raise AirflowFailException(
                f"{len(wrong)} of {len(results)} inference check(s) on {self.live_deployment_rid} failed: "
                + " | ".join(
                    f"case {i}: input {short(r['input'])} answered {short(r['output'])}; expected "
                    f"{r['expected']}: {'; '.join(r['problems'])}"
                    for i, r in wrong
                )
            )
        return {
            "liveDeploymentRid": self.live_deployment_rid,
            "modelVersionRid": served,
            "results": results,
            "latencyMs": latencies,
        }

    def _served(self, hook: FoundryHook, expected: str | None, when: str) -> tuple[str | None, bool]:
        """(served version, ACTIVE and ready); refuses (fails) when it is not the expected version."""
        deployment = hook.get_live_deployment(self.live_deployment_rid)
        version = deployment.model_version.model_version_rid if deployment.model_version else None
        if expected is not None and version != expected:
            raise AirflowFailException(
                f"Live deployment {self.live_deployment_rid} serves {version}, not the expected {expected} "
                f"({when}); not judging another version's answers"
            )
        return version, deployment.status.state == "ACTIVE" and deployment.status.is_ready

    def _infer(
        self, hook: FoundryHook, payload: dict[str, Any], expected: str | None, deadline: float
    ) -> tuple[Any, float]:
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                output = hook.transform_json(self.live_deployment_rid, payload)
                return output, round((time.monotonic() - started) * 1000, 1)
            except ApiError as exc:
                if not self._transient(hook, exc, expected):
                    raise AirflowFailException(
                        f"Inference on {self.live_deployment_rid} failed for input {short(payload)}: {exc}"
                    ) from None
                reason = str(exc)
            if time.monotonic() + float(self.retry_interval or 0) > deadline:
                raise AirflowFailException(
                    f"Live deployment {self.live_deployment_rid} did not answer input {short(payload)} within "
                    f"timeout={self.inference_timeout:g}s ({attempt} attempts); last answer: {reason}"
                )
            self.log.warning(
                "Not answered yet (attempt %d): %s; trying again in %gs", attempt, reason, self.retry_interval
            )
            time.sleep(float(self.retry_interval or 0))

    def _transient(self, hook: FoundryHook, exc: ApiError, expected: str | None) -> bool:
        """Is this answer one to ride out (not ready, timed out, overloaded, unreachable)?"""
        if exc.error_name == INFERENCE_INVALID_INPUT:
            return False
        if exc.error_name == INFERENCE_TIMEOUT or isinstance(exc, (ServerError, RateLimitedError, TransportError)):
            return True
        if exc.error_name == INFERENCE_FAILURE:
            # A failure while the deployment is starting or scaled to zero is "not ready yet"; from
            # a ready deployment it is the model's own failure.
            _, ready = self._served(hook, expected, "after a failed request")
            return not ready
        return False
