"""Refresh DuckLake models, gate the DAG on their tests, and schedule a downstream DAG on a model.

``modelops_transform_and_test`` triggers a model run of a DuckLake project (deferred while it runs),
fails if a model fails or a test FAILs/ERRORs, and otherwise reports what each model did. Each model
the run built gets an asset event ``ducklake://<host>/<project>/<model>``; ``modelops_orders_report``
is scheduled on one of them, so it runs whenever ``fct_orders`` is refreshed.

Against the embedded sandbox (``modelops-sandbox serve``) the defaults just work (project
``analytics``: ``stg_orders``, ``fct_orders``); against a real platform, set the
``ducklake_default`` connection, pass your project as the ``project_name`` param and set
``DUCKLAKE_ASSET_HOST`` to your platform's host name.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task

from modelops_provider.ducklake.operators import DuckLakeModelRunOperator

PROJECT = os.environ.get("DUCKLAKE_PROJECT", "analytics")
ORDERS = Asset(f"ducklake://{os.environ.get('DUCKLAKE_ASSET_HOST', '127.0.0.1')}/{PROJECT}/fct_orders")

with DAG(
    dag_id="modelops_transform_and_test",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "project_name": Param(PROJECT, type="string"),
        "full_refresh": Param(False, type="boolean"),
    },
    tags=["modelops", "ducklake", "example"],
):
    transform = DuckLakeModelRunOperator(
        task_id="transform_and_test",
        project_name="{{ params.project_name }}",
        full_refresh="{{ params.full_refresh }}",
        deferrable=True,
        poll_interval=1,
        timeout=timedelta(hours=1),
        retries=2,
        retry_delay=timedelta(seconds=5),
    )

    @task
    def report(summary: dict) -> dict:
        tests = {}
        for test in summary["tests"]:
            tests.setdefault(test["model_name"], []).append(f"{test['test_name']}={test['status']}")
        for step in summary["steps"]:
            print(
                f"DuckLake model {step['model_name']}: {step['status']}, {step.get('rows_affected')} rows, "
                f"tests {', '.join(tests.get(step['model_name'], [])) or 'none'}"
            )
        return {s["model_name"]: s.get("rows_affected") for s in summary["steps"]}

    # ``transform.output`` fails clearly, naming the task, if it left no result (marked success by hand).
    report(transform.output)


with DAG(
    dag_id="modelops_orders_report",
    schedule=[ORDERS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["modelops", "ducklake", "example"],
):

    @task(inlets=[ORDERS])
    def orders_refreshed(*, inlet_events=None) -> None:
        for event in (inlet_events or {}).get(ORDERS, [])[-1:]:
            print(f"fct_orders refreshed by run {event.extra.get('run_id')}: {event.extra.get('rows_affected')} rows")

    orders_refreshed()
