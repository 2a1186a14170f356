"""Teacher-calibrated offline grading: the rule engine learns from graded exemplars.

Per question, the answers a teacher graded (approved or overrode, or marked as
exemplars) are the evidence. A `QuestionModel` reads three things off an answer,
per criterion:

- the zero-shot engine's continuous estimate (content carried from the reference);
- its nearest exemplars' scores: IDF-weighted cosine on the rule engine's
  features (CJK characters and bigrams, folded words), the IDF fitted on the
  reference and the exemplars, so words every answer uses count for little;
- how much of the (nearly) full-mark exemplars' content it carries: they are
  more reference answers, in the students' own words.

These are standardised over the exemplars and summed (the exemplar views weigh
more as exemplars accumulate) into one ranking, and the ranking is *equated* to
the teacher's scores: the exemplars' mean and spread of points, not a regression.
Ten answers estimate a question's level and spread far better than they
estimate regression slopes, and a regression shrinks every prediction towards
the mean, which is exactly what quadratic weighted kappa punishes. The result is
blended with the zero-shot estimate, trusting the teacher more as exemplars
grow. With no exemplars the zero-shot engine answers alone. An exemplar never
grades itself (`exclude`), which also makes leave-one-out cross-validation honest.

Confidence is evidence, not a constant: it grows with the number of exemplars,
the agreement among the neighbours and the similarity of the nearest one.
Everything here is pure (no database): `grading.services.pipeline` loads the
exemplars, `evaluate_grader` feeds them from a CSV.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import rules
from .agreement import Agreement, agreement
from .prompts import Exemplar, Proposal

NEIGHBOURS = 3
# Fewer graded answers than this tell a question's level and spread too poorly: with
# 1-3 the calibrated engine agreed with the raters worse than zero-shot on the samples
# (tests/data), from 4 on better. Below it the zero-shot engine answers alone.
CALIBRATION_MIN = 5
EXEMPLARS_MAX = 100  # the most recent graded answers of a question that calibrate it
CROSS_VALIDATION_MAX = 60  # the most recent graded answers "Regrade with calibration" checks
_SHARPNESS = 4
_GOOD = 0.75  # an exemplar with this fraction of the points or more is a model answer
CALIBRATED_VERSION = "rules-v3+exemplars-v2"  # v2: equated to the teacher's scale
_CACHED_MODELS = 32  # fitted question models kept per process (see question_model)
# The teacher's scale is trusted n / (n + this) against the zero-shot estimate, so a
# few exemplars cannot move the scores far.
_PRIOR_WEIGHT = 5.0
_EXEMPLAR_VIEWS_HALF = 10  # exemplars at which the neighbour views weigh half the zero-shot


def _weight(similarity: float) -> float:
    """A neighbour's weight: similarity**4, so the nearest exemplars dominate (never 0)."""
    return similarity**_SHARPNESS + 1e-9


def exemplars_key(exemplars: Sequence[Exemplar]) -> str:
    """A fingerprint of the exemplar set: part of an answer's input hash, so a new or
    changed teacher grade makes the question's answers regradable."""
    if not exemplars:
        return ""
    # The engine's version too: a better calibration makes the answers regradable.
    h = hashlib.sha256(CALIBRATED_VERSION.encode())
    for e in exemplars:
        h.update(f"{e.answer_id}:{','.join(map(str, e.scores))}:{e.pinned}:".encode())
        h.update(e.text.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class _Scale:
    """One criterion's calibration: standardise an answer's features, sum them into a
    ranking, and read the ranking on the teacher's scale (all as fractions 0..1)."""

    means: tuple[float, ...]
    sds: tuple[float, ...]
    weights: tuple[float, ...]
    ranking_sd: float  # over the exemplars (their mean ranking is 0: standardised)
    score_mean: float
    score_sd: float
    trust: float  # how far the teacher's scale overrides the zero-shot estimate

    @classmethod
    def fit(cls, rows: list[tuple[list[float], float]]) -> _Scale:
        n = len(rows)
        columns = list(zip(*(x for x, _ in rows), strict=True))
        # The exemplar views count for more the more exemplars there are (10: half).
        share = n / (n + _EXEMPLAR_VIEWS_HALF)
        partial = cls(
            means=tuple(statistics.fmean(c) for c in columns),
            sds=tuple(statistics.pstdev(c) for c in columns),
            weights=(1.0, *[share] * (len(columns) - 1)),
            ranking_sd=0.0,
            score_mean=statistics.fmean(y for _, y in rows),
            score_sd=statistics.pstdev(y for _, y in rows),
            trust=n / (n + _PRIOR_WEIGHT),
        )
        return replace(partial, ranking_sd=statistics.pstdev(partial.ranking(x) for x, _ in rows))

    def ranking(self, x: Sequence[float]) -> float:
        # A feature that does not vary among the exemplars ranks nobody.
        return sum(
            w * (v - m) / sd
            for w, v, m, sd in zip(self.weights, x, self.means, self.sds, strict=True)
            if sd > 1e-9
        )

    def fraction(self, x: Sequence[float]) -> float:
        """x[0] is the zero-shot estimate, the fallback while evidence is thin."""
        slope = self.score_sd / self.ranking_sd if self.ranking_sd > 1e-9 else 0.0
        equated = self.score_mean + slope * self.ranking(x)
        return x[0] + self.trust * (equated - x[0])


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
    _fitted: dict[tuple[int, ...], list[_Scale]] = field(init=False, default_factory=dict)
    # Over all exemplars, computed once: each exemplar's similarity-weighted neighbour
    # scores (per criterion) with the weights' sum, and its matches with the full-mark
    # exemplars, best first. A fit without some exemplars subtracts them, so
    # leave-one-out cross-validation costs n fits of O(n), not n fits of O(n^2).
    _sums: list[tuple[list[float], float]] = field(init=False, default_factory=list)
    _good_matches: list[list[tuple[float, int]]] = field(init=False, default_factory=list)
    _pair_weights: list[list[float]] = field(init=False, default_factory=list)
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
        # Continuous, not snapped to points: ties between answers would lose the ranking.
        self._zero = [list(self._estimate(e.text).fractions) for e in self.exemplars]

    @property
    def maxima(self) -> list[int]:
        return [c["max_points"] for c in self.snapshot["criteria"]]

    def _estimate(self, text: str) -> rules.Estimate:
        return rules.estimate(
            snapshot=self.snapshot, question=self.question, reference=self.reference, answer=text
        )

    def _kernel(self, sims: list[tuple[float, int]]) -> tuple[list[float], float, list[int]]:
        """From (similarity, exemplar) pairs: similarity-weighted exemplar scores per
        criterion (fractions of the maximum), the nearest similarity, the nearest ones."""
        sims = sorted(sims, reverse=True)
        weights = [_weight(s) for s, _ in sims]
        fractions = [
            sum(w * self._y(i, k) for w, (_, i) in zip(weights, sims, strict=True)) / sum(weights)
            for k in range(len(self.maxima))
        ]
        return fractions, sims[0][0], [i for _, i in sims[:NEIGHBOURS]]

    def _y(self, i: int, k: int) -> float:
        """Exemplar i's score on criterion k, as a fraction of the maximum."""
        return self.exemplars[i].scores[k] / (self.maxima[k] or 1)

    def _neighbours(self) -> None:
        """Fill _pair_weights, _good_matches and _sums (once, over all exemplars). Built
        aside and published _sums last: a model is shared by a process's threads, and a
        half-filled list must never be read."""
        if self._sums or not self.exemplars:
            return
        n, criteria = len(self.exemplars), len(self.maxima)
        weights = [[0.0] * n for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                similarity = rules.cosine(self._vectors[i], self._vectors[j], self._idf)
                weights[i][j] = weights[j][i] = _weight(similarity)
        good = [j for j in range(n) if self._is_good(j)]
        sums: list[tuple[list[float], float]] = []
        good_matches: list[list[tuple[float, int]]] = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            sums.append(
                (
                    [sum(weights[i][j] * self._y(j, k) for j in others) for k in range(criteria)],
                    sum(weights[i][j] for j in others),
                )
            )
            good_matches.append(
                sorted(
                    ((self._carries(self._vectors[i], j), j) for j in good if j != i),
                    reverse=True,
                )
            )
        self._pair_weights, self._good_matches = weights, good_matches
        self._sums = sums

    def _kernel_without(self, i: int, missing: list[int]) -> list[float]:
        """Exemplar i's neighbour scores from the exemplars but itself and `missing`."""
        sums, total = self._sums[i]
        absent = [x for x in missing if x != i]
        if len(self.exemplars) - 1 - len(absent) == 0:
            return self._zero[i]  # alone: its zero-shot estimate stands in
        sums = list(sums)
        for x in absent:
            w = self._pair_weights[i][x]
            total -= w
            for k in range(len(sums)):
                sums[k] -= w * self._y(x, k)
        return [value / total for value in sums]

    def _good_match_within(self, i: int, k: int, usable: set[int]) -> float:
        """Exemplar i's best match with another usable exemplar full-marked on k."""
        return next(
            (m for m, j in self._good_matches[i] if j in usable and self._y(j, k) >= _GOOD), 0.0
        )

    def _carries(self, vector: Counter[str], j: int) -> float:
        """How much of exemplar j's content an answer (its features) carries."""
        return rules.content_match_features(vector, self._vectors[j], self._asked)

    def _is_good(self, j: int) -> bool:
        """Exemplar j earned (nearly) full marks on some criterion."""
        return any(self._y(j, k) >= _GOOD for k in range(len(self.maxima)))

    def _good_match(self, carries: dict[int, float], k: int) -> float:
        """How well the answer carries the content of the exemplars that earned (nearly)
        full marks: they are more reference answers, in the students' own words.
        `carries` maps the exemplars to consider to the answer's match with each."""
        return max((m for j, m in carries.items() if self._y(j, k) >= _GOOD), default=0.0)

    def calibrates(self, *, exclude: int | None = None) -> bool:
        """Whether `propose` (with this `exclude`) calibrates or falls back to zero-shot."""
        return len(self._usable(exclude)) >= CALIBRATION_MIN

    def _usable(self, exclude: int | None) -> list[int]:
        return [
            i
            for i, e in enumerate(self.exemplars)
            if exclude is None or e.answer_id is None or e.answer_id != exclude
        ]

    def _fits(self, usable: list[int]) -> list[_Scale]:
        """Per criterion, the scale fitted on the exemplars, each exemplar's neighbour
        views computed without itself."""
        key = tuple(usable)
        if key not in self._fitted:
            self._neighbours()
            within = set(usable)
            missing = [j for j in range(len(self.exemplars)) if j not in within]
            kernels = {i: self._kernel_without(i, missing) for i in usable}
            self._fitted[key] = [
                _Scale.fit(
                    [
                        (
                            [
                                self._zero[i][k],
                                kernels[i][k],
                                self._good_match_within(i, k, within),
                            ],
                            self._y(i, k),
                        )
                        for i in usable
                    ]
                )
                for k in range(len(self.maxima))
            ]
        return self._fitted[key]

    def propose(
        self, answer: str, *, exclude: int | None = None, zero_shot: bool = False
    ) -> tuple[Proposal, float]:
        """(proposal, confidence); `exclude` leaves an answer's own exemplar out,
        `zero_shot` all of them (the engine before calibration, for comparisons)."""
        found = self._estimate(answer)
        usable = [] if zero_shot else self._usable(exclude)
        if len(usable) < CALIBRATION_MIN:
            return rules.proposal_from(self.snapshot, found, self.language), rules.RULES_CONFIDENCE
        vector = rules.features(answer)
        kernel, top_similarity, nearest = self._kernel(
            [(rules.cosine(vector, self._vectors[i], self._idf), i) for i in usable]
        )
        carries = {i: self._carries(vector, i) for i in usable if self._is_good(i)}
        fractions: list[float] = []
        spreads: list[float] = []
        for k, fit in enumerate(self._fits(usable)):
            fractions.append(
                fit.fraction([found.fractions[k], kernel[k], self._good_match(carries, k)])
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
        proposal = rules.proposal_from(self.snapshot, found, self.language, fractions)
        return replace(proposal, rationales=[r + note for r in proposal.rationales]), confidence


_models: OrderedDict[str, QuestionModel] = OrderedDict()
_models_lock = threading.Lock()


def question_model(
    snapshot: dict[str, Any],
    question: str,
    reference: str,
    language: str,
    exemplars: Sequence[Exemplar],
) -> QuestionModel:
    """The question's fitted model, shared by every chunk a worker process grades: an
    assignment's answers arrive in many chunks, and fitting (n^2 exemplar pairs) would
    otherwise be repeated for each. Keyed on everything the model depends on, so an
    edited rubric, reference or teacher grade fits a new one."""
    h = hashlib.sha256(
        json.dumps([snapshot, question, reference, language], sort_keys=True).encode()
    )
    h.update(exemplars_key(exemplars).encode())
    key = h.hexdigest()
    with _models_lock:
        model = _models.get(key)
        if model is not None:
            _models.move_to_end(key)
            return model
    model = QuestionModel(snapshot, question, reference, language, exemplars)
    with _models_lock:
        _models[key] = model
        while len(_models) > _CACHED_MODELS:
            _models.popitem(last=False)
    return model


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
    before = [float(model.propose(e.text, zero_shot=True)[0].total()) for e in numbered]
    after = [float(model.propose(e.text, exclude=e.answer_id)[0].total()) for e in numbered]
    return (
        agreement(before, truth, min_score=0, max_score=maximum),
        agreement(after, truth, min_score=0, max_score=maximum),
    )
