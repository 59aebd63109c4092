"""Instances of a skill and the keys that identify them.

Two keys, both hex BLAKE2b digests of normalised text (whitespace runs collapsed
to one space, stripped, lowercased), so that trivially reformatted copies of an
instance count as the same instance:

- the canonical key of an instance, from its prompt and answer, decides its
  probe/train split (see `probes.py`);
- the match key of a detector match, from the matched text alone, is what a
  scan can compute for any corpus hit; a probe collision is a corpus match key
  equal to the match key of a rendered probe instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b

KEY_BYTES = 16
_FIELD_SEPARATOR = "\x1f"  # ASCII unit separator; str.split() treats it as whitespace


def normalise(text: str) -> str:
    """Collapse whitespace runs to one space, strip, lowercase."""
    return " ".join(text.split()).lower()


def _digest(text: str) -> str:
    return blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).hexdigest()


def canonical_key(prompt: str, answer: str) -> str:
    """Key of an instance: hash of normalised prompt, a unit separator, normalised answer.

    Normalising each part first removes any separator inside them, so the join is
    unambiguous.
    """
    return _digest(normalise(prompt) + _FIELD_SEPARATOR + normalise(answer))


@lru_cache(maxsize=1 << 16)  # corpora repeat the same matched strings (keywords) a lot
def match_key(matched_text: str) -> str:
    """Key of a detector match: hash of the normalised matched text."""
    return _digest(normalise(matched_text))


@dataclass(frozen=True, slots=True)
class Instance:
    """One example of a skill: the model sees `prompt` and must produce `answer`."""

    prompt: str
    answer: str
    text: str
    key: str

    @classmethod
    def build(cls, prompt: str, answer: str, text: str) -> Instance:
        return cls(prompt=prompt, answer=answer, text=text, key=canonical_key(prompt, answer))
