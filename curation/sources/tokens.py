"""Token units for scans: byte-level by default, or bytes-per-token calibrated on a sample.

Exact BPE tokenization is about 100x slower than reading, so a scan counts
UTF-8 bytes (1 byte = 1 token) and, when asked for a named tokenizer, converts
with a ratio measured on a sample of documents. The tokenizer is loaded from a
local path only; nothing is downloaded at run time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from curation import stats
from curation.sources.records import Record, RecordFile
from curation.text import byte_len

TokenCounter = Callable[[str], int]


def load_local_tokenizer(path: str) -> TokenCounter:
    """A function counting tokens of a text with the tokenizer saved at `path`.

    `path` is a tokenizer.json file or a folder holding one (tokenizers), or a
    folder saved by transformers' `save_pretrained`.
    """
    if not os.path.exists(path):
        raise ValueError(
            f"tokenizer path {path} does not exist; tokenizers are loaded from local files only"
        )
    file = _tokenizer_json(path)
    from tokenizers import Tokenizer  # a dependency of skillmix itself

    if os.path.isfile(file):
        tok = Tokenizer.from_file(file)
        return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ValueError(
            f"cannot load the tokenizer at {path}: it holds no tokenizer.json; install "
            "`transformers` for other saved tokenizers, or use tokens='bytes'"
        ) from e
    hf_tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return lambda text: len(hf_tok(text, add_special_tokens=False)["input_ids"])


def sample_texts(files: list[str], fmt: str, text_key: str, n_docs: int = 200) -> list[str]:
    """Up to `n_docs` texts from the start of the first (up to 10) files, spread evenly."""
    chosen = files[:10]
    per_file = max(1, n_docs // max(1, len(chosen)))
    texts: list[str] = []
    for path in chosen:
        taken = 0
        for record in RecordFile(path, fmt, text_key):
            if isinstance(record, Record) and record.text:
                texts.append(record.text)
                taken += 1
            if taken >= per_file or len(texts) >= n_docs:
                break
    return texts


def calibrate(texts: list[str], count_tokens: TokenCounter, name: str) -> dict[str, Any]:
    """Bytes per token over `texts` with its standard error (documents as sampled units)."""
    ratio, stderr = stats.ratio_estimate(
        [byte_len(t) for t in texts], [count_tokens(t) for t in texts]
    )
    return {
        "mode": "tokenizer",
        "tokenizer": name,
        "bytes_per_token": ratio,
        "stderr": stderr,
        "sample_docs": len(texts),
    }


BYTES_UNIT: dict[str, Any] = {"mode": "bytes", "bytes_per_token": 1.0, "stderr": 0.0}


def token_unit(
    tokens: str | TokenCounter, files: list[str], fmt: str, text_key: str, sample_docs: int = 200
) -> dict[str, Any]:
    """The token unit a scan reports in: "bytes", a local tokenizer path, or a counting function."""
    if tokens == "bytes":
        return dict(BYTES_UNIT)
    counter = load_local_tokenizer(tokens) if isinstance(tokens, str) else tokens
    name = tokens if isinstance(tokens, str) else getattr(tokens, "__name__", "custom")
    texts = sample_texts(files, fmt, text_key, sample_docs)
    if not texts:
        raise ValueError("no documents with text to calibrate the tokenizer on")
    unit = calibrate(texts, counter, name)
    if isinstance(tokens, str) and os.path.isfile(file := _tokenizer_json(tokens)):
        # Its identity: a mixture in this tokenizer is planned from this scan only if the
        # file is the same (curation.mixture.plan).
        from curation.mixture.tokenizer import sha256_of

        unit["sha256"] = sha256_of(file)
    return unit


def _tokenizer_json(path: str) -> str:
    return os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
