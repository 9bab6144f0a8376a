"""Structured sparse ternary (N, K) coding: the codebook and its canonical order.

A sub-vector of ``N`` ternary weights holding at most ``K`` non-zeros is stored as one code.
The codebook maps codes to patterns; the hardware decoder stores the same mapping as a
*slot table* (``K`` slots of lane index, sign and valid bit per code) so that each lane needs
only ``K`` adder/subtractors.

This module is the single source of truth for:

* the pattern count and code width of an (N, K) coding,
* the canonical order of the default codebook (code 0 is always the all-zero pattern),
* the bit layout of one slot-table entry (see ``docs/format.md``).
"""

from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from math import comb

import numpy as np

__all__ = ["MAX_CODE_BITS", "MAX_N", "Codebook", "Coding", "TernacError"]

MAX_N = 32
MAX_CODE_BITS = 16


class TernacError(ValueError):
    """A user-facing error: bad input, a network that cannot be mapped, a malformed file."""


def pattern_count(n, k):
    """Number of ternary patterns of length ``n`` with at most ``k`` non-zeros."""
    return sum(comb(n, j) * 2**j for j in range(k + 1))


def bits_for(count):
    """Code width that can index ``count`` entries (at least one bit)."""
    return max(1, (count - 1).bit_length())


@dataclass(frozen=True)
class Coding:
    """An (N, K) structured sparse ternary coding.

    Parameters
    ----------
    n : int
        Sub-vector length, ``2 <= n <= 32``.
    k : int
        Largest number of non-zeros per sub-vector, ``0 <= k <= n``.
    """

    n: int
    k: int

    def __post_init__(self):
        if not (isinstance(self.n, int) and isinstance(self.k, int)):
            raise TernacError(f"invalid (N,K) coding ({self.n!r},{self.k!r}): N and K must be integers")
        if not 2 <= self.n <= MAX_N:
            raise TernacError(f"invalid (N,K) coding ({self.n},{self.k}): N must be in 2..{MAX_N}")
        if not 0 <= self.k <= self.n:
            raise TernacError(f"invalid (N,K) coding ({self.n},{self.k}): K must be in 0..N")
        if self.code_bits > MAX_CODE_BITS:
            raise TernacError(
                f"invalid (N,K) coding ({self.n},{self.k}): {self.patterns} patterns need "
                f"{self.code_bits}-bit codes, more than the {MAX_CODE_BITS}-bit limit")

    @classmethod
    def parse(cls, text):
        """Parse ``"N,K"`` (as given on the command line)."""
        try:
            n, k = (int(part) for part in str(text).split(","))
        except ValueError:
            raise TernacError(f"invalid (N,K) coding {text!r}: expected two integers 'N,K', e.g. 8,2")
        return cls(n, k)

    @property
    def patterns(self):
        """Size of the default codebook: sum over j <= K of C(N, j) * 2**j."""
        return pattern_count(self.n, self.k)

    @property
    def code_bits(self):
        """Width of one default-codebook code."""
        return bits_for(self.patterns)

    @property
    def index_bits(self):
        """Width of a lane index inside a sub-vector."""
        return bits_for(self.n)

    @property
    def slot_bits(self):
        """Width of one decoder slot: lane index, then sign, then valid (LSB first)."""
        return self.index_bits + 2

    def __str__(self):
        return f"({self.n},{self.k})"


def canonical_patterns(coding):
    """Every pattern of the (N, K) coding in canonical order, as an int8 array (count, N).

    Order: by number of non-zeros ``j`` ascending (so code 0 is all-zero); within ``j``, by
    the positions as ``itertools.combinations(range(N), j)`` yields them (lexicographic);
    within positions, by sign index ``s`` counting up from 0, where bit ``t`` of ``s`` set
    means the ``t``-th chosen position (ascending) holds -1.
    """
    n, k = coding.n, coding.k
    out = np.zeros((coding.patterns, n), dtype=np.int8)
    row = 0
    for j in range(k + 1):
        for positions in combinations(range(n), j):
            for s in range(2**j):
                for t, pos in enumerate(positions):
                    out[row, pos] = -1 if (s >> t) & 1 else 1
                row += 1
    return out


class Codebook:
    """A table of ternary patterns indexed by code.

    The default codebook of a coding enumerates all its patterns in canonical order; a
    learned codebook holds ``2**bits`` patterns (each with at most K non-zeros) chosen for
    one layer. In both, code 0 is the all-zero pattern, so zero padding is code 0.

    Parameters
    ----------
    coding : Coding
    patterns : ndarray of int8, shape (entries, N)
    learned : bool
        ``False`` for the default enumeration (a ROM in hardware), ``True`` for a learned
        table (data loaded with the layer).
    """

    def __init__(self, coding, patterns, *, learned):
        patterns = np.asarray(patterns)
        if patterns.ndim != 2 or patterns.shape[1] != coding.n:
            raise TernacError(f"codebook patterns must have shape (entries, {coding.n}), got {patterns.shape}")
        if not np.isin(patterns, (-1, 0, 1)).all():
            raise TernacError("codebook patterns must be ternary (values in -1, 0, +1)")
        if (np.count_nonzero(patterns, axis=1) > coding.k).any():
            raise TernacError(f"codebook pattern with more than K={coding.k} non-zeros for coding {coding}")
        if len(patterns) == 0 or np.any(patterns[0] != 0):
            raise TernacError("codebook entry 0 must be the all-zero pattern (it is the padding code)")
        if bits_for(len(patterns)) > MAX_CODE_BITS:
            raise TernacError(f"codebook of {len(patterns)} entries exceeds {MAX_CODE_BITS}-bit codes")
        self.coding = coding
        self.patterns = patterns.astype(np.int8)
        self.learned = bool(learned)

    @classmethod
    def default(cls, coding):
        return cls(coding, canonical_patterns(coding), learned=False)

    @classmethod
    def learned_table(cls, coding, patterns):
        return cls(coding, patterns, learned=True)

    def __len__(self):
        return len(self.patterns)

    def __eq__(self, other):
        return (isinstance(other, Codebook) and self.coding == other.coding
                and self.learned == other.learned and np.array_equal(self.patterns, other.patterns))

    @property
    def code_bits(self):
        """Width of one code of this codebook."""
        return bits_for(len(self.patterns))

    @cached_property
    def _index(self):
        return {row.tobytes(): code for code, row in reversed(list(enumerate(self.patterns)))}

    def encode(self, subvectors):
        """Codes of exact ternary sub-vectors (shape (..., N)); every one must be in the table."""
        subvectors = np.asarray(subvectors, dtype=np.int8)
        flat = subvectors.reshape(-1, self.coding.n)
        codes = np.empty(len(flat), dtype=np.uint16)
        index = self._index
        for i, row in enumerate(flat):
            code = index.get(row.tobytes())
            if code is None:
                raise TernacError(f"sub-vector {row.tolist()} is not in the {self.coding} codebook")
            codes[i] = code
        return codes.reshape(subvectors.shape[:-1])

    def decode(self, codes):
        """Patterns (int8, shape (..., N)) of the given codes."""
        codes = np.asarray(codes)
        if codes.size and (codes.min() < 0 or codes.max() >= len(self.patterns)):
            raise TernacError(f"code out of range for a codebook of {len(self.patterns)} entries")
        return self.patterns[codes]

    def slots(self, code):
        """Decoder view of one code: K tuples (valid, negative, lane index), ascending lanes.

        Unused slots are ``(0, 0, 0)``.
        """
        pattern = self.patterns[code]
        lanes = np.flatnonzero(pattern)
        result = [(1, int(pattern[lane] < 0), int(lane)) for lane in lanes]
        return result + [(0, 0, 0)] * (self.coding.k - len(result))

    def slot_word(self, code):
        """One slot-table entry as an integer; layout in ``docs/format.md``.

        Slot ``t`` occupies bits ``[t*S, (t+1)*S)`` with ``S = index_bits + 2``; inside a
        slot, LSB first: lane index (``index_bits``), negative (1), valid (1).
        """
        c = self.coding
        word = 0
        for t, (valid, neg, lane) in enumerate(self.slots(code)):
            word |= (lane | neg << c.index_bits | valid << (c.index_bits + 1)) << (t * c.slot_bits)
        return word

    def slot_table(self):
        """The decoder table: one :meth:`slot_word` per code, in code order."""
        return [self.slot_word(code) for code in range(len(self.patterns))]

    @property
    def table_bits(self):
        """Width of one slot-table entry (K slots)."""
        return max(1, self.coding.k * self.coding.slot_bits)
