"""Grading views. Thin: parse, check permission, call a service, render."""

from __future__ import annotations

import csv
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url

from courses import permissions
from courses.http import HtmxHttpRequest
from courses.models import Assignment

from . import health, selectors, services
from .models import Answer, AnswerStatus, RegradeRequest, Submission


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: database, migrations, grading backlog and the model endpoint, as JSON."""
    report = health.readiness()
    return JsonResponse(report, status=200 if report["ready"] else 503)


def _teachable(request: HtmxHttpRequest, pk: int) -> Assignment:
    # 404, not 403, for everyone else: an outsider learns nothing about the assignment.
    return get_object_or_404(
        permissions.teachable_assignments(request.user).select_related("course"), pk=pk
    )


def _progress_context(assignment: Assignment) -> dict[str, Any]:
    counts = selectors.assignment_progress(assignment=assignment)
    total = sum(counts.values())
    in_flight = counts[AnswerStatus.PENDING] + counts[AnswerStatus.GRADING]
    return {
        "assignment": assignment,
        "counts": counts,
        "total": total,
        "done": total - in_flight,
        "in_flight": in_flight,
        "rows": [(AnswerStatus(status).label, status, n) for status, n in counts.items()],
        "scorer_is_model": bool(settings.LLM_BASE_URL),
        "model_name": settings.LLM_MODEL,
    }


@login_required
@require_GET
def assignment_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _teachable(request, pk)
    return render(
        request,
        "grading/assignment_detail.html",
        {
            **_progress_context(assignment),
            "outdated": selectors.assignment_outdated_questions(assignment=assignment),
            "can_manage": permissions.can_manage(request.user, assignment.course),
        },
    )


@login_required
@require_GET
def assignment_progress(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The progress region alone; it keeps polling itself while grading runs."""
    assignment = _teachable(request, pk)
    return render(request, "grading/_progress.html", _progress_context(assignment))


@login_required
@require_POST
def assignment_grade(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _teachable(request, pk)
    queued = services.assignment_grade(
        assignment=assignment, actor=request.user, force=request.POST.get("force") == "1"
    )
    messages.success(request, _("%(n)s answers queued for grading.") % {"n": queued})
    if request.htmx:
        return render(request, "grading/_progress.html", _progress_context(assignment))
    return redirect("grading:assignment", pk=assignment.pk)


# --- Review --------------------------------------------------------------------------

QUEUE_PAGE_SIZE = 25


@login_required
@require_GET
def review_queue(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _teachable(request, pk)
    status = request.GET.get("status", "")
    queue = selectors.review_queue(assignment=assignment, status=status)
    page = Paginator(queue, QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "assignment": assignment,
        "page": page,
        "status": status,
        "statuses": [(s.value, s.label) for s in selectors.REVIEWABLE],
        "never_bulk": services.NEVER_BULK_APPROVED,
        "regrades": selectors.regrade_requests_open(assignment=assignment),
    }
    template = "grading/_queue.html" if request.htmx else "grading/review_queue.html"
    return render(request, template, context)


@login_required
@require_POST
def review_bulk_approve(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _teachable(request, pk)
    ids = [int(i) for i in request.POST.getlist("answer") if i.isdigit()]
    ticked = [int(i) for i in request.POST.getlist("flagged") if i.isdigit()]
    mine = Answer.objects.filter(pk__in=ids + ticked, submission__assignment=assignment)
    allowed = set(mine.values_list("pk", flat=True))
    approved, skipped = services.grades_bulk_approve(
        answer_ids=[i for i in ids + ticked if i in allowed],
        actor=request.user,
        include_flagged=[i for i in ticked if i in allowed],
    )
    messages.success(
        request,
        _("%(a)s approved; %(s)s flagged answers left for one-by-one review.")
        % {"a": approved, "s": skipped},
    )
    return redirect("grading:queue", pk=assignment.pk)


def _review_context(answer: Answer, assignment: Assignment, **extra: Any) -> dict[str, Any]:
    proposal = answer.current_assessment
    snapshot = selectors.grading_rubric(answer=answer)
    ai = {s.criterion_id: s for s in proposal.scores.all()} if proposal else {}
    grade = getattr(answer, "final_grade", None)
    final = {c.criterion_id: c.points for c in grade.criteria.all()} if grade else {}
    criteria = [
        {
            **c,
            "ai": ai.get(c["id"]),
            "value": final.get(c["id"], ai[c["id"]].points if c["id"] in ai else ""),
        }
        for c in (snapshot["criteria"] if snapshot else [])
    ]
    neighbours = selectors.review_neighbours(answer=answer, assignment=assignment)
    return {
        "assignment": assignment,
        "answer": answer,
        "proposal": proposal,
        "grade": grade,
        "criteria": criteria,
        "feedback": grade.feedback if grade else (proposal.feedback if proposal else ""),
        **neighbours,
        "anonymous": assignment.anonymous_grading,
        "has_rubric": snapshot is not None,
        "regrades": list(answer.regrade_requests.all()),
        **extra,
    }


def _reviewable(request: HtmxHttpRequest, answer_pk: int) -> Answer:
    return get_object_or_404(
        Answer.objects.select_related(
            "submission__student",
            "question__rubric",
            "current_assessment__rubric_snapshot",
            "question__assignment__course",
        ).filter(question__assignment__in=permissions.teachable_assignments(request.user)),
        pk=answer_pk,
    )


@login_required
def review_answer(request: HtmxHttpRequest, answer_pk: int) -> HttpResponse:
    answer = _reviewable(request, answer_pk)
    assignment = answer.question.assignment
    extra: dict[str, Any] = {}
    if request.method == "POST":
        scores = {
            int(key.removeprefix("score-")): request.POST.get(key, "")
            for key in request.POST
            if key.startswith("score-") and key.removeprefix("score-").isdigit()
        }
        version = request.POST.get("version", "")
        try:
            parsed = {k: int(v) for k, v in scores.items()}
            services.grade_approve(
                answer=answer,
                actor=request.user,
                scores=parsed,
                feedback=request.POST.get("feedback", ""),
                reason=request.POST.get("reason", ""),
                expected_version=int(version) if version.isdigit() else None,
            )
        except ValueError as exc:  # GradeError, StaleGrade, or a score that is not a number
            message = (
                str(exc)
                if isinstance(exc, services.GradeError)
                else _("Scores must be whole numbers.")
            )
            extra = {"error": message, "posted": request.POST}
        else:
            messages.success(request, _("Grade approved."))
            following = selectors.review_neighbours(answer=answer, assignment=assignment)["next_id"]
            if following is None:
                queue_url = reverse("grading:queue", args=[assignment.pk])
                if request.htmx:
                    return HttpResponseClientRedirect(queue_url)
                return redirect(queue_url)
            if request.htmx:  # swap in the next answer without a page load
                nxt = _reviewable(request, following)
                response = render(
                    request, "grading/_review_panel.html", _review_context(nxt, assignment)
                )
                return push_url(response, reverse("grading:review", args=[following]))
            return redirect("grading:review", answer_pk=following)
        answer = _reviewable(request, answer_pk)
    context = _review_context(answer, assignment, **extra)
    template = "grading/_review_panel.html" if request.htmx else "grading/review.html"
    return render(request, template, context, status=409 if extra else 200)


@login_required
@require_GET
def assignment_export(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Approved grades as CSV, UTF-8 with a BOM so Excel shows Chinese names correctly."""
    assignment = _teachable(request, pk)
    header, rows = selectors.assignment_grade_table(assignment=assignment)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="grades-{assignment.pk}.csv"'
    response.write("\ufeff")
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows(rows)
    return response


@login_required
@require_GET
def audit_trail(request: HtmxHttpRequest, pk: int, scope: str = "assignment") -> HttpResponse:
    """Every recorded change for one assignment, or for one submission of it."""
    if scope == "submission":
        submission = get_object_or_404(
            Submission.objects.select_related("assignment", "student").filter(
                assignment__in=permissions.teachable_assignments(request.user)
            ),
            pk=pk,
        )
        assignment = submission.assignment
    else:
        submission = None
        assignment = _teachable(request, pk)
    events = selectors.audit_events(assignment=assignment, submission=submission)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(
        request,
        "grading/audit.html",
        {"assignment": assignment, "submission": submission, "page": page},
    )


@login_required
@require_POST
def assignment_release(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Release approved grades to students, or hide them again."""
    assignment = _teachable(request, pk)
    if request.POST.get("action") == "hide":
        services.grades_hide(assignment=assignment, actor=request.user)
        messages.success(request, _("Grades are hidden from students again."))
    else:
        services.grades_release(assignment=assignment, actor=request.user)
        messages.success(request, _("Approved grades are now visible to students."))
    return redirect("grading:assignment", pk=assignment.pk)


@login_required
@require_POST
def regrade_answer(request: HtmxHttpRequest, request_pk: int) -> HttpResponse:
    regrade = get_object_or_404(
        RegradeRequest.objects.select_related("answer__question__assignment").filter(
            answer__question__assignment__in=permissions.teachable_assignments(request.user)
        ),
        pk=request_pk,
    )
    try:
        services.regrade_request_answer(
            request=regrade, actor=request.user, response=request.POST.get("response", "")
        )
    except services.GradeError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Your answer was sent to the student."))
    return redirect("grading:review", answer_pk=regrade.answer_id)
