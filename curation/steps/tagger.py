"""`SkillTagger`: a datatrove step that records which skills each document contains."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import MetricStats

from curation.skills.matcher import SkillMatcher
from curation.skills.spec import SkillSpec


class SkillTagger(PipelineStep):
    """Adds `doc.metadata[metadata_key]`: per skill found, its count, spans and match keys.

    ```
    {"<skill_id>": {"count": 2, "spans": [[s, e], [s, e]], "keys": ["<match key>", ...]}}
    ```
    Only skills with at least one match appear; a document without any gets `{}`.
    Spans are character offsets into `doc.text`. Counters per skill
    (`skill/<id>`: instances, one update per matching document) go to the stats.

    Args:
        skills: skill specs, or their dicts (validated here, so a bad definition
            fails when the pipeline is built rather than inside a worker).
        metadata_key: where the result goes in each document's metadata.
    """

    name = "🏷 SkillTagger"
    type = "🔢 - TAGGER"
    # No `_requires_dependencies`: both are dependencies of this package and imported above,
    # and datatrove's check reads every installed distribution's metadata (~0.2 s) in the
    # parent and again in each worker.

    def __init__(self, skills: Sequence[SkillSpec | dict[str, Any]], metadata_key: str = "skills"):
        super().__init__()
        self.skills = [
            skill if isinstance(skill, SkillSpec) else SkillSpec.model_validate(skill)
            for skill in skills
        ]
        self.metadata_key = metadata_key
        self._matcher: SkillMatcher | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Compiled automata do not travel to workers; each builds its own.
        return {**self.__dict__, "_matcher": None}

    @property
    def matcher(self) -> SkillMatcher:
        if self._matcher is None:
            self._matcher = SkillMatcher(self.skills)
        return self._matcher

    def may_match(self, data: bytes) -> bool:
        """False if the text whose UTF-8 is `data` has no skill: a prefilter for CorpusReader."""
        return self.matcher.may_match(data)

    def may_match_line(self, line: bytes) -> bool | None:
        """False if no string of the JSON line `line` has a skill: CorpusReader's line screen
        (None: no screen to ask, every line passes; see `SkillMatcher.may_match_line`)."""
        return self.matcher.may_match_line(line)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        matcher = self.matcher
        # Each skill's stat, looked up once (on its first match, so a skill never seen has
        # none): where most documents hit, `stat_update` per skill and document, formatting
        # its label each time, was a few percent of a scan.
        per_skill: dict[str, MetricStats] = {}
        for doc in data:
            with self.track_time():
                found = matcher.find_keyed(doc.text)
                doc.metadata[self.metadata_key] = {
                    skill_id: {
                        "count": len(spans),
                        "spans": [[start, end] for start, end in spans],
                        "keys": keys,
                    }
                    for skill_id, (spans, keys) in found.items()
                }
                if found:
                    self.stat_update("docs_with_skills")
                    for skill_id, (spans, _) in found.items():
                        stat = per_skill.get(skill_id)
                        if stat is None:
                            stat = per_skill[skill_id] = self.stats[f"skill/{skill_id}"]
                        stat.update(len(spans))
            yield doc
