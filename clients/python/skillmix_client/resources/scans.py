"""Scans: profile a corpus against skill versions; GET carries the frequency report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from skillmix_client._core import APICall
from skillmix_client._resource import async_call, async_list, list_call, sync_call, sync_list
from skillmix_client._types import NOT_GIVEN, NotGiven, body_of
from skillmix_client.resources._job_backed import (
    AsyncJobBacked,
    SyncJobBacked,
    delete_call,
    retrieve_call,
)
from skillmix_client.types import Page, Scan

PATH = "/v1/scans"


def create(
    *,
    corpus_id: str,
    skill_ids: Sequence[str],
    batch_tokens: int | NotGiven = NOT_GIVEN,
    tokenizer: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    idempotency_key: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> APICall[Scan]:
    """Start a scan of `corpus_id` for `skill_ids`; returns at once with its job queued.
    `tokenizer`: `{"kind": "hf", "path": "<tokenizer.json or folder>"}` to count in a
    Hugging Face tokenizer's tokens (a mixture in it needs such a scan); default bytes."""
    fields = {
        "corpus_id": corpus_id,
        "skill_ids": list(skill_ids),
        "batch_tokens": batch_tokens,
        "tokenizer": tokenizer,
    }
    return APICall(
        "POST",
        PATH,
        Scan.model_validate,
        body=body_of(fields, extra_body),
        idempotency_key=idempotency_key,
    )


def list_(*, limit: int | None = None, after: str | None = None) -> APICall[Page[Scan]]:
    """This project's scans, newest first, across all pages."""
    return list_call(PATH, Scan, limit, after)


def retrieve(scan_id: str) -> APICall[Scan]:
    """One scan, with `report` once its job succeeded."""
    return retrieve_call(PATH, Scan, scan_id)


def delete(scan_id: str) -> APICall[None]:
    """Delete a scan and its job's files (artifacts, work folder). 409 (`ConflictError`)
    while its job, or the build of a mixture planned from it, is queued or running."""
    return delete_call(PATH, scan_id)


class Scans(SyncJobBacked[Scan]):
    _collection, _model = PATH, Scan
    create = sync_call(create)
    list = sync_list(list_)
    retrieve = sync_call(retrieve)
    delete = sync_call(delete)


class AsyncScans(AsyncJobBacked[Scan]):
    _collection, _model = PATH, Scan
    create = async_call(create)
    list = async_list(list_)
    retrieve = async_call(retrieve)
    delete = async_call(delete)
