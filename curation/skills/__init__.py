"""Skills: versioned definitions, safe detectors, generators and held-out probes.

The whole public surface, for the service and for notebooks:

- `SkillDefinition` (a request body) and `SkillSpec` (a registered version)
  validate a skill; `definition_digest` names what defines its instances (the
  mixture's placement stream is seeded by it, not by the id); `family_catalog()`
  lists the generator families;
- `SkillMatcher` finds a set of skills in texts; `preview` shows one skill on
  one text with sample instances;
- `sample_instances`, `probe_instances` and `probe_match_keys` give train
  instances, held-out instances, and the match keys that flag probe collisions.
"""

from curation.skills.families import family_catalog
from curation.skills.instance import Instance, canonical_key, match_key
from curation.skills.matcher import Match, SkillMatcher
from curation.skills.preview import preview
from curation.skills.probes import (
    SkillGenerator,
    probe_instances,
    probe_match_keys,
    sample_instances,
)
from curation.skills.spec import (
    GeneratorSpec,
    ProbeSpec,
    SkillDefinition,
    SkillSpec,
    definition_digest,
)

__all__ = [
    "GeneratorSpec",
    "Instance",
    "Match",
    "ProbeSpec",
    "SkillDefinition",
    "SkillGenerator",
    "SkillMatcher",
    "SkillSpec",
    "canonical_key",
    "definition_digest",
    "family_catalog",
    "match_key",
    "preview",
    "probe_instances",
    "probe_match_keys",
    "sample_instances",
]
