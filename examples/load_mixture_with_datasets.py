"""Build a mixture with the library (no service) and read it back with Hugging Face
`datasets`, in batch order, and as the token shards the trainer reads.

    python examples/load_mixture_with_datasets.py [WORKDIR]
"""

from __future__ import annotations

import glob
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from datasets import load_dataset

from curation.corpus import CorpusSource
from curation.mixture import DosingPlan, build_mixture, plan_mixture
from curation.mixture.format import manifest_dtype
from curation.scan import run_scan
from curation.skills import SkillSpec
from curation.synthetic_corpus import Plant, generate_corpus


def main(workdir: Path) -> None:
    corpus = generate_corpus(
        str(workdir / "corpus"),
        n_docs=300,
        seed=0,
        format="jsonl",
        plants=[Plant("cmp", ("cmp 12 57 : <",), every=30)],
    )
    skill = SkillSpec(
        id="cmp",
        name="compare",
        detector={"kind": "builtin"},
        generator={"family": "number_comparison", "params": {}},
    )
    source = CorpusSource(uri=corpus.uri, format="jsonl")
    roots = [str(workdir)]
    report = run_scan(
        source, [skill], str(workdir / "scan"), allowed_roots=roots, batch_tokens=4096
    )
    dosing = DosingPlan(
        skills={"cmp": {"target": {"per_batch": 2}, "source": "synthesize"}},
        batch_tokens=4096,
        seq_len=256,
    )
    out = workdir / "mixture"
    build_mixture(
        source, [skill], plan_mixture(report, [skill], dosing), str(out), allowed_roots=roots
    )

    shards = sorted(glob.glob(str(out / "shard-*.jsonl.gz")))
    ds = load_dataset("json", data_files=shards, split="train")
    batches = ds["batch"]
    assert batches == sorted(batches), "records come in batch order"
    placed = ds.filter(lambda r: r["source"] == "synthesize")
    print(f"{len(ds)} records, {len(placed)} placed instances, e.g. {placed[0]['text']!r}")

    # The token shards' dtype (uint16, or uint32 for a vocabulary over 65,536) is the manifest's.
    manifest = json.loads((out / "manifest.json").read_text())
    dtype = manifest_dtype(manifest)
    tokens = np.fromfile(sorted(glob.glob(str(out / "tokens-*.bin")))[0], dtype=dtype)
    print(f"token shard: {tokens.size // 256} sequences of 256 byte tokens")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
