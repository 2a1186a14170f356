"""Teacher-calibrated offline grading: the rule engine learns from graded exemplars.

Per question, the answers a teacher graded (approved or overrode, or marked as
exemplars) are the evidence. A `QuestionModel` predicts each criterion from two
views of an answer:

- its nearest exemplars: IDF-weighted cosine on the rule engine's features
  (CJK characters and bigrams, folded words), the IDF fitted on the reference
  and the exemplars, so words every answer uses count for little;
- a small regression of the teacher's scores on the zero-shot engine's
  estimate (least squares over the exemplars, shrunk towards the identity
  while there are few), which corrects the engine's bias on this question.

The closer the nearest exemplar, the more its neighbours' scores count. With
no exemplars the zero-shot engine answers alone. An exemplar never grades
itself (`exclude`), which also makes leave-one-out cross-validation honest.

Confidence is evidence, not a constant: it grows with the number of exemplars,
the agreement among the neighbours and the similarity of the nearest one.
Everything here is pure (no database): `grading.services.pipeline` loads the
exemplars, `evaluate_grader` feeds them from a CSV.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import rules
from .agreement import Agreement, agreement
from .prompts import Exemplar, Proposal

NEIGHBOURS = 3
EXEMPLARS_MAX = 100  # the most recent graded answers of a question that calibrate it
CROSS_VALIDATION_MAX = 60  # the most recent graded answers "Regrade with calibration" checks
_SHARPNESS = 4  # similarity**4: the nearest exemplars dominate the kernel average
_GOOD = 0.75  # an exemplar with this fraction of the points or more is a model answer
CALIBRATED_VERSION = "rules-v2+exemplars"
# The regression is shrunk towards "trust the zero-shot estimate" with the weight of
# this many answers, so a few exemplars cannot produce a wild fit.
_PRIOR_WEIGHT = 5.0


def exemplars_key(exemplars: Sequence[Exemplar]) -> str:
    """A fingerprint of the exemplar set: part of an answer's input hash, so a new or
    changed teacher grade makes the question's answers regradable."""
    if not exemplars:
        return ""
    h = hashlib.sha256()
    for e in exemplars:
        h.update(f"{e.answer_id}:{','.join(map(str, e.scores))}:{e.pinned}:".encode())
        h.update(e.text.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class _Fit:
    weights: tuple[float, ...]  # intercept first

    def predict(self, x: list[float]) -> float:
        return self.weights[0] + sum(w * v for w, v in zip(self.weights[1:], x, strict=True))


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the systems here are 3x3)."""
    n = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[col][col]:
                factor = m[r][col] / m[col][col]
                m[r] = [x - factor * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] if m[i][i] else 0.0 for i in range(n)]


def _ridge(rows: list[tuple[list[float], float]]) -> _Fit:
    """Ridge regression on standardized features, shrunk towards the prior "trust the
    zero-shot estimate" (weight 1 on the first feature, 0 on the others) with the
    weight of _PRIOR_WEIGHT answers: with few exemplars the prior dominates, with
    many the teacher's scores do. The intercept is not shrunk (it is the bias)."""
    n, size = len(rows), len(rows[0][0])
    means = [sum(x[j] for x, _ in rows) / n for j in range(size)]
    sds = [math.sqrt(sum((x[j] - means[j]) ** 2 for x, _ in rows) / n) for j in range(size)]
    y_mean = sum(y for _, y in rows) / n
    # A feature that does not vary among the exemplars says nothing: weight 0 (or the
    # prior's 1 for the zero-shot estimate, which then only shifts the intercept).
    live = [j for j in range(size) if sds[j] > 1e-9]
    prior = [sds[j] if j == 0 else 0.0 for j in live]
    a = [[0.0] * len(live) for _ in live]
    b = [0.0] * len(live)
    for x, y in rows:
        z = [(x[j] - means[j]) / sds[j] for j in live]
        for p, zp in enumerate(z):
            b[p] += zp * (y - y_mean)
            for q, zq in enumerate(z):
                a[p][q] += zp * zq
    for p in range(len(live)):
        a[p][p] += _PRIOR_WEIGHT
        b[p] += _PRIOR_WEIGHT * prior[p]
    solved = _solve(a, b) if live else []
    weights = [0.0] * size
    for p, j in enumerate(live):
        weights[j] = solved[p] / sds[j]
    if 0 not in live:
        weights[0] = 1.0
    intercept = y_mean - sum(w * m for w, m in zip(weights, means, strict=True))
    return _Fit((intercept, *weights))


@dataclass
class QuestionModel:
    """The calibrated grader of one question (fit once, predict many answers)."""

    snapshot: dict[str, Any]
    question: str
    reference: str
    language: str
    exemplars: Sequence[Exemplar] = ()
    _idf: dict[str, float] = field(init=False, default_factory=dict)
    _vectors: list[Counter[str]] = field(init=False, default_factory=list)
    _zero: list[list[float]] = field(init=False, default_factory=list)
    _fitted: dict[tuple[int, ...], list[_Fit]] = field(init=False, default_factory=dict)
    # Caches over pairs of exemplars: leave-one-out fits reuse them instead of n^3 work.
    _pairs: dict[tuple[int, int], float] = field(init=False, default_factory=dict)
    _carried: dict[tuple[int, int], float] = field(init=False, default_factory=dict)
    _asked: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self._vectors = [rules.features(e.text) for e in self.exemplars]
        self._asked = rules.features(self.question)
        documents = [rules.features(self.reference), *self._vectors]
        n = len(documents)
        df: Counter[str] = Counter()
        for doc in documents:
            df.update(doc.keys())
        # Smoothed IDF (as scikit-learn's): never zero, rarer features weigh more.
        self._idf = {f: math.log((1 + n) / (1 + d)) + 1 for f, d in df.items()}
        self._zero = [self._zero_fractions(e.text) for e in self.exemplars]

    @property
    def maxima(self) -> list[int]:
        return [c["max_points"] for c in self.snapshot["criteria"]]

    def _zero_shot(self, text: str) -> Proposal:
        return rules.propose(
            snapshot=self.snapshot,
            question=self.question,
            reference=self.reference,
            answer=text,
            language=self.language,
        )

    def _zero_fractions(self, text: str) -> list[float]:
        proposal = self._zero_shot(text)
        return [s / m if m else 0.0 for s, m in zip(proposal.scores, self.maxima, strict=True)]

    def _kernel(self, sims: list[tuple[float, int]]) -> tuple[list[float], float, list[int]]:
        """From (similarity, exemplar) pairs: similarity-weighted exemplar scores per
        criterion (fractions of the maximum), the nearest similarity, the nearest ones."""
        sims = sorted(sims, reverse=True)
        weights = [s**_SHARPNESS + 1e-9 for s, _ in sims]
        fractions = []
        for k, maximum in enumerate(self.maxima):
            ys = [self.exemplars[i].scores[k] / (maximum or 1) for _, i in sims]
            fractions.append(sum(w * y for w, y in zip(weights, ys, strict=True)) / sum(weights))
        return fractions, sims[0][0], [i for _, i in sims[:NEIGHBOURS]]

    def _pair_similarity(self, i: int, j: int) -> float:
        key = (min(i, j), max(i, j))
        if key not in self._pairs:
            self._pairs[key] = rules.cosine(self._vectors[i], self._vectors[j], self._idf)
        return self._pairs[key]

    def _carries(self, vector: Counter[str], j: int) -> float:
        """How much of exemplar j's content an answer (its features) carries."""
        return rules.content_match_features(vector, self._vectors[j], self._asked)

    def _is_good(self, j: int) -> bool:
        """Exemplar j earned (nearly) full marks on some criterion."""
        return any(
            s / (m or 1) >= _GOOD
            for s, m in zip(self.exemplars[j].scores, self.maxima, strict=True)
        )

    def _carry(self, i: int, j: int) -> float:
        """How much of exemplar j's content exemplar i carries (cached: fits reuse it)."""
        if (i, j) not in self._carried:
            self._carried[i, j] = self._carries(self._vectors[i], j)
        return self._carried[i, j]

    def _good_match(self, carries: dict[int, float], k: int) -> float:
        """How well the answer carries the content of the exemplars that earned (nearly)
        full marks: they are more reference answers, in the students' own words.
        `carries` maps the exemplars to consider to the answer's match with each."""
        maximum = self.maxima[k] or 1
        return max(
            (m for j, m in carries.items() if self.exemplars[j].scores[k] / maximum >= _GOOD),
            default=0.0,
        )

    def _usable(self, exclude: int | None) -> list[int]:
        return [
            i
            for i, e in enumerate(self.exemplars)
            if exclude is None or e.answer_id is None or e.answer_id != exclude
        ]

    def _fits(self, usable: list[int]) -> list[_Fit]:
        """Per criterion: teacher score ~ zero-shot estimate + neighbours' scores, fitted on
        the exemplars, each exemplar's neighbour feature computed without itself."""
        key = tuple(usable)
        if key not in self._fitted:
            # An exemplar alone has no neighbours: its zero-shot estimate stands in.
            kernels: dict[int, list[float]] = {}
            # Only matches with (nearly) full-mark exemplars are ever used: compute no others.
            good = {j for j in usable if self._is_good(j)}
            carries: dict[int, dict[int, float]] = {}
            for i in usable:
                others = [j for j in usable if j != i]
                kernels[i] = (
                    self._kernel([(self._pair_similarity(i, j), j) for j in others])[0]
                    if others
                    else self._zero[i]
                )
                carries[i] = {j: self._carry(i, j) for j in others if j in good}
            fits = []
            for k, maximum in enumerate(self.maxima):
                rows = [
                    (
                        [self._zero[i][k], kernels[i][k], self._good_match(carries[i], k)],
                        self.exemplars[i].scores[k] / (maximum or 1),
                    )
                    for i in usable
                ]
                fits.append(_ridge(rows))
            self._fitted[key] = fits
        return self._fitted[tuple(usable)]

    def propose(self, answer: str, *, exclude: int | None = None) -> tuple[Proposal, float]:
        """(proposal, confidence); `exclude` leaves an answer's own exemplar out."""
        zero = self._zero_shot(answer)
        usable = self._usable(exclude)
        if not usable:
            return zero, rules.RULES_CONFIDENCE
        vector = rules.features(answer)
        kernel, top_similarity, nearest = self._kernel(
            [(rules.cosine(vector, self._vectors[i], self._idf), i) for i in usable]
        )
        carries = {i: self._carries(vector, i) for i in usable if self._is_good(i)}
        zero_fractions = [
            s / m if m else 0.0 for s, m in zip(zero.scores, self.maxima, strict=True)
        ]
        scores: list[int] = []
        spreads: list[float] = []
        shrink = len(usable) / (len(usable) + _PRIOR_WEIGHT)
        for k, (criterion, fit) in enumerate(
            zip(self.snapshot["criteria"], self._fits(usable), strict=True)
        ):
            fitted = fit.predict([zero_fractions[k], kernel[k], self._good_match(carries, k)])
            # The whole fit, bias included, is trusted as far as the exemplars go: a shift
            # estimated from five answers is mostly noise.
            fraction = zero_fractions[k] + shrink * (fitted - zero_fractions[k])
            scores.append(
                rules.snap(min(1.0, max(0.0, fraction)) * criterion["max_points"], criterion)
            )
            neighbour_scores = [
                self.exemplars[i].scores[k] / (self.maxima[k] or 1) for i in nearest
            ]
            spreads.append(statistics.pstdev(neighbour_scores) if len(nearest) > 1 else 0.5)
        agreement_among = max(0.0, 1.0 - 2 * statistics.fmean(spreads))
        evidence = len(usable) / (len(usable) + 5)
        confidence = round(
            rules.RULES_CONFIDENCE
            + (0.9 - rules.RULES_CONFIDENCE) * evidence * agreement_among * top_similarity,
            3,
        )
        zh = self.language == "zh-hans"
        note = (
            f"按本题 {len(usable)} 份教师评分样例校准（最相近样例相似度 {top_similarity:.0%}）。"
            if zh
            else (
                f" Calibrated on {len(usable)} teacher-graded answers to this question "
                f"(nearest similarity {top_similarity:.0%})."
            )
        )
        return (
            Proposal(
                scores=scores,
                rationales=[r + note for r in zero.rationales],
                feedback=zero.feedback,
                flags=zero.flags,
            ),
            confidence,
        )


def cross_validate(
    *,
    snapshot: dict[str, Any],
    question: str,
    reference: str,
    language: str,
    graded: Sequence[Exemplar],
) -> tuple[Agreement, Agreement]:
    """(zero-shot, calibrated) agreement with the teacher on the graded answers, each
    calibrated prediction made without the answer itself (leave-one-out). At most the
    last CROSS_VALIDATION_MAX answers: leave-one-out costs n fits, and a teacher's click
    waits for it."""
    numbered = [
        e if e.answer_id is not None else Exemplar(e.text, e.scores, answer_id=-(i + 1))
        for i, e in enumerate(graded)
    ][-CROSS_VALIDATION_MAX:]
    model = QuestionModel(snapshot, question, reference, language, numbered)
    maximum = sum(model.maxima)
    truth = [float(e.total) for e in numbered]
    before = [float(model._zero_shot(e.text).total()) for e in numbered]
    after = [float(model.propose(e.text, exclude=e.answer_id)[0].total()) for e in numbered]
    return (
        agreement(before, truth, min_score=0, max_score=maximum),
        agreement(after, truth, min_score=0, max_score=maximum),
    )
