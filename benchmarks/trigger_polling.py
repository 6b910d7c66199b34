"""Polls per second and client CPU per poll for many concurrent trigger-style waits, with the shared
per-loop AsyncClient (what the provider does) versus a new AsyncClient per poll (what the dbt Cloud
provider's trigger does). Both modes run side by side in one process against one sandbox, which
runs in a separate process so that it does not share the client's CPU.

    python benchmarks/trigger_polling.py [--waits 200] [--polls 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import httpx

from modelops_provider.core.transport import run_async
from modelops_provider.foundry.hooks import FoundryHook

STUDIO = "ri.models.main.model-studio.bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"


async def one_wait(hook: FoundryHook, run_id: str, polls: int, fresh_client: bool) -> None:
    service = await hook.aget_conn()
    for _ in range(polls):
        call = hook.api.model_studio_run_snapshot(STUDIO, run_id)
        if fresh_client:
            async with httpx.AsyncClient(timeout=service.timeout) as client:
                await run_async(client, call)
        else:
            await hook.acall(call)


async def measure(waits: int, polls: int, run_id: str, fresh_client: bool) -> tuple[float, float]:
    hooks = [FoundryHook() for _ in range(waits)]
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_wait(h, run_id, polls, fresh_client) for h in hooks))
    total = waits * polls
    return total / (time.perf_counter() - wall), (time.process_time() - cpu) / total * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waits", type=int, default=200)
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelops_provider.sandbox.cli", "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        for line in iter(proc.stdout.readline, ""):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            os.environ[name] = value.strip("'")
            if name == "AIRFLOW_CONN_FOUNDRY_DEFAULT":
                break
        httpx.post(f"{url}/_sandbox/foundry/studios", json={"rid": STUDIO, "duration_s": 3600}).raise_for_status()
        run_id = FoundryHook().launch_model_studio(STUDIO).run_id
        print(f"{args.waits} concurrent waits x {args.polls} polls each, {args.rounds} rounds, sandbox {url}")
        results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for fresh in (False, True):  # interleaved, so drift of a noisy machine hits both alike
                results[fresh].append(asyncio.run(measure(args.waits, args.polls, run_id, fresh)))
        for fresh, label in ((False, "shared client per loop"), (True, "new client per poll")):
            rates = sorted(r for r, _ in results[fresh])
            cpus = sorted(c for _, c in results[fresh])
            rate, cpu = rates[len(rates) // 2], cpus[len(cpus) // 2]
            print(f"  {label:24s} median {rate:7.0f} polls/s, {cpu:5.2f} ms client CPU/poll")
        shared = sorted(r for r, _ in results[False])[args.rounds // 2]
        fresh_rate = sorted(r for r, _ in results[True])[args.rounds // 2]
        print(f"  ratio shared/new: {shared / fresh_rate:.2f}x polls/s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
