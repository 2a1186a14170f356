"""One error format for every 4xx: problem details (RFC 9457).

Every error the API answers is `application/problem+json`:

    {"type": "urn:markwise:problem:validation-error", "title": "Invalid request",
     "status": 400, "detail": "answers.0.question: …", "instance": "/api/v1/…",
     "request_id": "…", "errors": {"answers.0.question": ["…"]}}

`type` names the kind of problem (stable; clients branch on it), `title` is its short,
translated name, `detail` says what happened this time, `errors` (validation only) maps
each field, as a dotted path into the request body, to its messages. Refusals of the
services (a closed assignment, a stale grade, a Django ValidationError) become the same
shape, so no bad input ever ends in a 500.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.encoding import force_str
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..audit import current_request_id

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:markwise:problem:"


class Problem(exceptions.APIException):
    """An API error with its own problem type; `extra` members join the body."""

    problem: str = "error"
    title: Any = _("Error")

    def __init__(
        self,
        detail: Any = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.extra = extra or {}
        self.headers = headers or {}


class PreconditionFailed(Problem):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    problem = "precondition-failed"
    title = _("The resource changed")
    default_detail = _("The resource was changed since you read it. Read it again.")


class PreconditionRequired(Problem):
    status_code = status.HTTP_428_PRECONDITION_REQUIRED
    problem = "precondition-required"
    title = _("If-Match required")
    default_detail = _(
        "This grade exists already: send its ETag in If-Match (or its version in the body) "
        "so that nobody's change is overwritten unseen."
    )


class IdempotencyInProgress(Problem):
    status_code = status.HTTP_409_CONFLICT
    problem = "idempotency-in-progress"
    title = _("Request in progress")
    default_detail = _(
        "A request with this Idempotency-Key is still being processed. Retry in a moment."
    )


class IdempotencyKeyReused(Problem):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    problem = "idempotency-key-reused"
    title = _("Idempotency-Key reused")
    default_detail = _(
        "This Idempotency-Key was used with a different request in the last 24 hours. "
        "Use a new key for a new request."
    )


class RequestTooLarge(Problem):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    problem = "request-too-large"
    title = _("Request too large")
    default_detail = _("The request body is larger than the server accepts.")


# Problem type and title of DRF's own exceptions, by class (the most specific first).
_KNOWN: list[tuple[type[exceptions.APIException], str, Any]] = [
    (exceptions.ParseError, "malformed-request", _("Malformed request")),
    (exceptions.ValidationError, "validation-error", _("Invalid request")),
    (exceptions.NotAuthenticated, "unauthenticated", _("Authentication required")),
    (exceptions.AuthenticationFailed, "unauthenticated", _("Authentication failed")),
    (exceptions.PermissionDenied, "forbidden", _("Not allowed")),
    (exceptions.NotFound, "not-found", _("Not found")),
    (exceptions.MethodNotAllowed, "method-not-allowed", _("Method not allowed")),
    (exceptions.NotAcceptable, "not-acceptable", _("Not acceptable")),
    (exceptions.UnsupportedMediaType, "unsupported-media-type", _("Unsupported media type")),
    (exceptions.Throttled, "rate-limited", _("Too many requests")),
]


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"answers.1.question": ["…"]}; messages that belong to
    no field are under "non_field_errors"."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = str(key)
            if name in ("non_field_errors", "__all__"):
                path = prefix or "non_field_errors"
            else:
                path = f"{prefix}.{name}" if prefix else name
            for field, messages in flatten_errors(value, path).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": [force_str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            if item:
                path = f"{prefix}.{index}" if prefix else str(index)
                for field, messages in flatten_errors(item, path).items():
                    flat.setdefault(field, []).extend(messages)
        return flat
    return {prefix or "non_field_errors": [force_str(detail)]}


def _validation_detail(errors: dict[str, list[str]]) -> str:
    general = errors.get("non_field_errors")
    if general:
        return " ".join(general)
    lines = [f"{field}: {' '.join(messages)}" for field, messages in errors.items()]
    return " ".join(lines) or force_str(_("Invalid request."))


def problem_body(
    *, problem: str, title: Any, status_code: int, detail: Any, instance: str
) -> dict[str, Any]:
    return {
        "type": TYPE_PREFIX + problem,
        "title": force_str(title),
        "status": status_code,
        "detail": force_str(detail),
        "instance": instance,
        "request_id": current_request_id(),
    }


def problem_response(
    *,
    problem: str,
    title: Any,
    status_code: int,
    detail: Any,
    instance: str,
    headers: dict[str, str] | None = None,
    **members: Any,
) -> Response:
    body = problem_body(
        problem=problem, title=title, status_code=status_code, detail=detail, instance=instance
    )
    body.update(members)
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every handled error as problem details.

    Django's Http404 and PermissionDenied become DRF's, keeping none of their text (a
    404 names no model); a Django ValidationError from a service becomes a 400 with its
    per-field messages. Anything else is a bug: None lets Django answer 500 and log it.
    """
    request = context.get("request")
    instance = request.path if request is not None else ""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if not isinstance(exc, exceptions.APIException):
        return None
    set_rollback()
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = str(exc.auth_header)
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, Problem):
        headers.update(exc.headers)
        return problem_response(
            problem=exc.problem,
            title=exc.title,
            status_code=exc.status_code,
            detail=exc.detail,
            instance=instance,
            headers=headers,
            **exc.extra,
        )
    problem, title = "error", _("Error")
    for cls, known_problem, known_title in _KNOWN:
        if isinstance(exc, cls):
            problem, title = known_problem, known_title
            break
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        return problem_response(
            problem=problem,
            title=title,
            status_code=exc.status_code,
            detail=_validation_detail(errors),
            instance=instance,
            headers=headers,
            errors=errors,
        )
    return problem_response(
        problem=problem,
        title=title,
        status_code=exc.status_code,
        detail=exc.detail,
        instance=instance,
        headers=headers,
    )
