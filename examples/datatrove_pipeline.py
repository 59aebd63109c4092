"""skillmix's steps inside your own datatrove pipeline, with no service running.

Reads a JSONL corpus with datatrove's own JsonlReader, tags every document with the skills
it contains (SkillTagger), writes the tagged documents with JsonlWriter, and collects exact
frequency statistics (SkillFrequencyStats), merged into a report at the end.

    python examples/datatrove_pipeline.py [WORKDIR]
"""

from __future__ import annotations

import glob
import json
import sys
import tempfile
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from curation.scan_report import merge_partials
from curation.skills import SkillSpec
from curation.steps.frequency import SkillFrequencyStats
from curation.steps.tagger import SkillTagger
from curation.synthetic_corpus import Plant, generate_corpus

SKILLS = [
    SkillSpec(
        id="compare",
        name="two-digit comparison",
        detector={"kind": "regex", "pattern": r"cmp \d\d \d\d : [<>]"},
    ),
    SkillSpec(
        id="languages",
        name="languages",
        detector={"kind": "keywords", "keywords": ["OCaml", "Haskell"]},
    ),
]


def main(workdir: Path) -> dict:
    corpus_dir = workdir / "corpus"
    # Any JSONL corpus works; this one plants "cmp" instances in every 5th document.
    generate_corpus(
        str(corpus_dir),
        n_docs=200,
        seed=0,
        format="jsonl",
        n_files=2,
        plants=[Plant("compare", ("cmp 12 57 : <", "cmp 80 31 : >"), every=5)],
    )
    files = sorted(glob.glob(str(corpus_dir / "*.jsonl")))
    pipeline = [
        JsonlReader(str(corpus_dir), glob_pattern="*.jsonl"),
        SkillTagger(skills=SKILLS),
        JsonlWriter(str(workdir / "tagged")),
        SkillFrequencyStats(str(workdir / "partials"), skill_ids=[s.id for s in SKILLS]),
    ]
    LocalPipelineExecutor(
        pipeline=pipeline, tasks=2, workers=1, logging_dir=str(workdir / "logs")
    ).run()
    report = merge_partials(
        str(workdir / "partials"), files, batch_tokens=65536, skill_ids=[s.id for s in SKILLS]
    ).to_dict()
    for skill_id, stats in report["skills"].items():
        print(
            f"{skill_id:10s} instances={stats['instances']:4d} "
            f"per_million_tokens={stats['per_million_tokens']:.1f}"
        )
    return report


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(main(target)["skills"]["compare"]["gap_tokens"], indent=2))
