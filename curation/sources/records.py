"""Strict record reading for every corpus format, with file and line in every error.

datatrove's own readers log and skip a line of invalid JSON and drop records
without text, which would make scan counts silently wrong. These readers
instead yield a `BadRecord` for each problem, and the caller decides to fail
or to skip and count.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

import orjson

FORMATS = ("jsonl", "jsonl.gz", "parquet", "hf_disk")
TABLE_FORMATS = ("parquet", "hf_disk")
# False: no skill in this raw JSONL line (see screen.py). None: no answer, and none will come
# (the screen is off for good): the line passes, and the reader stops asking.
LineScreen = Callable[[bytes], bool | None]


class ScanInputError(RuntimeError):
    """Corpus input that cannot be read exactly; names the file and line or row."""

    def __init__(self, message: str, path: str | None = None, index: int | None = None):
        super().__init__(message)
        self.path = path
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep path/index when the error crosses a multiprocessing boundary.
        return (type(self), (str(self), self.path, self.index))


@dataclass(slots=True)  # not frozen: built for every document, and frozen costs 3x to build
class Record:
    """One document: its 0-based index in the file (line or row), text and id."""

    index: int
    text: str
    doc_id: str


@dataclass(frozen=True)
class BadRecord:
    """A record that cannot be used; `where` is e.g. 'line 7' or 'row 12'."""

    index: int
    where: str
    reason: str


READ_BUFFER = 1 << 20


def open_binary(path: str) -> IO[bytes]:
    """Open a local path or an fsspec URL for binary reading."""
    if "://" in path:
        import fsspec

        return fsspec.open(path, "rb").open()
    # A 1 MiB buffer: iterating the lines of a 100 MB file takes ~0.03 s instead of ~0.05-0.13
    # with the default 8 KiB (measured here), a tenth of a scan's own path for rare skills.
    return open(path, "rb", buffering=READ_BUFFER)


def _from_dict(data: Any, index: int, text_key: str, id_key: str | None, path: str):
    text = data.get(text_key) if isinstance(data, dict) else None
    if isinstance(text, str):
        doc_id = data.get(id_key) if id_key else None
        return Record(index, text, str(doc_id) if doc_id is not None else f"{path}/{index}")
    return BadRecord(index, f"line {index + 1}", _not_a_record(data, text_key))


def _not_a_record(data: Any, text_key: str) -> str:
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    if text_key not in data:
        keys = ", ".join(sorted(map(str, data))[:10])
        return f"no text field {text_key!r} (fields: {keys})"
    return f"text field {text_key!r} is {type(data[text_key]).__name__}, not a string"


class RecordFile:
    """Iterates one corpus file's records; `done` tells how far it got, for progress.

    `done` counts bytes read (compressed for jsonl.gz) or rows (parquet), the
    same unit as `progress_total` for the format.
    """

    def __init__(self, path: str, fmt: str, text_key: str = "text", id_key: str | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown corpus format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.path, self.fmt, self.text_key, self.id_key = path, fmt, text_key, id_key
        self.done = 0

    def __iter__(self) -> Iterator[Record | BadRecord]:
        if self.fmt in TABLE_FORMATS:
            yield from self._tables()
        else:
            yield from self._jsonl()  # type: ignore[misc]  # no screen: never an int

    def screened(self, screen: LineScreen | None) -> Iterator[Record | BadRecord | int]:
        """The records, except that a JSONL line `screen` rules out comes as an int: the
        UTF-8 length of its text, when the line is a valid record (else as usual).

        For table formats there is no raw line, and the screen is not used.
        """
        if self.fmt in TABLE_FORMATS or screen is None:
            return iter(self)
        return self._jsonl(screen)

    def _jsonl(self, screen: LineScreen | None = None) -> Iterator[Record | BadRecord | int]:
        index = -1
        gz = self.fmt == "jsonl.gz"
        with open_binary(self.path) as raw:
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw)) if gz else raw
            try:
                for index, line in enumerate(stream):  # noqa: B007 - index used after the loop
                    if gz:
                        self.done = raw.tell()
                    else:
                        self.done += len(line)
                    if not line.isspace():
                        if screen is not None:
                            verdict = screen(line)
                            if verdict is None:
                                screen = None  # off for good: not asked again
                            elif not verdict:
                                size = self._text_bytes(line)
                                if size is not None:
                                    yield size
                                    continue
                        yield self._parse(line, index)
                if gz:
                    self.done = raw.tell()  # the whole file, trailer included
            except (EOFError, OSError, zlib.error) as e:
                yield BadRecord(
                    index + 1,
                    f"line {index + 2}",
                    f"unreadable from here on: truncated or corrupt file ({e})",
                )

    def _text_bytes(self, line: bytes) -> int | None:
        """The UTF-8 length of the line's text if `_parse` would give a Record, else None.

        Only orjson's answer is trusted (it refuses lone surrogates, so the text
        encodes strictly); a line it refuses, or no plain record, goes to `_parse`.
        """
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if type(data) is not dict:
            return None
        text = data.get(self.text_key)
        if type(text) is not str or (
            self.id_key is not None and type(data.get(self.id_key)) is float
        ):
            return None
        return len(text) if text.isascii() else len(text.encode("utf-8"))

    def _parse(self, line: bytes, index: int) -> Record | BadRecord:
        """The line's record, exactly as with `json.loads`, in about half the time.

        orjson refuses some lines json.loads accepts (lone surrogates, NaN, a
        BOM) and reads integers beyond 64 bits as floats. Those lines, and any
        that is not a dict with a text string (and an id that is no float), are
        parsed again with json.loads: values and error messages stay as they were.
        """
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            data = None
        if type(data) is dict:
            text = data.get(self.text_key)
            doc_id = data.get(self.id_key) if self.id_key else None
            if type(text) is str and type(doc_id) is not float:
                return Record(
                    index, text, f"{self.path}/{index}" if doc_id is None else str(doc_id)
                )
        try:
            data = json.loads(line)
        except ValueError as e:
            return BadRecord(index, f"line {index + 1}", f"invalid JSON ({e})")
        return _from_dict(data, index, self.text_key, self.id_key, self.path)

    def _batches(self) -> Iterator[tuple[Any, int | None]]:
        """(batch, bytes read so far: hf_disk only, where rows have no cheap total)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [self.text_key] + ([self.id_key] if self.id_key else [])
        with open_binary(self.path) as f:
            if self.fmt == "parquet":
                pf = pq.ParquetFile(f)
                names = pf.schema_arrow.names
                _check_columns(self.path, names, self.text_key)
                for batch in pf.iter_batches(columns=[c for c in columns if c in names]):
                    yield batch, None
            else:
                reader = pa.ipc.open_stream(f)
                _check_columns(self.path, reader.schema.names, self.text_key)
                for batch in reader:
                    yield batch.select([c for c in columns if c in reader.schema.names]), f.tell()

    def _tables(self) -> Iterator[Record | BadRecord]:
        index = 0
        try:
            for batch, position in self._batches():
                texts = batch.column(self.text_key).to_pylist()
                ids = (
                    batch.column(self.id_key).to_pylist()
                    if self.id_key in batch.schema.names
                    else None
                )
                for i, text in enumerate(texts):
                    row = index + i
                    self.done = row + 1 if position is None else position
                    if not isinstance(text, str):
                        what = "null" if text is None else type(text).__name__
                        yield BadRecord(
                            row, f"row {row}", f"text column {self.text_key!r} is {what}"
                        )
                        continue
                    doc_id = ids[i] if ids is not None else None
                    yield Record(
                        row, text, str(doc_id) if doc_id is not None else f"{self.path}/{row}"
                    )
                index += len(texts)
        except ScanInputError:
            raise
        except Exception as e:  # pyarrow raises several types for a damaged file
            yield BadRecord(index, f"row {index}", f"unreadable from here on: corrupt file ({e})")


def _check_columns(path: str, names: list[str], text_key: str) -> None:
    """A missing text column is a wrong text_key, not a bad record: fail even when skipping."""
    if text_key not in names:
        raise ScanInputError(
            f"{path}: no text column {text_key!r} (columns: {', '.join(names)}); "
            "set the corpus text_key to the column that holds the text",
            path,
        )


def progress_total(files: list[str], fmt: str) -> tuple[int, str]:
    """(total, unit) of the work in `files`, known before a scan without reading the data.

    Bytes (compressed for jsonl.gz) from file sizes for every format but
    parquet, whose footers give the rows: a line or row count would be a serial
    pass over the whole corpus before the scan starts.
    """
    if fmt == "parquet":
        return sum(_count_rows(p) for p in files), "rows"
    return sum(_size(p) for p in files), "bytes"


def _size(path: str) -> int:
    if "://" in path:
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        return int(fs.size(p))
    return os.path.getsize(path)


def _count_rows(path: str) -> int:
    import pyarrow.parquet as pq

    with open_binary(path) as f:
        return int(pq.ParquetFile(f).metadata.num_rows)
