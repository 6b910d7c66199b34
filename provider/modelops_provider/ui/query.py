"""Reading run records (``core/records.py``) out of Airflow's XCom table, for the pages.

Filtering, ordering and counting happen in SQL over the records' JSON (SQLAlchemy's JSON operators:
``json_extract`` on SQLite and MySQL, ``->>`` on PostgreSQL), so a page reads only its own rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from sqlalchemy import Select, and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from modelops_provider.core.records import CLOSES_KEY, DETAIL_KEY, RECORD_KEY

# Task states after which nobody follows the remote run any more.
FINISHED_TASK_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})


@dataclass
class RunRow:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    record: dict[str, Any]
    task_state: str | None = None

    @property
    def abandoned(self) -> bool:
        """The record says running but the task ended without saying how the run ended (marked
        failed or success while deferred, killed)."""
        return self.record.get("outcome") == "running" and (self.task_state or "") in FINISHED_TASK_STATES


@dataclass
class RunPage:
    rows: list[RunRow]
    total: int
    page: int
    per_page: int
    dag_ids: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _value(name: str) -> Any:
    return XComModel.value[name]


def _records(readable: Any) -> Select:
    # Columns, not the entity: XComModel eagerly joins its DAG run, which the page does not need.
    stmt = select(XComModel.dag_run_id).where(XComModel.key == RECORD_KEY)
    return readable.to_orm(stmt)  # type: ignore[no-any-return]


def _not_closed() -> Any:
    """Hide a record whose run another task of the same DAG run closed (the Pluto finish task closes
    the run the start task opened, and says so under ``CLOSES_KEY``): the run is listed once, as it
    ended.

    An uncorrelated ``NOT IN`` over the few closing notes, comparing columns only: a correlated
    ``EXISTS`` over the records' JSON made SQLite scan every record once per record."""
    closed = select(XComModel.dag_run_id, XComModel.value["task_id"].as_string()).where(XComModel.key == CLOSES_KEY)
    return tuple_(XComModel.dag_run_id, XComModel.task_id).not_in(closed)


def list_runs(
    session: Session,
    readable: Any,
    *,
    dag_id: str | None = None,
    service: str | None = None,
    outcome: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> RunPage:
    """One page of run records the user may read, newest (by the run's start) first."""
    stmt = _records(readable).where(_not_closed())
    if dag_id:
        stmt = stmt.where(XComModel.dag_id == dag_id)
    if service:
        stmt = stmt.where(_value("service").as_string() == service)
    if outcome:
        stmt = stmt.where(_value("outcome").as_string() == outcome)
    total = session.scalar(stmt.with_only_columns(func.count())) or 0
    page = max(1, min(page, max(1, -(-total // per_page))))
    # Sort and cut the page on the keys alone, then read the page's values: sorting whole records
    # carries every value through the sort.
    keys_stmt = (
        stmt.with_only_columns(XComModel.dag_run_id, XComModel.task_id, XComModel.map_index)
        .order_by(_value("started_at").as_float().desc(), XComModel.dag_run_id.desc(), XComModel.task_id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    keys: list[tuple[Any, ...]] = [tuple(k) for k in session.execute(keys_stmt)]
    values: dict[tuple[Any, ...], Any] = {}
    if keys:
        page_stmt = select(
            XComModel.dag_run_id,
            XComModel.task_id,
            XComModel.map_index,
            XComModel.dag_id,
            XComModel.run_id,
            XComModel.value,
        ).where(
            XComModel.key == RECORD_KEY, tuple_(XComModel.dag_run_id, XComModel.task_id, XComModel.map_index).in_(keys)
        )
        values = {(r[0], r[1], r[2]): r for r in session.execute(page_stmt)}
    rows = [
        RunRow(dag_id=r[3], run_id=r[4], task_id=r[1], map_index=r[2], record=_as_record(r[5]))
        for r in (values.get(k) for k in keys)
        if r is not None
    ]
    _add_task_states(session, rows)
    dag_ids = list(
        session.scalars(_records(readable).with_only_columns(XComModel.dag_id).distinct().order_by(XComModel.dag_id))
    )
    return RunPage(rows=rows, total=total, page=page, per_page=per_page, dag_ids=dag_ids)


def _as_record(value: Any) -> dict[str, Any]:
    if isinstance(value, str):  # a backend that stored the serialized text
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _add_task_states(session: Session, rows: Iterable[RunRow]) -> None:
    rows = list(rows)
    if not rows:
        return
    keys = or_(
        *(
            and_(
                TaskInstance.dag_id == r.dag_id,
                TaskInstance.run_id == r.run_id,
                TaskInstance.task_id == r.task_id,
                TaskInstance.map_index == r.map_index,
            )
            for r in rows
        )
    )
    found = {
        (d, run, t, m): state
        for d, run, t, m, state in session.execute(
            select(
                TaskInstance.dag_id,
                TaskInstance.run_id,
                TaskInstance.task_id,
                TaskInstance.map_index,
                TaskInstance.state,
            ).where(keys)
        )
    }
    for r in rows:
        state = found.get((r.dag_id, r.run_id, r.task_id, r.map_index))
        r.task_state = str(state.value if hasattr(state, "value") else state) if state is not None else None


def task_record(
    session: Session, dag_id: str, run_id: str, task_id: str, map_index: int
) -> tuple[RunRow | None, dict[str, Any] | None, Any]:
    """A task instance's run record, its detail (DuckLake steps and tests) and its return value."""
    values: dict[str, Any] = {}
    stmt = select(XComModel.key, XComModel.value).where(
        XComModel.dag_id == dag_id,
        XComModel.run_id == run_id,
        XComModel.task_id == task_id,
        XComModel.map_index == map_index,
        XComModel.key.in_([RECORD_KEY, DETAIL_KEY, "return_value"]),
    )
    for key, value in session.execute(stmt):
        values[key] = value
    if RECORD_KEY not in values:
        return None, None, None
    row = RunRow(
        dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, record=_as_record(values[RECORD_KEY])
    )
    _add_task_states(session, [row])
    detail = _as_record(values[DETAIL_KEY]) if DETAIL_KEY in values else None
    ret = values.get("return_value")
    return row, detail, _as_record(ret) if isinstance(ret, str) else ret
