"""Tokenizers made on the spot, for tests, benchmarks and demos: nothing is downloaded.

`train_bpe` trains a byte-level BPE with `tokenizers` on given texts and saves its
tokenizer.json, which is then loaded by path like a data team's own file (the same code
path). `wide_byte_tokenizer` is a byte-level tokenizer whose ids all lie above 65,535, to
exercise uint32 token shards without training a huge vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

EOS_TOKEN = "<|endoftext|>"


def _byte_level(model: Any) -> Any:
    from tokenizers import Tokenizer, decoders, pre_tokenizers

    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(
    texts: Iterable[str], vocab_size: int, path: str, eos_token: str | None = EOS_TOKEN
) -> str:
    """A byte-level BPE of `vocab_size` trained on `texts`, saved to `path` (a .json file
    or a folder, which gets tokenizer.json); returns the file. `eos_token=None` makes one
    without an end-of-document token."""
    from tokenizers import models, pre_tokenizers, trainers

    tok = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[eos_token] if eos_token else [],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return _save(tok, path)


def wide_byte_tokenizer(path: str, first_id: int = 70_000) -> str:
    """Byte-level tokens with ids first_id.. (no merges) and EOS_TOKEN; ids below first_id
    are fillers that never occur. Vocabulary first_id + 257."""
    from tokenizers import AddedToken, models, pre_tokenizers

    vocab = {f"<unused{i}>": i for i in range(first_id)}
    for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet())):
        vocab[char] = first_id + i
    tok = _byte_level(models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens([AddedToken(EOS_TOKEN, special=True)])
    return _save(tok, path)


def _save(tok: Any, path: str) -> str:
    file = os.path.join(path, "tokenizer.json") if not path.endswith(".json") else path
    os.makedirs(os.path.dirname(file) or ".", exist_ok=True)
    tok.save(file)
    return file
