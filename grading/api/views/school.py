"""Courses, enrollments, assignments and rubrics: the school the work belongs to."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from courses import permissions, services
from courses.models import Enrollment

from ... import rubrics
from ...models import Rubric
from .. import filters, serializers
from ..base import ApiView
from . import examples

# --- Courses --------------------------------------------------------------------------------


class CourseList(ApiView):
    serializer_class = serializers.CourseSerializer
    filterset_class = filters.CourseFilter
    ordering_fields = ["code", "title", "created_at"]
    ordering = ["code"]

    def get_queryset(self) -> Any:
        return permissions.api_courses(self.user, self.key)

    @extend_schema(
        operation_id="courses_list",
        responses={200: serializers.CourseSerializer(many=True)},
        tags=["courses"],
        summary="List courses",
        description=(
            "The courses the caller teaches or studies in; for an API key, its courses "
            "(every course for a site-wide key)."
        ),
        examples=[examples.COURSE_PAGE],
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class CourseDetail(ApiView):
    serializer_class = serializers.CourseSerializer

    @extend_schema(
        operation_id="courses_retrieve",
        tags=["courses"],
        summary="Get a course",
        description="One course the caller may see; other courses are 404.",
        examples=[examples.COURSE],
    )
    def get(self, request: Request, pk: int) -> Response:
        course = get_object_or_404(permissions.api_courses(self.user, self.key), pk=pk)
        return Response(self.get_serializer(course).data)


# --- Enrollments ----------------------------------------------------------------------------


class EnrollmentList(ApiView):
    serializer_class = serializers.EnrollmentSerializer
    filterset_class = filters.EnrollmentFilter
    ordering_fields = ["created_at", "role", "user__username"]
    ordering = ["role", "user__username"]

    def get_queryset(self) -> Any:
        return Enrollment.objects.select_related("user").order_by("role", "user__username")

    def _course(self, pk: int) -> Any:
        return get_object_or_404(permissions.api_courses(self.user, self.key), pk=pk)

    @extend_schema(
        operation_id="enrollments_list",
        responses={200: serializers.EnrollmentSerializer(many=True)},
        tags=["enrollments"],
        summary="List a course's enrollments",
        description=(
            "Who is in the course and as what, current and ended enrollments alike "
            "(`?active=true` for current ones). For the course's teachers and teaching "
            "assistants, and keys with the read scope."
        ),
        examples=[examples.ENROLLMENT_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        course = self._course(pk)
        self.require(
            permissions.api_can_read_as_staff(self.user, self.key, course),
            _("Only the course's teachers and teaching assistants see its roster."),
        )
        enrollments = self.filter_queryset(self.get_queryset().filter(course=course))
        page = self.paginate_queryset(enrollments)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="enrollments_create",
        tags=["enrollments"],
        summary="Enroll an existing account",
        description=(
            "Adds an account, found by username, e-mail or student number, to the course "
            "as student, teaching assistant or teacher (`courses.services.enrollment_add`, "
            "audited). The course's teachers only; API keys do not change rosters."
        ),
        request=serializers.EnrollmentCreateSerializer,
        responses={201: serializers.EnrollmentSerializer},
        examples=[examples.ENROLLMENT_CREATE, examples.ENROLLMENT],
    )
    def post(self, request: Request, pk: int) -> Response:
        course = self._course(pk)
        self.require(
            permissions.api_can_manage(self.user, self.key, course),
            _("Only the course's teachers change its roster."),
        )
        data = self.validated(serializers.EnrollmentCreateSerializer)
        enrollment = services.enrollment_add(
            course=course, identifier=data["identifier"], role=data["role"], actor=self.user
        )
        return Response(self.get_serializer(enrollment).data, status=status.HTTP_201_CREATED)


class EnrollmentEnd(ApiView):
    serializer_class = serializers.EnrollmentSerializer

    @extend_schema(
        operation_id="enrollments_end",
        tags=["enrollments"],
        summary="End an enrollment",
        description=(
            "Removes the person from the course. The enrollment stays, with its end date, "
            "and so do their submissions and grades. A course keeps at least one teacher. "
            "Ending an ended enrollment changes nothing."
        ),
        request=None,
        responses={200: serializers.EnrollmentSerializer},
        examples=[examples.ENROLLMENT_ENDED],
    )
    def post(self, request: Request, pk: int) -> Response:
        enrollment = get_object_or_404(
            Enrollment.objects.select_related("user", "course").filter(
                course__in=permissions.api_courses(self.user, self.key)
            ),
            pk=pk,
        )
        self.require(
            permissions.api_can_manage(self.user, self.key, enrollment.course),
            _("Only the course's teachers change its roster."),
        )
        enrollment = services.enrollment_end(enrollment=enrollment, actor=self.user)
        return Response(self.get_serializer(enrollment).data)


# --- Assignments ----------------------------------------------------------------------------


class AssignmentList(ApiView):
    serializer_class = serializers.AssignmentSerializer
    filterset_class = filters.AssignmentFilter
    ordering_fields = ["due_at", "created_at", "title", "id"]
    ordering = ["id"]

    def get_queryset(self) -> Any:
        return permissions.api_assignments(self.user, self.key)

    @extend_schema(
        operation_id="assignments_list",
        responses={200: serializers.AssignmentSerializer(many=True)},
        tags=["assignments"],
        summary="List assignments",
        description=(
            "Every assignment of the courses the caller teaches (drafts included), and the "
            "published ones of the courses a student studies. Filter by `course` or `state`."
        ),
        examples=[examples.ASSIGNMENT_PAGE],
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class AssignmentDetail(ApiView):
    serializer_class = serializers.AssignmentDetailSerializer

    @extend_schema(
        operation_id="assignments_retrieve",
        tags=["assignments"],
        summary="Get an assignment with its questions and rubrics",
        description=(
            "The assignment and its questions in order. Staff (and keys) see each "
            "question's rubric, answer key, reference answer and grader guidelines; "
            "students see those as null. Objective questions list their `options`: "
            "hand in the option key(s) as the answer text."
        ),
        examples=[examples.ASSIGNMENT_DETAIL],
    )
    def get(self, request: Request, pk: int) -> Response:
        assignment = get_object_or_404(
            permissions.api_assignments(self.user, self.key)
            .select_related("course")
            .prefetch_related("questions__rubric__criteria__levels"),
            pk=pk,
        )
        staff = permissions.api_can_read_as_staff(self.user, self.key, assignment.course)
        return Response(self.get_serializer(assignment, student_view=not staff).data)


# --- Rubrics --------------------------------------------------------------------------------


class RubricList(ApiView):
    serializer_class = serializers.RubricSerializer
    filterset_class = filters.RubricFilter
    ordering_fields = ["title", "created_at", "id"]
    ordering = ["title", "-version"]

    def get_queryset(self) -> Any:
        return permissions.api_rubrics(self.user, self.key).prefetch_related("criteria__levels")

    @extend_schema(
        operation_id="rubrics_list",
        responses={200: serializers.RubricSerializer(many=True)},
        tags=["rubrics"],
        summary="List rubrics",
        description=(
            "For teachers, every rubric of the school (templates, their own, colleagues'), "
            "every version; `lineage` groups the versions of one rubric. For a key, the "
            "rubrics its courses' questions use."
        ),
        examples=[examples.RUBRIC_PAGE],
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="rubrics_create",
        tags=["rubrics"],
        summary="Create a rubric",
        description=(
            "A new rubric owned by the caller, with its criteria and levels, built through "
            "the same rubric services as the rubric builder (validated and audited). "
            "Teachers only. A criterion scored by `levels` needs at least one level."
        ),
        request=serializers.RubricCreateSerializer,
        responses={201: serializers.RubricSerializer},
        examples=[examples.RUBRIC_CREATE, examples.RUBRIC],
    )
    def post(self, request: Request) -> Response:
        self.require(
            permissions.api_can_keep_rubrics(self.user, self.key),
            _("Only teachers create rubrics."),
        )
        data = self.validated(serializers.RubricCreateSerializer)
        criteria = data.pop("criteria")
        with transaction.atomic():
            rubric = rubrics.rubric_create(owner=self.user, actor=self.user, **data)
            for spec in criteria:
                _criterion_build(rubric, spec, self.user)
        rubric = Rubric.objects.prefetch_related("criteria__levels").get(pk=rubric.pk)
        return Response(self.get_serializer(rubric).data, status=status.HTTP_201_CREATED)


def _criterion_build(rubric: Rubric, spec: dict[str, Any], actor: Any) -> None:
    """One criterion and its levels, through the builder's services: scoring by levels is
    switched on once the levels exist, as the builder requires."""
    levels = spec.pop("levels")
    scoring = spec.pop("scoring")
    rubrics.criterion_add(rubric=rubric, actor=actor, scoring="range", **spec)
    criterion = rubric.criteria.order_by("-order").first()
    assert criterion is not None  # just added
    for level in levels:
        rubrics.level_add(criterion=criterion, actor=actor, **level)
    if scoring != "range":
        rubrics.criterion_update(criterion=criterion, actor=actor, scoring=scoring)


class RubricDetail(ApiView):
    serializer_class = serializers.RubricSerializer

    @extend_schema(
        operation_id="rubrics_retrieve",
        tags=["rubrics"],
        summary="Get a rubric version",
        description="One version of a rubric, with its criteria and levels.",
        examples=[examples.RUBRIC],
    )
    def get(self, request: Request, pk: int) -> Response:
        rubric = get_object_or_404(
            permissions.api_rubrics(self.user, self.key).prefetch_related("criteria__levels"),
            pk=pk,
        )
        return Response(self.get_serializer(rubric).data)


class RubricCopy(ApiView):
    serializer_class = serializers.RubricSerializer

    @extend_schema(
        operation_id="rubrics_copy",
        tags=["rubrics"],
        summary="Copy a rubric",
        description=(
            "The caller's own copy of a template or a colleague's rubric: a new lineage at "
            "version 1, theirs to change. Teachers only."
        ),
        request=serializers.RubricCopySerializer,
        responses={201: serializers.RubricSerializer},
        examples=[examples.RUBRIC_COPY, examples.RUBRIC],
    )
    def post(self, request: Request, pk: int) -> Response:
        source = get_object_or_404(permissions.api_rubrics(self.user, self.key), pk=pk)
        self.require(
            permissions.api_can_keep_rubrics(self.user, self.key),
            _("Only teachers copy rubrics."),
        )
        data = self.validated(serializers.RubricCopySerializer)
        rubric = rubrics.rubric_copy(
            source=source, owner=self.user, actor=self.user, title=data["title"]
        )
        rubric = Rubric.objects.prefetch_related("criteria__levels").get(pk=rubric.pk)
        return Response(self.get_serializer(rubric).data, status=status.HTTP_201_CREATED)
