"""Grading and handing in at the same time: the deadline rush (bench/deadline_rush.py).

A grading worker stores its results while students keep handing in. Each side holds
the audit chain's lock to its commit, so neither may hold a row lock that the other
needs before it: the benchmark found grading locking the assignment itself (the
answers' default ordering joins it into the FOR UPDATE), and every hand-in's commit,
which checks its foreign keys to the assignment, deadlocking with it (HTTP 500).

PostgreSQL only: SQLite has no row locks.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from grading.models import Answer, AnswerStatus, Submission, SubmissionStatus
from grading.services import submission_save
from grading.services.assessments import _locked_still_grading

from .conftest import submit


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks (PostgreSQL)")
@pytest.mark.django_db(transaction=True)
def test_a_hand_in_goes_through_while_grading_holds_its_answers(
    assignment, essay_question, student, other_student
):
    answer = submit(assignment, student, {essay_question: "那一刻，我长大了。"}).answers.get()
    Answer.objects.filter(pk=answer.pk).update(status=AnswerStatus.GRADING)
    locked, release = threading.Event(), threading.Event()
    held: list[set[int]] = []

    def grading_worker() -> None:
        try:
            with transaction.atomic():
                held.append(_locked_still_grading([answer]))
                locked.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    worker = threading.Thread(target=grading_worker)
    worker.start()
    try:
        assert locked.wait(timeout=10)
        assert held == [{answer.pk}]
        with connection.cursor() as cursor:
            # Waiting would be the deadlock's first half; fail fast instead.
            cursor.execute("SET lock_timeout = '3s'")
        try:
            handed = submission_save(
                assignment=assignment,
                student=other_student,
                responses={essay_question.pk: ("我也交了。", [])},
                hand_in=True,
                hand_in_token="f" * 32,
            )
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
    finally:
        release.set()
        worker.join(timeout=30)
    assert Submission.objects.get(pk=handed.pk).status == SubmissionStatus.SUBMITTED
