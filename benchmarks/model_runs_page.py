"""How long the "Model runs" page takes with many run records: the SQL query (filter, count, order,
page, task states) and the HTML, against Airflow's own schema in a throwaway SQLite database.

    python benchmarks/model_runs_page.py [--records 10000] [--dags 10] [--repeat 20]

Records are stored as the operators store them (XCom ``modelops_run`` rows, one per task instance,
with their DAG runs and task instances), inserted in bulk; then each page variant is timed
``--repeat`` times and the median and worst are printed.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

HOME = Path(tempfile.mkdtemp(prefix="modelops-bench-"))
os.environ["AIRFLOW_HOME"] = str(HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{HOME}/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

SERVICES = [
    ("Foundry", "training run"),
    ("Foundry", "deployment check"),
    ("DuckLake", "model run"),
    ("Pluto", "tracking run"),
]
OUTCOMES = ["succeeded"] * 7 + ["failed", "running", "timed out", "cancelled"]
TASKS_PER_RUN = 4


def record(rng: random.Random, i: int, started: float) -> str:
    import json

    service, kind = SERVICES[i % len(SERVICES)]
    outcome = rng.choice(OUTCOMES)
    return json.dumps(
        {
            "v": 1,
            "service": service,
            "kind": kind,
            "remote_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "url": f"https://example.com/runs/{i}",
            "outcome": outcome,
            "status": outcome.upper(),
            "started_at": started,
            "ended_at": None if outcome == "running" else started + rng.uniform(5, 7200),
            "events": [[started, "STARTED", "running"], [started + 60, outcome.upper(), outcome]],
            "model_version": f"ri.models.main.model-version.{uuid.UUID(int=rng.getrandbits(128))}",
            "project": None,
            "verdict": "3 tests passed; 2 of 2 models built" if service == "DuckLake" else None,
            "passed": True if service == "DuckLake" else None,
            "metrics": None,
            "message": None,
        }
    )


def populate(records: int, dags: int) -> None:
    from airflow.utils import db

    db.resetdb()
    rng = random.Random(7)
    con = sqlite3.connect(HOME / "airflow.db")  # bulk inserts: Airflow's tables, without the ORM
    runs = records // TASKS_PER_RUN
    now = time.time()
    dag_runs, tis, xcoms = [], [], []
    for r in range(runs):
        dag_id = f"dag_{r % dags}"
        run_id = f"manual__{r:06d}"
        dag_runs.append((r + 1, dag_id, run_id, "manual", "2026-01-01 00:00:00", "success"))
        for t in range(TASKS_PER_RUN):
            i = r * TASKS_PER_RUN + t
            task_id = f"task_{t}"
            tis.append((uuid.uuid4().hex, task_id, dag_id, run_id, -1, 1, "default_pool", 1, "success"))
            xcoms.append(
                (r + 1, task_id, -1, "modelops_run", dag_id, run_id, record(rng, i, now - i * 60), "2026-01-01")
            )
    con.executemany(
        "insert into dag_run (id, dag_id, run_id, run_type, run_after, state) values (?,?,?,?,?,?)", dag_runs
    )
    con.executemany(
        "insert into task_instance (id, task_id, dag_id, run_id, map_index, try_number, pool, pool_slots, state)"
        " values (?,?,?,?,?,?,?,?,?)",
        tis,
    )
    con.executemany(
        "insert into xcom (dag_run_id, task_id, map_index, key, dag_id, run_id, value, timestamp)"
        " values (?,?,?,?,?,?,?,?)",
        xcoms,
    )
    con.commit()
    con.close()


def timed(fn: object, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000, max(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--dags", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    populate(args.records, args.dags)

    from airflow.api_fastapi.core_api.security import PermittedXComFilter
    from airflow.utils.session import create_session

    from modelops_provider.ui import pages
    from modelops_provider.ui.query import list_runs

    readable = PermittedXComFilter({f"dag_{d}" for d in range(args.dags)})
    links = pages.Links("", "/modelops")
    variants = {
        "first page (50 rows)": {},
        "service=DuckLake": {"service": "DuckLake"},
        "status=failed": {"outcome": "failed"},
        "dag_id=dag_3": {"dag_id": "dag_3"},
        "DAG + service + status": {"dag_id": "dag_3", "service": "Foundry", "outcome": "succeeded"},
        "page 150 (deep offset)": {"page": 150},
    }
    print(f"{args.records} records, {args.dags} DAGs, SQLite, median / worst of {args.repeat}")
    with create_session() as session:
        for name, params in variants.items():

            def page(params: dict[str, object] = params) -> None:
                result = list_runs(session, readable, **params)  # type: ignore[arg-type]
                pages.runs_page(result, links, dag_id=None, service=None, outcome=None)

            median, worst = timed(page, args.repeat)
            total = list_runs(session, readable, **params).total  # type: ignore[arg-type]
            print(f"  {name:<26} {median:7.1f} ms  (worst {worst:6.1f} ms)  {total} matching")


if __name__ == "__main__":
    main()
