"""CorpusReader: a datatrove reader over an explicit, ordered file list.

Why not datatrove's JsonlReader/ParquetReader/HuggingFaceDatasetReader: they
skip invalid lines and text-less records with a log line (counts would be
silently wrong), and the HF reader interleaves rows across tasks, which loses
corpus order. This reader gives rank r the files files[r::world_size], reads
each file whole and in order, and tags every document with `file_path` and
`row` (0-based line or row index) so positions can be put back in corpus order.

Each rank also keeps a small state file (progress, bad-record count) that
`run_scan` reads for progress reporting and for the final report.

With a `prefilter` (a scan passes `SkillTagger.may_match`), a document it rules
out is never built: most documents of a corpus hit no skill, and for those a
scan only needs their count and UTF-8 length. Each run of such documents is
passed on as one summary document (empty text, `metadata[SKIPPED]` =
{"docs", "bytes", "bytes_sq"}: the count, the UTF-8 bytes and the sum of each
document's bytes squared, which the rate interval's dispersion needs), in its
place in the file, which SkillFrequencyStats adds to its totals. So a prefiltering
reader is for pipelines ending in that step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.atomic import write_json_atomic
from curation.sources.records import BadRecord, LineScreen, Record, RecordFile, ScanInputError

BadRecordPolicy = Literal["fail", "skip"]
MAX_BAD_EXAMPLES = 20
SKIPPED = "skipped"  # metadata key of a summary document: {"docs", "bytes", "bytes_sq"}


class ScanCancelled(RuntimeError):
    """The scan's cancel marker appeared while a rank was reading."""


def skipped_summary(path: str, docs: int, nbytes: int, nbytes_sq: int) -> Document:
    """Stands for `docs` consecutive documents of `path` left out: `nbytes` UTF-8 bytes
    in all, `nbytes_sq` the sum of each one's bytes squared."""
    return Document(
        text="",
        id=f"{path}#skipped",
        metadata={
            "file_path": path,
            SKIPPED: {"docs": docs, "bytes": nbytes, "bytes_sq": nbytes_sq},
        },
    )


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


SCREEN_PROBE_LINES = 2000  # lines a rank screens before judging whether the screen pays
SCREEN_MAX_PASS = 0.5  # a screen passing more than this share of them is turned off


class _AdaptiveScreen:
    """A line screen that turns itself off (None: every line passes, which is always exact,
    and the file reader stops asking) when it passes most lines, or when the screen itself
    says it is off: then it would only add a pass over each line (skills with weak factors,
    such as a two-letter unit or four digits, hit most lines)."""

    def __init__(self, screen: LineScreen):
        self.screen, self.seen, self.passed, self.on = screen, 0, 0, True

    def __call__(self, line: bytes) -> bool | None:
        if not self.on:
            return None
        passed = self.screen(line)
        if passed is None:
            self.on = False
            return None
        self.seen += 1
        self.passed += passed
        if self.seen == SCREEN_PROBE_LINES and self.passed > SCREEN_MAX_PASS * self.seen:
            self.on = False
        return passed


class CorpusReader(PipelineStep):
    """Reads `files` (in corpus order) of one format; rank r takes files[r::world_size].

    on_bad_record="fail" raises ScanInputError naming the file and line/row;
    "skip" drops the record and counts it in the rank state file.
    prefilter: given a text's UTF-8, False if the document cannot matter
        downstream; such documents only go into summaries (see the module doc).
    line_screen: given a raw JSONL line, False if no string in it can matter
        (`SkillTagger.may_match_line`); such a line is parsed for its text's
        length only and goes into a summary. Used with a prefilter, for JSONL.
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
        prefilter: Callable[[bytes], bool] | None = None,
        line_screen: LineScreen | None = None,
    ):
        super().__init__()
        if on_bad_record not in ("fail", "skip"):
            raise ValueError("on_bad_record must be 'fail' or 'skip'")
        self.files, self.format = list(files), format
        self.text_key, self.id_key = text_key, id_key
        self.on_bad_record = on_bad_record
        self.state_dir, self.cancel_file = state_dir, cancel_file
        self.flush_interval = flush_interval
        self.prefilter = prefilter
        self.line_screen = line_screen if prefilter is not None else None

    def run(
        self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1
    ) -> DocumentsPipeline:
        if data:
            yield from data
        state = _RankState(self.state_dir, rank, self.cancel_file, self.flush_interval)
        prefilter = self.prefilter
        screen = _AdaptiveScreen(self.line_screen) if self.line_screen is not None else None
        finished_units = 0
        for path in self.files[rank::world_size]:
            self.stat_update("input_files")
            records = RecordFile(path, self.format, self.text_key, self.id_key)
            skipped_docs = skipped_bytes = skipped_sq = 0  # since the last document passed on
            for record in records.screened(screen):
                if type(record) is int:  # a valid line the screen ruled out: count it only
                    state.data["docs"] += 1
                    state.tick(finished_units + records.done)
                    skipped_docs += 1
                    skipped_bytes += record
                    skipped_sq += record * record
                    continue
                if type(record) is BadRecord:
                    if self.on_bad_record == "fail":
                        raise ScanInputError(
                            f"{path} {record.where}: {record.reason}", path, record.index
                        )
                    self.stat_update("bad_records")
                    state.bad(path, record)
                    continue
                assert type(record) is Record
                state.data["docs"] += 1
                state.tick(finished_units + records.done)
                if prefilter is not None:
                    try:
                        utf8: bytes | None = record.text.encode()
                    except UnicodeEncodeError:  # a lone surrogate: the usual path
                        utf8 = None
                    if utf8 is not None and not prefilter(utf8):
                        skipped_docs += 1
                        skipped_bytes += len(utf8)
                        skipped_sq += len(utf8) ** 2
                        continue
                    if skipped_docs:
                        yield self._summary(path, skipped_docs, skipped_bytes, skipped_sq)
                        skipped_docs = skipped_bytes = skipped_sq = 0
                doc = Document(
                    text=record.text,
                    id=record.doc_id,
                    metadata={"file_path": path, "row": record.index},
                )
                self.update_doc_stats(doc)
                self.stat_update("documents")
                yield doc
            if skipped_docs:
                yield self._summary(path, skipped_docs, skipped_bytes, skipped_sq)
            finished_units += records.done
        state.data["units_done"] = finished_units
        state.data["finished"] = True
        state.flush()

    def _summary(self, path: str, docs: int, nbytes: int, nbytes_sq: int) -> Document:
        self.stat_update("documents_left_out", value=docs)
        return skipped_summary(path, docs, nbytes, nbytes_sq)
