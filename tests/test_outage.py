"""A model server that restarts is not teacher work: answers wait for it, then get graded.

The loopback server is stopped (its port closed, open connections cut, as when vLLM
restarts) and started again on the same port. In-process on any database: a chunk
marks its answers waiting, the breaker is shared and stops sending, the page and
/readyz say since when, a probe brings the answers back. The last test does the same
to a real qcluster on PostgreSQL, for longer than the old retry budget.
"""

from __future__ import annotations

import datetime
import io
import re
import time

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from grading import llm, services
from grading.audit import audit_verify
from grading.models import Answer, AnswerStatus, ModelEndpointState
from grading.services.queue import PROBE_FUNC, PROBE_SCHEDULE

from .conftest import GOOD, make_user, submit
from .fake_llm import FakeLLM


@pytest.fixture
def server(settings):
    """A model server of the test's own, to stop and start."""
    fake = FakeLLM().start()
    settings.LLM_BASE_URL = fake.url
    settings.LLM_BACKOFF_BASE = 0.01
    settings.LLM_MAX_RETRIES = 3
    settings.LLM_TIMEOUT = 5.0
    settings.LLM_INVALID_RETRIES = 2
    settings.LLM_SAMPLES = 1
    yield fake
    fake.stop()


@pytest.fixture
def essays(db, assignment, essay_question):
    return [
        submit(assignment, make_user(f"o{i}"), {essay_question: f"{GOOD}（{i}）"}).answers.get()
        for i in range(6)
    ]


def grade_chunk(answers, capture):
    """Run a chunk as the task does; returns the tasks it enqueued on commit."""
    ids = [a.pk for a in answers]
    with capture(execute=False):
        services.answers_enqueue(answer_ids=ids)
    with capture(execute=False) as enqueued:
        summary = services.answers_grade_chunk(answer_ids=ids)
    return summary, enqueued


def make_probe_due(url: str) -> None:
    ModelEndpointState.objects.filter(url=url).update(
        next_probe_at=timezone.now() - datetime.timedelta(seconds=1)
    )


def test_an_outage_makes_answers_wait_then_they_are_graded(
    server, essays, django_capture_on_commit_callbacks, client, teacher, admin_user, assignment
):
    server.stop()
    summary, _ = grade_chunk(essays, django_capture_on_commit_callbacks)
    answers = Answer.objects.filter(pk__in=[a.pk for a in essays])

    # Waiting: still GRADING, off the sweeper's clock, nothing stored, nobody's work.
    assert sorted(summary.waiting) == sorted(a.pk for a in essays)
    assert summary.needs_manual == 0 and summary.graded == 0
    assert set(answers.values_list("status", flat=True)) == {AnswerStatus.GRADING}
    assert not answers.filter(waiting_for_model_since__isnull=True).exists()
    assert not answers.filter(grading_started_at__isnull=False).exists()
    assert not answers.filter(assessments__isnull=False).exists()

    # The breaker is shared, and a probe is scheduled for when it is due.
    state = llm.endpoint_states()[server.url]
    assert state.open and "cannot reach" in state.last_error
    probe = Schedule.objects.get(name=PROBE_SCHEDULE)
    assert probe.func == PROBE_FUNC and probe.schedule_type == Schedule.ONCE
    assert probe.next_run == state.next_probe_at

    # Teachers see since when; so does /readyz for staff.
    since = answers.first().waiting_for_model_since
    client.force_login(teacher)
    url = f"/grading/assignments/{assignment.pk}/"
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"Waiting for the model since {timezone.localtime(since):%H:%M}" in page
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert f"自 {timezone.localtime(since):%H:%M} 起等待 AI 模型" in page
    cache.clear()  # the banner is cached for half a minute
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"Grading has been waiting for the model since {timezone.localtime(since):%H:%M}" in page
    client.force_login(admin_user)
    checks = client.get("/readyz").json()["checks"]["llm"]
    assert checks["endpoints"][0]["open"] is True
    assert checks["waiting_for_model"] == {"answers": 6, "since": since.isoformat()}

    # The sweeper does not count waiting answers as stuck.
    assert services.answers_requeue_stuck(older_than=datetime.timedelta(0)) == 0
    assert set(answers.values_list("status", flat=True)) == {AnswerStatus.GRADING}

    # A due probe while the server is still down backs off.
    make_probe_due(server.url)
    assert services.model_outage_check() == 0
    assert llm.endpoint_states()[server.url].probe_interval == 10.0

    # Back: the probe closes the breaker and queues the answers again; they are graded.
    server.start()
    make_probe_due(server.url)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        assert services.model_outage_check() == 6
    assert len(enqueued) == 1 and not llm.endpoint_states()[server.url].open
    assert not answers.filter(waiting_for_model_since__isnull=False).exists()
    assert not answers.filter(grading_started_at__isnull=True).exists()
    summary = services.answers_grade_chunk(answer_ids=[a.pk for a in essays])
    assert summary.graded == 6 and summary.waiting == []
    assert set(answers.values_list("status", flat=True)) == {AnswerStatus.GRADED}
    assert audit_verify().ok


def test_an_open_breaker_sends_nothing(server, essays, django_capture_on_commit_callbacks):
    # Another worker saw the outage: this one does not send at all until a probe is due.
    ModelEndpointState.objects.create(
        url=server.url,
        open_since=timezone.now(),
        next_probe_at=timezone.now() + datetime.timedelta(minutes=1),
        probe_interval=60,
        last_error="cannot reach",
    )
    summary, _ = grade_chunk(essays, django_capture_on_commit_callbacks)
    assert len(summary.waiting) == 6 and server.requests == []


def test_a_due_probe_at_chunk_start_lets_the_chunk_send(
    server, essays, django_capture_on_commit_callbacks
):
    ModelEndpointState.objects.create(
        url=server.url,
        open_since=timezone.now(),
        next_probe_at=timezone.now(),
        probe_interval=5,
    )
    summary, _ = grade_chunk(essays, django_capture_on_commit_callbacks)
    assert summary.graded == 6 and not llm.endpoint_states()[server.url].open


@pytest.mark.parametrize("mode", ["error502", "error503", "loading"])
def test_a_proxy_or_a_loading_server_is_an_outage(
    server, essays, django_capture_on_commit_callbacks, mode
):
    server.default = mode
    summary, _ = grade_chunk(essays, django_capture_on_commit_callbacks)
    assert len(summary.waiting) == 6 and summary.needs_manual == 0
    assert llm.endpoint_states()[server.url].open


def test_rejected_answers_still_go_to_manual_grading(
    server, django_capture_on_commit_callbacks, assignment, essay_question
):
    # What the model keeps rejecting is a teacher's, outage or not.
    rejected = [
        submit(
            assignment, make_user(mode), {essay_question: f"{GOOD}[[fake:{mode}]]"}
        ).answers.get()
        for mode in ("malformed", "context_length")
    ]
    summary, _ = grade_chunk(rejected, django_capture_on_commit_callbacks)
    assert summary.needs_manual == 2 and summary.waiting == []


def test_waiting_answers_go_to_the_rule_engine_when_the_model_is_removed(
    server, essays, django_capture_on_commit_callbacks, settings
):
    server.stop()
    grade_chunk(essays, django_capture_on_commit_callbacks)
    settings.LLM_BASE_URL = ""
    with django_capture_on_commit_callbacks(execute=False):
        assert services.model_outage_check() == 6


# --- A real cluster through a real restart ----------------------------------------------------

OUTAGE_SECONDS = 15.0  # longer than the old retry budget: about 1 + 2 + 4 s of backoff


@pytest.mark.cluster
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the qcluster process shares the test database: run with DATABASE_URL=postgres://…",
)
def test_model_server_restart_during_grading_is_not_teacher_work(
    transactional_db, assignment, essay_question, tmp_path
):
    from .cluster_support import (
        FINAL,
        Cluster,
        cluster_environment,
        completed_runs_per_answer,
        wait_until_final,
    )

    fake = FakeLLM(latency=0.5).start()
    env = cluster_environment(
        llm_url=fake.url,
        LLM_BACKOFF_BASE="0.5",  # the default: the old design gave up after ~7 s
        LLM_MAX_CONCURRENCY="4",
        Q_WORKERS="2",
        Q_TIMEOUT="20",
        Q_RETRY="25",
        Q_POLL="0.2",
    )
    cluster = Cluster(env, tmp_path / "qcluster.log")
    cluster.start()
    try:
        answers = [
            submit(
                assignment, make_user(f"r{i:03d}"), {essay_question: f"第{i}篇：那一刻我长大了。"}
            ).answers.get()
            for i in range(96)
        ]
        qs = Answer.objects.filter(pk__in=[a.pk for a in answers])
        out = io.StringIO()
        call_command("grade_assignment", str(assignment.pk), stdout=out)

        deadline = time.monotonic() + 60
        while qs.filter(status=AnswerStatus.GRADED).count() < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        fake.stop()
        stopped = time.monotonic()
        assert qs.exclude(status__in=FINAL).exists(), "the restart must land mid-grading"
        while time.monotonic() - stopped < OUTAGE_SECONDS:
            time.sleep(0.5)
        # Every answer not graded before the restart is waiting, none is a teacher's.
        assert not qs.filter(status=AnswerStatus.NEEDS_MANUAL).exists()
        assert qs.filter(waiting_for_model_since__isnull=False).exists()
        fake.start()

        wait_until_final(qs, timeout=150)
        assert set(qs.values_list("status", flat=True)) == {AnswerStatus.GRADED}
        assert set(completed_runs_per_answer(qs).values()) == {1}
        assert audit_verify().ok
    finally:
        cluster.stop()
        fake.stop()
        log = (tmp_path / "qcluster.log").read_text()
        print(re.sub(r"\n+", "\n", log)[-3000:])
