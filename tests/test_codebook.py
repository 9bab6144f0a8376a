"""Codebook counts, canonical order, slot-table layout and invalid codings."""

import numpy as np
import pytest
from ternac.model.codebook import Codebook, Coding, TernacError


@pytest.mark.parametrize("n,k,count,bits", [
    (8, 2, 129, 8), (8, 1, 17, 5), (16, 3, 4993, 13), (4, 2, 33, 6), (8, 0, 1, 1), (4, 4, 81, 7),
])
def test_pattern_count_and_code_width(n, k, count, bits):
    coding = Coding(n, k)
    assert (coding.patterns, coding.code_bits) == (count, bits)
    book = Codebook.default(coding)
    assert len(book) == count
    assert len({row.tobytes() for row in book.patterns}) == count          # all distinct
    assert (np.count_nonzero(book.patterns, axis=1) <= k).all()


def test_canonical_order_of_8_2():
    p = Codebook.default(Coding(8, 2)).patterns
    assert not p[0].any()                                                   # code 0: all zero
    assert p[1].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]                        # one non-zero, lane 0, +
    assert p[2].tolist() == [-1, 0, 0, 0, 0, 0, 0, 0]                       # sign bit 0 set: -
    assert p[16].tolist() == [0, 0, 0, 0, 0, 0, 0, -1]
    assert p[17].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]                       # lanes (0,1), signs ++
    assert p[18].tolist() == [-1, 1, 0, 0, 0, 0, 0, 0]                      # s=1: first lane negative
    assert p[19].tolist() == [1, -1, 0, 0, 0, 0, 0, 0]
    assert p[20].tolist() == [-1, -1, 0, 0, 0, 0, 0, 0]
    assert p[128].tolist() == [0, 0, 0, 0, 0, 0, -1, -1]                    # last: lanes (6,7), --


def test_order_is_by_nonzero_count():
    counts = np.count_nonzero(Codebook.default(Coding(6, 3)).patterns, axis=1)
    assert (np.diff(counts) >= 0).all()


def test_slot_word_layout_by_hand():
    book = Codebook.default(Coding(8, 2))
    # code 19 = [+1, -1, 0...]: slot 0 = lane 0 positive valid, slot 1 = lane 1 negative valid.
    # slot = idx (3 bits) | neg << 3 | valid << 4 ; 5 bits per slot
    slot0 = 0 | 0 << 3 | 1 << 4
    slot1 = 1 | 1 << 3 | 1 << 4
    assert book.slot_word(19) == slot0 | slot1 << 5
    assert book.slots(0) == [(0, 0, 0), (0, 0, 0)]
    assert book.table_bits == 10


def test_encode_decode_round_trip():
    book = Codebook.default(Coding(16, 3))
    codes = np.random.default_rng(0).integers(0, len(book), size=(7, 5))
    assert (book.encode(book.decode(codes)) == codes).all()


def test_learned_codebook_validation():
    c = Coding(4, 1)
    good = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    assert Codebook.learned_table(c, good).code_bits == 2
    with pytest.raises(TernacError, match="entry 0 must be the all-zero"):
        Codebook.learned_table(c, good[::-1])
    with pytest.raises(TernacError, match="more than K=1"):
        Codebook.learned_table(c, np.array([[0, 0, 0, 0], [1, 1, 0, 0]]))
    with pytest.raises(TernacError, match="ternary"):
        Codebook.learned_table(c, np.array([[0, 0, 0, 0], [2, 0, 0, 0]]))
    with pytest.raises(TernacError, match="not in the"):
        Codebook.default(c).encode(np.array([1, 1, 0, 0]))


@pytest.mark.parametrize("n,k,message", [
    (1, 1, "N must be in 2..32"), (33, 1, "N must be in 2..32"), (8, 9, "K must be in 0..N"),
    (8, -1, "K must be in 0..N"), (16, 16, "more than the 16-bit limit"), (32, 4, "16-bit limit"),
])
def test_invalid_coding_is_named(n, k, message):
    with pytest.raises(TernacError, match=message):
        Coding(n, k)


@pytest.mark.parametrize("text", ["8", "8,x", "8,2,1", ""])
def test_coding_parse_errors(text):
    with pytest.raises(TernacError, match="expected two integers"):
        Coding.parse(text)
