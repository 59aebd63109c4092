"""The repeat pool: corpus documents that a `repeat` skill can place copies of.

A first pass over the corpus (CorpusReader -> SkillTagger -> RepeatPoolCollector)
spills the matched documents of the repeat skills to `pool-{rank:05d}.jsonl`;
they are rare, so the file is small, and only an index (offsets, keys, lengths)
is kept in memory while the mixture is written. A document is left out of the
pool when it holds a probe instance of the skill (a held-out instance must never
be placed, SCIENCE.md section 1), when it is too long to fit the batch slot a
placement gets (`max_tokens`), or when its first instance would straddle a
sequence boundary once the document starts a sequence (the model would never see
that exposure whole); each is counted.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO

import orjson
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.atomic import atomic_file
from curation.mixture.tokenizer import BYTES, MixtureTokenizer
from curation.text import byte_len, char_to_byte_offsets


def pool_path(folder: str, rank: int) -> str:
    return os.path.join(folder, f"pool-{rank:05d}.jsonl")


class RepeatPoolCollector(PipelineStep):
    """Writes the documents tagged with a repeat skill to `pool-{rank:05d}.jsonl` in `folder`.

    One line per (skill, document): skill_id, doc_id, file_path, row, text, the
    skill's match keys and its first match span. Needs SkillTagger's metadata
    before it. The file is written under a temporary name and renamed at the end.
    """

    name = "🧺 RepeatPoolCollector"
    type = "💽 - WRITER"

    def __init__(
        self,
        folder: str,
        skill_ids: Iterable[str],
        probe_keys: Mapping[str, Iterable[str]] | None = None,
        max_tokens: int | None = None,
        seq_len: int | None = None,
        metadata_key: str = "skills",
        tokenizer: MixtureTokenizer = BYTES,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.folder, self.skill_ids = folder, list(skill_ids)
        self.probe_keys = {sid: frozenset(keys) for sid, keys in (probe_keys or {}).items()}
        self.max_tokens, self.seq_len, self.metadata_key = max_tokens, seq_len, metadata_key

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        path = pool_path(self.folder, rank)
        os.makedirs(self.folder, exist_ok=True)
        with atomic_file(path) as out:
            for doc in data or ():
                tagged = doc.metadata.get(self.metadata_key) or {}
                for sid in self.skill_ids:
                    if sid in tagged:
                        self._keep(out, sid, doc, tagged[sid])
                yield doc

    def _keep(self, out: IO[bytes], sid: str, doc, match: dict) -> None:
        keys = match["keys"]
        if self.probe_keys.get(sid, frozenset()).intersection(keys):
            self.stat_update(f"probe_excluded/{sid}")
            return
        start, end = match["spans"][0]
        if self.tokenizer.is_bytes:
            tokens = byte_len(doc.text) + 1
            at = char_to_byte_offsets(doc.text, (start, end))
            first, last = at[start], at[end] - 1
        else:  # the tokens holding the instance's first and last characters
            ids, starts = self.tokenizer.token_starts(doc.text)
            tokens = len(ids) + 1
            first, last = bisect_right(starts, start) - 1, bisect_right(starts, end - 1) - 1
        if self.max_tokens is not None and tokens > self.max_tokens:
            self.stat_update(f"too_long/{sid}")
            return
        if self.seq_len and first // self.seq_len != last // self.seq_len:
            self.stat_update(f"straddles_sequence/{sid}")
            return
        line = {
            "skill_id": sid,
            "doc_id": doc.id,
            "file_path": doc.metadata.get("file_path", ""),
            "row": doc.metadata.get("row", 0),
            "keys": keys,
            "span": match["spans"][0],
            "text": doc.text,
            "tokens": tokens,
        }
        out.write(orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n")
        self.stat_update(f"kept/{sid}")


@dataclass(frozen=True)
class PoolDoc:
    """A repeatable document: where its line is in which pool file, its keys and first match."""

    file: int
    offset: int
    length: int
    doc_id: str
    keys: tuple[str, ...]
    span: tuple[int, int]
    tokens: int


@dataclass
class RepeatPool:
    """Pool documents per skill, in corpus order; texts are read from the files on demand."""

    paths: list[str]
    docs: dict[str, list[PoolDoc]] = field(default_factory=dict)

    def text(self, doc: PoolDoc) -> str:
        with open(self.paths[doc.file], "rb") as f:
            f.seek(doc.offset)
            return orjson.loads(f.read(doc.length))["text"]


def load_pool(paths: list[str], files_in_order: list[str]) -> RepeatPool:
    """Index the pool files; documents sorted into corpus order (file, then row)."""
    order = {path: i for i, path in enumerate(files_in_order)}
    entries: list[tuple[tuple[int, int], str, PoolDoc]] = []
    for index, path in enumerate(paths):
        with open(path, "rb") as f:
            offset = 0
            for raw in f:
                line = orjson.loads(raw)
                doc = PoolDoc(
                    file=index,
                    offset=offset,
                    length=len(raw),
                    doc_id=line["doc_id"],
                    keys=tuple(line["keys"]),
                    span=(line["span"][0], line["span"][1]),
                    tokens=line.get("tokens") or byte_len(line["text"]) + 1,
                )
                where = (order.get(line["file_path"], len(order)), line["row"])
                entries.append((where, line["skill_id"], doc))
                offset += len(raw)
    pool = RepeatPool(paths)
    for _, sid, doc in sorted(entries, key=lambda e: (e[0], e[1])):
        pool.docs.setdefault(sid, []).append(doc)
    return pool
