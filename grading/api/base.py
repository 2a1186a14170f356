"""What every API view shares: who is calling, the read scope, idempotent POSTs, body size.

Views stay thin: find the object through a `courses.permissions` queryset (404 for other
courses), ask `courses.permissions` whether the caller may act on it (403), validate the
body with a serializer, call a service, serialize the result.
"""

from __future__ import annotations

import hashlib
from typing import Any, NoReturn

from rest_framework import exceptions
from rest_framework.generics import GenericAPIView

from courses.models import User

from ..models import ApiKey, IdempotencyRecord
from .access import CallerPermission, caller_key
from .idempotency import (
    Replay,
    idempotency_claim,
    idempotency_complete,
    idempotency_key,
    idempotency_release,
    request_body,
    request_fingerprint,
)


class ApiView(GenericAPIView):
    permission_classes = [CallerPermission]
    _claim: IdempotencyRecord | None = None

    @property
    def key(self) -> ApiKey | None:
        return caller_key(self.request)

    @property
    def user(self) -> User:
        return self.request.user

    def require(self, allowed: bool, message: Any) -> None:
        """403 with `message` unless `allowed` (the caller can already see the object)."""
        if not allowed:
            self.deny(message)

    def deny(self, message: Any) -> NoReturn:
        raise exceptions.PermissionDenied(message)

    def get_serializer(
        self,
        *args: Any,
        many: bool = False,
        context: dict[str, Any] | None = None,
        **extra_context: Any,
    ) -> Any:
        """The view's serializer; other keyword arguments join its context
        (`student_view`, `names`)."""
        context = {**self.get_serializer_context(), **(context or {}), **extra_context}
        return self.get_serializer_class()(*args, many=many, context=context)

    def validated(self, serializer_class: Any, **context: Any) -> dict[str, Any]:
        """The request body checked by `serializer_class`; 400 with field errors if not."""
        serializer = serializer_class(
            data=self.request.data, context={**self.get_serializer_context(), **context}
        )
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def idempotency_token(self) -> str:
        """A hand-in token derived from the Idempotency-Key, so that the hand-in service
        itself also recognises the retry (`submission_save`), even after the key expired."""
        key = self.request.headers.get("Idempotency-Key")
        if not key:
            return ""
        return hashlib.sha256(f"{self.user.pk}:{key}".encode()).hexdigest()[:32]

    # --- Idempotency and the body, around every request ------------------------------------

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permission, throttling
        if request.method in ("POST", "PUT", "PATCH"):
            request_body(request._request)  # 413 for a body over the limit, before parsing
        if request.method == "POST":
            key = idempotency_key(request._request)
            if key is not None:
                self._claim = idempotency_claim(
                    user=request.user, key=key, fingerprint=request_fingerprint(request._request)
                )

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, Replay):
            return exc.response()
        return super().handle_exception(exc)

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        claim, self._claim = self._claim, None
        if claim is not None:
            idempotency_complete(claim, response)
        return response

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)
        except BaseException:
            # A bug (a 500): let the client's retry run the request again.
            claim, self._claim = self._claim, None
            if claim is not None:
                idempotency_release(claim)
            raise
