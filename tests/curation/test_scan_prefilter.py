"""The reader's prefilter (SkillTagger.may_match) leaves documents out, and no number changes."""

import json

import pytest

from curation.corpus import CorpusSource
from curation.scan import run_scan
from curation.skills.spec import SkillSpec
from curation.sources.reader import SKIPPED, CorpusReader
from curation.steps.tagger import SkillTagger
from curation.synthetic_corpus import generate_corpus
from tests.curation.scan_support import PLANTS
from tests.curation.test_scan_tagger import SKILLS

SPECS = [SkillSpec.model_validate(s) for s in SKILLS]


class TaggerWithoutPrefilter(SkillTagger):
    may_match = None  # scan_pipeline then gives the reader no prefilter: every document is built


def scan(source, root, workdir, tagger, **kwargs):
    return run_scan(
        source,
        SPECS,
        str(workdir),
        allowed_roots=[str(root)],
        tagger=tagger(SPECS),
        batch_tokens=8192,
        plots=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    return root, {
        f: generate_corpus(str(root / f), 300, PLANTS, seed=4, format=f, n_files=5, mean_chars=800)
        for f in ("jsonl", "jsonl.gz", "parquet", "hf_disk")
    }


@pytest.mark.parametrize(
    "fmt, tasks",
    [("jsonl", 1), ("jsonl", 4), ("jsonl.gz", 4), ("parquet", 4), ("hf_disk", 4)],
)
def test_the_prefilter_changes_no_number(corpora, tmp_path, fmt, tasks):
    root, made = corpora
    source = CorpusSource(made[fmt].uri, fmt)
    with_prefilter = scan(source, root, tmp_path / "on", SkillTagger, tasks=tasks)
    without = scan(source, root, tmp_path / "off", TaggerWithoutPrefilter, tasks=tasks)
    assert with_prefilter == without
    reader_stats = json.loads((tmp_path / "on" / "logs" / "stats.json").read_text())[0]["stats"]
    assert reader_stats["documents_left_out"]["total"] > 100  # 300 documents, most without hits
    truth = made[fmt].truth
    assert with_prefilter["corpus"]["tokens_scanned"] == truth["bytes"]
    for sid in ("cmp", "modadd", "accent"):
        assert with_prefilter["skills"][sid]["instances"] == truth["skills"][sid]["instances"]


def test_unusual_lines_count_the_same(tmp_path):
    rows = [
        {"text": "cmp 12 34 : < then a lone surrogate \ud800"},
        {"text": "no skill, but a lone surrogate \ud800"},
        {"text": "no skill here"},
        '{"id": NaN, "text": "cmp 55 66 : >"}\n',
        "\n",
        {"id": 123456789012345678901234567890, "text": "x 17 + 88 mod 97 = 08 y"},
        {"text": "Naïve café, still no skill"},
    ]
    more = ['{"text": "cut\n', {"text": "cmp 10 20 : <"}]  # a bad line, past validation's sample
    data = tmp_path / "data"
    data.mkdir()
    for name, lines in (("a", rows), ("b", more)):
        text = "".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in lines)
        (data / f"{name}.jsonl").write_text(text)
    source = CorpusSource(f"{data}/*.jsonl", "jsonl", id_key="id")
    kwargs = {"on_bad_record": "skip", "tasks": 1}
    with_prefilter = scan(source, data, tmp_path / "on", SkillTagger, **kwargs)
    without = scan(source, data, tmp_path / "off", TaggerWithoutPrefilter, **kwargs)
    assert with_prefilter == without
    assert with_prefilter["corpus"]["docs_scanned"] == 7
    assert with_prefilter["corpus"]["bad_records"] == 1
    assert [with_prefilter["skills"][s]["instances"] for s in ("cmp", "modadd")] == [3, 1]


def test_the_reader_sums_up_what_it_leaves_out_in_place(tmp_path):
    texts = ["a hit", "no", "nope", "a hit", "é no", "none", "x", "a hit", "last", "miss"]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    reader = CorpusReader([str(path)], "jsonl", prefilter=lambda data: b"hit" in data)
    out = [(doc.text, doc.metadata.get(SKIPPED)) for doc in reader()]
    assert out == [
        ("a hit", None),
        ("", {"docs": 2, "bytes": 6, "bytes_sq": 2**2 + 4**2}),
        ("a hit", None),
        ("", {"docs": 3, "bytes": 5 + 4 + 1, "bytes_sq": 5**2 + 4**2 + 1**2}),
        ("a hit", None),
        ("", {"docs": 2, "bytes": 8, "bytes_sq": 4**2 + 4**2}),
    ]
