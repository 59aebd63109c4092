from curation.text import byte_len, char_to_byte_offsets


def test_byte_offsets_of_non_ascii_text():
    text = "é XX ü XX"
    assert char_to_byte_offsets(text, [2, 4, 7, 9]) == {2: 3, 4: 5, 7: 9, 9: 11}
    assert char_to_byte_offsets("a XX", [2]) == {2: 2}


def test_a_lone_surrogate_has_a_byte_length():
    assert byte_len("é") == 2 and byte_len("a\ud800b") == 5
