"""`skillmix demo`: the main job on the embedded default, driven over HTTP as a user would."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import typer

from service.auth import create_key
from service.db import session_scope
from service.embedded import embedded_stack


def follow(client: httpx.Client, job_id: str) -> dict:
    """Print progress from the job's server-sent events until it ends; return the job."""
    last = None
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=None) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            job = json.loads(line[6:])
            shown = (job["state"], job["progress"]["message"])
            if shown != last:
                last = shown
                pct = 100 * job["progress"]["fraction"]
                typer.echo(f"  [{pct:5.1f}%] {job['state']:<9} {job['progress']['message']}")
    return client.get(f"/v1/jobs/{job_id}").json()


def run_demo(data_dir: Path) -> int:
    typer.echo(f"skillmix demo: embedded service under {data_dir.resolve()}")
    with embedded_stack(data_dir) as stack:
        with session_scope() as session:
            _, key = create_key(session, "demo")
        client = httpx.Client(
            base_url=stack.base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        )
        typer.echo(f"API at {stack.base_url}; submitting a diagnostic job")
        job = client.post(
            "/v1/jobs", json={"kind": "sleep", "params": {"seconds": 2, "steps": 4}}
        ).json()
        job = follow(client, job["id"])
    typer.echo(
        f"job {job['id']}: {job['state']} after {job['attempts']} attempt(s); "
        f"result {json.dumps(job['result'])}"
    )
    return 0 if job["state"] == "succeeded" else 1
