"""django-q2 on the Redis broker (REDIS_URL), as the compose "redis" profile runs it.

The Redis server on this machine (CI starts one), in its own numbered database so that
nothing else's keys are touched: MARKWISE_TEST_REDIS_URL, redis://127.0.0.1:6379/13 unless
set. The cluster test needs PostgreSQL, like tests/test_cluster.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.db import connection
from django_q.models import OrmQ

from grading.models import Answer, AnswerStatus

from .cluster_support import Cluster, completed_runs_per_answer, wait_until_final
from .conftest import make_user, submit

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("MARKWISE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE = "django_q:markwise:q"  # django-q2's list for the cluster named "markwise"


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"no Redis server at {REDIS_URL} (CI starts one: .ci/run)")
    client.flushdb()  # this test's own database number, never another's keys
    yield client
    client.flushdb()
    client.close()


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_redis_url_selects_a_working_redis_broker(redis_db, tmp_path):
    """The settings and the installed client: REDIS_URL alone gives a broker that answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "Q_"))}
    env.update(REDIS_URL=REDIS_URL, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    code = (
        "import django; django.setup(); from django_q.brokers import get_broker; "
        "b = get_broker(); b.enqueue('probe'); print(type(b).__name__, b.ping(), b.queue_size())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Redis", "True", "1"]
    assert redis_db.lrange(QUEUE, 0, -1) == [b"probe"]


@pytest.mark.cluster
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the qcluster process shares the test database: run with DATABASE_URL=postgres://…",
)
def test_a_cluster_on_redis_grades_every_answer_once(
    redis_db, cluster_env, fake_llm, assignment, essay_question, tmp_path
):
    answers = [
        submit(
            assignment, make_user(f"r{i:02d}"), {essay_question: f"第{i}篇作文：那一刻我长大了。"}
        ).answers.get()
        for i in range(12)
    ]
    qs = Answer.objects.filter(pk__in=[a.pk for a in answers])
    # Web, workers and the grading command all on Redis, as with the "redis" profile.
    env = {**cluster_env, "REDIS_URL": REDIS_URL, "GRADING_CHUNK_SIZE": "3"}

    queued = _manage(env, "grade_assignment", str(assignment.pk))
    assert queued.returncode == 0, queued.stderr
    # The tasks went through Redis, not the database's queue.
    assert redis_db.llen(QUEUE) == 4 and not OrmQ.objects.exists()

    cluster = Cluster(env, tmp_path / "qcluster.log")
    cluster.start()
    try:
        wait_until_final(qs, timeout=90)
    finally:
        cluster.stop()
        print(cluster.log.read_text()[-3000:])

    assert set(qs.values_list("status", flat=True)) == {AnswerStatus.GRADED}
    assert set(completed_runs_per_answer(qs).values()) == {1}
    assert len(fake_llm.requests) == len(answers)
    assert redis_db.llen(QUEUE) == 0
