"""The request every view receives, and the one way a view reads ids from it.

`HtmxHttpRequest` is for the type checker (as django-htmx documents it):
`django_htmx.middleware.HtmxMiddleware` sets `request.htmx`; `login_required` (or the
view's own check) guarantees `request.user` is one of our users, never AnonymousUser.

Ids in a form's fields go through `parse_id` (and the `post_*` helpers over it), never
through `int()`: `str.isdigit()` is true for "²", which `int()` refuses; `int()` accepts
" 1", "１２" and "1_000"; and a number beyond the database's integers is an error on the
database (OverflowError on SQLite, "out of range" on PostgreSQL). Ids in URL paths need
nothing more than `<int:…>`: Django answers an out-of-range primary-key lookup with no
rows, so `get_object_or_404` gives 404 (tests/test_input_ids.py checks every route).
"""

from __future__ import annotations

from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest
from django_htmx.middleware import HtmxDetails

from .models import User


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
    user: User


# Every primary key is a BigAutoField (settings.DEFAULT_AUTO_FIELD): a signed 64-bit
# integer on every supported database, so nothing above this can name a row.
MAX_ID = 2**63 - 1
_MAX_DIGITS = len(str(MAX_ID))


def parse_id(value: str | None) -> int | None:
    """The id written in `value`, or None when it cannot name a row: anything but ASCII
    digits, or a number outside 1..MAX_ID. Long input is refused before converting it."""
    if not value or len(value) > _MAX_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ID else None


def post_id(request: HttpRequest, name: str) -> int:
    """The id of the one object a form acts on; 404 when missing or malformed, as for a
    malformed id in a URL: it names nothing."""
    number = parse_id(request.POST.get(name))
    if number is None:
        raise Http404
    return number


def post_optional_id(request: HttpRequest, name: str) -> int | None:
    """A number the form may leave blank (None), such as the version of a grade the page
    showed; 400 when it is given but malformed, which no page of ours sends."""
    value = request.POST.get(name, "")
    if value == "":
        return None
    number = parse_id(value)
    if number is None:
        raise BadRequest(f"{name}: not an id")
    return number


def post_ids(request: HttpRequest, name: str) -> list[int]:
    """Every id posted under `name` (ticked checkboxes), in order; 400 when any one is
    malformed: acting on the others would hide a broken form."""
    ids = []
    for value in request.POST.getlist(name):
        number = parse_id(value)
        if number is None:
            raise BadRequest(f"{name}: not an id")
        ids.append(number)
    return ids


def post_keyed(request: HttpRequest, prefix: str) -> dict[int, str]:
    """Fields named `<prefix><id>` (one input per object, e.g. `score-<criterion id>`) as
    id → value; 400 when a field with that prefix does not end in a valid id."""
    fields = {}
    for key in request.POST:
        if key.startswith(prefix):
            number = parse_id(key.removeprefix(prefix))
            if number is None:
                raise BadRequest(f"{key}: not an id")
            fields[number] = request.POST.get(key, "")
    return fields
