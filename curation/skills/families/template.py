"""Templates like "{a} + {b} mod {m} = {c}": render instances, detect and parse them back.

The last field of a template is the answer; everything before it, stripped, is
the prompt. The detector pattern is the template with its literal text escaped
(a whitespace run matches any whitespace run, as keys are normalised anyway) and
each field replaced by the RE2 pattern of its values.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter

import re2

from curation.skills.instance import Instance
from curation.skills.regex import re2_options


@dataclass(frozen=True)
class Field:
    """A template field: the RE2 pattern of its values, and whether they are made of word chars."""

    pattern: str
    word: bool = True


def template_fields(template: str) -> list[tuple[str, str]]:
    """The template as (literal text, field name) pairs; the last field name may be ""."""
    pieces = []
    for literal, name, spec, conversion in Formatter().parse(template):
        if spec or conversion:
            raise ValueError(f"template field {{{name}}} must not have a format spec or conversion")
        pieces.append((literal, name or ""))
    return pieces


def check_template(template: str, required: set[str], optional: set[str], answer: str) -> str:
    """Validate a template's fields; raises ValueError naming what is wrong."""
    try:
        pieces = template_fields(template)
    except ValueError as exc:
        raise ValueError(f"template {template!r} is malformed: {exc}") from None
    names = [name for _, name in pieces if name]
    for name in names:
        if name not in required | optional:
            known = ", ".join("{" + n + "}" for n in sorted(required | optional))
            raise ValueError(f"template field {{{name}}} is unknown; fields are {known}")
        if names.count(name) > 1:
            raise ValueError(f"template field {{{name}}} appears more than once")
    missing = sorted(required - set(names))
    if missing:
        raise ValueError(f"template must contain {', '.join('{' + n + '}' for n in missing)}")
    if names[-1] != answer or pieces[-1][1] != answer:
        raise ValueError(f"template must end with the answer field {{{answer}}}")
    if not pieces[0][0].strip() and pieces[0][1] == answer:
        raise ValueError("template needs a prompt before the answer")
    return template


def render(pieces: list[tuple[str, str]], values: dict[str, str], answer: str) -> Instance:
    """The instance for field `values`; its prompt is the text before the answer, stripped."""
    text = "".join(literal + (values[name] if name else "") for literal, name in pieces)
    prompt = "".join(
        literal + (values[name] if name and name != answer else "") for literal, name in pieces
    )
    return Instance.build(prompt.strip(), values[answer], text)


_BLANKS = "\\s+"


def _literal_pattern(literal: str) -> str:
    """Escaped literal text in which any whitespace run matches any other (as keys normalise)."""
    if not literal:
        return ""
    pattern = _BLANKS.join(re2.escape(word) for word in literal.split())
    if literal[0].isspace():
        pattern = _BLANKS + pattern
    if literal[-1].isspace() and literal.strip():
        pattern += _BLANKS
    return pattern


class Template:
    """A checked template plus the RE2 pattern of each field."""

    def __init__(self, template: str, fields: dict[str, Field], answer: str):
        self.pieces = template_fields(template)
        self.answer = answer
        parts = []
        for literal, name in self.pieces:
            parts.append(_literal_pattern(literal))
            if name:
                parts.append(f"(?P<{name}>{fields[name].pattern})")
        literal, name = self.pieces[0]
        starts_word = _is_ascii_word(literal[0]) if literal else fields[name].word
        ends_word = fields[answer].word  # a checked template ends with its answer field
        self.pattern = (
            ("\\b" if starts_word else "") + "".join(parts) + ("\\b" if ends_word else "")
        )
        self._regexp = re2.compile(self.pattern, re2_options())

    def render(self, values: dict[str, str]) -> Instance:
        return render(self.pieces, values, self.answer)

    def parse(self, text: str) -> tuple[str, str] | None:
        """(prompt, answer) of a rendered instance, or None if `text` is not one."""
        match = self._regexp.fullmatch(text)
        if match is None:
            return None
        group = self._regexp.groupindex[self.answer]  # re2 matches take group numbers only
        return text[: match.start(group)].strip(), match.group(group)

    def values(self, text: str) -> dict[str, str] | None:
        """Field name -> value of a rendered instance, or None if `text` is not one."""
        match = self._regexp.fullmatch(text)
        if match is None:
            return None
        return {name: match.group(group) for name, group in self._regexp.groupindex.items()}


def _is_ascii_word(char: str) -> bool:
    """Word character as RE2's \\b sees it."""
    return char.isascii() and (char.isalnum() or char == "_")
