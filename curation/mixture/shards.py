"""Shard files of a mixture: tokens, text records and composition, committed atomically.

Shard k holds batches [k * shard_batches, (k+1) * shard_batches): its token file
holds exactly those batches' tokens, its text file the records that start in
them, and `.build/composition-{k}.jsonl` their composition lines. The three are
written under temporary names and renamed together when the shard's last batch
is complete; `on_commit` then records them (resume skips committed shards). A full disk
ends the build with `DiskFull` naming the shard and the token bytes still to be written;
the shard's temporary files are deleted and the committed shards kept.

Files are byte-identical for the same input: records are JSON with sorted keys,
gzip headers carry mtime 0 and no file name, Parquet row groups have a fixed
number of rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import orjson

from curation.atomic import DiskFull, is_disk_full, temp_path
from curation.mixture.packer import Piece
from curation.mixture.tokenizer import BYTES, MixtureTokenizer

GZIP_LEVEL = 6
GZIP_CHUNK = 1 << 20
PARQUET_ROWS = 8192
TEXT_SUFFIX = {"jsonl.gz": "jsonl.gz", "parquet": "parquet"}
BUILD_DIR = ".build"


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


class _JsonlGz:
    """Text records as gzip-compressed JSON lines (zlib in gzip mode: mtime 0, no name)."""

    def __init__(self, path: str):
        self.file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.zip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        self.buffer = bytearray()

    def add(self, record: dict[str, Any]) -> None:
        self.buffer += orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        self.buffer += b"\n"
        if len(self.buffer) >= GZIP_CHUNK:
            self.file.write(self.zip.compress(self.buffer))
            self.buffer.clear()

    def close(self) -> None:
        with self.file:  # closed even when the last write fails (a full disk)
            self.file.write(self.zip.compress(self.buffer) + self.zip.flush())


class _Parquet:
    """Text records as Parquet, in row groups of PARQUET_ROWS rows."""

    COLUMNS = ("text", "id", "source", "batch", "eos", "skill_id")

    def __init__(self, path: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.schema = pa.schema(
            [("text", pa.string()), ("id", pa.string()), ("source", pa.string()),
             ("batch", pa.int64()), ("eos", pa.int64()), ("skill_id", pa.string())]
        )  # fmt: skip
        self.writer = pq.ParquetWriter(path, self.schema)
        self.rows: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        self.rows.append(record)
        if len(self.rows) == PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            columns = {c: [r[c] for r in self.rows] for c in self.COLUMNS}
            self.writer.write_table(self.pa.table(columns, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


def shard_names(index: int, fmt: str) -> dict[str, str]:
    return {
        "tokens": f"tokens-{index:05d}.bin",
        "text": f"shard-{index:05d}.{TEXT_SUFFIX[fmt]}",
        "composition": os.path.join(BUILD_DIR, f"composition-{index:05d}.jsonl"),
    }


class _OpenShard:
    def __init__(self, out_dir: str, index: int, fmt: str):
        self.index = index
        self.paths = {k: os.path.join(out_dir, v) for k, v in shard_names(index, fmt).items()}
        self.temps = {k: temp_path(v) for k, v in self.paths.items()}
        self.token_hash = hashlib.sha256()
        self.sequences = self.documents = 0
        # Opened one by one: when one cannot be (`.build/` removed by an overlapping writer
        # that finished the mixture), those already created are closed and deleted here,
        # since the writer never gets this shard to abort.
        with contextlib.ExitStack() as undo:
            self.tokens = open(self._tmp("tokens"), "wb")  # noqa: SIM115 - closed in commit/abort
            undo.callback(self._discard, "tokens", self.tokens)
            self.text = (
                _JsonlGz(self._tmp("text")) if fmt == "jsonl.gz" else _Parquet(self._tmp("text"))
            )
            undo.callback(self._discard, "text", self.text)
            self.composition = open(self._tmp("composition"), "wb")  # noqa: SIM115
            undo.pop_all()

    def _discard(self, kind: str, file: Any) -> None:
        with contextlib.suppress(OSError):
            file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp(kind))

    def _tmp(self, kind: str) -> str:
        return self.temps[kind]

    def close(self) -> None:
        """Close the three files, all of them even if one fails (its error is raised)."""
        with contextlib.ExitStack() as files:
            files.callback(self.composition.close)
            files.callback(self.text.close)
            files.callback(self.tokens.close)


class ShardWriter:
    """Routes pieces into shards; calls `batch_done(b)` for each finished batch's composition.

    Shards in `skip` (already committed by an earlier, interrupted run) are not
    written: their pieces pass through so the stream stays identical.
    """

    def __init__(
        self,
        out_dir: str,
        fmt: str,
        batch_tokens: int,
        seq_len: int,
        n_batches: int,
        shard_batches: int,
        batch_done: Callable[[int], dict[str, Any]],
        on_commit: Callable[[int, list[dict[str, Any]]], None],
        skip: set[int] | frozenset[int] = frozenset(),
        tokenizer: MixtureTokenizer = BYTES,
    ):
        self.out_dir, self.fmt = out_dir, fmt
        self.dtype, self.eos = np.dtype(tokenizer.dtype), tokenizer.eos
        self.batch_tokens, self.seq_len = batch_tokens, seq_len
        self.n_batches, self.shard_batches = n_batches, shard_batches
        self.total = n_batches * batch_tokens
        self.batch_done, self.on_commit, self.skip = batch_done, on_commit, skip
        self.pos = 0
        self.open: _OpenShard | None = None
        os.makedirs(os.path.join(out_dir, BUILD_DIR), exist_ok=True)

    @property
    def n_shards(self) -> int:
        return -(-self.n_batches // self.shard_batches)

    def _shard(self, position: int) -> _OpenShard | None:
        index = position // self.batch_tokens // self.shard_batches
        if index in self.skip:
            return None
        if self.open is None:
            self.open = _OpenShard(self.out_dir, index, self.fmt)
        return self.open

    def _token_bytes_left(self, index: int) -> int:
        """Bytes of the token files of shards index.. that are still to be written."""
        per_shard = self.shard_batches * self.batch_tokens
        return sum(
            (min(self.total, (i + 1) * per_shard) - i * per_shard) * self.dtype.itemsize
            for i in range(index, self.n_shards)
            if i not in self.skip
        )

    @contextlib.contextmanager
    def _naming_full_disk(self) -> Iterator[None]:
        """A full disk met while writing a shard: `DiskFull` naming its token file and the
        token bytes of this shard and the later ones (their text files need more)."""
        try:
            yield
        except OSError as exc:
            if isinstance(exc, DiskFull) or not is_disk_full(exc):
                raise
            per_shard = self.shard_batches * self.batch_tokens
            index = self.open.index if self.open is not None else self.pos // per_shard
            index = min(index, self.n_shards - 1)
            path = os.path.join(self.out_dir, shard_names(index, self.fmt)["tokens"])
            self.abort()  # first, so that the free space reported is what a retry finds
            raise DiskFull(
                path,
                self._token_bytes_left(index),
                what=f"shard {index} of the mixture, its tokens and text files",
                code=exc.errno,
            ) from exc

    def add(self, piece: Piece) -> None:
        """Write the piece's record, then its tokens (up to the end of the mixture)."""
        with self._naming_full_disk():
            self._add(piece)

    def _add(self, piece: Piece) -> None:
        if piece.start >= self.total:
            return
        shard = self._shard(piece.start)
        if shard is not None:
            record = {
                "text": piece.text,
                "id": piece.doc_id,
                "source": piece.source,
                "batch": piece.start // self.batch_tokens,
                "eos": piece.eos,
                "skill_id": piece.skill_id,
            }
            shard.text.add(record)
            shard.documents += 1
        tokens = np.empty(piece.tokens, dtype=self.dtype)
        ids = np.frombuffer(piece.data, dtype=np.uint8) if piece.ids is None else piece.ids
        tokens[: len(ids)] = ids
        tokens[len(ids) :] = self.eos
        self._write_tokens(tokens[: self.total - self.pos])

    def _write_tokens(self, tokens: np.ndarray) -> None:
        while tokens.size:
            batch_end = (self.pos // self.batch_tokens + 1) * self.batch_tokens
            part, tokens = tokens[: batch_end - self.pos], tokens[batch_end - self.pos :]
            shard = self._shard(self.pos)
            if shard is not None:
                data = part.tobytes()
                shard.tokens.write(data)
                shard.token_hash.update(data)
            self.pos += part.size
            if self.pos == batch_end:
                self._end_batch(batch_end // self.batch_tokens - 1, shard)

    def _end_batch(self, batch: int, shard: _OpenShard | None) -> None:
        line = self.batch_done(batch)
        if shard is not None:
            shard.composition.write(orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n")
            shard.sequences += self.batch_tokens // self.seq_len
        last = batch == self.n_batches - 1 or (batch + 1) % self.shard_batches == 0
        if last and shard is not None:
            self._commit(shard)

    def _commit(self, shard: _OpenShard) -> None:
        shard.close()
        self.open = None  # closed: an abort after a failed rename must not close it again
        for kind in ("tokens", "text", "composition"):
            os.replace(shard.temps[kind], shard.paths[kind])
        names = shard_names(shard.index, self.fmt)
        entries = [
            {"path": names["tokens"], "kind": "tokens", "sequences": shard.sequences,
             "sha256": shard.token_hash.hexdigest()},
            {"path": names["text"], "kind": "text", "documents": shard.documents,
             "sha256": sha256_file(shard.paths["text"])},
        ]  # fmt: skip
        first = shard.index * self.shard_batches
        for entry in entries:
            entry["batches"] = [first, min(first + self.shard_batches, self.n_batches)]
        self.on_commit(shard.index, entries)

    def abort(self) -> None:
        """Close the shard in progress and delete its temporary files (no other writer uses
        their names; a rerun writes the shard again). A failed close (the disk that ended
        the build is still full) does not keep them."""
        if self.open is not None:
            shard, self.open = self.open, None
            with contextlib.suppress(OSError):
                shard.close()
            for path in shard.temps.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
