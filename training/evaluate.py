"""What a run measures: skill readouts and loss, general held-out loss, forgetting.

Every skill readout comes from teacher-forced forward passes over the instance as a
mixture places it: its text from position 0, then the end of the document (EOS, which
the packer writes after every synthesized instance). Per instance:

- exact match (`acc`): the argmax at every answer position is the answer's next byte,
  and the argmax after the answer is EOS: the answer *and its end*, so a residue `5`
  gets no credit when the answer is `57`. This equals greedy decoding of the answer and
  its end with ties going to the lowest token id (torch.argmax), and costs one forward
  pass for a batch of instances. (An instance repeated from the corpus is followed by
  its document's own text, not EOS: its end is not required.)
- forced choice (`forced_choice`), only for families with a label set
  (`Family.labels()`): the label with the highest log-probability given the prompt is
  the answer. Each label is scored as a byte sequence: its bytes alone when the label
  set is prefix-free (`<` `>` `=`), else its bytes followed by EOS (residues: `5` is a
  prefix of `57`, so `5` is scored as "5 then the end"). Ties (log-probabilities within
  TIE_TOLERANCE of the best) share the credit: 1/m when the answer is among m tied
  labels, the expected score of breaking the tie at random, so a model that gives every
  label the same score scores exactly 1/k.
- format rate (`format_rate`): the probability mass on valid answers, the sum over the
  labels of p(label's sequence | prompt), with the sequences as above. The sequences are
  prefix-free, so these are disjoint events and the rate is at most 1: for one-byte
  labels it is the mass of the first answer byte on the labels; for multi-byte labels
  it is the probability that the answer is a whole label (and, when a label is a prefix
  of another, that it ends there).
- log-prob margin (`margin`): log p(correct label) - log p(best wrong label), nats;
  positive iff the forced choice is right (without ties).

In a mixture built with a Hugging Face tokenizer, "byte" above reads "token": text is
encoded with the mixture's own tokenizer (`MixtureReader.tokenizer`) as the mixture encoded
it, the prompt and answer together, and the answer's tokens are those from the token that
holds the answer's first character (with BPE, `" <"` is often one token holding the space
before the label). Each label is scored in that same context: every label is encoded into
the prompt, the context is the tokens all of them share before the answer, and a label's
sequence is its tokens after the context (then EOS when the sequences are not
prefix-free), per instance, so a multi-token label is scored token by token.

Instances whose answer is not a label (a repeated corpus instance parsed otherwise)
are left out of the label readouts. Readouts are also given per hard stratum
(`Family.stratum`: for example equal tens digits for two-digit comparison).

- held-out readouts: on the skill's probe instances (never placed in any mixture): the
  rule. Probe instances that occur naturally in the corpus the runs train on
  (`EvalSpec.exclude_probes`, found by `natural_probe_keys`) are left out of the sample:
  a model may have seen them;
- mid-row held-out readouts (`heldout_midrow_<readout>`): the same probe sample read
  after a fixed stretch of held-out corpus text, where a natural instance sits (mid-row),
  rather than at position 0 where a placed one does;
- seen readouts: on a sample of the instances placed in the batches this run trains on
  (instances.jsonl, by the composition's keys; the mixture's held-out tail is left out):
  memorisation; measured on the same sample at every eval, so early evals include
  instances not yet seen;
- answer loss: mean cross-entropy per answer byte (the end included where required),
  averaged over instances;
- general loss: next-token loss on held-out base-corpus text no arm trained on;
- forgetting (SCIENCE.md section 1): for consecutive exposure batches e < e' with a
  gap (e' > e + 1), the probe answer loss just after training on batch e (step
  e + 1) and just before batch e' (step e'); forgetting = mean(before - after). An
  exposure is a batch holding a placement or, where the mixture's audit located them
  (its `natural.batches`), a natural instance: so forgetting is measured for a
  natural-frequency baseline too (`exposures` says which were used).
"""

from __future__ import annotations

import functools
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from curation.mixture.format import EOS
from curation.mixture.tokenizer import BYTES, MixtureTokenizer
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
    exclude_probes: dict[str, list[str]] | None = None
    """Per skill id, match keys of probe instances to leave out of the probe sample (those
    that occur naturally in the training corpus: natural_probe_keys)."""
    midrow: bool = True
    """Also read the probe sample mid-row, after held-out text (needs `heldout`)."""

    def __post_init__(self) -> None:
        for name in ("n_probe", "n_seen", "n_retention_probe", "heldout_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"EvalSpec.{name} must be positive")
        if self.max_exposure_pairs < 0:
            raise ValueError("EvalSpec.max_exposure_pairs must be >= 0")


TIE_TOLERANCE = 1e-5
"""Label log-probabilities (nats) this close to the best count as tied for it."""
READOUTS = ("acc", "forced_choice", "format_rate", "margin")
"""Per-instance readouts, averaged over instances (see the module docstring)."""


@dataclass
class AnswerSet:
    """Prompt/answer pairs encoded for one teacher-forced pass.

    `label_index[i]`: the position of row i's answer in the skill's labels, -1 when the
    skill has none or the answer is not one; `strata[i]`: row i's hard stratum or None;
    `label_rows[i]`: row i's own label sequences (hf tokenizers, see `encode_answers`),
    None when every row shares the skill's `label_sequences`.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    label_index: torch.Tensor | None = None
    strata: list[str | None] = field(default_factory=list)
    label_rows: list[tuple[tuple[int, ...], ...]] | None = None
    pad: int = EOS

    def __len__(self) -> int:
        return len(self.inputs)

    def head(self, n: int) -> AnswerSet:
        index = None if self.label_index is None else self.label_index[:n]
        rows = None if self.label_rows is None else self.label_rows[:n]
        return AnswerSet(self.inputs[:n], self.targets[:n], index, self.strata[:n], rows, self.pad)

    def subset(self, mask: torch.Tensor) -> AnswerSet:
        """The rows where `mask` is true (their inputs, targets and label sequences)."""
        keep = mask.nonzero().flatten().tolist()
        rows = None if self.label_rows is None else [self.label_rows[i] for i in keep]
        return AnswerSet(self.inputs[mask], self.targets[mask], label_rows=rows, pad=self.pad)


def split_answer(
    tokenizer: MixtureTokenizer, prefix: str, answer: str
) -> tuple[list[int], list[int]]:
    """`prefix + answer` encoded as the mixture encodes it, cut before the token holding the
    answer's first character: (context tokens, answer tokens). Bytes: the two encodings."""
    if tokenizer.is_bytes:
        return list(prefix.encode()), list(answer.encode())
    ids, starts = tokenizer.token_starts(prefix + answer)
    cut = max(bisect_right(starts, len(prefix)) - 1, 0) if answer else len(ids)
    return ids[:cut], ids[cut:]


def label_rows(
    tokenizer: MixtureTokenizer, prefix: str, labels: Sequence[str]
) -> tuple[list[int], tuple[tuple[int, ...], ...]]:
    """One instance's context and label sequences for an hf tokenizer: each label encoded
    after `prefix`; the context is the tokens every encoding shares before its answer."""
    splits = [split_answer(tokenizer, prefix, label) for label in labels]
    context = splits[0][0]
    for head, _ in splits[1:]:
        n = 0
        while n < min(len(head), len(context)) and head[n] == context[n]:
            n += 1
        context = context[:n]
    seqs = [(head + tail)[len(context) :] for head, tail in splits]
    prefix_free = not any(a != b and b[: len(a)] == a for a in seqs for b in seqs)
    eos = [] if prefix_free else [tokenizer.eos]
    return context, tuple(tuple(seq + eos) for seq in seqs)


def encode_answers(
    pairs: Sequence[tuple[str, str]],
    max_len: int,
    ends: Sequence[bool] | None = None,
    tokenizer: MixtureTokenizer = BYTES,
    labels: Sequence[str] | None = None,
) -> AnswerSet:
    """(text, answer) pairs -> inputs and targets that are IGNORE outside the answer.

    The targets are the answer's tokens then EOS (the end), unless `ends[i]` is False.
    With an hf tokenizer and a label set (`labels`), a row whose answer is a label is cut
    where all labels' encodings part (`label_rows`), and carries its label sequences.
    """
    rows, per_row = [], []
    for i, (text, answer) in enumerate(pairs):
        prefix = text[: -len(answer)] if text.endswith(answer) else text + " "
        end = [tokenizer.eos] if ends is None or ends[i] else []
        choices: tuple[tuple[int, ...], ...] = ()
        if labels is not None and not tokenizer.is_bytes and answer in labels:
            head, choices = label_rows(tokenizer, prefix, labels)
            context, answer_ids = split_answer(tokenizer, prefix, answer)
            tail = (context + answer_ids)[len(head) :] + end
        else:
            head, tail = split_answer(tokenizer, prefix, answer)
            tail = tail + end
        per_row.append(choices)
        if not head or len(head) + len(tail) - 1 > max_len:
            raise ValueError(f"instance {text!r} does not fit a context of {max_len} tokens")
        rows.append((head + tail[:-1], [IGNORE] * (len(head) - 1) + tail))
    width = max((len(x) for x, _ in rows), default=1)
    inputs = torch.full((len(rows), width), tokenizer.eos, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        inputs[i, : len(x)] = torch.tensor(x)
        targets[i, : len(y)] = torch.tensor(y)
    hf_labels = labels is not None and not tokenizer.is_bytes
    return AnswerSet(inputs, targets, label_rows=per_row if hf_labels else None, pad=tokenizer.eos)


def label_sequences(labels: Sequence[str]) -> list[list[int]]:
    """Each label's byte sequence as forced choice scores it: its bytes, then EOS when one
    label is a proper prefix of another (so that the sequences are prefix-free)."""
    encoded = [list(label.encode()) for label in labels]
    prefix_free = not any(
        a != b and b[: len(a)] == a for a in encoded for b in encoded
    )  # fmt: skip
    return encoded if prefix_free else [seq + [EOS] for seq in encoded]


def _answer_starts(answers: AnswerSet) -> torch.Tensor:
    """Index of the position whose next-token prediction is each row's first answer byte."""
    return (answers.targets != IGNORE).int().argmax(1)


@torch.no_grad()
def label_logprobs(
    model: torch.nn.Module, answers: AnswerSet, sequences: list[list[int]], batch_size: int
) -> torch.Tensor:
    """(rows, labels): log p(label sequence | row's prompt), teacher-forced.

    One-byte sequences read the prompt's last position (one pass per batch of rows);
    longer ones take one row per (instance, label).
    """
    device = next(model.parameters()).device
    starts = _answer_starts(answers)
    if all(len(seq) == 1 for seq in sequences):
        tokens = torch.tensor([seq[0] for seq in sequences], device=device)
        out = []
        for lo in range(0, len(answers), batch_size):
            x = answers.inputs[lo : lo + batch_size].to(device)
            at = starts[lo : lo + batch_size].to(device)
            last = model(x).float()[torch.arange(len(x), device=device), at]
            out.append(F.log_softmax(last, -1)[:, tokens].cpu())
        return torch.cat(out)
    rows: list[tuple[list[int], list[int]]] = []
    for i in range(len(answers)):
        context = answers.inputs[i, : int(starts[i]) + 1].tolist()
        for seq in sequences:
            rows.append((context + seq[:-1], [IGNORE] * (len(context) - 1) + seq))
    scores = []
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo : lo + batch_size]
        width = max(len(x) for x, _ in chunk)
        x = torch.full((len(chunk), width), answers.pad, dtype=torch.long)
        y = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        for j, (xs, ys) in enumerate(chunk):
            x[j, : len(xs)], y[j, : len(ys)] = torch.tensor(xs), torch.tensor(ys)
        x, y = x.to(device), y.to(device)
        ce = F.cross_entropy(
            model(x).float().transpose(1, 2), y, ignore_index=IGNORE, reduction="none"
        )
        scores.append(-ce.sum(1).cpu())
    return torch.cat(scores).view(len(answers), len(sequences))


def _label_logprobs(
    model: torch.nn.Module, answers: AnswerSet, labels: list[list[int]], batch_size: int
) -> torch.Tensor:
    """label_logprobs with each row's own label sequences where it has them (hf
    tokenizers), rows with the same sequences scored together."""
    if answers.label_rows is None:
        return label_logprobs(model, answers, labels, batch_size)
    out = torch.empty(len(answers), len(answers.label_rows[0]))
    groups: dict[tuple[tuple[int, ...], ...], list[int]] = {}
    for i, seqs in enumerate(answers.label_rows):
        groups.setdefault(seqs, []).append(i)
    for seqs, rows in groups.items():
        mask = torch.zeros(len(answers), dtype=torch.bool)
        mask[rows] = True
        group = answers.subset(mask)
        out[mask] = label_logprobs(model, group, [list(s) for s in seqs], batch_size)
    return out


def choice_readouts(logprobs: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per row: forced-choice credit (ties share it), format rate and log-prob margin.

    `logprobs`: (rows, labels); `index`: each row's correct label (all >= 0).
    """
    rows = torch.arange(len(index))
    best = logprobs.max(1).values
    tied = logprobs >= (best - TIE_TOLERANCE).unsqueeze(1)
    credit = tied[rows, index].float() / tied.sum(1).float()
    correct = logprobs[rows, index]
    wrong = logprobs.clone()
    wrong[rows, index] = float("-inf")
    return {
        "forced_choice": credit,
        "format_rate": logprobs.exp().sum(1).clamp(max=1.0),
        "margin": correct - wrong.max(1).values,
    }


@torch.no_grad()
def score_answers(
    model: torch.nn.Module,
    answers: AnswerSet,
    batch_size: int,
    labels: list[list[int]] | None = None,
) -> dict[str, Any]:
    """Readouts (module docstring) and mean answer loss; per stratum under `strata`.

    Right padding cannot leak: the model is causal. `labels`: the label sequences
    (label_sequences) when the skill has a label set.
    """
    device = next(model.parameters()).device
    per_row: dict[str, list[torch.Tensor]] = {"acc": [], "loss": []}
    for start in range(0, len(answers), batch_size):
        x = answers.inputs[start : start + batch_size].to(device)
        y = answers.targets[start : start + batch_size].to(device)
        logits = model(x).float()
        mask = y != IGNORE
        ce = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE, reduction="none")
        per_row["loss"].append((ce.sum(1) / mask.sum(1)).cpu())
        per_row["acc"].append(((logits.argmax(-1) == y) | ~mask).all(1).float().cpu())
    values = {name: torch.cat(rows) for name, rows in per_row.items()}
    labelled = torch.zeros(len(answers), dtype=torch.bool)
    if labels is not None and answers.label_index is not None:
        labelled = answers.label_index >= 0
        if labelled.any():
            logprobs = _label_logprobs(model, answers.subset(labelled), labels, batch_size)
            for name, got in choice_readouts(logprobs, answers.label_index[labelled]).items():
                values[name] = torch.full((len(answers),), float("nan"))
                values[name][labelled] = got
    out = _means(values, torch.ones(len(answers), dtype=torch.bool), labelled)
    strata = [s for s in dict.fromkeys(answers.strata) if s is not None]
    if strata:
        out["strata"] = {
            name: _means(values, in_stratum, labelled & in_stratum)
            for name in strata
            for in_stratum in [torch.tensor([s == name for s in answers.strata])]
        }
    return out


def _means(
    values: dict[str, torch.Tensor], rows: torch.Tensor, labelled: torch.Tensor
) -> dict[str, Any]:
    """Each readout's mean over `rows` (label readouts over `labelled`; None if empty)."""
    out: dict[str, Any] = {"n": int(rows.sum())}
    for name in ("acc", "loss"):
        out[name] = values[name][rows].mean().item() if rows.any() else None
    for name in ("forced_choice", "format_rate", "margin"):
        got = values.get(name)
        out[name] = None if got is None or not labelled.any() else got[labelled].mean().item()
    return out


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


def heldout_sequences(
    heldout: Sequence[str] | np.ndarray, seq_len: int, cap: int, tokenizer: MixtureTokenizer = BYTES
) -> torch.Tensor:
    """Documents (their tokens + EOS each) or a flat token array, cut into at most cap
    tokens."""
    if isinstance(heldout, np.ndarray):
        flat = heldout.astype(np.int64).ravel()
    else:
        encoded = tokenizer.encode_batch(list(heldout))
        flat = np.concatenate([np.append(ids.astype(np.int64), tokenizer.eos) for ids in encoded])
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


def _encode(
    skill: SkillSpec,
    pairs: list[tuple[str, str]],
    max_len: int,
    ends: list[bool] | None = None,
    strata: list[str | None] | None = None,
    tokenizer: MixtureTokenizer = BYTES,
) -> AnswerSet:
    labels = None if skill.family is None else skill.family.labels()
    try:
        answers = encode_answers(pairs, max_len, ends, tokenizer, labels)
    except ValueError as exc:
        raise ValueError(f"skill {skill.id!r}: {exc} (the mixture's seq_len - 1)") from None
    if labels is not None:
        where = {label: i for i, label in enumerate(labels)}
        answers.label_index = torch.tensor([where.get(answer, -1) for _, answer in pairs])
    answers.strata = strata if strata is not None else [None] * len(pairs)
    return answers


MIDROW_CONTEXT = 32
"""Bytes of held-out text (at most) before a probe instance read mid-row."""


SPACE = ord(" ")


def _midrow(answers: AnswerSet, heldout: torch.Tensor, max_len: int) -> AnswerSet | None:
    """The probe rows shifted right behind a fixed stretch of held-out text (the start of
    the longest EOS-free run of its first row, cut after a space), as a natural instance
    sits; None when no stretch of at least 8 tokens fits the context. In a byte mixture the
    stretch is cut after a space; a tokenizer's tokens already end where words do."""
    eos = answers.pad  # the mixture's EOS (bytes: 256; an hf tokenizer's own)
    room = max_len - int((answers.inputs != eos).sum(1).max()) - 1
    size = min(MIDROW_CONTEXT, room)
    runs: list[list[int]] = [[]]
    for token in heldout[0].tolist():
        if token == eos:
            runs.append([])
        else:
            runs[-1].append(token)
    stretch = max(runs, key=len)[: max(0, size)]
    if eos == EOS and SPACE in stretch:
        stretch = stretch[: len(stretch) - stretch[::-1].index(SPACE)]
    if len(stretch) < 8:
        return None
    head = torch.tensor(stretch, dtype=torch.long).expand(len(answers), -1)
    inputs = torch.cat([head, answers.inputs], 1)
    targets = torch.cat([torch.full_like(head, IGNORE), answers.targets], 1)
    return replace(answers, inputs=inputs, targets=targets)


def instance_keys(skill: SkillSpec, instances: Sequence[Any]) -> list[str | None]:
    """Each instance's match key under the skill's detector (None where it finds none): the
    key a scan or audit reports for the same text in a corpus."""
    from curation.skills.matcher import SkillMatcher

    matcher = SkillMatcher([skill])
    keys: list[str | None] = []
    for instance in instances:
        found = matcher.find(instance.text).get(skill.id) or []
        keys.append(found[0].key if found else None)
    return keys


@functools.lru_cache(maxsize=16)
def _probe_keys(spec_json: str) -> tuple[str | None, ...]:
    skill = SkillSpec.model_validate_json(spec_json)
    return tuple(instance_keys(skill, probe_instances(skill)))


def probe_keys(skill: SkillSpec) -> list[str | None]:
    """instance_keys of the skill's whole probe set, in probe_instances order (cached)."""
    return list(_probe_keys(skill.model_dump_json()))


def natural_probe_keys(
    mixture: MixtureReader, skills: Sequence[SkillSpec], n_batches: int
) -> dict[str, dict[str, Any]]:
    """Per skill with probes: the probe instances that occur in the first `n_batches` of
    the mixture (its corpus text; placed instances are never probes, the audit checks):
    `keys` (their match keys, sorted) and `occurrences` (matches found)."""
    from curation.skills.matcher import SkillMatcher

    with_probes = [s for s in skills if s.generator is not None]
    if not with_probes:
        return {}
    keys_of = {s.id: set(probe_keys(s)) - {None} for s in with_probes}
    matcher = SkillMatcher(with_probes)
    flat = mixture.sequences(0, n_batches * mixture.seqs_per_batch).ravel()
    cuts = np.flatnonzero(flat == EOS)
    found: dict[str, set[str]] = {s.id: set() for s in with_probes}
    occurrences = dict.fromkeys(found, 0)
    for piece in np.split(flat, cuts):
        text = piece[piece < 256].astype(np.uint8).tobytes().decode("utf-8", "ignore")
        if not text:
            continue
        for sid, matches in matcher.find(text).items():
            for match in matches:
                if match.key in keys_of[sid]:
                    found[sid].add(match.key)
                    occurrences[sid] += 1
    return {sid: {"keys": sorted(found[sid]), "occurrences": occurrences[sid]} for sid in found}


def skill_labels(skill: SkillSpec) -> list[list[int]] | None:
    """The skill's label sequences for forced choice, or None without a label set."""
    labels = None if skill.family is None else skill.family.labels()
    return None if labels is None else label_sequences(labels)


def _readouts(prefix: str, scores: dict[str, Any]) -> dict[str, Any]:
    out = {f"{prefix}_{name}": scores.get(name) for name in (*READOUTS, "loss")}
    if prefix == "heldout":  # seen rows carry no strata (repeated rows may not parse)
        out["heldout_strata"] = scores.get("strata", {})
    return out


def _last_before(batches: Sequence[int], step: int) -> int | None:
    """The last of the ascending `batches` that a run has trained after `step` steps."""
    i = bisect_right(batches, step - 1)
    return batches[i - 1] if i else None


@dataclass
class Evaluator:
    """A run's eval sets, built once from the spec and the mixture."""

    spec: EvalSpec
    probes: dict[str, AnswerSet]
    seen: dict[str, AnswerSet]
    heldout: torch.Tensor | None
    pairs: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    labels: dict[str, list[list[int]] | None] = field(default_factory=dict)
    midrow: dict[str, AnswerSet] = field(default_factory=dict)
    exposures: dict[str, list[int]] = field(default_factory=dict)
    """Per skill: the batches holding a placement of it, ascending."""
    periods: dict[str, int] = field(default_factory=dict)
    """Per skill dosed `every {n, k}`: k (MixtureReader.dosing_periods)."""
    natural: dict[str, list[int] | None] = field(default_factory=dict)
    """Per skill: the batches holding a natural instance of it, as the mixture's audit
    located them (MixtureReader.natural_batches); None where it did not."""

    @classmethod
    def build(cls, spec: EvalSpec, mixture: MixtureReader, n_steps: int) -> Evaluator:
        ctx = mixture.seq_len - 1
        probes, seen, pairs, labels, exposed, natural = {}, {}, {}, {}, {}, {}
        for skill in spec.skills:
            rng = random.Random(SAMPLE_SEED)
            held = probe_instances(skill)
            drop = set((spec.exclude_probes or {}).get(skill.id, ()))
            if drop:
                keys = probe_keys(skill)
                held = [i for i, key in zip(held, keys, strict=True) if key not in drop]
            held = rng.sample(held, min(spec.n_probe, len(held)))
            placed = mixture.instances(skill.id, before_batch=n_steps)
            placed = rng.sample(placed, min(spec.n_seen, len(placed)))
            labels[skill.id] = skill_labels(skill)
            if held:
                family = skill.family
                assert family is not None  # a skill with probe instances has a generator
                strata = [family.stratum(i) for i in held]
                probes[skill.id] = _encode(
                    skill, [(i.text, i.answer) for i in held], ctx, strata=strata,
                    tokenizer=mixture.tokenizer,
                )  # fmt: skip
            if placed:
                # A repeated corpus instance is followed by its document, not by EOS.
                ends = [r.get("source") != "repeat" for r in placed]
                seen[skill.id] = _encode(
                    skill, [(r["text"], r["answer"]) for r in placed], ctx, ends,
                    tokenizer=mixture.tokenizer,
                )  # fmt: skip
            exposures = exposed[skill.id] = mixture.exposure_batches(skill.id)
            found = natural[skill.id] = mixture.natural_batches(skill.id)
            if found:  # any exposure ends a gap, a natural one too (a baseline has only those)
                exposures = sorted(set(exposures) | set(found))
            if skill.id in probes:
                pairs[skill.id] = retention_pairs(exposures, n_steps, spec.max_exposure_pairs)
        heldout = None
        if spec.heldout is not None and len(spec.heldout):
            heldout = heldout_sequences(
                spec.heldout, mixture.seq_len, spec.heldout_tokens, mixture.tokenizer
            )
            if not len(heldout):
                raise ValueError(
                    f"the held-out text is shorter than one {mixture.seq_len}-token row"
                )
        midrow = {}
        if spec.midrow and heldout is not None:
            for skill_id, answers in probes.items():
                moved = _midrow(answers, heldout, ctx)
                if moved is not None:
                    midrow[skill_id] = moved
        return cls(
            spec, probes, seen, heldout, pairs, labels, midrow, exposed, mixture.dosing_periods,
            natural,
        )  # fmt: skip

    def exposure_at(self, step: int) -> dict[str, dict[str, Any]]:
        """Per skill, where a reading after `step` steps (batches 0 .. step-1 trained) sits
        in its dosing: `period` (k of an `every {n, k}` dose, else None), `phase` (step mod
        k: 0 is one whole period after a dose, just before the next), `last_dose_batch` and
        `batches_since_dose`, the batches trained after the last batch holding a placement
        (0: the reading comes right after a dose; None: no dose yet); the same for the last
        natural instance the audit located (`last_natural_batch`, `batches_since_natural`),
        and `natural_located`: whether it located them (if not, both are None)."""
        out = {}
        for skill in self.spec.skills:
            period = self.periods.get(skill.id)
            last = _last_before(self.exposures.get(skill.id, []), step)
            natural = self.natural.get(skill.id)
            last_natural = None if natural is None else _last_before(natural, step)
            out[skill.id] = {
                "period": period,
                "phase": None if period is None else step % period,
                "last_dose_batch": last,
                "batches_since_dose": None if last is None else step - 1 - last,
                "natural_located": natural is not None,
                "last_natural_batch": last_natural,
                "batches_since_natural": None if last_natural is None else step - 1 - last_natural,
            }
        return out

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
        subset = self.probes[skill_id].head(self.spec.n_retention_probe)
        loss: float = score_answers(model, subset, self.spec.batch_size)["loss"]
        return loss

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        """Every skill's held-out and seen readouts and loss, and the general loss.

        Per skill: `heldout_<readout>` and `seen_<readout>` for each of READOUTS and
        `loss`, and `heldout_strata`: {stratum: {n, each readout, loss}}.
        """
        size = self.spec.batch_size
        skills = {}
        for skill in self.spec.skills:
            labels = self.labels.get(skill.id)
            held = self.probes.get(skill.id)
            seen = self.seen.get(skill.id)
            h = score_answers(model, held, size, labels) if held is not None else {}
            s = score_answers(model, seen, size, labels) if seen is not None else {}
            skills[skill.id] = _readouts("heldout", h) | _readouts("seen", s)
            if skill.id in self.midrow:
                m = score_answers(model, self.midrow[skill.id], size, labels)
                skills[skill.id] |= {f"heldout_midrow_{r}": m.get(r) for r in READOUTS}
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
                "exposures": "placed" if self.natural.get(skill_id) is None else "placed+natural",
                "n_pairs": len(rows),
                "forgetting": sum(diffs) / len(diffs) if diffs else None,
                "pairs": rows,
            }
        return out
