"""Grading views. Thin: parse, check permission, call a service, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url

from courses import permissions
from courses.http import HtmxHttpRequest, parse_id, post_ids, post_keyed, post_optional_id
from courses.models import Assignment, Course

from . import analytics, audit_text, exports, health, selectors, services
from .comment_views import BANK_PAGE_SIZE
from .models import (
    Answer,
    AnswerStatus,
    CriterionScoring,
    RegradeRequest,
    RegradeStatus,
    Submission,
)
from .services import exemplars
from .workspace import level_band, level_met, parse_score


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness, as the status code and {"ready": bool}. The details (database,
    migrations, grading backlog, the model endpoint's URL and errors) say too much about
    the deployment for anyone on the internet: staff or the READYZ_TOKEN only."""
    detail = permissions.can_see_service_details(
        getattr(request, "user", None)
    ) or health.token_presented(request)
    report = health.readiness(detail=detail)
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
        "waiting_for_model_since": selectors.assignment_waiting_for_model(assignment=assignment),
        "usage": selectors.assignment_usage(assignment=assignment),
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
            "can_release": permissions.can_release(request.user, assignment),
            # What releasing shows students now and what it holds back, before it happens.
            "preview": selectors.release_preview(assignment=assignment),
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
        # Per question: the AI's measured agreement with the teachers, and whether it
        # justifies "approve all above confidence X" (offered only then).
        "trust": [
            (question, measured)
            for question in assignment.questions.filter(rubric__isnull=False).order_by("order")
            if (
                measured := analytics.assignment_agreement(assignment=assignment, question=question)
            ).reviewed
        ],
        "bulk_confidence": services.LOW_CONFIDENCE,
    }
    template = "grading/_queue.html" if request.htmx else "grading/review_queue.html"
    return render(request, template, context)


def _bulk_approval_message(result: services.BulkApproval, waiting: dict[str, int]) -> str:
    """What a bulk approval did and what it left, each count true (ngettext for plurals)."""
    parts = [
        ngettext("%(n)s answer approved.", "%(n)s answers approved.", result.approved)
        % {"n": result.approved}
    ]
    if result.approved_low_confidence:
        parts.append(
            ngettext(
                "%(n)s of them was a low-confidence proposal, as you chose.",
                "%(n)s of them were low-confidence proposals, as you chose.",
                result.approved_low_confidence,
            )
            % {"n": result.approved_low_confidence}
        )
    if result.skipped_low_confidence:
        parts.append(
            ngettext(
                "%(n)s low-confidence proposal was not approved: use “Approve selected, "
                "low-confidence too” to approve it.",
                "%(n)s low-confidence proposals were not approved: use “Approve selected, "
                "low-confidence too” to approve them.",
                result.skipped_low_confidence,
            )
            % {"n": result.skipped_low_confidence}
        )
    if result.refused:
        parts.append(
            ngettext(
                "%(n)s blank, off-topic or suspected prompt-injection answer is never "
                "approved in bulk: open it to grade it.",
                "%(n)s blank, off-topic or suspected prompt-injection answers are never "
                "approved in bulk: open each one to grade it.",
                result.refused,
            )
            % {"n": result.refused}
        )
    if waiting["waiting"]:
        parts.append(
            ngettext(
                "%(n)s answer still waits for review (%(f)s flagged or to grade by hand).",
                "%(n)s answers still wait for review (%(f)s flagged or to grade by hand).",
                waiting["waiting"],
            )
            % {"n": waiting["waiting"], "f": waiting["flagged"]}
        )
    else:
        parts.append(_("No answers wait for review."))
    return " ".join(parts)


@login_required
@require_POST
def review_bulk_approve(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Accept the ticked proposals. The second button ("low-confidence too") says so in
    `include_low_confidence`; blank, off-topic and suspected injections never go in bulk."""
    assignment = _teachable(request, pk)
    ids = post_ids(request, "answer")
    if not ids:
        messages.error(request, _("Tick the answers to approve first."))
        return redirect("grading:queue", pk=assignment.pk)
    mine = Answer.objects.filter(pk__in=ids, submission__assignment=assignment)
    result = services.grades_bulk_approve(
        answer_ids=list(mine.values_list("pk", flat=True)),
        actor=request.user,
        include_low_confidence=request.POST.get("include_low_confidence") == "1",
    )
    message = _bulk_approval_message(result, selectors.review_waiting(assignment=assignment))
    (messages.success if result.approved else messages.warning)(request, message)
    return redirect("grading:queue", pk=assignment.pk)


def _posted_scores(request: HtmxHttpRequest) -> dict[int, int]:
    """The `score-<criterion id>` fields as whole numbers; ValueError names the problem."""
    try:
        return {k: int(v) for k, v in post_keyed(request, "score-").items()}
    except ValueError:
        raise services.GradeError(_("Scores must be whole numbers.")) from None


def _review_context(
    request: HtmxHttpRequest,
    answer: Answer,
    assignment: Assignment,
    *,
    error: str = "",
    focus: str = "",
    posted: QueryDict | None = None,
) -> dict[str, Any]:
    """The workspace: the answer with its inline comments beside the rubric. `posted` is a
    refused save's form: the page shows what the teacher typed, not what is stored."""
    proposal = answer.current_assessment
    snapshot = selectors.grading_rubric(answer=answer)
    ai = {s.criterion_id: s for s in proposal.scores.all()} if proposal else {}
    grade = getattr(answer, "final_grade", None)
    final = {c.criterion_id: c.points for c in grade.criteria.all()} if grade else {}
    criteria = []
    for c in snapshot["criteria"] if snapshot else []:
        ai_points = ai[c["id"]].points if c["id"] in ai else None
        value: int | str = final.get(c["id"], "" if ai_points is None else ai_points)
        if posted is not None:
            value = posted.get(f"score-{c['id']}", value)
        points = parse_score(value)
        ai_level, chosen_level = level_met(c["levels"], ai_points), level_met(c["levels"], points)
        criteria.append(
            {
                **c,
                "ai": ai.get(c["id"]),
                "ai_points": ai_points,
                "value": value,
                "changed": ai_points is not None and points is not None and points != ai_points,
                "levels": [
                    {
                        **lv,
                        "ai": i == ai_level,
                        "chosen": i == chosen_level,
                        # With range scoring a level stands for a band of scores.
                        "band": ""
                        if c.get("scoring") == CriterionScoring.LEVELS
                        else level_band(c["levels"], i, c["max_points"]),
                    }
                    for i, lv in enumerate(c["levels"])
                ],
            }
        )
    stored_feedback = grade.feedback if grade else (proposal.student_feedback if proposal else "")
    regrades = list(answer.regrade_requests.all())
    return {
        "assignment": assignment,
        "answer": answer,
        "proposal": proposal,
        "grade": grade,
        "criteria": criteria,
        "total": sum(parse_score(c["value"]) or 0 for c in criteria),
        "max_total": sum(c["max_points"] for c in criteria),
        "feedback": posted.get("feedback", stored_feedback) if posted else stored_feedback,
        **selectors.review_neighbours(answer=answer, assignment=assignment),
        "has_rubric": snapshot is not None,
        "regrades": regrades,
        "open_regrade": next((r for r in regrades if r.status == RegradeStatus.OPEN), None),
        "comments": selectors.answer_comments(answer=answer),
        "bank": selectors.comment_bank(owner=request.user)[:BANK_PAGE_SIZE],
        "error": error,
        "focus": focus,  # the field a refused save puts the teacher in ("" : the error)
        "posted": posted,
    }


def _reviewable(request: HtmxHttpRequest, answer_pk: int) -> Answer:
    return get_object_or_404(
        Answer.objects.select_related(
            "submission__student",
            "question__rubric",
            "current_assessment__rubric_snapshot",
            "question__assignment__course",
            "final_grade__approved_by",
        ).filter(question__assignment__in=permissions.teachable_assignments(request.user)),
        pk=answer_pk,
    )


def _review_save(request: HtmxHttpRequest, answer: Answer) -> str:
    """Approve the grade as the form has it, and with a reply to the open regrade request
    answer it in the same step. Returns the success message; GradeError when refused."""
    scores = _posted_scores(request)
    version = post_optional_id(request, "version")  # the grade's version the page showed
    regrade_id = parse_id(request.POST.get("regrade"))
    if regrade_id is not None and request.POST.get("action") == "reply":
        regrade = get_object_or_404(answer.regrade_requests.all(), pk=regrade_id)
        services.regrade_request_answer(
            request=regrade,
            actor=request.user,
            response=request.POST.get("regrade_response", ""),
            scores=scores,
            reason=request.POST.get("reason", ""),
            feedback=request.POST.get("feedback", ""),
            expected_version=version,
        )
        return _("Reply sent to the student; the grade is saved.")
    services.grade_approve(
        answer=answer,
        actor=request.user,
        scores=scores,
        feedback=request.POST.get("feedback", ""),
        reason=request.POST.get("reason", ""),
        expected_version=version,
    )
    return _("Grade approved.")


@login_required
def review_answer(request: HtmxHttpRequest, answer_pk: int) -> HttpResponse:
    answer = _reviewable(request, answer_pk)
    assignment = answer.question.assignment
    if request.method != "POST":
        template = "grading/_review_panel.html" if request.htmx else "grading/review.html"
        return render(request, template, _review_context(request, answer, assignment))
    try:
        done = _review_save(request, answer)
    except services.GradeError as exc:
        # Said beside the Approve button, in the refused form (with everything the teacher
        # typed) that replaces the workspace; over HTMX also as a notice (courses.middleware).
        if request.htmx:
            messages.error(request, str(exc))
        stale = isinstance(exc, services.StaleGrade)  # show the colleague's grade instead
        context = _review_context(
            request,
            _reviewable(request, answer_pk),
            assignment,
            error=str(exc),
            focus="reason" if isinstance(exc, services.ReasonRequired) else "",
            posted=None if stale else request.POST,
        )
        template = "grading/_review_panel.html" if request.htmx else "grading/review.html"
        return render(request, template, context, status=409)
    messages.success(request, done)
    following = selectors.review_neighbours(answer=answer, assignment=assignment)["next_id"]
    if following is None:
        queue_url = reverse("grading:queue", args=[assignment.pk])
        if request.htmx:
            return HttpResponseClientRedirect(queue_url)
        return redirect(queue_url)
    if request.htmx:  # swap in the next answer without a page load
        nxt = _reviewable(request, following)
        response = render(
            request, "grading/_review_panel.html", _review_context(request, nxt, assignment)
        )
        return push_url(response, reverse("grading:review", args=[following]))
    return redirect("grading:review", answer_pk=following)


@login_required
@require_GET
def assignment_export(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Approved grades as a spreadsheet-safe CSV (`grading.exports`); every row says whether
    it is complete, and current students who never handed in are listed as missing, with
    empty totals or (`?missing=zero`, the teacher's choice) zero."""
    assignment = _teachable(request, pk)
    header, rows = selectors.assignment_grade_table(
        assignment=assignment, missing_as_zero=request.GET.get("missing") == "zero"
    )
    return exports.csv_response(filename=f"grades-{assignment.pk}.csv", header=header, rows=rows)


AUDIT_PAGE_SIZE = 100


@login_required
@require_GET
def audit_trail(request: HtmxHttpRequest, pk: int, scope: str = "assignment") -> HttpResponse:
    """Every recorded change for one assignment, or for one submission of it, in words:
    filtered by student, question, actor and action, a page at a time."""
    if scope == "submission":
        submission = get_object_or_404(
            Submission.objects.select_related("assignment__course", "student").filter(
                assignment__in=permissions.teachable_assignments(request.user)
            ),
            pk=pk,
        )
        assignment = submission.assignment
    else:
        submission = None
        assignment = _teachable(request, pk)
    student = request.GET.get("student", "")
    actor = request.GET.get("actor", "")
    action = request.GET.get("action", "")[:60]
    events = selectors.audit_events(
        assignment=assignment,
        submission=submission,
        # While grading is anonymous a student is chosen one submission ("s<id>") at a time.
        student_id=parse_id(student),
        submission_id=parse_id(student[1:]) if student.startswith("s") else None,
        question_id=parse_id(request.GET.get("question")),
        actor_id=parse_id(actor),
        system=actor == "system",
        action=action,
    )
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    page_events = list(page.object_list)
    # Anonymous grading holds here too: students are named as on the review pages.
    context = selectors.audit_context(assignment=assignment, events=page_events)
    choices = selectors.audit_filter_choices(assignment=assignment, submission=submission)
    return render(
        request,
        "grading/audit.html",
        {
            "assignment": assignment,
            "submission": submission,
            "page": page,
            "lines": audit_text.audit_lines(events=page_events, context=context),
            "student_label": submission.label_for_graders(assignment) if submission else "",
            "choices": choices,
            "actions": [(code, audit_text.action_label(code)) for code in choices.actions],
            "chosen": {
                "student": student,
                "question": request.GET.get("question", ""),
                "actor": actor,
                "action": action,
            },
        },
    )


@login_required
@require_POST
def assignment_release(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Release approved grades to students, or hide them again (the course's teachers)."""
    assignment = _teachable(request, pk)
    if not permissions.can_release(request.user, assignment):
        # A TA sees this assignment, so a 404 would be a lie; say it is not theirs to do.
        raise PermissionDenied
    if request.POST.get("action") == "hide":
        services.grades_hide(assignment=assignment, actor=request.user)
        messages.success(request, _("Grades are hidden from students again."))
    else:
        services.grades_release(assignment=assignment, actor=request.user)
        preview = selectors.release_preview(assignment=assignment)
        message = _("Approved grades are now visible to students.")
        if preview.anything_held_back:
            message += " " + _(
                "Answers not approved yet show as pending; each one appears as soon as it "
                "is approved."
            )
        messages.success(request, message)
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
        # Reply and rescore in one step: a form may send the new scores (`score-<id>`), a
        # reason, new feedback and the grade's version along with the reply.
        feedback = request.POST.get("feedback")
        services.regrade_request_answer(
            request=regrade,
            actor=request.user,
            response=request.POST.get("response", ""),
            scores=_posted_scores(request) or None,
            reason=request.POST.get("reason", ""),
            feedback=feedback,
            expected_version=post_optional_id(request, "version"),
        )
    except services.GradeError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Your reply was sent to the student."))
    return redirect("grading:review", answer_pk=regrade.answer_id)


# --- A teacher's overview across assignments ----------------------------------------------

INBOX_PAGE_SIZE = 50


@login_required
@require_GET
def regrade_inbox(request: HtmxHttpRequest) -> HttpResponse:
    """Every open regrade request of the courses this person teaches, oldest first; each
    opens the answer's review page, where the reply and a new score go in one step."""
    assignments = permissions.teachable_assignments(request.user)
    only = parse_id(request.GET.get("assignment"))
    chosen = assignments.select_related("course").filter(pk=only).first() if only else None
    if chosen is not None:  # one assignment's requests (its link on the home page)
        assignments = assignments.filter(pk=chosen.pk)
    requests = selectors.regrade_inbox(assignments=assignments)
    page = Paginator(requests, INBOX_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        # Anonymous grading holds here as on the review pages.
        (r, r.answer.submission.label_for_graders(r.answer.question.assignment))
        for r in page.object_list
    ]
    return render(
        request, "grading/regrade_inbox.html", {"page": page, "rows": rows, "chosen": chosen}
    )


def _teachable_course(request: HtmxHttpRequest, pk: int) -> Course:
    return get_object_or_404(permissions.teaching_courses(request.user), pk=pk)


@login_required
@require_GET
def gradebook(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Students × assignments: where each student's work stands, from missing to released."""
    course = _teachable_course(request, pk)
    book = selectors.course_gradebook(course=course)
    return render(
        request,
        "grading/gradebook.html",
        {
            "course": course,
            "book": book,
            "statuses": selectors.GradebookStatus,
            "can_manage": permissions.can_manage(request.user, course),
        },
    )


@login_required
@require_GET
def gradebook_export(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The gradebook as a spreadsheet-safe CSV (`grading.exports`)."""
    course = _teachable_course(request, pk)
    header, rows = selectors.gradebook_table(gradebook=selectors.course_gradebook(course=course))
    return exports.csv_response(filename=f"gradebook-{course.pk}.csv", header=header, rows=rows)


# --- Calibration and agreement -------------------------------------------------------


@login_required
@require_POST
def answer_exemplar(request: HtmxHttpRequest, answer_pk: int) -> HttpResponse:
    """Pin a graded answer as an exemplar of its question, exclude it, or reset."""
    answer = _reviewable(request, answer_pk)
    choices: dict[str, exemplars.Choice] = {
        "pinned": "pinned",
        "excluded": "excluded",
        "default": "default",
    }
    choice = choices.get(request.POST.get("choice", ""))
    if choice is None:
        raise PermissionDenied  # a forged form; the page only offers the three
    exemplars.exemplar_choose(answer=answer, actor=request.user, choice=choice)
    messages.success(
        request,
        {
            "pinned": _("This answer is pinned as an example for the AI."),
            "excluded": _("This answer will not be used as an example for the AI."),
            "default": _("This answer is an example for the AI once graded (the default)."),
        }[choice],
    )
    return redirect("grading:review", answer_pk=answer.pk)


@login_required
@require_POST
def assignment_calibrate(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Regrade with calibration: agreement before/after on the teacher's grades, then
    queue the answers not approved yet."""
    assignment = _teachable(request, pk)
    queued, checks = exemplars.assignment_regrade_calibrated(
        assignment=assignment, actor=request.user
    )
    return render(
        request,
        "grading/calibration.html",
        {
            "assignment": assignment,
            "queued": queued,
            "checks": checks,
            "minimum": exemplars.CHECK_MIN,
        },
    )


@login_required
@require_GET
def assignment_agreement(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    assignment = _teachable(request, pk)
    question_pk = parse_id(request.GET.get("question"))
    question = (
        get_object_or_404(assignment.questions.all(), pk=question_pk) if question_pk else None
    )
    return render(
        request,
        "grading/agreement.html",
        {
            "assignment": assignment,
            "question": question,
            "questions": assignment.questions.filter(rubric__isnull=False).order_by("order"),
            "analytics": analytics.assignment_agreement(assignment=assignment, question=question),
            "bulk_min_reviewed": analytics.BULK_MIN_REVIEWED,
            "bulk_min_exact": analytics.BULK_MIN_EXACT,
            "bulk_min_adjacent": analytics.BULK_MIN_ADJACENT,
            "chart_width": analytics.CHART_WIDTH,
            "chart_height": analytics.CHART_HEIGHT,
        },
    )


@login_required
@require_POST
def question_bulk_approve(request: HtmxHttpRequest, pk: int, question_pk: int) -> HttpResponse:
    """Approve all above confidence X, for one question; refused unless the measured
    agreement justifies it (the queue offers the button only then)."""
    assignment = _teachable(request, pk)
    question = get_object_or_404(assignment.questions.all(), pk=question_pk)
    try:
        result = exemplars.question_bulk_approve_trusted(question=question, actor=request.user)
    except exemplars.BulkApprovalNotJustified:
        messages.error(
            request, _("The AI's measured agreement on this question does not justify that yet.")
        )
        return redirect("grading:queue", pk=assignment.pk)
    message = _bulk_approval_message(result, selectors.review_waiting(assignment=assignment))
    (messages.success if result.approved else messages.warning)(request, message)
    return redirect("grading:queue", pk=assignment.pk)
