"""The audit trail in words: each event as a sentence in the reader's language, and its
before and after as readable facts instead of JSON.

"王老师 changed 内容切题 from 15 to 18 (question 1, 李明)", with the reason beside it. Reads
nothing itself: `selectors.audit_context` gathers the names and titles a page of events
needs in a fixed number of queries, and this module only formats. An action it does not
know is still shown, by its code, so nothing recorded is ever hidden from the trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from courses.models import Assignment, AssignmentState, Question

from .models import AnswerStatus, AssessmentStatus, AuditEvent, Scorer
from .selectors import AuditContext
from .templatetags.grading_tags import flag_label

# The name of each action, for the filter and for events without a sentence of their own.
ACTION_LABELS: dict[str, Promise] = {
    "submission.submitted": _("Handed in"),
    "assignment.grading_requested": _("Grading started"),
    "assessment.created": _("Score proposed"),
    "answer.needs_manual": _("Needs manual grading"),
    "grade.approved": _("Grade approved"),
    "grade.overridden": _("Score changed"),
    "grades.released": _("Grades released"),
    "grades.hidden": _("Grades hidden"),
    "regrade.requested": _("Regrade requested"),
    "regrade.answered": _("Regrade answered"),
    "assignment.created": _("Assignment created"),
    "assignment.updated": _("Assignment changed"),
    f"assignment.{AssignmentState.PUBLISHED}": _("Assignment published"),
    f"assignment.{AssignmentState.CLOSED}": _("Assignment closed"),
    f"assignment.{AssignmentState.DRAFT}": _("Assignment back to draft"),
    "question.created": _("Question added"),
    "question.updated": _("Question changed"),
    "question.deleted": _("Question deleted"),
    "question.moved": _("Question moved"),
    "user.password_reset": _("Password reset"),
    "comment.added": _("Inline comment added"),
    "comment.removed": _("Inline comment removed"),
}


def action_label(action: str) -> str:
    return str(ACTION_LABELS.get(action, action))


@dataclass(frozen=True)
class AuditLine:
    event: AuditEvent
    actor: str
    login: str  # the actor's username ("" for the system, or a student kept anonymous)
    sentence: str
    before: list[tuple[str, str]]
    after: list[tuple[str, str]]


def audit_lines(*, events: list[AuditEvent], context: AuditContext) -> list[AuditLine]:
    return [_line(event, context) for event in events]


def _line(event: AuditEvent, ctx: AuditContext) -> AuditLine:
    actor = ctx.actors.get(event.pk, event.actor_label)
    login = ctx.logins.get(event.pk, "")
    before = event.before if isinstance(event.before, dict) else {}
    after = event.after if isinstance(event.after, dict) else {}
    if event.action in ("grade.approved", "grade.overridden"):
        return AuditLine(
            event,
            actor,
            login,
            _grade_sentence(event, ctx, actor, before, after),
            _grade_facts(before, ctx),
            _grade_facts(after, ctx),
        )
    return AuditLine(
        event,
        actor,
        login,
        _sentence(event, ctx, actor, before, after),
        _facts(before),
        _facts(after),
    )


def _where(event: AuditEvent, ctx: AuditContext) -> dict[str, Any]:
    """The question and student an event is about, as far as it names them."""
    answer = None
    if event.target_type == "grading.answer" and event.target_id.isdigit():
        answer = ctx.answers.get(int(event.target_id))
    submission_id = answer[1] if answer else event.submission_id
    return {
        "q": answer[0] if answer else "?",
        "student": ctx.students.get(submission_id, "?") if submission_id else "?",
    }


def _points(state: dict[str, Any]) -> dict[int, int]:
    criteria = state.get("criteria")
    if not isinstance(criteria, dict):
        return {}
    return {int(k): v for k, v in criteria.items() if str(k).isdigit()}


def _grade_sentence(
    event: AuditEvent,
    ctx: AuditContext,
    actor: str,
    before: dict[str, Any],
    after: dict[str, Any],
) -> str:
    where = _where(event, ctx)
    new = _points(after)
    old = _points(before) if before else ctx.proposals.get(event.pk, {})
    changes = [
        gettext("%(criterion)s from %(old)s to %(new)s")
        % {"criterion": ctx.criteria.get(cid, f"#{cid}"), "old": old[cid], "new": points}
        for cid, points in new.items()
        if cid in old and old[cid] != points
    ]
    values = {"actor": actor, "points": after.get("points", "?"), **where}
    if changes:
        return gettext("%(actor)s changed %(changes)s (question %(q)s, %(student)s)") % {
            **values,
            "changes": "; ".join(changes),
        }
    if before:
        return (
            gettext("%(actor)s saved the grade of question %(q)s of %(student)s again: %(points)s")
            % values
        )
    if not old:  # no proposal to accept: graded by hand
        return gettext("%(actor)s graded question %(q)s of %(student)s: %(points)s") % values
    return (
        gettext("%(actor)s approved the proposal for question %(q)s of %(student)s: %(points)s")
        % values
    )


def _grade_facts(state: dict[str, Any], ctx: AuditContext) -> list[tuple[str, str]]:
    if not state:
        return []
    facts = [
        (ctx.criteria.get(cid, f"#{cid}"), str(points)) for cid, points in _points(state).items()
    ]
    facts.append((gettext("Total"), str(state.get("points", ""))))
    if state.get("feedback"):
        facts.append((gettext("Overall comment"), _short(state["feedback"])))
    return facts


def _sentence(
    event: AuditEvent,
    ctx: AuditContext,
    actor: str,
    before: dict[str, Any],
    after: dict[str, Any],
) -> str:
    values = {"actor": actor, **_where(event, ctx)}
    action = event.action
    if action == "assessment.created":
        scorer = Scorer(after["scorer"]).label if after.get("scorer") in Scorer.values else "?"
        if after.get("status") != "completed":
            return gettext("%(scorer)s could not score question %(q)s of %(student)s") % {
                **values,
                "scorer": scorer,
            }
        sentence = gettext(
            "%(scorer)s proposed %(total)s/%(max)s for question %(q)s of %(student)s"
        ) % {**values, "scorer": scorer, "total": after.get("total"), "max": after.get("max_total")}
        flags = after.get("flags") or []
        if flags:
            sentence += gettext(" (flagged: %(flags)s)") % {
                "flags": ", ".join(flag_label(f) for f in flags)
            }
        return sentence
    if action == "answer.needs_manual":
        return gettext("Question %(q)s of %(student)s needs manual grading") % values
    if action == "submission.submitted":
        sentence = gettext("%(actor)s handed in attempt %(n)s") % {
            **values,
            "n": after.get("attempt", "?"),
        }
        return sentence + (gettext(" (late)") if after.get("late") else "")
    if action == "assignment.grading_requested":
        template = (
            gettext("%(actor)s asked for everything to be graded again: %(n)s answers queued")
            if after.get("force")
            else gettext("%(actor)s started grading: %(n)s answers queued")
        )
        return template % {**values, "n": after.get("answers", "?")}
    if action == "regrade.requested":
        return gettext("%(actor)s asked for a regrade of question %(q)s") % values
    if action == "regrade.answered":
        template = (
            gettext(
                "%(actor)s answered the regrade request for question %(q)s of %(student)s "
                "and changed the score"
            )
            if after.get("changed")
            else gettext("%(actor)s answered the regrade request for question %(q)s of %(student)s")
        )
        return template % values
    if action == "grades.released":
        return gettext("%(actor)s released the grades to students") % values
    if action == "grades.hidden":
        return gettext("%(actor)s hid the grades from students again") % values
    if action == "assignment.updated":
        return gettext("%(actor)s changed the assignment: %(fields)s") % {
            **values,
            "fields": ", ".join(_field_label(Assignment, k) for k in after),
        }
    if action.startswith("question."):
        order = ctx.questions.get(int(event.target_id)) if event.target_id.isdigit() else None
        return gettext("%(actor)s: %(action)s %(q)s") % {
            **values,
            "action": action_label(action),
            "q": order if order is not None else "",
        }
    return gettext("%(actor)s: %(action)s") % {**values, "action": action_label(action)}


# Keys the services write into before/after that are not fields of an assignment.
FACT_LABELS: dict[str, Promise] = {
    "scorer": _("scorer"),
    "status": _("status"),
    "answer_status": _("answer status"),
    "total": _("total"),
    "max_total": _("maximum"),
    "flags": _("flags"),
    "attempt": _("attempt"),
    "late": _("late"),
    "answers": _("answers"),
    "force": _("again"),
    "released_at": _("released"),
    "changed": _("score changed"),
    "reason": _("reason"),
    "user": _("user"),
    "role": _("role"),
    "course": _("course"),
    "comment_id": _("comment number"),
    "passage": _("passage"),
    "comment": _("comment"),
}


def _field_label(model: type[Assignment] | type[Question], name: str) -> str:
    if name in FACT_LABELS:
        return str(FACT_LABELS[name])
    try:
        return str(getattr(model._meta.get_field(name), "verbose_name", name))
    except FieldDoesNotExist:  # a key of another kind of event: its name is all there is
        return name


def _value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    if value is None or value == "":
        return "—"
    if key == "flags" and isinstance(value, list):
        return ", ".join(flag_label(str(v)) for v in value) or "—"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if key == "scorer" and value in Scorer.values:
        return str(Scorer(value).label)
    if key == "status" and value in AssessmentStatus.values:  # a scoring run's
        return str(AssessmentStatus(value).label)
    if key == "answer_status" and value in AnswerStatus.values:
        return str(AnswerStatus(value).label)
    if key.endswith("_at") and isinstance(value, str):
        moment = parse_datetime(value)
        if moment is not None:
            return date_format(timezone.localtime(moment), "DATETIME_FORMAT")
    return _short(str(value))


def _facts(state: dict[str, Any]) -> list[tuple[str, str]]:
    # Internal ids (an assessment's, a request's) say nothing to a reader.
    return [
        (_field_label(Assignment, key), _value(key, value))
        for key, value in state.items()
        if key not in ("assessment", "request")
    ]


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
