"""Agreement analytics: how far the AI's proposals agree with the teachers' grades.

Keyword-only reads (like `grading.selectors`) over the grades teachers approved
from an AI proposal: each `FinalCriterionGrade` keeps the proposal it started from
(`ai_points`) next to the teacher's points. Grades a teacher gave by hand or the
answer key gave have no proposal and are not counted. Charts are computed here as
plain numbers (bar heights, polyline points) so templates draw SVG without
scripts or inline styles (CSP).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from courses.models import Assignment, Question

from .agreement import Agreement, agreement, confusion_matrix
from .models import FinalCriterionGrade, FinalGrade, GradeSource

# "Approve all above confidence X" is offered only when the measured agreement on
# the answers teachers already reviewed is at least this good, on at least this many.
BULK_MIN_REVIEWED = 20
BULK_MIN_EXACT = 0.8
BULK_MIN_ADJACENT = 0.95
TIMELINE_WINDOW = 10  # approvals per point of the "agreement over time" line
CHART_WIDTH, CHART_HEIGHT = 320, 120


@dataclass(frozen=True)
class Bar:
    label: int
    ai_height: float
    final_height: float
    ai_y: float
    final_y: float
    x: float
    ai_count: int
    final_count: int


@dataclass(frozen=True)
class CriterionAgreement:
    label: str
    max_points: int
    figures: Agreement
    overridden: int
    matrix: list[list[int]]  # rows: AI proposal 0..max, columns: teacher 0..max

    @property
    def override_rate(self) -> float:
        return self.overridden / self.figures.n if self.figures.n else 0.0

    @property
    def matrix_rows(self) -> list[tuple[int, list[tuple[int, int]]]]:
        """(AI points, [(count, heat 0..4)]) per row, for a table with shaded cells."""
        peak = max((c for row in self.matrix for c in row), default=0) or 1
        return [
            (points, [(count, min(4, round(4 * count / peak))) for count in row])
            for points, row in enumerate(self.matrix)
        ]


@dataclass
class Analytics:
    reviewed: int  # answers whose grade started from an AI proposal
    totals: Agreement  # AI total vs final total, per answer
    max_total: int
    criteria: list[CriterionAgreement] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    timeline: str = ""  # SVG polyline points: exact agreement per window of approvals
    timeline_values: list[float] = field(default_factory=list)

    @property
    def most_overridden(self) -> list[CriterionAgreement]:
        return sorted(
            (c for c in self.criteria if c.overridden),
            key=lambda c: (-c.override_rate, c.label),
        )[:5]

    @property
    def bulk_approval_justified(self) -> bool:
        """Enough reviewed answers, agreeing closely enough, to offer bulk approval."""
        return (
            self.reviewed >= BULK_MIN_REVIEWED
            and (self.totals.exact or 0.0) >= BULK_MIN_EXACT
            and (self.totals.adjacent or 0.0) >= BULK_MIN_ADJACENT
        )


def _bars(ai: list[int], final: list[int], maximum: int) -> list[Bar]:
    # Bins of whole points up to 20 levels; above, 10 equal bins (labelled by lower edge).
    bins = maximum + 1 if maximum <= 20 else 10
    width = CHART_WIDTH / bins

    def bin_of(value: int) -> int:
        return value if bins == maximum + 1 else min(bins - 1, value * bins // (maximum + 1))

    ai_counts = [0] * bins
    final_counts = [0] * bins
    for v in ai:
        ai_counts[bin_of(v)] += 1
    for v in final:
        final_counts[bin_of(v)] += 1
    peak = max([*ai_counts, *final_counts, 1])
    bars = []
    for i in range(bins):
        ai_h = round(CHART_HEIGHT * ai_counts[i] / peak, 1)
        final_h = round(CHART_HEIGHT * final_counts[i] / peak, 1)
        bars.append(
            Bar(
                label=i if bins == maximum + 1 else i * (maximum + 1) // bins,
                ai_height=ai_h,
                final_height=final_h,
                ai_y=round(CHART_HEIGHT - ai_h, 1),
                final_y=round(CHART_HEIGHT - final_h, 1),
                x=round(i * width, 1),
                ai_count=ai_counts[i],
                final_count=final_counts[i],
            )
        )
    return bars


def assignment_agreement(*, assignment: Assignment, question: Question | None = None) -> Analytics:
    """AI proposals vs teachers' grades for an assignment (or one of its questions)."""
    grades = (
        FinalGrade.objects.filter(
            answer__question__assignment=assignment,
            source__in=[GradeSource.AI_ACCEPTED, GradeSource.OVERRIDE],
        )
        .select_related("answer__question")
        .prefetch_related("criteria__criterion")
        .order_by("approved_at", "pk")
    )
    if question is not None:
        grades = grades.filter(answer__question=question)
    ai_totals: list[int] = []
    final_totals: list[int] = []
    per_criterion: dict[int, list[FinalCriterionGrade]] = {}
    labels: dict[int, tuple[int, int, str, int]] = {}
    max_total = 0
    for grade in grades:
        rows = list(grade.criteria.all())
        if not rows or any(r.ai_points is None for r in rows):
            continue
        ai_totals.append(sum(r.ai_points or 0 for r in rows))
        final_totals.append(grade.points)
        max_total = max(max_total, grade.max_points)
        for r in rows:
            per_criterion.setdefault(r.criterion_id, []).append(r)
            labels[r.criterion_id] = (
                grade.answer.question.order,
                r.criterion.order,
                r.criterion.title,
                r.max_points,
            )
    result = Analytics(
        reviewed=len(ai_totals),
        totals=agreement(ai_totals, final_totals, min_score=0, max_score=max_total or 1),
        max_total=max_total,
    )
    for criterion_id, rows in sorted(per_criterion.items(), key=lambda kv: labels[kv[0]][:2]):
        q_order, _, title, maximum = labels[criterion_id]
        ai = [r.ai_points or 0 for r in rows]
        final = [r.points for r in rows]
        result.criteria.append(
            CriterionAgreement(
                label=title if question is not None else f"Q{q_order} · {title}",
                max_points=maximum,
                figures=agreement(ai, final, min_score=0, max_score=maximum),
                overridden=sum(a != f for a, f in zip(ai, final, strict=True)),
                matrix=confusion_matrix(ai, final, min_score=0, max_score=maximum),
            )
        )
    result.bars = _bars(ai_totals, final_totals, max_total)
    windows = [
        (ai_totals[i : i + TIMELINE_WINDOW], final_totals[i : i + TIMELINE_WINDOW])
        for i in range(0, len(ai_totals), TIMELINE_WINDOW)
    ]
    result.timeline_values = [
        agreement(a, f).exact or 0.0 for a, f in windows if len(a) == TIMELINE_WINDOW
    ]
    if len(result.timeline_values) > 1:
        step = CHART_WIDTH / (len(result.timeline_values) - 1)
        result.timeline = " ".join(
            f"{round(i * step, 1)},{round(CHART_HEIGHT * (1 - v), 1)}"
            for i, v in enumerate(result.timeline_values)
        )
    return result
