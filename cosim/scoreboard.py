"""Compare a design's integer outputs with the golden model's, value by value.

Every value is identified by ``(sample, layer, neuron)``. The scoreboard keeps checking after
a mismatch, so one run reports both the *first* mismatch (usually the one to debug) and how
widespread the damage is. It is plain Python: usable from cocotb tests and unit-testable
without a simulator.
"""

from collections import Counter
from dataclasses import dataclass

__all__ = ["Mismatch", "Scoreboard", "ScoreboardError"]


@dataclass(frozen=True)
class Mismatch:
    """One differing value. ``expected`` or ``actual`` is ``None`` if the value is missing."""
    sample: int
    layer: int
    neuron: int
    expected: int | None
    actual: int | None

    def __str__(self):
        where = f"sample {self.sample}, layer {self.layer}, neuron {self.neuron}"
        if self.actual is None:
            return f"{where}: expected {self.expected}, got nothing"
        if self.expected is None:
            return f"{where}: expected nothing, got {self.actual}"
        return f"{where}: expected {self.expected}, got {self.actual}"


class ScoreboardError(AssertionError):
    """Raised by :meth:`Scoreboard.finish` (or at once with ``fail_fast``).

    Attributes
    ----------
    first : :class:`Mismatch`
        The first mismatch found.
    mismatches : list of :class:`Mismatch`
        All mismatches found (up to the point of raising).
    checked : int
        Number of values compared.
    """

    def __init__(self, message, first, mismatches, checked):
        super().__init__(message)
        self.first = first
        self.mismatches = mismatches
        self.checked = checked


class Scoreboard:
    """Collect expected-versus-actual comparisons and report the first mismatch.

    Parameters
    ----------
    name : str
        Shown in error messages, to tell several scoreboards apart.
    fail_fast : bool
        Raise :exc:`ScoreboardError` at the first mismatch instead of in :meth:`finish`.

    Attributes
    ----------
    checked : int
        Number of values compared so far.
    mismatches : list of :class:`Mismatch`
        Mismatches in the order they were found.

    Examples
    --------
    >>> sb = Scoreboard()
    >>> sb.compare(sample=0, layer=1, expected=[3, -1, 0], actual=[3, -1, 0])
    True
    >>> sb.finish()   # raises ScoreboardError if anything differed
    """

    def __init__(self, name="scoreboard", *, fail_fast=False):
        self.name = name
        self.fail_fast = fail_fast
        self.checked = 0
        self.mismatches = []

    @property
    def first_mismatch(self):
        """The first :class:`Mismatch`, or ``None`` if all values matched so far."""
        return self.mismatches[0] if self.mismatches else None

    @property
    def ok(self):
        """``True`` if no mismatch has been found."""
        return not self.mismatches

    def mismatches_per_layer(self):
        """Number of mismatches in each layer, as a ``{layer: count}`` dictionary."""
        return dict(sorted(Counter(m.layer for m in self.mismatches).items()))

    def check(self, sample, layer, neuron, expected, actual):
        """Compare one value. Returns ``True`` if it matches."""
        self.checked += 1
        expected = None if expected is None else int(expected)
        actual = None if actual is None else int(actual)
        if expected == actual:
            return True
        self.mismatches.append(Mismatch(int(sample), int(layer), int(neuron), expected, actual))
        if self.fail_fast:
            self._raise()
        return False

    def compare(self, sample, layer, expected, actual):
        """Compare a layer's output vectors, neuron ``k`` being element ``k``.

        A length difference counts each missing or extra neuron as a mismatch.
        Returns ``True`` if the vectors are equal.
        """
        expected, actual = list(expected), list(actual)
        matched = True
        for neuron in range(max(len(expected), len(actual))):
            matched &= self.check(
                sample, layer, neuron,
                expected[neuron] if neuron < len(expected) else None,
                actual[neuron] if neuron < len(actual) else None)
        return matched

    def summary(self):
        """One-line human-readable result."""
        if self.ok:
            return f"{self.name}: all {self.checked} values match"
        per_layer = ", ".join(
            f"layer {layer}: {count}" for layer, count in self.mismatches_per_layer().items())
        return (f"{self.name}: {len(self.mismatches)} of {self.checked} values differ "
                f"({per_layer}); first at {self.first_mismatch}")

    def finish(self):
        """Raise :exc:`ScoreboardError` if any value differed."""
        if self.mismatches:
            self._raise()

    def _raise(self):
        raise ScoreboardError(
            self.summary(), self.first_mismatch, list(self.mismatches), self.checked)
