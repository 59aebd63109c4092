"""Corpora: registered sources, validated (allowed roots, files, text field) before storing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from curation.corpus import CorpusSource, SourceRejected, fingerprint, validate_corpus
from curation.sources.records import ScanInputError
from service.models import Corpus, utcnow
from service.problems import Problem, not_found
from service.settings import Settings


def query(project_id: str) -> Select[Corpus]:
    """The project's corpora (not deleted), for a page."""
    return select(Corpus).where(Corpus.project_id == project_id, Corpus.deleted_at.is_(None))


def get_corpus(session: Session, project_id: str, corpus_id: str) -> Corpus:
    """The project's corpus (not deleted); 404 otherwise."""
    corpus = session.get(Corpus, corpus_id)
    if corpus is None or corpus.project_id != project_id or corpus.deleted_at is not None:
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


def source(uri: str, format: str, text_key: str, id_key: str | None) -> CorpusSource:
    """The source a create describes; 422 for a location refused outright."""
    try:
        return CorpusSource(uri=uri, format=format, text_key=text_key, id_key=id_key)
    except SourceRejected as exc:
        raise Problem(422, "source-rejected", "Corpus location refused", str(exc)) from None


def add_corpus(
    session: Session,
    project_id: str,
    name: str,
    source: CorpusSource,
    files: list[str],
    fingerprint: dict[str, Any],
) -> Corpus:
    corpus = Corpus(
        project_id=project_id,
        name=name,
        uri=source.uri,
        format=source.format,
        text_key=source.text_key,
        id_key=source.id_key,
        files=files,
        fingerprint=fingerprint,
    )
    session.add(corpus)
    session.flush()
    return corpus


def delete_corpus(session: Session, project_id: str, corpus_id: str) -> None:
    """Forget a corpus (its files are never touched); scans of it keep their reports."""
    get_corpus(session, project_id, corpus_id).deleted_at = utcnow()
