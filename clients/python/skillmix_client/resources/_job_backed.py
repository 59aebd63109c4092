"""Scans, mixtures and verifications: creating one starts a job (`{"id", ..., "job": {...}}`),
so besides create/list/retrieve/delete they can `wait` for that job and return the finished
resource."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from skillmix_client._core import APICall, path_param
from skillmix_client._exceptions import SkillmixError
from skillmix_client._resource import AsyncResource, SyncResource
from skillmix_client._waiting import DEFAULT_POLL_INTERVAL
from skillmix_client.types import JobBacked

M = TypeVar("M", bound=JobBacked)


def retrieve_call(collection: str, model: type[M], resource_id: str) -> APICall[M]:
    return APICall("GET", f"{collection}/{path_param(resource_id)}", model.model_validate)


def delete_call(collection: str, resource_id: str) -> APICall[None]:
    return APICall("DELETE", f"{collection}/{path_param(resource_id)}", lambda _: None)


def job_id_of(resource: JobBacked) -> str:
    job_id = resource.job.id if resource.job else getattr(resource, "job_id", None)
    if not job_id:
        raise SkillmixError(f"{type(resource).__name__} {resource.id} carries no job to wait for.")
    return str(job_id)


class SyncJobBacked(SyncResource, Generic[M]):
    _collection: ClassVar[str]
    _model: type[M]

    def wait(
        self,
        resource_id: str,
        *,
        progress: bool = False,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> M:
        """Wait for the resource's job to end; return the resource as it is then (with its
        report). A failed job does not raise: look at `.job.state` and `.job.error`."""
        call = retrieve_call(self._collection, self._model, resource_id)
        resource = self._client._request(call)
        job_id = job_id_of(resource)
        self._client.jobs.wait(
            job_id, progress=progress, timeout=timeout, poll_interval=poll_interval
        )
        return self._client._request(call)


class AsyncJobBacked(AsyncResource, Generic[M]):
    _collection: ClassVar[str]
    _model: type[M]

    async def wait(
        self,
        resource_id: str,
        *,
        progress: bool = False,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> M:
        """Wait for the resource's job to end; see the sync client's `wait`."""
        call = retrieve_call(self._collection, self._model, resource_id)
        resource = await self._client._request(call)
        job_id = job_id_of(resource)
        await self._client.jobs.wait(
            job_id, progress=progress, timeout=timeout, poll_interval=poll_interval
        )
        return await self._client._request(call)
