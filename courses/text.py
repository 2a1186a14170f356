"""The one rule for text that people type, paste or upload.

PostgreSQL refuses a NUL byte in text and JSON columns (a 500 that loses the student's
draft), and the other C0 control characters are never meant: they arrive with text pasted
from word processors, PDFs or a broken export. Every service that stores text passes it
through `clean_text`, so the forms, the CSV import and the API (which calls the services)
all follow the same rule; forms clean their data the same way before validating, so that
a pasted NUL is quietly dropped instead of refused in one place and kept in another.

Line breaks are normalised to "\\n": browsers send a textarea's lines as "\\r\\n", and
counting them as one character keeps the server's length limit equal to what the student
sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.http import QueryDict

# C0 controls except tab (\x09), line feed (\x0a) and carriage return (\x0d, normalised
# below), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: str) -> str:
    """`value` without control characters other than tab and newline; "\\r\\n" and a lone
    "\\r" become "\\n". Idempotent."""
    if not value:
        return value
    return _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def clean_data(value: Any) -> Any:
    """`clean_text` applied to every string inside JSON-like data (options, answer keys);
    anything else is returned as it is."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(clean_data(item) for item in value)
    if isinstance(value, dict):
        return {clean_data(key): clean_data(item) for key, item in value.items()}
    return value


def clean_form_data(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """A copy of a form's submitted data with every text value cleaned (files untouched)."""
    if isinstance(data, QueryDict):
        cleaned = data.copy()
        for key, values in data.lists():
            cleaned.setlist(key, [clean_data(v) for v in values])
        return cleaned
    return {key: clean_data(value) for key, value in data.items()}


class CleanTextFormMixin:
    """Put first in a form's bases: its bound data is cleaned before any field sees it, so
    Django's "Null characters are not allowed" never fires and the rule is the services'."""

    data: Mapping[str, Any]
    is_bound: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.is_bound:
            self.data = clean_form_data(self.data)
