"""Corpora: registered sources (a path under an allowed root or an fsspec URL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from skillmix_client._types import NOT_GIVEN, NotGiven, body_of
from skillmix_client.types import Corpus, Page


def create(
    *,
    name: str,
    uri: str,
    format: str | NotGiven = NOT_GIVEN,
    text_key: str | NotGiven = NOT_GIVEN,
    id_key: str | None | NotGiven = NOT_GIVEN,
    idempotency_key: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> APICall[Corpus]:
    """Register a corpus. `format`: `jsonl`, `jsonl.gz`, `parquet` or `hf_disk`."""
    fields = {"name": name, "uri": uri, "format": format, "text_key": text_key, "id_key": id_key}
    return APICall(
        "POST",
        "/v1/corpora",
        Corpus.model_validate,
        body=body_of(fields, extra_body),
        idempotency_key=idempotency_key,
    )


def list_(*, limit: int | None = None, after: str | None = None) -> APICall[Page[Corpus]]:
    """This project's corpora, newest first, across all pages."""
    return list_call("/v1/corpora", Corpus, limit, after)


def retrieve(corpus_id: str) -> APICall[Corpus]:
    """One corpus."""
    return APICall("GET", f"/v1/corpora/{path_param(corpus_id)}", Corpus.model_validate)


def delete(corpus_id: str) -> APICall[None]:
    """Unregister a corpus (its files are left alone)."""
    return APICall("DELETE", f"/v1/corpora/{path_param(corpus_id)}", lambda _: None)


class Corpora(SyncResource):
    create = sync_call(create)
    list = sync_list(list_)
    retrieve = sync_call(retrieve)
    delete = sync_call(delete)


class AsyncCorpora(AsyncResource):
    create = async_call(create)
    list = async_list(list_)
    retrieve = async_call(retrieve)
    delete = async_call(delete)
