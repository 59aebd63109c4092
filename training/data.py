"""Read a mixture directory (docs/mixture-format.md) in its training order.

A mixture's order is its training order, so there is no sampler: batch b is the
b-th run of `seqs_per_batch` sequences, and the only state a resumed run needs
is the index of the next batch. The optional shuffle permutes sequences inside a
batch with a generator seeded by (seed, batch), so it needs no saved RNG state
and a resumed run sees exactly what an uninterrupted one saw.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curation.mixture.format import (
    AUDIT,
    COMPOSITION,
    FORMAT_VERSION,
    INSTANCES,
    MANIFEST,
    TOKENIZER_KINDS,
    manifest_dtype,
    manifest_eos,
)
from curation.mixture.tokenizer import MixtureTokenizer, mixture_tokenizer


@dataclass(frozen=True)
class MixtureReader:
    """An opened mixture: its manifest and memory-mapped token shards."""

    path: Path
    manifest: dict[str, Any]
    shards: tuple[np.ndarray, ...]
    """One read-only (sequences, seq_len) memmap per token shard (of the manifest's
    `token_dtype`), in order."""

    @property
    def seq_len(self) -> int:
        return int(self.manifest["seq_len"])

    @property
    def seqs_per_batch(self) -> int:
        return int(self.manifest["seqs_per_batch"])

    @property
    def n_batches(self) -> int:
        return int(self.manifest["n_batches"])

    @property
    def batch_tokens(self) -> int:
        return self.seq_len * self.seqs_per_batch

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def eos(self) -> int:
        return manifest_eos(self.manifest)

    @cached_property
    def tokenizer(self) -> MixtureTokenizer:
        """The tokenizer the mixture was built in (an hf mixture's own tokenizer.json copy),
        to encode evaluation text the way the mixture's text was encoded."""
        return mixture_tokenizer(str(self.path), self.manifest)

    @cached_property
    def _shard_starts(self) -> np.ndarray:
        return np.cumsum([0] + [len(s) for s in self.shards])

    def steps_for(self, token_budget: int | None) -> int:
        """Training steps (one batch each) for a token budget; None: every batch."""
        if token_budget is None:
            return self.n_batches
        steps = token_budget // self.batch_tokens
        if not 1 <= steps <= self.n_batches:
            raise ValueError(
                f"token_budget {token_budget} is {steps} batches of {self.batch_tokens} "
                f"tokens; the mixture has {self.n_batches}"
            )
        return steps

    def sequences(self, start: int, stop: int) -> np.ndarray:
        """Global sequences [start, stop) as one array, across shard boundaries."""
        parts = []
        for shard, first in zip(self.shards, self._shard_starts[:-1], strict=True):
            lo, hi = max(start - first, 0), min(stop - first, len(shard))
            if lo < hi:
                parts.append(shard[lo:hi])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def batch(self, b: int, shuffle_seed: int | None = None) -> torch.Tensor:
        """Batch `b` as an int64 (seqs_per_batch, seq_len) tensor."""
        if not 0 <= b < self.n_batches:
            raise IndexError(f"batch {b} outside the mixture's {self.n_batches} batches")
        n = self.seqs_per_batch
        tokens = self.sequences(b * n, (b + 1) * n).astype(np.int64)
        if tokens.max() >= self.vocab_size:
            raise ValueError(f"{self.path}: batch {b} holds a token id >= {self.vocab_size}")
        if shuffle_seed is not None:
            tokens = tokens[np.random.default_rng([shuffle_seed, b]).permutation(n)]
        return torch.from_numpy(tokens)

    def composition(self) -> list[dict[str, Any]]:
        """composition.jsonl: one record per batch, in order."""
        rows = _read_jsonl(self.path / COMPOSITION)
        if [row["batch"] for row in rows] != list(range(len(rows))):
            raise ValueError(f"{self.path}: {COMPOSITION} must list batches 0, 1, 2... in order")
        return rows

    @cached_property
    def dosing_periods(self) -> dict[str, int]:
        """Skill id -> `k` of each skill the builder's plan doses `every {n, k}` (none for a
        mixture without such a plan, or dosed otherwise)."""
        skills = (self.manifest.get("plan") or {}).get("skills") or {}
        periods = {}
        for sid, skill in skills.items():
            every = (skill.get("target") or {}).get("every") if isinstance(skill, dict) else None
            if every:
                periods[sid] = int(every["k"])
        return periods

    @property
    def dosing_period(self) -> int | None:
        """The period every `every` dose of the mixture repeats with (the lcm of their `k`);
        None when no skill is dosed `every`."""
        periods = list(self.dosing_periods.values())
        return math.lcm(*periods) if periods else None

    def exposure_batches(self, skill_id: str) -> list[int]:
        """Batches holding at least one placed instance of the skill, ascending."""
        return [
            row["batch"]
            for row in self.composition()
            if row["skills"].get(skill_id, {}).get("count", 0) > 0
        ]

    @cached_property
    def audit(self) -> dict[str, Any] | None:
        """audit.json (curation.mixture.audit), if the mixture has one."""
        path = self.path / AUDIT
        return json.loads(path.read_text()) if path.exists() else None

    def natural_batches(self, skill_id: str) -> list[int] | None:
        """Batches holding a natural (not placed) instance of the skill, ascending, as the
        mixture's audit located them; None when the audit did not (no audit, or one that
        did not audit the skill or list its natural locations)."""
        row = ((self.audit or {}).get("skills") or {}).get(skill_id) or {}
        batches = (row.get("natural") or {}).get("batches")
        return None if batches is None else [int(b) for b in batches]

    def instances(
        self, skill_id: str | None = None, before_batch: int | None = None
    ) -> list[dict[str, Any]]:
        """instances.jsonl records (every placed instance), optionally of one skill, and
        only those placed in batches 0 .. before_batch-1 when it is given (what a run of
        that many steps trained on; the mixture's tail is not seen)."""
        path = self.path / INSTANCES
        rows = _read_jsonl(path) if path.exists() else []
        rows = [r for r in rows if skill_id is None or r["skill_id"] == skill_id]
        if before_batch is None:
            return rows
        placed = {
            (sid, key)
            for row in self.composition()[:before_batch]
            for sid, entry in row["skills"].items()
            for key in entry.get("keys", [])
        }
        return [r for r in rows if (r["skill_id"], r["key"]) in placed]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def open_mixture(path: str | Path) -> MixtureReader:
    """Open a mixture directory, checking its manifest against the token shards on disk."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"{path} is not a mixture: no {MANIFEST}")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: mixture format_version {manifest.get('format_version')!r}")
    if manifest["tokenizer"]["kind"] not in TOKENIZER_KINDS:
        raise ValueError(f"{path}: tokenizer {manifest['tokenizer']['kind']!r} is not supported")
    dtype = np.dtype(manifest_dtype(manifest))
    seq_len, per_batch = int(manifest["seq_len"]), int(manifest["seqs_per_batch"])
    if per_batch * seq_len != int(manifest["batch_tokens"]):
        raise ValueError(f"{path}: seqs_per_batch * seq_len != batch_tokens")
    shards = []
    for entry in manifest["shards"]:
        if entry["kind"] != "tokens":
            continue
        file, sequences = path / entry["path"], int(entry["sequences"])
        if file.stat().st_size != sequences * seq_len * dtype.itemsize:
            raise ValueError(
                f"{file}: {file.stat().st_size} bytes, expected {sequences} x {seq_len} "
                f"{manifest.get('token_dtype', 'uint16')}"
            )
        shards.append(np.memmap(file, dtype=dtype, mode="r", shape=(sequences, seq_len)))
    total = sum(len(s) for s in shards)
    if total != int(manifest["n_sequences"]) or int(manifest["n_batches"]) * per_batch > total:
        raise ValueError(f"{path}: token shards hold {total} sequences, manifest disagrees")
    return MixtureReader(path=path, manifest=manifest, shards=tuple(shards))


def micro_batches(tokens: torch.Tensor, size: int | None) -> list[torch.Tensor]:
    """Split a batch's rows into chunks of at most `size` (None: the whole batch)."""
    if size is None or size >= len(tokens):
        return [tokens]
    return list(tokens.split(size))
