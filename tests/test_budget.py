"""One request budget per model endpoint, shared by every worker process on every host.

The stores (database, and Redis where a server runs) hand out at most the budget,
take back what expired, and tell a slow holder what it lost. The engine never has
more requests in flight than it holds slots, gives a chunk's slots back as it drains,
and puts back in the queue what it could not send in time. The last test runs three
real qclusters against one loopback server on PostgreSQL.
"""

from __future__ import annotations

import datetime
import os
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from grading import llm_state, services
from grading.models import Answer, AnswerStatus, ModelSlot

from .conftest import GOOD, make_user, submit
from .fake_llm import FakeLLM

URL = "http://vllm-0:8000/v1"


def redis_url() -> str | None:
    """A scratch database of the Redis server on this machine, if the client and it exist."""
    try:
        import redis
    except ImportError:
        return None
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return None
    return url


@pytest.fixture(params=["database", "redis"])
def make_store(request, db, settings):
    """Stores for several processes: each call is another holder."""
    if request.param == "database":
        yield lambda: llm_state.DatabaseStore(llm_state.new_holder())
        return
    url = redis_url()
    if url is None:
        pytest.skip("no Redis server or no `redis` client installed")
    prefix = f"markwise-test-{uuid.uuid4().hex[:8]}:llm"
    stores: list[llm_state.RedisStore] = []

    def make() -> llm_state.RedisStore:
        store = llm_state.RedisStore(llm_state.new_holder(), url)
        store.PREFIX = prefix
        stores.append(store)
        return store

    yield make
    if stores:
        keys = list(stores[0].redis.scan_iter(f"{prefix}:*"))
        if keys:
            stores[0].redis.delete(*keys)


def test_the_budget_is_shared_between_holders(make_store):
    first, second = make_store(), make_store()
    assert first.acquire(URL, 3, budget=4) == 3
    assert second.acquire(URL, 3, budget=4) == 1
    assert second.acquire(URL, 1, budget=4) == 0
    first.release(URL, 2)
    assert second.acquire(URL, 5, budget=4) == 2
    assert (first.held(URL), second.held(URL)) == (1, 3)
    assert first.acquire("http://vllm-1:8000/v1", 4, budget=4) == 4  # another endpoint
    first.release_all()
    assert second.acquire(URL, 4, budget=4) == 1


def test_a_holder_that_stops_renewing_loses_its_slots(make_store, settings):
    settings.LLM_SLOT_LEASE_SECONDS = 0.2
    slow, other = make_store(), make_store()
    assert slow.acquire(URL, 4, budget=4) == 4
    assert other.acquire(URL, 1, budget=4) == 0
    deadline = timezone.now() + datetime.timedelta(seconds=5)
    while other.acquire(URL, 4, budget=4) < 4:  # the leases lapse
        assert timezone.now() < deadline
    assert slow.renew() == {URL: 4}
    assert slow.held(URL) == 0 and other.held(URL) == 4
    settings.LLM_SLOT_LEASE_SECONDS = 30
    assert other.renew() == {}


def test_the_breaker_is_shared(make_store, settings):
    settings.LLM_OUTAGE_MAX_WAIT = 12
    first, second = make_store(), make_store()
    assert not second.breaker_states([URL])[URL].open
    opened = first.breaker_open(URL, "cannot reach")
    again = second.breaker_open(URL, "HTTP 502")
    assert again.open_since == opened.open_since and again.last_error == "HTTP 502"
    intervals = [second.breaker_probe_failed(URL, "down").probe_interval for _ in range(3)]
    assert intervals == [10.0, 12.0, 12.0]  # doubled, up to LLM_OUTAGE_MAX_WAIT
    first.breaker_close(URL)
    assert not second.breaker_states([URL])[URL].open


# --- The engine keeps to the budget ------------------------------------------------------------


@pytest.fixture
def slow_server(settings):
    fake = FakeLLM(latency=0.1).start()
    settings.LLM_BASE_URL = fake.url
    settings.LLM_BACKOFF_BASE = 0.01
    settings.LLM_TIMEOUT = 5.0
    settings.LLM_SAMPLES = 1
    settings.LLM_MAX_CONCURRENCY = 4
    yield fake
    fake.stop()


def essays(assignment, essay_question, n):
    return [
        submit(assignment, make_user(f"b{i}"), {essay_question: f"{GOOD}（{i}）"}).answers.get()
        for i in range(n)
    ]


def test_requests_in_flight_never_exceed_the_budget(
    slow_server, grade_now, assignment, essay_question
):
    summary = grade_now(essays(assignment, essay_question, 20))
    assert summary.graded == 20
    assert slow_server.max_open_requests == 4  # the budget, used to the full
    assert not ModelSlot.objects.exclude(holder="").exists()  # all given back


def test_the_engine_keeps_to_a_budget_kept_in_redis(
    slow_server, settings, grade_now, assignment, essay_question
):
    url = redis_url()
    if url is None:
        pytest.skip("no Redis server or no `redis` client installed")
    settings.REDIS_URL = url
    store = llm_state.store()
    assert isinstance(store, llm_state.RedisStore)
    key = store._slots_key(slow_server.url)
    try:
        summary = grade_now(essays(assignment, essay_question, 12))
        assert summary.graded == 12 and slow_server.max_open_requests == 4
        assert store.redis.zcard(key) == 0  # every lease given back
        assert not ModelSlot.objects.exists()  # the database was not used for it
    finally:
        store.redis.delete(key, f"{key}:seq")


def test_slots_leased_elsewhere_are_left_alone(slow_server, grade_now, assignment, essay_question):
    other = llm_state.DatabaseStore("another-host:1:x")
    assert other.acquire(slow_server.url, 3, budget=4) == 3
    summary = grade_now(essays(assignment, essay_question, 6))
    assert summary.graded == 6 and slow_server.max_open_requests == 1


def test_what_a_chunk_cannot_send_in_time_goes_back_to_the_queue(
    slow_server, settings, assignment, essay_question, django_capture_on_commit_callbacks
):
    other = llm_state.DatabaseStore("another-host:1:x")
    assert other.acquire(slow_server.url, 4, budget=4) == 4
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 1}  # half a second to send
    answers = essays(assignment, essay_question, 3)
    ids = [a.pk for a in answers]
    with django_capture_on_commit_callbacks(execute=False):
        services.answers_enqueue(answer_ids=ids)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        summary = services.answers_grade_chunk(answer_ids=ids)
    assert sorted(summary.unsent) == ids and slow_server.requests == []
    assert [c.__name__ for c in enqueued if getattr(c, "__name__", "") == "enqueue"] == [
        "enqueue"
    ]  # a new task for them
    assert set(Answer.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        AnswerStatus.GRADING
    }


def test_each_replica_has_its_own_budget(settings, grade_now, assignment, essay_question):
    replicas = [FakeLLM(latency=0.1).start() for _ in range(2)]
    try:
        settings.LLM_BASE_URL = ",".join(r.url for r in replicas)
        settings.LLM_MAX_CONCURRENCY = 3
        settings.LLM_SAMPLES = 1
        summary = grade_now(essays(assignment, essay_question, 24))
    finally:
        for replica in replicas:
            replica.stop()
    assert summary.graded == 24
    assert [r.max_open_requests for r in replicas] == [3, 3]
    assert sum(len(r.requests) for r in replicas) == 24


def test_chunks_are_sized_from_a_workers_share(settings):
    settings.LLM_BASE_URL = "http://a/v1,http://b/v1"
    settings.LLM_MAX_CONCURRENCY = 64
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 4}
    settings.GRADING_CHUNK_SIZE = 0
    assert services.per_worker_concurrency() == 32 and services.chunk_size() == 128


# --- Three clusters, one budget ------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the qcluster processes share the test database: run with DATABASE_URL=postgres://…",
)
def test_three_clusters_share_one_budget(transactional_db, assignment, essay_question, tmp_path):
    from .cluster_support import Cluster, cluster_environment, wait_until_final

    fake = FakeLLM(latency=0.2).start()
    env = cluster_environment(
        llm_url=fake.url,
        LLM_BACKOFF_BASE="0.01",
        LLM_MAX_CONCURRENCY="6",
        GRADING_CHUNK_SIZE="12",
        Q_WORKERS="2",
        Q_TIMEOUT="30",
        Q_RETRY="40",
        Q_POLL="0.1",
    )
    clusters = [Cluster(env, tmp_path / f"qcluster-{i}.log") for i in range(3)]
    for cluster in clusters:
        cluster.start()
    try:
        answers = essays(assignment, essay_question, 120)
        qs = Answer.objects.filter(pk__in=[a.pk for a in answers])
        settings_chunk = 12
        ids = [a.pk for a in answers]
        for start in range(0, len(ids), settings_chunk):
            services.answers_enqueue(answer_ids=ids[start : start + settings_chunk])
        wait_until_final(qs, timeout=120)
        assert set(qs.values_list("status", flat=True)) == {AnswerStatus.GRADED}
        assert fake.max_open_requests <= 6
        assert fake.max_open_requests >= 5  # the budget is used, not starved
    finally:
        for cluster in clusters:
            cluster.stop()
        fake.stop()
