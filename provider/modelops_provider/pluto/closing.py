"""Closing a Pluto run so that it ends as the DAG run did, and knowing that it did.

Pluto answers ``200 {"success": true}`` to every status update, also when it drops one: a final
status never replaces a more severe one (FAILED > CANCELLED > TERMINATED > COMPLETED), and the
stale-run monitor or a threshold trigger may have closed the run while the DAG run was still
working (CONTRACTS.md section F). So the run's status is read before and after it is set.

Policies for a run the server had already closed differently (``on_closed_by_server``):

- ``"reopen"`` (default): the run ends with the DAG run's outcome. When precedence would drop that
  status, the run is first moved back to RUNNING (Pluto allows final -> RUNNING) and then closed.
  What the server had done is kept in ``statusMetadata["closedByServer"]``.
- ``"keep"``: the server's status stays; the DAG run's outcome is added to its ``statusMetadata``
  under ``"airflow"`` (a same-status update applies metadata).

Either way the finish task logs it at ERROR level.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from modelops_provider.core.errors import ApiError
from modelops_provider.pluto.models import SEVERITY, RunDetails, RunStatus

POLICIES = ("reopen", "keep")


def require_policy(value: Any) -> str:
    if value not in POLICIES:
        raise ValueError(f"on_closed_by_server must be one of {', '.join(POLICIES)}, got {value!r}")
    return str(value)


def _metadata(details: RunDetails) -> Any:
    value = details.status_metadata
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _severity(status: str) -> int:
    try:
        return SEVERITY[RunStatus(status)]
    except ValueError:
        return max(SEVERITY.values()) + 1  # a status this provider does not know: never assume it yields


def _closer(hook: Any, run_id: int) -> str | None:
    """Who closed the run: the source of its last status event (``stale-monitor``, ...), if readable."""
    try:
        events = hook.status_history(run_id).events
    except ApiError:
        return None  # an older server without the history route
    return events[-1].source if events else None


def close_run(
    hook: Any,
    run_id: int,
    status: str,
    metadata: dict[str, Any],
    *,
    policy: str,
    log: logging.Logger | Any,
) -> dict[str, Any]:
    """Set ``status`` on the run (applying ``policy`` if the server closed it first), read it back,
    and return ``{"status": <the run's final status>, "closedByServer": {...} | None}``. Raises
    :class:`RuntimeError` when the status read back is still not the one intended."""
    current = hook.run_details(run_id)
    closed_by: dict[str, Any] | None = None
    for _ in range(2):
        if closed_by is None and current.status != RunStatus.RUNNING:
            closed_by = _report(hook, run_id, current, status, policy, log)
        target, sent = status, {**metadata, **({"closedByServer": closed_by} if closed_by else {})}
        if closed_by is not None and policy == "keep":
            server = closed_by["statusMetadata"]
            target = closed_by["status"]
            sent = {**(server if isinstance(server, dict) else {}), "airflow": {**metadata, "status": status}}
        if current.status not in (RunStatus.RUNNING, target) and _severity(target) < _severity(current.status):
            # Precedence would drop it: re-open first (a final -> RUNNING update is not blocked).
            hook.update_status(run_id, RunStatus.RUNNING, status_metadata=sent)
        hook.update_status(run_id, target, status_metadata=sent)
        current = hook.run_details(run_id)
        if current.status == target:
            return {"status": current.status, "closedByServer": closed_by}
        # Closed between the read and the write (the monitor, a threshold trigger): once more.
        log.error(
            "Pluto run %s is %s after setting it %s (Pluto answers success even when it drops an update); "
            "trying once more",
            run_id,
            current.status,
            target,
        )
    raise RuntimeError(
        f"Pluto run {run_id} is {current.status} after setting it {target} twice; "
        f"its statusMetadata: {json.dumps(_metadata(current))}"
    )


def _report(
    hook: Any, run_id: int, current: RunDetails, status: str, policy: str, log: logging.Logger | Any
) -> dict[str, Any]:
    """Say loudly that the server closed the run first, and how; the record kept in statusMetadata."""
    closed_by = {"status": current.status, "source": _closer(hook, run_id), "statusMetadata": _metadata(current)}
    log.error(
        "Pluto run %s was already %s before this DAG run finished (closed by %s: %s). Policy %r: %s",
        run_id,
        current.status,
        closed_by["source"] or "the server",
        json.dumps(closed_by["statusMetadata"]),
        policy,
        f"closing it {status} as the DAG run ended, the server's verdict kept in statusMetadata.closedByServer"
        if policy == "reopen"
        else f"keeping {current.status}, the DAG run's outcome ({status}) added to statusMetadata.airflow",
    )
    return closed_by
