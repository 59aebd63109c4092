"""A prototype, for bench_scan.py only: the scan pipeline as one step that skips work for misses.

Not part of the library. It estimates what the issue's suggestion would gain:
most documents hit no skill, and such a document only adds its text's byte
length and one to its file's totals, so it needs neither a Document, nor stats
updates, nor (variant "raw") even a JSON parse. Two variants:

- "raw": take the text's exact UTF-8 bytes straight from the line when the line
  has the simple form `{..., "text": "..."}` with the text last (what orjson and
  json.dumps write): the part before `"text":` is checked by parsing it alone with
  an empty text; the text is checked for raw control characters and invalid
  escapes, unescaped with codecs.escape_decode (same meaning as JSON's escapes
  except \\/ and \\u, which send the line to the parser) and checked to be valid
  UTF-8. Those bytes are exactly what `SkillMatcher.find_spans` encodes, so its
  two RE2 Sets give the same answer on them; only a line with a Set hit (or an
  unusual form) is parsed with json.loads and goes through the library's path.
- "orjson": parse every line with orjson, encode the text and run the Sets; skip
  the Document and the per-document stats for a miss.

Both write the same partials as SkillFrequencyStats (its own `_count`/`_write`),
so `run_scan`'s merge and report are unchanged; bench_scan.py checks that the
reports are identical to the library's. Datatrove's per-document stats
(doc_len and the like) are not kept for misses.
"""

from __future__ import annotations

import codecs
import json
import re

import orjson
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep

from curation.skills.matcher import SkillMatcher
from curation.sources.reader import CorpusReader, _RankState
from curation.sources.records import BadRecord, ScanInputError, _from_dict
from curation.steps.frequency import SkillCounts, SkillFrequencyStats, byte_len
from curation.steps.tagger import SkillTagger

CONTROL = bytes(range(32))
BAD_ESCAPE = re.compile(rb'\\[^"bfnrt]')  # after pairing \\: not a JSON escape, or \/ or \u


def text_bytes(line: bytes, key: bytes) -> bytes | None:
    """The exact UTF-8 bytes of the text of a `{..., "text": "..."}` line, or None.

    None means "parse this line the normal way" (an unusual form, a rare escape,
    invalid JSON or UTF-8); the caller never needs to know which.
    """
    end = len(line)
    while end and line[end - 1] in b"\r\n":
        end -= 1
    if end < 2 or line[end - 2 : end] != b'"}':
        return None
    at = line.find(key)
    if at < 0:
        return None
    prefix = line[:at]
    if b"\\" in prefix or prefix.count(b'"') % 2 or prefix.count(b"{") != 1:
        return None
    start = at + len(key)
    while line[start] == 0x20:
        start += 1
    if line[start] != 0x22 or start >= end - 2:  # an opening quote before the closing one
        return None
    body = line[start + 1 : end - 2]
    if len(body.translate(None, CONTROL)) != len(body):  # raw control characters: invalid
        return None
    if b"\\" in body:
        # Pair the backslashes left to right as JSON does; then each one left escapes the next
        # byte, which must be one of " b f n r t (\/ and \u go to the parser), and every quote
        # must be escaped (else the text ends earlier: not the simple form).
        pairs = body.replace(b"\\\\", b"..")
        if BAD_ESCAPE.search(pairs) or pairs.endswith(b"\\"):
            return None
        if pairs.count(b'"') != pairs.count(b'\\"'):
            return None
        body = codecs.escape_decode(body)[0]
    elif b'"' in body:
        return None
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:  # the rest of the record must be valid JSON too, as the library would check
        head = json.loads(prefix + key + b'""}')
    except ValueError:
        return None
    if not isinstance(head, dict):
        return None
    return body


class PrefilterScan(PipelineStep):
    """CorpusReader + SkillTagger + SkillFrequencyStats in one step; misses take a short cut."""

    name = "skillmix prefilter scan (prototype)"
    type = "📖 - READER"

    def __init__(
        self, reader: CorpusReader, tagger: SkillTagger, stats: SkillFrequencyStats, variant: str
    ):
        super().__init__()
        if reader.format != "jsonl" or variant not in ("raw", "orjson"):
            raise ValueError("prototype: jsonl only, variant raw or orjson")
        self.reader, self.tagger, self.counter, self.variant = reader, tagger, stats, variant

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        reader, stats = self.reader, self.counter
        matcher = SkillMatcher(self.tagger.skills)
        sets = [s for s in (matcher._regex_set, matcher._keyword_set) if s is not None]
        key = orjson.dumps(reader.text_key) + b":"
        state = _RankState(reader.state_dir, rank, reader.cancel_file, reader.flush_interval)
        files: dict[str, list[int]] = {}
        skills = {sid: SkillCounts() for sid in stats.skill_ids}
        units = 0
        raw = self.variant == "raw"
        for path in reader.files[rank::world_size]:
            totals = files.setdefault(path, [0, 0])
            lines = 0
            with open(path, "rb") as f:
                for index, line in enumerate(f):
                    lines = index + 1
                    state.tick(units + lines)
                    if raw:
                        body = text_bytes(line, key)
                        text = None
                    else:
                        body = None
                        try:
                            record = orjson.loads(line)
                        except orjson.JSONDecodeError:
                            record = None
                        text = record.get(reader.text_key) if isinstance(record, dict) else None
                        if isinstance(text, str):
                            try:
                                body = text.encode("utf-8")
                            except UnicodeEncodeError:
                                body = None
                    if body is not None and not any(s.Match(body) for s in sets):
                        totals[0] += 1  # a miss: its length and a count
                        totals[1] += len(body)
                        state.data["docs"] += 1
                        continue
                    if not line.strip():
                        continue
                    # the library's own path (hits, and anything unusual)
                    where = f"line {index + 1}"
                    try:
                        parsed = _from_dict(
                            json.loads(line), index, where, reader.text_key, reader.id_key, path
                        )
                    except ValueError as e:
                        parsed = BadRecord(index, where, f"invalid JSON ({e})")
                    if isinstance(parsed, BadRecord):
                        if reader.on_bad_record == "fail":
                            raise ScanInputError(
                                f"{path} {parsed.where}: {parsed.reason}", path, parsed.index
                            )
                        state.bad(path, parsed)
                        continue
                    doc = Document(
                        text=parsed.text,
                        id=parsed.doc_id,
                        metadata={"file_path": path, "row": parsed.index},
                    )
                    state.data["docs"] += 1
                    found = matcher.find(doc.text)
                    doc.metadata[self.tagger.metadata_key] = {
                        sid: {
                            "count": len(m),
                            "spans": [[x.start, x.end] for x in m],
                            "keys": [x.key for x in m],
                        }
                        for sid, m in found.items()
                    }
                    stats._count(doc, path, totals[1], skills)
                    totals[0] += 1
                    totals[1] += byte_len(doc.text)
            units += lines
        state.data["units_done"] = units
        state.data["finished"] = True
        state.flush()
        stats._write(rank, world_size, files, skills)
        yield from ()


def prototype_pipeline(pipeline: list, variant: str) -> list:
    """run_scan's [CorpusReader, SkillTagger, SkillFrequencyStats] as one PrefilterScan."""
    reader, tagger, stats = pipeline
    return [PrefilterScan(reader, tagger, stats, variant)]
