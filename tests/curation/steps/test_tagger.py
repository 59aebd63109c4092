"""SkillTagger inside a plain user datatrove pipeline gives back exactly what was planted."""

import gzip
import json
import random
from pathlib import Path

from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from curation.skills.instance import match_key
from curation.skills.probes import sample_instances
from curation.skills.spec import SkillSpec
from curation.steps.tagger import SkillTagger

SKILLS = [
    {
        "id": "cmp",
        "name": "comparison",
        "detector": {"kind": "builtin"},
        "generator": {"family": "number_comparison"},
    },
    {
        "id": "date",
        "name": "dates",
        "detector": {"kind": "regex", "pattern": r"\b\d{4}-\d{2}-\d{2}\b"},
    },
    {
        "id": "names",
        "name": "people",
        "detector": {"kind": "keywords", "keywords": ["Ada Lovelace", "Alan Turing"]},
    },
]
FILLER = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "numbers",
    "like",
    "12",
    "and",
    "7",
    "pass",
    "by",
    "in",
    "the",
    "night",
    "and",
    "nobody",
    "compares",
    "them",
]


def make_corpus(root: Path, docs: int = 60, seed: int = 0) -> dict[str, dict]:
    """JSONL files with planted instances; returns the expected metadata per doc id."""
    rng = random.Random(seed)
    plants = {
        "cmp": [i.text for i in sample_instances(SkillSpec.model_validate(SKILLS[0]), 40, seed=1)],
        "date": ["2023-05-17", "1999-12-31", "2024-02-29"],
        "names": ["Ada Lovelace", "alan turing", "ALAN TURING"],
    }
    expected = {}
    for file_index in range(3):
        with open(root / f"part-{file_index}.jsonl", "w") as f:
            for n in range(docs // 3):
                doc_id = f"{file_index}-{n}"
                text, tags = "", {}
                for _ in range(rng.randint(5, 40)):
                    if rng.random() < 0.08:
                        skill_id = rng.choice(sorted(plants))
                        instance = rng.choice(plants[skill_id])
                        text += " " if text else ""
                        tag = tags.setdefault(skill_id, {"count": 0, "spans": [], "keys": []})
                        tag["count"] += 1
                        tag["spans"].append([len(text), len(text) + len(instance)])
                        tag["keys"].append(match_key(instance))
                        text += instance
                    else:
                        text += (" " if text else "") + rng.choice(FILLER)
                expected[doc_id] = tags
                f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    return expected


def test_tagger_in_a_user_pipeline_returns_exactly_what_was_planted(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    expected = make_corpus(data)
    assert sum(1 for tags in expected.values() if tags) > 20
    pipeline = [JsonlReader(str(data)), SkillTagger(skills=SKILLS), JsonlWriter(str(out))]
    LocalPipelineExecutor(pipeline=pipeline, tasks=2, logging_dir=str(tmp_path / "logs")).run()
    written = {}
    for path in sorted(out.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            for line in f:
                row = json.loads(line)
                written[row["id"]] = row["metadata"]["skills"]
    assert written == expected
    assert len(list(out.glob("*.jsonl.gz"))) == 2  # one file per task


def test_tagger_step_directly_with_stats():
    tagger = SkillTagger(skills=[SkillSpec.model_validate(s) for s in SKILLS])
    docs = [
        Document(text="cmp 10 20 : < and cmp 30 20 : > on 2020-01-01", id="a"),
        Document(text="nothing here", id="b"),
    ]
    tagged = list(tagger.run(iter(docs)))
    assert tagged[0].metadata["skills"]["cmp"]["count"] == 2
    assert tagged[0].metadata["skills"]["date"]["spans"] == [[35, 45]]
    assert tagged[1].metadata["skills"] == {}
    stats = tagger.stats.to_dict()["stats"]
    assert stats["skill/cmp"]["total"] == 2 and stats["docs_with_skills"] == 1
