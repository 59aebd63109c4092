"""The tokenizer a mixture is built in: byte-level (the default) or a Hugging Face one.

    spec = TokenizerSpec(kind="hf", path="/data/tok/tokenizer.json")
    tok = load_tokenizer(spec)          # TokenizerError (a ValueError) says what is wrong
    tok.encode_batch(["a text", ...])   # token ids per text, no EOS (the packer adds it)

Everything a mixture promises (instances per batch, a placement at a sequence start,
gaps) is counted in this tokenizer's tokens, so the plan, the packer, the audit and
training all use the same object. An `hf` tokenizer is loaded from a local file only,
nothing is downloaded; its file's sha256 is its identity (`fingerprint`), recorded in
the scan's token unit and in the mixture's manifest. Batch encoding goes through
`tokenizers`' `encode_batch_fast`, which runs on all cores (Rust threads).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.mixture.format import (
    EOS,
    HF_TOKENIZER,
    TOKEN_DTYPES,
    TOKENIZER,
    TOKENIZER_FILE,
    VOCAB_SIZE,
    token_dtype_name,
)

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|im_end|>")
"""Special tokens taken as the end of a document when the request names none."""


class TokenizerError(ValueError):
    """A tokenizer that cannot be used; the message says what to change."""


class TokenizerSpec(BaseModel):
    """What a request names: `{"kind": "bytes"}` or `{"kind": "hf", "path": ...}`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["bytes", "hf"] = Field(
        "bytes", description="`bytes` (UTF-8 bytes, vocabulary 257) or `hf` (a "
        "Hugging Face `tokenizers` tokenizer.json).",
    )  # fmt: skip
    path: str | None = Field(
        None,
        max_length=4096,
        description="hf: a tokenizer.json, or a folder holding one, under an allowed root.",
    )
    eos_token: str | None = Field(
        None,
        max_length=200,
        description="hf: the token that ends a document; default: the folder's "
        "tokenizer_config.json eos_token, else a known special token (<|endoftext|>, </s>...).",
    )

    @model_validator(mode="after")
    def _path_for_hf(self) -> TokenizerSpec:
        if self.kind == HF_TOKENIZER and not self.path:
            raise ValueError("tokenizer kind 'hf' needs a path (a tokenizer.json or its folder)")
        if self.kind == TOKENIZER and (self.path or self.eos_token):
            raise ValueError("tokenizer kind 'bytes' takes no path or eos_token")
        return self


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class MixtureTokenizer:
    """A loaded tokenizer: ids per text, its EOS, vocabulary and token dtype."""

    kind: str
    vocab_size: int
    eos: int
    eos_token: str | None = None
    file: str | None = None
    sha256: str | None = None
    _tok: Any = field(default=None, repr=False)

    @property
    def is_bytes(self) -> bool:
        return self.kind == TOKENIZER

    @property
    def dtype_name(self) -> str:
        return token_dtype_name(self.vocab_size)

    @property
    def dtype(self) -> str:
        return TOKEN_DTYPES[self.dtype_name]

    def encode(self, text: str) -> list[int]:
        """Token ids of one text (no EOS, no special tokens)."""
        if self._tok is None:
            return list(text.encode("utf-8", "replace"))
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of many texts, in parallel on all cores for `hf`."""
        if self._tok is None:
            return [np.frombuffer(t.encode("utf-8", "replace"), np.uint8) for t in texts]
        # encode_batch_fast (tokenizers >= 0.21) skips the offsets the packer does not need
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        encodings = encode(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=self.dtype) for e in encodings]

    def token_starts(self, text: str) -> tuple[list[int], list[int]]:
        """(ids, the character offset where each token starts) of one text."""
        if self._tok is None:
            starts = [i for i, ch in enumerate(text) for _ in ch.encode("utf-8", "replace")]
            return list(text.encode("utf-8", "replace")), starts
        enc = self._tok.encode(text, add_special_tokens=False)
        return list(enc.ids), [start for start, _ in enc.offsets]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        if self._tok is None:
            return bytes(np.asarray(ids, dtype=np.uint8)).decode("utf-8", "ignore")
        return str(self._tok.decode([int(i) for i in ids], skip_special_tokens=False))

    def decode_batch(self, seqs: Sequence[Sequence[int] | np.ndarray]) -> list[str]:
        if self._tok is None:
            return [self.decode(s) for s in seqs]
        return list(self._tok.decode_batch([[int(i) for i in s] for s in seqs], False))

    def manifest(self) -> dict[str, Any]:
        """The manifest's `tokenizer` entry."""
        if self.is_bytes:
            return {"kind": TOKENIZER, "vocab_size": VOCAB_SIZE, "eos": EOS}
        return {
            "kind": HF_TOKENIZER,
            "vocab_size": self.vocab_size,
            "eos": self.eos,
            "eos_token": self.eos_token,
            "file": TOKENIZER_FILE,
            "sha256": self.sha256,
            "name": os.path.basename(self.file or TOKENIZER_FILE),
        }

    def copy_into(self, out_dir: str) -> None:
        """An `hf` tokenizer's file into the mixture folder, so the mixture stands alone."""
        if self.file is not None:
            from curation.atomic import copy_atomic

            copy_atomic(self.file, os.path.join(out_dir, TOKENIZER_FILE))


BYTES = MixtureTokenizer(TOKENIZER, VOCAB_SIZE, EOS)
"""The byte-level tokenizer."""


def _config_eos(folder: str) -> str | None:
    path = os.path.join(folder, "tokenizer_config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        token = json.load(f).get("eos_token")
    if isinstance(token, dict):  # transformers' AddedToken form
        token = token.get("content")
    return token if isinstance(token, str) else None


def tokenizer_file(path: str) -> str:
    """The tokenizer.json at `path` (a file, or a folder holding one); TokenizerError else."""
    if not os.path.exists(path):
        raise TokenizerError(f"tokenizer path {path} does not exist (tokenizers are local files)")
    file = os.path.join(path, TOKENIZER_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise TokenizerError(
            f"{path} holds no {TOKENIZER_FILE}; save the tokenizer with "
            "`tokenizer.save(path)` (tokenizers) or `save_pretrained` (transformers)"
        )
    return file


def load_hf(path: str, eos_token: str | None = None) -> MixtureTokenizer:
    """A `tokenizers` tokenizer.json (or a folder holding one) with its EOS token."""
    file = tokenizer_file(path)
    from tokenizers import Tokenizer  # a dependency of skillmix itself

    try:
        tok = Tokenizer.from_file(file)
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise TokenizerError(f"{file} is not a tokenizers tokenizer.json: {exc}") from None
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    name = eos_token or _config_eos(folder)
    if name is None:
        specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
        found = [c for c in EOS_CANDIDATES if c in specials or tok.token_to_id(c) is not None]
        if not found:
            raise TokenizerError(
                f"{file} has no end-of-document token (none of {', '.join(EOS_CANDIDATES)}); "
                "name the one it uses with tokenizer.eos_token"
            )
        name = found[0]
    eos = tok.token_to_id(name)
    if eos is None:
        raise TokenizerError(f"eos_token {name!r} is not in the vocabulary of {file}")
    return MixtureTokenizer(
        HF_TOKENIZER,
        tok.get_vocab_size(with_added_tokens=True),
        int(eos),
        name,
        file,
        sha256_of(file),
        tok,
    )


def load_tokenizer(spec: TokenizerSpec | dict[str, Any] | None) -> MixtureTokenizer:
    """The tokenizer a spec names (None: bytes)."""
    spec = TokenizerSpec.model_validate(spec or {})
    if spec.kind == TOKENIZER:
        return BYTES
    assert spec.path is not None
    return load_hf(spec.path, spec.eos_token)


def mixture_tokenizer(out_dir: str, manifest: dict[str, Any]) -> MixtureTokenizer:
    """The tokenizer a built mixture was made with, from its folder (checked by sha256)."""
    entry = manifest.get("tokenizer") or {"kind": TOKENIZER}
    if entry["kind"] == TOKENIZER:
        return BYTES
    if entry["kind"] != HF_TOKENIZER:
        raise ValueError(f"{out_dir}: tokenizer kind {entry['kind']!r} is not supported")
    file = os.path.join(out_dir, entry.get("file", TOKENIZER_FILE))
    tok = load_hf(file, entry.get("eos_token"))
    if entry.get("sha256") and tok.sha256 != entry["sha256"]:
        raise ValueError(f"{file} does not match the sha256 in the mixture's manifest")
    return tok
