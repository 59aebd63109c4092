"""Verifications: every (arm, size, seed) trained on the arms' mixtures by one
`verification` job, which waits, queued, until every arm's mixture is built."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from service.ids import new_id
from service.models import Job, Mixture, Scan, Verification, VerificationRun, utcnow
from service.problems import Problem, not_found
from service.settings import Settings
from service.store import mixtures, retention, skills
from service.store.jobs import AfterCommit, start_job
from training import verdict
from training.sizes import SIZES

GEOMETRY = ("batch_tokens", "seq_len")
HELDOUT_TOKENS = 65_536
"""The last tokens of a verification's reference mixture, never trained on: the held-out
text of its general loss (the verification handler's heldout_tail)."""


def trainable_batches(n_batches: int, batch_tokens: int) -> int:
    """The batches in front of a mixture's held-out tail (its last HELDOUT_TOKENS, never
    trained on), which is where that tail starts."""
    return max(0, n_batches - max(1, -(-HELDOUT_TOKENS // batch_tokens)))


def budget_overrun(token_budget: int, n_batches: int, batch_tokens: int) -> str | None:
    """Why `token_budget` cannot be trained on in front of the held-out tail of a mixture of
    `n_batches` batches, or None if it fits. Said at creation when max_batches bounds the
    mixtures (`check_budget_fits`), and by the verification job on the mixture it got."""
    first = trainable_batches(n_batches, batch_tokens)
    usable, tail = first * batch_tokens, n_batches - first
    if token_budget <= usable:
        return None
    return (
        f"token_budget {token_budget:,} does not fit in mixtures of {n_batches:,} batches: "
        f"their last {tail:,} batches ({HELDOUT_TOKENS:,} tokens) are held out for the "
        f"general loss, which leaves {usable:,} tokens to train on; lower token_budget or "
        f"raise max_batches to at least {tail + -(-token_budget // batch_tokens):,}"
    )


def check_budget_fits(token_budget: int | None, max_batches: int | None, batch_tokens: int) -> None:
    """422 when a run's token budget cannot fit in front of the held-out tail of a mixture
    of `max_batches` batches (known before it is built); said now, not by a failed job."""
    if token_budget is None or max_batches is None:
        return
    overrun = budget_overrun(token_budget, max_batches, batch_tokens)
    if overrun:
        raise Problem(422, "validation-error", "Token budget too large for the mixtures", overrun)


def query(project_id: str) -> Select[Verification]:
    """The project's verifications (not deleted), for a page."""
    return select(Verification).where(
        Verification.project_id == project_id, Verification.deleted_at.is_(None)
    )


def get_verification(
    session: Session, project_id: str, verification_id: str, *, lock: bool = False
) -> Verification:
    """The project's verification (not deleted); 404 otherwise."""
    if lock:
        ver = session.get(
            Verification, verification_id, with_for_update=True, populate_existing=True
        )
    else:
        ver = session.get(Verification, verification_id)
    if ver is None or ver.project_id != project_id or ver.deleted_at is not None:
        raise not_found("Verification", verification_id)
    return ver


def job_of(session: Session, ver: Verification) -> Job:
    job = session.get(Job, ver.job_id)
    assert job is not None, ver.id
    return job


def runs_of(session: Session, verification_id: str) -> list[VerificationRun]:
    return list(
        session.scalars(
            select(VerificationRun)
            .where(VerificationRun.verification_id == verification_id)
            .order_by(VerificationRun.id)
        )
    )


def sequential_seeds(params: dict[str, Any]) -> dict[str, Any]:
    """With `min_seeds` or `max_seeds`: seeds 0..max_seeds-1 and their looks
    (training.verdict.seed_looks); 422 when min_seeds > max_seeds. Else `params` as given."""
    if params.get("min_seeds") is None and params.get("max_seeds") is None:
        return params
    low = params.get("min_seeds") or verdict.DEFAULT_MIN_SEEDS
    high = params.get("max_seeds") or max(low, verdict.DEFAULT_MAX_SEEDS)
    if low > high:
        raise Problem(
            422,
            "validation-error",
            "min_seeds above max_seeds",
            f"min_seeds {low} is above max_seeds {high}: the first look cannot be the largest.",
        )
    looks = verdict.seed_looks(low, high)
    return {**params, "min_seeds": low, "max_seeds": high, "looks": looks,
            "seeds": list(range(high))}  # fmt: skip


def check_grid(sizes: list[str], seeds: list[int]) -> None:
    """422 for an unknown model size or a repeated seed."""
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        raise Problem(
            422,
            "validation-error",
            "Unknown model size",
            f"Unknown size(s) {', '.join(unknown)}; sizes are {', '.join(SIZES)}.",
        )
    if len(set(seeds)) != len(seeds):
        raise Problem(422, "validation-error", "Repeated seeds", "Give each seed once.")


def arm_mixtures(session: Session, project_id: str, arms: dict[str, str]) -> dict[str, Mixture]:
    """The given arms' mixtures, checked comparable; a mixture still building is fine (the
    job waits for it), a failed or dry-run one is refused. Each is locked against a delete
    until the verification is added."""
    found = {
        arm: mixtures.get_mixture(session, project_id, mid, lock={"read": True})
        for arm, mid in arms.items()
        if mid != "auto"
    }
    if not found:
        raise Problem(
            422,
            "no-arms",
            "No mixture to verify",
            "Give at least one arm as a mixture id; only a baseline may be 'auto'.",
        )
    for arm, mixture in found.items():
        if mixture.dry_run or mixture.job_id is None:
            raise Problem(
                422,
                "mixture-not-built",
                "Dry-run mixture",
                f"Arm {arm!r}: mixture {mixture.id} was a dry run; create it without "
                "dry_run to build it.",
            )
        if "://" in mixture.output_uri:
            raise Problem(
                422,
                "mixture-remote",
                "Mixture on object storage",
                f"Arm {arm!r}: mixture {mixture.id} is written to {mixture.output_uri}; "
                "verifications train from a local mixture: create the same mixture with a "
                "local output.uri (or none) to verify it.",
            )
        job = mixtures.job_of(session, mixture)
        if mixtures.build_failed(job):
            assert job is not None
            raise Problem(
                422,
                "mixture-failed",
                "Mixture did not build",
                f"Arm {arm!r}: mixture {mixture.id} {job.state}: {job.error or ''}",
            )
    (first, ref), *rest = found.items()
    for arm, mixture in rest:
        if mixture.corpus_id != ref.corpus_id:
            raise Problem(
                422,
                "arms-mismatch",
                "Arms from different corpora",
                f"Arm {arm!r} was built from corpus {mixture.corpus_id}, arm {first!r} "
                f"from {ref.corpus_id}: compare mixtures of one corpus.",
            )
        for key in GEOMETRY:
            if mixture.dosing[key] != ref.dosing[key]:
                raise Problem(
                    422,
                    "arms-mismatch",
                    "Arms with different batch shapes",
                    f"Arm {arm!r} has {key}={mixture.dosing[key]}, arm {first!r} "
                    f"{ref.dosing[key]}: the same token budget must mean the same "
                    "steps.",
                )
    return found


def scanned_skills(
    session: Session, mixture: Mixture, skill_ids: list[str]
) -> list[dict[str, Any]]:
    """The skills at the versions the arms' scan measured."""
    scan = session.get(Scan, mixture.scan_id)
    assert scan is not None
    scanned = {ref["id"]: ref for ref in scan.skills}
    missing = [sid for sid in skill_ids if sid not in scanned]
    if missing:
        raise Problem(
            422,
            "skill-not-scanned",
            "Skill not in the arms' scan",
            f"Scan {scan.id} of the arms' corpus did not measure {', '.join(missing)}.",
        )
    return [scanned[sid] for sid in dict.fromkeys(skill_ids)]


def check_metric(session: Session, refs: list[dict[str, Any]], metric: str | None) -> None:
    """422 for `forced_choice` on a skill whose generator family has no label set (the
    same rule as training.verify.skill_metric, without importing training here)."""
    if metric != "forced_choice":
        return
    for spec in skills.load_specs(session, refs):
        if spec.family is not None and spec.family.labels() is None:
            raise Problem(
                422,
                "metric-unavailable",
                "Metric not available for this skill",
                f"Skill {spec.id} ({spec.family.name}) has open-ended answers, no label set "
                "to choose from: use metric 'exact' (or leave metric out).",
            )


def start_verification(
    session: Session,
    project_id: str,
    settings: Settings,
    *,
    arms: dict[str, str],
    skill_ids: list[str],
    params: dict[str, Any],
) -> tuple[Verification, AfterCommit]:
    """Add a verification, its runs and its job (and an 'auto' arm's baseline mixture and
    build job). The job is sent once every arm's mixture has been built."""
    params = sequential_seeds(params)
    check_grid(params["sizes"], params["seeds"])
    found = arm_mixtures(session, project_id, arms)
    hooks: list[AfterCommit] = []
    arms = dict(arms)
    for arm, mid in arms.items():
        if mid == "auto":
            mixture, hook = mixtures.start_baseline(session, next(iter(found.values())), settings)
            arms[arm], found[arm] = mixture.id, mixture
            hooks.append(hook)
    session.flush()
    refs = scanned_skills(session, next(iter(found.values())), skill_ids)
    check_metric(session, refs, params.get("metric"))
    ver = Verification(
        id=new_id("ver"),
        project_id=project_id,
        arms=arms,
        skills=refs,
        params=params,
        job_id="",
    )
    builds = [job for mixture in found.values() if (job := mixtures.job_of(session, mixture))]
    job, hook = start_job(
        session,
        project_id=project_id,
        kind="verification",
        params={"verification_id": ver.id},
        max_attempts=settings.max_attempts,
        max_active=settings.max_active_jobs_per_project,
        after=builds,
    )
    hooks.append(hook)
    ver.job_id = job.id
    session.add(ver)
    session.flush()
    for arm in arms:
        for size in params["sizes"]:
            for seed in params["seeds"]:
                session.add(VerificationRun(verification_id=ver.id, arm=arm, size=size, seed=seed))
    session.flush()

    def send_all() -> None:
        for send in hooks:
            send()

    return ver, send_all


def delete_verification(
    session: Session, project_id: str, verification_id: str, settings: Settings
) -> None:
    """Delete a verification: its job's artifacts and work folder (checkpoints), then the row
    (see `service.store.retention`). 409 while its job is queued (also while it waits for
    its arms' builds) or running. The arms' mixtures stay, an 'auto' baseline too: each is
    a mixture of its own, deleted by itself."""
    ver = get_verification(session, project_id, verification_id, lock=True)
    job = job_of(session, ver)
    dependents = retention.waiting_for(session, [job])
    retention.refuse_while_busy("Verification", ver.id, [job], dependents, settings)
    retention.delete_files(settings, "Verification", ver.id, project_id, [job])
    ver.deleted_at = utcnow()
