"""Corpus sources: what a registered corpus is, and checking it before any scan.

`validate_corpus` is what the service calls when a corpus is registered:
the URI must stay inside the allowed roots, the files must exist and be
readable in the stated format, and the text field must be present in a sample.
It returns the files in corpus order; `fingerprint` records them so a later
scan can tell whether the corpus changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from curation.sources.fingerprint import FingerprintDiff, compare_fingerprints, fingerprint
from curation.sources.paths import SourceRejected, ensure_local_inside, resolve_source
from curation.sources.records import FORMATS, BadRecord, RecordFile, ScanInputError, open_binary

__all__ = [
    "FORMATS",
    "CorpusSource",
    "FingerprintDiff",
    "SourceRejected",
    "compare_fingerprints",
    "expand_files",
    "fingerprint",
    "resolve_source",
    "validate_corpus",
]

SUFFIXES = {
    "jsonl": (".jsonl", ".json"),
    "jsonl.gz": (".jsonl.gz", ".json.gz"),
    "parquet": (".parquet",),
}
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class CorpusSource:
    """A corpus as registered: `uri` (path, glob or URL), `format`, and which fields to read."""

    uri: str
    format: str
    text_key: str = "text"
    id_key: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise SourceRejected(f"unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if not self.text_key:
            raise SourceRejected("text_key must name the field that holds the text")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_dir(path: str) -> bool:
    if "://" in path:
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        return bool(fs.isdir(p))
    return os.path.isdir(path)


def _exists(path: str) -> bool:
    if "://" in path:
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        return bool(fs.exists(p))
    return os.path.exists(path)


def _list_dir(path: str, suffixes: tuple[str, ...]) -> list[str]:
    if "://" in path:
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        return sorted(fs.unstrip_protocol(f) for f in fs.find(p) if f.endswith(suffixes))
    found = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in filenames if f.endswith(suffixes)]
    return sorted(found)


def _hf_disk_files(folder: str) -> list[str]:
    """The Arrow files of a dataset saved with `save_to_disk`, in row order."""
    if not _is_dir(folder):
        raise SourceRejected(f"{folder} is not a folder; hf_disk expects a save_to_disk folder")
    if _exists(f"{folder}/dataset_dict.json"):
        with open_binary(f"{folder}/dataset_dict.json") as f:
            splits = json.load(f).get("splits", [])
        raise SourceRejected(
            f"{folder} holds a DatasetDict with splits {splits}; point the uri at one split "
            f"(e.g. {folder}/{splits[0] if splits else 'train'})"
        )
    if not _exists(f"{folder}/state.json"):
        raise SourceRejected(f"{folder} has no state.json; is it a folder written by save_to_disk?")
    with open_binary(f"{folder}/state.json") as f:
        state = json.load(f)
    names = [entry["filename"] for entry in state.get("_data_files", [])]
    if any("/" in n or n.startswith(".") for n in names):
        raise SourceRejected(f"{folder}/state.json lists data files outside its folder")
    return [f"{folder}/{name}" for name in names]


def expand_files(paths: list[str], fmt: str, allowed_roots: list[str]) -> list[str]:
    """Data files behind resolved paths: folders are listed, hf_disk folders read state.json.

    Every resulting local file is checked against the allowed roots again, so
    a symlink inside a listed folder cannot point out of them.
    """
    files: list[str] = []
    for path in paths:
        if fmt == "hf_disk":
            files += _hf_disk_files(path)
        elif _is_dir(path):
            found = _list_dir(path, SUFFIXES[fmt])
            if not found:
                raise SourceRejected(f"{path} has no {'/'.join(SUFFIXES[fmt])} files")
            files += found
        else:
            files.append(path)
    return [f if "://" in f else ensure_local_inside(f, allowed_roots, shown=f) for f in files]


def _check_magic(path: str, fmt: str) -> None:
    try:
        with open_binary(path) as f:
            head = f.read(4)
    except OSError as e:
        raise SourceRejected(f"{path} cannot be read: {e.strerror or e}") from e
    if fmt == "jsonl.gz" and head[:2] != GZIP_MAGIC:
        raise SourceRejected(f"{path} is not gzip-compressed; register it with format 'jsonl'")
    if fmt == "jsonl" and head[:2] == GZIP_MAGIC:
        raise SourceRejected(f"{path} is gzip-compressed; register it with format 'jsonl.gz'")
    if fmt == "parquet" and head != PARQUET_MAGIC:
        raise SourceRejected(f"{path} is not a Parquet file (no PAR1 header)")


def _check_sample(files: list[str], source: CorpusSource, sample_records: int) -> None:
    seen = 0
    for path in files:
        reader = RecordFile(path, source.format, source.text_key, source.id_key)
        try:
            for record in reader:
                if isinstance(record, BadRecord):
                    raise SourceRejected(f"{path} {record.where}: {record.reason}")
                seen += 1
                if seen >= sample_records:
                    return
        except ScanInputError as e:
            raise SourceRejected(str(e)) from e
        if seen:
            return
    if not seen:
        raise SourceRejected(f"{source.uri} has no records")


def validate_corpus(
    source: CorpusSource,
    allowed_roots: list[str],
    allowed_protocols: set[str] | None = None,
    sample_records: int = 100,
) -> list[str]:
    """Files of `source` in corpus order, after checking paths, readability and a sample.

    Corpus order is sorted path order (hf_disk: the saved shard order); scans
    report positions in that order. Raises SourceRejected with a message a
    person can act on.
    """
    resolved = resolve_source(source.uri, allowed_roots, allowed_protocols)
    files = expand_files(resolved, source.format, allowed_roots)
    if not files:
        raise SourceRejected(f"{source.uri} names no data files")
    for path in files:
        _check_magic(path, source.format)
    _check_sample(files, source, sample_records)
    return files
