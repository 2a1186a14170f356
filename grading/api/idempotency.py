"""`Idempotency-Key` on POST: a retried request returns the first response, once.

A client that times out cannot know whether its hand-in arrived. It sends the same POST
again with the same `Idempotency-Key`, and gets the first response (status and body)
back, with `Idempotent-Replayed: true`, while nothing new is created. Keys are per caller
(person or API key) and kept for 24 hours.

The row that remembers a key is inserted *before* the request's work starts, so the
database's unique constraint picks one winner when retries race: the others find the
row, wait for its response (up to `API_IDEMPOTENCY_WAIT` seconds) and replay it, or
answer 409 when it takes longer. The same key with a different request is a 422. A
request that failed with a 5xx forgets its key, so that the retry can succeed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.response import Response

from courses.models import User

from ..models import IdempotencyRecord, canonical_json
from .problems import PROBLEM_CONTENT_TYPE, IdempotencyInProgress, IdempotencyKeyReused

HEADER = "Idempotency-Key"
TTL = datetime.timedelta(hours=24)
MAX_KEY_LENGTH = 255
# Response headers a replay repeats: they belong to what was created.
REPLAYED_HEADERS = ("Location", "ETag")


class Replay(Exception):
    """The request was answered before: `response` is that answer again."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__(record.key)
        self.record = record

    def response(self) -> Response:
        status_code = self.record.status_code or 200
        return Response(
            self.record.response_body,
            status=status_code,
            headers={**self.record.response_headers, "Idempotent-Replayed": "true"},
            content_type=PROBLEM_CONTENT_TYPE if status_code >= 400 else None,
        )


def request_body(request: HttpRequest) -> bytes:
    """The raw body, read once here (the parsers read it again from memory); a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 instead of Django's bare 400."""
    from .problems import RequestTooLarge

    try:
        return request.body
    except RequestDataTooBig as exc:
        raise RequestTooLarge() from exc


def request_fingerprint(request: HttpRequest) -> str:
    """What makes two requests "the same": method, path, query and body. A JSON body is
    compared by content, so key order and whitespace do not matter."""
    body = request_body(request)
    try:
        canonical = canonical_json(json.loads(body)) if body else b""
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    for part in (request.method or "", request.path, request.META.get("QUERY_STRING", "")):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\n")
    digest.update(canonical)
    return digest.hexdigest()


def idempotency_key(request: HttpRequest) -> str | None:
    """The request's key, or None without one; 400 for a key no client should send."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise exceptions.ValidationError(
            {
                HEADER: [
                    _("Use 1 to %(max)s printable ASCII characters, such as a UUID.")
                    % {"max": MAX_KEY_LENGTH}
                ]
            }
        )
    return key


def idempotency_claim(*, user: User, key: str, fingerprint: str) -> IdempotencyRecord:
    """Claim `key` for this request, or raise: Replay (answered before), 422 (another
    request used it), 409 (still running after the wait)."""
    deadline = time.monotonic() + settings.API_IDEMPOTENCY_WAIT
    cutoff = timezone.now() - TTL
    # Keys expire after a day; the caller's old ones go while we are here.
    IdempotencyRecord.objects.filter(user=user, created_at__lt=cutoff).delete()
    pause = 0.02
    while True:
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    user=user, key=key, request_hash=fingerprint
                )
        except IntegrityError:
            pass  # someone has it: see below
        existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if existing is None:
            continue  # it failed and let go meanwhile: try again
        if existing.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        if existing.status_code is not None:
            raise Replay(existing)
        if time.monotonic() > deadline:
            raise IdempotencyInProgress(headers={"Retry-After": "1"})
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


def idempotency_complete(record: IdempotencyRecord, response: Any) -> None:
    """Remember the response to replay it; a server error is forgotten instead."""
    if response.status_code >= 500:
        idempotency_release(record)
        return
    record.status_code = response.status_code
    record.response_body = getattr(response, "data", None)
    record.response_headers = {h: response[h] for h in REPLAYED_HEADERS if response.has_header(h)}
    record.save(update_fields=["status_code", "response_body", "response_headers"])


def idempotency_release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, status_code__isnull=True).delete()
