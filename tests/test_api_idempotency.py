"""Idempotency-Key: a retried POST returns the first response and creates nothing new."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from django.db import connection
from django.test import RequestFactory

from grading.api.idempotency import request_fingerprint
from grading.models import AuditEvent, IdempotencyRecord, Submission

from .api_support import *  # noqa: F403
from .api_support import Api, problem


@pytest.fixture
def hand_in(assignment: Any, essay_question: Any) -> Any:
    path = f"/api/v1/assignments/{assignment.pk}/submissions/"
    body = {"answers": [{"question": essay_question.pk, "text": "那一刻，我长大了。"}]}

    def send(api: Api, key: str | None, **changes: Any) -> Any:
        return api.post(path, {**body, **changes}, idem=key)

    send.path, send.body = path, body  # type: ignore[attr-defined]
    return send


def test_the_same_key_and_body_replays_the_first_response(
    student: Any, assignment: Any, hand_in: Any
) -> None:
    assignment.attempts_allowed = 3
    assignment.save()
    api = Api(user=student)
    first = hand_in(api, "7b1d7c9e-key-1")
    again = hand_in(api, "7b1d7c9e-key-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true" and again["Location"] == first["Location"]
    assert "Idempotent-Replayed" not in first
    assert Submission.objects.count() == 1
    assert AuditEvent.objects.filter(action="submission.submitted").count() == 1
    # Without a key, or with a new one, the request is a new hand-in (attempt 2).
    assert hand_in(api, "7b1d7c9e-key-2").json()["attempt"] == 2


def test_json_key_order_and_spacing_do_not_make_another_request(student: Any, hand_in: Any) -> None:
    api = Api(user=student)
    first = hand_in(api, "k")
    reordered = api.client.post(
        hand_in.path,
        b'{ "answers" : [ {"text": "\xe9\x82\xa3\xe4\xb8\x80\xe5\x88\xbb\xef\xbc\x8c\xe6\x88\x91'
        b'\xe9\x95\xbf\xe5\xa4\xa7\xe4\xba\x86\xe3\x80\x82", "question": '
        + str(hand_in.body["answers"][0]["question"]).encode()
        + b"} ] }",
        content_type="application/json",
        headers={**api.headers, "Idempotency-Key": "k"},
    )
    assert reordered.status_code == 201 and reordered.json() == first.json()
    assert reordered["Idempotent-Replayed"] == "true"


def test_the_same_key_with_another_body_is_a_422(student: Any, hand_in: Any) -> None:
    api = Api(user=student)
    assert hand_in(api, "k").status_code == 201
    problem(hand_in(api, "k", answers=[]), 422, "idempotency-key-reused")
    assert Submission.objects.count() == 1


def test_keys_belong_to_their_caller(
    student: Any, other_student: Any, assignment: Any, hand_in: Any
) -> None:
    assert hand_in(Api(user=student), "shared").status_code == 201
    second = hand_in(Api(user=other_student), "shared")
    assert second.status_code == 201 and "Idempotent-Replayed" not in second
    assert Submission.objects.count() == 2


def test_an_error_is_replayed_too(student: Any, hand_in: Any) -> None:
    api = Api(user=student)
    first = hand_in(api, "k", answers=[{"question": "x", "text": ""}])
    again = hand_in(api, "k", answers=[{"question": "x", "text": ""}])
    problem(first, 400)
    problem(again, 400)
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"


def test_keys_expire_after_a_day(student: Any, assignment: Any, hand_in: Any) -> None:
    assignment.attempts_allowed = 2
    assignment.save()
    api = Api(user=student)
    assert hand_in(api, "k").status_code == 201
    IdempotencyRecord.objects.update(
        created_at=IdempotencyRecord.objects.get().created_at - datetime.timedelta(hours=25)
    )
    # The hand-in service still knows this hand-in (its token comes from the key)...
    assert hand_in(api, "k").json()["attempt"] == 1
    assert Submission.objects.count() == 1
    # ...but the key itself was forgotten and answered afresh.
    assert IdempotencyRecord.objects.count() == 1


def test_a_request_still_running_is_a_409_after_the_wait(
    settings: Any, student: Any, hand_in: Any
) -> None:
    settings.API_IDEMPOTENCY_WAIT = 0
    factory = RequestFactory()
    import json

    request = factory.post(hand_in.path, json.dumps(hand_in.body), content_type="application/json")
    IdempotencyRecord.objects.create(
        user=student, key="k", request_hash=request_fingerprint(request)
    )
    response = hand_in(Api(user=student), "k")
    problem(response, 409, "idempotency-in-progress")
    assert response["Retry-After"] == "1"
    assert not Submission.objects.exists()


def test_a_server_error_forgets_the_key(monkeypatch: Any, teacher: Any, assignment: Any) -> None:
    from grading import services

    def broken(**kwargs: Any) -> int:
        raise RuntimeError("the queue is down")

    monkeypatch.setattr(services, "assignment_grade", broken)
    api = Api(user=teacher)
    path = f"/api/v1/assignments/{assignment.pk}/grading/"
    with pytest.raises(RuntimeError):
        api.post(path, {}, idem="k")
    assert not IdempotencyRecord.objects.exists()
    monkeypatch.undo()
    assert api.post(path, {}, idem="k").status_code == 202


@pytest.mark.parametrize("key", ["", "x" * 256, "ключ", "tab\there"])
def test_keys_no_client_should_send_are_refused(student: Any, hand_in: Any, key: str) -> None:
    response = Api(user=student).client.post(
        hand_in.path,
        hand_in.body,
        content_type="application/json",
        headers={"Accept-Language": "en", "Idempotency-Key": key},
    )
    assert "Idempotency-Key" in problem(response, 400)["errors"]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_hand_ins_with_one_key_make_one_submission(
    student: Any, assignment: Any, essay_question: Any
) -> None:
    """On PostgreSQL (the production database): two threads post at the same moment."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's concurrent transactions (DATABASE_URL)")
    assignment.attempts_allowed = 3
    assignment.save()
    path = f"/api/v1/assignments/{assignment.pk}/submissions/"
    body = {"answers": [{"question": essay_question.pk, "text": "同时提交。"}]}
    start = threading.Barrier(2)
    responses: list[Any] = [None, None]

    def post(slot: int) -> None:
        api = Api(user=student)
        start.wait()
        try:
            responses[slot] = api.post(path, body, idem="same-key")
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(r.status_code for r in responses)
    assert Submission.objects.count() == 1
    assert statuses in ([201, 201], [201, 409]), statuses
    created = [r.json() for r in responses if r.status_code == 201]
    assert all(body == created[0] for body in created)
