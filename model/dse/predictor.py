"""The accuracy predictor (as LINAS does): a model fitted on the configurations trained so
far, used to screen candidates so that only promising ones are trained.

A ridge regression on standardised features of a point: per weight layer its code bits per
weight and its non-zero bound K/N, the log2 of every hidden width and of the weight count.
P is not a feature: it does not change the trained network. :func:`rank_correlation` is
Spearman's rho (average ranks for ties), the figure reported for held-out configurations.
"""

import itertools
import math

import numpy as np
from scipy.stats import spearmanr

from .space import parse_coding

__all__ = ["Predictor", "features", "leave_one_out", "rank_correlation"]


def features(point, inputs, classes):
    """Feature vector of ``point`` (the network of ``inputs`` and ``classes``)."""
    row = []
    for entry in point.codings:
        coding, learned = parse_coding(entry)
        row += [(learned or coding.code_bits) / coding.n, coding.k / coding.n]
    sizes = (inputs, *point.widths, classes)
    row += [math.log2(w) for w in point.widths]
    row.append(math.log2(sum(a * b for a, b in itertools.pairwise(sizes))))
    return np.array(row, dtype=np.float64)


class Predictor:
    """Ridge regression of integer accuracy on :func:`features` (``alpha``: the ridge)."""

    def __init__(self, inputs, classes, alpha=1.0):
        self.inputs, self.classes, self.alpha = inputs, classes, alpha
        self._fit = None

    def _matrix(self, points):
        return np.stack([features(p, self.inputs, self.classes) for p in points])

    def fit(self, points, accuracies):
        x, y = self._matrix(points), np.asarray(accuracies, dtype=np.float64)
        mean, std = x.mean(0), x.std(0)
        std[std == 0] = 1.0
        z = (x - mean) / std
        coef = np.linalg.solve(z.T @ z + self.alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
        self._fit = (mean, std, coef, y.mean())
        return self

    def predict(self, points):
        mean, std, coef, offset = self._fit
        return ((self._matrix(points) - mean) / std) @ coef + offset


def rank_correlation(predicted, actual):
    """Spearman's rank correlation; None with fewer than 3 pairs or a constant side."""
    predicted, actual = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    if len(predicted) < 3 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return None
    return float(spearmanr(predicted, actual).statistic)


def leave_one_out(points, accuracies, inputs, classes):
    """Each configuration predicted by a predictor fitted on all the others."""
    out = []
    for i in range(len(points)):
        rest = [j for j in range(len(points)) if j != i]
        model = Predictor(inputs, classes).fit([points[j] for j in rest], [accuracies[j] for j in rest])
        out.append(float(model.predict([points[i]])[0]))
    return out
