"""A real `manage.py qcluster` grades through the loopback model server.

These run on PostgreSQL (as CI does): the cluster is a separate process and
must share the test database, and several processes write at once.
"""

from __future__ import annotations

import io
import re
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from courses.models import Assignment, QuestionKind
from grading.audit import audit_verify
from grading.models import Answer, AnswerStatus, Assessment, AssessmentStatus

from .cluster_support import FINAL, Cluster, completed_runs_per_answer, wait_until_final
from .conftest import make_user, submit

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the qcluster process shares the test database: run with DATABASE_URL=postgres://…",
    ),
]


@pytest.fixture
def cluster(cluster_env, tmp_path):
    running = Cluster(cluster_env, tmp_path / "qcluster.log")
    running.start()
    yield running
    running.stop()
    print(running.log.read_text()[-3000:])


def test_demo_assignment_grades_end_to_end(cluster, fake_llm, settings):
    settings.DEBUG = True
    fake_llm.script = ["malformed"] * 3  # one essay gets three bad replies in a row
    started = timezone.now()
    call_command("seed_demo", stdout=io.StringIO())  # its handed-in work is queued at once
    essay = Assignment.objects.get(questions__kind=QuestionKind.ESSAY)
    answers = Answer.objects.filter(submission__assignment=essay)
    wait_until_final(answers, timeout=120)
    assert set(answers.values_list("status", flat=True)) <= set(FINAL)
    assert Assessment.objects.filter(
        answer__in=answers, status=AssessmentStatus.FAILED, created_at__gte=started
    ).exists()
    # Each answer has exactly one completed scoring run (blank ones by rule, no model).
    runs = completed_runs_per_answer(answers.exclude(status=AnswerStatus.NEEDS_MANUAL))
    assert set(runs.values()) == {1}
    assert answers.filter(text="", question__kind=QuestionKind.ESSAY).get().status == "graded"

    # Grading the assignment again (the operator's command) retries the failed answer and
    # grades nothing twice: the others' inputs are unchanged.
    out = io.StringIO()
    call_command("grade_assignment", str(essay.pk), "--wait", "--timeout", "120", stdout=out)
    summary = out.getvalue().strip().splitlines()[-1]
    match = re.fullmatch(
        r"graded=(\d+) needs_manual=(\d+) failed=(\d+) prompt_tokens=(\d+) "
        r"completion_tokens=(\d+) seconds=[\d.]+",
        summary,
    )
    assert match, summary
    graded, needs_manual, failed = map(int, match.groups()[:3])
    assert graded + needs_manual == answers.count()
    assert failed == 0
    assert completed_runs_per_answer(answers.filter(pk__in=runs)) == runs
    assert audit_verify().ok  # two workers wrote one unbroken chain


def test_killed_cluster_loses_nothing_and_grades_once(
    cluster, fake_llm, assignment, essay_question
):
    fake_llm.latency = 0.25
    answers = [
        submit(
            assignment, make_user(f"k{i:03d}"), {essay_question: f"第{i}篇作文：那一刻我长大了。"}
        ).answers.get()
        for i in range(96)
    ]
    qs = Answer.objects.filter(pk__in=[a.pk for a in answers])
    call_command("grade_assignment", str(assignment.pk), stdout=io.StringIO())

    deadline = time.monotonic() + 60
    while qs.filter(status=AnswerStatus.GRADED).count() < 16 and time.monotonic() < deadline:
        time.sleep(0.1)
    cluster.kill()
    graded_before = qs.filter(status=AnswerStatus.GRADED).count()
    assert 0 < graded_before < len(answers), "kill must land mid-batch"

    cluster.start()  # unacknowledged chunks come back after Q_RETRY seconds
    wait_until_final(qs, timeout=120)
    assert set(qs.values_list("status", flat=True)) == {AnswerStatus.GRADED}
    assert set(completed_runs_per_answer(qs).values()) == {1}
    assert audit_verify().ok
