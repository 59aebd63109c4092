"""Texts as the byte-level tokens skillmix counts: UTF-8 lengths and byte offsets.

The ground floor of `curation` (imports nothing of it): the scan's readers and steps,
the token units and the mixture's repeat pool and audit all measure text this way.
"""

from __future__ import annotations

from collections.abc import Iterable

UTF8 = "utf-8"
ENCODE_ERRORS = "surrogatepass"  # a lone surrogate from JSON still has a byte length


def byte_len(text: str) -> int:
    """Token count of a text in byte-level tokens: its UTF-8 length."""
    return len(text.encode(UTF8, ENCODE_ERRORS))


def char_to_byte_offsets(text: str, offsets: Iterable[int]) -> dict[int, int]:
    """Map character offsets in `text` to UTF-8 byte offsets, in one pass over the text."""
    wanted = sorted(set(offsets))
    if text.isascii():
        return {o: o for o in wanted}
    result, position, previous = {}, 0, 0
    for offset in wanted:
        position += byte_len(text[previous:offset])
        result[offset] = position
        previous = offset
    return result
