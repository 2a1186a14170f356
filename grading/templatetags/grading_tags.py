from __future__ import annotations

from django import template
from django.utils.translation import gettext_lazy as _

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
