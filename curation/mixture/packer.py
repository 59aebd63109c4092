"""The mixture's token stream: corpus documents with placements inserted at sequence starts.

Pure (documents in, pieces out). Tokens are bytes (ids 0..255) and every
document ends with EOS = 256. The stream is cut into sequences of `seq_len`.

A placement (a synthesized instance, or a whole repeated document) must start a
sequence, or follow other placements that share its row (`put`; a batch with more
placements than sequences, `schedule.shared_rows`). When it is due, the corpus
document in progress is cut exactly at the sequence boundary: its head ends the
previous sequence without an EOS (as any packed document cut by a sequence end),
the placement follows with its EOS, and the rest of the document continues after
it (after the placements sharing the row). If the boundary falls inside a
multi-byte UTF-8 character, the head ends before that character and the 1-3
tokens left before the boundary are EOS (`padding`), so every text piece is
valid UTF-8. Nothing else is ever added or dropped, except the corpus tail that
no longer fits at the end of the mixture.

Each `Piece` is one text record: `data` followed by `eos` EOS tokens.

With a Hugging Face tokenizer (`curation.mixture.tokenizer`), each document is encoded
whole (in batches of ENCODE_DOCS documents, `encode_batch_fast`, on all cores) and its
token ids are what is packed and cut: the cut falls between two tokens, so no padding is
ever needed, and the head's text is the document's text up to the character where the
rest's first token starts. The token shards hold the document's tokens exactly as
encoding it whole gave them; the text records of a cut document concatenate back to it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from curation.mixture.supply import Placement
from curation.mixture.tokenizer import BYTES, MixtureTokenizer

ENCODE_DOCS = 256
"""Documents encoded per `encode_batch_fast` call (hf tokenizers)."""
ENCODE_CHARS = 1 << 21
"""...or fewer, once they hold this many characters."""

_SURROGATES = re.compile("[\ud800-\udfff]")


class CorpusExhausted(RuntimeError):
    """The corpus ended before the mixture was full (it changed, or records were skipped)."""


def clean(text: str) -> tuple[str, bytes]:
    """Text and its UTF-8; a lone surrogate (possible in JSON) becomes U+FFFD.

    U+FFFD is 3 bytes, like the surrogate's own (surrogatepass) encoding the scan
    counted, so lengths agree with the scan.
    """
    try:
        return text, text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATES.sub("\ufffd", text)
        return text, text.encode("utf-8")


@dataclass(slots=True)
class Piece:
    """A text record: `data` (UTF-8) then `eos` EOS tokens, starting at token `start`."""

    start: int
    data: bytes
    eos: int
    doc_id: str
    source: str
    skill_id: str | None = None
    key: str | None = None
    known_text: str | None = None
    ids: np.ndarray | None = None
    """Token ids (hf tokenizers; `data` is then empty and `known_text` is the text)."""
    starts: np.ndarray | None = None
    """Character offset in `known_text` where each of `ids` starts (made at the first cut)."""

    @property
    def tokens(self) -> int:
        return (len(self.data) if self.ids is None else len(self.ids)) + self.eos

    @property
    def text(self) -> str:
        return self.known_text if self.known_text is not None else self.data.decode("utf-8")


def char_boundary(data: bytes, index: int) -> int:
    """The largest index <= `index` that does not split a UTF-8 character."""
    while 0 < index < len(data) and data[index] & 0xC0 == 0x80:
        index -= 1
    return index


def cut(piece: Piece, room: int) -> tuple[Piece, Piece]:
    """The head filling exactly `room` tokens (EOS-padded at a split character), and the rest."""
    at = char_boundary(piece.data, room)
    whole = at == len(piece.data)
    head = Piece(
        piece.start,
        piece.data[:at],
        room - at,
        piece.doc_id,
        piece.source,
        piece.skill_id,
        piece.key,
        piece.known_text if whole else None,
    )
    rest = Piece(0, piece.data[at:], piece.eos, piece.doc_id, piece.source, piece.skill_id)
    return head, rest


def cut_tokens(piece: Piece, room: int, tokenizer: MixtureTokenizer) -> tuple[Piece, Piece]:
    """A token piece cut after `room` tokens (no padding): the head, and the rest."""
    assert piece.ids is not None and piece.known_text is not None
    text, starts = piece.known_text, piece.starts
    if room >= len(piece.ids):  # only the EOS goes on to the next sequence
        starts = np.zeros(len(piece.ids) + 1, dtype=np.int64)
        starts[-1] = len(text)
    elif starts is None:
        ids, found = tokenizer.token_starts(text)
        if len(ids) != len(piece.ids):
            raise RuntimeError(
                "the tokenizer encodes a document differently one at a time than in a batch"
            )
        starts = np.asarray(found, dtype=np.int64)
    at = int(starts[room])
    head = Piece(
        piece.start, b"", 0, piece.doc_id, piece.source, piece.skill_id, piece.key,
        text[:at], piece.ids[:room],
    )  # fmt: skip
    rest = Piece(
        0, b"", piece.eos, piece.doc_id, piece.source, piece.skill_id, None, text[at:],
        piece.ids[room:], starts[room:] - at,
    )  # fmt: skip
    return head, rest


class Packer:
    """Builds the stream from `docs` ((id, text) in corpus order) and placements, in order."""

    def __init__(
        self, docs: Iterator[tuple[str, str]], seq_len: int, tokenizer: MixtureTokenizer = BYTES
    ):
        self.docs, self.seq_len, self.tokenizer = docs, seq_len, tokenizer
        self.pos = 0
        self.padding = 0
        self.corpus_tokens = 0
        self._rest: Piece | None = None
        self._encoded: deque[Piece] = deque()

    def _exhausted(self) -> CorpusExhausted:
        return CorpusExhausted(
            f"the corpus ended after {self.corpus_tokens:,} tokens, before the mixture "
            "was full; was it changed, or were bad records skipped?"
        )

    def _next(self) -> Piece:
        if self._rest is not None:
            piece, self._rest = self._rest, None
            return piece
        if not self.tokenizer.is_bytes:
            return self._next_encoded()
        try:
            doc_id, text = next(self.docs)
        except StopIteration:
            raise self._exhausted() from None
        text, data = clean(text)
        return Piece(0, data, 1, doc_id, "corpus", known_text=text)

    def _next_encoded(self) -> Piece:
        """The next document as token ids, encoding the documents ahead in batches."""
        if not self._encoded:
            batch: list[tuple[str, str]] = []
            chars = 0
            for doc_id, text in self.docs:
                batch.append((doc_id, clean(text)[0]))
                chars += len(text)
                if len(batch) == ENCODE_DOCS or chars >= ENCODE_CHARS:
                    break
            if not batch:
                raise self._exhausted()
            encoded = self.tokenizer.encode_batch([text for _, text in batch])
            self._encoded.extend(
                Piece(0, b"", 1, doc_id, "corpus", known_text=text, ids=ids)
                for (doc_id, text), ids in zip(batch, encoded, strict=True)
            )
        return self._encoded.popleft()

    def fill(self, end: int) -> Iterator[Piece]:
        """Corpus pieces up to token `end` exactly; the document in progress there is cut."""
        while self.pos < end:
            piece = self._next()
            room = end - self.pos
            if piece.tokens > room:
                if piece.ids is not None:
                    piece, self._rest = cut_tokens(piece, room, self.tokenizer)
                else:
                    piece, self._rest = cut(piece, room)
                self.padding += piece.eos
                self.corpus_tokens -= piece.eos
            piece.start = self.pos
            self.pos += piece.tokens
            self.corpus_tokens += piece.tokens
            yield piece

    def encode(self, placement: Placement) -> Piece:
        """The placement as a piece (its text, or token ids, then one EOS); not yet placed."""
        text, data = clean(placement.text)
        ids = None
        if not self.tokenizer.is_bytes:
            data, ids = b"", np.asarray(self.tokenizer.encode(text), dtype=self.tokenizer.dtype)
        return Piece(
            0, data, 1, placement.doc_id, placement.source, placement.skill_id,
            placement.key, text, ids,
        )  # fmt: skip

    def place(self, placement: Placement, target: int) -> Iterator[Piece]:
        """Corpus up to the first sequence start at or after `target`, then the placement."""
        yield from self.put([self.encode(placement)], target)

    def put(self, pieces: list[Piece], target: int) -> Iterator[Piece]:
        """Corpus up to the first sequence start at or after `target`, then `pieces` one after
        another (placements sharing a row: the caller made sure they fit in it)."""
        next_start = -(-self.pos // self.seq_len) * self.seq_len
        yield from self.fill(max(target, next_start))
        for piece in pieces:
            piece.start = self.pos
            self.pos += piece.tokens
            yield piece
