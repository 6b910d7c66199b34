"""Duplicate remote runs when the server acts late: every create endpoint (Foundry launch, DuckLake
trigger, Pluto create without externalId), through the sync and the async driver, against the
sandbox with a 1 s read timeout and faults that act after it (or act first and answer late, 5xx or
drop). Prints, per case, the create requests sent, the runs the server holds and the duplicates.

    python benchmarks/late_server.py [--late 3] [--read-timeout 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

from modelops_provider.ducklake.hooks import DuckLakeHook
from modelops_provider.foundry.hooks import FoundryHook
from modelops_provider.pluto.hooks import PlutoHook
from modelops_provider.sandbox.server import SandboxServer

STUDIO = "ri.models.main.model-studio.cccccccc-cccc-4ccc-8ccc-cccccccccccc"


def faults(late: float) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"acts {late:g}s late", {"delay_s": late}),
        (f"acts, answers {late:g}s late", {"delay_s": late, "process": True}),
        ("acts, answers 502", {"status": 502, "process": True}),
        (f"acts, answers 500 {late:g}s late", {"status": 500, "process": True, "delay_s": late}),
        ("acts, drops", {"kind": "drop"}),
    ]


def with_read_timeout(service: str, seconds: float) -> str:
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{service.upper()}_DEFAULT"])
    conn["extra"] = {**(conn.get("extra") or {}), "read_timeout": seconds}
    os.environ[f"AIRFLOW_CONN_{service.upper()}_SLOW"] = json.dumps(conn)
    return f"{service}_slow"


def run(hook: Any, call: Callable[[], Any], driver: str) -> Any:
    if driver == "sync":
        return hook.call(call())

    async def main() -> Any:
        await hook.aget_conn()
        return await hook.acall(call())

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--late", type=float, default=3.0)
    parser.add_argument("--read-timeout", type=float, default=1.0)
    args = parser.parse_args()
    with SandboxServer() as server:
        os.environ.update(server.connection_env())
        control = server.control
        services = {
            "Foundry launch": (
                "foundry",
                "/api/v2/models/modelStudios/",
                lambda h: lambda: h.api.launch_model_studio(STUDIO),
                lambda: len(list(FoundryHook().list_model_studio_runs(STUDIO))),
                FoundryHook,
            ),
            "DuckLake trigger": (
                "ducklake",
                "/v1/model-runs",
                lambda h: lambda: h.api.trigger_model_run("analytics"),
                lambda: len(list(DuckLakeHook().list_model_runs())),
                DuckLakeHook,
            ),
            "Pluto create": (
                "pluto",
                "/api/runs/create",
                lambda h: lambda: h.api.create_run("late", "nightly"),
                lambda: len(control.pluto_runs()),
                PlutoHook,
            ),
        }
        print(f"read timeout {args.read_timeout:g}s; columns: creates sent, runs on the server, duplicates, seconds")
        total = 0
        for label, (service, path, make_call, count, hook_class) in services.items():
            conn_id = with_read_timeout(service, args.read_timeout)
            for driver in ("sync", "async"):
                for name, fault in faults(args.late):
                    control.reset()
                    control.foundry_studio(STUDIO, duration_s=60)
                    control.fault([fault], method="POST", path_prefix=path)
                    hook = hook_class(conn_id)
                    started = time.monotonic()
                    run(hook, make_call(hook), driver)
                    took = time.monotonic() - started
                    creates = len(
                        [
                            r
                            for r in control.requests(method="POST", path_prefix=path)
                            if r["path"].endswith(("/launch", "/model-runs", "/create"))
                        ]
                    )
                    runs = count()
                    total += runs - 1
                    print(f"{label:17} {driver:5} {name:28} {creates} {runs} {runs - 1} {took:5.1f}")
        print(f"duplicate runs in all: {total}")


if __name__ == "__main__":
    main()
