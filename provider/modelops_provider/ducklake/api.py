"""DuckLake Model Runs endpoints, each described once, and the calls built from them.

Paths are relative to the connection's base URL, which carries the ``/v1`` prefix. Every method
returns a *call* (see :mod:`modelops_provider.core.transport`) that the hook runs with a sync or an
async client. Arguments are checked before any request is sent.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from modelops_provider.core.adopt import create_or_adopt
from modelops_provider.core.errors import ApiError, InvalidArgumentError, ServerError
from modelops_provider.core.timestamps import parse_timestamp
from modelops_provider.core.transport import Call, Endpoint, Service, find_first, paged
from modelops_provider.core.validation import require_bool, require_name, require_uuid
from modelops_provider.core.waiting import Outcome, Snapshot
from modelops_provider.ducklake.models import (
    ModelRun,
    ModelRunStep,
    ModelRunStepList,
    ModelTestResult,
    ModelTestResultList,
    PaginatedModelRuns,
)
from modelops_provider.ducklake.report import RunReport
from modelops_provider.ducklake.status import RUN_STATUSES, run_outcome, run_snapshot, step_outcome

log = logging.getLogger(__name__)
T = TypeVar("T")

LIST_MODEL_RUNS: Endpoint[PaginatedModelRuns] = Endpoint("GET", "/model-runs", PaginatedModelRuns)
TRIGGER_MODEL_RUN: Endpoint[ModelRun] = Endpoint("POST", "/model-runs", ModelRun, creates=True)
GET_MODEL_RUN: Endpoint[ModelRun] = Endpoint("GET", "/model-runs/{run_id}", ModelRun)
# The 2026-03-01 API; newer servers moved cancel to ``/cancellations``. Either may answer with no body.
CANCEL_MODEL_RUN: Endpoint[ModelRun | None] = Endpoint(
    "POST", "/model-runs/{run_id}/cancel", ModelRun | None, idempotent=True
)
CANCEL_MODEL_RUN_NEWER: Endpoint[ModelRun | None] = Endpoint(
    "POST", "/model-runs/{run_id}/cancellations", ModelRun | None, idempotent=True
)
LIST_MODEL_RUN_STEPS: Endpoint[ModelRunStepList] = Endpoint("GET", "/model-runs/{run_id}/steps", ModelRunStepList)
LIST_MODEL_TEST_RESULTS: Endpoint[ModelTestResultList] = Endpoint(
    "GET", "/model-runs/{run_id}/steps/{step_id}/test-results", ModelTestResultList
)

# The cancel route a connection may pin (extra ``cancel_route``), by name.
CANCEL_ROUTES: dict[str, Endpoint[ModelRun | None]] = {
    "cancel": CANCEL_MODEL_RUN,
    "cancellations": CANCEL_MODEL_RUN_NEWER,
}
# Statuses that mean "this route does not exist here" for the cancel fallback.
ROUTE_MISSING = (404, 405)
# Which cancel route answered, per connection and base URL, for the life of the process.
_CANCEL_ROUTES: dict[tuple[str, str], Endpoint[ModelRun | None]] = {}
_CANCEL_ROUTES_LOCK = threading.Lock()

MAX_RESULTS_LIMIT = 1000
NAME_MAX = 255


def require_project_name(name: str, value: Any) -> str:
    return require_name(name, value, max_length=NAME_MAX)


# A model_names entry is a selector (CONTRACTS.md section G): ``name``, ``project.name``, ``+name``
# (with its upstream), ``name+`` (with its downstream), ``+name+``, ``tag:x``, ``project:p``, and
# ``state:modified`` (only as the only entry).
SELECTOR = re.compile(r"\+?(?:(?:tag|project|state):[^\s:+]+|[^\s:+]+)\+?")
SELECTOR_METHODS = ("tag", "project", "state")


def require_model_names(name: str, value: Any) -> list[str] | None:
    """Model selectors; None (or an empty list, which the server reads the same) runs every model."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of model names or selectors (or None for every model), got {value!r}")
    names = list(value)
    if len(names) > MAX_RESULTS_LIMIT:
        raise ValueError(f"{name} may hold at most {MAX_RESULTS_LIMIT} names, got {len(names)}")
    for item in names:
        if not isinstance(item, str) or len(item) > NAME_MAX or not SELECTOR.fullmatch(item):
            raise ValueError(
                f"{name} must hold non-empty model names without whitespace, or selectors (name, project.name, "
                f"+name, name+, tag:x, project:p, state:modified), got {item!r} in {value!r}"
            )
        if item.lstrip("+").startswith("state:") and (item != "state:modified" or len(names) > 1):
            raise ValueError(
                f"{name}: 'state:modified' is the only state selector and must be the only entry, got {value!r}"
            )
    return names or None


def require_target_name(name: str, value: Any) -> str | None:
    """A catalog, schema or environment name: sent only when set."""
    if value is None:
        return None
    return require_project_name(name, value)


def require_status(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if value not in RUN_STATUSES:
        raise ValueError(f"{name} must be one of {', '.join(RUN_STATUSES)}, got {value!r}")
    return str(value)


def require_max_results(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESULTS_LIMIT:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_RESULTS_LIMIT}, got {value!r}")
    return value


def _created_before(run: ModelRun, since: float) -> bool:
    created = parse_timestamp(run.created_at)
    return created is not None and created < since


def _same_request(run: ModelRun, body: dict[str, Any], since: float, principals: frozenset[str]) -> bool:
    """Could ``run`` be the one our (ambiguous) trigger request created?

    ``principals`` are the names the platform may know our credential by (empty when unknown, as
    for an API key): a run another principal triggered is never ours.
    """
    if run.project_name != body["project_name"]:
        return False
    created = parse_timestamp(run.created_at)
    if created is None or created < since:
        return False
    if run.trigger_type not in (None, "MANUAL"):
        return False
    if principals and run.triggered_by and run.triggered_by.strip().lower() not in principals:
        return False
    if run.full_refresh is not None and run.full_refresh != body.get("full_refresh", False):
        return False
    environment = body.get("environment_name")
    if environment and run.environment_name and run.environment_name != environment:
        return False
    wanted = body.get("model_names")
    return wanted is None or sorted(run.model_names or []) == sorted(wanted)


def _collect(fetch: Callable[[str | None], Call[tuple[list[T], str | None]]]) -> Call[list[T]]:
    """Every item of a list endpoint, page after page."""
    items: list[T] = []
    walk = paged(fetch)
    try:
        thunk = next(walk)
        while True:
            page = yield from thunk()
            items.extend(page[0])
            thunk = walk.send(page)
    except StopIteration:
        return items


@dataclass(frozen=True)
class DuckLakeSettings:
    """What the hook and the calls read from the connection besides the address and the secret."""

    host: str
    ui_url_template: str | None = None
    # "cancel" or "cancellations" to pin the cancel route; None: try /cancel, fall back, remember.
    cancel_route: str | None = None
    # Names the platform may know our credential by (lower-cased); empty when unknown.
    principals: frozenset[str] = frozenset()


class DuckLakeApi:
    """Call builders over one DuckLake service (resolved lazily, so async code can resolve it first)."""

    def __init__(self, service: Callable[[], Service], conn_id: str, settings: Callable[[], DuckLakeSettings]) -> None:
        self._service = service
        self.conn_id = conn_id
        self._settings = settings

    # --- runs ---------------------------------------------------------------------------------
    def list_model_runs_page(
        self, *, status: str | None = None, max_results: int | None = None, page_token: str | None = None
    ) -> Call[tuple[list[ModelRun], str | None]]:
        require_status("status", status)
        require_max_results("max_results", max_results)
        page = yield from self._service().call(
            LIST_MODEL_RUNS, query={"status": status, "max_results": max_results, "page_token": page_token}
        )
        return page.data, page.next_page_token

    def pages(
        self, *, status: str | None = None, max_results: int | None = None
    ) -> Callable[[str | None], Call[tuple[list[ModelRun], str | None]]]:
        """The page fetcher of the runs list (arguments are checked now, not at the first page)."""
        require_status("status", status)
        require_max_results("max_results", max_results)
        return lambda token: self.list_model_runs_page(status=status, max_results=max_results, page_token=token)

    def runs_with_status(self, status: str) -> Call[list[ModelRun]]:
        """Every run in ``status``, in pages of ``MAX_RESULTS_LIMIT``: bounded by how many runs are
        PENDING or RUNNING at once, not by the platform's history."""
        return (yield from _collect(self.pages(status=status, max_results=MAX_RESULTS_LIMIT)))

    def trigger_model_run(
        self,
        project_name: str,
        model_names: Sequence[str] | None = None,
        full_refresh: bool | None = None,
        *,
        target_catalog: str | None = None,
        target_schema: str | None = None,
        environment_name: str | None = None,
        unknown_since: float | None = None,
    ) -> Call[ModelRun]:
        """Trigger a run, sending only the fields given (the server's defaults apply to the rest; a
        server ignores the fields it does not know: ``target_*`` are 2026-03 fields,
        ``environment_name`` a newer one). Never twice
        (:func:`~modelops_provider.core.adopt.create_or_adopt`): after an ambiguous trigger, a MANUAL
        run of the same request created since by our principal is adopted. ``unknown_since``: an
        earlier try's trigger at that time had an unknown outcome."""
        body: dict[str, Any] = {"project_name": require_project_name("project_name", project_name)}
        optional = {
            "model_names": require_model_names("model_names", model_names),
            "full_refresh": require_bool("full_refresh", full_refresh, allow_none=True),
            "target_catalog": require_target_name("target_catalog", target_catalog),
            "target_schema": require_target_name("target_schema", target_schema),
            "environment_name": require_target_name("environment_name", environment_name),
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        service = self._service()

        def find(since: float) -> Call[ModelRun | None]:
            principals = self._settings().principals
            return (
                yield from find_first(
                    self._runs_created_since(since), lambda r: _same_request(r, body, since, principals)
                )
            )

        run = yield from create_or_adopt(
            service,
            what=f"trigger of a model run of project {project_name}",
            create=lambda: service.call(TRIGGER_MODEL_RUN, json=body),
            find=find,
            describe=lambda r: f"run {r.id} created at {r.created_at} by {r.triggered_by}",
            unknown_since=unknown_since,
        )
        if not run.id:
            raise ServerError(
                "the trigger answer carries no run id", method="POST", path="/model-runs", service=service.name
            )
        return run

    def _runs_created_since(self, since: float) -> Callable[[str | None], Call[tuple[list[ModelRun], str | None]]]:
        """The runs list (newest first) cut at the first run created before ``since``: once one page
        reaches back that far, no further page is fetched."""

        def fetch(token: str | None) -> Call[tuple[list[ModelRun], str | None]]:
            runs, next_token = yield from self.list_model_runs_page(page_token=token)
            recent = list(itertools.takewhile(lambda r: not _created_before(r, since), runs))
            return recent, (next_token if len(recent) == len(runs) else None)

        return fetch

    def get_model_run(self, run_id: str) -> Call[ModelRun]:
        run_id = require_uuid("run_id", run_id)
        return (yield from self._service().call(GET_MODEL_RUN, path={"run_id": run_id}))

    def model_run_snapshot(self, run_id: str) -> Call[Snapshot]:
        return run_snapshot((yield from self.get_model_run(run_id)))

    # --- cancel -------------------------------------------------------------------------------
    def cancel_model_run(self, run_id: str) -> Call[ModelRun | None]:
        """Cancel a PENDING or RUNNING run (a finished run answers 400).

        With the connection extra ``cancel_route`` set, only that route is used. Otherwise tries
        ``POST .../cancel`` (the 2026-03-01 API); if that route answers 404 or 405, tries
        ``POST .../cancellations`` (newer servers) once. The route that exists is remembered for this
        connection for the life of the process (a task try, in Airflow 3), and tried first next time.
        """
        run_id = require_uuid("run_id", run_id)
        service = self._service()
        pinned = self._settings().cancel_route
        if pinned is not None:
            return (yield from service.call(CANCEL_ROUTES[pinned], path={"run_id": run_id}))
        key = (self.conn_id, service.base_url)
        first = _CANCEL_ROUTES.get(key, CANCEL_MODEL_RUN)
        other = CANCEL_MODEL_RUN_NEWER if first is CANCEL_MODEL_RUN else CANCEL_MODEL_RUN
        try:
            run = yield from service.call(first, path={"run_id": run_id})
        except ApiError as exc:
            if exc.status not in ROUTE_MISSING:
                self._remember(key, first)  # the route exists; the run could not be cancelled
                raise
            log.info("%s answered HTTP %s; trying %s", first.path, exc.status, other.path)
            try:
                run = yield from service.call(other, path={"run_id": run_id})
            except ApiError as exc2:
                if exc2.status in ROUTE_MISSING:
                    # Neither route took it: report a 404 (the run may not exist), the first one if both are.
                    raise (exc2 if exc.status != 404 and exc2.status == 404 else exc) from None
                self._remember(key, other)
                raise
            self._remember(key, other)
            return run
        self._remember(key, first)
        return run

    @staticmethod
    def _remember(key: tuple[str, str], endpoint: Endpoint[ModelRun | None]) -> None:
        with _CANCEL_ROUTES_LOCK:
            if _CANCEL_ROUTES.get(key, CANCEL_MODEL_RUN) is not endpoint:
                log.info("DuckLake connection %r: cancelling with %s from now on", key[0], endpoint.path)
            _CANCEL_ROUTES[key] = endpoint

    def cancel_if_running(self, run_id: str) -> Call[ModelRun | None]:
        """Cancel a run; a run that already finished (the platform answers 400) is not an error."""
        try:
            return (yield from self.cancel_model_run(run_id))
        except InvalidArgumentError as exc:
            run = yield from self.get_model_run(run_id)
            if not run_outcome(run.status).terminal:
                raise
            log.info("DuckLake model run %s already ended %s; nothing to cancel (%s)", run_id, run.status, exc.message)
            return run

    # --- steps and test results ---------------------------------------------------------------
    def list_model_run_steps_page(
        self, run_id: str, page_token: str | None = None
    ) -> Call[tuple[list[ModelRunStep], str | None]]:
        run_id = require_uuid("run_id", run_id)
        page = yield from self._service().call(
            LIST_MODEL_RUN_STEPS, path={"run_id": run_id}, query={"page_token": page_token}
        )
        return page.data, page.next_page_token

    def step_pages(self, run_id: str) -> Callable[[str | None], Call[tuple[list[ModelRunStep], str | None]]]:
        """The page fetcher of a run's steps (the run id is checked now, not at the first page). The
        list is not paged; a ``next_page_token`` is followed if a server ever sends one."""
        run_id = require_uuid("run_id", run_id)
        return lambda token: self.list_model_run_steps_page(run_id, token)

    def list_model_test_results(self, run_id: str, step_id: str) -> Call[list[ModelTestResult]]:
        run_id = require_uuid("run_id", run_id)
        step_id = require_uuid("step_id", step_id)
        page = yield from self._service().call(LIST_MODEL_TEST_RESULTS, path={"run_id": run_id, "step_id": step_id})
        return page.data

    def run_report(self, run_id: str, run: ModelRun | None = None) -> Call[RunReport]:
        """What a run did: its steps, and the test results of every step that ran (steps skipped,
        cancelled or pending have none). ``run``: the run, if read already (one GET fewer)."""
        run_id = require_uuid("run_id", run_id)
        if run is None:
            run = yield from self.get_model_run(run_id)
        steps = yield from _collect(self.step_pages(run_id))
        tests: dict[str, list[ModelTestResult]] = {}
        for step in steps:
            if step_outcome(step.status) not in (Outcome.SUCCEEDED, Outcome.FAILED):
                continue  # never ran: no tests
            try:
                step_id = require_uuid("step_id", step.id)
            except ValueError:
                log.warning("Step of model %s has no usable id (%r); its tests are not read", step.model_name, step.id)
                continue
            tests[step.id or ""] = yield from self.list_model_test_results(run_id, step_id)
        return RunReport(run=run, steps=steps, tests=tests)
