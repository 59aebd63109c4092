"""audit_mixture: re-scan a built mixture and compare what the model will see with the plan.

The audit reads the tokenized shards, the very data the trainer reads, in packed
order, and runs the skills' SkillMatcher over every document piece of every
sequence: a match is counted only if it lies inside one sequence, since
sequences are separate contexts in training (a corpus instance cut by a sequence
boundary is not seen whole, and is not counted). Positions are token offsets in
the mixture, so gaps are measured exactly as the model meets them.

A match inside a placement of its own skill (the span from the placement's
start to its EOS: its sequence as listed in composition.jsonl, at the sequence's
`offsets` entry when placements share the row, else at its start) is *placed*; a
placement with at least one such match is *verified*, so each of several
placements sharing a row is verified on its own. Every other match is
*natural*; the audit lists the batches and sequences natural instances lie in, so a
trainer can tell how long ago a run last met one. A skill passes when (1) its verified
placements differ from the planned total by at most `tolerance` x planned, (2) at most `tolerance` x
n_batches batches have a verified count different from the schedule, and
(3) no placed instance is a probe instance (and, for a pooled skill, at most `pool_size`
unique instances were placed). The mixture passes when every skill and every shard
checksum does. Unique placed instances and copies per unique instance are counted by
the match key of what was matched inside the placements (re-measured, not the builder's
record).

Every skill the audit is given is audited, the plan's and the others: a skill the plan
does not dose (all of them in a natural-frequency baseline) gets the same report with
nothing planned or placed (`dosed` false, its `target` empty, its `source` "natural"), so
a baseline arm is audited like any mixture and its natural instances are counted.

A mixture built with a Hugging Face tokenizer is audited in that tokenizer: each
document piece's tokens are decoded back to text (`decode_batch`) and matched there, and
a match's position is its first token's, found by re-tokenizing the piece's text.
"""

from __future__ import annotations

import json
import os
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from curation import stats
from curation.mixture.danger import skill_label
from curation.mixture.format import AUDIT, COMPOSITION, manifest_dtype, manifest_eos
from curation.mixture.manifest import read_manifest
from curation.mixture.schedule import target_positions
from curation.mixture.shards import sha256_file
from curation.mixture.state import write_json
from curation.mixture.tokenizer import MixtureTokenizer, mixture_tokenizer
from curation.skills.instance import match_key
from curation.skills.matcher import SkillMatcher
from curation.skills.probes import probe_match_keys
from curation.skills.spec import SkillSpec
from curation.text import char_to_byte_offsets

DEFAULT_TOLERANCE = 0.05
MAX_EXAMPLES = 10
MAX_NATURAL_SEQUENCES = 10_000
"""Natural-instance sequences listed per skill at most (the first ones; `sequences_complete`
says whether that is all). The batches are always all listed (at most one per batch)."""
RULE = (
    "a skill passes when its verified placements differ from the planned total by at most "
    "tolerance x planned, at most tolerance x n_batches batches have a verified count that "
    "differs from the schedule, no placed instance is a probe instance, and a pooled skill "
    "places at most pool_size unique instances"
)
Progress = Callable[[float, str], None]


class AuditFailed(RuntimeError):
    """The built mixture misses its plan beyond the tolerance; `audit` holds the report."""

    def __init__(self, audit: dict[str, Any]):
        self.audit = audit
        problems = [
            f"{skill_label(sid, s.get('name'))}: {p}"
            for sid, s in audit["skills"].items()
            for p in s["problems"]
        ]
        problems += audit["shards"]["problems"]
        super().__init__("mixture audit failed: " + "; ".join(problems))


class _Tally:
    """What the audit found for one skill."""

    def __init__(self, n_batches: int, probe_keys: frozenset[str]):
        self.planned = np.zeros(n_batches, dtype=np.int64)
        self.builder = np.zeros(n_batches, dtype=np.int64)
        self.verified = np.zeros(n_batches, dtype=np.int64)
        self.natural_per_batch = np.zeros(n_batches, dtype=np.int64)
        self.placed, self.natural = array("q"), array("q")
        self.placed_tokens = 0
        self.placed_keys: Counter[str] = Counter()  # placed matches per match key
        self.probe_keys = probe_keys
        self.placed_probes = self.natural_probes = 0


def _batches(out_dir: str, manifest: dict[str, Any]) -> Iterator[np.ndarray]:
    """Each batch's tokens, in order, read one batch at a time (memory stays one batch)."""
    batch_tokens, dtype = manifest["batch_tokens"], manifest_dtype(manifest)
    for entry in manifest["shards"]:
        if entry["kind"] == "tokens":
            with open(os.path.join(out_dir, entry["path"]), "rb") as f:
                while (tokens := np.fromfile(f, dtype=dtype, count=batch_tokens)).size:
                    yield tokens


def _segments(tokens: np.ndarray, seq_len: int, eos_id: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, ends_with_eos) of each document piece inside one sequence, EOS excluded."""
    eos = np.flatnonzero(tokens == eos_id)
    starts = np.union1d(np.arange(0, tokens.size, seq_len), eos + 1)
    starts = starts[starts < tokens.size]
    ends = np.append(starts[1:], tokens.size)
    has_eos = tokens[ends - 1] == eos_id
    yield from zip(starts.tolist(), (ends - has_eos).tolist(), has_eos.tolist(), strict=True)


class _Scanner:
    """Walks the packed stream, tracking which placement (if any) the current piece belongs to."""

    def __init__(
        self, manifest: dict[str, Any], specs: Sequence[SkillSpec], tokenizer: MixtureTokenizer
    ):
        self.seq_len, self.batch_tokens = manifest["seq_len"], manifest["batch_tokens"]
        self.eos, self.tokenizer = manifest_eos(manifest), tokenizer
        self.ids = [s.id for s in specs]
        self.matcher = SkillMatcher(specs)
        n = manifest["n_batches"]
        self.tallies = {s.id: _Tally(n, probe_match_keys(s)) for s in specs}
        self.current: list[Any] | None = None  # [skill_id, batch, verified]

    def batch(self, b: int, tokens: np.ndarray, composition: dict[str, Any]) -> None:
        placements = {}  # token position where a placement starts -> its skill
        for sid, entry in composition["skills"].items():
            self.tallies[sid].planned[b] = entry["planned"]
            self.tallies[sid].builder[b] = entry["count"]
            offsets = entry.get("offsets") or [0] * len(entry["sequences"])
            for sequence, offset in zip(entry["sequences"], offsets, strict=True):
                placements[sequence * self.seq_len + offset] = sid
        segments = list(_segments(tokens, self.seq_len, self.eos))
        if self.tokenizer.is_bytes:
            data = tokens.astype(np.uint8).tobytes()
        else:
            texts = self.tokenizer.decode_batch([tokens[s:e] for s, e, _ in segments])
        base = b * self.batch_tokens
        for k, (start, end, eos) in enumerate(segments):
            if sid := placements.get(base + start):
                self._close()
                self.current = [sid, b, False]
            if end > start and self.tokenizer.is_bytes:
                self._match(data[start:end], base + start, b, start % self.seq_len == 0)
            elif end > start:
                self._match_decoded(texts[k], end - start, base + start, b)
            if eos:
                self._close()

    def _match(self, chunk: bytes, position: int, batch: int, sequence_start: bool) -> None:
        lead = 0
        if sequence_start:  # a character cut by the sequence boundary: its tail is not text
            while lead < min(3, len(chunk)) and chunk[lead] & 0xC0 == 0x80:
                lead += 1
        text = chunk[lead:].decode("utf-8", "ignore")  # "ignore" only drops a char cut at the end
        found = self.matcher.find_spans(text)
        if not found:
            return
        ascii_text = len(text) == len(chunk) - lead
        for index, spans in found.items():
            sid = self.ids[index]
            tally = self.tallies[sid]
            offsets = (
                None if ascii_text else char_to_byte_offsets(text, [o for s in spans for o in s])
            )
            for s, e in spans:
                at = position + lead + (s if offsets is None else offsets[s])
                size = e - s if offsets is None else offsets[e] - offsets[s]
                self._record(tally, sid, text[s:e], at, batch, size)

    def _match_decoded(self, text: str, n_tokens: int, position: int, batch: int) -> None:
        """A decoded piece of `n_tokens` tokens: matches placed at their first token."""
        found = self.matcher.find_spans(text)
        if not found:
            return
        _, starts = self.tokenizer.token_starts(text)

        def token(char: int) -> int:
            return min(max(bisect_right(starts, char) - 1, 0), n_tokens - 1)

        for index, spans in found.items():
            sid = self.ids[index]
            tally = self.tallies[sid]
            for s, e in spans:
                self._record(tally, sid, text[s:e], position + token(s), batch,
                             token(e - 1) - token(s) + 1)  # fmt: skip

    def _record(
        self, tally: _Tally, sid: str, matched: str, at: int, batch: int, size: int
    ) -> None:
        placed = self.current is not None and self.current[0] == sid
        key = match_key(matched) if placed or tally.probe_keys else ""
        if placed:
            assert self.current is not None
            self.current[2] = True
            tally.placed.append(at)
            tally.placed_tokens += size
            tally.placed_keys[key] += 1
            tally.placed_probes += key in tally.probe_keys
        else:
            tally.natural.append(at)
            tally.natural_per_batch[batch] += 1
            tally.natural_probes += key in tally.probe_keys

    def _close(self) -> None:
        if self.current is not None and self.current[2]:
            self.tallies[self.current[0]].verified[self.current[1]] += 1
        self.current = None


def _check_shards(out_dir: str, manifest: dict[str, Any]) -> dict[str, Any]:
    problems = []
    for entry in manifest["shards"]:
        path = os.path.join(out_dir, entry["path"])
        if not os.path.exists(path):
            problems.append(f"{entry['path']} is missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{entry['path']} does not match its sha256 in the manifest")
    return {"checked": len(manifest["shards"]), "ok": not problems, "problems": problems}


def _natural_locations(natural: np.ndarray, batch_tokens: int, seq_len: int) -> dict[str, Any]:
    """Where the natural instances are: the batches (all) and sequences (the first
    MAX_NATURAL_SEQUENCES) holding at least one, ascending, by their first token; what a
    trainer needs to measure forgetting since the last natural exposure."""
    positions = natural.astype(np.int64)
    sequences = np.unique(positions // seq_len)
    return {
        "batches": np.unique(positions // batch_tokens).tolist(),
        "sequences": sequences[:MAX_NATURAL_SEQUENCES].tolist(),
        "sequences_complete": bool(sequences.size <= MAX_NATURAL_SEQUENCES),
    }


def _skill_report(
    sid: str, tally: _Tally, manifest: dict[str, Any], tolerance: float
) -> dict[str, Any]:
    plan = manifest["plan"].get("skills", {}).get(sid)
    n, batch_tokens = manifest["n_batches"], manifest["batch_tokens"]
    planned, verified = int(tally.planned.sum()), int(tally.verified.sum())
    off = np.flatnonzero(tally.planned != tally.verified)
    problems = []
    if abs(verified - planned) > tolerance * planned:
        problems.append(f"{verified:,} placements verified of {planned:,} planned")
    if off.size > tolerance * n:
        problems.append(f"{off.size:,} of {n:,} batches differ from the schedule")
    if tally.placed_probes:
        problems.append(f"{tally.placed_probes} placed instances are probe instances")
    if plan and (pool := plan.get("pool_size")) is not None and len(tally.placed_keys) > pool:
        problems.append(f"{len(tally.placed_keys):,} unique instances placed, pool_size={pool:,}")
    placed = np.frombuffer(tally.placed, dtype=np.int64) if tally.placed else np.zeros(0, np.int64)
    natural = np.frombuffer(tally.natural, dtype=np.int64) if tally.natural else np.zeros(0)
    targets = target_positions(tally.planned, manifest["seqs_per_batch"], manifest["seq_len"])
    gap_tokens, gap_batches = stats.gap_stats(placed, batch_tokens)
    target_tokens, target_batches = stats.gap_stats(targets, batch_tokens)
    all_tokens, all_batches = stats.gap_stats(np.concatenate([placed, natural]), batch_tokens)
    return {
        "dosed": plan is not None,
        "target": plan["target"] if plan else {},
        "source": plan["source"] if plan else "natural",
        "spacing": plan["spacing"] if plan else "none",
        "planned": {"placements": planned, "per_batch": planned / n},
        "placed": {
            "placements": verified,
            "instances": int(placed.size),
            "unique_instances": len(tally.placed_keys),
            "copies_per_unique": {
                "mean": placed.size / len(tally.placed_keys) if tally.placed_keys else 0.0,
                "max": max(tally.placed_keys.values(), default=0),
            },
            "per_batch": {
                "mean": verified / n,
                "min": int(tally.verified.min()),
                "max": int(tally.verified.max()),
            },
        },
        "builder_placements": int(tally.builder.sum()),
        "schedule": {
            "batches_off": int(off.size),
            "max_abs_deviation": int(np.abs(tally.planned - tally.verified).max(initial=0)),
            "examples": [
                {
                    "batch": int(b),
                    "planned": int(tally.planned[b]),
                    "placed": int(tally.verified[b]),
                }
                for b in off[:MAX_EXAMPLES]
            ],
        },
        "natural": {
            "instances": int(natural.size),
            "per_batch": natural.size / n,
            "scan_per_batch": plan["natural"]["per_batch"] if plan else None,
            "probe_collisions": tally.natural_probes,
            **_natural_locations(natural, batch_tokens, manifest["seq_len"]),
        },
        "per_batch_total": (placed.size + natural.size) / n,
        "token_fraction": tally.placed_tokens / manifest["tokens"],
        "gap_tokens": gap_tokens,
        "gap_batches": gap_batches,
        "target_gap_tokens": target_tokens,
        "target_gap_batches": target_batches,
        "gap_tokens_all": all_tokens,
        "gap_batches_all": all_batches,
        "gap_histogram": stats.log_histogram(stats.gaps(np.concatenate([placed, natural]))),
        "probe_collisions_placed": tally.placed_probes,
        "passed": not problems,
        "problems": problems,
    }


def audit_mixture(
    out_dir: str,
    skills: Sequence[SkillSpec | dict[str, Any]],
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    progress: Progress | None = None,
    progress_range: tuple[float, float] = (0.0, 1.0),
    plots: bool = True,
    kept_rows: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Re-scan the mixture in `out_dir`; returns the audit (also written to audit.json).

    `skills` must include every skill of the manifest; the others given are audited for
    their natural instances (after the manifest's, in the order given). `kept_rows` are
    rows of other skills an earlier audit of this mixture made (the mixture does not
    change): they stay in the audit, after these. Never raises for a miss: read `passed`
    (build_mixture raises AuditFailed).
    """
    manifest = read_manifest(out_dir)
    given = {s.id: s for s in (SkillSpec.model_validate(s) for s in skills)}
    missing = sorted(set(manifest["skills"]) - set(given))
    if missing:
        raise ValueError(f"the audit needs the mixture's skills; missing: {', '.join(missing)}")
    tokenizer = mixture_tokenizer(out_dir, manifest)
    order = [*manifest["skills"], *(sid for sid in given if sid not in manifest["skills"])]
    scanner = _Scanner(manifest, [given[sid] for sid in order], tokenizer)
    lo, hi = progress_range
    n = manifest["n_batches"]
    with open(os.path.join(out_dir, COMPOSITION), encoding="utf-8") as composition:
        batches = zip(_batches(out_dir, manifest), composition, strict=True)
        for b, (tokens, line) in enumerate(batches):
            scanner.batch(b, tokens, json.loads(line))
            if progress and (b % 50 == 49 or b == n - 1):
                progress(lo + (hi - lo) * 0.9 * (b + 1) / n, f"audited batch {b + 1:,} / {n:,}")
    scanner._close()
    report = {
        "tolerance": tolerance,
        "rule": RULE,
        "n_batches": n,
        "tokens": manifest["tokens"],
        "shards": _check_shards(out_dir, manifest),
        "skills": {  # with names, for the people reading the audit and its plots
            sid: {"name": given[sid].name, **_skill_report(sid, tally, manifest, tolerance)}
            for sid, tally in scanner.tallies.items()
        },
    }
    for sid, row in (kept_rows or {}).items():
        report["skills"].setdefault(sid, row)
    report["passed"] = report["shards"]["ok"] and all(
        s["passed"] for s in report["skills"].values()
    )
    if plots:
        from curation.mixture.plots import plot_composition, plot_gaps

        per_batch = {
            sid: {"planned": t.planned, "placed": t.verified, "natural": t.natural_per_batch}
            for sid, t in scanner.tallies.items()
        }
        report["artifacts"] = {
            "composition.png": plot_composition(report, per_batch, out_dir),
            "gaps.png": plot_gaps(report, manifest, out_dir),
        }
    write_json(os.path.join(out_dir, AUDIT), report, indent=1)
    return report
