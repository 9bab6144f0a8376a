"""Memory images: unpack(pack(x)) == x for every geometry, and one word decoded by hand."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ternac.model.codebook import Coding
from ternac.model.pack import (
    Geometry,
    pack_activations,
    pack_codes,
    unpack_activations,
    unpack_codes,
)


@st.composite
def layer_and_geometry(draw):
    n = draw(st.integers(2, 16))
    coding = Coding(n, draw(st.integers(0, min(n, 3))))
    geometry = Geometry(draw(st.integers(1, 16)), coding, draw(st.integers(1, 16)))
    out_features, subvectors = draw(st.integers(1, 40)), draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    codes = np.random.default_rng(seed).integers(0, 1 << geometry.code_bits, (out_features, subvectors))
    return geometry, codes


@settings(max_examples=200, deadline=None)
@given(layer_and_geometry())
def test_codes_round_trip(case):
    geometry, codes = case
    words = pack_codes(codes, geometry)
    assert len(words) == geometry.groups(len(codes)) * codes.shape[1]
    assert all(0 <= w < 1 << geometry.weight_word_bits for w in words)
    assert (unpack_codes(words, *codes.shape, geometry) == codes).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 32), st.lists(st.integers(-128, 127), min_size=1, max_size=100))
def test_activations_round_trip(n, values):
    words = pack_activations(values, n)
    assert len(words) == -(-len(values) // n)
    assert (unpack_activations(words, len(values), n) == np.array(values)).all()


def test_weight_word_by_hand():
    # 3 outputs, 2 sub-vectors, 2 lanes, 8-bit codes: group 0 = outputs 0,1; group 1 = output 2 + pad.
    geometry = Geometry(2, Coding(8, 2), 8)
    codes = np.array([[0x11, 0x12], [0x21, 0x22], [0x31, 0x32]])
    assert pack_codes(codes, geometry) == [0x2111, 0x2212, 0x0031, 0x0032]


def test_activation_word_by_hand():
    assert pack_activations([1, -1, 127, -128], 4) == [0x807FFF01]
    assert pack_activations([5], 2) == [0x0005]
