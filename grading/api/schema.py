"""The OpenAPI document: every operation lists its error responses and, for POST, the
`Idempotency-Key` header, without each view repeating them.

`docs/openapi.yaml` is this schema, committed (`make openapi` writes it); a test fails when
the code and the committed file disagree.
"""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from .problems import PROBLEM_CONTENT_TYPE, TYPE_PREFIX
from .serializers import ProblemSerializer

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    name="Idempotency-Key",
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string (a UUID) up to 255 characters. Sending the same POST again "
        "with the same key within 24 hours returns the first response "
        "(with `Idempotent-Replayed: true`) and changes nothing; the same key with a "
        "different request is a 422."
    ),
)


def _problem(problem: str, title: str, status: int, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": TYPE_PREFIX + problem,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "/api/v1/assignments/42/submissions/",
        "request_id": "5f0c3a9e2b7d4c1e8a6f0b2d9c4e7a13",
        **extra,
    }


# status → (description, example body)
PROBLEMS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "Invalid request: `errors` names each field (a dotted path into the body) with its "
        "messages. Services' refusals (a closed assignment, a missing override reason) are "
        "400s too, with the reason in `detail`.",
        _problem(
            "validation-error",
            "Invalid request",
            400,
            "answers.0.question: Not a question of this assignment.",
            errors={"answers.0.question": ["Not a question of this assignment."]},
        ),
    ),
    401: (
        "No valid credentials: send `Authorization: Bearer <key>` or use a signed-in "
        "session (with its CSRF token for writes).",
        _problem(
            "unauthenticated",
            "Authentication required",
            401,
            "Authentication credentials were not provided.",
        ),
    ),
    403: (
        "Signed in, and the object is visible, but this caller may not do this: a key "
        "without the scope, a teaching assistant releasing grades, a student reading "
        "another's work.",
        _problem("forbidden", "Not allowed", 403, "This API key does not have the read scope."),
    ),
    404: (
        "No such object for this caller: objects of courses the caller has no part in are "
        "never revealed. Also an invalid page number or cursor.",
        _problem("not-found", "Not found", 404, "Not found."),
    ),
    409: (
        "A request with this Idempotency-Key is still running; retry after `Retry-After`.",
        _problem(
            "idempotency-in-progress",
            "Request in progress",
            409,
            "A request with this Idempotency-Key is still being processed. Retry in a moment.",
        ),
    ),
    412: (
        "If-Match (or `version`) names an older version: someone changed the grade since. "
        "`current_version` is the version now stored; read it again before saving.",
        _problem(
            "precondition-failed",
            "The resource changed",
            412,
            "This grade was changed by teacher (now 78/100, version 3). "
            "Reload to see it before saving again.",
            current_version=3,
        ),
    ),
    413: (
        "The request body is larger than the server accepts.",
        _problem(
            "request-too-large",
            "Request too large",
            413,
            "The request body is larger than the server accepts.",
        ),
    ),
    415: (
        "Send JSON (`Content-Type: application/json`).",
        _problem(
            "unsupported-media-type",
            "Unsupported media type",
            415,
            'Unsupported media type "text/plain" in request.',
        ),
    ),
    422: (
        "This Idempotency-Key was used with a different request in the last 24 hours.",
        _problem(
            "idempotency-key-reused",
            "Idempotency-Key reused",
            422,
            "This Idempotency-Key was used with a different request in the last 24 hours. "
            "Use a new key for a new request.",
        ),
    ),
    428: (
        "The grade exists: send If-Match with its ETag (or `version` in the body).",
        _problem(
            "precondition-required",
            "If-Match required",
            428,
            "This grade exists already: send its ETag in If-Match (or its version in the "
            "body) so that nobody's change is overwritten unseen.",
        ),
    ),
    429: (
        "Too many requests for this key or person; wait `Retry-After` seconds.",
        _problem(
            "rate-limited",
            "Too many requests",
            429,
            "Request was throttled. Expected available in 12 seconds.",
        ),
    ),
}


def problem_response(status: int) -> OpenApiResponse:
    description, example = PROBLEMS[status]
    return OpenApiResponse(
        ProblemSerializer,
        description=description,
        examples=[
            OpenApiExample(
                example["type"].removeprefix(TYPE_PREFIX),
                value=example,
                status_codes=[str(status)],
                response_only=True,
            )
        ],
    )


class ApiAutoSchema(AutoSchema):
    """Adds the shared parts: the Idempotency-Key header of every POST, and the problem
    responses an operation can give (401/403/429 always; 404 with an id in the path or a
    page; 400/413/415 with a body; 409/422 for POST; others a view names in
    `extra_problems`)."""

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self.method == "POST":
            parameters.append(IDEMPOTENCY_PARAMETER)
        return parameters

    def _problem_statuses(self) -> set[int]:
        statuses = {401, 403, 429}
        if "{" in self.path or self._is_list_view():
            statuses.add(404)
        if self.method in ("POST", "PUT", "PATCH"):
            statuses |= {400, 413, 415}
        if self.method == "POST":
            statuses |= {409, 422}
        if self.method == "GET" and self._is_list_view():
            statuses.add(400)  # a filter or ordering value that does not parse
        statuses |= set(getattr(self.view, "extra_problems", {}).get(self.method, ()))
        return statuses

    def _get_response_bodies(
        self, direction: Literal["request", "response"] = "response"
    ) -> dict[str, Any]:
        bodies: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return bodies
        for status in sorted(self._problem_statuses()):
            if str(status) not in bodies:
                bodies[str(status)] = self._get_response_for_code(
                    problem_response(status), str(status), (PROBLEM_CONTENT_TYPE,), direction
                )
        return dict(sorted(bodies.items()))


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "grading.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An API key (`mw_…`) from Django admin or `manage.py create_api_key`, "
                "sent as `Authorization: Bearer <key>`."
            ),
        }


_SUCCESS = {"200": "OK", "201": "Created", "202": "Accepted"}


def describe_hook(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: every success response says what it is, and every id in a
    path is described and bounded as the server reads it (1 to 2**63 - 1; anything else
    is a 404)."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if not response.get("description"):
                    response["description"] = _SUCCESS.get(status, "")
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "id":
                    parameter["description"] = "The object's id."
                    parameter["schema"] = {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 2**63 - 1,
                    }
    return result
