"""The tamper-evident audit trail: append events, verify the chain.

Events are written by the service layer only. Each event's hash covers its
content and the previous event's hash, so editing or deleting any stored
row is detected by `audit_verify` from that row on.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse

from .models import AuditEvent

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Any constant works; it only has to be the same for every writer of the chain.
_CHAIN_LOCK_KEY = 0x6D61726B  # "mark"


class RequestIdMiddleware:
    """Tags each request with an id (the proxy's X-Request-ID if it sent one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")[:64]
        request_id = incoming if incoming.isprintable() and incoming else uuid.uuid4().hex
        token = _request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            _request_id.reset(token)
        response["X-Request-ID"] = request_id
        return response


def current_request_id() -> str:
    return _request_id.get()


def audit_record(
    *,
    actor: Any | None,
    action: str,
    target: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
    assignment_id: int | None = None,
    submission_id: int | None = None,
) -> AuditEvent:
    """Append one event to the chain. `actor=None` means the system did it."""
    with transaction.atomic():
        _lock_chain()
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event = AuditEvent(
            actor=actor,
            actor_label=getattr(actor, "username", "") or "system",
            action=action,
            target_type=target._meta.label_lower,
            target_id=str(target.pk),
            assignment_id=assignment_id,
            submission_id=submission_id,
            before=before,
            after=after,
            reason=reason,
            request_id=current_request_id(),
            prev_hash=last or AuditEvent.GENESIS_HASH,
        )
        event.hash = event.compute_hash()
        event.save()
    return event


def audit_record_many(events: list[dict[str, Any]]) -> list[AuditEvent]:
    """Append many system events at once (a grading batch): one lock, one insert.

    Each dict has action, target_type, target_id and optionally actor,
    assignment_id, submission_id, before, after, reason.
    """
    if not events:
        return []
    with transaction.atomic():
        _lock_chain()
        prev = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        prev = prev or AuditEvent.GENESIS_HASH
        request_id = current_request_id()
        rows = []
        for spec in events:
            actor = spec.get("actor")
            event = AuditEvent(
                actor=actor,
                actor_label=getattr(actor, "username", "") or "system",
                action=spec["action"],
                target_type=spec["target_type"],
                target_id=str(spec["target_id"]),
                assignment_id=spec.get("assignment_id"),
                submission_id=spec.get("submission_id"),
                before=spec.get("before"),
                after=spec.get("after"),
                reason=spec.get("reason", ""),
                request_id=request_id,
                prev_hash=prev,
            )
            event.hash = prev = event.compute_hash()
            rows.append(event)
        return AuditEvent.objects.bulk_create(rows)


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        # Serialise writers so that two events never claim the same predecessor.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_at: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def audit_verify() -> ChainReport:
    """Walk the chain in id order; report the first event that does not hold."""
    expected_prev = AuditEvent.GENESIS_HASH
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        if event.prev_hash != expected_prev:
            return ChainReport(
                checked, event.pk, "previous hash does not match (an event was removed or moved)"
            )
        if event.compute_hash() != event.hash:
            return ChainReport(checked, event.pk, "content does not match its hash (edited)")
        expected_prev = event.hash
        checked += 1
    return ChainReport(checked)
