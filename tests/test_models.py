"""Invariants the database itself enforces, whatever code path writes."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from courses.models import Enrollment, Question, QuestionKind, Role
from grading.models import (
    Answer,
    Assessment,
    AssessmentStatus,
    CriterionScore,
    FinalCriterionGrade,
    FinalGrade,
    GradeSource,
    Level,
    Scorer,
    Submission,
    SubmissionStatus,
)


def refused(callable_, *args, **kwargs) -> bool:
    try:
        with transaction.atomic():
            callable_(*args, **kwargs)
    except IntegrityError:
        return True
    return False


@pytest.fixture
def submission(assignment, student) -> Submission:
    return Submission.objects.create(
        assignment=assignment,
        student=student,
        status=SubmissionStatus.SUBMITTED,
        submitted_at=timezone.now(),
    )


@pytest.fixture
def answer(submission, essay_question) -> Answer:
    return Answer.objects.create(submission=submission, question=essay_question, text="作文")


def make_assessment(answer: Answer, **overrides) -> Assessment:
    fields = {
        "answer": answer,
        "scorer": Scorer.LLM,
        "status": AssessmentStatus.COMPLETED,
        "total": 80,
        "max_total": 100,
        "input_hash": "x" * 64,
    }
    fields.update(overrides)
    return Assessment.objects.create(**fields)


def test_one_submission_per_student_assignment_attempt(submission):
    assert refused(
        Submission.objects.create,
        assignment=submission.assignment,
        student=submission.student,
        attempt=1,
    )
    second = Submission.objects.create(
        assignment=submission.assignment, student=submission.student, attempt=2
    )
    assert second.pk


def test_attempt_starts_at_one(assignment, student):
    assert refused(Submission.objects.create, assignment=assignment, student=student, attempt=0)


def test_submitted_submission_needs_a_time(assignment, student):
    assert refused(
        Submission.objects.create,
        assignment=assignment,
        student=student,
        status=SubmissionStatus.SUBMITTED,
    )


def test_one_answer_per_question(answer):
    assert refused(
        Answer.objects.create, submission=answer.submission, question=answer.question, text="again"
    )


def test_one_active_enrollment_but_history_kept(course, student):
    assert refused(Enrollment.objects.create, course=course, user=student, role=Role.TA)
    Enrollment.objects.filter(course=course, user=student).update(ended_at=timezone.now())
    again = Enrollment.objects.create(course=course, user=student, role=Role.STUDENT)
    assert Enrollment.objects.filter(course=course, user=student).count() == 2
    assert list(Enrollment.objects.active().filter(course=course, user=student)) == [again]


def test_enrollment_role_must_be_known(course, outsider):
    assert refused(Enrollment.objects.create, course=course, user=outsider, role="principal")


def test_objective_question_cannot_carry_a_rubric(assignment, rubric):
    assert refused(
        Question.objects.create,
        assignment=assignment,
        kind=QuestionKind.NUMERIC,
        prompt="g?",
        rubric=rubric,
    )


def test_criterion_score_within_zero_and_max(answer, rubric):
    assessment = make_assessment(answer)
    criterion = rubric.criteria.first()
    assert refused(
        CriterionScore.objects.create,
        assessment=assessment,
        criterion=criterion,
        points=21,
        max_points=20,
    )
    assert refused(
        CriterionScore.objects.create,
        assessment=assessment,
        criterion=criterion,
        points=-1,
        max_points=20,
    )
    CriterionScore.objects.create(
        assessment=assessment, criterion=criterion, points=20, max_points=20
    )
    assert refused(
        CriterionScore.objects.create,
        assessment=assessment,
        criterion=criterion,
        points=3,
        max_points=20,
    )


def test_assessment_total_and_confidence_bounds(answer):
    assert refused(make_assessment, answer, total=101)
    assert refused(make_assessment, answer, confidence=1.5)
    # A completed run always has a total; a failed one never pretends to (no silent zero).
    assert refused(make_assessment, answer, total=None)
    failed = make_assessment(answer, status=AssessmentStatus.FAILED, total=None, error="timeout")
    assert failed.total is None


def test_final_grade_bounds_and_override_reason(answer, rubric):
    assert refused(
        FinalGrade.objects.create, answer=answer, points=101, max_points=100, source="manual"
    )
    assert refused(
        FinalGrade.objects.create,
        answer=answer,
        points=70,
        max_points=100,
        source=GradeSource.OVERRIDE,
    )
    grade = FinalGrade.objects.create(
        answer=answer,
        points=70,
        max_points=100,
        source=GradeSource.OVERRIDE,
        override_reason="结构比模型认为的更清晰",
    )
    criterion = rubric.criteria.first()
    assert refused(
        FinalCriterionGrade.objects.create,
        final_grade=grade,
        criterion=criterion,
        points=25,
        max_points=20,
    )
    row = FinalCriterionGrade.objects.create(
        final_grade=grade, criterion=criterion, points=14, max_points=20, ai_points=12
    )
    assert row.changed_by_teacher


def test_level_points_unique_within_criterion(rubric):
    criterion = rubric.criteria.first()
    assert refused(Level.objects.create, criterion=criterion, points=16, descriptor="dup")


def test_rubric_snapshot_and_hash_follow_content(rubric):
    before = rubric.content_hash()
    snap = rubric.snapshot()
    assert next(c["title"] for c in snap["criteria"]) == "内容切题"
    assert rubric.max_points == 100
    criterion = rubric.criteria.first()
    criterion.description = "紧扣题目"
    criterion.save()
    assert rubric.content_hash() != before
