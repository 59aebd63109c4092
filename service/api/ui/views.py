"""The /ui pages. Each reads through the same store functions and presenters as the API's
routes (so a page shows what GET /v1/... answers, scoped to the signed-in key's project the
same way: another project's id is a 404), and each form creates through the store functions
the API's POSTs call."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from curation.mixture.format import COMPOSITION
from service.api.deps import PageParams, SessionDep, SettingsDep, authenticate, refuse_nul_in_url
from service.api.pagination import paginate
from service.api.routes import jobs as jobs_routes
from service.api.routes import mixtures as mixtures_routes
from service.api.routes import scans as scans_routes
from service.api.routes import skills as skills_routes
from service.api.routes import verifications as verifications_routes
from service.api.schemas import (
    JobPublic,
    MixtureCreate,
    PreviewRequest,
    ScanCreate,
    VerificationCreate,
)
from service.api.ui.app import PREFIX, FormDep, ViewerDep, first, render, session_of, signer
from service.api.ui.session import CsrfRefused, UiSession, Viewer
from service.models import Corpus, Job, JobState, Mixture, Scan, SkillVersion, Verification
from service.problems import Problem
from service.store import corpora, jobs, mixtures, scans, verifications
from service.store import skills as skills_store

router = APIRouter(
    prefix=PREFIX, include_in_schema=False, dependencies=[Depends(refuse_nul_in_url)]
)

LIST_SIZE = 50
MAX_POINTS = 2000  # composition over batches: at most this many points per series
Row = TypeVar("Row")


def _page(session: Session, stmt: Any, column: Any, render_row: Callable[[Any], Any],
          after: str | None = None, prefetch: Callable[[list[Any]], None] | None = None
          ) -> dict[str, Any]:  # fmt: skip
    return paginate(session, stmt, column, PageParams(LIST_SIZE, after), render_row, prefetch)


def _json(model: BaseModel) -> dict[str, Any]:
    """What the API answers for `model`, as JSON data (the charts read this)."""
    return model.model_dump(mode="json")


def _duration(job: dict[str, Any]) -> float | None:
    if not job.get("started_at"):
        return None
    start = datetime.fromisoformat(job["started_at"])
    end = (
        datetime.fromisoformat(job["finished_at"])
        if job.get("finished_at")
        else datetime.now(timezone.utc if start.tzinfo else None)
    )
    return max(0.0, (end - start).total_seconds())


def _resource_link(job: Job) -> str | None:
    params = job.params or {}
    for key, page in (
        ("scan_id", "scans"),
        ("mixture_id", "mixtures"),
        ("verification_id", "verifications"),
    ):
        if isinstance(params.get(key), str):
            return f"{PREFIX}/{page}/{params[key]}"
    return None


# --- sign in / out --------------------------------------------------------------------------


def _safe_next(target: str) -> str:
    """Only a /ui path of this site (never //host or a URL) as the place to go back to."""
    ok = target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target
    return target if ok else PREFIX


@router.get("/sign-in")
def sign_in_page(request: Request, next: str = PREFIX) -> Response:
    # The form's CSRF token lives in a key-less cookie until the key is given.
    session = session_of(request) or UiSession.anonymous()
    response = render(
        request, "sign_in.html", None, next=_safe_next(next), error=None, csrf=session.csrf
    )
    signer(request).write(request, response, UiSession(key=None, csrf=session.csrf))
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    session = session_of(request)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if session is None or not session.csrf_ok(fields.get("csrf_token")):
        raise CsrfRefused()
    key, target = fields.get("key", "").strip(), _safe_next(fields.get("next", PREFIX))
    try:
        if not key:
            raise Problem(401, "unauthorized", "Missing API key", "Paste an API key.")
        await authenticate(request, key)
    except Problem as exc:
        if exc.status != 401:
            raise
        return render(
            request,
            "sign_in.html",
            None,
            status_code=401,
            next=target,
            error=f"{exc.title}: {exc.detail}",
            csrf=session.csrf,
        )
    response = RedirectResponse(target, status_code=303)
    # A new CSRF token with the new privilege (no fixation of a token set before sign-in).
    signer(request).write(request, response, UiSession(key=key, csrf=UiSession.anonymous().csrf))
    return response


@router.post("/sign-out")
async def sign_out(request: Request, fields: FormDep) -> Response:
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    signer(request).clear(response)
    return response


# --- overview -------------------------------------------------------------------------------


def _job_rows(session: Session, project_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(jobs.query(project_id).order_by(Job.id.desc()).limit(LIST_SIZE))
    out = []
    for job in rows:
        data = _json(JobPublic.of(job))
        data.pop("result", None)  # the resource pages show results
        data["duration"] = _duration(data)
        data["link"] = _resource_link(job)
        out.append(data)
    return out


@router.get("")
def overview(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    return render(request, "overview.html", viewer, jobs=_job_rows(session, viewer.project.id))


@router.get("/jobs/{job_id}/events")
def job_events(job_id: str, viewer: ViewerDep, session: SessionDep) -> StreamingResponse:
    """The API's job event stream (GET /v1/jobs/{id}/events) for a signed-in browser, which
    cannot send a bearer header from an EventSource."""
    return jobs_routes.job_events(job_id=job_id, session=session, project=viewer.project)


# --- skills ---------------------------------------------------------------------------------


@router.get("/skills")
def skills_page(
    request: Request, viewer: ViewerDep, session: SessionDep, after: str | None = None
) -> Response:
    return render(request, "skills.html", viewer, skills=_skills(session, viewer, after))


def _skills(session: Session, viewer: Viewer, after: str | None = None) -> dict[str, Any]:
    versions: dict[str, SkillVersion] = {}

    def prefetch(rows: list[Any]) -> None:
        versions.update(skills_store.latest_versions(session, [s.id for s in rows]))

    return _page(
        session,
        skills_store.query(viewer.project.id),
        skills_store.Skill.id,
        lambda s: _json(skills_routes.public(s, versions[s.id])),
        after,
        prefetch,
    )


def _skill_page(
    request: Request,
    viewer: Viewer,
    session: Session,
    skill_id: str,
    version: int | None,
    preview: dict[str, Any] | None = None,
    text: str = "",
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    skill, row = skills_store.load(session, viewer.project.id, skill_id, version)
    history = session.scalars(
        select(SkillVersion)
        .where(SkillVersion.skill_id == skill.id)
        .order_by(SkillVersion.version.desc())
    ).all()
    family_name = (row.spec.get("generator") or {}).get("family")
    family = next((f for f in skills_store.families() if f["family"] == family_name), None)
    return render(
        request,
        "skill.html",
        viewer,
        status_code=status_code,
        skill=_json(skills_routes.public(skill, row)),
        versions=[{"version": v.version, "created_at": v.created_at} for v in history],
        family=family,
        preview=preview,
        text=text,
        error=error,
    )


@router.get("/skills/{skill_id}")
def skill_page(
    request: Request,
    skill_id: str,
    viewer: ViewerDep,
    session: SessionDep,
    version: int | None = None,
) -> Response:
    return _skill_page(request, viewer, session, skill_id, version)


def highlight(text: str, matches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`text` cut into plain and matched pieces, in order (the template escapes each)."""
    pieces: list[dict[str, Any]] = []
    at = 0
    for m in sorted(matches, key=lambda m: m["start"]):
        if m["start"] < at:  # overlapping matches: the earlier one is shown
            continue
        if m["start"] > at:
            pieces.append({"text": text[at : m["start"]], "match": None})
        pieces.append({"text": text[m["start"] : m["end"]], "match": m})
        at = m["end"]
    if at < len(text):
        pieces.append({"text": text[at:], "match": None})
    return pieces


@router.post("/skills/{skill_id}/preview")
def skill_preview(
    request: Request, skill_id: str, viewer: ViewerDep, session: SessionDep, fields: FormDep
) -> Response:
    skill, row = skills_store.load(session, viewer.project.id, skill_id)
    text = first(fields, "text")
    try:
        request_body = PreviewRequest.model_validate({"text": text, "samples": 5})
    except ValidationError as exc:
        return _skill_page(
            request, viewer, session, skill_id, None, text=text, status_code=422,
            error=_errors(exc),
        )  # fmt: skip
    spec = skills_store.to_spec(skill.id, row)
    found = skills_store.preview(
        spec, request_body.text, request_body.samples, request_body.seed, 3
    )
    found["pieces"] = highlight(request_body.text, found["matches"])
    return _skill_page(request, viewer, session, skill_id, None, preview=found, text=text)


# --- scans ----------------------------------------------------------------------------------


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
    )


def _choices(session: Session, viewer: Viewer) -> dict[str, Any]:
    """What the forms offer: the project's corpora, skills, finished scans and built mixtures."""
    pid = viewer.project.id
    corpus_rows = session.scalars(corpora.query(pid).order_by(Corpus.id.desc()).limit(200)).all()
    scan_rows = session.scalars(scans.query(pid).order_by(Scan.id.desc()).limit(200)).all()
    done = {
        j.id
        for j in session.scalars(
            select(Job).where(Job.project_id == pid, Job.state == JobState.succeeded.value)
        )
    }
    mixture_rows = session.scalars(
        mixtures.query(pid).where(Mixture.dry_run.is_(False)).order_by(Mixture.id.desc()).limit(200)
    ).all()
    return {
        "corpora": [{"id": c.id, "name": c.name} for c in corpus_rows],
        "skills": _skills(session, viewer)["data"],
        "scans": [
            {"id": s.id, "corpus_id": s.corpus_id, "skills": s.skills}
            for s in scan_rows
            if s.job_id in done
        ],
        "mixtures": [
            {"id": m.id, "scan_id": m.scan_id, "skills": list(m.plan.get("skills", {}))}
            for m in mixture_rows
            if m.job_id in done
        ],
    }


def _create(session: Session, make: Callable[[], tuple[Row, Callable[[], None] | None]]) -> Row:
    """Add the rows (the store function the API's POST calls), commit, then send the job."""
    row, after_commit = make()
    session.commit()
    if after_commit:
        after_commit()
    return row


@dataclass(frozen=True)
class Listing:
    """A resource's listing page: its rows (newest first, paged like the API), shown as the
    API's JSON without its large parts, with the create form and its choices."""

    name: str  # the template's variable; its template is `{name}.html`
    query: Callable[[str], Select[Any]]
    id_column: Any
    public: Callable[[Session, Any], Any]  # the API route's public view of a row
    trim: Callable[[dict[str, Any]], None]  # drops what the listing does not show


def _listing_page(
    request: Request,
    viewer: Viewer,
    session: Session,
    listing: Listing,
    after: str | None = None,
    *,
    error: str | None = None,
    status_code: int = 200,
    form: dict[str, Any] | None = None,
) -> Response:
    listed = _page(
        session,
        listing.query(viewer.project.id),
        listing.id_column,
        lambda row: _json(listing.public(session, row)),
        after,
    )
    for item in listed["data"]:
        listing.trim(item)
    return render(
        request,
        f"{listing.name}.html",
        viewer,
        status_code=status_code,
        choices=_choices(session, viewer),
        error=error,
        form=form or {},
        **{listing.name: listed},
    )


def _refused(
    request: Request, viewer: Viewer, session: Session, listing: Listing, exc: Exception,
    fields: dict[str, Any],
) -> Response:  # fmt: skip
    """The listing page again, with the form as filled and why the API would refuse it: a
    validation error (422) or a store's Problem (its status), nothing stored."""
    if isinstance(exc, ValidationError):
        return _listing_page(request, viewer, session, listing, error=_errors(exc),
                             status_code=422, form=fields)  # fmt: skip
    assert isinstance(exc, Problem)
    session.rollback()
    return _listing_page(request, viewer, session, listing, error=f"{exc.title}: {exc.detail}",
                         status_code=exc.status, form=fields)  # fmt: skip


SCANS = Listing(
    "scans", scans.query, Scan.id, scans_routes.public, lambda scan: scan.pop("report", None)
)


@router.get("/scans")
def scans_page(
    request: Request, viewer: ViewerDep, session: SessionDep, after: str | None = None
) -> Response:
    return _listing_page(request, viewer, session, SCANS, after)


@router.post("/scans")
def create_scan(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    settings: SettingsDep,
    fields: FormDep,
) -> Response:
    try:
        body = ScanCreate.model_validate(
            {
                "corpus_id": first(fields, "corpus_id"),
                "skill_ids": fields.get("skill_ids", []),
                "batch_tokens": first(fields, "batch_tokens", "262144"),
                "on_bad_record": first(fields, "on_bad_record", "fail"),
            }
        )
        scan = _create(
            session,
            lambda: scans.start_scan(session, viewer.project.id, settings, **body.model_dump()),
        )
    except (ValidationError, Problem) as exc:
        return _refused(request, viewer, session, SCANS, exc, fields)
    return RedirectResponse(f"{PREFIX}/scans/{scan.id}", status_code=303)


@router.get("/scans/{scan_id}")
def scan_page(request: Request, scan_id: str, viewer: ViewerDep, session: SessionDep) -> Response:
    scan = _json(scans_routes.public(session, scans.get_scan(session, viewer.project.id, scan_id)))
    return render(request, "scan.html", viewer, scan=scan)


# --- mixtures -------------------------------------------------------------------------------


MIXTURES = Listing(
    "mixtures",
    mixtures.query,
    Mixture.id,
    mixtures_routes.public,
    lambda mixture: mixture.pop("manifest", None),
)


@router.get("/mixtures")
def mixtures_page(
    request: Request, viewer: ViewerDep, session: SessionDep, after: str | None = None
) -> Response:
    return _listing_page(request, viewer, session, MIXTURES, after)


MIXTURE_FIELDS = (
    "corpus_id", "scan_id", "skill_id", "target_kind", "target_value", "every_n", "every_k",
    "source", "spacing", "max_repeats", "pool_size", "batch_tokens", "seq_len", "seed",
    "max_batches",
)  # fmt: skip


def mixture_body(fields: dict[str, Any], dry_run: bool) -> MixtureCreate:
    """The API's mixture body from the form: one dosed skill (or none: a baseline)."""
    value = {name: first(fields, name) for name in MIXTURE_FIELDS}
    plan: dict[str, Any] = {}
    if value["skill_id"]:
        kind = value["target_kind"] or "per_batch"
        target: dict[str, Any] = (
            {"every": {"n": value["every_n"], "k": value["every_k"]}}
            if kind == "every"
            else {kind: value["target_value"]}
        )
        dose: dict[str, Any] = {"target": target}
        for name in ("source", "spacing", "max_repeats", "pool_size"):
            if value[name]:
                dose[name] = value[name]
        plan[value["skill_id"]] = dose
    body: dict[str, Any] = {
        "corpus_id": value["corpus_id"],
        "scan_id": value["scan_id"],
        "plan": plan,
        "dry_run": dry_run,
    }
    for name in ("batch_tokens", "seq_len", "seed", "max_batches"):
        if value[name]:
            body[name] = value[name]
    return MixtureCreate.model_validate(body)


def _start_mixture(session: Session, viewer: Viewer, settings: Any, body: MixtureCreate) -> Any:
    return _create(
        session,
        lambda: mixtures.start_mixture(
            session,
            viewer.project.id,
            settings,
            corpus_id=body.corpus_id,
            scan_id=body.scan_id,
            dosing=body.dosing(),
            output_uri=body.output.uri,
            dry_run=body.dry_run,
        ),
    )


@router.post("/mixtures")
def create_mixture(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    settings: SettingsDep,
    fields: FormDep,
) -> Response:
    """`action=plan`: the dry run (the API's `dry_run: true`), shown with a button to build
    it; `action=build`: the build."""
    build = first(fields, "action") == "build"
    try:
        body = mixture_body(fields, dry_run=not build)
        mixture = _start_mixture(session, viewer, settings, body)
    except (ValidationError, Problem) as exc:
        return _refused(request, viewer, session, MIXTURES, exc, fields)
    if build:
        return RedirectResponse(f"{PREFIX}/mixtures/{mixture.id}", status_code=303)
    planned = _json(mixtures_routes.public(session, mixture))
    return render(
        request,
        "mixture_plan.html",
        viewer,
        mixture=planned,
        names=skill_names(session, planned),
        plan=plan_shown(planned),
        form={name: first(fields, name) for name in MIXTURE_FIELDS},
    )


def skill_names(session: Session, mixture: dict[str, Any]) -> dict[str, str]:
    """The names of a mixture's dosed skills (by id), for its tables."""
    ids = list(mixture["plan"].get("skills", {}))
    rows = skills_store.latest_versions(session, ids) if ids else {}
    return {sid: row.spec.get("name", sid) for sid, row in rows.items()}


@router.get("/mixtures/{mixture_id}")
def mixture_page(
    request: Request, mixture_id: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    mixture = mixtures.get_mixture(session, viewer.project.id, mixture_id)
    data = _json(mixtures_routes.public(session, mixture))
    names = skill_names(session, data)
    return render(request, "mixture.html", viewer, mixture=data, names=names, plan=plan_shown(data))


def plan_shown(mixture: dict[str, Any]) -> dict[str, Any]:
    """The plan to show: an automatic baseline stores only `baseline_of` until it is built,
    and its manifest carries the plan it was built with."""
    plan = mixture["plan"]
    if "skills" not in plan and mixture.get("manifest"):
        return {**mixture["manifest"]["plan"], **plan}
    shown: dict[str, Any] = plan
    return shown


def composition(folder: str, skill_ids: list[str], points: int = MAX_POINTS) -> dict[str, Any]:
    """Per skill, planned and placed instances per batch (the builder's composition.jsonl),
    averaged over bins of whole batches when there are more than `points` batches."""
    planned: dict[str, list[int]] = {sid: [] for sid in skill_ids}
    placed: dict[str, list[int]] = {sid: [] for sid in skill_ids}
    with open(Path(folder) / COMPOSITION, encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            for sid in skill_ids:
                entry = row["skills"].get(sid) or {}
                planned[sid].append(int(entry.get("planned", 0)))
                placed[sid].append(int(entry.get("count", 0)))
    n = len(next(iter(planned.values()), []))
    step = max(1, math.ceil(n / points))

    def binned(values: list[int]) -> list[float]:
        return [sum(values[i : i + step]) / len(values[i : i + step]) for i in range(0, n, step)]

    return {
        "n_batches": n,
        "bin_batches": step,
        "batch": list(range(0, n, step)),
        "skills": {sid: {"planned": binned(planned[sid]), "placed": binned(placed[sid])}
                   for sid in skill_ids},
    }  # fmt: skip


@router.get("/mixtures/{mixture_id}/composition.json")
async def mixture_composition(mixture_id: str, viewer: ViewerDep, session: SessionDep) -> Response:
    mixture = mixtures.get_mixture(session, viewer.project.id, mixture_id)
    job = mixtures.job_of(session, mixture)
    if job is None or job.state != JobState.succeeded.value:
        return JSONResponse({"n_batches": 0, "bin_batches": 1, "batch": [], "skills": {}})
    skill_ids = list((job.result or {}).get("manifest", {}).get("skills", {}))
    data = await run_in_threadpool(composition, mixture.output_uri, skill_ids)
    return JSONResponse(data)


# --- verifications --------------------------------------------------------------------------


def _verdicts_only(ver: dict[str, Any]) -> None:
    verdicts = (ver.pop("report", None) or {}).get("verdicts", [])
    ver["verdicts"] = [
        {k: v[k] for k in ("skill_id", "size", "arm", "verdict", "p_retained")} for v in verdicts
    ]


VERIFICATIONS = Listing(
    "verifications",
    verifications.query,
    Verification.id,
    verifications_routes.public,
    _verdicts_only,
)


@router.get("/verifications")
def verifications_page(
    request: Request, viewer: ViewerDep, session: SessionDep, after: str | None = None
) -> Response:
    return _listing_page(request, viewer, session, VERIFICATIONS, after)


def _ints(text: str) -> list[str]:
    return [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]


@router.post("/verifications")
def create_verification(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    settings: SettingsDep,
    fields: FormDep,
) -> Response:
    arms = {first(fields, "arm_name", "upweighted") or "upweighted": first(fields, "mixture_id")}
    if first(fields, "baseline") == "auto":
        arms["baseline"] = "auto"
    raw: dict[str, Any] = {
        "arms": arms,
        "skill_ids": fields.get("skill_ids", []),
        "sizes": _ints(first(fields, "sizes", "nano")),
        "seeds": _ints(first(fields, "seeds", "0,1,2,3,4")),
        "eval_every": first(fields, "eval_every", "200"),
    }
    for name in ("token_budget", "metric", "device"):
        if first(fields, name):
            raw[name] = first(fields, name)
    try:
        body = VerificationCreate.model_validate(raw)
        verifications.check_grid(body.sizes, body.seeds)
        ver = _create(
            session,
            lambda: verifications.start_verification(
                session,
                viewer.project.id,
                settings,
                arms=body.arms,
                skill_ids=body.skill_ids,
                params=body.model_dump(exclude={"arms", "skill_ids"}),
            ),
        )
    except (ValidationError, Problem) as exc:
        return _refused(request, viewer, session, VERIFICATIONS, exc, fields)
    return RedirectResponse(f"{PREFIX}/verifications/{ver.id}", status_code=303)


@router.get("/verifications/{verification_id}")
def verification_page(
    request: Request, verification_id: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    ver = verifications.get_verification(session, viewer.project.id, verification_id)
    data = _json(verifications_routes.public(session, ver))
    return render(request, "verification.html", viewer, ver=data)
