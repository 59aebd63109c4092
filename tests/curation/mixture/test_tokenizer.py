"""Mixtures in a user's tokenizer: a BPE trained here on the test corpus (saved, then loaded
by path like a data team's file), a uint32 vocabulary, and byte mixtures left unchanged."""

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from curation.corpus import CorpusSource
from curation.mixture import DosingPlan, PlanError, build_mixture, plan_mixture
from curation.mixture.tokenizer import TokenizerError, TokenizerSpec, load_hf, load_tokenizer
from curation.scan import run_scan
from curation.skills.probes import sample_instances
from curation.skills.spec import SkillSpec
from curation.synthetic_corpus import Plant, generate_corpus
from curation.synthetic_tokenizer import train_bpe, wide_byte_tokenizer

BATCH, SEQ = 2048, 64
CMP = SkillSpec.model_validate(
    {"id": "cmp", "name": "comparison", "detector": {"kind": "builtin"},
     "generator": {"family": "number_comparison"}}
)  # fmt: skip
TP = SkillSpec.model_validate(
    {"id": "tp", "name": "token pairs", "detector": {"kind": "builtin"},
     "generator": {"family": "token_pair", "params": {"k": 20}}}
)  # fmt: skip
SKILLS = [CMP, TP]


def corpus_texts(uri: str) -> list[str]:
    texts = []
    for path in sorted(Path(uri).parent.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            texts += [json.loads(line)["text"] for line in f]
    return texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tok"))
    texts = tuple(i.text for i in sample_instances(CMP, 12, seed=5))
    made = generate_corpus(
        f"{root}/corpus", 400, [Plant("cmp", texts, every=4)], seed=1, format="jsonl.gz",
        n_files=2, mean_chars=300,
    )  # fmt: skip
    source = CorpusSource(made.uri, made.format, id_key="id")
    bpe = train_bpe(corpus_texts(made.uri), 600, f"{root}/tokenizers/bpe")
    return root, source, bpe


def scan(corpus, name, tokens="bytes"):
    root, source, _ = corpus
    return run_scan(
        source, SKILLS, f"{root}/{name}", allowed_roots=[root], batch_tokens=BATCH,
        plots=False, tokens=tokens,
    )  # fmt: skip


def build(corpus, report, name, tokenizer, max_batches=None, **doses):
    root, source, _ = corpus
    dosing = DosingPlan(
        batch_tokens=BATCH, seq_len=SEQ, seed=0, skills=doses, tokenizer=tokenizer,
        max_batches=max_batches,
    )  # fmt: skip
    plan = plan_mixture(report, SKILLS, dosing)
    out = f"{root}/{name}"
    return out, build_mixture(source, SKILLS, plan, out, allowed_roots=[root], plots=False)


def tokens_of(out, manifest):
    dtype = {"uint16": "<u2", "uint32": "<u4"}[manifest["token_dtype"]]
    return np.concatenate(
        [np.fromfile(f"{out}/{s['path']}", dtype=dtype) for s in manifest["shards"]
         if s["kind"] == "tokens"]
    )  # fmt: skip


def jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_a_bpe_mixture_passes_its_audit_with_every_placement_starting_a_sequence(corpus):
    root, _, bpe = corpus
    report = scan(corpus, "scan-bpe", tokens=bpe)
    assert (
        report["corpus"]["token_unit"]["sha256"]
        == hashlib.sha256(Path(bpe).read_bytes()).hexdigest()
    )
    out, result = build(
        corpus, report, "bpe", {"kind": "hf", "path": bpe},
        tp={"target": {"per_batch": 3}},
        cmp={"target": {"every": {"n": 1, "k": 2}}, "source": "repeat", "max_repeats": 8},
    )  # fmt: skip
    manifest, audit = result["manifest"], result["audit"]
    tok = load_hf(bpe)
    assert manifest["tokenizer"] == {
        "kind": "hf", "vocab_size": tok.vocab_size, "eos": tok.eos, "eos_token": "<|endoftext|>",
        "file": "tokenizer.json", "sha256": tok.sha256, "name": "tokenizer.json",
    }  # fmt: skip
    assert manifest["token_dtype"] == "uint16"
    assert Path(f"{out}/tokenizer.json").read_bytes() == Path(bpe).read_bytes()
    assert audit["passed"], audit
    tokens = tokens_of(out, manifest)
    assert tokens.size == manifest["tokens"] and tokens.max() < tok.vocab_size
    instances = {(r["skill_id"], r["key"]): r["text"] for r in jsonl(f"{out}/instances.jsonl")}
    assert manifest["plan"]["skills"]["cmp"]["source"] == "repeat"
    rows = jsonl(f"{out}/composition.jsonl")
    for sid in ("cmp", "tp"):
        placed = [row["skills"].get(sid, {"count": 0})["count"] for row in rows]
        planned = [row["skills"].get(sid, {"planned": 0})["planned"] for row in rows]
        assert placed == planned and sum(placed) == manifest["plan"]["skills"][sid]["placements"]
        skill_audit = audit["skills"][sid]
        assert skill_audit["placed"]["placements"] == sum(planned)
        assert skill_audit["schedule"]["batches_off"] == 0
        for row in rows if sid == "tp" else ():  # a synthesized instance: its own tokens, EOS
            entry = row["skills"].get(sid)
            for key, seq in zip(entry["keys"], entry["sequences"], strict=True) if entry else ():
                want = [*tok.encode(instances[(sid, key)]), tok.eos]
                assert tokens[seq * SEQ : seq * SEQ + len(want)].tolist() == want
    # The text records concatenate back to the token stream's documents.
    with gzip.open(f"{out}/shard-00000.jsonl.gz", "rt") as f:
        records = [json.loads(line) for line in f]
    assert all(r["eos"] in (0, 1) for r in records)  # a token cut never needs padding
    assert tok.decode(tokens[: SEQ * 4]).startswith(records[0]["text"][:20])


def test_planning_an_hf_mixture_needs_a_scan_in_the_same_tokenizer(corpus):
    root, _, bpe = corpus
    report = scan(corpus, "scan-bytes")
    with pytest.raises(PlanError, match="scan the corpus with the same tokenizer"):
        plan_mixture(
            report, SKILLS,
            DosingPlan(batch_tokens=BATCH, seq_len=SEQ, tokenizer={"kind": "hf", "path": bpe},
                       skills={"cmp": {"target": {"per_batch": 2}}}),
        )  # fmt: skip


def test_a_tokenizer_without_eos_is_refused_unless_one_is_named(tmp_path):
    file = train_bpe(["abc def"] * 20, 280, str(tmp_path / "t"), eos_token=None)
    with pytest.raises(TokenizerError, match="no end-of-document token"):
        load_tokenizer({"kind": "hf", "path": file})
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        load_tokenizer({"kind": "hf", "path": file, "eos_token": "</s>"})
    assert load_tokenizer({"kind": "hf", "path": str(tmp_path / "t"), "eos_token": "c"}).eos >= 0
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer({"kind": "hf", "path": str(tmp_path / "missing.json")})
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(TokenizerError, match="not a tokenizers tokenizer.json"):
        load_tokenizer({"kind": "hf", "path": str(tmp_path / "bad.json")})
    with pytest.raises(ValueError, match="needs a path"):
        TokenizerSpec(kind="hf")


def test_a_vocabulary_over_65536_writes_uint32_shards(corpus):
    root, _, _ = corpus
    wide = wide_byte_tokenizer(f"{root}/tokenizers/wide")
    report = scan(corpus, "scan-wide", tokens=wide)
    out, result = build(
        corpus,
        report,
        "wide",
        {"kind": "hf", "path": wide},
        max_batches=8,
        cmp={"target": {"per_batch": 2}},
    )
    manifest = result["manifest"]
    assert manifest["token_dtype"] == "uint32" and manifest["tokenizer"]["vocab_size"] > 65536
    assert result["audit"]["passed"], result["audit"]
    tokens = tokens_of(out, manifest)
    assert Path(f"{out}/tokens-00000.bin").stat().st_size == 4 * manifest["tokens"]
    assert tokens.min() >= 70_000 and tokens.max() == manifest["tokenizer"]["eos"]


GOLDEN = {  # a byte-level build made before tokenizers existed (commit 4667714)
    "composition.jsonl": "087e48e230223eec05a887257e9df818d70d46a9510f20888002e81268235c80",
    "instances.jsonl": "6a5cc522ae3d4f39d06c812c7dfc24032fe02d2ba7d6f2dcadda1d62639dd115",
    "shard-00000.jsonl.gz": "5d870a688c9eed456fb1b3038f1f08398944174bed1f6a807711a661b71a100b",
    "tokens-00000.bin": "1a58c09c1a9afb8d4f63351eae123bcf3b2e102e55fd839b05646be153013616",
}


def test_byte_mixtures_are_byte_identical_to_before(tmp_path):
    root = str(tmp_path)
    texts = tuple(i.text for i in sample_instances(CMP, 12, seed=5))
    made = generate_corpus(
        f"{root}/corpus", 300, [Plant("cmp", texts, every=4)], seed=1, format="jsonl.gz",
        n_files=2, mean_chars=300,
    )  # fmt: skip
    source = CorpusSource(made.uri, made.format, id_key="id")
    report = run_scan(
        source, [CMP], f"{root}/scan", allowed_roots=[root], batch_tokens=2048, plots=False
    )
    dosing = DosingPlan(
        batch_tokens=2048, seq_len=64, seed=3, skills={"cmp": {"target": {"per_batch": 3}}}
    )
    plan = plan_mixture(report, [CMP], dosing)
    out = f"{root}/m"
    result = build_mixture(source, [CMP], plan, out, allowed_roots=[root], audit=False)
    got = {n: hashlib.sha256(Path(f"{out}/{n}").read_bytes()).hexdigest() for n in GOLDEN}
    assert got == GOLDEN
    manifest = result["manifest"]
    assert manifest["tokenizer"] == {"kind": "bytes", "vocab_size": 257, "eos": 256}
    assert manifest["token_dtype"] == "uint16" and "tokenizer" not in manifest["plan"]


def test_an_interrupted_bpe_build_resumes_byte_identical(corpus):
    root, source, bpe = corpus
    report = scan(corpus, "scan-bpe-resume", tokens=bpe)
    dosing = DosingPlan(
        batch_tokens=BATCH, seq_len=SEQ, tokenizer={"kind": "hf", "path": bpe},
        skills={"tp": {"target": {"per_batch": 2}}},
    )  # fmt: skip
    plan = plan_mixture(report, SKILLS, dosing)

    class Killed(Exception):
        pass

    def kill_after_second_shard(fraction, message):
        if message.startswith("wrote shard 2 "):
            raise Killed

    def run(out, progress=None):
        return build_mixture(
            source, SKILLS, plan, out, allowed_roots=[root], shard_batches=4, progress=progress,
            plots=False,
        )  # fmt: skip

    whole, cut = f"{root}/bpe-whole", f"{root}/bpe-cut"
    run(whole)
    with pytest.raises(Killed):
        run(cut, kill_after_second_shard)
    assert run(cut)["audit"]["passed"]
    files = sorted(p.name for p in Path(whole).iterdir() if p.suffix in (".bin", ".gz", ".jsonl"))
    assert len(files) > 4
    for name in files:
        assert Path(f"{cut}/{name}").read_bytes() == Path(f"{whole}/{name}").read_bytes(), name
