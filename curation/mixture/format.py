"""The mixture format's constants (docs/mixture-format.md), defined once.

`curation` writes mixtures with them and `training` reads mixtures with them (training
imports this module; curation never imports training). Exporters read a mixture's token
dtype and tokenizer from its manifest (`token_dtype`, `tokenizer`), never from these
defaults, since a mixture built with a user's tokenizer has its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FORMAT_VERSION = 1
"""manifest.json's `format_version`; a reader refuses any other."""

TOKENIZER = "bytes"
"""The default tokenizer kind, byte-level: a document's UTF-8 bytes are its token ids
(0..255). The manifest's `tokenizer.kind` is this or `HF_TOKENIZER`."""
HF_TOKENIZER = "hf"
"""A Hugging Face `tokenizers` tokenizer (tokenizer.json), copied into the mixture folder
as `TOKENIZER_FILE` and fingerprinted (`tokenizer.sha256`)."""
TOKENIZER_KINDS = (TOKENIZER, HF_TOKENIZER)
TOKENIZER_FILE = "tokenizer.json"
"""An `hf` mixture's own copy of its tokenizer, beside the manifest."""
EOS = 256
"""The token that ends every document of a byte-level mixture (an `hf` mixture's is
`manifest["tokenizer"]["eos"]`)."""
VOCAB_SIZE = 257
"""The 256 byte values and EOS (byte-level mixtures)."""

TOKEN_DTYPE = "<u2"
"""Byte-level token shards (`tokens-{k:05d}.bin`): flat little-endian uint16 token ids."""
TOKEN_DTYPES = {"uint16": "<u2", "uint32": "<u4"}
"""manifest.json's `token_dtype` -> the numpy dtype of its token shards (little-endian,
no header)."""
UINT16_VOCAB = 1 << 16
"""Vocabularies up to this size (ids 0..65535) are written as uint16, larger as uint32."""

MANIFEST = "manifest.json"
COMPOSITION = "composition.jsonl"
"""One line per batch, in training order."""
INSTANCES = "instances.jsonl"
"""Every synthesized or repeated instance the mixture places."""
AUDIT = "audit.json"
"""The build's audit (curation.mixture.audit): not part of the mixture's contract, but what
a trainer reads to locate natural instances."""


def token_dtype_name(vocab_size: int) -> str:
    """`uint16` for a vocabulary of at most 65,536 ids, else `uint32`."""
    return "uint16" if vocab_size <= UINT16_VOCAB else "uint32"


def manifest_dtype(manifest: Mapping[str, Any]) -> str:
    """The numpy dtype of a mixture's token shards, from its manifest (a manifest written
    before `token_dtype` existed is byte-level, uint16)."""
    name = manifest.get("token_dtype", "uint16")
    if name not in TOKEN_DTYPES:
        raise ValueError(f"token_dtype {name!r} is not one of {', '.join(TOKEN_DTYPES)}")
    return TOKEN_DTYPES[name]


def manifest_eos(manifest: Mapping[str, Any]) -> int:
    """The end-of-document token id of a mixture."""
    return int(manifest["tokenizer"]["eos"])
