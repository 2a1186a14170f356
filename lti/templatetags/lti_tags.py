"""Template tags that let other apps' pages point into LTI without importing it in views."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from courses.models import Assignment
from lti.models import ResourceLink

register = template.Library()


@register.simple_tag
def lti_passback_link(assignment: Assignment) -> SafeString | str:
    """A link to the assignment's LMS gradebook page, or nothing when no LMS placement
    (resource link) opens the assignment: grading pages stay free of LTI otherwise."""
    if not ResourceLink.objects.filter(assignment=assignment).exists():
        return ""
    return format_html(
        '<a href="{}" id="lti-passback-link">{}</a>',
        reverse("lti:passback", args=[assignment.pk]),
        _("What the LMS gradebook was sent"),
    )
