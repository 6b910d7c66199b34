"""Run a DAG with ``dag.test()`` and read back what happened (task states, XComs, tries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TaskResult:
    state: str | None
    try_number: int
    xcom: dict[str, Any]


@dataclass
class DagResult:
    state: str
    tasks: dict[str, TaskResult]
    run_id: str

    def task(self, task_id: str) -> TaskResult:
        return self.tasks[task_id]


def run_dag(dag: Any, **test_kwargs: Any) -> DagResult:
    """Serialize ``dag`` into the test database and run it with ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder="/nonexistent-modelops-dags")
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    dag_run = dag.test(**test_kwargs)
    tasks: dict[str, TaskResult] = {}
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        for ti in tis:
            rows = (
                session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id, task_id=ti.task_id).all()
            )
            xcom = {row.key: _xcom_value(row) for row in rows}
            tasks[ti.task_id] = TaskResult(state=ti.state, try_number=ti.try_number, xcom=xcom)
    return DagResult(state=str(dag_run.state), tasks=tasks, run_id=dag_run.run_id)


def _xcom_value(row: Any) -> Any:
    """A task's XCom as the task pushed it. Values from the Task Execution API are stored as JSON
    already: ``XComModel.deserialize_value`` would parse a string again, turning a run id such as
    ``"18e023720852"`` into ``inf``."""
    from airflow.models.xcom import XComModel

    return row.value if isinstance(row.value, str) else XComModel.deserialize_value(row)
