"""Corpora: registered sources, validated (allowed roots, files, text field) before storing."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.api.deps import CurrentProject, PageDep, SessionDep
from service.api.idempotency import CreateOnceDep
from service.api.pagination import paginate
from service.api.schemas import CorporaPublic, CorpusCreate, CorpusPublic
from service.models import Corpus
from service.store import corpora

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


@router.post("", operation_id="corpora_create", status_code=201, response_model=CorpusPublic)
def create_corpus(*, body: CorpusCreate, create: CreateOnceDep) -> JSONResponse:
    """Register a corpus: the path must resolve inside an allowed root and hold readable
    records with the text field."""
    source = corpora.source(body.uri, body.format, body.text_key, body.id_key)
    files, fp = corpora.check_source(source, create.settings)
    return create(
        body,
        lambda: (
            corpora.add_corpus(create.session, create.project_id, body.name, source, files, fp),
            None,
        ),
        present=lambda _, corpus: public(corpus),
        status_code=201,
    )


@router.get("", operation_id="corpora_list", response_model=CorporaPublic)
def list_corpora(*, session: SessionDep, project: CurrentProject, page: PageDep) -> CorporaPublic:
    """This project's corpora, newest first."""
    stmt = corpora.query(project.id)
    return CorporaPublic.model_validate(paginate(session, stmt, Corpus.id, page, public))


@router.get("/{corpus_id}", operation_id="corpora_retrieve", response_model=CorpusPublic)
def read_corpus(*, corpus_id: str, session: SessionDep, project: CurrentProject) -> CorpusPublic:
    """One corpus."""
    return public(corpora.get_corpus(session, project.id, corpus_id))


@router.delete(
    "/{corpus_id}", operation_id="corpora_delete", status_code=204, response_class=Response
)
def delete_corpus(*, corpus_id: str, session: SessionDep, project: CurrentProject) -> Response:
    """Forget a corpus (its files are never touched); scans of it keep their reports."""
    corpora.delete_corpus(session, project.id, corpus_id)
    session.commit()
    return Response(status_code=204)
