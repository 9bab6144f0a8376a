"""Integer semantics: the accumulator width proof, the rounding, the multiplier fit."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from ternac.model.arith import (
    ACT_MAX,
    ACT_MIN,
    MULT_BITS,
    acc_bits,
    acc_bound,
    quantize_multiplier,
    requantize,
    round_half_up,
)
from ternac.model.codebook import Coding


@pytest.mark.parametrize("fan_in", [1, 7, 8, 9, 64, 784, 4096, 65536])
@pytest.mark.parametrize("nk", [(8, 2), (16, 3), (4, 4), (8, 1)])
def test_accumulator_cannot_overflow_on_worst_case_inputs(fan_in, nk):
    """Worst cases: every allowed non-zero weight aligned with +-128 inputs, bias at its bound."""
    coding = Coding(*nk)
    width = acc_bits(fan_in, coding)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    # Build the densest legal row: K non-zeros per sub-vector of N.
    row = np.zeros(-(-fan_in // coding.n) * coding.n, dtype=np.int64).reshape(-1, coding.n)
    row[:, : coding.k] = 1
    row = row.reshape(-1)[:fan_in]
    bound = acc_bound(fan_in, coding)
    assert int(np.abs(row).sum()) * 128 == bound                     # the bound is attained
    for x_value, sign in ((-128, -1), (-128, 1), (127, 1), (127, -1)):
        for bias in (-bound, bound):
            acc = int((sign * row * x_value).sum()) + bias
            assert lo <= acc <= hi
    assert 2 * bound >= 1 << (width - 2)                              # and the width is not wasteful


def test_round_half_up_by_hand():
    assert round_half_up([5, 6, 7, -5, -6, -7], 2).tolist() == [1, 2, 2, -1, -1, -2]  # /4: 1.25 1.5 1.75 ...
    assert round_half_up([3, -3], 0).tolist() == [3, -3]


# Exact ties: value = (2q + 1) * 2**(s-1), i.e. value / 2**s = q + 1/2 exactly.
ties = st.builds(lambda q, s: ((2 * q + 1) << (s - 1), s),
                 st.integers(-(1 << 40), 1 << 40), st.integers(1, 20))


def half_up(value, shift):
    """The specification, in exact rationals: floor(value / 2**shift + 1/2)."""
    return floor(Fraction(value, 1 << shift) + Fraction(1, 2))


@settings(max_examples=300, deadline=None)
@given(ties)
def test_round_half_up_on_exact_ties(tie):
    value, shift = tie
    got = int(round_half_up(value, shift))
    assert got == half_up(value, shift)
    assert got - Fraction(value, 1 << shift) == Fraction(1, 2)     # a tie always moves up by 1/2


def test_the_tie_property_catches_round_half_even():
    """Planted bug: NumPy's round (half to even) must violate the property on some tie."""
    def half_even(value, shift):
        return int(np.round(value / 2.0 ** shift))

    find(ties, lambda t: half_even(*t) != half_up(*t))


@st.composite
def requantize_ties(draw):
    """acc, M, S with acc * M an exact tie at S: acc = (2q+1) * 2**(S-1-t), M = odd * 2**t."""
    shift = draw(st.integers(1, 40))
    t = draw(st.integers(0, min(shift - 1, 14)))
    odd = 2 * draw(st.integers(0, (1 << (14 - t)) - 1)) + 1
    bound = max(1, 600 // odd)                  # most results inside int8, some saturating
    q = draw(st.integers(-(bound // 2) - 1, bound // 2))
    return (2 * q + 1) << (shift - 1 - t), odd << t, shift


@settings(max_examples=300, deadline=None)
@given(requantize_ties(), st.booleans())
def test_requantize_rounds_exact_ties_up(case, relu):
    acc, mult, shift = case
    assert (acc * mult) % (1 << shift) == 1 << (shift - 1)          # the case is an exact tie
    expected = half_up(acc * mult, shift)
    expected = min(max(max(expected, 0) if relu else expected, ACT_MIN), ACT_MAX)
    assert requantize([acc], [mult], [shift], relu=relu).tolist() == [expected]


def test_requantize_relu_and_saturation():
    assert requantize([1000, -1000, 40], [1], [0], relu=False).tolist() == [127, -128, 40]
    assert requantize([1000, -1000, 40], [1], [0], relu=True).tolist() == [127, 0, 40]
    assert requantize([-3], [1], [1], relu=False).tolist() == [-1]   # -1.5 rounds up to -1


@pytest.mark.parametrize("m", [1e-6, 3.3e-4, 0.01, 0.4999, 0.5, 0.99999, 1.0, 3.7, 1000.0])
def test_multiplier_fit(m):
    mult, shift = quantize_multiplier(np.array([m]))
    assert 0 < mult[0] < 1 << MULT_BITS and 0 <= shift[0] <= 63
    assert abs(mult[0] / 2.0 ** shift[0] - m) <= m * 2.0 ** -(MULT_BITS - 1)


def test_multiplier_rejects_nonpositive():
    with pytest.raises(ValueError):
        quantize_multiplier(np.array([0.0]))

