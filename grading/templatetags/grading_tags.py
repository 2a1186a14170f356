from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django import template
from django.utils.translation import gettext_lazy as _

from grading.services.review import NEVER_BULK_APPROVED
from grading.workspace import display_text, passages

if TYPE_CHECKING:
    from courses.models import Assignment
    from grading.models import Answer, AnswerComment, Submission

register = template.Library()

FLAG_LABELS = {
    "blank": _("blank"),
    "off_topic": _("off topic"),
    "prompt_injection_suspected": _("prompt injection suspected"),
    "low_confidence": _("low confidence"),
}


@register.filter
def flag_label(flag: str) -> str:
    """A flag code as words in the reader's language (unknown codes shown as they are)."""
    return str(FLAG_LABELS.get(flag, flag))


@register.filter
def one_by_one(flags: list[str] | None) -> bool:
    """Flags that keep an answer out of every bulk approval (`services.NEVER_BULK_APPROVED`)."""
    return bool(set(flags or ()) & NEVER_BULK_APPROVED)


@register.filter
def label_for_graders(submission: Submission, assignment: Assignment) -> str:
    """The student as a grader may see them: `Submission.label_for_graders`, the one rule."""
    return submission.label_for_graders(assignment)


# --- Inline comments: the review workspace and the student's feedback page -----------------


@register.inclusion_tag("grading/_annotated_text.html")
def annotated_answer(
    answer: Answer, comments: Sequence[AnswerComment], editable: bool = False
) -> dict[str, Any]:
    """The answer's text with each commented passage marked and numbered, and the comments
    in a numbered list beside it. `editable`: the teacher's workspace (remove buttons)."""
    return {
        "answer": answer,
        "passages": passages(display_text(answer.text), comments),
        "comments": comments,
        "editable": editable,
    }


@register.filter
def comments_on(comments_by_answer: dict[int, list[AnswerComment]], answer_id: int) -> list:
    """`inline_comments|comments_on:answer.pk`: the comments a page has for one answer."""
    return comments_by_answer.get(answer_id, []) if comments_by_answer else []
