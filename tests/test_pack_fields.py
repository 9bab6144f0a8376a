"""hw.pack_fields: a value outside its field's range raises, naming the field; never masked."""

import pytest
from ternac.model.codebook import TernacError
from ternac.model.hw import pack_fields as _field_word

FIELDS = [("bias", 4, True), ("mult", 4, False)]       # bias at bits [0, 4), mult at [4, 8)


@pytest.mark.parametrize("bias,mult,word", [(-8, 0, 0x08), (7, 15, 0xF7), (-1, 1, 0x1F), (0, 0, 0)])
def test_in_range_values_pack_lsb_first(bias, mult, word):
    assert _field_word(FIELDS, {"bias": bias, "mult": mult}) == word


@pytest.mark.parametrize("values,message", [
    ({"bias": 8}, r"bias=8 does not fit its 4-bit signed field \(-8..7\)"),
    ({"bias": -9}, r"bias=-9 does not fit its 4-bit signed field \(-8..7\)"),
    ({"bias": 15}, "bias=15 does not fit"),                   # would alias -1 if masked
    ({"mult": 16}, r"mult=16 does not fit its 4-bit unsigned field \(0..15\)"),
    ({"mult": -1}, r"mult=-1 does not fit its 4-bit unsigned field \(0..15\)"),   # would alias 15
])
def test_out_of_range_values_raise(values, message):
    with pytest.raises(TernacError, match=message):
        _field_word(FIELDS, values)
