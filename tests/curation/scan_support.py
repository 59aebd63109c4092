"""Test helpers for scans: a stand-in tagger and a planted corpus.

MarkerTagger writes exactly the SkillTagger metadata contract
(doc.metadata["skills"] = {skill_id: {"count", "spans", "keys"}}) for literal
instance texts, so the scan can be tested without the real detectors.
"""

from __future__ import annotations

import hashlib
import re

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.synthetic_corpus import Plant

CMP = tuple(
    f"cmp {a:02d} {b:02d} : {'<' if a < b else '>'}"
    for a, b in zip(range(10, 40), range(70, 40, -1), strict=True)
)
MODADD = tuple(
    f"{a:02d} + {b:02d} mod 97 = {(a + b) % 97:02d}" for a, b in [(17, 88), (23, 45), (61, 70)]
)
ACCENT = ("café ≥ crème 7",)
PLANTS = [
    Plant("cmp", CMP, every=3, offset=1),
    Plant("modadd", MODADD, docs=(0, 5, 6, 77, 150, 151, 299), per_doc=2, where="start"),
    Plant("accent", ACCENT, every=13, offset=6, where="end"),
    Plant("rare", ("zq-rare-skill-17",), docs=(42,)),
]
SKILL_IDS = ["cmp", "modadd", "accent", "rare", "absent"]
PATTERNS = {p.skill_id: list(p.texts) for p in PLANTS} | {"absent": ["never-planted-text"]}


def match_key(text: str) -> str:
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()[:16]


class MarkerTagger(PipelineStep):
    """Finds literal instance texts per skill and tags documents like SkillTagger."""

    name = "marker tagger"
    type = "🏷 - TAGGER"

    def __init__(self, patterns: dict[str, list[str]]):
        super().__init__()
        self.patterns = {
            sid: re.compile("|".join(map(re.escape, texts))) for sid, texts in patterns.items()
        }

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            found = {}
            for sid, pattern in self.patterns.items():
                spans = [[m.start(), m.end()] for m in pattern.finditer(doc.text)]
                if spans:
                    keys = [match_key(doc.text[s:e]) for s, e in spans]
                    found[sid] = {"count": len(spans), "spans": spans, "keys": keys}
            doc.metadata["skills"] = found
            yield doc
