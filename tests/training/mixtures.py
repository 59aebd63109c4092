"""Write small mixture directories exactly as docs/mixture-format.md specifies.

A stand-in for the curation mixture builder, for tests and the demo experiment:
corpus documents are packed in order into sequences of `seq_len` tokens (UTF-8
bytes, EOS = 256 after every document); a placed instance starts a new sequence
with `text + EOS`, and the rest of that sequence is the following corpus text.
The instances of batch b are spread evenly over its sequences.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from curation.skills.instance import Instance
from curation.skills.probes import sample_instances
from curation.skills.spec import SkillSpec
from curation.synthetic_corpus import background_paragraphs

EOS = 256
Schedule = Callable[[int], int]
"""batch index -> number of instances placed in that batch."""


def cmp_skill(skill_id: str = "cmp") -> SkillSpec:
    """Two-digit comparison `cmp 47 52 : <`, half of the pairs held out."""
    return SkillSpec(
        id=skill_id,
        name=skill_id,
        detector={"kind": "builtin"},
        generator={"family": "number_comparison", "params": {}},
    )


def per_batch(n: int) -> Schedule:
    return lambda b: n


def every(n: int, k: int) -> Schedule:
    """`n` instances in every k-th batch (the paper's spacing runs)."""
    return lambda b: n if b % k == 0 else 0


def prose(seed: int, split: str = "train", mean_chars: int = 600) -> Iterator[str]:
    """Endless documents of standard-library docstring prose.

    Paragraphs are split once (every tenth is "heldout"), so held-out text is
    never in a training document.
    """
    paragraphs = background_paragraphs()
    pool = [p for i, p in enumerate(paragraphs) if (i % 10 == 9) == (split == "heldout")]
    rng = random.Random(seed)
    while True:
        target = max(80, int(rng.lognormvariate(np.log(mean_chars) - 0.32, 0.8)))
        i, parts = rng.randrange(len(pool)), []
        while sum(map(len, parts)) < target:
            parts.append(pool[i % len(pool)])
            i += 1
        yield "\n\n".join(parts)


def with_natural(docs: Iterable[str], instances: Iterator[Instance], rate: float, seed: int):
    """Insert instances at word boundaries of documents, Poisson(rate) per document."""
    rng = np.random.default_rng(seed)
    for doc in docs:
        words = doc.split(" ")
        for _ in range(rng.poisson(rate)):
            words.insert(int(rng.integers(len(words) + 1)), next(instances).text)
        yield " ".join(words)


class _Stream:
    """The corpus as a token stream, remembering where each document starts."""

    def __init__(self, docs: Iterable[str]):
        self.docs, self.buffer, self.pending = iter(docs), [], deque()
        self.consumed = self.appended = self.count = 0
        self.records: list[dict[str, Any]] = []

    def take(self, n: int, batch: int) -> list[int]:
        while len(self.buffer) < n:
            text = next(self.docs)
            self.pending.append((self.appended, text))
            tokens = list(text.encode()) + [EOS]
            self.buffer.extend(tokens)
            self.appended += len(tokens)
        while self.pending and self.pending[0][0] < self.consumed + n:
            _, text = self.pending.popleft()
            self.records.append(
                {"text": text, "id": f"doc-{self.count}", "source": "corpus", "batch": batch}
            )
            self.count += 1
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        self.consumed += n
        return out


def write_mixture(
    out: Path,
    docs: Iterable[str],
    *,
    n_batches: int,
    seq_len: int,
    seqs_per_batch: int,
    skills: dict[str, tuple[SkillSpec, Schedule]] | None = None,
    seed: int = 0,
    corpus_uri: str = "test://prose",
    targets: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write a mixture of `n_batches` batches to `out`; returns `out`. `targets`: per skill,
    the target the builder's plan would record (`plan.skills.<id>.target`, e.g.
    {"every": {"n": 2, "k": 4}}), for readers of the plan such as the dosing period."""
    skills = skills or {}
    out.mkdir(parents=True, exist_ok=True)
    counts = {sid: [schedule(b) for b in range(n_batches)] for sid, (_, schedule) in skills.items()}
    pools = {
        sid: iter(sample_instances(spec, sum(counts[sid]), seed=seed))
        for sid, (spec, _) in skills.items()
    }
    stream = _Stream(docs)
    tokens = np.empty((n_batches * seqs_per_batch, seq_len), dtype="<u2")
    composition, used = [], {}
    for b in range(n_batches):
        starts: dict[int, tuple[str, Instance]] = {}
        row: dict[str, Any] = {"batch": b, "skills": {}}
        for sid in skills:
            c = counts[sid][b]
            free = [s for s in range(seqs_per_batch) if s not in starts]
            chosen = [free[i * len(free) // c] for i in range(c)] if c else []
            placed = [(s, next(pools[sid])) for s in chosen]
            starts.update({s: (sid, inst) for s, inst in placed})
            if placed:
                seqs = [b * seqs_per_batch + s for s, _ in placed]
                keys = [inst.key for _, inst in placed]
                row["skills"][sid] = {"count": c, "keys": keys, "sequences": seqs}
        for s in range(seqs_per_batch):
            head: list[int] = []
            if s in starts:
                sid, inst = starts[s]
                head = list(inst.text.encode()) + [EOS]
                entry = used.setdefault(inst.key, {"skill_id": sid, **_fields(inst), "count": 0})
                entry["count"] += 1
                stream.records.append(
                    {"text": inst.text, "id": inst.key, "source": "synthesize", "batch": b}
                )
            tokens[b * seqs_per_batch + s] = head + stream.take(seq_len - len(head), b)
        composition.append(row)
    (out / "tokens-00000.bin").write_bytes(tokens.tobytes())
    with gzip.open(out / "shard-00000.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in stream.records)
    _write_jsonl(out / "composition.jsonl", composition)
    _write_jsonl(out / "instances.jsonl", list(used.values()))
    manifest = {
        "format_version": 1,
        "tokenizer": {"kind": "bytes", "vocab_size": 257, "eos": EOS},
        "batch_tokens": seq_len * seqs_per_batch,
        "seq_len": seq_len,
        "seqs_per_batch": seqs_per_batch,
        "n_batches": n_batches,
        "n_sequences": len(tokens),
        "tokens": tokens.size,
        "seed": seed,
        "corpus": {"uri": corpus_uri, "format": "jsonl", "fingerprint": {"test": corpus_uri}},
        "skills": {
            sid: {"version": spec.version, "spec": spec.model_dump(mode="json")}
            for sid, (spec, _) in skills.items()
        },
        "plan": {sid: {"instances": sum(counts[sid]), "source": "synthesize"} for sid in skills}
        | ({"skills": {sid: {"target": t} for sid, t in targets.items()}} if targets else {}),
        "shards": [
            _shard(out, "tokens-00000.bin", "tokens", sequences=len(tokens)),
            _shard(out, "shard-00000.jsonl.gz", "text", documents=len(stream.records)),
        ],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def _fields(inst: Instance) -> dict[str, Any]:
    return {
        "key": inst.key,
        "prompt": inst.prompt,
        "answer": inst.answer,
        "text": inst.text,
        "source": "synthesize",
    }


def _shard(out: Path, name: str, kind: str, **count: int) -> dict[str, Any]:
    digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
    return {"path": name, "kind": kind, **count, "sha256": digest}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
