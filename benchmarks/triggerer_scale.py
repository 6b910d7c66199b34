"""N deferred waits in one triggerer: CPU, requests, memory and latency, ours against dbt Cloud's.

Each arm runs N triggers through Airflow's own ``TriggerRunner`` (``airflow.jobs.triggerer_job_runner``)
in a process of its own, with a stand-in for its supervisor that hands it all N triggers at once and
collects their events. They wait on runs of a fake service over TLS on loopback (a self-signed
certificate, trusted through ``SSL_CERT_FILE``), in yet another process, which scripts each run to end
5 to 15 s after it was created (one in ten fails) and counts the requests naming each run. Arms:

* ``shared``: ``ModelStudioRunTrigger`` with shared polling (builds read 100 per request);
* ``unshared``: the same trigger with ``[modelops] shared_polling = False`` (a request per wait per poll);
* ``dbt``: ``DbtCloudRunJobTrigger`` from apache-airflow-providers-dbt-cloud (the ``bench`` extra);
* ``floor``: a trigger that sends no request and sleeps until its run's scripted end: what the
  runner itself costs.

Per arm: CPU ms per wait (the triggerer process, from hand-off to the last event), requests per wait,
KiB RSS per trigger (peak minus before the hand-off), p99 detection latency (the trigger yields its
event, minus the run's scripted end) and p99 until the event is in the runner's queue (after the
runner's own awaited log line), the largest first-poll delay (first request naming a run, or for the
floor the trigger's start, minus the hand-off) and when the runner started the last trigger's ``run()``
(the runner's own share of that delay), log lines per wait (the runner's and the trigger's; each arm
logs as Airflow's trigger runner process does, JSON lines towards its supervisor, here a file), and
whether every wait ended with its right event (its run's ids and outcome: the event carries no
payload, the worker reads that on resume).
For ``shared`` also, per poller round, the most getBatch requests (against ceil(N/100)) and runs-list
pages read (none: the worker reads a finished run), counted in the triggerer.

    python benchmarks/triggerer_scale.py [--n 100,2000,10000] [--arms shared,unshared,dbt,floor] [--poll 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import datetime as dt
import json
import math
import os
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

ARMS = ("shared", "unshared", "dbt", "floor")
STUDIO_PREFIX = "ri.models.main.model-studio."
BUILD_PREFIX = "ri.foundry-build.main.build."
TOKEN = "bench-token"
HERE = Path(__file__).resolve()
# When each floor trigger started running (its "first poll": it sends none).
STARTED: dict[str, float] = {}


# --- certificate -----------------------------------------------------------------------------
def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelops bench")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


# --- the fake service ------------------------------------------------------------------------
def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeService:
    """Foundry (runs list, builds get and getBatch) and dbt Cloud (runs get), scripted runs, counters."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.by_studio: dict[str, int] = {}
        self.by_build: dict[str, int] = {}
        self.first_seen: dict[int, float] = {}
        self.counts: dict[str, int] = {}
        self.batch_times: list[float] = []
        self.batch_sizes: list[int] = []

    def create(self, n: int, low: float, high: float, fail_every: int, seed: int) -> list[dict[str, Any]]:
        rnd = random.Random(seed)
        now = time.time()
        self.reset()
        for i in range(n):
            run = {
                "index": i,
                "studio": f"{STUDIO_PREFIX}{uuid.UUID(int=rnd.getrandbits(128), version=4)}",
                "run_id": f"{i:012x}",
                "build": f"{BUILD_PREFIX}{uuid.UUID(int=rnd.getrandbits(128), version=4)}",
                "dbt_id": 100000 + i,
                "started": now,
                "ends": now + rnd.uniform(low, high),
                "fails": fail_every > 0 and i % fail_every == fail_every - 1,
            }
            self.runs.append(run)
            self.by_studio[run["studio"]] = i
            self.by_build[run["build"]] = i
        return self.runs

    def seen(self, index: int) -> None:
        self.first_seen.setdefault(index, time.time())

    def status(self, run: dict[str, Any]) -> str:
        if time.time() < run["ends"]:
            return "RUNNING"
        return "FAILED" if run["fails"] else "SUCCEEDED"

    def build_json(self, run: dict[str, Any]) -> dict[str, Any]:
        return {
            "rid": run["build"],
            "branchName": "master",
            "createdTime": _iso(run["started"]),
            "createdBy": "f05f8da4-b84c-4fca-9c77-8af0b13d11de",
            "fallbackBranches": [],
            "jobRids": [],
            "retryCount": 0,
            "retryBackoffDuration": {"value": 1, "unit": "SECONDS"},
            "abortOnFailure": False,
            "status": self.status(run),
        }

    def run_json(self, run: dict[str, Any]) -> dict[str, Any]:
        status = self.status(run)
        outputs = {}
        if status == "SUCCEEDED":
            outputs = {
                "model": {
                    "type": "model",
                    "modelRid": "ri.models.main.model.00000000-0000-4000-8000-000000000001",
                    "modelVersionRid": f"ri.models.main.model-version.{uuid.UUID(int=run['index'], version=4)}",
                }
            }
        return {
            "runId": run["run_id"],
            "buildRid": run["build"],
            "jobRid": "ri.foundry-build.main.job.00000000-0000-4000-8000-000000000001",
            "configVersion": 1,
            "startedBy": "f05f8da4-b84c-4fca-9c77-8af0b13d11de",
            "startedTime": _iso(run["started"]),
            "buildStatus": status,
            "resolvedOutputs": outputs,
        }

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        path, _, _query = path.partition("?")
        parts = path.strip("/").split("/")
        if path.startswith("/_bench/"):
            if path == "/_bench/create":
                spec = json.loads(body)
                return 200, self.create(spec["n"], spec["low"], spec["high"], spec["fail_every"], spec["seed"])
            if path == "/_bench/stats":
                return 200, {
                    "counts": self.counts,
                    "first_seen": self.first_seen,
                    "batch_times": self.batch_times,
                    "batch_sizes": self.batch_sizes,
                }
            return 404, {"message": "unknown"}
        if method == "POST" and path == "/api/v2/orchestration/builds/getBatch":
            self.count("getBatch")
            rids = [item["buildRid"] for item in json.loads(body)]
            self.batch_times.append(time.time())
            self.batch_sizes.append(len(rids))
            data = {}
            for rid in rids:
                index = self.by_build.get(rid)
                if index is not None:
                    self.seen(index)
                    data[rid] = self.build_json(self.runs[index])
            return 200, {"data": data}
        if method == "GET" and len(parts) == 6 and parts[3] == "modelStudios" and parts[5] == "runs":
            self.count("runs list")
            index = self.by_studio.get(parts[4])
            if index is None:
                return 404, {"errorName": "ModelStudioNotFound", "errorCode": "NOT_FOUND", "parameters": {}}
            self.seen(index)
            return 200, {"data": [self.run_json(self.runs[index])]}
        if method == "GET" and len(parts) == 5 and parts[3] == "builds":
            self.count("build get")
            index = self.by_build.get(parts[4])
            if index is None:
                return 404, {"errorName": "BuildNotFound", "errorCode": "NOT_FOUND", "parameters": {}}
            self.seen(index)
            return 200, self.build_json(self.runs[index])
        if method == "GET" and len(parts) == 6 and parts[2] == "accounts" and parts[4] == "runs":
            self.count("dbt run get")
            index = int(parts[5]) - 100000
            if not 0 <= index < len(self.runs):
                return 404, {"status": {"code": 404}}
            self.seen(index)
            status = self.status(self.runs[index])
            code = {"RUNNING": 3, "SUCCEEDED": 10, "FAILED": 20}[status]
            return 200, {"data": {"id": index + 100000, "status": code}}
        return 404, {"message": f"no route {method} {path}"}


async def _serve_connection(service: FakeService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            body = await reader.readexactly(length) if length else b""
            status, payload = service.handle(method, target, body)
            data = json.dumps(payload).encode()
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (status, b"OK" if status == 200 else b"Error", len(data))
                + data
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def serve(cert: str, key: str) -> None:
    """The fake service's process: prints its port, then serves until killed."""
    service = FakeService()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _serve_connection(service, r, w), "127.0.0.1", 0, ssl=context, backlog=4096
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- one arm: the triggerer process ----------------------------------------------------------
def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _sleep_trigger_class() -> type:
    from airflow.triggers.base import BaseTrigger, TriggerEvent

    class SleepTrigger(BaseTrigger):
        """No request: sleeps until its run's scripted end (the floor of what the runner costs)."""

        def __init__(self, run_id: str, ends: float) -> None:
            super().__init__()
            self.run_id, self.ends = run_id, ends

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return f"{__name__}.SleepTrigger", {"run_id": self.run_id, "ends": self.ends}

        async def run(self):  # type: ignore[no-untyped-def,override]
            STARTED.setdefault(self.run_id, time.time())
            await asyncio.sleep(max(0.0, self.ends - time.time()))
            yield TriggerEvent({"status": "done", "run_id": self.run_id})

    return SleepTrigger


def _p99(values: list[float]) -> float | None:
    return values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)] if values else None


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run_arm(arm: str, n: int, url: str, poll: float, seed: int, cap_s: float) -> dict[str, Any]:
    import httpx
    from airflow.executors.workloads.trigger import RunTrigger
    from airflow.jobs import triggerer_job_runner as tjr
    from airflow.models.trigger import Trigger

    runs = httpx.post(
        f"{url}/_bench/create", json={"n": n, "low": 5.0, "high": 15.0, "fail_every": 10, "seed": seed}, timeout=60
    ).json()
    workloads = []
    for i, run in enumerate(runs):
        if arm in ("shared", "unshared"):
            classpath = "modelops_provider.foundry.triggers.ModelStudioRunTrigger"
            kwargs = {
                "model_studio_rid": run["studio"],
                "run_id": run["run_id"],
                "build_rid": run["build"],
                "config_version": 1,
                "conn_id": "foundry_bench",
                "poll_interval": poll,
                "deadline": time.time() + 3600,
                "cancel_on_kill": True,
            }
        elif arm == "dbt":
            classpath = "airflow.providers.dbt.cloud.triggers.dbt.DbtCloudRunJobTrigger"
            kwargs = {
                "conn_id": "dbt_bench",
                "run_id": run["dbt_id"],
                "account_id": 1,
                "end_time": time.time() + 3600,
                "poll_interval": poll,
            }
        else:
            classpath = "__main__.SleepTrigger"
            kwargs = {"run_id": run["run_id"], "ends": run["ends"]}
        workloads.append(RunTrigger(id=i + 1, classpath=classpath, encrypted_kwargs=Trigger.encrypt_kwargs(kwargs)))

    # Log as Airflow's trigger runner process does: JSON lines to the supervisor, which routes each
    # trigger's lines to its task's log file in a process of its own. Here they go to a file (the
    # same write per line, and an equally cheap renderer for every arm); left at the defaults, each
    # line would go through the console renderer, which no triggerer uses.
    from airflow.sdk.log import configure_logging, reset_logging

    reset_logging()
    log_io = open(os.environ["BENCH_TRIGGER_LOG"], "wb", buffering=0)  # noqa: SIM115 (open until exit)
    configure_logging(json_output=True, output=log_io, sending_to_supervisor=True)

    event_times: dict[int, float] = {}
    events: dict[int, dict[str, Any]] = {}

    class TimedEvents(deque):  # type: ignore[type-arg]
        def append(self, entry: Any) -> None:
            event_times.setdefault(entry.trigger_id, time.time())
            events.setdefault(entry.trigger_id, entry.event.payload)
            super().append(entry)

    class Comms:
        """The supervisor's side: hands every trigger over at the first sync, then none."""

        def __init__(self) -> None:
            self.pending = workloads
            self.handed_at: float | None = None
            self.failures: list[Any] = []
            self._reader_task = asyncio.get_running_loop().create_task(asyncio.sleep(10**9))

        async def asend(self, msg: Any) -> Any:
            if msg.failures:
                self.failures.extend(msg.failures)
            to_create, self.pending = self.pending, []
            if to_create:
                self.handed_at = time.time()
                sample["rss_before"] = _rss_kib()
                sample["cpu_before"] = time.process_time()
            return tjr.messages.TriggerStateSync(to_create=to_create, to_cancel=set())

    sample: dict[str, Any] = {"rss_peak": 0}

    class Runner(tjr.TriggerRunner):
        async def init_comms(self) -> None:
            from airflow.sdk.execution_time import task_runner

            self.comms_decoder = Comms()  # type: ignore[assignment]
            task_runner.SUPERVISOR_COMMS = self.comms_decoder  # type: ignore[assignment]

    rounds: list[tuple[int, int, int, float]] = []  # per poller round: waits, getBatch requests, run-list walks
    if arm == "shared":
        _count_rounds(rounds)
    runner = Runner()
    runner.events = TimedEvents()
    # A triggerer that has been up a while has imported the trigger's module already: keep that
    # one-off import out of the first-poll delay (for every arm alike).
    trigger_class = runner.get_trigger_by_classpath(workloads[0].classpath)
    # When each trigger yields its event (detection by the trigger), before the runner's own
    # handling (an awaited log line in a thread, then its event queue: "event_times" above).
    yielded: dict[int, float] = {}
    original_run = trigger_class.run

    run_started: dict[int, float] = {}

    async def timed_run(self: Any) -> Any:
        run_started.setdefault(self.trigger_id, time.time())
        async for event in original_run(self):
            yielded.setdefault(self.trigger_id, time.time())
            yield event

    trigger_class.run = timed_run

    async def watch() -> None:
        deadline = time.monotonic() + cap_s
        while len(events) + len(getattr(runner.comms_decoder, "failures", [])) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            sample["rss_peak"] = max(sample["rss_peak"], _rss_kib())
        sample["cpu_after"] = time.process_time()
        sample["done_at"] = time.time()
        runner.stop = True
        if runner._stop_event is not None:
            runner._stop_event.set()

    async def main() -> None:
        watcher = asyncio.get_running_loop().create_task(watch())
        await runner.arun()
        await watcher

    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("asyncio.run(main())", globals(), locals(), os.environ["BENCH_PROFILE"])
    else:
        asyncio.run(main())
    comms = runner.comms_decoder
    stats = httpx.get(f"{url}/_bench/stats", timeout=60).json()
    handed = comms.handed_at or 0.0
    correct = 0
    latencies: list[float] = []
    detections: list[float] = []
    for i, run in enumerate(runs):
        event = events.get(i + 1)
        if event is None:
            continue
        if arm in ("shared", "unshared"):
            want = "failed" if run["fails"] else "succeeded"
            # Ids and the outcome, no payload (the worker reads the run on resume).
            ok = (
                event.get("status") == "done"
                and event["target"]["run_id"] == run["run_id"]
                and event["target"]["build_rid"] == run["build"]
                and event["snapshot"]["outcome"] == want
                and event["snapshot"]["status"] == ("FAILED" if run["fails"] else "SUCCEEDED")
                and "resolvedOutputs" not in json.dumps(event)
            )
        elif arm == "dbt":
            ok = event.get("status") == ("error" if run["fails"] else "success") and event["run_id"] == run["dbt_id"]
        else:
            ok = event.get("status") == "done" and event["run_id"] == run["run_id"]
        correct += ok
        latencies.append(event_times[i + 1] - run["ends"])
        if i + 1 in yielded:
            detections.append(yielded[i + 1] - run["ends"])
    latencies.sort()
    detections.sort()
    seen = STARTED.values() if arm == "floor" else stats["first_seen"].values()
    first = [float(t) - handed for t in seen]
    # The runner's own share of the first-poll delay: when it started each trigger's run().
    started = [t - handed for t in run_started.values()]
    requests = sum(stats["counts"].values())
    cpu_s = sample.get("cpu_after", 0.0) - sample.get("cpu_before", 0.0)
    result = {
        "arm": arm,
        "n": n,
        "events": len(events),
        "correct": correct,
        "failures": len(comms.failures),
        "cpu_ms_per_wait": cpu_s * 1000 / n,
        "cpu_us_per_request": cpu_s * 1e6 / requests if requests else None,
        "requests_per_wait": requests / n,
        "kib_per_trigger": (sample["rss_peak"] - sample.get("rss_before", 0)) / n,
        "p99_detection_s": _p99(detections),
        "p99_runner_queue_s": _p99(latencies),
        "first_poll_max_s": max(first) if first else None,
        "run_started_max_s": max(started) if started else None,
        "polled_runs": len(first),
        "wall_s": sample.get("done_at", 0.0) - handed,
        "log_lines_per_wait": _count_lines(os.environ["BENCH_TRIGGER_LOG"]) / n,
        "counts": stats["counts"],
    }
    if rounds:
        # Regular ticks poll every wait; the rounds that admit newly arrived waits poll only those.
        result["ticks"] = len(rounds)
        result["getbatch_per_tick_max"] = max(r[1] for r in rounds)
        result["getbatch_per_tick_limit"] = math.ceil(n / 100)
        result["run_walks_per_tick_max"] = max(r[2] for r in rounds)
        result["largest_batch"] = max(stats["batch_sizes"]) if stats["batch_sizes"] else 0
        durations = sorted(r[3] for r in rounds)
        result["round_s_median"], result["round_s_max"] = durations[len(durations) // 2], durations[-1]
    return result


def _count_rounds(rounds: list[tuple[int, int, int, float]]) -> None:
    """Count, per round of the shared poller, the getBatch requests and the runs-list pages it read
    (none since the worker reads a finished run on resume; counted to show it)."""
    from modelops_provider.core.poller import Poller
    from modelops_provider.foundry.api import FoundryApi

    # Rounds overlap (each is a task of its own): each counts its own requests, in a context variable
    # that the round's task and the tasks it gathers share.
    counter: contextvars.ContextVar[dict[str, int]] = contextvars.ContextVar("bench_round")
    get_builds, find_runs, poll = FoundryApi.get_builds, FoundryApi.list_model_studio_runs_page, Poller._poll

    def counted_get_builds(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter.get({"batch": 0})["batch"] += 1
        return get_builds(self, *args, **kwargs)

    def counted_find_runs(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter.get({"walk": 0})["walk"] += 1
        return find_runs(self, *args, **kwargs)

    async def counted_poll(self: Any, waiters: list[Any]) -> None:
        mine = {"batch": 0, "walk": 0}
        counter.set(mine)
        started = time.monotonic()
        await poll(self, waiters)
        took = time.monotonic() - started
        rounds.append((len(waiters), mine["batch"], mine["walk"], took))

    FoundryApi.get_builds = counted_get_builds  # type: ignore[method-assign]
    FoundryApi.list_model_studio_runs_page = counted_find_runs  # type: ignore[method-assign]
    Poller._poll = counted_poll  # type: ignore[method-assign]


# --- the orchestration -----------------------------------------------------------------------
def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="100,2000,10000", help="comma-separated numbers of waits")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--cap", type=float, help="seconds an arm may take before it is stopped (default 120 + N/40)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--_serve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_arm", help=argparse.SUPPRESS)
    parser.add_argument("--_url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._serve:
        serve(*args._serve)
        return 0
    if args._arm:
        if args._arm == "floor":
            globals()["SleepTrigger"] = _sleep_trigger_class()
        result = run_arm(args._arm, int(args.n), args._url, args.poll, args.seed, args.cap)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arm(s) {sorted(unknown)}")
    if "dbt" in arms:
        try:
            import airflow.providers.dbt.cloud  # noqa: F401
        except ImportError:
            parser.error("the dbt arm needs apache-airflow-providers-dbt-cloud: pip install -e '.[bench]'")
    sizes = [int(x) for x in args.n.split(",") if x]
    caps = {n: args.cap if args.cap is not None else 120 + n / 40 for n in sizes}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="modelops-bench-") as tmp:
        folder = Path(tmp)
        cert, key = make_certificate(folder)
        server = subprocess.Popen(
            [sys.executable, str(HERE), "--_serve", str(cert), str(key)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            url = f"https://127.0.0.1:{port}"
            env = {
                **os.environ,
                "SSL_CERT_FILE": str(cert),
                "AIRFLOW_CONN_FOUNDRY_BENCH": json.dumps(
                    {"conn_type": "foundry", "host": "127.0.0.1", "port": port, "password": TOKEN}
                ),
                "AIRFLOW_CONN_DBT_BENCH": json.dumps(
                    {"conn_type": "dbt_cloud", "host": f"127.0.0.1:{port}", "password": TOKEN}
                ),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            }
            env.setdefault("AIRFLOW_HOME", str(folder / "airflow"))
            print(
                f"triggerer_scale: poll {args.poll:g} s, runs of 5-15 s (1 in 10 fails), fake service over TLS at {url}"
            )
            print(f"machine: {_load()} before the run")
            header = (
                f"{'N':>6} {'arm':9} {'ok/N':>11} {'CPU ms/wait':>11} {'CPU us/req':>10} {'req/wait':>8} "
                f"{'KiB/trigger':>11} {'p99 detect s':>12} {'p99 queued s':>12} {'1st poll max s':>14} "
                f"{'started max s':>13} {'wall s':>7} {'log/wait':>8}"
            )
            print(header)
            for n in sizes:
                for arm in arms:
                    arm_env = {
                        **env,
                        "AIRFLOW__MODELOPS__SHARED_POLLING": str(arm != "unshared"),
                        "BENCH_TRIGGER_LOG": str(folder / f"{arm}-{n}.triggers.jsonl"),
                    }
                    log_path = folder / f"{arm}-{n}.log"
                    with open(log_path, "w") as log_file:
                        proc = subprocess.Popen(
                            [
                                sys.executable,
                                str(HERE),
                                "--_arm",
                                arm,
                                "--n",
                                str(n),
                                "--_url",
                                url,
                                "--poll",
                                str(args.poll),
                                "--seed",
                                str(args.seed),
                                "--cap",
                                str(caps[n]),
                            ],
                            stdout=subprocess.PIPE,
                            stderr=log_file,
                            env=arm_env,
                            text=True,
                        )
                        try:
                            out, _ = proc.communicate(timeout=caps[n] + 120)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            out, _ = proc.communicate()
                    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
                    if line is None:
                        tail = log_path.read_text()[-2000:]
                        print(f"{n:>6} {arm:9} FAILED (exit {proc.returncode}); log tail:\n{tail}")
                        continue
                    r = json.loads(line[len("RESULT ") :])
                    results.append(r)
                    print(
                        f"{n:>6} {arm:9} {r['correct']:>5}/{n:<5} {_fmt(r['cpu_ms_per_wait'], '11.1f')} "
                        f"{_fmt(r['cpu_us_per_request'], '10.0f')} {_fmt(r['requests_per_wait'], '8.1f')} "
                        f"{_fmt(r['kib_per_trigger'], '11.1f')} {_fmt(r['p99_detection_s'], '12.2f')} "
                        f"{_fmt(r.get('p99_runner_queue_s'), '12.2f')} "
                        f"{_fmt(r['first_poll_max_s'], '14.2f')} {_fmt(r.get('run_started_max_s'), '13.2f')} "
                        f"{_fmt(r['wall_s'], '7.1f')} {_fmt(r.get('log_lines_per_wait'), '8.1f')}",
                        flush=True,
                    )
                    if "getbatch_per_tick_max" in r:
                        print(
                            f"{'':>6} {'':9} {r['ticks']} poller rounds: getBatch per round max "
                            f"{r['getbatch_per_tick_max']} (ceil(N/100) = {r['getbatch_per_tick_limit']}, largest "
                            f"batch {r['largest_batch']}), runs-list pages per round max "
                            f"{r['run_walks_per_tick_max']}, "
                            f"round took {r['round_s_median']:.2f} s (median), {r['round_s_max']:.2f} s (max); "
                            f"requests: {r['counts']}"
                        )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
    print(f"machine: {_load()} after the run")
    _summary(results, args.poll)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _summary(results: list[dict[str, Any]], poll: float) -> None:
    """The issue's goals, checked on this run's figures."""
    by = {(r["n"], r["arm"]): r for r in results}
    ours, dbt = by.get((2000, "shared")), by.get((2000, "dbt"))
    if ours:
        lines = []
        if dbt and ours["cpu_ms_per_wait"]:
            ratio = dbt["cpu_ms_per_wait"] / ours["cpu_ms_per_wait"]
            lines.append(f"CPU per wait {ratio:.1f}x less than dbt (goal >= 5x): {_verdict(ratio >= 5)}")
        first = ours["first_poll_max_s"]
        runner = ours.get("run_started_max_s")
        floor = by.get((2000, "floor"))
        share = "" if runner is None else f"; the runner started the last trigger at {runner:.2f} s"
        if floor and floor.get("first_poll_max_s") is not None:
            share += f", the floor's at {floor['first_poll_max_s']:.2f} s"
        lines.append(
            f"first poll within {first:.2f} s (goal <= 2 s{share}): {_verdict(first is not None and first <= 2)}"
        )
        if dbt and floor:
            lines.append(
                f"CPU per wait above the floor: ours {ours['cpu_ms_per_wait'] - floor['cpu_ms_per_wait']:.2f} ms, "
                f"dbt {dbt['cpu_ms_per_wait'] - floor['cpu_ms_per_wait']:.2f} ms"
            )
        p99 = ours["p99_detection_s"]
        ok = p99 is not None and p99 <= poll + 1
        lines.append(f"p99 detection {p99:.2f} s (goal <= poll + 1 s): {_verdict(ok)}")
        kib = ours["kib_per_trigger"]
        lines.append(f"{kib:.1f} KiB RSS per trigger (goal <= 40): {_verdict(kib <= 40)}")
        print("N=2000, shared polling: " + "; ".join(lines))
    big = by.get((10000, "shared"))
    if big:
        ticks, limit = big.get("getbatch_per_tick_max"), big.get("getbatch_per_tick_limit")
        reads = big["counts"].get("runs list", 0)
        print(
            f"N=10000, shared polling: {big['correct']}/{big['n']} correct events "
            f"({_verdict(big['correct'] == big['n'])}); per poller round at most {ticks} getBatch requests "
            f"(ceil(N/100) = {limit}) plus the reads of runs that ended ({reads} in all, "
            f"{big['n']} runs): {_verdict(ticks is not None and ticks <= limit and reads <= big['n'])}"
        )


if __name__ == "__main__":
    sys.exit(main())
