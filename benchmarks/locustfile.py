"""Locust users for bench_load.py: mixed API traffic at a fixed rate per user.

bench_load.py starts the service, seeds it and runs

    locust -f benchmarks/locustfile.py --headless -u USERS -r USERS -t 120s ...

with SKILLMIX_BENCH_CONFIG naming a JSON file: {"keys": [...], "job_ids": [...],
"skill_ids": [...], "per_user_rps": 4.0, "arrivals": "poisson", "sleep_seconds": 0.01}.
Each user takes one of the keys in turn and starts `per_user_rps` requests a second:

- "poisson": at random times, exponential gaps between starts, so the users together
  make an open Poisson stream at the target rate, the usual model of many independent
  clients;
- "paced": at fixed intervals (locust's constant_throughput). Locust starts every user
  at the same instant, so they stay in step: all of them send at once, every interval,
  a burst as large as the number of users.

Either way a user whose requests take longer falls behind instead of queueing more.
Traffic, by weight: mostly reads (a job, the job list, the skill list, a skill,
/healthz) and one request in ten a job submission (kind `sleep`, a few milliseconds, with
an Idempotency-Key) whose id later reads may pick.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_throughput, task

CONFIG: dict[str, Any] = json.loads(Path(os.environ["SKILLMIX_BENCH_CONFIG"]).read_text())
_KEYS = itertools.cycle(CONFIG["keys"])
MAX_OWN_JOBS = 200  # ids of jobs this user submitted, for its reads to pick from


def poisson_starts(rate: float) -> Callable[[Any], float]:
    """A wait_time: starts at exponential gaps (mean 1/rate) on the user's own schedule."""

    def wait(user: Any) -> float:
        now = time.monotonic()
        user.next_start = max(getattr(user, "next_start", now), now - 1.0 / rate)
        user.next_start += user.rng.expovariate(rate)
        return max(0.0, user.next_start - now)

    return wait


class ApiUser(FastHttpUser):
    if CONFIG.get("arrivals", "poisson") == "paced":
        wait_time = constant_throughput(CONFIG["per_user_rps"])
    else:
        wait_time = poisson_starts(CONFIG["per_user_rps"])

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {next(_KEYS)}"}
        self.jobs: list[str] = list(CONFIG["job_ids"])
        self.rng = random.Random()

    @task(30)
    def get_job(self) -> None:
        job_id = self.rng.choice(self.jobs)
        self.client.get(f"/v1/jobs/{job_id}", headers=self.headers, name="GET /v1/jobs/{id}")

    @task(20)
    def list_jobs(self) -> None:
        self.client.get("/v1/jobs?limit=20", headers=self.headers, name="GET /v1/jobs")

    @task(15)
    def list_skills(self) -> None:
        self.client.get("/v1/skills?limit=20", headers=self.headers, name="GET /v1/skills")

    @task(15)
    def get_skill(self) -> None:
        skill_id = self.rng.choice(CONFIG["skill_ids"])
        self.client.get(f"/v1/skills/{skill_id}", headers=self.headers, name="GET /v1/skills/{id}")

    @task(10)
    def healthz(self) -> None:
        self.client.get("/healthz", name="GET /healthz")

    @task(10)
    def submit_job(self) -> None:
        with self.client.post(
            "/v1/jobs",
            json={"kind": "sleep", "params": {"seconds": CONFIG["sleep_seconds"]}},
            headers={**self.headers, "Idempotency-Key": uuid.uuid4().hex},
            name="POST /v1/jobs",
            catch_response=True,
        ) as response:
            if response.status_code != 202:
                response.failure(f"status {response.status_code}: {response.text[:200]}")
                return
            self.jobs.append(response.json()["id"])
            if len(self.jobs) > len(CONFIG["job_ids"]) + MAX_OWN_JOBS:
                self.jobs.pop(len(CONFIG["job_ids"]))
