"""The generated corpus depends on its arguments and the Python version, nothing else."""

from __future__ import annotations

import textwrap

import pytest

from curation.synthetic_corpus import background_paragraphs

PLANTED = (
    "A paragraph that only a library patching the standard library would bring, long enough "
    "to count as background prose."
)


@pytest.fixture
def fresh_paragraphs():
    background_paragraphs.cache_clear()
    yield
    background_paragraphs.cache_clear()


def test_background_text_ignores_what_the_process_imported_or_patched(
    fresh_paragraphs, monkeypatch
):
    # Importing torch replaces inspect.getfile with an undocumented function; this stands
    # for any such patch: in-process, the corpus would gain (or lose) a paragraph.
    clean = background_paragraphs()
    assert len(clean) > 1000

    def dedent(text: str) -> str:
        return text

    dedent.__doc__ = PLANTED
    monkeypatch.setattr(textwrap, "dedent", dedent)
    background_paragraphs.cache_clear()
    assert background_paragraphs() == clean
    assert PLANTED not in clean
