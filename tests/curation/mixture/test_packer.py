"""The packer: placements start sequences, corpus text is cut exactly, nothing is lost."""

import pytest

from curation.mixture.format import EOS
from curation.mixture.packer import CorpusExhausted, Packer, clean
from curation.mixture.supply import Placement


def tokens(pieces):
    return [t for p in pieces for t in [*p.data, *[EOS] * p.eos]]


def corpus(*texts):
    return iter([(f"d{i}", t) for i, t in enumerate(texts)])


def instance(text="cmp 1 2 : <"):
    return Placement("s", "synthesize", "key", text, "s/key")


def test_corpus_only_is_the_documents_with_their_eos():
    packer = Packer(corpus("abc", "de", "fghij"), seq_len=4)
    pieces = list(packer.fill(13))
    assert tokens(pieces) == [*b"abc", EOS, *b"de", EOS, *b"fghij", EOS]
    assert [p.start for p in pieces] == [0, 4, 7]
    assert packer.pos == 13 and packer.padding == 0 and packer.corpus_tokens == 13


def test_a_placement_starts_the_next_sequence_and_the_document_continues_after_it():
    packer = Packer(corpus("abcdefghij", "xyz"), seq_len=4)
    pieces = list(packer.place(instance("ii"), target=8)) + list(packer.fill(16))
    assert tokens(pieces) == [*b"abcdefgh", *b"ii", EOS, *b"ij", EOS, *b"xy"]
    head, placed, rest = pieces[:3]
    assert (head.text, head.eos, head.start) == ("abcdefgh", 0, 0)
    assert (placed.text, placed.eos, placed.start, placed.source) == ("ii", 1, 8, "synthesize")
    assert (rest.text, rest.eos, rest.doc_id, rest.start) == ("ij", 1, "d0", 11)


def test_a_placement_due_mid_sequence_waits_for_the_next_sequence_start():
    packer = Packer(corpus("abcdefghij"), seq_len=4)
    list(packer.fill(5))
    pieces = list(packer.place(instance("zz"), target=0))
    assert pieces[-1].start == 8


def test_a_cut_inside_a_multibyte_character_is_padded_with_eos():
    text = "aé" + "bcdefgh"  # é is two bytes: a=0, é=1..2
    packer = Packer(corpus(text), seq_len=2)
    pieces = list(packer.place(instance("ii"), target=2))
    head, placed = pieces
    assert head.text == "a" and head.eos == 1 and head.tokens == 2
    assert placed.start == 2 and packer.padding == 1
    rest = next(packer.fill(100))
    assert rest.text == "ébcdefgh"
    assert all(p.text.encode() == p.data for p in [head, placed, rest])


def test_a_cut_right_before_the_eos_leaves_an_empty_last_piece():
    packer = Packer(corpus("abcd", "ef"), seq_len=4)
    pieces = list(packer.place(instance("ii"), target=4)) + list(packer.fill(11))
    assert [(p.text, p.eos) for p in pieces] == [("abcd", 0), ("ii", 1), ("", 1), ("ef", 1)]
    assert tokens(pieces)[:8] == [*b"abcd", *b"ii", EOS, EOS]


def test_a_lone_surrogate_becomes_a_replacement_character_of_the_same_byte_length():
    text, data = clean("a\ud800b")
    assert text == "a\ufffdb" and len(data) == len("a\ud800b".encode("utf-8", "surrogatepass"))


def test_running_out_of_corpus_is_an_error():
    packer = Packer(corpus("abc"), seq_len=4)
    with pytest.raises(CorpusExhausted, match="corpus ended"):
        list(packer.fill(10))
