"""Agreement between two graders: the numbers that say how far to trust the AI.

Pure functions over paired score lists (AI proposal vs. the teacher's final
grade, or a grader vs. a labelled data set). Quadratic weighted kappa is
computed on whole points (scores are rounded first, as Kaggle's ASAP and most
of the short-answer literature do; halves round up, as a teacher rounds an
average of 3.5 to 4 and of 4.5 to 5, not to the even neighbour as Python's
round does); the other figures use the raw values.
An undefined statistic (no pairs, or a constant series for Pearson/QWK) is
None, never a made-up 0: a page must show "not enough data", not a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def whole_points(score: float) -> int:
    """A score rounded to whole points, halves up."""
    return math.floor(score + 0.5)


def _check(a: Sequence[float], b: Sequence[float]) -> None:
    if len(a) != len(b):
        raise ValueError(f"paired scores differ in length: {len(a)} != {len(b)}")


def confusion_matrix(
    a: Sequence[float], b: Sequence[float], *, min_score: int, max_score: int
) -> list[list[int]]:
    """Counts of (a, b) rounded to whole points; rows are a, columns b, both min..max."""
    _check(a, b)
    size = max_score - min_score + 1
    matrix = [[0] * size for _ in range(size)]
    for x, y in zip(a, b, strict=True):
        i = min(max(whole_points(x), min_score), max_score) - min_score
        j = min(max(whole_points(y), min_score), max_score) - min_score
        matrix[i][j] += 1
    return matrix


def quadratic_weighted_kappa(
    a: Sequence[float],
    b: Sequence[float],
    *,
    min_score: int | None = None,
    max_score: int | None = None,
) -> float | None:
    """Cohen's kappa with quadratic weights: 1 - sum(w*O) / sum(w*E), w=(i-j)^2/(N-1)^2."""
    _check(a, b)
    if not a:
        return None
    rounded = [whole_points(v) for v in (*a, *b)]
    lo = min(rounded) if min_score is None else min_score
    hi = max(rounded) if max_score is None else max_score
    if hi == lo:
        return None
    observed = confusion_matrix(a, b, min_score=lo, max_score=hi)
    size = hi - lo + 1
    n = len(a)
    rows = [sum(r) for r in observed]
    cols = [sum(observed[i][j] for i in range(size)) for j in range(size)]
    num = den = 0.0
    for i in range(size):
        for j in range(size):
            weight = (i - j) ** 2 / (size - 1) ** 2
            num += weight * observed[i][j]
            den += weight * rows[i] * cols[j] / n
    if den == 0:
        # Both graders gave one and the same constant: agreement is perfect but
        # kappa (agreement beyond chance) is undefined.
        return None
    return 1.0 - num / den


def pearson(a: Sequence[float], b: Sequence[float]) -> float | None:
    _check(a, b)
    n = len(a)
    if n < 2:
        return None
    mean_a, mean_b = sum(a) / n, sum(b) / n
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    if var_a == 0 or var_b == 0:
        return None
    return cov / math.sqrt(var_a * var_b)


def exact_agreement(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Share of pairs with the same whole-point score."""
    _check(a, b)
    if not a:
        return None
    return sum(whole_points(x) == whole_points(y) for x, y in zip(a, b, strict=True)) / len(a)


def adjacent_agreement(
    a: Sequence[float], b: Sequence[float], *, tolerance: int = 1
) -> float | None:
    """Share of pairs within `tolerance` whole points of each other (exact included)."""
    _check(a, b)
    if not a:
        return None
    same = zip(a, b, strict=True)
    return sum(abs(whole_points(x) - whole_points(y)) <= tolerance for x, y in same) / len(a)


def mean_absolute_error(a: Sequence[float], b: Sequence[float]) -> float | None:
    _check(a, b)
    if not a:
        return None
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def mean_signed_difference(predicted: Sequence[float], truth: Sequence[float]) -> float | None:
    """Mean of predicted - truth: above 0 the AI is kinder than the teacher, below harsher."""
    _check(predicted, truth)
    if not predicted:
        return None
    return sum(p - t for p, t in zip(predicted, truth, strict=True)) / len(predicted)


@dataclass(frozen=True)
class Agreement:
    n: int
    qwk: float | None
    pearson: float | None
    exact: float | None
    adjacent: float | None
    mae: float | None
    mean_signed: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    def line(self) -> str:
        """The machine-readable summary evaluate_grader ends with."""

        def fmt(value: float | None) -> str:
            return "nan" if value is None else f"{value:.3f}"

        return (
            f"n={self.n} qwk={fmt(self.qwk)} pearson={fmt(self.pearson)} "
            f"exact={fmt(self.exact)} adjacent={fmt(self.adjacent)} mae={fmt(self.mae)}"
        )


def agreement(
    predicted: Sequence[float],
    truth: Sequence[float],
    *,
    min_score: int | None = None,
    max_score: int | None = None,
) -> Agreement:
    """All the figures at once; `predicted` is the AI, `truth` the teacher."""
    return Agreement(
        n=len(predicted),
        qwk=quadratic_weighted_kappa(predicted, truth, min_score=min_score, max_score=max_score),
        pearson=pearson(predicted, truth),
        exact=exact_agreement(predicted, truth),
        adjacent=adjacent_agreement(predicted, truth),
        mae=mean_absolute_error(predicted, truth),
        mean_signed=mean_signed_difference(predicted, truth),
    )
