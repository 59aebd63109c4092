"""What a run measures: skill accuracy and loss, general held-out loss, forgetting.

Exact match is measured by teacher-forced argmax over the answer positions: the
model reads the instance's text (from position 0, as a mixture places it), and
an instance counts as correct when the argmax at every answer position is the
answer's next byte. For exact match this equals greedy decoding of the answer's
bytes (greedy emits the answer iff each argmax, given the correct bytes so far,
is correct) and costs one forward pass for a whole batch of instances. The
answer's end (EOS) is not required.

- held-out accuracy: on the skill's probe instances (never in any mixture): the rule;
- seen accuracy: on a sample of instances.jsonl (placed in this run's mixture):
  memorisation; measured on the same sample at every eval, so early evals include
  instances not yet seen;
- answer loss: mean cross-entropy per answer byte, averaged over instances;
- general loss: next-token loss on held-out base-corpus text no arm trained on;
- forgetting (SCIENCE.md section 1): for consecutive exposure batches e < e' with a
  gap (e' > e + 1), the probe answer loss just after training on batch e (step
  e + 1) and just before batch e' (step e'); forgetting = mean(before - after).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from curation.mixture.format import EOS
from curation.skills.probes import probe_instances
from curation.skills.spec import SkillSpec
from training.data import MixtureReader

IGNORE = -100
SAMPLE_SEED = 0


@dataclass
class EvalSpec:
    """What to evaluate in a run, and how much of it."""

    skills: list[SkillSpec]
    """Skills to measure; probes come from their generators."""
    heldout: Sequence[str] | np.ndarray | None = None
    """Held-out base-corpus documents (str) or a flat token array, for the general loss."""
    n_probe: int = 256
    """Held-out probe instances per skill (a fixed random sample of the probe set)."""
    n_seen: int = 256
    """Seen instances per skill (a fixed random sample of instances.jsonl)."""
    n_retention_probe: int = 64
    """Probe instances used for the exposure-aligned loss (a prefix of the probe sample)."""
    max_exposure_pairs: int = 32
    """Cap on (after, before) pairs per skill; each costs two small evals."""
    heldout_tokens: int = 65_536
    """Cap on the general-loss tokens."""
    batch_size: int = 256
    """Rows per eval forward pass."""

    def __post_init__(self) -> None:
        for name in ("n_probe", "n_seen", "n_retention_probe", "heldout_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"EvalSpec.{name} must be positive")
        if self.max_exposure_pairs < 0:
            raise ValueError("EvalSpec.max_exposure_pairs must be >= 0")


@dataclass
class AnswerSet:
    """Prompt/answer pairs encoded for one teacher-forced pass."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.inputs)


def encode_answers(pairs: Sequence[tuple[str, str]], max_len: int) -> AnswerSet:
    """(text, answer) pairs -> inputs and targets that are IGNORE outside the answer."""
    rows = []
    for text, answer in pairs:
        prefix = text[: -len(answer)] if text.endswith(answer) else text + " "
        head, tail = list(prefix.encode()), list(answer.encode())
        if not head or len(head) + len(tail) - 1 > max_len:
            raise ValueError(f"instance {text!r} does not fit a context of {max_len} tokens")
        rows.append((head + tail[:-1], [IGNORE] * (len(head) - 1) + tail))
    width = max((len(x) for x, _ in rows), default=1)
    inputs = torch.full((len(rows), width), EOS, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        inputs[i, : len(x)] = torch.tensor(x)
        targets[i, : len(y)] = torch.tensor(y)
    return AnswerSet(inputs, targets)


@torch.no_grad()
def score_answers(model: torch.nn.Module, answers: AnswerSet, batch_size: int) -> dict[str, float]:
    """Exact-match accuracy and mean answer loss (right padding cannot leak: causal)."""
    device = next(model.parameters()).device
    correct, losses = [], []
    for start in range(0, len(answers), batch_size):
        x = answers.inputs[start : start + batch_size].to(device)
        y = answers.targets[start : start + batch_size].to(device)
        logits = model(x).float()
        mask = y != IGNORE
        ce = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE, reduction="none")
        losses.append(ce.sum(1) / mask.sum(1))
        correct.append(((logits.argmax(-1) == y) | ~mask).all(1))
    return {
        "acc": torch.cat(correct).float().mean().item(),
        "loss": torch.cat(losses).mean().item(),
    }


@torch.no_grad()
def sequence_loss(model: torch.nn.Module, tokens: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over (rows, seq_len) sequences."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for chunk in tokens.split(batch_size):
        chunk = chunk.to(device)
        logits = model(chunk[:, :-1]).float()
        loss = F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum")
        total += loss.item()
        count += chunk[:, 1:].numel()
    return total / max(count, 1)


def heldout_sequences(heldout: Sequence[str] | np.ndarray, seq_len: int, cap: int) -> torch.Tensor:
    """Documents (bytes + EOS each) or a flat token array, cut into at most cap tokens."""
    if isinstance(heldout, np.ndarray):
        flat = heldout.astype(np.int64).ravel()
    else:
        docs = [
            np.append(np.frombuffer(d.encode(), np.uint8).astype(np.int64), EOS) for d in heldout
        ]
        flat = np.concatenate(docs)
    rows = min(len(flat), cap) // seq_len
    return torch.from_numpy(flat[: rows * seq_len].astype(np.int64).reshape(rows, seq_len))


def retention_pairs(exposures: Sequence[int], n_steps: int, cap: int) -> list[tuple[int, int, int]]:
    """(exposure batch, step just after it, step just before the next exposure).

    Only gaps of at least one batch qualify, and only pairs inside the run's steps;
    at most `cap` pairs, spread evenly over training.
    """
    pairs = [
        (e, e + 1, nxt)
        for e, nxt in zip(exposures, exposures[1:], strict=False)
        if nxt > e + 1 and nxt <= n_steps
    ]
    if len(pairs) <= cap:
        return pairs
    return [pairs[round(i * (len(pairs) - 1) / max(cap - 1, 1))] for i in range(cap)]


def _encode(skill_id: str, pairs: list[tuple[str, str]], max_len: int) -> AnswerSet:
    try:
        return encode_answers(pairs, max_len)
    except ValueError as exc:
        raise ValueError(f"skill {skill_id!r}: {exc} (the mixture's seq_len - 1)") from None


@dataclass
class Evaluator:
    """A run's eval sets, built once from the spec and the mixture."""

    spec: EvalSpec
    probes: dict[str, AnswerSet]
    seen: dict[str, AnswerSet]
    heldout: torch.Tensor | None
    pairs: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)

    @classmethod
    def build(cls, spec: EvalSpec, mixture: MixtureReader, n_steps: int) -> Evaluator:
        ctx = mixture.seq_len - 1
        probes, seen, pairs = {}, {}, {}
        for skill in spec.skills:
            rng = random.Random(SAMPLE_SEED)
            held = probe_instances(skill)
            held = rng.sample(held, min(spec.n_probe, len(held)))
            placed = mixture.instances(skill.id)
            placed = rng.sample(placed, min(spec.n_seen, len(placed)))
            if held:
                probes[skill.id] = _encode(skill.id, [(i.text, i.answer) for i in held], ctx)
            if placed:
                seen[skill.id] = _encode(skill.id, [(r["text"], r["answer"]) for r in placed], ctx)
            exposures = mixture.exposure_batches(skill.id)
            if skill.id in probes:
                pairs[skill.id] = retention_pairs(exposures, n_steps, spec.max_exposure_pairs)
        heldout = None
        if spec.heldout is not None and len(spec.heldout):
            heldout = heldout_sequences(spec.heldout, mixture.seq_len, spec.heldout_tokens)
            if not len(heldout):
                raise ValueError(
                    f"the held-out text is shorter than one {mixture.seq_len}-token row"
                )
        return cls(spec, probes, seen, heldout, pairs)

    def retention_steps(self) -> dict[int, list[str]]:
        """step -> skills whose probe loss is measured after that step."""
        steps: dict[int, list[str]] = {}
        for skill_id, pairs in self.pairs.items():
            for _, after, before in pairs:
                for step in (after, before):
                    if skill_id not in steps.setdefault(step, []):
                        steps[step].append(skill_id)
        return steps

    def probe_loss(self, model: torch.nn.Module, skill_id: str) -> float:
        probes = self.probes[skill_id]
        n = self.spec.n_retention_probe
        subset = AnswerSet(probes.inputs[:n], probes.targets[:n])
        return score_answers(model, subset, self.spec.batch_size)["loss"]

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        """Every skill's held-out and seen accuracy and loss, and the general loss."""
        size = self.spec.batch_size
        skills = {}
        for skill in self.spec.skills:
            held = self.probes.get(skill.id)
            seen = self.seen.get(skill.id)
            h = score_answers(model, held, size) if held is not None else {}
            s = score_answers(model, seen, size) if seen is not None else {}
            skills[skill.id] = {
                "heldout_acc": h.get("acc"),
                "heldout_loss": h.get("loss"),
                "seen_acc": s.get("acc"),
                "seen_loss": s.get("loss"),
            }
        general = None if self.heldout is None else sequence_loss(model, self.heldout, size)
        return {"general_loss": general, "skills": skills}

    def retention(self, losses: dict[str, dict[int, float]]) -> dict[str, dict[str, Any]]:
        """Per skill: the measured pairs and forgetting = mean(loss_before - loss_after)."""
        out = {}
        for skill_id, pairs in self.pairs.items():
            got = losses.get(skill_id, {})
            rows = [
                {
                    "exposure_batch": e,
                    "after_step": a,
                    "before_step": b,
                    "loss_after": got[a],
                    "loss_before": got[b],
                }
                for e, a, b in pairs
                if a in got and b in got
            ]
            diffs = [r["loss_before"] - r["loss_after"] for r in rows]
            out[skill_id] = {
                "n_pairs": len(rows),
                "forgetting": sum(diffs) / len(diffs) if diffs else None,
                "pairs": rows,
            }
        return out
