"""`MixtureWriter`: a datatrove step that writes a mixture from documents in corpus order.

A mixture's order is its training order, one global sequence, so the writer
runs as a single rank (world_size 1) and streams: it reads documents as the
packer needs them, writes each shard as soon as its last batch is full, and
stops reading when the mixture is full (the corpus tail is dropped). Reading
can still be spread out upstream; only this step is sequential. Put it after a
`CorpusReader` (or a data team's own reader and filters):

    [CorpusReader(files, "jsonl.gz"), MixtureWriter(out_dir, plan, skills)]

Determinism: every random choice comes from seeded generators consumed in batch
order, so a rerun replays the identical stream. Resume uses that: shards a
killed run committed (`.build/state.json`) are replayed without being written.
A skill's generators are keyed by the mixture seed and its definition
(`SkillPlan.placement_stream`), never by its id, so re-registering a skill under a
new id or name gives the same mixture. A pooled skill (`pool_size`) draws its pool from
that key's own `/pool` stream.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.atomic import atomic_file
from curation.mixture.format import COMPOSITION, INSTANCES
from curation.mixture.packer import Packer, Piece
from curation.mixture.plan import MixturePlan, PlanError
from curation.mixture.pool import RepeatPool
from curation.mixture.schedule import shared_rows, slot_offsets
from curation.mixture.shards import ShardWriter, shard_names
from curation.mixture.state import BuildState, write_jsonl
from curation.mixture.supply import RepeatSupply, Supply, SynthesizedSupply
from curation.skills.spec import SkillSpec

Progress = Callable[[float, str], None]
PROGRESS_SECONDS = 0.5


def default_shard_batches(batch_tokens: int, shard_tokens: int = 1 << 27) -> int:
    """Batches per shard: about 2**27 tokens (256 MB of uint16), at least one batch."""
    return max(1, shard_tokens // batch_tokens)


class MixtureWriter(PipelineStep):
    """Packs documents and planned placements into shards, composition and instances files.

    Args:
        out_dir: the mixture directory (local path).
        plan: the resolved plan (`plan_mixture`).
        skills: specs of the plan's skills.
        pool: matched corpus documents for `repeat` skills (see `mixture.pool`).
        shard_batches: batches per shard (default: ~2**27 tokens per shard).
        progress: `progress(fraction, message)`, fraction within `progress_range`;
            it may raise to stop the build (a rerun resumes).
    After `run`, `result` holds what was written (shards, exact token counts).
    """

    name = "🧪 MixtureWriter"
    type = "💽 - WRITER"

    def __init__(
        self,
        out_dir: str,
        plan: MixturePlan,
        skills: Sequence[SkillSpec],
        pool: RepeatPool | None = None,
        shard_batches: int | None = None,
        progress: Progress | None = None,
        progress_range: tuple[float, float] = (0.0, 1.0),
    ):
        super().__init__()
        self.out_dir, self.plan, self.pool = out_dir, plan, pool
        self.specs = {s.id: s for s in skills}
        dosing = plan.dosing
        self.shard_batches = shard_batches or default_shard_batches(dosing.batch_tokens)
        self.progress, self.progress_range = progress, progress_range
        self.result: dict[str, Any] | None = None
        self._last = 0.0

    def identity(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "skills": {sid: self.specs[sid].model_dump(mode="json") for sid in self.plan.skills},
            "corpus_fingerprint": self.plan.corpus.get("fingerprint_digest"),
            "shard_batches": self.shard_batches,
            **({} if self.plan.tokenizer.is_bytes else {"tokenizer": self.plan.tokenizer.sha256}),
        }

    def _supplies(self) -> dict[str, Supply]:
        seed = self.plan.dosing.seed
        supplies: dict[str, Supply] = {}
        for sid, skill in self.plan.skills.items():
            stream = f"{skill.source}/{skill.placement_stream}"
            rng = random.Random(f"skillmix/mixture/{seed}/{stream}")
            spec = self.specs[sid]
            if skill.source == "synthesize":
                # The pool has its own stream: which instances form it does not depend on
                # how the placements then draw from it.
                pool_rng = random.Random(f"skillmix/mixture/{seed}/{stream}/pool")
                supplies[sid] = SynthesizedSupply(
                    spec, skill.max_repeats, rng, skill.pool_size, pool_rng
                )
                continue
            if self.pool is None:
                raise ValueError(f"skill {sid} repeats corpus documents: pass the repeat pool")
            parse = spec.family.parse if spec.family is not None else None
            supply = RepeatSupply(sid, self.pool, skill.max_repeats, rng, parse)
            if (made := supply.capacity(skill.placements)) < skill.placements:
                raise PlanError(
                    f"skill {sid}: the corpus' repeatable documents (no probe instance, short "
                    "enough for a batch slot, first instance inside one sequence: "
                    f"{len(supply.docs):,}) allow {made:,} of "
                    f"{skill.placements:,} placements at max_repeats={skill.max_repeats}; "
                    "raise max_repeats, use source=synthesize, or lower the target"
                )
            supplies[sid] = supply
        return supplies

    def _report(self, fraction: float, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is None or not (force or now - self._last >= PROGRESS_SECONDS):
            return
        self._last = now
        lo, hi = self.progress_range
        self.progress(lo + (hi - lo) * fraction, message)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("MixtureWriter writes one global order: run it with tasks=1")
        plan, dosing = self.plan, self.plan.dosing
        n, seqs = plan.n_batches, plan.seqs_per_batch
        state = BuildState(self.out_dir, self.identity())
        skip = state.load()
        supplies = self._supplies()
        order = random.Random(f"skillmix/mixture/{dosing.seed}/order")
        # Skills in stream order before the shuffle, so neither ids nor the plan's key
        # order move a placement.
        by_stream = sorted(plan.counts, key=lambda sid: plan.skills[sid].placement_stream)
        landed: dict[int, dict[str, list[tuple[str, int, int]]]] = {}
        self._last = 0.0

        def batch_done(batch: int) -> dict[str, Any]:
            skills, here = {}, landed.pop(batch, {})
            shared = sum(int(counts[batch]) for counts in plan.counts.values()) > seqs
            for sid, counts in plan.counts.items():
                planned, placed = int(counts[batch]), here.get(sid, [])
                if planned or placed:
                    skills[sid] = {
                        "count": len(placed),
                        "planned": planned,
                        "keys": [key for key, _, _ in placed],
                        "sequences": [seq for _, seq, _ in placed],
                    }
                    if shared:  # where in its (shared) row each placement starts
                        skills[sid]["offsets"] = [offset for _, _, offset in placed]
            self._report((batch + 1) / n, f"packed batch {batch + 1:,} / {n:,}")
            return {"batch": batch, "skills": skills}

        def on_commit(index: int, entries: list[dict[str, Any]]) -> None:
            state.commit(index, entries)
            done = entries[0]["batches"][1]
            self._report(done / n, f"wrote shard {index + 1} / {shards.n_shards}", force=True)

        shards = ShardWriter(
            self.out_dir, dosing.format, dosing.batch_tokens, dosing.seq_len, n,
            self.shard_batches, batch_done, on_commit, skip, plan.tokenizer,
        )  # fmt: skip
        packer = Packer(((doc.id, doc.text) for doc in data), dosing.seq_len, plan.tokenizer)
        inserted: dict[str, int] = dict.fromkeys(plan.skills, 0)
        pieces: Counter[str] = Counter()

        def emit(piece: Piece) -> None:
            if piece.skill_id is not None and piece.start < shards.total:
                batch = piece.start // dosing.batch_tokens
                sequence, offset = divmod(piece.start, dosing.seq_len)
                landed.setdefault(batch, {}).setdefault(piece.skill_id, []).append(
                    (piece.key or "", sequence, offset)
                )
                inserted[piece.skill_id] += min(piece.tokens, shards.total - piece.start)
            shards.add(piece)
            pieces[piece.source] += 1

        try:
            for batch in range(n):
                sids = [sid for sid in by_stream for _ in range(plan.counts[sid][batch])]
                order.shuffle(sids)
                for piece in self._place(batch, sids, supplies, packer):
                    emit(piece)
                for piece in packer.fill((batch + 1) * dosing.batch_tokens):
                    emit(piece)
        finally:
            shards.abort()
        for source, count in sorted(pieces.items()):
            self.stat_update(f"records/{source}", value=count)
        self._finish(state, supplies, packer, inserted)
        yield from ()

    def _place(
        self, batch: int, sids: list[str], supplies: dict[str, Supply], packer: Packer
    ) -> Iterator[Piece]:
        """A batch's placements (of skills `sids`, in order) with the corpus before them.

        Each starts a sequence, evenly spread (`slot_offsets`), while they fit one to a
        sequence. A batch with more placements than sequences packs them, in order, into
        groups that each fill part of one row (`schedule.shared_rows`), and the groups are
        spread the same way."""
        seqs, seq_len = self.plan.seqs_per_batch, self.plan.dosing.seq_len
        if len(sids) <= seqs:
            for offset, sid in zip(slot_offsets(len(sids), seqs), sids, strict=True):
                yield from packer.place(supplies[sid].take(), (batch * seqs + offset) * seq_len)
            return
        pieces = [packer.encode(supplies[sid].take()) for sid in sids]
        try:
            groups = shared_rows([piece.tokens for piece in pieces], seqs, seq_len)
        except ValueError as exc:
            raise PlanError(
                f"batch {batch}: {exc}; the plan expected shorter instances (its longest "
                "sampled ones): lower the targets or raise batch_tokens"
            ) from None
        for offset, group in zip(slot_offsets(len(groups), seqs), groups, strict=True):
            target = (batch * seqs + offset) * seq_len
            yield from packer.put([pieces[j] for j in group], target)

    def _finish(
        self, state: BuildState, supplies: dict[str, Supply], packer: Packer, inserted: dict
    ) -> None:
        """composition.jsonl from the shard parts, instances.jsonl, and the result summary."""
        parts = [
            os.path.join(self.out_dir, shard_names(i, self.plan.dosing.format)["composition"])
            for i in sorted(state.shards)
        ]
        with atomic_file(os.path.join(self.out_dir, COMPOSITION)) as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
        rows = [row for sid in sorted(supplies) for row in supplies[sid].instance_rows()]
        write_jsonl(os.path.join(self.out_dir, INSTANCES), rows)
        self.result = {
            "shards": state.entries(),
            "inserted_tokens": inserted,
            "padding_tokens": packer.padding,
            "corpus_tokens_used": packer.corpus_tokens,
        }
