"""What a skill does on a given text, and what its generator makes: for a preview endpoint."""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any

from curation.skills.instance import canonical_key
from curation.skills.matcher import SkillMatcher
from curation.skills.probes import SkillGenerator
from curation.skills.spec import BuiltinDetector, SkillSpec

MAX_PREVIEW_SAMPLES = 100
MAX_PREVIEW_MATCHES = 100


def preview(spec: SkillSpec, text: str = "", samples: int = 5, seed: int = 0) -> dict[str, Any]:
    """Matches of the skill in `text`, plus `samples` train and probe instances.

    Each match has `start`, `end` (character offsets), `text` and `key` (the
    match key). With a builtin detector a match also has the `prompt` and
    `answer` it parses into, and `probe`: whether that instance is held out.
    `matches` are the first MAX_PREVIEW_MATCHES of a scan's, found with work bounded
    by them (see `SkillMatcher.first_matches`); `matches_truncated` says more may follow.
    Without a generator, `instances` and `probe_instances` are empty.
    """
    samples = max(0, min(samples, MAX_PREVIEW_SAMPLES))
    generator = SkillGenerator(spec) if spec.generator is not None else None
    parse = (
        spec.family.parse if spec.family and isinstance(spec.detector, BuiltinDetector) else None
    )
    matches = []
    first, complete = SkillMatcher([spec]).first_matches(text, spec.id, MAX_PREVIEW_MATCHES)
    for match in first:
        found: dict[str, Any] = {"start": match.start, "end": match.end, "key": match.key}
        found["text"] = text[match.start : match.end]
        parsed = parse(found["text"]) if parse else None
        if parsed is not None and generator is not None:
            prompt, answer = parsed
            probe = generator.split_of(canonical_key(prompt, answer)) == "probe"
            found |= {"prompt": prompt, "answer": answer, "probe": probe}
        matches.append(found)
    result = {"matches": matches, "matches_truncated": not complete}
    if generator is None:
        return result | {"instances": [], "probe_instances": []}
    return result | {
        "instances": [asdict(i) for i in generator.sample(random.Random(seed), samples)],
        "probe_instances": [asdict(i) for i in generator.probe_instances(samples)],
    }
