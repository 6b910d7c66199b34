"""Foundry endpoints, each described once, and the calls built from them.

Every method returns a *call* (see :mod:`modelops_provider.core.transport`) that the hook runs with a
sync or an async client. Arguments are validated when the call starts, before any request is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from modelops_provider.core.adopt import create_or_adopt
from modelops_provider.core.errors import ApiError, NotFoundError, PermissionDeniedError
from modelops_provider.core.timestamps import parse_timestamp
from modelops_provider.core.transport import Call, Endpoint, Service, find_first
from modelops_provider.core.validation import require_rid, require_text
from modelops_provider.core.waiting import Snapshot
from modelops_provider.foundry.models import (
    Build,
    BuildState,
    CurrentUser,
    GetBuildsBatchResponse,
    ListModelStudioRunsResponse,
    LiveDeployment,
    ModelStudioRun,
)
from modelops_provider.foundry.status import LiveDeploymentWatch, run_snapshot

log = logging.getLogger(__name__)

PREVIEW = {"preview": True}

LAUNCH_MODEL_STUDIO: Endpoint[ModelStudioRun] = Endpoint(
    "POST", "/api/v2/models/modelStudios/{modelStudioRid}/launch", ModelStudioRun, query=PREVIEW, creates=True
)
LIST_MODEL_STUDIO_RUNS: Endpoint[ListModelStudioRunsResponse] = Endpoint(
    "GET", "/api/v2/models/modelStudios/{modelStudioRid}/runs", ListModelStudioRunsResponse, query=PREVIEW
)
GET_BUILD: Endpoint[Build] = Endpoint("GET", "/api/v2/orchestration/builds/{buildRid}", Build)
GET_BUILDS_BATCH: Endpoint[GetBuildsBatchResponse] = Endpoint(
    "POST", "/api/v2/orchestration/builds/getBatch", GetBuildsBatchResponse, idempotent=True
)
# getBatch reads at most this many builds per request (CONTRACTS.md section D).
BUILDS_BATCH_MAX = 100
CANCEL_BUILD: Endpoint[None] = Endpoint("POST", "/api/v2/orchestration/builds/{buildRid}/cancel", idempotent=True)
GET_LIVE_DEPLOYMENT: Endpoint[LiveDeployment] = Endpoint(
    "GET", "/api/v2/models/liveDeployments/{liveDeploymentRid}", LiveDeployment, query=PREVIEW
)
GET_CURRENT_USER: Endpoint[CurrentUser] = Endpoint("GET", "/api/v2/admin/users/getCurrent", CurrentUser)

# Runs per page when one run is looked up: the list is newest first, so a run being waited for is
# nearly always on the first page; the size only bounds a walk back through an old studio's history.
RUN_LOOKUP_PAGE_SIZE = 100


class FoundryApi:
    """Call builders over one Foundry service (resolved lazily, so async code can resolve it first)."""

    def __init__(self, service: Callable[[], Service]) -> None:
        self._service = service

    def launch_model_studio(self, model_studio_rid: str, *, unknown_since: float | None = None) -> Call[ModelStudioRun]:
        """Launch a training run, never twice (:func:`~modelops_provider.core.adopt.create_or_adopt`):
        after an ambiguous launch, a run of this studio started since by the credentials' own user is
        adopted. ``unknown_since``: an earlier try's launch at that time had an unknown outcome."""
        require_rid("model_studio_rid", model_studio_rid)
        service = self._service()
        me: list[str | None] = []

        def find(since: float) -> Call[ModelStudioRun | None]:
            if not me:  # who we are, asked once
                me.append((yield from self._current_user_id()))

            def ours(run: ModelStudioRun) -> bool:
                started = parse_timestamp(run.started_time) or 0.0
                return started >= since and (me[0] is None or run.started_by in (None, me[0]))

            return (yield from self.find_model_studio_run(model_studio_rid, ours, page_size=RUN_LOOKUP_PAGE_SIZE))

        return (
            yield from create_or_adopt(
                service,
                what=f"launch of {model_studio_rid}",
                create=lambda: service.call(LAUNCH_MODEL_STUDIO, path={"modelStudioRid": model_studio_rid}),
                find=find,
                describe=lambda run: f"run {run.run_id} started at {run.started_time} by {run.started_by}",
                unknown_since=unknown_since,
            )
        )

    def _current_user_id(self) -> Call[str | None]:
        """The id of the user the credentials act as, or None when Foundry will not say (scope)."""
        try:
            user = yield from self.get_current_user()
        except ApiError as exc:
            why = (
                "the credentials lack the api:admin-read scope that GET /api/v2/admin/users/getCurrent needs"
                if isinstance(exc, PermissionDeniedError)
                else str(exc)
            )
            log.warning(
                "Cannot tell which user these credentials act as (%s): matching runs by start time ONLY, so a run "
                "of the same studio that someone else launched in the same seconds could be adopted. "
                "Add api:admin-read to the connection's scopes to match by user.",
                why,
            )
            return None
        return user.id

    def list_model_studio_runs_page(
        self,
        model_studio_rid: str,
        *,
        config_version: int | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Call[tuple[list[ModelStudioRun], str | None]]:
        require_rid("model_studio_rid", model_studio_rid)
        if config_version is not None and (isinstance(config_version, bool) or not isinstance(config_version, int)):
            raise ValueError(f"config_version must be an integer, got {config_version!r}")
        if page_size is not None and (isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1):
            raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
        page = yield from self._service().call(
            LIST_MODEL_STUDIO_RUNS,
            path={"modelStudioRid": model_studio_rid},
            query={"configVersion": config_version, "pageSize": page_size, "pageToken": page_token},
        )
        return page.data, page.next_page_token

    def pages(
        self, model_studio_rid: str, **kwargs: Any
    ) -> Callable[[str | None], Call[tuple[list[ModelStudioRun], str | None]]]:
        return lambda token: self.list_model_studio_runs_page(model_studio_rid, page_token=token, **kwargs)

    def find_model_studio_run(
        self, model_studio_rid: str, predicate: Callable[[ModelStudioRun], bool], **kwargs: Any
    ) -> Call[ModelStudioRun | None]:
        return (yield from find_first(self.pages(model_studio_rid, **kwargs), predicate))

    def get_model_studio_run(
        self, model_studio_rid: str, run_id: str, config_version: int | None = None
    ) -> Call[ModelStudioRun]:
        """A run, found through the runs list (there is no get-run endpoint): narrowed to the run's
        ``config_version`` when known, in pages of ``RUN_LOOKUP_PAGE_SIZE``, stopping at the match."""
        require_text("run_id", run_id)
        run = yield from self.find_model_studio_run(
            model_studio_rid,
            lambda r: r.run_id == run_id,
            config_version=config_version,
            page_size=RUN_LOOKUP_PAGE_SIZE,
        )
        if run is None:
            raise NotFoundError(
                f"run {run_id!r} not found in Model Studio {model_studio_rid}",
                status=404,
                method="GET",
                path=LIST_MODEL_STUDIO_RUNS.path.format(modelStudioRid=model_studio_rid),
                error_name="ModelStudioRunNotFound",
                parameters={"studioRid": model_studio_rid, "runId": run_id},
                service="Foundry",
            )
        return run

    def get_build(self, build_rid: str) -> Call[Build]:
        require_rid("build_rid", build_rid)
        return (yield from self._service().call(GET_BUILD, path={"buildRid": build_rid}))

    def get_builds(self, build_rids: list[str]) -> Call[dict[str, BuildState]]:
        """Up to ``BUILDS_BATCH_MAX`` builds in one request, by RID; a RID missing from the answer
        (unknown or not visible to us) is missing from the result."""
        if not 1 <= len(build_rids) <= BUILDS_BATCH_MAX:
            raise ValueError(f"build_rids must hold 1 to {BUILDS_BATCH_MAX} RIDs, got {len(build_rids)}")
        for rid in build_rids:
            require_rid("build_rids", rid)
        answer = yield from self._service().call(GET_BUILDS_BATCH, json=[{"buildRid": rid} for rid in build_rids])
        return answer.data

    def cancel_build(self, build_rid: str) -> Call[None]:
        """Ask Foundry to cancel a build (asynchronous; a finished build is left as it is)."""
        require_rid("build_rid", build_rid)
        yield from self._service().call(CANCEL_BUILD, path={"buildRid": build_rid})
        return None

    def get_live_deployment(self, live_deployment_rid: str) -> Call[LiveDeployment]:
        require_rid("live_deployment_rid", live_deployment_rid)
        return (yield from self._service().call(GET_LIVE_DEPLOYMENT, path={"liveDeploymentRid": live_deployment_rid}))

    def get_current_user(self) -> Call[CurrentUser]:
        return (yield from self._service().call(GET_CURRENT_USER))

    def model_studio_run_snapshot(
        self, model_studio_rid: str, run_id: str, config_version: int | None = None
    ) -> Call[Snapshot]:
        """One look at a run; when the run carries no buildStatus, the build's status is used."""
        run = yield from self.get_model_studio_run(model_studio_rid, run_id, config_version)
        if run.build_status:
            return run_snapshot(run, run.build_status)
        build = yield from self.get_build(run.build_rid)
        return run_snapshot(run, build.status, source="build")

    def live_deployment_snapshot(self, live_deployment_rid: str, watch: LiveDeploymentWatch) -> Call[Snapshot]:
        """One look at a live deployment, judged by ``watch``."""
        deployment = yield from self.get_live_deployment(live_deployment_rid)
        return watch.evaluate(deployment)
