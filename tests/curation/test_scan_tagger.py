"""The scan through the real SkillTagger (regex and keyword detectors) on a planted corpus."""

import pytest

from curation import stats
from curation.corpus import CorpusSource
from curation.scan import run_scan
from curation.skills.instance import match_key
from curation.skills.spec import SkillSpec
from curation.synthetic_corpus import generate_corpus
from tests.curation.scan_support import ACCENT, CMP, MODADD, PLANTS

SKILLS = [
    {
        "id": "cmp",
        "name": "comparison",
        "detector": {"kind": "regex", "pattern": r"cmp \d\d \d\d : [<>]"},
    },
    {"id": "modadd", "name": "mod add", "detector": {"kind": "keywords", "keywords": list(MODADD)}},
    {"id": "accent", "name": "accent", "detector": {"kind": "keywords", "keywords": list(ACCENT)}},
    {
        "id": "absent",
        "name": "absent",
        "detector": {"kind": "regex", "pattern": r"never-planted-\d+"},
    },
]


@pytest.mark.parametrize("fmt", ["jsonl.gz", "hf_disk"])
def test_real_tagger_counts_what_was_planted(tmp_path, fmt):
    corpus = generate_corpus(
        str(tmp_path / "data"), 300, PLANTS, seed=3, format=fmt, n_files=5, mean_chars=800
    )
    truth = corpus.truth
    specs = [SkillSpec.model_validate(s) for s in SKILLS]
    probes = {"cmp": {match_key(CMP[0]), match_key(CMP[5])}}
    report = run_scan(
        CorpusSource(corpus.uri, fmt),
        specs,
        str(tmp_path / "work"),
        allowed_roots=[str(tmp_path)],
        tasks=3,
        batch_tokens=8192,
        probe_keys=probes,
        plots=False,
    )
    assert list(report["skills"]) == ["cmp", "modadd", "accent", "absent"]
    for sid in ("cmp", "modadd", "accent"):
        got, want = report["skills"][sid], truth["skills"][sid]
        for key in ("instances", "matched_docs", "unique_instances", "max_repeats"):
            assert got[key] == want[key], (sid, key)
        assert got["token_fraction"] == want["instance_bytes"] / truth["bytes"]
        assert (got["gap_tokens"], got["gap_batches"]) == stats.gap_stats(want["positions"], 8192)
    planted_probes = sum(1 for i in truth["instances"] if i["text"] in (CMP[0], CMP[5]))
    assert report["skills"]["cmp"]["probe_collisions"] == planted_probes > 0
    assert report["skills"]["absent"]["instances"] == 0
