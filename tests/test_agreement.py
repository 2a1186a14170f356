"""Agreement statistics against values computed by hand."""

from __future__ import annotations

import pytest

from grading import agreement as ag

# Rater A and B on a 0..2 scale. Observed (rows A, columns B):
#   [[1, 0, 0], [0, 0, 1], [0, 1, 1]]; marginals A = B = (1, 1, 2), n = 4.
# Weights (i-j)^2/4. Observed disagreement: 0.25 + 0.25 = 0.5.
# Expected counts rows*cols/4: [[.25,.25,.5],[.25,.25,.5],[.5,.5,1]];
# weighted: 2*(.25*.25) + 2*(1*.5) + 2*(.25*.5) = 1.375. QWK = 1 - .5/1.375 = 7/11.
A = [0, 1, 2, 2]
B = [0, 2, 2, 1]


def test_quadratic_weighted_kappa_by_hand():
    assert ag.quadratic_weighted_kappa(A, B, min_score=0, max_score=2) == pytest.approx(7 / 11)


def test_qwk_is_unchanged_by_unused_levels_and_reaches_minus_one():
    # On 0..4 every weight is divided by 16 instead of 4, in both sums alike, and the
    # unused levels add nothing expected: kappa stays 7/11.
    assert ag.quadratic_weighted_kappa(A, B, min_score=0, max_score=4) == pytest.approx(7 / 11)
    assert ag.quadratic_weighted_kappa([0, 4], [4, 0], min_score=0, max_score=4) == pytest.approx(
        -1.0
    )


def test_pearson_by_hand():
    # Deviations from 1.25: A (-1.25, -.25, .75, .75), B (-1.25, .75, .75, -.25);
    # covariance sum 1.75, each variance sum 2.75 -> r = 1.75 / 2.75.
    assert ag.pearson(A, B) == pytest.approx(7 / 11)
    assert ag.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert ag.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_exact_adjacent_mae_and_signed_difference():
    assert ag.exact_agreement(A, B) == 0.5
    assert ag.adjacent_agreement(A, B) == 1.0
    assert ag.adjacent_agreement([0, 3, 1], [2, 3, 2]) == pytest.approx(2 / 3)
    assert ag.mean_absolute_error([0, 3, 1], [2, 3, 2]) == pytest.approx(1.0)
    # The AI (first) gave 1 point less on average: harsher than the teacher.
    assert ag.mean_signed_difference([0, 3, 1], [2, 3, 2]) == pytest.approx(-1.0)
    # Whole points: 2.4 rounds to 2 and agrees with 2.
    assert ag.exact_agreement([2.4], [2]) == 1.0


def test_averaged_scores_round_halves_up_as_a_teacher_would():
    # Two raters' averages (4.5, 3.5, 2.5) are 5, 4 and 3, never the even neighbour.
    assert [ag.whole_points(v) for v in (4.5, 3.5, 2.5, 0.5, 2.49)] == [5, 4, 3, 1, 2]
    assert ag.exact_agreement([5, 3], [4.5, 2.5]) == 1.0
    assert ag.confusion_matrix([2.5], [2], min_score=0, max_score=3) == [
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 1, 0],
    ]


def test_confusion_matrix():
    assert ag.confusion_matrix(A, B, min_score=0, max_score=2) == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]


def test_undefined_statistics_are_none_not_zero():
    assert ag.quadratic_weighted_kappa([], []) is None
    assert ag.pearson([2, 2, 2], [1, 2, 3]) is None
    assert ag.quadratic_weighted_kappa([3, 3], [3, 3]) is None
    assert ag.exact_agreement([], []) is None
    with pytest.raises(ValueError):
        ag.pearson([1, 2], [1])


def test_summary_line():
    figures = ag.agreement(A, B, min_score=0, max_score=2)
    assert figures.line() == "n=4 qwk=0.636 pearson=0.636 exact=0.500 adjacent=1.000 mae=0.500"
    assert figures.mean_signed == 0
