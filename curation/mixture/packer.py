"""The mixture's token stream: corpus documents with placements inserted at sequence starts.

Pure (documents in, pieces out). Tokens are bytes (ids 0..255) and every
document ends with EOS = 256. The stream is cut into sequences of `seq_len`.

A placement (a synthesized instance, or a whole repeated document) must start a
sequence. When it is due, the corpus document in progress is cut exactly at the
sequence boundary: its head ends the previous sequence without an EOS (as any
packed document cut by a sequence end), the placement follows with its EOS, and
the rest of the document continues after it. If the boundary falls inside a
multi-byte UTF-8 character, the head ends before that character and the 1-3
tokens left before the boundary are EOS (`padding`), so every text piece is
valid UTF-8. Nothing else is ever added or dropped, except the corpus tail that
no longer fits at the end of the mixture.

Each `Piece` is one text record: `data` followed by `eos` EOS tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from curation.mixture.supply import Placement

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

    @property
    def tokens(self) -> int:
        return len(self.data) + self.eos

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


class Packer:
    """Builds the stream from `docs` ((id, text) in corpus order) and placements, in order."""

    def __init__(self, docs: Iterator[tuple[str, str]], seq_len: int):
        self.docs, self.seq_len = docs, seq_len
        self.pos = 0
        self.padding = 0
        self.corpus_tokens = 0
        self._rest: Piece | None = None

    def _next(self) -> Piece:
        if self._rest is not None:
            piece, self._rest = self._rest, None
            return piece
        try:
            doc_id, text = next(self.docs)
        except StopIteration:
            raise CorpusExhausted(
                f"the corpus ended after {self.corpus_tokens:,} tokens, before the mixture "
                "was full; was it changed, or were bad records skipped?"
            ) from None
        text, data = clean(text)
        return Piece(0, data, 1, doc_id, "corpus", known_text=text)

    def fill(self, end: int) -> Iterator[Piece]:
        """Corpus pieces up to token `end` exactly; the document in progress there is cut."""
        while self.pos < end:
            piece = self._next()
            room = end - self.pos
            if piece.tokens > room:
                piece, self._rest = cut(piece, room)
                self.padding += piece.eos
                self.corpus_tokens -= piece.eos
            piece.start = self.pos
            self.pos += piece.tokens
            self.corpus_tokens += piece.tokens
            yield piece

    def place(self, placement: Placement, target: int) -> Iterator[Piece]:
        """Corpus up to the first sequence start at or after `target`, then the placement."""
        next_start = -(-self.pos // self.seq_len) * self.seq_len
        yield from self.fill(max(target, next_start))
        text, data = clean(placement.text)
        piece = Piece(
            self.pos, data, 1, placement.doc_id, placement.source, placement.skill_id,
            placement.key, text,
        )  # fmt: skip
        self.pos += piece.tokens
        yield piece
