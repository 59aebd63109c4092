"""Verifications: train small models on mixtures (arms) across sizes and seeds; GET carries
the report and the verdicts."""

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
from skillmix_client.types import Page, Verification

PATH = "/v1/verifications"


def create(
    *,
    arms: Mapping[str, str],
    skill_ids: Sequence[str],
    sizes: Sequence[str] | NotGiven = NOT_GIVEN,
    seeds: Sequence[int] | NotGiven = NOT_GIVEN,
    token_budget: int | NotGiven = NOT_GIVEN,
    eval_every: int | NotGiven = NOT_GIVEN,
    threshold: float | Mapping[str, float] | NotGiven = NOT_GIVEN,
    metric: str | NotGiven = NOT_GIVEN,
    seed_scope: str | NotGiven = NOT_GIVEN,
    min_seeds: int | NotGiven = NOT_GIVEN,
    max_seeds: int | NotGiven = NOT_GIVEN,
    lr_schedule: str | NotGiven = NOT_GIVEN,
    device: str | NotGiven = NOT_GIVEN,
    idempotency_key: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> APICall[Verification]:
    """Start a verification. `arms`: `{"upweighted": "<mixture_id>", "baseline": "auto"}`;
    `sizes`: model names such as `["nano"]`; `metric`: `forced_choice` or `exact` (what
    the verdict reads); `seed_scope`: what the seeds vary, `init`, `data` or `both` (the
    server's default); `min_seeds`, `max_seeds`: sequential looks (seeds 0..max_seeds-1 in
    looks fixed in advance, instead of `seeds`); `lr_schedule`: `cosine` (default),
    `constant` or `wsd`; `device`: `auto`, `cpu` or `cuda`."""
    fields = {
        "arms": dict(arms),
        "skill_ids": list(skill_ids),
        "sizes": sizes if isinstance(sizes, NotGiven) else list(sizes),
        "seeds": seeds if isinstance(seeds, NotGiven) else list(seeds),
        "token_budget": token_budget,
        "eval_every": eval_every,
        "threshold": threshold
        if isinstance(threshold, (NotGiven, float, int))
        else dict(threshold),
        "metric": metric,
        "seed_scope": seed_scope,
        "min_seeds": min_seeds,
        "max_seeds": max_seeds,
        "lr_schedule": lr_schedule,
        "device": device,
    }
    return APICall(
        "POST",
        PATH,
        Verification.model_validate,
        body=body_of(fields, extra_body),
        idempotency_key=idempotency_key,
    )


def list_(*, limit: int | None = None, after: str | None = None) -> APICall[Page[Verification]]:
    """This project's verifications, newest first, across all pages."""
    return list_call(PATH, Verification, limit, after)


def retrieve(verification_id: str) -> APICall[Verification]:
    """One verification, with `report` (verdicts) once its job succeeded."""
    return retrieve_call(PATH, Verification, verification_id)


def delete(verification_id: str) -> APICall[None]:
    """Delete a verification and its job's files (artifacts, checkpoints); its arms'
    mixtures stay. 409 while its job is queued or running."""
    return delete_call(PATH, verification_id)


class Verifications(SyncJobBacked[Verification]):
    _collection, _model = PATH, Verification
    create = sync_call(create)
    list = sync_list(list_)
    retrieve = sync_call(retrieve)
    delete = sync_call(delete)


class AsyncVerifications(AsyncJobBacked[Verification]):
    _collection, _model = PATH, Verification
    create = async_call(create)
    list = async_list(list_)
    retrieve = async_call(retrieve)
    delete = async_call(delete)
