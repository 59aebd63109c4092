"""The whole loop through the Python SDK, as a data team's pipeline would drive it:
register a skill, register a corpus, scan it, build an upweighted mixture, verify it.

Needs a running service (`skillmix serve --embedded`) and a key
(`skillmix keys create --project NAME`), given by SKILLMIX_BASE_URL and SKILLMIX_API_KEY.
The corpus folder must lie under the server's SKILLMIX_ALLOWED_ROOTS.

    python examples/sdk_loop.py CORPUS_FOLDER [--steps N] [--seeds N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import pydoc
import random
from pathlib import Path

from skillmix_client import Skillmix


def write_corpus(folder: Path, n_docs: int = 1500) -> str:
    """A small JSONL corpus of real English (Python's own docs) with a rare skill in it."""
    folder.mkdir(parents=True, exist_ok=True)
    paragraphs = [
        p
        for m in ("json", "os", "re", "pathlib", "random", "typing")
        for p in pydoc.render_doc(m, renderer=pydoc.plaintext).split("\n\n")
        if len(p) > 200
    ]
    rng = random.Random(0)
    with gzip.open(folder / "part-0.jsonl.gz", "wt") as f:
        for i in range(n_docs):
            text = " ".join(rng.choice(paragraphs) for _ in range(3))
            if i % 25 == 0:  # rare: one document in 25 compares two numbers
                a, b = rng.sample(range(10, 100), 2)
                text += f" cmp {a} {b} : {'<' if a < b else '>'}"
            f.write(json.dumps({"id": str(i), "text": text}) + "\n")
    return str(folder / "*.jsonl.gz")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus_folder", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()

    client = Skillmix()  # SKILLMIX_BASE_URL, SKILLMIX_API_KEY
    skill = client.skills.create(
        name=f"compare-{random.randrange(10**6)}",
        detector={"kind": "builtin"},
        generator={"family": "number_comparison", "params": {"min_digits": 2, "max_digits": 2}},
    )
    corpus = client.corpora.create(
        name="docs", uri=write_corpus(args.corpus_folder), format="jsonl.gz"
    )
    scan = client.scans.wait(
        client.scans.create(corpus_id=corpus.id, skill_ids=[skill.id], batch_tokens=1024).id
    )
    print("natural per batch:", scan.report["skills"][skill.id]["per_batch"])
    mixture = client.mixtures.create(
        corpus_id=corpus.id,
        scan_id=scan.id,
        batch_tokens=1024,
        seq_len=64,
        max_batches=args.steps + 64,
        plan={skill.id: {"target": {"per_batch": 8}, "source": "synthesize", "max_repeats": 10}},
    )
    mixture = client.mixtures.wait(mixture.id)
    print("audit passed:", mixture.audit["passed"])
    verification = client.verifications.create(
        arms={"upweighted": mixture.id, "baseline": "auto"},
        skill_ids=[skill.id],
        sizes=["nano"],
        seeds=list(range(args.seeds)),
        token_budget=args.steps * 1024,
        eval_every=max(args.steps // 4, 1),
    )
    verification = client.verifications.wait(verification.id, progress=True)
    assert verification.job is not None and verification.job.state == "succeeded", verification
    for verdict in verification.report["verdicts"]:
        print(verdict["arm"], verdict["verdict"], verdict["accuracies"])


if __name__ == "__main__":
    main()
