"""A bounded soak: scans, mixtures (auto baselines included), verifications and sleep jobs
run while a chaos loop kills workers and restarts Redis and PostgreSQL at random; then the
invariants are checked and a table printed. Not CI; loopback only; stops by itself.

    PYTHONPATH=.:clients/python .venv/bin/python benchmarks/soak.py \\
        [--minutes 5] [--seed N] [--settle-minutes 10] [--keep]

What runs, all on this machine and all started (and stopped) here:

- a private PostgreSQL cluster and a private redis-server (append-only, fsync always), the
  fault tests' helpers tests/reliability/postgres_server.py and redis_server.py (imported);
- the API in a thread of this process (service.cli.embedded.run_api), driven over HTTP
  with the SDK (skillmix_client.Skillmix);
- `skillmix worker` processes: one for the curation queue (2 pool processes), one for the
  training queue (solo), with the fault tests' short recovery knobs (lease 3 s, sweep every
  second; tests/reliability/conftest.FAST_RECOVERY) and max_attempts 10, since faults come
  every ~25 s here, far more often than the 3 attempts of the default are meant for.

Workload: the demo's planted corpus (service.cli.demo: 3,000 documents, 3 skills). Two
driver threads each repeat a round until the chaos period ends: a `sleep` job (8 s in 16
steps), a scan of the corpus for all skills, and once it succeeded a mixture (one skill
upweighted to 8 a batch) and a verification of it against an `auto` baseline (nano, seeds
0 and 1, 300 steps, a checkpoint every 50), waiting for the verification before the next
round. API calls that fail on an outage (503, connection refused) are tried again with the
same idempotency key.

Chaos, at gaps drawn from the seeded RNG (the seed is printed; `--seed` repeats the
choices, not the timing of the work; each kind comes once, in a random order, before the
draws by weight 5:2:1:2): SIGKILL a worker's process group and start another
for its queue; SIGKILL Redis and start it again on its data; SIGKILL Redis and start it
empty (lost messages: the broker epoch makes the sweeper send them again); stop
PostgreSQL (`pg_ctl -m fast`) for 2-8 s and start it again.

After `--minutes`, no more faults and no more rounds; up to `--settle-minutes` for every
job to end; then the invariants:

- every job final (queued/running left over = broken), and every job succeeded (a failure
  is listed with its error);
- no work ran twice at once: no (job, attempt) claimed twice in the workers' logs; each
  sleep job's executions.jsonl (service/worker/handlers/sleep.py) has no two executions
  interleaved and exactly one that ended; each training run (arm, size, seed) of a
  verification wrote its result.json once (a watcher thread records each file's inode and
  mtime every 0.3 s: one version per file) and logged "trained N steps" at most once
  (a run finished by an attempt that was then killed is reused, not trained again); every
  run of a succeeded verification is `done`, one per arm x size x seed;
- every succeeded mixture has a manifest and an audit that passed;
- every artifact of every succeeded job downloads through the API with its listed size
  (and JSON ones parse);
- no orphaned process: after teardown no process names the soak's folders in its command
  line or environment.

Exit status 1 if an invariant broke. Logs and data are kept with `--keep` (else deleted).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from skillmix_client import (
    APIConnectionError,
    InternalServerError,
    RateLimitError,
    Skillmix,
)
from sqlalchemy import select

from service import migrate
from service.auth import create_key
from service.cli.demo import DEMO_SKILLS, make_corpus
from service.cli.embedded import refresh_settings, run_api, start_worker, stop_workers
from service.db import session_scope
from service.models import Job
from service.settings import get_settings
from tests.reliability.conftest import FAST_RECOVERY, FINAL, runs_overlap
from tests.reliability.postgres_server import PostgresServer
from tests.reliability.redis_server import RedisServer

T = TypeVar("T")

FAULTS = {"kill-worker": 5, "redis-restart": 2, "redis-wipe": 1, "postgres-restart": 2}
"""Fault kinds and their weights."""
QUEUES = {"curation": 2, "training": 1}
"""A worker per queue, and its concurrency."""
BATCH_TOKENS, SEQ_LEN, DOSE = 1024, 64, 8
STEPS, HELDOUT_BATCHES = 300, 64
RUNS = 4  # 2 arms (upweighted, auto baseline) x 1 size x 2 seeds
SLEEP = {"seconds": 8.0, "steps": 16}
TRANSIENT = (APIConnectionError, InternalServerError, RateLimitError)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class Soak:
    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.folder, self.rng = folder, rng
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.all_workers: list[subprocess.Popen[bytes]] = []
        self.faults: Counter[str] = Counter()
        self.first = rng.sample(list(FAULTS), len(FAULTS))  # each kind once, first
        self.pg: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.stop = threading.Event()  # no more rounds
        self.done = threading.Event()  # no more watching
        self.errors: list[str] = []
        self.rounds = 0
        self.versions: dict[Path, set[tuple[int, int]]] = defaultdict(set)

    # --- processes --------------------------------------------------------------------

    def start_worker(self, queue: str) -> None:
        n = len(self.all_workers) + 1
        proc = start_worker(
            queue, concurrency=QUEUES[queue], log_path=self.logs / f"worker-{n}-{queue}.log"
        )
        self.workers[queue] = proc
        self.all_workers.append(proc)

    def teardown(self) -> None:
        if self.all_workers:
            stop_workers(self.all_workers, timeout=10)
        if self.redis is not None:
            self.redis.stop(signal.SIGKILL)
        if self.pg is not None:
            self.pg.remove()

    # --- chaos ------------------------------------------------------------------------

    def fault(self) -> None:
        """The next fault: each kind once, in a shuffled order, then drawn by weight."""
        if self.first:
            kind = self.first.pop()
        else:
            kind = self.rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
        assert self.redis is not None and self.pg is not None
        if kind == "kill-worker":
            queue = self.rng.choice(sorted(self.workers))
            proc = self.workers[queue]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.start_worker(queue)
            detail = f"{queue} worker pid {proc.pid}"
        elif kind in ("redis-restart", "redis-wipe"):
            self.redis.stop(signal.SIGKILL)
            down = self.rng.uniform(1, 4)
            time.sleep(down)
            if kind == "redis-wipe":
                self.redis.wipe()
            self.redis.start(persist=True)
            detail = f"down {down:.1f} s"
        else:
            self.pg.stop("fast")
            down = self.rng.uniform(2, 8)
            time.sleep(down)
            self.pg.start()
            detail = f"down {down:.1f} s"
        self.faults[kind] += 1
        log(f"fault: {kind} ({detail})")

    def chaos(self, seconds: float, gaps: tuple[float, float]) -> None:
        end = time.monotonic() + seconds
        while True:
            gap = self.rng.uniform(*gaps)
            if time.monotonic() + gap >= end:
                time.sleep(max(0.0, end - time.monotonic()))
                return
            time.sleep(gap)
            self.fault()

    # --- watching result.json files ---------------------------------------------------

    def watch_results(self) -> None:
        while not self.done.is_set():
            self.look_at_results()
            self.done.wait(0.3)

    def look_at_results(self) -> None:
        for path in get_settings().work_dir.glob("*/*/*/*/result.json"):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                self.versions[path].add((st.st_ino, st.st_mtime_ns))


def patient(call: Callable[[], T], what: str, seconds: float = 180) -> T:
    """`call()`, tried again while the service is unreachable or answers 5xx/429."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except TRANSIENT as exc:
            if time.monotonic() > deadline:
                raise
            log(f"  ({what}: {type(exc).__name__}; trying again)")
            time.sleep(2)


def wait_job(client: Skillmix, job_id: str, stop: threading.Event, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        with contextlib.suppress(*TRANSIENT):
            state = client.jobs.retrieve(job_id).state
            if state in FINAL:
                return state
        stop.wait(2)
    return "unfinished"


def driver(soak: Soak, client: Skillmix, name: str, corpus_id: str, skill_ids: list[str]) -> None:
    """Rounds of work until the chaos period ends."""
    rounds = 0
    try:
        while not soak.stop.is_set():
            rounds += 1
            soak.rounds += 1
            skill = skill_ids[rounds % len(skill_ids)]
            one_round(soak, client, f"{name}.{rounds}", corpus_id, skill_ids, skill)
    except Exception:  # reported as a broken invariant, not hidden
        soak.errors.append(f"driver {name}: {traceback.format_exc()}")
        log(f"driver {name} failed:\n{traceback.format_exc()}")


def one_round(
    soak: Soak, client: Skillmix, tag: str, corpus_id: str, skill_ids: list[str], skill: str
) -> None:
    """A sleep job and a scan; once the scan succeeded, a mixture upweighting `skill` and
    its verification against an auto baseline; then wait for the verification."""
    key = uuid.uuid4().hex
    patient(
        lambda: client.jobs.create(kind="sleep", params=SLEEP, idempotency_key=key + "s"),
        f"{tag} sleep",
    )
    scan = patient(
        lambda: client.scans.create(
            corpus_id=corpus_id,
            skill_ids=skill_ids,
            batch_tokens=BATCH_TOKENS,
            idempotency_key=key + "c",
        ),
        f"{tag} scan",
    )
    assert scan.job is not None
    log(f"round {tag}: scan {scan.id}")
    if wait_job(client, scan.job.id, soak.stop, 600) != "succeeded":
        return
    mixture = patient(
        lambda: client.mixtures.create(
            corpus_id=corpus_id,
            scan_id=scan.id,
            batch_tokens=BATCH_TOKENS,
            seq_len=SEQ_LEN,
            max_batches=STEPS + HELDOUT_BATCHES + 16,
            plan={
                skill: {"target": {"per_batch": DOSE}, "source": "synthesize", "max_repeats": 100}
            },
            idempotency_key=key + "m",
        ),
        f"{tag} mixture",
    )
    verification = patient(
        lambda: client.verifications.create(
            arms={"upweighted": mixture.id, "baseline": "auto"},
            skill_ids=[skill],
            sizes=["nano"],
            seeds=[0, 1],
            token_budget=STEPS * BATCH_TOKENS,
            eval_every=100,
            device="cpu",
            extra_body={"checkpoint_every": 50},
            idempotency_key=key + "v",
        ),
        f"{tag} verification",
    )
    assert verification.job is not None
    log(f"round {tag}: mixture {mixture.id}, verification {verification.id}")
    wait_job(client, verification.job.id, soak.stop, 900)


# --- the invariants ---------------------------------------------------------------------


def db_jobs() -> list[dict[str, Any]]:
    with session_scope() as session:
        return [
            {
                "id": j.id,
                "kind": j.kind,
                "state": j.state,
                "attempts": j.attempts,
                "error": j.error,
                "params": j.params,
            }
            for j in session.scalars(select(Job))
        ]


def settle(seconds: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        jobs = db_jobs()
        left = [j for j in jobs if j["state"] not in FINAL]
        if not left or time.monotonic() > deadline:
            return jobs
        time.sleep(2)


def log_lines(soak: Soak) -> list[str]:
    return [
        line
        for path in sorted(soak.logs.glob("worker-*.log"))
        for line in path.read_text(errors="replace").splitlines()
    ]


def check(soak: Soak, client: Skillmix, jobs: list[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    out: list[tuple[str, bool, str]] = []
    by_id = {j["id"]: j for j in jobs}
    work = get_settings().work_dir

    left = [f"{j['id']} ({j['kind']}) {j['state']}" for j in jobs if j["state"] not in FINAL]
    out.append(("every job final", not left, "; ".join(left) or f"{len(jobs)} jobs"))
    failed = [
        f"{j['id']} ({j['kind']}, {j['attempts']} attempts): {(j['error'] or '')[:200]}"
        for j in jobs
        if j["state"] in ("failed", "cancelled")
    ]
    out.append(("every job succeeded", not failed, "; ".join(failed) or "-"))

    lines = log_lines(soak)
    claims = Counter(re.findall(r"job (\S+) attempt (\d+):", "\n".join(lines)))
    twice = [f"{job} attempt {n} x{c}" for (job, n), c in claims.items() if c > 1]
    beyond = [
        f"{job} attempt {n} > {by_id[job]['attempts']}"
        for job, n in claims
        if job in by_id and int(n) > by_id[job]["attempts"]
    ]
    out.append(
        (
            "no attempt claimed twice",
            not twice and not beyond,
            "; ".join(twice + beyond) or f"{len(claims)} attempts in the logs",
        )
    )

    bad_sleeps = []
    sleeps = [j for j in jobs if j["kind"] == "sleep"]
    for j in sleeps:
        path = work / j["id"] / "executions.jsonl"
        records = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        ends = sum(r["event"] == "end" for r in records)
        if runs_overlap(records) or (j["state"] == "succeeded" and ends != 1):
            bad_sleeps.append(f"{j['id']}: {ends} ends, overlapping {runs_overlap(records)}")
    out.append(
        (
            "sleep jobs: executions never overlap, one end",
            not bad_sleeps,
            "; ".join(bad_sleeps) or f"{len(sleeps)} jobs",
        )
    )

    soak.done.set()
    soak.look_at_results()
    verifications = [j for j in jobs if j["kind"] == "verification"]
    ver_jobs = {j["id"] for j in verifications}
    rewritten = [
        f"{p.relative_to(work)}: {len(v)} versions"
        for p, v in soak.versions.items()
        if p.relative_to(work).parts[0] in ver_jobs and len(v) > 1
    ]
    trained: Counter[tuple[str, str]] = Counter()
    for line in lines:
        m = re.search(r"trained \d+ steps in .*\[(.*)\]", line)
        if m:
            fields = dict(f.split("=", 1) for f in m.group(1).split() if "=" in f)
            trained[(fields.get("job_id", "?"), fields.get("run", "?"))] += 1
    trained_twice = [f"{job} {run} x{c}" for (job, run), c in trained.items() if c > 1]
    results = sum(
        1 for p in soak.versions if p.relative_to(work).parts[0] in ver_jobs and p.exists()
    )
    out.append(
        (
            "training runs: result.json written once, trained once",
            not rewritten and not trained_twice,
            "; ".join(rewritten + trained_twice)
            or f"{results} result.json files, {sum(trained.values())} 'trained' lines",
        )
    )

    bad_runs = []
    for v in patient(lambda: list(client.verifications.list()), "list verifications"):
        if v.job is None or v.job.state != "succeeded":
            continue
        keys = [(r.get("arm"), r.get("size"), r.get("seed")) for r in v.runs]
        states = Counter(r.get("state") for r in v.runs)
        if states != Counter({"done": RUNS}) or len(set(keys)) != len(keys):
            bad_runs.append(f"{v.id}: {dict(states)}")
    out.append(
        (
            f"succeeded verifications: {RUNS} runs, all done",
            not bad_runs,
            "; ".join(bad_runs) or f"{len(verifications)} verifications",
        )
    )

    bad_audits, built = [], 0
    for m in patient(lambda: list(client.mixtures.list()), "list mixtures"):
        if m.job is None or m.job.state != "succeeded":
            continue
        built += 1
        if m.manifest is None or m.audit is None or not m.audit.passed:
            bad_audits.append(f"{m.id}: audit {m.audit.passed if m.audit else None}")
    out.append(
        (
            "every built mixture's audit passed",
            not bad_audits,
            "; ".join(bad_audits) or f"{built} mixtures",
        )
    )

    unreadable, read = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for j in jobs:
            if j["state"] != "succeeded":
                continue
            for artifact in patient(lambda j=j: client.jobs.artifacts(j["id"]), "artifacts"):
                try:
                    path = patient(
                        lambda j=j, a=artifact: client.jobs.download_artifact(
                            j["id"], a.name, Path(tmp) / f"{j['id']}-{a.name}"
                        ),
                        "download",
                    )
                    if path.stat().st_size != artifact.size:
                        raise ValueError(f"{path.stat().st_size} bytes, listed {artifact.size}")
                    if artifact.name.endswith(".json"):
                        json.loads(path.read_text())
                    read += 1
                    path.unlink()
                except Exception as exc:
                    unreadable.append(f"{j['id']}/{artifact.name}: {exc}")
    out.append(
        (
            "every artifact readable via the API",
            not unreadable,
            "; ".join(unreadable) or f"{read} artifacts",
        )
    )
    return out


def orphans(soak: Soak) -> list[str]:
    """Processes other than this one that name the soak's folders."""
    marks = [str(soak.folder)] + ([str(soak.pg.folder)] if soak.pg else [])
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(mark.encode() in text for mark in marks):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {cmd[:120]}")
    return found


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="chaos period")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--settle-minutes", type=float, default=10.0)
    parser.add_argument("--gap", type=float, nargs=2, default=(15.0, 35.0), metavar=("MIN", "MAX"))
    parser.add_argument("--keep", action="store_true", help="keep the data and logs folder")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="skillmix-soak-"))
    soak = Soak(folder, random.Random(seed))
    print(
        f"soak: seed {seed}, {args.minutes:g} min of faults, settle <= {args.settle_minutes:g}"
        f" min, folder {folder}",
        flush=True,
    )
    for key, value in {
        **FAST_RECOVERY,
        "SKILLMIX_DATA_DIR": str(folder / "data"),
        "SKILLMIX_MAX_ATTEMPTS": "10",
        "SKILLMIX_MAX_ACTIVE_JOBS_PER_PROJECT": "0",
    }.items():
        os.environ[key] = value
    results: list[tuple[str, bool, str]] = []
    jobs: list[dict[str, Any]] = []
    watcher = threading.Thread(target=soak.watch_results, daemon=True)
    try:
        with sigterm_as_interrupt():
            soak.pg = PostgresServer()
            soak.pg.create()
            soak.redis = RedisServer(folder / "redis")
            soak.redis.start(persist=True)
            os.environ["SKILLMIX_DATABASE_URL"] = soak.pg.url()
            os.environ["SKILLMIX_BROKER_URL"] = soak.redis.url()
            refresh_settings()
            migrate.upgrade(soak.pg.url())
            with session_scope() as session:
                _, key = create_key(session, "soak")
            for queue in QUEUES:
                soak.start_worker(queue)
            with (
                run_api() as base_url,
                Skillmix(base_url=base_url, api_key=key, timeout=60) as client,
            ):
                corpora = folder / "data" / "corpora"  # under the allowed roots
                skills = [client.skills.create(**definition) for definition, _ in DEMO_SKILLS]
                corpus = client.corpora.create(
                    name="demo-web",
                    uri=make_corpus(corpora / "web"),
                    format="jsonl.gz",
                )
                watcher.start()
                ids = [s.id for s in skills]
                drivers = [
                    threading.Thread(
                        target=driver, args=(soak, client, name, corpus.id, ids), daemon=True
                    )
                    for name in ("a", "b")
                ]
                for thread in drivers:
                    thread.start()
                    time.sleep(5)
                soak.chaos(args.minutes * 60, tuple(args.gap))
                log("chaos over: no more faults or rounds; settling")
                soak.stop.set()
                for thread in drivers:
                    thread.join(60)
                jobs = settle(args.settle_minutes * 60)
                log("checking the invariants")
                results = check(soak, client, jobs)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        results.append(("ran to the end", False, "interrupted"))
    except Exception:
        traceback.print_exc()
        results.append(("ran to the end", False, traceback.format_exc(limit=1)[-300:]))
    finally:
        soak.stop.set()
        soak.done.set()
        soak.teardown()
    time.sleep(1)
    left = orphans(soak)
    results.append(("no orphaned processes", not left, "; ".join(left) or "-"))
    results += [(f"driver error {i + 1}", False, e[-300:]) for i, e in enumerate(soak.errors)]
    if args.keep:
        print(f"kept: {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)

    attempts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for j in jobs:
        attempts[(j["kind"], j["state"])].append(j["attempts"])
    print()
    print(
        f"Seed {seed}; {args.minutes:g} min of faults; wall time "
        f"{(time.monotonic() - started) / 60:.1f} min; {soak.rounds} rounds; "
        f"{platform.python_version()}, nproc={os.cpu_count()}; "
        f"{datetime.date.today().isoformat()}\n"
    )
    print(
        table(
            [[kind, str(n)] for kind, n in sorted(soak.faults.items())]
            + [["total", str(sum(soak.faults.values()))]],
            ["fault", "injected"],
        )
    )
    print()
    print(
        table(
            [
                [kind, state, str(len(a)), str(sum(a)), str(max(a))]
                for (kind, state), a in sorted(attempts.items())
            ],
            ["job kind", "state", "jobs", "attempts", "max attempts"],
        )
    )
    print()
    print(
        table(
            [[name, "held" if ok else "**broken**", " ".join(detail.replace("|", "/").split())]
             for name, ok, detail in results],
            ["invariant", "result", "detail"],
        )
    )  # fmt: skip
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
