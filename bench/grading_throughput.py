"""Grading throughput through the real pipeline, against a server that behaves like vLLM.

A loopback OpenAI-compatible server serves at most C requests at once, each
holding its slot for L seconds (continuous batching, idealised). N distinct
answers are graded by a real `manage.py qcluster` (django-q2, ORM broker),
with prompt building, HTTP, validation and database writes all real.

Printed: achieved answers/s; the ideal N / (ceil(N/C) * L); their ratio; the
same pipeline forced to one request at a time (the naive design: one
blocking call per answer) and the speed-up over it; and the pipeline's own
CPU time per answer (every qcluster process, not the fake server). The last
line is machine-readable:

    throughput_ratio=<x> naive_speedup=<y> cpu_ms_per_answer=<z>

Database: BENCH_DATABASE_URL, else DATABASE_URL with "_bench" appended to a
PostgreSQL database name, else a fresh SQLite file.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def bench_database_url(tmp: Path) -> str:
    if url := os.environ.get("BENCH_DATABASE_URL"):
        return url
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "_bench"))
    return f"sqlite:///{tmp / 'bench.sqlite3'}"


def recreate_postgres(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def group_cpu_seconds(pgid: int) -> float:
    """CPU of every live process in the group, plus what their reaped children used."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        # fields[0] is state (field 3); pgrp is field 5; utime..cstime are fields 14–17.
        if int(fields[2]) == pgid:
            total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


class Cluster:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def cpu(self) -> float:
        return group_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def make_assignment(n: int, tag: str):
    """N students, each with one distinct essay answer to one five-criterion question."""
    from django.utils import timezone

    from courses import demo_data
    from courses.management.commands.seed_demo import _rubric
    from courses.models import Assignment, AssignmentState, Course, Question, QuestionKind, User
    from grading.models import Answer, Submission, SubmissionStatus
    from grading.rubric_templates import ESSAY_RUBRIC

    course, _ = Course.objects.get_or_create(code="BENCH", defaults={"title": "Bench"})
    rubric = _rubric(ESSAY_RUBRIC, owner=None, is_template=False)
    assignment = Assignment.objects.create(
        course=course, title=f"bench {tag}", state=AssignmentState.PUBLISHED
    )
    question = Question.objects.create(
        assignment=assignment,
        order=1,
        kind=QuestionKind.ESSAY,
        prompt=demo_data.ESSAY_PROMPT,
        rubric=rubric,
        reference_answer=demo_data.ESSAY_REFERENCE,
        grader_guidelines=demo_data.ESSAY_GUIDELINES,
    )
    users = User.objects.bulk_create(User(username=f"{tag}-{i:05d}") for i in range(n))
    now = timezone.now()
    submissions = Submission.objects.bulk_create(
        Submission(
            assignment=assignment,
            student=u,
            status=SubmissionStatus.SUBMITTED,
            submitted_at=now,
        )
        for u in users
    )
    essays = [e for e in demo_data.ESSAYS if len(e) > 50]
    Answer.objects.bulk_create(
        Answer(
            submission=s,
            question=question,
            # Distinct across runs too: the pipeline would reuse an identical answer's result.
            text=f"{essays[i % len(essays)]}\n（{tag} 第 {i} 份）",
        )
        for i, s in enumerate(submissions)
    )
    return assignment


def run_pipeline(
    *,
    env: dict[str, str],
    n: int,
    tag: str,
    workers: int,
    concurrency: int,
    log: Path,
    clusters: int = 1,
) -> tuple[float, float]:
    """Grade n answers through `clusters` fresh clusters of `workers` workers each (as if on
    as many hosts), sharing one request budget. Returns (seconds, cluster CPU seconds)."""
    from django.conf import settings

    from grading import services
    from grading.models import Answer, AnswerStatus

    env = {**env, "Q_WORKERS": str(workers), "LLM_MAX_CONCURRENCY": str(concurrency)}
    # The enqueuing process must size chunks like the clusters do.
    settings.Q_CLUSTER["workers"] = workers
    settings.LLM_MAX_CONCURRENCY = concurrency
    assignment = make_assignment(n, tag)
    running = [Cluster(env, log.with_name(f"{log.stem}-{i}{log.suffix}")) for i in range(clusters)]
    time.sleep(4 + clusters)  # let every worker start before the clock does
    try:
        cpu_before = sum(cluster.cpu() for cluster in running)
        started = time.perf_counter()
        services.assignment_grade(assignment=assignment)
        answers = Answer.objects.filter(submission__assignment=assignment)
        deadline = started + 120 + 20 * n * float(env.get("BENCH_LATENCY", "0.5")) / concurrency
        while answers.filter(status__in=[AnswerStatus.PENDING, AnswerStatus.GRADING]).exists():
            if time.perf_counter() > deadline:
                raise SystemExit(f"grading did not finish in time; see {log}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        cpu = sum(cluster.cpu() for cluster in running) - cpu_before
        graded = answers.filter(status=AnswerStatus.GRADED).count()
        if graded != n:
            raise SystemExit(f"only {graded} of {n} answers graded; see {log}")
    finally:
        for cluster in running:
            cluster.stop()
    return elapsed, cpu


def prepare(*, capacity: int, latency: float) -> tuple[Path, str, dict[str, str], Any]:
    """A migrated bench database, Django set up, and a loopback model server started.

    Returns (scratch directory, database URL, the clusters' environment, the server)."""
    tmp = Path(tempfile.mkdtemp(prefix="markwise-bench-"))
    db_url = bench_database_url(tmp)
    if db_url.startswith(("postgres://", "postgresql://")):
        recreate_postgres(db_url)
    os.environ["DATABASE_URL"] = db_url
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["BENCH_LATENCY"] = str(latency)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=os.environ,
        check=True,
    )

    from tests.fake_llm import FakeLLM

    fake = FakeLLM(capacity=capacity, latency=latency).start()
    # The enqueuing process and the cluster must agree on settings (tasks are signed).
    os.environ.update(LLM_BASE_URL=fake.url, DEBUG="false", SECRET_KEY="bench-" + "x" * 50)
    env = dict(os.environ)
    import django

    django.setup()
    return tmp, db_url, env, fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="answers to grade")
    parser.add_argument("-c", type=int, default=64, help="server slots (requests in flight)")
    parser.add_argument("-l", type=float, default=0.5, help="seconds each request holds a slot")
    parser.add_argument("--workers", type=int, default=2, help="qcluster workers")
    parser.add_argument(
        "--client-concurrency",
        type=int,
        default=0,
        help="LLM_MAX_CONCURRENCY for the run (default 2*C: the server's queue never runs dry)",
    )
    parser.add_argument("--naive-n", type=int, default=40, help="answers for the naive run")
    args = parser.parse_args()
    # Stopped from outside (a timeout, Ctrl-C): still stop the clusters we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp, db_url, env, fake = prepare(capacity=args.c, latency=args.l)

    print(f"database: {db_url.split('@')[-1]}")
    print(f"server: C={args.c} slots, L={args.l}s per request; N={args.n} answers")
    client_concurrency = args.client_concurrency or 2 * args.c
    print(f"pipeline: {args.workers} workers, LLM_MAX_CONCURRENCY={client_concurrency}")
    seconds, cpu = run_pipeline(
        env=env,
        n=args.n,
        tag="full",
        workers=args.workers,
        concurrency=client_concurrency,
        log=tmp / "qcluster-full.log",
    )
    achieved = args.n / seconds
    ideal = args.n / (math.ceil(args.n / args.c) * args.l)
    print(
        f"pipeline: {seconds:.2f}s, {achieved:.1f} answers/s; server max in flight "
        f"{fake.max_in_flight}"
    )
    print(f"ideal:    {ideal:.1f} answers/s  ratio {achieved / ideal:.3f}")
    fake.max_in_flight = 0

    naive_seconds, _ = run_pipeline(
        env=env,
        n=args.naive_n,
        tag="naive",
        workers=1,
        concurrency=1,
        log=tmp / "qcluster-naive.log",
    )
    naive = args.naive_n / naive_seconds
    print(
        f"naive:    {naive:.2f} answers/s (one request at a time, N={args.naive_n}); "
        f"speed-up {achieved / naive:.1f}x"
    )
    cpu_ms = cpu / args.n * 1000
    print(f"cpu:      {cpu:.2f}s in the cluster, {cpu_ms:.2f} ms per answer")
    fake.stop()
    print(
        f"throughput_ratio={achieved / ideal:.3f} naive_speedup={achieved / naive:.1f} "
        f"cpu_ms_per_answer={cpu_ms:.2f}"
    )


if __name__ == "__main__":
    main()
