"""Pipelines as plain lists of datatrove steps; the caller picks the executor.

A data team can run these lists with any datatrove executor, or take the
steps (CorpusReader, SkillTagger, SkillFrequencyStats) into their own pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from datatrove.pipeline.base import PipelineStep

from curation.corpus import CorpusSource
from curation.sources.reader import BadRecordPolicy, CorpusReader
from curation.steps.frequency import SkillFrequencyStats


def skill_tagger(skills: Sequence[Any]) -> PipelineStep:
    """The SkillTagger step for `skills` (imported here so this module loads without it)."""
    from curation.steps.tagger import SkillTagger

    return SkillTagger(skills=list(skills))


def scan_pipeline(
    source: CorpusSource,
    files: list[str],
    skills: Sequence[Any],
    partials_dir: str,
    skill_ids: Iterable[str] = (),
    probe_keys: Mapping[str, Iterable[str]] | None = None,
    on_bad_record: BadRecordPolicy = "fail",
    state_dir: str | None = None,
    cancel_file: str | None = None,
    tagger: PipelineStep | None = None,
) -> list[PipelineStep]:
    """Reader over `files` -> SkillTagger -> SkillFrequencyStats writing to `partials_dir`.

    files: the corpus files in corpus order (from validate_corpus).
    tagger: a ready tagging step to use instead of SkillTagger(skills).
    Token counting is done by SkillFrequencyStats itself (UTF-8 bytes per
    document), so no separate counting step is needed. A tagger with a
    `may_match(utf8) -> bool` method (SkillTagger has one) becomes the reader's
    prefilter: documents it rules out are only counted, never built. One with a
    `may_match_line(raw_line) -> bool` method too (SkillTagger) screens raw JSONL
    lines before they are parsed for more than their text's length.
    """
    tagger = tagger if tagger is not None else skill_tagger(skills)
    reader = CorpusReader(
        files,
        source.format,
        text_key=source.text_key,
        id_key=source.id_key,
        on_bad_record=on_bad_record,
        state_dir=state_dir,
        cancel_file=cancel_file,
        prefilter=getattr(tagger, "may_match", None),
        line_screen=getattr(tagger, "may_match_line", None),
    )
    return [
        reader,
        tagger,
        SkillFrequencyStats(partials_dir, skill_ids=skill_ids, probe_keys=probe_keys),
    ]
