"""CorpusReader: a datatrove reader over an explicit, ordered file list.

Why not datatrove's JsonlReader/ParquetReader/HuggingFaceDatasetReader: they
skip invalid lines and text-less records with a log line (counts would be
silently wrong), and the HF reader interleaves rows across tasks, which loses
corpus order. This reader gives rank r the files files[r::world_size], reads
each file whole and in order, and tags every document with `file_path` and
`row` (0-based line or row index) so positions can be put back in corpus order.

Each rank also keeps a small state file (progress, bad-record count) that
`run_scan` reads for progress reporting and for the final report.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Literal

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.sources.records import BadRecord, RecordFile, ScanInputError

BadRecordPolicy = Literal["fail", "skip"]
MAX_BAD_EXAMPLES = 20


class ScanCancelled(RuntimeError):
    """The scan's cancel marker appeared while a rank was reading."""


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def rank_state_path(state_dir: str, rank: int) -> str:
    return os.path.join(state_dir, f"{rank:05d}.json")


class _RankState:
    """Progress and bad records of one rank, flushed at most every `interval` seconds."""

    def __init__(self, state_dir: str | None, rank: int, cancel_file: str | None, interval: float):
        self.path = rank_state_path(state_dir, rank) if state_dir else None
        self.cancel_file, self.interval = cancel_file, interval
        self.data: dict[str, Any] = {
            "rank": rank,
            "units_done": 0,
            "docs": 0,
            "bad_records": 0,
            "bad_examples": [],
            "finished": False,
        }
        self._last = 0.0
        if self.path:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.flush()

    def tick(self, units_done: int) -> None:
        self.data["units_done"] = units_done
        now = time.monotonic()
        if now - self._last >= self.interval:
            if self.cancel_file and os.path.exists(self.cancel_file):
                raise ScanCancelled("scan cancelled")
            self.flush()

    def bad(self, path: str, record: BadRecord) -> None:
        self.data["bad_records"] += 1
        if len(self.data["bad_examples"]) < MAX_BAD_EXAMPLES:
            self.data["bad_examples"].append(f"{path} {record.where}: {record.reason}")

    def flush(self) -> None:
        self._last = time.monotonic()
        if self.path:
            write_json_atomic(self.path, self.data)


class CorpusReader(PipelineStep):
    """Reads `files` (in corpus order) of one format; rank r takes files[r::world_size].

    on_bad_record="fail" raises ScanInputError naming the file and line/row;
    "skip" drops the record and counts it in the rank state file.
    """

    name = "skillmix corpus"
    type = "📖 - READER"

    def __init__(
        self,
        files: list[str],
        format: str,
        text_key: str = "text",
        id_key: str | None = None,
        on_bad_record: BadRecordPolicy = "fail",
        state_dir: str | None = None,
        cancel_file: str | None = None,
        flush_interval: float = 0.5,
    ):
        super().__init__()
        if on_bad_record not in ("fail", "skip"):
            raise ValueError("on_bad_record must be 'fail' or 'skip'")
        self.files, self.format = list(files), format
        self.text_key, self.id_key = text_key, id_key
        self.on_bad_record = on_bad_record
        self.state_dir, self.cancel_file = state_dir, cancel_file
        self.flush_interval = flush_interval

    def run(
        self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1
    ) -> DocumentsPipeline:
        if data:
            yield from data
        state = _RankState(self.state_dir, rank, self.cancel_file, self.flush_interval)
        finished_units = 0
        for path in self.files[rank::world_size]:
            self.stat_update("input_files")
            records = RecordFile(path, self.format, self.text_key, self.id_key)
            for record in records:
                if isinstance(record, BadRecord):
                    if self.on_bad_record == "fail":
                        raise ScanInputError(
                            f"{path} {record.where}: {record.reason}", path, record.index
                        )
                    self.stat_update("bad_records")
                    state.bad(path, record)
                    continue
                doc = Document(
                    text=record.text,
                    id=record.doc_id,
                    metadata={"file_path": path, "row": record.index},
                )
                self.update_doc_stats(doc)
                self.stat_update("documents")
                state.data["docs"] += 1
                state.tick(finished_units + records.done)
                yield doc
            finished_units += records.done
        state.data["units_done"] = finished_units
        state.data["finished"] = True
        state.flush()
