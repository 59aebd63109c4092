"""Training on mixtures built in a BPE tokenizer (trained here on the test corpus, loaded by
path): probes and labels encoded as the mixture encoded them, multi-token labels scored
token by token, and a verification end to end."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from curation.corpus import CorpusSource
from curation.mixture import DosingPlan, build_mixture, plan_mixture
from curation.mixture.tokenizer import load_hf
from curation.scan import run_scan
from curation.skills.probes import probe_instances, sample_instances
from curation.skills.spec import SkillSpec
from curation.synthetic_corpus import Plant, generate_corpus
from curation.synthetic_tokenizer import train_bpe
from tests.training.mixtures import prose
from training.data import open_mixture
from training.evaluate import encode_answers, label_rows, score_answers
from training.model import GPT, ModelConfig
from training.verify import run_verification

MOD = SkillSpec.model_validate(
    {"id": "mod", "name": "mod", "detector": {"kind": "builtin"},
     "generator": {"family": "modular_addition", "params": {"modulus": 97}}}
)  # fmt: skip
CMP = SkillSpec.model_validate(
    {"id": "cmp", "name": "cmp", "detector": {"kind": "builtin"},
     "generator": {"family": "number_comparison"}}
)  # fmt: skip


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A BPE that merges digits and ' <': labels become one or several tokens."""
    texts = list(itertools.islice(prose(3), 200))
    texts += [i.text for s in (MOD, CMP) for i in sample_instances(s, 300, seed=1)]
    return load_hf(train_bpe(texts, 320, str(tmp_path_factory.mktemp("bpe"))))


def test_answers_and_labels_are_the_mixtures_own_tokens(bpe):
    instances = probe_instances(MOD)[:20]
    labels = MOD.family.labels()
    assert any(len(bpe.encode(" " + label)) > 1 for label in labels)  # multi-token labels
    answers = encode_answers(
        [(i.text, i.answer) for i in instances], 63, tokenizer=bpe, labels=labels
    )
    for row, instance in enumerate(instances):
        x, y = answers.inputs[row], answers.targets[row]
        n = int((y != -100).nonzero().max()) + 1
        # context + answer + EOS is exactly what the packer writes for a placed instance
        stream = [*x[:n].tolist(), int(y[n - 1])]
        assert stream == [*bpe.encode(instance.text), bpe.eos]
        prefix = instance.text[: -len(instance.answer)]
        context, seqs = label_rows(bpe, prefix, labels)
        assert answers.label_rows[row] == seqs
        for label, seq in zip(labels, seqs, strict=True):
            whole = [*context, *seq]
            assert whole[: len(bpe.encode(prefix + label))] == bpe.encode(prefix + label)


def test_multi_token_forced_choice_equals_the_sum_of_label_token_logprobs(bpe):
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=bpe.vocab_size, block_size=64, n_embd=16, n_layer=1,
                            n_head=2)).eval()  # fmt: skip
    instances = probe_instances(MOD)[:6]
    labels = MOD.family.labels()
    answers = encode_answers(
        [(i.text, i.answer) for i in instances], 63, tokenizer=bpe, labels=labels
    )
    answers.label_index = torch.tensor([labels.index(i.answer) for i in instances])
    got = score_answers(model, answers, 8, labels=[[0]])  # label_rows take precedence
    credit, margins = [], []
    for instance in instances:  # by hand: one forward pass per label
        prefix = instance.text[: -len(instance.answer)]
        context, seqs = label_rows(bpe, prefix, labels)
        scores = []
        for seq in seqs:
            ids = torch.tensor([[*context, *seq]])
            logp = F.log_softmax(model(ids[:, :-1]).float(), -1)[0]
            scores.append(sum(logp[len(context) - 1 + j, t].item() for j, t in enumerate(seq)))
        best = max(range(len(labels)), key=scores.__getitem__)
        right = labels.index(instance.answer)
        credit.append(float(best == right))
        margins.append(scores[right] - max(s for k, s in enumerate(scores) if k != right))
    assert got["forced_choice"] == pytest.approx(sum(credit) / len(credit))
    assert got["margin"] == pytest.approx(sum(margins) / len(margins), abs=1e-4)


def test_a_verification_trains_on_a_bpe_mixture_end_to_end(tmp_path, bpe):
    root = str(tmp_path)
    texts = tuple(i.text for i in sample_instances(CMP, 12, seed=5))
    made = generate_corpus(
        f"{root}/corpus", 300, [Plant("cmp", texts, every=6)], seed=2, format="jsonl.gz",
        n_files=1, mean_chars=300,
    )  # fmt: skip
    source = CorpusSource(made.uri, made.format, id_key="id")
    report = run_scan(
        source, [CMP], f"{root}/scan", allowed_roots=[root], batch_tokens=256, plots=False,
        tokens=bpe.file,
    )  # fmt: skip
    arms = {}
    for arm, doses in (("upweighted", {"cmp": {"target": {"per_batch": 2}}}), ("baseline", {})):
        dosing = DosingPlan(batch_tokens=256, seq_len=32, skills=doses, max_batches=30,
                            tokenizer={"kind": "hf", "path": bpe.file})  # fmt: skip
        plan = plan_mixture(report, [CMP], dosing)
        build_mixture(source, [CMP], plan, f"{root}/{arm}", allowed_roots=[root], plots=False)
        arms[arm] = f"{root}/{arm}"
    mixture = open_mixture(arms["upweighted"])
    assert mixture.vocab_size == bpe.vocab_size and mixture.tokenizer.sha256 == bpe.sha256
    assert int(mixture.batch(0).max()) < bpe.vocab_size
    from training.trainer import TrainConfig

    result = run_verification(
        arms, [CMP], ["nano"], [0], 20 * 256, 10, None, "cpu", tmp_path / "verify",
        heldout_docs=list(itertools.islice(prose(1, "heldout"), 5)),
        config=TrainConfig(n_embd=16, n_layer=1, n_head=2, eval_every=10, warmup=2),
        eval_options={"n_probe": 32, "n_seen": 16, "heldout_tokens": 1024},
    )  # fmt: skip
    verdicts = {v["arm"]: v for v in result["verdicts"]}
    assert set(verdicts) == {"upweighted", "baseline"}
    for row in verdicts.values():
        assert (
            row["metric"] == "forced_choice" and 0 <= row["readouts"]["forced_choice"]["mean"] <= 1
        )
        assert 0 < row["readouts"]["format_rate"]["mean"] <= 1 and row["mean_general_loss"] > 0
    for run in result["runs"]:
        assert run["steps"] == 20
    model = result["runs"][0]
    assert model["n_params"] > bpe.vocab_size * 16  # the embedding is sized to the tokenizer
