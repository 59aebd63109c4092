"""Studies: the smallest dose (dose_response), the widest spacing (spacing), the threshold
across sizes (size_transfer) at which a model keeps a skill, and what a small repeated pool
of instances costs (repetition). A study builds its point mixtures and one verification as
child resources, then analyses the runs; `apply` builds the production mixture at the
recommended dose."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from skillmix_client._core import APICall, path_param
from skillmix_client._resource import async_call, async_list, list_call, sync_call, sync_list
from skillmix_client._types import NOT_GIVEN, NotGiven, body_of
from skillmix_client.resources._job_backed import AsyncJobBacked, SyncJobBacked, retrieve_call
from skillmix_client.types import Mixture, Page, Study

PATH = "/v1/studies"


def create(
    *,
    kind: str,
    skill_ids: Sequence[str],
    corpus_id: str,
    scan_id: str,
    design: Mapping[str, Any],
    sizes: Sequence[str] | NotGiven = NOT_GIVEN,
    seeds_per_point: int | NotGiven = NOT_GIVEN,
    target_p: float | NotGiven = NOT_GIVEN,
    batch_tokens: int | NotGiven = NOT_GIVEN,
    seq_len: int | NotGiven = NOT_GIVEN,
    token_budget: int | NotGiven = NOT_GIVEN,
    max_batches: int | NotGiven = NOT_GIVEN,
    eval_every: int | NotGiven = NOT_GIVEN,
    metric: str | NotGiven = NOT_GIVEN,
    device: str | NotGiven = NOT_GIVEN,
    idempotency_key: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> APICall[Study]:
    """Start a study. `kind`: dose_response, spacing, repetition, size_transfer; `design`:
    `{"doses": [0.5, 1, 2, 4, 8]}` or, placed look by look, `{"adaptive": {"min": 0.25,
    "max": 16, "max_runs": 64}}` (the study's `looks` say each decision), for spacing
    `{"dose": 2, "schedules": [{"n": 2, "k": 1}, {"n": 8, "k": 4}]}`, for repetition
    `{"dose": 2, "pool_sizes": [None, 400, 40, 4]}` (None: fresh instances)."""
    fields = {
        "kind": kind,
        "skill_ids": list(skill_ids),
        "corpus_id": corpus_id,
        "scan_id": scan_id,
        "design": dict(design),
        "sizes": sizes if isinstance(sizes, NotGiven) else list(sizes),
        "seeds_per_point": seeds_per_point,
        "target_p": target_p,
        "batch_tokens": batch_tokens,
        "seq_len": seq_len,
        "token_budget": token_budget,
        "max_batches": max_batches,
        "eval_every": eval_every,
        "metric": metric,
        "device": device,
    }
    return APICall(
        "POST", PATH, Study.model_validate, body=body_of(fields, extra_body),
        idempotency_key=idempotency_key,
    )  # fmt: skip


def list_(*, limit: int | None = None, after: str | None = None) -> APICall[Page[Study]]:
    """This project's studies, newest first, across all pages."""
    return list_call(PATH, Study, limit, after)


def retrieve(study_id: str) -> APICall[Study]:
    """One study, with `report` (fits, recommendations) once its analysis has run."""
    return retrieve_call(PATH, Study, study_id)


def apply(
    study_id: str,
    *,
    size: str,
    corpus_id: str,
    scan_id: str,
    margin: str | NotGiven = NOT_GIVEN,
    output: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    idempotency_key: str | None = None,
) -> APICall[Mixture]:
    """Build the production mixture for `size` at the study's recommended dose (`margin`:
    `upper`, the ED's upper 95% bound, by default; or `estimate`)."""
    fields = {
        "size": size,
        "corpus_id": corpus_id,
        "scan_id": scan_id,
        "margin": margin,
        "output": output if isinstance(output, NotGiven) else dict(output),
    }
    return APICall(
        "POST", f"{PATH}/{path_param(study_id)}/apply", Mixture.model_validate,
        body=body_of(fields, None), idempotency_key=idempotency_key,
    )  # fmt: skip


class Studies(SyncJobBacked[Study]):
    _collection, _model = PATH, Study
    create = sync_call(create)
    list = sync_list(list_)
    retrieve = sync_call(retrieve)
    apply = sync_call(apply)


class AsyncStudies(AsyncJobBacked[Study]):
    _collection, _model = PATH, Study
    create = async_call(create)
    list = async_list(list_)
    retrieve = async_call(retrieve)
    apply = async_call(apply)
