"""The output contract: token shards the trainer reads, text shards that load with `datasets`."""

import json
from glob import glob
from pathlib import Path

import numpy as np
import pytest

from curation.mixture.format import EOS
from tests.curation.mixture.test_build import BATCH, SEQ, build, jsonl, scanned  # noqa: F401

DOSES = {
    "tp": {"target": {"per_batch": 3}},
    "cmp": {"target": {"every": {"n": 4, "k": 5}}, "source": "repeat", "max_repeats": 8},
}


@pytest.mark.parametrize(("fmt", "loader"), [("jsonl.gz", "json"), ("parquet", "parquet")])
def test_text_shards_load_with_datasets_in_batch_order_and_match_the_tokens(
    scanned,  # noqa: F811
    tmp_path,
    fmt,
    loader,
):
    import datasets

    datasets.disable_progress_bars()
    out, result = build(scanned, f"hf-{fmt.replace('.', '-')}", text_format=fmt, **DOSES)
    manifest = result["manifest"]
    files = sorted(glob(f"{out}/shard-*.{fmt}"))
    rows = datasets.load_dataset(loader, data_files=files, split="train", cache_dir=str(tmp_path))
    assert rows.num_rows == sum(s["documents"] for s in manifest["shards"] if s["kind"] == "text")
    assert set(rows.column_names) == {"text", "id", "source", "batch", "eos", "skill_id"}
    batches = rows["batch"]
    assert batches == sorted(batches) and batches[-1] == manifest["n_batches"] - 1
    placed = [r for r in rows if r["source"] != "corpus"]
    assert {r["source"] for r in placed} == {"synthesize", "repeat"}
    assert {r["skill_id"] for r in placed} == {"tp", "cmp"}
    stream = []
    for text, eos in zip(rows["text"], rows["eos"], strict=True):
        stream += [*text.encode(), *[EOS] * eos]
    tokens = np.concatenate(
        [np.fromfile(f"{out}/{s['path']}", dtype="<u2") for s in manifest["shards"]
         if s["kind"] == "tokens"]
    )  # fmt: skip
    assert tokens.size == manifest["n_sequences"] * SEQ == manifest["tokens"]
    assert stream[: tokens.size] == tokens.tolist()  # the last record may run past the end
    assert tokens.max() == EOS


def test_manifest_fields_of_the_contract(scanned):  # noqa: F811
    out, result = build(scanned, "manifest", **DOSES)
    manifest = json.loads(Path(f"{out}/manifest.json").read_text())
    assert manifest == result["manifest"]
    assert manifest["tokenizer"] == {"kind": "bytes", "vocab_size": 257, "eos": 256}
    assert (manifest["batch_tokens"], manifest["seq_len"]) == (BATCH, SEQ)
    assert manifest["seqs_per_batch"] * manifest["n_batches"] == manifest["n_sequences"]
    assert manifest["corpus"]["fingerprint"]["digest"]
    assert manifest["skills"]["tp"]["spec"]["generator"]["family"] == "token_pair"
    assert manifest["plan"]["skills"]["cmp"]["source"] == "repeat"
    kinds = [s["kind"] for s in manifest["shards"]]
    assert kinds == ["tokens", "text"] and all(len(s["sha256"]) == 64 for s in manifest["shards"])
    totals = manifest["totals"]
    assert (
        totals["corpus_tokens_used"] + totals["inserted_tokens"] + totals["padding_tokens"]
        == (manifest["tokens"])
    )
    instances = jsonl(f"{out}/instances.jsonl")
    assert set(instances[0]) == {"skill_id", "key", "prompt", "answer", "text", "source", "count"}
    repeated = [i for i in instances if i["source"] == "repeat"]
    assert repeated and all(i["prompt"] and i["answer"] in "<>" for i in repeated)


def test_the_writer_is_a_datatrove_step_in_a_users_own_pipeline(scanned, tmp_path):  # noqa: F811
    from datatrove.executor import LocalPipelineExecutor

    from curation.corpus import validate_corpus
    from curation.mixture import DosingPlan, plan_mixture
    from curation.sources.reader import CorpusReader
    from curation.steps.mixture_writer import MixtureWriter
    from tests.curation.mixture.test_build import SKILLS

    root, source, report = scanned
    doses = {"tp": {"target": {"per_batch": 2}}}
    out, _ = build(scanned, "step-reference", **doses)
    plan = plan_mixture(report, SKILLS, DosingPlan(batch_tokens=BATCH, seq_len=SEQ, skills=doses))
    files = validate_corpus(source, [root])
    pipeline = [
        CorpusReader(files, source.format, id_key="id"),
        MixtureWriter(str(tmp_path), plan, SKILLS),
    ]
    LocalPipelineExecutor(pipeline, tasks=1, logging_dir=str(tmp_path / "logs")).run()
    for name in ("tokens-00000.bin", "shard-00000.jsonl.gz", "composition.jsonl"):
        assert (tmp_path / name).read_bytes() == Path(f"{out}/{name}").read_bytes()
    with pytest.raises(ValueError, match="run it with tasks=1"):
        list(MixtureWriter(str(tmp_path / "x"), plan, SKILLS).run(iter(()), rank=0, world_size=2))
