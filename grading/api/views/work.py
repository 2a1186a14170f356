"""Students' work and its grading: submissions, answers, proposals, grades, release,
regrade requests and the audit trail. Every write is a service call."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Prefetch, Q
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from courses import permissions
from courses.models import Assignment

from ... import selectors, services
from ...models import (
    Answer,
    AnswerStatus,
    Assessment,
    AuditEvent,
    CriterionScore,
    FinalCriterionGrade,
    FinalGrade,
    RegradeRequest,
    Submission,
    SubmissionStatus,
)
from .. import filters, serializers
from ..base import ApiView
from ..pagination import EventCursorPagination
from ..problems import PreconditionFailed, PreconditionRequired
from . import examples


def _refused(exc: Exception) -> exceptions.ValidationError:
    """A service's refusal (its message is for the person) as a 400."""
    return exceptions.ValidationError({"non_field_errors": [str(exc)]})


class AssignmentScoped(ApiView):
    """Views under /assignments/{id}/: the assignment as this caller may see it."""

    def assignment(self, pk: int) -> Assignment:
        return get_object_or_404(
            permissions.api_assignments(self.user, self.key).select_related("course"), pk=pk
        )

    def staff_assignment(self, pk: int, message: Any) -> Assignment:
        """The assignment, for callers who read it as staff (403 for its students)."""
        assignment = self.assignment(pk)
        self.require(
            permissions.api_can_read_as_staff(self.user, self.key, assignment.course), message
        )
        return assignment


_STAFF_ONLY = _("Only the course's teachers and teaching assistants see this.")


# --- Submissions ------------------------------------------------------------------------------


class SubmissionListCreate(AssignmentScoped):
    queryset = Submission.objects.none()  # the model, for the document's filters
    serializer_class = serializers.SubmissionSerializer
    filterset_class = filters.SubmissionFilter
    ordering_fields = ["id", "submitted_at", "attempt"]
    ordering = ["id"]

    def submissions(self) -> Any:
        return (
            permissions.api_submissions(self.user, self.key)
            .select_related("student", "assignment")
            .prefetch_related("answers")
        )

    @extend_schema(
        operation_id="submissions_list",
        responses={200: serializers.SubmissionSerializer(many=True)},
        tags=["submissions"],
        summary="List an assignment's submissions",
        description=(
            "Staff and keys with the read scope: every submission (drafts too). Students: "
            "their own. While the assignment is graded anonymously, graders see "
            "`student: null` and the anonymous `student_label`, as on the review pages."
        ),
        examples=[examples.SUBMISSION_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        assignment = self.assignment(pk)
        submissions = self.filter_queryset(self.submissions().filter(assignment=assignment))
        page = self.paginate_queryset(submissions)
        names = permissions.api_sees_student_names(self.user, self.key, assignment)
        data = self.get_serializer(page, many=True, names=names, self_id=self.user.pk).data
        return self.get_paginated_response(data)

    @extend_schema(
        operation_id="submissions_create",
        tags=["submissions"],
        summary="Hand in answers",
        description=(
            "Hands in one attempt and queues it for grading (`submission_save`, as the "
            "student's page does). A student's session hands in for themself; an API key "
            "with the `submit` scope hands in for a current student of its course, named "
            'by `"student"` (username or student number): transcribed paper exams come in '
            "this way.\n\n"
            "`answers` holds one item per question; questions left out are handed in blank. "
            "Choice questions take the option key(s) as `text` (`B`, `A,C`, `AC`) or an "
            "option's text; numeric questions the number; the others the text. Text is "
            "cleaned by the shared rule (control characters such as NUL removed) and "
            "limited to `ANSWER_MAX_CHARS` characters. A closed, unpublished or past-due "
            "assignment, or one whose attempts are used up, refuses with a 400.\n\n"
            "Send an `Idempotency-Key`: a retried request then hands in once and returns "
            "the same response."
        ),
        request=serializers.SubmissionCreateSerializer,
        responses={201: serializers.SubmissionSerializer},
        examples=[
            examples.SUBMISSION_CREATE_STUDENT,
            examples.SUBMISSION_CREATE_KEY,
            examples.SUBMISSION,
        ],
    )
    def post(self, request: Request, pk: int) -> Response:
        assignment = self.assignment(pk)
        self.require(
            permissions.api_can_hand_in(self.user, self.key, assignment),
            _(
                "Students hand in their own work; an API key needs the submit scope to "
                "hand in for a student."
            ),
        )
        data = self.validated(serializers.SubmissionCreateSerializer, assignment=assignment)
        student = self._student(assignment, data.get("student"))
        responses = {a["question"]: (a["text"], a.get("choices", [])) for a in data["answers"]}
        try:
            submission = services.submission_save(
                assignment=assignment,
                student=student,
                responses=responses,
                hand_in=True,
                hand_in_token=self.idempotency_token(),
                actor=self.user,
            )
        except services.SubmissionError as exc:
            raise _refused(exc) from exc
        submission = Submission.objects.prefetch_related("answers").get(pk=submission.pk)
        body = self.get_serializer(submission, names=True).data
        location = reverse("api:submission", args=[submission.pk])
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})

    def _student(self, assignment: Assignment, named: str | None) -> Any:
        if self.key is None:
            if named and named not in (self.user.username, self.user.student_number):
                raise exceptions.ValidationError(
                    {"student": [_("Only an API key hands in for someone else; leave this out.")]}
                )
            return self.user
        if not named:
            raise exceptions.ValidationError(
                {"student": [_("Name the student: their username or student number.")]}
            )
        student = (
            permissions.api_hand_in_students(self.key, assignment)
            .filter(Q(username=named) | Q(student_number=named))
            .first()
        )
        if student is None:
            raise exceptions.ValidationError(
                {
                    "student": [
                        gettext(
                            "No current student of this course has the username or "
                            "student number “%(s)s”."
                        )
                        % {"s": named}
                    ]
                }
            )
        return student


class SubmissionDetail(ApiView):
    serializer_class = serializers.SubmissionSerializer

    @extend_schema(
        operation_id="submissions_retrieve",
        tags=["submissions"],
        summary="Get a submission",
        description="One submission with its answers and their grading status.",
        examples=[examples.SUBMISSION],
    )
    def get(self, request: Request, pk: int) -> Response:
        submission = get_object_or_404(
            permissions.api_submissions(self.user, self.key)
            .select_related("student", "assignment")
            .prefetch_related("answers"),
            pk=pk,
        )
        names = permissions.api_sees_student_names(self.user, self.key, submission.assignment)
        return Response(self.get_serializer(submission, names=names, self_id=self.user.pk).data)


# --- Answers and proposals (staff) -------------------------------------------------------------


def _answers() -> Any:
    return Answer.objects.select_related(
        "submission__student",
        "submission__assignment",
        "final_grade__approved_by",
        "current_assessment",
    ).prefetch_related(
        Prefetch("current_assessment__scores", queryset=CriterionScore.objects.all()),
        Prefetch(
            "final_grade__criteria",
            queryset=FinalCriterionGrade.objects.select_related("criterion"),
        ),
    )


class AnswerList(AssignmentScoped):
    queryset = Answer.objects.none()  # the model, for the document's filters
    serializer_class = serializers.ReviewAnswerSerializer
    filterset_class = filters.AnswerFilter
    ordering_fields = ["id", "question__order", "current_assessment__confidence", "updated_at"]
    ordering = ["id"]

    @extend_schema(
        operation_id="answers_list",
        responses={200: serializers.ReviewAnswerSerializer(many=True)},
        tags=["answers"],
        summary="List handed-in answers for review",
        description=(
            "Every handed-in answer with its current proposal and grade: the review queue. "
            "`?status=graded` lists those awaiting review, `?flagged=true` those the "
            "screening or the model flagged. Staff and keys with the read scope."
        ),
        examples=[examples.ANSWER_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        assignment = self.staff_assignment(pk, _STAFF_ONLY)
        answers = _answers().filter(
            submission__assignment=assignment, submission__status=SubmissionStatus.SUBMITTED
        )
        page = self.paginate_queryset(self.filter_queryset(answers))
        names = permissions.api_sees_student_names(self.user, self.key, assignment)
        return self.get_paginated_response(self.get_serializer(page, many=True, names=names).data)


class AnswerScoped(ApiView):
    def answer(self, pk: int) -> Answer:
        answer = get_object_or_404(
            _answers()
            .select_related("question__rubric", "current_assessment__rubric_snapshot")
            .filter(pk__in=permissions.api_staff_answers(self.user, self.key).values("pk")),
            pk=pk,
        )
        return answer


class AnswerDetail(AnswerScoped):
    serializer_class = serializers.ReviewAnswerSerializer

    @extend_schema(
        operation_id="answers_retrieve",
        tags=["answers"],
        summary="Get an answer with its proposal and grade",
        description="Staff and keys with the read scope.",
        examples=[examples.ANSWER],
    )
    def get(self, request: Request, pk: int) -> Response:
        answer = self.answer(pk)
        names = permissions.api_sees_student_names(
            self.user, self.key, answer.submission.assignment
        )
        return Response(self.get_serializer(answer, names=names).data)


class AssessmentList(AnswerScoped):
    queryset = Assessment.objects.none()  # the model, for the document's filters
    serializer_class = serializers.AssessmentSerializer

    @extend_schema(
        operation_id="assessments_list",
        responses={200: serializers.AssessmentSerializer(many=True)},
        tags=["answers"],
        summary="List an answer's AI assessments",
        description=(
            "Every scoring run of the answer, newest first: by the model, the offline rule "
            "engine or the answer key, with per-criterion scores, rationale, flags, "
            "confidence and token use. A proposal is never a grade. Teachers, teaching "
            "assistants and keys with the read scope."
        ),
        examples=[examples.ASSESSMENT_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        answer = self.answer(pk)
        runs = (
            Assessment.objects.filter(answer=answer)
            .select_related("answer")
            .prefetch_related("scores")
            .order_by("-created_at", "-id")
        )
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


# --- Grades ------------------------------------------------------------------------------------

_ETAG = re.compile(r'^\s*(?:W/)?"(\d{1,18})"\s*$')


def _etag(grade: FinalGrade) -> str:
    return f'"{grade.version}"'


class GradeDetail(AnswerScoped):
    serializer_class = serializers.GradeSerializer
    extra_problems = {"PUT": (412, 428)}

    def _grade(self, answer: Answer) -> FinalGrade | None:
        return (
            FinalGrade.objects.select_related("answer", "approved_by")
            .prefetch_related(
                Prefetch(
                    "criteria", queryset=FinalCriterionGrade.objects.select_related("criterion")
                )
            )
            .filter(answer=answer)
            .first()
        )

    def _respond(self, grade: FinalGrade) -> Response:
        return Response(self.get_serializer(grade).data, headers={"ETag": _etag(grade)})

    @extend_schema(
        operation_id="grades_retrieve",
        tags=["grades"],
        summary="Get an answer's grade",
        description=(
            "The approved grade of the answer, with its `ETag` (the grade's version). "
            "404 while the answer has none."
        ),
        responses={
            200: OpenApiResponse(
                serializers.GradeSerializer,
                description="The grade; the `ETag` header holds its version.",
            )
        },
        examples=[examples.GRADE],
    )
    def get(self, request: Request, pk: int) -> Response:
        grade = self._grade(self.answer(pk))
        if grade is None:
            raise exceptions.NotFound(_("This answer has no approved grade yet."))
        return self._respond(grade)

    @extend_schema(
        operation_id="grades_approve",
        tags=["grades"],
        summary="Approve or override a grade",
        description=(
            "Accepts the AI proposal (no `scores`) or gives the teacher's own per-criterion "
            "points (`grade_approve`, audited). A score that differs from the proposal is "
            "an override and needs a `reason`. Criteria left out keep the proposal's "
            "points; the total is always computed by the server.\n\n"
            "Optimistic locking: once a grade exists, send its ETag in `If-Match` (or its "
            "`version` in the body). A grade changed since is a 412 with "
            "`current_version`; no precondition at all is a 428. The first approval needs "
            "none. Teachers, teaching assistants and keys with the grade scope."
        ),
        parameters=[
            OpenApiParameter(
                "If-Match",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description='The grade\'s ETag from GET, e.g. `"2"`.',
            )
        ],
        request=serializers.GradeApproveSerializer,
        responses={
            200: OpenApiResponse(
                serializers.GradeSerializer,
                description="The grade now; the `ETag` header holds its new version.",
            )
        },
        examples=[examples.GRADE_ACCEPT, examples.GRADE_OVERRIDE, examples.GRADE],
    )
    def put(self, request: Request, pk: int) -> Response:
        answer = self.answer(pk)
        self.require(
            permissions.api_can_grade(self.user, self.key, answer.submission.assignment.course),
            _("This API key does not have the grade scope."),
        )
        snapshot = selectors.grading_rubric(answer=answer)
        data = self.validated(serializers.GradeApproveSerializer)
        unknown = sorted(
            set(data["scores"]) - {c["id"] for c in (snapshot or {}).get("criteria", [])}
        )
        if unknown:
            raise exceptions.ValidationError(
                {
                    "scores": [
                        gettext(
                            "Criterion %(ids)s is not in the rubric this answer is graded against."
                        )
                        % {"ids": ", ".join(map(str, unknown))}
                    ]
                }
            )
        current = self._grade(answer)
        expected = self._expected_version(current, data)
        try:
            services.grade_approve(
                answer=answer,
                actor=self.user,
                scores=data["scores"],
                feedback=data["feedback"],
                reason=data["reason"],
                expected_version=expected,
            )
        except services.StaleGrade as exc:
            raise PreconditionFailed(
                str(exc),
                extra={"current_version": exc.current.version},
                headers={"ETag": _etag(exc.current)},
            ) from exc
        except services.GradeError as exc:
            raise _refused(exc) from exc
        grade = self._grade(answer)
        assert grade is not None  # just approved
        return self._respond(grade)

    def _expected_version(self, current: FinalGrade | None, data: dict[str, Any]) -> int | None:
        """The version the caller saw: If-Match, else `version`; a grade that exists needs
        one of them (428), and If-Match for a grade that does not exist fails (412)."""
        header = self.request.headers.get("If-Match")
        if header is not None:
            if current is None:
                raise PreconditionFailed(
                    gettext("This answer has no grade yet: leave out If-Match.")
                )
            if header.strip() == "*":
                return current.version
            match = _ETAG.match(header)
            if match is None or int(match.group(1)) != current.version:
                raise PreconditionFailed(
                    gettext("If-Match %(tag)s does not match the grade's ETag %(now)s.")
                    % {"tag": header[:40], "now": _etag(current)},
                    extra={"current_version": current.version},
                    headers={"ETag": _etag(current)},
                )
            return current.version
        if "version" in self.request.data:
            version: int | None = data.get("version")
            return version or None
        if current is not None:
            raise PreconditionRequired(
                extra={"current_version": current.version}, headers={"ETag": _etag(current)}
            )
        return None


class GradeList(AssignmentScoped):
    queryset = FinalGrade.objects.none()  # the model, for the document's filters
    serializer_class = serializers.GradeSerializer
    filterset_class = filters.GradeFilter
    ordering_fields = ["id", "approved_at", "points"]
    ordering = ["id"]

    @extend_schema(
        operation_id="grades_list",
        responses={200: serializers.GradeSerializer(many=True)},
        tags=["grades"],
        summary="List an assignment's grades",
        description=(
            "Staff and keys with the read scope: every approved grade, released or not. "
            "Students: their own approved grades once the teacher released them "
            "(`selectors.student_visible_grades`), nothing before."
        ),
        examples=[examples.GRADE_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        assignment = self.assignment(pk)
        if permissions.api_can_read_as_staff(self.user, self.key, assignment.course):
            grades: Any = self.filter_queryset(
                FinalGrade.objects.filter(answer__submission__assignment=assignment)
                .select_related("answer", "approved_by")
                .prefetch_related(
                    Prefetch(
                        "criteria",
                        queryset=FinalCriterionGrade.objects.select_related("criterion"),
                    )
                )
            )
            student_view = False
        else:
            grades = selectors.student_visible_grades(student=self.user, assignment=assignment)
            student_view = True
        page = self.paginate_queryset(grades)
        data = self.get_serializer(page, many=True, student_view=student_view).data
        return self.get_paginated_response(data)


class BulkApprove(AssignmentScoped):
    serializer_class = serializers.BulkApproveResultSerializer

    @extend_schema(
        operation_id="grades_bulk_approve",
        tags=["grades"],
        summary="Accept many proposals at once",
        description=(
            "Accepts the AI proposals of the listed answers awaiting review "
            "(`grades_bulk_approve`, as the review queue does). Blank, off-topic and "
            "suspected prompt-injection answers are never approved in bulk (`refused`: "
            "review them one by one); low-confidence proposals only when asked for, each "
            "in `include_flagged` or all with `include_low_confidence`. Ids must be "
            "answers of this assignment."
        ),
        request=serializers.BulkApproveSerializer,
        responses={200: serializers.BulkApproveResultSerializer},
        examples=[examples.BULK_APPROVE, examples.BULK_APPROVED],
    )
    def post(self, request: Request, pk: int) -> Response:
        assignment = self.assignment(pk)
        self.require(
            permissions.api_can_grade(self.user, self.key, assignment.course),
            _("Only the course's graders approve grades."),
        )
        data = self.validated(serializers.BulkApproveSerializer)
        wanted = [*data["answers"], *data["include_flagged"]]
        mine = set(
            Answer.objects.filter(pk__in=wanted, submission__assignment=assignment).values_list(
                "pk", flat=True
            )
        )
        errors = {
            f"{field}.{i}": [gettext("Not an answer of this assignment.")]
            for field in ("answers", "include_flagged")
            for i, answer_id in enumerate(data[field])
            if answer_id not in mine
        }
        if errors:
            raise exceptions.ValidationError(errors)
        try:
            result = services.grades_bulk_approve(
                answer_ids=wanted,
                actor=self.user,
                include_flagged=data["include_flagged"],
                include_low_confidence=data["include_low_confidence"],
            )
        except services.GradeError as exc:
            raise _refused(exc) from exc
        return Response(self.get_serializer(result).data)


# --- Grading and release ------------------------------------------------------------------------


def _progress(assignment: Assignment) -> dict[str, Any]:
    counts = selectors.assignment_progress(assignment=assignment)
    total = sum(counts.values())
    in_flight = counts[AnswerStatus.PENDING] + counts[AnswerStatus.GRADING]
    return {
        "counts": counts,
        "total": total,
        "done": total - in_flight,
        "in_flight": in_flight,
        "finished": in_flight == 0,
    }


class Grading(AssignmentScoped):
    serializer_class = serializers.ProgressSerializer

    @extend_schema(
        operation_id="grading_progress",
        tags=["grading"],
        summary="Watch grading progress",
        description=(
            "Handed-in answers by status. Poll it after starting a run: `finished` turns "
            "true once no answer waits for a scorer."
        ),
        examples=[examples.PROGRESS],
    )
    def get(self, request: Request, pk: int) -> Response:
        assignment = self.staff_assignment(pk, _STAFF_ONLY)
        return Response(_progress(assignment))

    @extend_schema(
        operation_id="grading_start",
        tags=["grading"],
        summary="Start grading",
        description=(
            "Queues every handed-in answer for grading (`assignment_grade`): objective "
            "answers by the key, the others by the model (or the offline rule engine). "
            "Answers whose inputs did not change keep their proposal unless `force`; "
            "approved answers are never regraded. Returns 202 at once; watch progress with "
            "GET. Teachers, teaching assistants and keys with the grade scope."
        ),
        request=serializers.GradingStartSerializer,
        responses={202: serializers.GradingStartedSerializer},
        examples=[examples.GRADING_START, examples.GRADING_STARTED],
    )
    def post(self, request: Request, pk: int) -> Response:
        assignment = self.assignment(pk)
        self.require(
            permissions.api_can_grade(self.user, self.key, assignment.course),
            _("Only the course's graders start grading."),
        )
        data = self.validated(serializers.GradingStartSerializer)
        queued = services.assignment_grade(
            assignment=assignment, actor=self.user, force=data["force"]
        )
        started = serializers.GradingStartedSerializer(
            {"queued": queued, "progress": _progress(assignment)}
        )
        return Response(started.data, status=status.HTTP_202_ACCEPTED)


class Release(AssignmentScoped):
    serializer_class = serializers.ReleaseSerializer
    hide = False

    def post(self, request: Request, pk: int) -> Response:
        assignment = self.assignment(pk)
        self.require(
            permissions.api_can_release(self.user, self.key, assignment),
            _("Releasing and hiding grades is for the course's teachers."),
        )
        if self.hide:
            services.grades_hide(assignment=assignment, actor=self.user)
        else:
            services.grades_release(assignment=assignment, actor=self.user)
        state = {
            "assignment": assignment.pk,
            "grades_released_at": assignment.grades_released_at,
            "release_policy": assignment.release_policy,
        }
        return Response(self.get_serializer(state).data)


class ReleaseGrades(Release):
    @extend_schema(
        operation_id="grades_release",
        tags=["grading"],
        summary="Release grades to students",
        description=(
            "Students see their approved grades of this assignment from now on "
            "(`grades_release`, audited). Releasing again changes nothing. The course's "
            "teachers (not teaching assistants) and keys with the release scope."
        ),
        request=None,
        responses={200: serializers.ReleaseSerializer},
        examples=[examples.RELEASED],
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


class HideGrades(Release):
    hide = True

    @extend_schema(
        operation_id="grades_hide",
        tags=["grading"],
        summary="Hide released grades again",
        description=(
            "Takes the grades out of students' view (approved grades are kept) and sets "
            "the release policy to manual, so the next approval does not release them."
        ),
        request=None,
        responses={200: serializers.ReleaseSerializer},
        examples=[examples.HIDDEN],
    )
    def post(self, request: Request, pk: int) -> Response:
        return super().post(request, pk)


# --- Regrade requests ---------------------------------------------------------------------------


def _regrades(user: Any, key: Any) -> Any:
    return permissions.api_regrade_requests(user, key).select_related("answer__question")


class RegradeList(ApiView):
    queryset = RegradeRequest.objects.none()  # the model, for the document's filters
    serializer_class = serializers.RegradeRequestSerializer
    filterset_class = filters.RegradeFilter
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]

    @extend_schema(
        operation_id="regrade_requests_list",
        responses={200: serializers.RegradeRequestSerializer(many=True)},
        tags=["regrade requests"],
        summary="List regrade requests",
        description=(
            "Staff and keys with the read scope: the requests of their courses. Students: "
            "their own. Filter by `assignment` and `status` (open or answered)."
        ),
        examples=[examples.REGRADE_PAGE],
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(_regrades(self.user, self.key)))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="regrade_requests_create",
        tags=["regrade requests"],
        summary="Ask for a regrade",
        description=(
            "A student asks their teacher to look again at a released grade of their own "
            "(`regrade_request_create`), one open request per answer. Students only."
        ),
        request=serializers.RegradeCreateSerializer,
        responses={201: serializers.RegradeRequestSerializer},
        examples=[examples.REGRADE_CREATE, examples.REGRADE],
    )
    def post(self, request: Request) -> Response:
        data = self.validated(serializers.RegradeCreateSerializer)
        answer = permissions.api_own_answers(self.user, self.key).filter(pk=data["answer"]).first()
        if answer is None:
            if self.key is not None:
                self.deny(_("Students ask for regrades themselves."))
            raise exceptions.ValidationError({"answer": [_("Not one of your answers.")]})
        try:
            regrade = services.regrade_request_create(
                answer=answer, student=self.user, comment=data["comment"]
            )
        except services.SubmissionError as exc:
            raise _refused(exc) from exc
        regrade = _regrades(self.user, self.key).get(pk=regrade.pk)
        return Response(self.get_serializer(regrade).data, status=status.HTTP_201_CREATED)


class RegradeDetail(ApiView):
    serializer_class = serializers.RegradeRequestSerializer

    @extend_schema(
        operation_id="regrade_requests_retrieve",
        tags=["regrade requests"],
        summary="Get a regrade request",
        description="The request, and the teacher's answer once given.",
        examples=[examples.REGRADE_ANSWERED],
    )
    def get(self, request: Request, pk: int) -> Response:
        regrade = get_object_or_404(_regrades(self.user, self.key), pk=pk)
        return Response(self.get_serializer(regrade).data)


class RegradeAnswer(ApiView):
    serializer_class = serializers.RegradeRequestSerializer
    extra_problems = {"POST": (412,)}

    @extend_schema(
        operation_id="regrade_requests_answer",
        tags=["regrade requests"],
        summary="Answer a regrade request",
        description=(
            "The teacher's answer to the student (`regrade_request_answer`); with `scores` "
            "the grade changes too, as an audited override. Teachers, teaching assistants "
            "and keys with the grade scope."
        ),
        request=serializers.RegradeAnswerSerializer,
        responses={200: serializers.RegradeRequestSerializer},
        examples=[examples.REGRADE_ANSWER, examples.REGRADE_ANSWERED],
    )
    def post(self, request: Request, pk: int) -> Response:
        regrade = get_object_or_404(
            _regrades(self.user, self.key).select_related("answer__question__assignment__course"),
            pk=pk,
        )
        self.require(
            permissions.api_can_grade(
                self.user, self.key, regrade.answer.question.assignment.course
            ),
            _("Only the course's graders answer regrade requests."),
        )
        data = self.validated(serializers.RegradeAnswerSerializer)
        try:
            services.regrade_request_answer(
                request=regrade,
                actor=self.user,
                response=data["response"],
                scores=data["scores"] or None,
                reason=data["reason"],
            )
        except services.StaleGrade as exc:
            raise PreconditionFailed(
                str(exc), extra={"current_version": exc.current.version}
            ) from exc
        except services.GradeError as exc:
            raise _refused(exc) from exc
        regrade = _regrades(self.user, self.key).get(pk=regrade.pk)
        return Response(self.get_serializer(regrade).data)


# --- Audit trail -----------------------------------------------------------------------------


class AuditEventList(AssignmentScoped):
    queryset = AuditEvent.objects.none()  # the model, for the document's filters
    serializer_class = serializers.AuditEventSerializer
    filterset_class = filters.AuditEventFilter
    pagination_class = EventCursorPagination

    @extend_schema(
        operation_id="audit_events_list",
        responses={200: serializers.AuditEventSerializer(many=True)},
        tags=["audit"],
        summary="Read an assignment's audit trail",
        description=(
            "Every recorded change of the assignment and its work, newest first, with its "
            "place in the tamper-evident chain (`prev_hash`, `hash`). Read-only; follow "
            "`next` (a cursor) to page back in time. While grading is anonymous, students "
            "are named by their anonymous label. Staff and keys with the read scope."
        ),
        examples=[examples.AUDIT_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        assignment = self.staff_assignment(pk, _STAFF_ONLY)
        events = self.filter_queryset(selectors.audit_events(assignment=assignment))
        page = self.paginate_queryset(events)
        actors = (
            {}
            if permissions.api_sees_student_names(self.user, self.key, assignment)
            else selectors.audit_actor_labels(assignment=assignment, events=page)
        )
        return self.get_paginated_response(self.get_serializer(page, many=True, actors=actors).data)
