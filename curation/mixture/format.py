"""The mixture format's constants (docs/mixture-format.md), defined once.

`curation` writes mixtures with them and `training` reads mixtures with them (training
imports this module; curation never imports training).
"""

from __future__ import annotations

FORMAT_VERSION = 1
"""manifest.json's `format_version`; a reader refuses any other."""

TOKENIZER = "bytes"
"""Byte-level tokens: a document's UTF-8 bytes are its token ids (0..255)."""
EOS = 256
"""The token that ends every document."""
VOCAB_SIZE = 257
"""The 256 byte values and EOS."""
TOKEN_DTYPE = "<u2"
"""Token shards (`tokens-{k:05d}.bin`) are flat little-endian uint16 token ids."""

MANIFEST = "manifest.json"
COMPOSITION = "composition.jsonl"
"""One line per batch, in training order."""
INSTANCES = "instances.jsonl"
"""Every synthesized or repeated instance the mixture places."""
