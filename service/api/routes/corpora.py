"""Corpora: registered sources, validated (allowed roots, files, text field) before storing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from curation.corpus import CorpusSource, SourceRejected, fingerprint, validate_corpus
from curation.sources.records import ScanInputError
from service.api.deps import CurrentProject, IdempotencyKey, PageDep, SessionDep, SettingsDep
from service.api.errors import Problem, not_found
from service.api.idempotency import create_once
from service.api.pagination import paginate
from service.auth import ProjectRef
from service.models import Corpus, utcnow
from service.schemas import CorporaPublic, CorpusCreate, CorpusPublic
from service.settings import Settings

router = APIRouter(prefix="/v1/corpora", tags=["corpora"])


def public(corpus: Corpus) -> CorpusPublic:
    return CorpusPublic(
        id=corpus.id,
        name=corpus.name,
        uri=corpus.uri,
        format=corpus.format,
        text_key=corpus.text_key,
        id_key=corpus.id_key,
        files=len(corpus.files),
        total_bytes=corpus.fingerprint.get("total_bytes", 0),
        fingerprint=corpus.fingerprint.get("digest", ""),
        created_at=corpus.created_at,
    )


def get_corpus(session: SessionDep, project: ProjectRef, corpus_id: str) -> Corpus:
    corpus = session.get(Corpus, corpus_id)
    if corpus is None or corpus.project_id != project.id or corpus.deleted_at is not None:
        raise not_found("Corpus", corpus_id)
    return corpus


def source_of(corpus: Corpus) -> CorpusSource:
    return CorpusSource(
        uri=corpus.uri, format=corpus.format, text_key=corpus.text_key, id_key=corpus.id_key
    )


def service_owned(path: str | Path, settings: Settings, *, own: str = "corpora") -> bool:
    """True for a path in the data dir outside its `own` folder: the data dir holds every
    project's mixture outputs, job artifacts and working files, the embedded broker and
    database and worker logs, so a path there could read or touch another project's data.
    (The data dir is always an allowed root, and the production shape lists it too.)"""
    data = settings.resolved_data_dir
    path = Path(os.path.realpath(path))
    return path.is_relative_to(data) and not path.is_relative_to(data / own)


def _local_base(uri: str) -> str | None:
    """The local file or folder a corpus uri starts from (above its first glob character);
    None for remote URLs and for what the path checks refuse anyway."""
    path = uri
    if uri[:5].lower() == "file:":
        path = unquote(urlsplit(uri).path)
    elif "://" in uri:
        return None
    if "\x00" in path or not os.path.isabs(path):
        return None
    path = os.path.normpath(path)
    cut = min((path.index(c) for c in "*?[" if c in path), default=None)
    if cut is not None:
        path = os.path.dirname(path[:cut]) or "/"
    return os.path.realpath(path)


def refuse_service_data(uri: str, files: list[str], settings: Settings) -> None:
    """422 for a corpus in the data dir's service-owned folders, or one whose glob or folder
    spans the data dir: checked on the uri before any file is opened, and on the files."""
    data = settings.resolved_data_dir
    base = _local_base(uri)
    spans = base is not None and (service_owned(base, settings) or data.is_relative_to(base))
    if spans or any(service_owned(f, settings) for f in files if "://" not in f):
        raise Problem(
            422,
            "source-rejected",
            "Corpus location refused",
            f"{uri} reaches into the service's data directory ({data}), which holds every "
            f"project's outputs; there, only {data / 'corpora'} may hold corpora.",
        )


def check_source(source: CorpusSource, settings: Settings) -> tuple[list[str], dict[str, Any]]:
    """Validate a source before anything is stored; 422 with the reason if it is refused."""
    refuse_service_data(source.uri, [], settings)
    try:
        files = validate_corpus(
            source,
            [str(r) for r in settings.effective_allowed_roots],
            set(settings.allowed_protocols),
        )
    except SourceRejected as exc:
        raise Problem(422, "source-rejected", "Corpus location refused", str(exc)) from None
    except ScanInputError as exc:
        raise Problem(422, "corpus-invalid", "Corpus cannot be read", str(exc)) from None
    refuse_service_data(source.uri, files, settings)
    return files, fingerprint(files)


@router.post("", operation_id="corpora_create", status_code=201, response_model=CorpusPublic)
def create_corpus(
    *,
    body: CorpusCreate,
    request: Request,
    session: SessionDep,
    project: CurrentProject,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Register a corpus: the path must resolve inside an allowed root and hold readable
    records with the text field."""
    try:
        source = CorpusSource(
            uri=body.uri, format=body.format, text_key=body.text_key, id_key=body.id_key
        )
    except SourceRejected as exc:
        raise Problem(422, "source-rejected", "Corpus location refused", str(exc)) from None
    files, fp = check_source(source, settings)

    def create() -> tuple[dict[str, Any], None]:
        corpus = Corpus(
            project_id=project.id,
            name=body.name,
            uri=body.uri,
            format=body.format,
            text_key=body.text_key,
            id_key=body.id_key,
            files=files,
            fingerprint=fp,
        )
        session.add(corpus)
        session.flush()
        return public(corpus).model_dump(mode="json"), None

    return create_once(
        session,
        request,
        body,
        project_id=project.id,
        key=idempotency_key,
        status_code=201,
        create=create,
    )


@router.get("", operation_id="corpora_list", response_model=CorporaPublic)
def list_corpora(*, session: SessionDep, project: CurrentProject, page: PageDep) -> CorporaPublic:
    """This project's corpora, newest first."""
    stmt = select(Corpus).where(Corpus.project_id == project.id, Corpus.deleted_at.is_(None))
    return CorporaPublic.model_validate(paginate(session, stmt, Corpus.id, page, public))


@router.get("/{corpus_id}", operation_id="corpora_retrieve", response_model=CorpusPublic)
def read_corpus(*, corpus_id: str, session: SessionDep, project: CurrentProject) -> CorpusPublic:
    """One corpus."""
    return public(get_corpus(session, project, corpus_id))


@router.delete(
    "/{corpus_id}", operation_id="corpora_delete", status_code=204, response_class=Response
)
def delete_corpus(*, corpus_id: str, session: SessionDep, project: CurrentProject) -> Response:
    """Forget a corpus (its files are never touched); scans of it keep their reports."""
    get_corpus(session, project, corpus_id).deleted_at = utcnow()
    session.commit()
    return Response(status_code=204)
