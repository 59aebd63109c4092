from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from curation.skills.probes import probe_instances
from training.data import open_mixture
from training.evaluate import (
    EOS,
    IGNORE,
    Evaluator,
    encode_answers,
    heldout_sequences,
    retention_pairs,
    score_answers,
)
from training.model import GPT, ModelConfig

PAIRS = [
    ("capital of France : Paris", "Paris"),
    ("capital of Japan : Tokyo", "Tokyo"),
    ("capital of Peru : Lima", "Lima"),
    ("cmp 47 52 : <", "<"),
    ("cmp 90 12 : >", ">"),
    ("colour of snow : white", "white"),
]


def test_encode_answers_targets_only_the_answer_bytes():
    answers = encode_answers([("cmp 47 52 : <", "<"), ("2 + 2 = 4", "4")], max_len=31)
    x, y = answers.inputs[0], answers.targets[0]
    text = list(b"cmp 47 52 : <")
    assert x[:12].tolist() == text[:-1]
    assert y[11].item() == ord("<") and (y[:11] == IGNORE).all()
    assert y[12].item() == EOS and (y[13:] == IGNORE).all()  # the answer's end is required
    assert x[12].item() == ord("<")
    assert (answers.inputs[1, 9:] == EOS).all()  # right padding
    no_end = encode_answers([("cmp 47 52 : <", "<")], max_len=31, ends=[False])
    assert (no_end.targets[0, 12:] == IGNORE).all()
    with pytest.raises(ValueError, match="does not fit"):
        encode_answers([("x" * 40 + " y", "y")], max_len=31)


def _greedy_correct(model: GPT, text: str, answer: str) -> bool:
    """Greedy decoding emits the answer's bytes and then the end (EOS)."""
    tokens = list(text[: -len(answer)].encode())
    wanted = [*answer.encode(), EOS]
    for _ in wanted:
        with torch.no_grad():
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[-len(wanted) :] == wanted


def test_a_model_trained_to_memorise_a_tiny_set_scores_one_and_matches_greedy():
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_embd=32, n_layer=1, n_head=2, block_size=32))
    answers = encode_answers(PAIRS, max_len=31)
    full = torch.cat([answers.inputs, torch.full((len(PAIRS), 1), EOS)], dim=1)
    for i, (text, _) in enumerate(PAIRS):
        full[i, : len(text)] = torch.tensor(list(text.encode()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = score_answers(model, answers, batch_size=4)
    checked_midway = False
    for step in range(300):
        loss = F.cross_entropy(model(full[:, :-1]).flatten(0, 1), full[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 15:  # partly trained: teacher-forced argmax agrees with greedy decoding
            got = score_answers(model, encode_answers(PAIRS[:1], 31), 1)["acc"]
            assert got == float(_greedy_correct(model, *PAIRS[0]))
            checked_midway = True
    after = score_answers(model, answers, batch_size=4)
    assert checked_midway and before["acc"] < 1.0
    assert after["acc"] == 1.0 and after["loss"] < before["loss"]
    assert all(_greedy_correct(model, t, a) for t, a in PAIRS)


def test_heldout_sequences_from_documents_and_tokens():
    rows = heldout_sequences(["abc", "defgh"], seq_len=4, cap=100)
    assert rows.tolist() == [[97, 98, 99, EOS], [100, 101, 102, 103]]
    flat = np.arange(10, dtype=np.uint16)
    assert heldout_sequences(flat, seq_len=3, cap=7).shape == (2, 3)


def test_retention_pairs_need_a_gap_and_stay_inside_the_run():
    assert retention_pairs([0, 1, 5, 9, 20], n_steps=12, cap=10) == [(1, 2, 5), (5, 6, 9)]
    pairs = retention_pairs(list(range(0, 1000, 10)), n_steps=1000, cap=5)
    assert len(pairs) == 5 and pairs[0] == (0, 1, 10) and pairs[-1] == (980, 981, 990)
    assert retention_pairs([3], n_steps=10, cap=5) == []


def test_evaluator_reads_seen_instances_and_exposures(mixture_dir, eval_spec):
    mixture = open_mixture(mixture_dir)
    evaluator = Evaluator.build(eval_spec, mixture, n_steps=30)
    assert len(evaluator.probes["cmp"]) == 32 and len(evaluator.seen["cmp"]) == 16
    # exposures every 3rd batch; the last pair's "before" is the end of the run
    assert evaluator.pairs["cmp"] == [(b, b + 1, b + 3) for b in range(0, 28, 3)]
    steps = evaluator.retention_steps()
    assert steps[1] == ["cmp"] and 2 not in steps
    keys = {r["key"] for r in mixture.instances("cmp")}
    probe_keys = {i.key for i in probe_instances(eval_spec.skills[0])}
    assert keys and not keys & probe_keys
