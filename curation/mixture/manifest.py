"""manifest.json: what a mixture is, in the fields of docs/mixture-format.md.

No timestamps and no absolute output paths, so the same inputs give the same
bytes wherever the mixture is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from curation.corpus import CorpusSource
from curation.mixture.format import (
    COMPOSITION,
    FORMAT_VERSION,
    INSTANCES,
    MANIFEST,
)
from curation.mixture.plan import MixturePlan
from curation.mixture.tokenizer import BYTES, MixtureTokenizer
from curation.skills.spec import SkillSpec


def build_manifest(
    plan: MixturePlan,
    specs: Mapping[str, SkillSpec],
    source: CorpusSource,
    fingerprint: dict[str, Any],
    result: dict[str, Any],
    tokenizer: MixtureTokenizer = BYTES,
) -> dict[str, Any]:
    """The manifest of a finished build; `result` is MixtureWriter.result."""
    dosing = plan.dosing
    inserted = result["inserted_tokens"]
    return {
        "format_version": FORMAT_VERSION,
        "tokenizer": tokenizer.manifest(),
        "token_dtype": tokenizer.dtype_name,
        "batch_tokens": dosing.batch_tokens,
        "seq_len": dosing.seq_len,
        "seqs_per_batch": plan.seqs_per_batch,
        "n_batches": plan.n_batches,
        "n_sequences": plan.n_batches * plan.seqs_per_batch,
        "tokens": plan.tokens,
        "seed": dosing.seed,
        "text_format": dosing.format,
        "corpus": {**source.to_dict(), "fingerprint": fingerprint},
        "skills": {
            sid: {"version": specs[sid].version, "spec": specs[sid].model_dump(mode="json")}
            for sid in plan.skills
        },
        "plan": plan.to_dict(),
        "shards": result["shards"],
        "totals": {
            "inserted_tokens": sum(inserted.values()),
            "inserted_tokens_by_skill": inserted,
            "padding_tokens": result["padding_tokens"],
            "corpus_tokens_used": result["corpus_tokens_used"],
            "corpus_tokens_dropped": plan.corpus["tokens"] - result["corpus_tokens_used"],
        },
        "files": {"composition": COMPOSITION, "instances": INSTANCES},
    }


def read_manifest(out_dir: str) -> dict[str, Any]:
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{out_dir} has no {MANIFEST}: is it a finished mixture?")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
