"""The SDK against the production shape: PostgreSQL, Redis and a separate worker process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from skillmix_client import AsyncSkillmix, ConflictError, Skillmix

from service.cli.embedded import refresh_settings, run_api, start_worker, stop_process
from tests.clients.conftest import new_key


def test_sync_and_async_clients_on_postgres_and_redis(
    pg_db: str, redis_url: str, env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("SKILLMIX_BROKER_URL", redis_url)
    refresh_settings()
    key = new_key("sdk-prod")
    worker = start_worker(log_path=tmp_path / "worker.log")
    try:
        with run_api() as base_url, Skillmix(base_url=base_url, api_key=key) as client:
            jobs = [client.jobs.create(params={"seconds": 0.3, "steps": 3}) for _ in range(3)]
            done = client.jobs.wait(jobs[0].id, progress=True, timeout=60)
            assert done.state == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
            assert [j.id for j in client.jobs.list(limit=2)] == [j.id for j in jobs[::-1]]

            async def follow() -> None:
                async with AsyncSkillmix(base_url=base_url, api_key=key) as aclient:
                    last = await aclient.jobs.wait(jobs[2].id, timeout=60)
                    assert last.state == "succeeded" and last.attempts == 1
                    path = await aclient.jobs.download_artifact(last.id, "result.json", tmp_path)
                    assert path.read_text().count("slept_seconds") == 1

            asyncio.run(follow())
            with pytest.raises(ConflictError):
                client.with_options(max_retries=0).jobs.cancel(jobs[1].id)
    finally:
        stop_process(worker)
