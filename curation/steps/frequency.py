"""SkillFrequencyStats: per-rank counts and positions of tagged skill instances.

The step consumes documents tagged by SkillTagger (`doc.metadata["skills"]`)
and, when its input ends, writes one JSON partial per rank (`{rank:05d}.json`,
written to a temporary name and renamed). `merge_partials` in
`curation.scan_report` turns the partials into the frequency report.

Positions are recorded per source file, as byte offsets from the start of that
file's text (documents in reading order), because with several tasks each rank
reads a subset of files: the merge knows the corpus file order and each file's
length and adds the offsets. They are kept in `array('q')` (8 bytes each) and
stored as base64 of little-endian int64, not as JSON lists, so a dense corpus
stays small in memory and on disk.

For the rate interval's dispersion (curation.stats.cluster_dispersion) each file
also carries integer sums over its documents: `bytes_sq` (document bytes squared,
all documents) and per skill `instances_sq` (instances per document, squared) and
`instances_x_bytes` (instances times document bytes). Documents are not kept, yet
the merge gets the document-level dispersion exactly, in any order of ranks.
"""

from __future__ import annotations

import base64
import contextlib
import json
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep

from curation.atomic import naming_full_disk, temp_path
from curation.sources.reader import SKIPPED
from curation.text import byte_len, char_to_byte_offsets

PARTIAL_FORMAT = "skillmix.frequency.partial/2"


def encode_positions(values: array) -> str:
    return base64.b64encode(np.asarray(values, dtype="<i8").tobytes()).decode("ascii")


def decode_positions(data: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype="<i8").astype(np.int64)


@dataclass
class SkillFileCounts:
    """One skill in one source file: counts and rank-local positions (bytes into the file)."""

    matched_docs: int = 0
    instances: int = 0
    instance_bytes: int = 0
    probe_collisions: int = 0
    instances_sq: int = 0  # sum over documents of instances^2
    instances_x_bytes: int = 0  # sum over documents of instances * document bytes
    positions: array = field(default_factory=lambda: array("q"))


@dataclass
class SkillCounts:
    """One skill on one rank: keys counted per unique instance, counts per file."""

    keys: Counter = field(default_factory=Counter)
    files: dict[str, SkillFileCounts] = field(default_factory=dict)


class SkillFrequencyStats(PipelineStep):
    """Counts skill instances per file and writes `{rank:05d}.json` to `output_folder`.

    skill_ids: skills to report even with zero matches.
    probe_keys: per skill, the probe match keys; corpus instances with such a
        key are counted as probe collisions.
    """

    name = "skill frequency"
    type = "📊 - STATS"

    def __init__(
        self,
        output_folder: DataFolderLike,
        skill_ids: Iterable[str] = (),
        probe_keys: Mapping[str, Iterable[str]] | None = None,
    ):
        super().__init__()
        self.output_folder = get_datafolder(output_folder)
        self.skill_ids = list(skill_ids)
        self.probe_keys = {sid: frozenset(keys) for sid, keys in (probe_keys or {}).items()}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        files: dict[str, list[int]] = {}  # path -> [docs, bytes, sum of bytes^2 per doc]
        skills: dict[str, SkillCounts] = {sid: SkillCounts() for sid in self.skill_ids}
        for doc in data or ():
            path = str(doc.metadata.get("file_path", ""))
            file_totals = files.setdefault(path, [0, 0, 0])
            skipped = doc.metadata.get(SKIPPED)
            if skipped is not None:  # a summary of documents the reader left out: no skills
                file_totals[0] += skipped["docs"]
                file_totals[1] += skipped["bytes"]
                file_totals[2] += skipped["bytes_sq"]
                continue
            doc_bytes = byte_len(doc.text)
            self._count(doc, path, file_totals[1], doc_bytes, skills)
            file_totals[0] += 1
            file_totals[1] += doc_bytes
            file_totals[2] += doc_bytes**2
            self.stat_update("documents")
            yield doc
        # One stat per skill and rank, not per document: the tagger's `skill/<id>` already
        # has the per-document figures, and an update per skill and document cost ~5% of a
        # scan where most documents hit.
        for sid, counts in skills.items():
            instances = sum(c.instances for c in counts.files.values())
            if instances:
                self.stat_update(f"instances_{sid}", value=instances, unit="rank")
        self._write(rank, world_size, files, skills)

    def _count(
        self,
        doc: Document,
        path: str,
        file_offset: int,
        doc_bytes: int,
        skills: dict[str, SkillCounts],
    ) -> None:
        tagged = doc.metadata.get("skills")
        if not tagged:
            return
        # Spans are character offsets; in an ASCII text (most) they are byte offsets already.
        to_bytes = None
        if not doc.text.isascii():
            ends = (o for m in tagged.values() for span in m.get("spans", []) for o in span)
            to_bytes = char_to_byte_offsets(doc.text, ends)
        for sid, match in tagged.items():
            spans, keys = match.get("spans", []), match.get("keys", [])
            if not (match.get("count") == len(spans) == len(keys)):
                raise ValueError(
                    f"document {doc.id}: skill {sid} has count={match.get('count')}, "
                    f"{len(spans)} spans and {len(keys)} keys; the tagger must give one span "
                    "and one key per instance"
                )
            if not spans:
                continue
            counts = skills.get(sid) or skills.setdefault(sid, SkillCounts())
            per_file = counts.files.get(path) or counts.files.setdefault(path, SkillFileCounts())
            n = len(spans)
            per_file.matched_docs += 1
            per_file.instances += n
            per_file.instances_sq += n * n
            per_file.instances_x_bytes += n * doc_bytes
            if to_bytes is None:
                per_file.positions.extend([file_offset + start for start, _ in spans])
                per_file.instance_bytes += sum([end - start for start, end in spans])
            else:
                for start, end in spans:
                    per_file.positions.append(file_offset + to_bytes[start])
                    per_file.instance_bytes += to_bytes[end] - to_bytes[start]
            counts.keys.update(keys)
            probes = self.probe_keys.get(sid)
            if probes:
                per_file.probe_collisions += sum(1 for k in keys if k in probes)

    def _write(
        self,
        rank: int,
        world_size: int,
        files: dict[str, list[int]],
        skills: dict[str, SkillCounts],
    ) -> None:
        partial = {
            "format": PARTIAL_FORMAT,
            "rank": rank,
            "world_size": world_size,
            "docs": sum(d for d, _, _ in files.values()),
            "bytes": sum(b for _, b, _ in files.values()),
            "files": {p: {"docs": d, "bytes": b, "bytes_sq": q} for p, (d, b, q) in files.items()},
            "skills": {
                sid: {
                    "keys": dict(counts.keys),
                    "files": {
                        p: {
                            "matched_docs": c.matched_docs,
                            "instances": c.instances,
                            "instance_bytes": c.instance_bytes,
                            "probe_collisions": c.probe_collisions,
                            "instances_sq": c.instances_sq,
                            "instances_x_bytes": c.instances_x_bytes,
                            "positions": encode_positions(c.positions),
                        }
                        for p, c in counts.files.items()
                    },
                }
                for sid, counts in skills.items()
            },
        }
        name = f"{rank:05d}.json"
        # A temporary name of this writer's own: a stale-lease worker may write the same
        # rank at the same time (see curation.atomic.temp_path).
        tmp = temp_path(name)
        try:
            with (
                naming_full_disk(self.output_folder.resolve_paths(name), what="scan partial"),
                self.output_folder.open(tmp, "w") as f,
            ):
                json.dump(partial, f)
        except BaseException:
            # A full disk (or anything else) leaves no temporary file behind.
            with contextlib.suppress(FileNotFoundError):
                self.output_folder.rm(tmp)
            raise
        self.output_folder.mv(tmp, name)


def read_partials(folder: DataFolderLike) -> list[dict[str, Any]]:
    """All rank partials in `folder`, checked to come from one complete run."""
    df = get_datafolder(folder)
    names = sorted(n for n in df.list_files() if n.endswith(".json") and n[:-5].isdigit())
    partials = []
    for name in names:
        with df.open(name, "r") as f:
            partial = json.load(f)
        found = str(partial.get("format"))
        if found != PARTIAL_FORMAT:
            raise ValueError(
                f"{name} in {df.path} was written by another version ({found}); use a fresh workdir"
                if found.startswith(PARTIAL_FORMAT.rsplit("/", 1)[0])
                else f"{name} in {df.path} is not a frequency partial"
            )
        partials.append(partial)
    if not partials:
        raise ValueError(f"no frequency partials in {df.path}; did the scan run?")
    sizes = {p["world_size"] for p in partials}
    if len(sizes) != 1:
        raise ValueError(
            f"partials in {df.path} come from runs with different task counts {sorted(sizes)}; "
            "use a fresh workdir when changing the number of tasks"
        )
    missing = sorted(set(range(sizes.pop())) - {p["rank"] for p in partials})
    if missing:
        raise ValueError(f"partials in {df.path} are missing ranks {missing}; re-run the scan")
    return partials
