"""Template tags for the teachers' pages."""

from __future__ import annotations

from typing import Any

from django import template

from courses import permissions
from courses.models import Assignment

register = template.Library()

ASSIGNMENT_TABS = ("setup", "grading", "review", "audit")


@register.inclusion_tag("_assignment_tabs.html", takes_context=True)
def assignment_tabs(
    context: template.Context, assignment: Assignment, current: str
) -> dict[str, Any]:
    """An assignment's heading and the tabs that make its teacher pages one: Setup, Grading,
    Review and Audit, with `current` marked. Setup only for those who may manage the course
    (TAs grade but do not change it). An empty `current` marks none (a page below a tab)."""
    if current and current not in ASSIGNMENT_TABS:
        raise template.TemplateSyntaxError(f"assignment_tabs: no tab {current!r}")
    return {
        "assignment": assignment,
        "current": current,
        "can_manage": permissions.can_manage(context["request"].user, assignment.course),
    }
