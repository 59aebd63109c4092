from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.training.mixtures import EOS
from training.data import micro_batches, open_mixture


def test_batches_are_read_in_mixture_order(mixture_dir):
    mixture = open_mixture(mixture_dir)
    raw = np.fromfile(mixture_dir / "tokens-00000.bin", dtype="<u2").reshape(-1, 32)
    assert (mixture.n_batches, mixture.seqs_per_batch, mixture.seq_len) == (40, 4, 32)
    for b in (0, 7, 39):
        assert mixture.batch(b).tolist() == raw[4 * b : 4 * b + 4].tolist()
    with pytest.raises(IndexError):
        mixture.batch(40)


def test_placed_instances_start_their_sequences(mixture_dir):
    mixture = open_mixture(mixture_dir)
    composition = mixture.composition()
    assert len(composition) == 40 and composition[1] == {"batch": 1, "skills": {}}
    placed = composition[3]["skills"]["cmp"]
    texts = {r["key"]: r["text"] for r in mixture.instances("cmp")}
    for seq, key in zip(placed["sequences"], placed["keys"], strict=True):
        assert seq // mixture.seqs_per_batch == 3
        row = mixture.sequences(seq, seq + 1)[0].tolist()
        text = texts[key].encode()
        assert bytes(row[: len(text)]) == text and row[len(text)] == EOS
    assert mixture.exposure_batches("cmp") == list(range(0, 40, 3))


def test_shuffle_permutes_only_inside_a_batch_and_is_seeded(mixture_dir):
    mixture = open_mixture(mixture_dir)
    plain, a, b = mixture.batch(5), mixture.batch(5, shuffle_seed=1), mixture.batch(5, 1)
    assert torch.equal(a, b)
    assert sorted(map(tuple, a.tolist())) == sorted(map(tuple, plain.tolist()))
    assert any(not torch.equal(mixture.batch(i, 1), mixture.batch(i)) for i in range(10))


def test_batches_span_token_shards(mixture_dir, tmp_path):
    """A mixture may split its sequences over several shards; batch b is unchanged."""
    split = tmp_path / "split"
    split.mkdir()
    raw = (mixture_dir / "tokens-00000.bin").read_bytes()
    cut = 6 * 32 * 2  # 6 sequences: the middle of batch 1
    (split / "tokens-00000.bin").write_bytes(raw[:cut])
    (split / "tokens-00001.bin").write_bytes(raw[cut:])
    manifest = json.loads((mixture_dir / "manifest.json").read_text())
    manifest["shards"] = [
        {"path": "tokens-00000.bin", "kind": "tokens", "sequences": 6},
        {"path": "tokens-00001.bin", "kind": "tokens", "sequences": 154},
    ]
    (split / "manifest.json").write_text(json.dumps(manifest))
    original, sharded = open_mixture(mixture_dir), open_mixture(split)
    assert all(torch.equal(original.batch(b), sharded.batch(b)) for b in range(40))


def test_a_manifest_that_disagrees_with_the_shards_is_refused(mixture_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokens-00000.bin").write_bytes((mixture_dir / "tokens-00000.bin").read_bytes()[:-2])
    (bad / "manifest.json").write_text((mixture_dir / "manifest.json").read_text())
    with pytest.raises(ValueError, match="expected"):
        open_mixture(bad)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        open_mixture(tmp_path)


def test_micro_batches_split_rows():
    tokens = torch.arange(10).view(5, 2)
    assert [len(c) for c in micro_batches(tokens, 2)] == [2, 2, 1]
    assert micro_batches(tokens, None)[0] is tokens
