"""Jobs: create (diagnostic `sleep` jobs), list, retrieve, cancel, retry, follow, wait,
artifacts."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, Union

import httpx

from skillmix_client._core import APICall, path_param
from skillmix_client._resource import (
    AsyncResource,
    SyncResource,
    async_call,
    async_list,
    list_call,
    sync_call,
    sync_list,
)
from skillmix_client._sse import JobEvents
from skillmix_client._types import NOT_GIVEN, NotGiven, body_of
from skillmix_client._waiting import DEFAULT_POLL_INTERVAL, Watch
from skillmix_client.types import Artifact, Job, Page

PathLike = Union[str, "os.PathLike[str]"]


def _job_path(job_id: str, *rest: str) -> str:
    return "/".join(["/v1/jobs", path_param(job_id), *rest])


def create(
    *,
    kind: str = "sleep",
    params: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    queue: str | NotGiven = NOT_GIVEN,
    idempotency_key: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> APICall[Job]:
    """Start a diagnostic job (kind `sleep`, params `seconds`, `steps`, `fail`). Real work
    starts from scans, mixtures and verifications."""
    body = body_of({"kind": kind, "params": params, "queue": queue}, extra_body)
    return APICall(
        "POST", "/v1/jobs", Job.model_validate, body=body, idempotency_key=idempotency_key
    )


def list_(*, limit: int | None = None, after: str | None = None) -> APICall[Page[Job]]:
    """This project's jobs, newest first, across all pages."""
    return list_call("/v1/jobs", Job, limit, after)


def retrieve(job_id: str) -> APICall[Job]:
    """One job: state, progress, attempts, error, result and artifacts."""
    return APICall("GET", _job_path(job_id), Job.model_validate)


def cancel(job_id: str) -> APICall[Job]:
    """Cancel a queued or running job; a finished one raises `ConflictError`."""
    return APICall("POST", _job_path(job_id, "cancel"), Job.model_validate)


def retry(job_id: str) -> APICall[Job]:
    """Send a failed or cancelled job again; it resumes from what it had completed. Any
    other state raises `ConflictError`."""
    return APICall("POST", _job_path(job_id, "retry"), Job.model_validate)


def artifacts(job_id: str) -> APICall[list[Artifact]]:
    """The job's named artifacts (reports, plots, manifests)."""
    return APICall(
        "GET",
        _job_path(job_id, "artifacts"),
        lambda body: [Artifact.model_validate(a) for a in body["data"]],
    )


def _events(job_id: str, timeout: httpx.Timeout | None = None) -> APICall[None]:
    return APICall(
        "GET",
        _job_path(job_id, "events"),
        lambda _: None,
        timeout=timeout,
        headers={"Accept": "text/event-stream"},
    )


def _artifact(job_id: str, name: str) -> APICall[None]:
    return APICall(
        "GET",
        _job_path(job_id, "artifacts", path_param(name)),
        lambda _: None,
        headers={"Accept": "*/*"},
    )


def _target(path: PathLike, name: str) -> tuple[Path, Path]:
    """Where to write an artifact (a directory gets the artifact's name) and the temporary
    file it is streamed to first, so a broken download never leaves a partial file."""
    target = Path(path)
    if target.is_dir():
        target = target / name
    return target, target.with_name(target.name + ".part")


class Jobs(SyncResource):
    create = sync_call(create)
    list = sync_list(list_)
    retrieve = sync_call(retrieve)
    cancel = sync_call(cancel)
    retry = sync_call(retry)
    artifacts = sync_call(artifacts)

    def events(self, job_id: str) -> Iterator[Job]:
        """Follow the job's server-sent events: yield the job on each change until it ends."""
        return self._follow(job_id)

    def _follow(
        self, job_id: str, timeout: httpx.Timeout | None = None
    ) -> Generator[Job, None, None]:
        parser = JobEvents()
        with self._client._stream(_events(job_id, timeout)) as response:
            for line in response.iter_lines():
                job = parser.feed(line)
                if job is not None:
                    yield job
                if parser.ended:
                    return

    def wait(
        self,
        job_id: str,
        *,
        progress: bool = False,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> Job:
        """Block until the job is final and return it (whatever the final state). Follows the
        event stream, polling instead if the stream fails; `progress=True` draws a progress
        line on stderr; `timeout` (seconds) raises `WaitTimeoutError`."""
        watch = Watch(job_id, timeout=timeout, progress=progress)
        try:
            final = self._final_from_stream(job_id, watch)
            while final is None:
                job = self.retrieve(job_id)
                if watch.see(job):
                    final = job
                else:
                    time.sleep(watch.sleep_for(poll_interval))
            return final
        finally:
            watch.close()

    def _final_from_stream(self, job_id: str, watch: Watch) -> Job | None:
        """The final job from the event stream, or None if the stream failed first."""
        stream = self._follow(job_id, watch.stream_timeout(self._client.timeout))
        try:
            for job in stream:
                if watch.see(job):
                    return job
        except Exception as exc:
            if not watch.stream_failed(exc):
                raise
        finally:
            stream.close()
        return None

    def download_artifact(self, job_id: str, name: str, path: PathLike) -> Path:
        """Stream one artifact to `path` (a file, or a directory to put `name` in)."""
        target, partial = _target(path, name)
        try:
            with self._client._stream(_artifact(job_id, name)) as response, partial.open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target


class AsyncJobs(AsyncResource):
    create = async_call(create)
    list = async_list(list_)
    retrieve = async_call(retrieve)
    cancel = async_call(cancel)
    retry = async_call(retry)
    artifacts = async_call(artifacts)

    def events(self, job_id: str) -> AsyncIterator[Job]:
        """Follow the job's server-sent events: yield the job on each change until it ends."""
        return self._follow(job_id)

    async def _follow(
        self, job_id: str, timeout: httpx.Timeout | None = None
    ) -> AsyncGenerator[Job, None]:
        parser = JobEvents()
        async with self._client._stream(_events(job_id, timeout)) as response:
            async for line in response.aiter_lines():
                job = parser.feed(line)
                if job is not None:
                    yield job
                if parser.ended:
                    return

    async def wait(
        self,
        job_id: str,
        *,
        progress: bool = False,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> Job:
        """Wait until the job is final and return it; see `Skillmix.jobs.wait`."""
        watch = Watch(job_id, timeout=timeout, progress=progress)
        try:
            final = await self._final_from_stream(job_id, watch)
            while final is None:
                job = await self.retrieve(job_id)
                if watch.see(job):
                    final = job
                else:
                    await asyncio.sleep(watch.sleep_for(poll_interval))
            return final
        finally:
            watch.close()

    async def _final_from_stream(self, job_id: str, watch: Watch) -> Job | None:
        stream = self._follow(job_id, watch.stream_timeout(self._client.timeout))
        try:
            async for job in stream:
                if watch.see(job):
                    return job
        except Exception as exc:
            if not watch.stream_failed(exc):
                raise
        finally:
            await stream.aclose()
        return None

    async def download_artifact(self, job_id: str, name: str, path: PathLike) -> Path:
        """Stream one artifact to `path` (a file, or a directory to put `name` in)."""
        target, partial = _target(path, name)
        try:
            async with self._client._stream(_artifact(job_id, name)) as response:
                with partial.open("wb") as f:
                    async for chunk in response.aiter_bytes():
                        f.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target
