"""API load: mixed traffic at a target rate against the production shape, with locust.

    .venv/bin/python benchmarks/bench_load.py [--duration 120] [--rate 200]
        [--api-workers N] [--users 50] [--keys 4] [--worker-concurrency 2]
        [--postgres-url URL] [--redis-url URL] [--json PATH] [--no-record]

What runs, all real processes on this machine:

- a fresh PostgreSQL database (created from --postgres-url, by default
  $SKILLMIX_TEST_POSTGRES_URL or postgresql+psycopg://postgres@127.0.0.1:5432/postgres,
  and dropped at the end) migrated with `skillmix db upgrade`;
- Redis as the broker and the shared rate-limit counter: --redis-url (default
  redis://127.0.0.1:6379/12). That Redis database is FLUSHED first: give one nothing
  else uses;
- `skillmix serve --workers N` (uvicorn worker processes; default: one per CPU, at least
  2) and one `skillmix worker` (curation and training queues) so submitted jobs run;
- a seeded project: --keys API keys, 20 skills and 50 finished `sleep` jobs;
- `locust --headless` (benchmarks/locustfile.py) with --users users, each at
  rate/users requests a second, for --duration seconds. --arrivals poisson (default):
  each user starts requests at exponential gaps, so together they make an open Poisson
  stream at the rate; --arrivals paced: locust's constant_throughput, where the users,
  all started at once, stay in step and send in bursts of --users requests every
  users/rate seconds.
  Traffic by weight: GET a job 30, list jobs 20, list skills 15, GET a skill 15,
  /healthz 10, POST /v1/jobs 10 (kind `sleep`, 10 ms, a fresh Idempotency-Key each).

The service runs with SKILLMIX_RATE_LIMIT_PER_MINUTE at ten times the target rate (per
key, and the traffic is spread over --keys keys) so the limiter is on the request path,
as in production, but never refuses; and SKILLMIX_MAX_ACTIVE_JOBS_PER_PROJECT=0 (no cap
on queued jobs), since submissions can outpace one worker for a while.

Prints the achieved requests/s, latency percentiles (p50, p90, p99, max), errors (any
status but the expected 2xx, and connection failures), a per-endpoint table, what became
of the submitted jobs, and the machine; appends a dated section to RESULTS.md unless
--no-record. --json writes the same figures as JSON. Logs of the service processes and
locust are kept in the printed work directory on failure (deleted otherwise).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
LOCUSTFILE = HERE / "locustfile.py"
DEFAULT_PG = os.environ.get(
    "SKILLMIX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
SEED_SKILLS, SEED_JOBS = 20, 50
SLEEP_SECONDS = 0.01
ARRIVALS = {
    "poisson": "Poisson arrivals: each user starts requests at exponential gaps",
    "paced": "paced arrivals: the users in step, a burst of one request each per interval",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def skillmix(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", *args]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM the process group we started, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- the environment: database, Redis, machine --------------------------------------------


def create_database(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    name = f"skillmix_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        version = conn.execute(text("SHOW server_version")).scalar_one()
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}", f"PostgreSQL {version}"


def drop_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


def prepare_redis(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.flushdb()
    return f"Redis {client.info('server')['redis_version']}"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --- where the CPU goes -------------------------------------------------------------------


def cpu_seconds(roots: list[int], names: tuple[str, ...] = ()) -> float:
    """User + system CPU seconds of the processes `roots` and their descendants, and of
    every process called one of `names` (PostgreSQL's backends, redis-server)."""
    import psutil  # locust's own dependency, so the bench extra has it

    procs: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            procs[pid] = root
            procs.update({c.pid: c for c in root.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    if names:
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] in names:
                procs[proc.pid] = proc
    total = 0.0
    for proc in procs.values():
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_groups(api: int, worker: int) -> dict[str, float]:
    return {
        "api": cpu_seconds([api]),
        "worker": cpu_seconds([worker]),
        "postgres": cpu_seconds([], ("postgres",)),
        "redis": cpu_seconds([], ("redis-server",)),
    }


# --- seeding and the run ------------------------------------------------------------------


def seed(base: str, env: dict[str, str], n_keys: int) -> dict[str, Any]:
    keys = [
        subprocess.run(
            skillmix("keys", "create", "--project", "bench", "-q"),
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        for _ in range(n_keys)
    ]
    h = {"Authorization": f"Bearer {keys[0]}"}
    with httpx.Client(base_url=base, headers=h, timeout=30) as http:
        skill_ids = []
        for i in range(SEED_SKILLS):
            r = http.post(
                "/v1/skills",
                json={
                    "name": f"bench-{i}",
                    "description": "a keyword skill for the load benchmark",
                    "detector": {"kind": "keywords", "keywords": [f"needle{i}", f"pin{i}"]},
                },
            )
            r.raise_for_status()
            skill_ids.append(r.json()["id"])
        job_ids = []
        for _ in range(SEED_JOBS):
            r = http.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 0}})
            r.raise_for_status()
            job_ids.append(r.json()["id"])

        def all_done() -> bool:
            return all(http.get(f"/v1/jobs/{j}").json()["state"] == "succeeded" for j in job_ids)

        wait_until(all_done, 120, "the seeded jobs to finish (is the worker running?)")
    return {"keys": keys, "skill_ids": skill_ids, "job_ids": job_ids}


def percentile(histogram: dict[float, int], q: float) -> float:
    """The q-quantile of locust's response-time histogram (ms, rounded as locust rounds)."""
    total = sum(histogram.values())
    if not total:
        return float("nan")
    rank, seen = q * total, 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def summarize(stats: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    merged: dict[float, int] = {}
    for entry in stats:
        hist = {float(k): int(v) for k, v in entry["response_times"].items()}
        for k, v in hist.items():
            merged[k] = merged.get(k, 0) + v
        rows.append(
            {
                "name": entry["name"],
                "requests": entry["num_requests"],
                "errors": entry["num_failures"],
                "rps": entry["num_requests"] / duration,
                "p50_ms": percentile(hist, 0.50),
                "p99_ms": percentile(hist, 0.99),
                "max_ms": entry["max_response_time"],
            }
        )
    requests = sum(r["requests"] for r in rows)
    return {
        "requests": requests,
        "errors": sum(r["errors"] for r in rows),
        "rps": requests / duration,
        "p50_ms": percentile(merged, 0.50),
        "p90_ms": percentile(merged, 0.90),
        "p99_ms": percentile(merged, 0.99),
        "max_ms": max((r["max_ms"] for r in rows), default=float("nan")),
        "endpoints": sorted(rows, key=lambda r: -r["requests"]),
    }


def job_outcomes(base: str, key: str) -> dict[str, int]:
    """States of every job of the project (read with the API, paging through)."""
    counts: dict[str, int] = {}
    after = None
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        while True:
            params: dict[str, Any] = {"limit": 200, **({"after": after} if after else {})}
            page = http.get("/v1/jobs", params=params, timeout=60).json()
            for job in page["data"]:
                counts[job["state"]] = counts.get(job["state"], 0) + 1
            if not page["has_more"]:
                return counts
            after = page["next_after"]


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    db_url, pg_version = create_database(args.postgres_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_version = prepare_redis(args.redis_url)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKILLMIX_")}
        (work / "prometheus").mkdir()
        env.update(
            SKILLMIX_DATABASE_URL=db_url,
            SKILLMIX_BROKER_URL=args.redis_url,
            SKILLMIX_DATA_DIR=str(work / "data"),
            SKILLMIX_RATE_LIMIT_PER_MINUTE=str(args.rate * 60 * 10),
            SKILLMIX_MAX_ACTIVE_JOBS_PER_PROJECT="0",
            PROMETHEUS_MULTIPROC_DIR=str(work / "prometheus"),
        )
        subprocess.run(
            skillmix("db", "upgrade"), env=env, cwd=ROOT, check=True, capture_output=True
        )
        procs.append(
            start(
                skillmix(
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.api_workers),
                ),
                env,
                work / "api.log",
            )
        )
        procs.append(
            start(
                skillmix(
                    "worker",
                    "--queues",
                    "curation,training",
                    "--concurrency",
                    str(args.worker_concurrency),
                ),
                env,
                work / "worker.log",
            )
        )
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200,
            60,
            "the API to be ready",
        )
        seeded = seed(base, env, args.keys)
        config = {
            **seeded,
            "per_user_rps": args.rate / args.users,
            "arrivals": args.arrivals,
            "sleep_seconds": SLEEP_SECONDS,
        }
        (work / "config.json").write_text(json.dumps(config))
        print(
            f"seeded: {args.keys} keys, {SEED_SKILLS} skills, {SEED_JOBS} jobs; "
            f"running {args.duration} s of load at {args.rate} req/s ({args.users} users) ...",
            flush=True,
        )
        locust_env = {**os.environ, "SKILLMIX_BENCH_CONFIG": str(work / "config.json")}
        stats_path = work / "stats.json"
        cpu_before = cpu_groups(procs[0].pid, procs[1].pid)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                base,
                "--users",
                str(args.users),
                "--spawn-rate",
                str(args.users),
                "--run-time",
                f"{args.duration}s",
                "--stop-timeout",
                "10",
                "--only-summary",
                "--json-file",
                str(stats_path.with_suffix("")),
                "--loglevel",
                "WARNING",
                "--exit-code-on-error",
                "0",
            ],
            env=locust_env,
            cwd=ROOT,
            check=True,
            stdout=open(work / "locust.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        wall = time.monotonic() - started
        cpu_after = cpu_groups(procs[0].pid, procs[1].pid)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
        cpu["locust"] = (children_after.ru_utime - children_before.ru_utime) + (
            children_after.ru_stime - children_before.ru_stime
        )
        stats = json.loads(stats_path.read_text())
        # Locust's own clock for the run: from the first request to the last.
        first = min(e["start_time"] for e in stats)
        last = max(e["last_request_timestamp"] or first for e in stats)
        duration = max(last - first, 1e-9)
        summary = summarize(stats, duration)
        return {
            "date": datetime.date.today().isoformat(),
            "target_rps": args.rate,
            "duration_s": round(duration, 1),
            "locust_wall_s": round(wall, 1),
            "users": args.users,
            "arrivals": args.arrivals,
            "keys": args.keys,
            "api_workers": args.api_workers,
            "worker_concurrency": args.worker_concurrency,
            "rate_limit_per_minute": args.rate * 60 * 10,
            **summary,
            "cpu_seconds": {name: round(value, 1) for name, value in cpu.items()},
            "jobs": job_outcomes(base, seeded["keys"][0]),
            "machine": {**machine(), "postgres": pg_version, "redis": redis_version},
        }
    finally:
        for proc in reversed(procs):
            stop(proc)
        drop_database(args.postgres_url, db_url)


def report(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gb']} GB, {m['os']}, "
        f"Python {m['python']}, {m['postgres']}, {m['redis']}; load average at the end "
        f"{', '.join(map(str, m['load_average']))}. Everything on this one machine: the API "
        f"({r['api_workers']} uvicorn workers), one Celery worker (prefork, concurrency "
        f"{r['worker_concurrency']}), PostgreSQL, Redis and locust.",
        f"Load: {r['users']} locust users at {r['target_rps']} req/s in all "
        f"({ARRIVALS[r['arrivals']]}) for "
        f"{r['duration_s']} s, over {r['keys']} API keys of one project (rate limit "
        f"{r['rate_limit_per_minute']:,}/min per key: on, never reached). Traffic: GET a job "
        "30, list jobs 20, list skills 15, GET a skill 15, /healthz 10, POST /v1/jobs 10 "
        f"(sleep {SLEEP_SECONDS * 1000:.0f} ms, fresh Idempotency-Key).",
        "",
        f"**{r['rps']:.1f} req/s achieved** (target {r['target_rps']}), "
        f"{r['requests']:,} requests, **{r['errors']} errors**; latency p50 "
        f"{r['p50_ms']:.0f} ms, p90 {r['p90_ms']:.0f} ms, **p99 {r['p99_ms']:.0f} ms**, "
        f"max {r['max_ms']:.0f} ms.",
        "",
        "| endpoint | requests | req/s | p50, ms | p99, ms | max, ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in r["endpoints"]:
        lines.append(
            f"| {e['name']} | {e['requests']:,} | {e['rps']:.1f} | {e['p50_ms']:.0f} | "
            f"{e['p99_ms']:.0f} | {e['max_ms']:.0f} | {e['errors']} |"
        )
    cpu, wall = r["cpu_seconds"], r["locust_wall_s"]
    lines += [
        "",
        "CPU used during the run (user + system), in cores on average over locust's "
        f"{wall:.0f} s and in ms per request: "
        + ", ".join(
            f"{name} {seconds / wall:.2f} ({1000 * seconds / max(r['requests'], 1):.1f} ms)"
            for name, seconds in cpu.items()
        )
        + f"; all {sum(cpu.values()) / wall:.2f} of {m['cpus']} cores.",
    ]
    jobs = ", ".join(f"{n:,} {state}" for state, n in sorted(r["jobs"].items()))
    lines += ["", f"Jobs of the project at the end (seeded and submitted): {jobs}."]
    return "\n".join(lines)


def main() -> int:
    cpus = os.cpu_count() or 2
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=120, help="seconds of load (default 120)")
    p.add_argument("--rate", type=int, default=200, help="target requests/s (default 200)")
    p.add_argument("--users", type=int, default=50, help="locust users (default 50)")
    p.add_argument(
        "--arrivals",
        choices=["poisson", "paced"],
        default="poisson",
        help="request starts: random (Poisson, default) or in step (paced bursts)",
    )
    p.add_argument("--keys", type=int, default=4, help="API keys the users share (default 4)")
    p.add_argument(
        "--api-workers", type=int, default=max(2, cpus), help="uvicorn workers (default: CPUs)"
    )
    p.add_argument("--worker-concurrency", type=int, default=2)
    p.add_argument("--postgres-url", default=DEFAULT_PG, help="admin URL to create the DB from")
    p.add_argument("--redis-url", default=DEFAULT_REDIS, help="a Redis DB to flush and use")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args()
    if args.rate < 1 or args.users < 1 or args.duration < 1 or args.keys < 1:
        p.error("--rate, --users, --duration and --keys must be positive")

    work = Path(tempfile.mkdtemp(prefix="skillmix-bench-load-"))
    try:
        result = run(args, work)
    except BaseException:
        print(f"failed; logs kept in {work}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    text = report(result)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not args.no_record:
        with RESULTS.open("a") as f:
            f.write(f"\n## bench_load.py, {result['date']}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
