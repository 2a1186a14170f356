"""The review workspace's comments: inline comments on passages of an answer, and each
teacher's comment bank. Thin, like every view: parse, check permission, call a service,
render the part of the workspace that changed (HTMX) or go back to the review page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from courses import permissions
from courses.http import HtmxHttpRequest

from . import selectors, services
from .models import Answer, AnswerComment, CommentBankEntry

BANK_PAGE_SIZE = 30  # as on the review page; the search finds the rest
_MAX_OFFSET_DIGITS = 9  # a position in an answer (ANSWER_MAX_CHARS is far below 10⁹)


def _offset(value: str | None) -> int | None:
    """A character position from the page (0 is one), or None when it is not a number."""
    if not value or len(value) > _MAX_OFFSET_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _reviewable_answers(request: HtmxHttpRequest) -> QuerySet[Answer]:
    # As on the review page: graders of the assignment's course, 404 for everyone else.
    return Answer.objects.select_related("question__assignment", "submission").filter(
        question__assignment__in=permissions.teachable_assignments(request.user)
    )


def _annotations(request: HtmxHttpRequest, answer: Answer, status: int = 200) -> HttpResponse:
    if not request.htmx:
        return redirect("grading:review", answer_pk=answer.pk)
    context = {"answer": answer, "comments": selectors.answer_comments(answer=answer)}
    return render(request, "grading/_answer_annotations.html", context, status=status)


@login_required
@require_POST
def answer_comment_create(request: HtmxHttpRequest, answer_pk: int) -> HttpResponse:
    answer = get_object_or_404(_reviewable_answers(request), pk=answer_pk)
    start, end = _offset(request.POST.get("start")), _offset(request.POST.get("end"))
    try:
        if start is None or end is None:
            raise services.GradeError(_("Select a passage of the answer, then write the comment."))
        services.answer_comment_create(
            answer=answer,
            actor=request.user,
            start=start,
            end=end,
            quote=request.POST.get("quote", ""),
            body=request.POST.get("body", ""),
        )
    except services.GradeError as exc:
        messages.error(request, str(exc))
        return _annotations(request, answer, status=409)
    messages.success(request, _("Comment added. The student sees it once grades are released."))
    return _annotations(request, answer)


@login_required
@require_POST
def answer_comment_delete(request: HtmxHttpRequest, comment_pk: int) -> HttpResponse:
    comment = get_object_or_404(
        AnswerComment.objects.select_related("answer").filter(
            answer__in=_reviewable_answers(request)
        ),
        pk=comment_pk,
    )
    answer = _reviewable_answers(request).get(pk=comment.answer_id)
    services.answer_comment_delete(comment=comment, actor=request.user)
    messages.success(request, _("Comment removed."))
    return _annotations(request, answer)


# --- The comment bank: each teacher's own -------------------------------------------------


def _bank(request: HtmxHttpRequest, status: int = 200) -> HttpResponse:
    query = request.GET.get("q", "")[:100] if request.method == "GET" else ""
    language = request.GET.get("language", "")
    if language not in ("", "zh-hans", "en"):
        language = ""
    entries = selectors.comment_bank(owner=request.user, query=query, language=language)
    return render(
        request,
        "grading/_comment_bank_list.html",
        {"bank": entries[:BANK_PAGE_SIZE], "query": query},
        status=status,
    )


def _bank_entry(request: HtmxHttpRequest, pk: int) -> CommentBankEntry:
    # Nobody sees or uses another teacher's bank: 404, as for an entry that does not exist.
    return get_object_or_404(CommentBankEntry.objects.filter(owner=request.user), pk=pk)


@login_required
@require_GET
def comment_bank(request: HtmxHttpRequest) -> HttpResponse:
    """The teacher's saved comments matching `q` (any part of the text), in `language`."""
    if not permissions.can_keep_comment_bank(request.user):
        return HttpResponse(status=404)
    return _bank(request)


@login_required
@require_POST
def comment_bank_save(request: HtmxHttpRequest) -> HttpResponse:
    if not permissions.can_keep_comment_bank(request.user):
        return HttpResponse(status=404)
    try:
        services.comment_bank_save(owner=request.user, text=request.POST.get("text", ""))
    except services.GradeError as exc:
        messages.error(request, str(exc))
        return _bank(request, status=409)
    messages.success(request, _("Saved to your comment bank."))
    return _bank(request)


@login_required
@require_POST
def comment_bank_use(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The page inserted this entry's text; counting uses puts favourites first."""
    services.comment_bank_use(entry=_bank_entry(request, pk))
    return HttpResponse(status=204)


@login_required
@require_POST
def comment_bank_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    services.comment_bank_delete(entry=_bank_entry(request, pk))
    messages.success(request, _("Removed from your comment bank."))
    return _bank(request)
