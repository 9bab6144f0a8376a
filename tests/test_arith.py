"""Integer semantics: the accumulator width proof, the rounding, the multiplier fit."""

import numpy as np
import pytest
from ternac.model.arith import (
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
