"""Integer semantics of ternac, written once (``docs/integer.md`` explains them).

* Activations are int8 (``ACT_BITS``), symmetric: real value = scale * integer.
* A layer accumulates ``acc = sum(+/-x over decoded non-zeros) + bias`` in a signed
  accumulator whose width :func:`acc_bits` derives from the fan-in, so overflow is impossible.
* Requantization per output channel: ``y = (acc * M + 2**(S-1)) >> S`` (arithmetic shift,
  i.e. round half up, towards +infinity), then optional ReLU, then saturation to int8.
  ``M`` is an unsigned ``MULT_BITS``-bit integer, ``S`` an unsigned ``SHIFT_BITS``-bit one.
* PReLU / LeakyReLU: a second pair ``(M_neg, S_neg)`` per channel applies when the biased
  accumulator ``acc`` (bias included) is negative; ``M_neg`` is signed (a slope may be
  negative), ``|M_neg| < 2**MULT_BITS``. A ReLU is the case ``M_neg = 0``.
"""

import numpy as np

__all__ = [
    "ACT_BITS",
    "ACT_MAX",
    "ACT_MIN",
    "MULT_BITS",
    "SHIFT_BITS",
    "SHIFT_MAX",
    "acc_bits",
    "acc_bound",
    "nonzero_bound",
    "quantize_activations",
    "quantize_multiplier",
    "quantize_slope_multiplier",
    "requantize",
    "round_half_up",
]

ACT_BITS = 8
ACT_MIN = -(1 << (ACT_BITS - 1))
ACT_MAX = (1 << (ACT_BITS - 1)) - 1
MULT_BITS = 15      # M < 2**15: fits a signed 16x16 DSP (iCE40 SB_MAC16, ECP5 MULT18X18) as positive
SHIFT_BITS = 6
SHIFT_MAX = (1 << SHIFT_BITS) - 1


def nonzero_bound(fan_in, coding):
    """Largest number of non-zero weights one output can have: K per sub-vector of N
    (a partial last sub-vector of ``r`` weights holds at most ``min(r, K)``)."""
    return (fan_in // coding.n) * coding.k + min(fan_in % coding.n, coding.k)


def acc_bound(fan_in, coding):
    """Largest ``|sum(+/-x)|`` over int8 inputs; biases are clamped to the same bound."""
    return nonzero_bound(fan_in, coding) * -ACT_MIN


def acc_bits(fan_in, coding):
    """Signed accumulator width that holds ``dot + bias`` for any int8 input.

    ``|dot| <= acc_bound`` and ``|bias| <= acc_bound``, so ``|acc| <= 2 * acc_bound``;
    a signed ``w``-bit register holds it when ``2**(w-1) > 2 * acc_bound``.
    """
    return (2 * acc_bound(fan_in, coding)).bit_length() + 1


def quantize_multiplier(m):
    """Integer ``(M, S)`` with ``M * 2**-S`` closest to the positive real ``m``.

    ``M`` is normalised into ``[2**(MULT_BITS-1), 2**MULT_BITS)`` when ``S`` allows it, giving
    ``MULT_BITS`` significant bits; ``S`` is clipped to ``0..SHIFT_MAX``.
    """
    m = np.asarray(m, dtype=np.float64)
    if (m <= 0).any() or not np.isfinite(m).all():
        raise ValueError("requantization multipliers must be positive and finite")
    _, exp = np.frexp(m)                              # m = f * 2**exp, 0.5 <= f < 1
    shift = np.clip(MULT_BITS - exp, 0, SHIFT_MAX)
    mult = np.round(m * np.exp2(shift)).astype(np.int64)
    carry = mult >= (1 << MULT_BITS)                  # f rounded up to 1.0
    mult = np.where(carry & (shift > 0), (mult + 1) >> 1, mult)
    shift = np.where(carry & (shift > 0), shift - 1, shift)
    if (mult >= (1 << MULT_BITS)).any():
        raise ValueError("requantization multiplier too large: layer scales are out of range")
    return mult, shift.astype(np.int64)


def quantize_slope_multiplier(m):
    """Signed ``(M_neg, S_neg)`` for the negative side of a PReLU: ``M_neg * 2**-S_neg ~ m``.

    ``m`` is the real multiplier times the slope; zero gives ``(0, 0)`` (a ReLU channel), a
    negative slope a negative ``M_neg`` with the magnitude :func:`quantize_multiplier` gives.
    """
    m = np.asarray(m, dtype=np.float64)
    magnitude, shift = quantize_multiplier(np.where(m == 0, 1.0, np.abs(m)))
    zero = m == 0
    return np.where(zero, 0, np.sign(m).astype(np.int64) * magnitude), np.where(zero, 0, shift)


def round_half_up(value, shift):
    """``floor(value / 2**shift + 1/2)`` for integer arrays: the one rounding ternac uses."""
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return (value + half) >> shift


def requantize(acc, mult, shift, relu, neg_mult=None, neg_shift=None):
    """int8 output of an accumulator: round-half-up shift, ReLU, saturate (all integer).

    With ``neg_mult``/``neg_shift`` (a PReLU / LeakyReLU layer) a negative ``acc`` -- the
    accumulator with its bias, i.e. the sign of the real pre-activation -- is requantized
    with that pair instead: ``y = round_half_up(acc * M_neg, S_neg)`` when ``acc < 0``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    y = round_half_up(acc * np.asarray(mult, dtype=np.int64), shift)
    if neg_mult is not None:
        y = np.where(acc < 0, round_half_up(acc * np.asarray(neg_mult, dtype=np.int64), neg_shift), y)
    if relu:
        y = np.maximum(y, 0)
    return np.clip(y, ACT_MIN, ACT_MAX).astype(np.int8)


def quantize_activations(x, scale):
    """int8 image of a real activation tensor at the given scale (round half up, saturate)."""
    q = np.floor(np.asarray(x, dtype=np.float64) / scale + 0.5)
    return np.clip(q, ACT_MIN, ACT_MAX).astype(np.int8)
