"""Mixtures: a dataset built from a corpus, its scan and a dosing plan; GET carries the
manifest and the audit."""

from __future__ import annotations

from collections.abc import Mapping
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
from skillmix_client.types import Mixture, Page

PATH = "/v1/mixtures"


def create(
    *,
    corpus_id: str,
    plan: Mapping[str, Mapping[str, Any]],
    scan_id: str | NotGiven = NOT_GIVEN,
    batch_tokens: int | NotGiven = NOT_GIVEN,
    seq_len: int | NotGiven = NOT_GIVEN,
    seed: int | NotGiven = NOT_GIVEN,
    max_batches: int | NotGiven = NOT_GIVEN,
    output: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    tokenizer: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    dry_run: bool | NotGiven = NOT_GIVEN,
    idempotency_key: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> APICall[Mixture]:
    """Build a mixture. `plan` maps a skill id to its dose, e.g.
    `{"target": {"per_batch": 4}, "source": "synthesize", "max_repeats": 4,
    "spacing": "uniform"}`; `output`: `{"uri": ..., "format": "jsonl.gz", "exports":
    ["mds", "datatrove", "bin"]}` (exports: the mixture in those trainers' files, in its
    order; turn the trainer's shuffling off); `tokenizer`: `{"kind": "bytes"}` (default) or
    `{"kind": "hf", "path": "<tokenizer.json or folder>"}` (a path the server can read; the
    scan must have counted in the same tokenizer)."""
    fields = {
        "corpus_id": corpus_id,
        "scan_id": scan_id,
        "batch_tokens": batch_tokens,
        "seq_len": seq_len,
        "seed": seed,
        "max_batches": max_batches,
        "output": output,
        "plan": plan,
        "tokenizer": tokenizer,
        "dry_run": dry_run,
    }
    return APICall(
        "POST",
        PATH,
        Mixture.model_validate,
        body=body_of(fields, extra_body),
        idempotency_key=idempotency_key,
    )


def list_(*, limit: int | None = None, after: str | None = None) -> APICall[Page[Mixture]]:
    """This project's mixtures, newest first, across all pages."""
    return list_call(PATH, Mixture, limit, after)


def retrieve(mixture_id: str) -> APICall[Mixture]:
    """One mixture, with `manifest` and `audit` once its job succeeded."""
    return retrieve_call(PATH, Mixture, mixture_id)


def delete(mixture_id: str) -> APICall[None]:
    """Delete a mixture, its build's files and its output when the service chose the
    folder (an `output.uri` you gave is left alone). 409 while its build, or a
    verification training on it, is queued or running."""
    return delete_call(PATH, mixture_id)


class Mixtures(SyncJobBacked[Mixture]):
    _collection, _model = PATH, Mixture
    create = sync_call(create)
    list = sync_list(list_)
    retrieve = sync_call(retrieve)
    delete = sync_call(delete)


class AsyncMixtures(AsyncJobBacked[Mixture]):
    _collection, _model = PATH, Mixture
    create = async_call(create)
    list = async_list(list_)
    retrieve = async_call(retrieve)
    delete = async_call(delete)
