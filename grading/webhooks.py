"""Webhooks: a course's events, signed and delivered to the systems that subscribed.

A school's other systems subscribe per course (admin, or the API) to `grading.finished`,
`grade.needs_review`, `grades.released` and `regrade.requested`. The services call the
`*_emit` functions below where those things happen; each creates one `WebhookDelivery` per
matching active subscription, in the caller's transaction, and enqueues it with django-q2
once that transaction commits — nothing slow runs in a request or a grading transaction.

Delivery follows the Standard Webhooks convention (standardwebhooks.com): a JSON body
`{"id", "type", "timestamp", "data"}` POSTed with the headers `webhook-id` (the event id, the
same on every retry), `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
base64-decoded part of the subscription's `whsec_…` secret. A 2xx answer is success;
anything else (a redirect, an error, a timeout) is retried with exponential backoff — a
django-q2 ONCE schedule at the next attempt's time — until WEBHOOK_MAX_ATTEMPTS, then the
delivery is failed. Every attempt's response code is kept in the delivery log.

This is the one module that sends HTTP to webhook receivers. DESIGN.md keeps all outbound
HTTP to the model in `grading/llm.py`; receivers are a different outbound concern (other
timeouts, retries spread over hours, untrusted destinations), so it is kept here, alone.

Server-side request forgery: a subscription's URL is chosen by a teacher, so the server
must not become their way into the school's network. URLs must be https (plain http only
with WEBHOOK_ALLOW_HTTP) without credentials, and unless WEBHOOK_ALLOW_PRIVATE_NETWORKS the
host must be a public address: checked when the subscription is saved (IP literals,
`localhost`) and again before every attempt, on the addresses the host name resolves to.
Redirects are never followed, and response bodies are never read or stored. The residual
risk: the HTTP client resolves the name again when it connects, so a name whose DNS answer
changes between the check and the connection (DNS rebinding) can still reach an internal
address — deployments that must exclude that route webhooks through an egress proxy
(httpx honours HTTPS_PROXY) or firewall the workers' outbound traffic.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import ssl
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import certifi
import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Count, F, Max
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.models import Schedule
from django_q.tasks import async_task, schedule

from courses.text import clean_text

from .models import (
    WEBHOOK_TEST_EVENT,
    Answer,
    AnswerStatus,
    DeliveryStatus,
    RegradeRequest,
    SubmissionStatus,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)

if TYPE_CHECKING:
    from courses.models import Assignment, Course
    from courses.models import User as UserModel

logger = logging.getLogger(__name__)

DELIVER_FUNC = "grading.tasks.webhook_deliver"
SECRET_PREFIX = "whsec_"
USER_AGENT = "Markwise-Webhooks/1"
# A pending delivery whose attempt is this overdue lost its task (a dead worker, a Redis
# broker that dropped it): the sweeper enqueues it again.
SWEEP_GRACE = timedelta(minutes=5)


# --- Validation ---------------------------------------------------------------------------


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _address_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # is_global excludes loopback, private, link-local (cloud metadata at 169.254.169.254),
    # shared (CGNAT) and reserved ranges, IPv4-mapped IPv6 included; multicast is never a
    # receiver. A NAT64 address is the IPv4 address it embeds.
    if address.version == 6 and address in _NAT64:
        address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.is_global and not address.is_multicast


def webhook_url_check(url: str) -> None:
    """Refuse a receiver URL the server must not call (ValidationError, for the teacher)."""
    parts = urlsplit(url or "")
    allowed = ("https", "http") if settings.WEBHOOK_ALLOW_HTTP else ("https",)
    if parts.scheme not in allowed:
        raise ValidationError(_("A webhook URL must start with https://."))
    if not parts.hostname:
        raise ValidationError(_("A webhook URL needs a host name."))
    if parts.username or parts.password:
        # They would travel in the request line's logs; a receiver authenticates with the
        # signature instead.
        raise ValidationError(_("A webhook URL cannot contain a user name or password."))
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        raise ValidationError(_("A webhook URL must point to a public address."))
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: checked again on the resolved addresses before every attempt
    if not _address_is_public(address):
        raise ValidationError(_("A webhook URL must point to a public address."))


def webhook_event_types_clean(value: Any) -> list[str]:
    """The subscribed events as a sorted list of known names (ValidationError otherwise)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple | set) or not value:
        raise ValidationError(_("Choose at least one event."))
    known = set(WebhookEvent.values)
    unknown = sorted(str(v) for v in value if v not in known)
    if unknown:
        raise ValidationError(
            _("Unknown events: %(events)s. Choose from: %(known)s.")
            % {"events": ", ".join(unknown), "known": ", ".join(sorted(known))}
        )
    return sorted(set(value))


def _destination_problem(url: str) -> str:
    """Why this URL may not be called now ('' when it may): the rules as on saving, then
    every address its host name resolves to must be public."""
    try:
        webhook_url_check(url)
    except ValidationError as exc:
        return " ".join(exc.messages)
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not _address_is_public(address):
            return f"{host} resolves to a non-public address ({address})"
    return ""


# --- Signing (Standard Webhooks) ------------------------------------------------------------


def webhook_sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256, keyed with the
    secret's decoded bytes, of `{msg_id}.{timestamp}.{body}`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON, Chinese as characters."""
    return json.dumps(
        payload, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


# --- Emitting ---------------------------------------------------------------------------------


def _event_id_new() -> str:
    return "evt_" + uuid.uuid4().hex


def _event_id_stable(*parts: Any) -> str:
    """An id that is the same whenever the same thing is reported again (a task run twice,
    two grading tasks finishing together), so one subscription gets it once."""
    return "evt_" + hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def _course_ref(course: Course) -> dict[str, Any]:
    return {"id": course.pk, "code": course.code, "title": course.title}


def _assignment_ref(assignment: Assignment) -> dict[str, Any]:
    return {"id": assignment.pk, "title": assignment.title}


def webhook_emit(
    *, course: Course, event_type: str, data: dict[str, Any], event_id: str = ""
) -> list[WebhookDelivery]:
    """Record one event for every active subscription of the course that wants it, and
    deliver each once the current transaction commits. Returns the new deliveries.

    Payloads name things by id (and titles); details such as students' work are read
    through the API, under its permissions, not pushed to a URL.
    """
    subscriptions = [
        s
        for s in WebhookSubscription.objects.filter(course=course, active=True)
        if s.wants(event_type)
    ]
    if not subscriptions:
        return []
    event_id = event_id or _event_id_new()
    payload = {
        "id": event_id,
        "type": event_type,
        "timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
        "data": {"course": _course_ref(course), **data},
    }
    return _deliveries_create(subscriptions, event_id, event_type, payload)


def _deliveries_create(
    subscriptions: Iterable[WebhookSubscription],
    event_id: str,
    event_type: str,
    payload: dict[str, Any],
) -> list[WebhookDelivery]:
    now = timezone.now()
    created: list[WebhookDelivery] = []
    for subscription in subscriptions:
        # get_or_create: the same event reported twice (see _event_id_stable) is skipped.
        delivery, new = WebhookDelivery.objects.get_or_create(
            subscription=subscription,
            event_id=event_id,
            defaults={"event_type": event_type, "payload": payload, "next_attempt_at": now},
        )
        if new:
            created.append(delivery)
    if created:
        ids = [d.pk for d in created]
        transaction.on_commit(lambda: _enqueue_now(ids))
    return created


def _enqueue_now(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        async_task(DELIVER_FUNC, delivery_id)


def grades_released_emit(*, assignment: Assignment) -> None:
    """`grades.released`: students of the assignment can now see their approved grades."""
    released_at = assignment.grades_released_at
    webhook_emit(
        course=assignment.course,
        event_type=WebhookEvent.GRADES_RELEASED,
        data={"assignment": _assignment_ref(assignment), "released_at": released_at},
        event_id=_event_id_stable(WebhookEvent.GRADES_RELEASED, assignment.pk, released_at),
    )


def regrade_requested_emit(*, request: RegradeRequest) -> None:
    """`regrade.requested`: a student asked for a second look at a released grade."""
    answer = request.answer
    assignment = answer.question.assignment
    webhook_emit(
        course=assignment.course,
        event_type=WebhookEvent.REGRADE_REQUESTED,
        data={
            "assignment": _assignment_ref(assignment),
            "regrade_request": {
                "id": request.pk,
                "answer": answer.pk,
                "question": answer.question_id,
                "submission": answer.submission_id,
                "created_at": request.created_at,
            },
        },
        event_id=_event_id_stable(WebhookEvent.REGRADE_REQUESTED, request.pk),
    )


def answers_finished_emit(*, answer_ids: Collection[int]) -> None:
    """Call where grading has stored its answers' outcomes (a task's chunk, a crashed chunk
    sent to manual grading). Once the transaction commits: per assignment, one
    `grade.needs_review` listing those of the answers that now need a teacher — manual
    grading, or a flagged proposal — and `grading.finished` if the assignment has no answer
    left in flight. A task run twice reports the same answers in the same state, under the
    same event id: once.
    """
    ids = list(answer_ids)
    if ids:
        transaction.on_commit(functools.partial(_answers_finished, ids))


def _answers_finished(answer_ids: list[int]) -> None:
    # The common case, a school without webhooks, costs one query a chunk.
    if not WebhookSubscription.objects.filter(active=True).exists():
        return
    answers = Answer.objects.filter(pk__in=answer_ids).select_related(
        "question__assignment__course", "current_assessment"
    )
    by_assignment: dict[int, list[Answer]] = {}
    for answer in answers.order_by("pk"):
        by_assignment.setdefault(answer.question.assignment_id, []).append(answer)
    for group in by_assignment.values():
        assignment = group[0].question.assignment
        review = [a for a in group if _needs_review(a)]
        if review:
            _needs_review_emit(assignment, review)
        _grading_finished_emit(assignment)


def _needs_review(answer: Answer) -> bool:
    if answer.status == AnswerStatus.NEEDS_MANUAL:
        return True
    current = answer.current_assessment
    return answer.status == AnswerStatus.GRADED and current is not None and bool(current.flags)


def _needs_review_emit(assignment: Assignment, answers: list[Answer]) -> None:
    listed = [
        {
            "id": a.pk,
            "submission": a.submission_id,
            "question": a.question_id,
            "status": a.status,
            "flags": list(a.current_assessment.flags) if a.current_assessment else [],
        }
        for a in answers
    ]
    webhook_emit(
        course=assignment.course,
        event_type=WebhookEvent.NEEDS_REVIEW,
        data={"assignment": _assignment_ref(assignment), "answers": listed},
        event_id=_event_id_stable(
            WebhookEvent.NEEDS_REVIEW,
            assignment.pk,
            [(a.pk, a.current_assessment_id, a.status) for a in answers],
        ),
    )


def _grading_finished_emit(assignment: Assignment) -> None:
    """`grading.finished` once nothing of the assignment is left in flight.

    Checked after the chunk's commit, so the last chunk to commit always sees the others'
    results; when two see it together, both name the same moment (the newest answer
    update) and so the same event id: one delivery.
    """
    rows = (
        Answer.objects.filter(
            submission__assignment=assignment, submission__status=SubmissionStatus.SUBMITTED
        )
        .values_list("status")
        .annotate(n=Count("pk"), last=Max("updated_at"))
    )
    counts = {status.value: 0 for status in AnswerStatus}
    newest: datetime | None = None
    for status, n, last in rows:
        counts[status] = n
        newest = last if newest is None or (last and last > newest) else newest
    if counts[AnswerStatus.GRADING] or counts[AnswerStatus.PENDING] or newest is None:
        return
    webhook_emit(
        course=assignment.course,
        event_type=WebhookEvent.GRADING_FINISHED,
        data={
            "assignment": _assignment_ref(assignment),
            "answers": {
                "total": sum(counts.values()),
                "needs_review": counts[AnswerStatus.GRADED],
                "needs_manual": counts[AnswerStatus.NEEDS_MANUAL],
                "approved": counts[AnswerStatus.APPROVED],
            },
        },
        event_id=_event_id_stable(WebhookEvent.GRADING_FINISHED, assignment.pk, newest),
    )


# --- Subscriptions ------------------------------------------------------------------------


def webhook_subscription_create(
    *,
    course: Course,
    url: str,
    event_types: Iterable[str],
    actor: UserModel | None,
    description: str = "",
) -> WebhookSubscription:
    """A new receiver for the course's events; its secret is generated here."""
    from .audit import audit_record

    subscription = WebhookSubscription(
        course=course,
        url=clean_text(url).strip(),
        event_types=list(event_types),
        description=clean_text(description).strip(),
        created_by=actor,
    )
    subscription.full_clean()
    with transaction.atomic():
        subscription.save()
        audit_record(
            actor=actor,
            action="webhook.subscribed",
            target=subscription,
            after={
                "course": course.pk,
                "url": subscription.url,
                "events": subscription.event_types,
            },
        )
    return subscription


def webhook_subscription_delete(*, subscription: WebhookSubscription, actor: UserModel) -> None:
    """Stop sending the course's events there (its delivery log goes with it)."""
    from .audit import audit_record

    with transaction.atomic():
        audit_record(
            actor=actor,
            action="webhook.unsubscribed",
            target=subscription,
            before={
                "course": subscription.course_id,
                "url": subscription.url,
                "events": subscription.event_types,
            },
        )
        subscription.delete()


def webhook_test_send(*, subscription: WebhookSubscription) -> WebhookDelivery:
    """Send a `webhook.test` event to one subscription, whatever events it chose, so that
    whoever set up the receiver sees a signed delivery arrive (or why it did not)."""
    event_id = _event_id_new()
    payload = {
        "id": event_id,
        "type": WEBHOOK_TEST_EVENT,
        "timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
        "data": {
            "course": _course_ref(subscription.course),
            "subscription": subscription.pk,
            "message": "This is a test event from Markwise.",
        },
    }
    [delivery] = _deliveries_create([subscription], event_id, WEBHOOK_TEST_EVENT, payload)
    return delivery


# --- Delivering -----------------------------------------------------------------------------


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~50 ms; every delivery in the process shares one.
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(frozen=True)
class AttemptResult:
    code: int | None  # the receiver's HTTP status; None when there was no answer
    error: str  # '' on success
    ms: int

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


def _post(url: str, secret: str, event_id: str, body: bytes) -> AttemptResult:
    problem = _destination_problem(url)
    if problem:
        return AttemptResult(None, f"refused: {problem}", 0)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_sign(
            secret=secret, msg_id=event_id, timestamp=timestamp, body=body
        ),
    }
    started = time.perf_counter()
    try:
        with (
            httpx.Client(
                timeout=httpx.Timeout(settings.WEBHOOK_TIMEOUT),
                follow_redirects=False,  # a redirect could lead anywhere the checks did not see
                verify=_tls_context(),
            ) as client,
            # Streamed and closed unread: only the status matters, and a receiver cannot
            # make the worker download anything.
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            code = response.status_code
    except httpx.HTTPError as exc:
        ms = int((time.perf_counter() - started) * 1000)
        return AttemptResult(None, f"{type(exc).__name__}: {exc}"[:500], ms)
    ms = int((time.perf_counter() - started) * 1000)
    return AttemptResult(code, "" if 200 <= code < 300 else f"HTTP {code}", ms)


def webhook_backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, …): doubling from
    WEBHOOK_BACKOFF_BASE up to WEBHOOK_BACKOFF_MAX, plus up to 10 % so that the deliveries
    of one outage do not all come back in the same second."""
    delay = min(settings.WEBHOOK_BACKOFF_BASE * 2 ** (attempt - 1), settings.WEBHOOK_BACKOFF_MAX)
    return delay * (1 + 0.1 * random.random())


def webhook_deliver(*, delivery_id: int) -> str:
    """One attempt of one delivery (the django-q2 task). Safe to run twice: an attempt is
    claimed first, and a delivery that is not due, or finished, is left alone.

    Returns the delivery's status after the attempt ('' when there was nothing to do).
    """
    now = timezone.now()
    lease = timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT + 60)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + lease, last_attempt_at=now)
    if not claimed:
        return ""
    delivery = WebhookDelivery.objects.select_related("subscription").filter(pk=delivery_id).first()
    if delivery is None:
        return ""  # its subscription was deleted meanwhile
    subscription = delivery.subscription
    if subscription.active or delivery.event_type == WEBHOOK_TEST_EVENT:
        result = _post(
            subscription.url, subscription.secret, delivery.event_id, webhook_body(delivery.payload)
        )
    else:
        result = AttemptResult(None, "the subscription is switched off", 0)
    delivery.last_response_code = result.code
    delivery.last_error = result.error
    delivery.history = [
        *delivery.history,
        {"at": now.isoformat(), "code": result.code, "error": result.error, "ms": result.ms},
    ][-max(settings.WEBHOOK_MAX_ATTEMPTS, 1) :]
    retry_at: datetime | None = None
    if result.ok:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, None
    elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS or not subscription.active:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        logger.warning(
            "webhook %s to %s failed after %s attempts: %s",
            delivery.event_id,
            subscription.url,
            delivery.attempts,
            result.error,
        )
    else:
        retry_at = timezone.now() + timedelta(seconds=webhook_backoff(delivery.attempts))
        delivery.next_attempt_at = retry_at
    delivery.save(
        update_fields=[
            "status",
            "last_response_code",
            "last_error",
            "history",
            "next_attempt_at",
            "updated_at",
        ]
    )
    if retry_at is not None:
        _enqueue_at(delivery.pk, retry_at)
    return delivery.status


def _enqueue_at(delivery_id: int, when: datetime) -> None:
    if when <= timezone.now():
        async_task(DELIVER_FUNC, delivery_id)
    else:
        # The cluster's scheduler turns this into a task at `when` (within its ~15 s tick)
        # and deletes it; stored in the database, it survives restarts meanwhile.
        schedule(DELIVER_FUNC, delivery_id, schedule_type=Schedule.ONCE, next_run=when)


def webhook_deliveries_requeue() -> int:
    """Scheduled sweeper: pending deliveries long overdue lost their task; enqueue them."""
    overdue = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lt=timezone.now() - SWEEP_GRACE
        ).values_list("pk", flat=True)[:1000]
    )
    _enqueue_now(overdue)
    return len(overdue)
