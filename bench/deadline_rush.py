"""Deadline rush: 500 students hand in during the last seconds while a qcluster grades.

The deployment as in production, on loopback: the app under gunicorn (sync workers,
as docker/entrypoint.sh runs it, DEBUG off, whitenoise and the manifest storage) on
PostgreSQL with the Redis broker, a django-q2 qcluster grading against the loopback
model server (tests/fake_llm.py, vLLM-like: C slots, L seconds each), and N students
of one course with an assignment of an essay and a single-choice question.

N asyncio clients (httpx, one cookie jar each) first log in through the login form and
open the assignment; then, all together, each hands in within `--spread` seconds and
also fetches a cheap page (the student's home page) at a random moment of the same
window, so both are measured under the same load. A tenth of the students double-click:
the same form is posted twice at once, which must hand in once.

Logins hash with courses.hashers.InitialPasswordHasher (PBKDF2, 20,000 iterations)
made the preferred hasher through a settings module this script writes: with the
default 1,000,000 iterations each login costs ~0.4 s of a core, and 500 logins would
measure PBKDF2 on two cores for minutes, not Markwise (and the login view would re-hash
every initial password). A real school's students log in over the exam, not all in
the last minute.

Checked afterwards in the database: every accepted hand-in (a redirect; a refusal
shows the form again, status 400) is a submitted submission with exactly the text
sent (else "lost"); one submission, one hand-in audit event and at most one model
assessment per answer (else "duplicates"). Then the cluster drains, and the answers
graded (an AI proposal for the essay, the answer key's score for the choice) are
counted: the target is every answer handed in.
Target: 0 lost, 0 duplicates, 0 5xx, hand-in p95 at most 5x the cheap page's p95.
The last line is machine-readable:

    submitted=<n> lost=<n> duplicates=<n> http_5xx=<n> submit_p95_ratio=<x> graded=<n>

Database: RUSH_DATABASE_URL, else the PostgreSQL server of DATABASE_URL (else
127.0.0.1:5432) with the database name markwise_rush, dropped and created afresh.
Broker: RUSH_REDIS_URL, else redis://127.0.0.1:6379/14 (that Redis database is emptied;
13 belongs to tests/test_redis_broker.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grading_throughput import recreate_postgres  # noqa: E402

PASSWORD = "rush-password-2026"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
SETTINGS_MODULE = """\
# Written by bench/deadline_rush.py: production settings, cheaper login hashing (see there).
from config.settings import *  # noqa: F403

PASSWORD_HASHERS = [
    "courses.hashers.InitialPasswordHasher",
    *[h for h in PASSWORD_HASHERS if h != "courses.hashers.InitialPasswordHasher"],  # noqa: F405
]
"""
FAKE_SERVER = """\
import sys
from tests.fake_llm import FakeLLM
fake = FakeLLM(capacity=int(sys.argv[1]), latency=float(sys.argv[2])).start()
print(fake.url, flush=True)
sys.stdin.read()  # serve until the benchmark closes this pipe
print(fake.max_in_flight, sum(fake.modes.values()), flush=True)
"""
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
HAND_IN_TOKEN = re.compile(r'name="hand_in_token" value="([^"]*)"')


def rush_database_url() -> str:
    if url := os.environ.get("RUSH_DATABASE_URL"):
        return url
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        url = "postgres://postgres@127.0.0.1:5432/markwise"
    return urlunsplit(urlsplit(url)._replace(path="/markwise_rush"))


def redis_reset(url: str) -> None:
    try:
        import redis
    except ImportError:
        raise SystemExit(
            "The Redis broker needs the `redis` package: pip install -e '.[redis]'"
        ) from None
    redis.Redis.from_url(url).flushdb()  # this benchmark's own database number


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Process:
    """A child in its own session, so it stops with everything it started."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def essay_text(i: int) -> str:
    from courses import demo_data

    essays = [e for e in demo_data.ESSAYS if len(e) > 50]
    # Distinct per student: the pipeline would reuse an identical answer's result.
    return f"{essays[i % len(essays)]}\n（第 {i} 份）"


def make_school(n: int):
    """One course, N enrolled students with one password, an open assignment."""
    import datetime

    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from courses import demo_data
    from courses.management.commands.seed_demo import _rubric
    from courses.models import (
        Assignment,
        AssignmentState,
        Course,
        Enrollment,
        Question,
        QuestionKind,
        Role,
        User,
    )
    from grading.rubric_templates import ESSAY_RUBRIC

    course = Course.objects.create(code="RUSH", title="Rush", language="zh-hans")
    encoded = make_password(PASSWORD)  # the preferred hasher: InitialPasswordHasher here
    users = User.objects.bulk_create(
        User(username=f"rush{i:04d}", name=f"Student {i}", password=encoded) for i in range(n)
    )
    Enrollment.objects.bulk_create(
        Enrollment(course=course, user=u, role=Role.STUDENT) for u in users
    )
    assignment = Assignment.objects.create(
        course=course,
        title="期末作文",
        language="zh-hans",
        state=AssignmentState.PUBLISHED,
        due_at=timezone.now() + datetime.timedelta(hours=1),
    )
    essay = Question.objects.create(
        assignment=assignment,
        order=1,
        kind=QuestionKind.ESSAY,
        prompt=demo_data.ESSAY_PROMPT,
        rubric=_rubric(ESSAY_RUBRIC, owner=None, is_template=False),
        reference_answer=demo_data.ESSAY_REFERENCE,
        grader_guidelines=demo_data.ESSAY_GUIDELINES,
    )
    item = demo_data.ESSAY_ASSIGNMENT_OBJECTIVE[0]
    choice = Question.objects.create(
        assignment=assignment,
        order=2,
        kind=item["kind"],
        prompt=item["prompt"],
        options=item["options"],
        answer_key=item["answer_key"],
        points=item["points"],
    )
    return assignment, essay, choice, [u.username for u in users]


@dataclass
class Tally:
    submit_ms: list[float] = field(default_factory=list)
    cheap_ms: list[float] = field(default_factory=list)
    login_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    accepted: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def record(self, what: str, response: httpx.Response) -> None:
        self.statuses[f"{what} {response.status_code}"] += 1


async def student(
    i: int,
    *,
    base: str,
    username: str,
    assignment_pk: int,
    essay_pk: int,
    choice_pk: int,
    double_click: bool,
    ready: asyncio.Event,
    logged_in: list[int],
    spread: float,
    tally: Tally,
) -> None:
    rng = random.Random(i)
    timeout = httpx.Timeout(120.0)
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
        try:
            started = time.perf_counter()
            page = await client.get("/accounts/login/")
            token = CSRF.search(page.text)
            response = await client.post(
                "/accounts/login/",
                data={
                    "username": username,
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": token.group(1) if token else "",
                },
            )
            tally.record("login", response)
            tally.login_ms.append((time.perf_counter() - started) * 1000)
            work = await client.get(f"/assignments/{assignment_pk}/")
            tally.record("open", work)
            form_csrf, form_token = CSRF.search(work.text), HAND_IN_TOKEN.search(work.text)
            if response.status_code != 302 or form_token is None:
                tally.errors.append(f"{username} has no form to hand in (login {response})")
        except httpx.HTTPError as exc:
            tally.errors.append(f"{username} before the rush: {exc!r}")
            return
        finally:
            logged_in[0] += 1
        await ready.wait()  # everybody is on the form: the last minute starts
        data = {
            "csrfmiddlewaretoken": form_csrf.group(1) if form_csrf else "",
            "hand_in_token": form_token.group(1) if form_token else "",
            f"text-{essay_pk}": essay_text(i),
            f"choice-{choice_pk}": "B",
            "action": "submit",
        }

        async def post() -> None:
            began = time.perf_counter()
            try:
                result = await client.post(f"/assignments/{assignment_pk}/", data=data)
            except httpx.HTTPError as exc:
                tally.errors.append(f"{username} hand-in: {exc!r}")
                tally.statuses["submit error"] += 1
                return
            tally.submit_ms.append((time.perf_counter() - began) * 1000)
            tally.record("submit", result)
            # Handed in: a redirect (a refusal shows the form again, with status 400).
            if result.status_code == 302:
                tally.accepted.add(i)

        async def hand_in() -> None:
            await asyncio.sleep(rng.uniform(0, spread))
            # A double click posts the same form twice at once: it must hand in once.
            await asyncio.gather(*(post() for _ in range(2 if double_click else 1)))

        async def cheap_page() -> None:
            await asyncio.sleep(rng.uniform(0, spread))
            began = time.perf_counter()
            try:
                response = await client.get("/")
            except httpx.HTTPError as exc:
                tally.errors.append(f"{username} home page: {exc!r}")
                tally.statuses["home error"] += 1
                return
            tally.cheap_ms.append((time.perf_counter() - began) * 1000)
            tally.record("home", response)

        await asyncio.gather(hand_in(), cheap_page())


async def rush(
    *, base: str, assignment, essay, choice, usernames: list[str], spread: float, tally: Tally
) -> tuple[float, float]:
    """(seconds for every student to log in and open the form, seconds of the rush)."""
    ready = asyncio.Event()
    logged_in = [0]
    rng = random.Random(2026)
    double = set(rng.sample(range(len(usernames)), len(usernames) // 10))
    began = time.perf_counter()
    tasks = [
        asyncio.create_task(
            student(
                i,
                base=base,
                username=name,
                assignment_pk=assignment.pk,
                essay_pk=essay.pk,
                choice_pk=choice.pk,
                double_click=i in double,
                ready=ready,
                logged_in=logged_in,
                spread=spread,
                tally=tally,
            )
        )
        for i, name in enumerate(usernames)
    ]
    while logged_in[0] < len(usernames):
        await asyncio.sleep(0.05)
    login_seconds = time.perf_counter() - began
    began = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    return login_seconds, time.perf_counter() - began


def served_ms(log: Path, assignment_pk: int) -> tuple[list[float], list[float]]:
    """Milliseconds the workers spent on each hand-in and each home page (access log)."""
    hand_ins, home = [], []
    for line in log.read_text().splitlines():
        method, path, _status, micros = line.split()
        if method == "POST" and path == f"/assignments/{assignment_pk}/":
            hand_ins.append(int(micros) / 1000)
        elif method == "GET" and path == "/":
            home.append(int(micros) / 1000)
    return hand_ins, home


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return (values[0],) * 3 if values else (0.0, 0.0, 0.0)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def check_database(assignment, essay, tally: Tally, n: int) -> tuple[int, int, int]:
    """(submitted, lost, duplicates) as the database has them."""
    from django.db.models import Count

    from grading.models import (
        Answer,
        AuditEvent,
        Submission,
        SubmissionStatus,
    )

    submissions = Submission.objects.filter(assignment=assignment)
    submitted = submissions.filter(status=SubmissionStatus.SUBMITTED)
    by_student = {
        int(s.student.username.removeprefix("rush")): s for s in submitted.select_related("student")
    }
    texts = dict(
        Answer.objects.filter(question=essay, submission__in=submitted).values_list(
            "submission_id", "text"
        )
    )
    lost = 0
    for i in tally.accepted:
        found = by_student.get(i)
        if found is None or texts.get(found.pk) != essay_text(i):
            lost += 1
    extra_submissions = sum(
        row["n"] - 1
        for row in submissions.values("student").annotate(n=Count("pk")).filter(n__gt=1)
    )
    extra_hand_ins = sum(
        row["n"] - 1
        for row in AuditEvent.objects.filter(
            action="submission.submitted", assignment_id=assignment.pk
        )
        .values("target_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    extra_runs = sum(
        row["n"] - 1
        for row in Answer.objects.filter(question=essay, submission__assignment=assignment)
        .annotate(n=Count("assessments"))
        .filter(n__gt=1)
        .values("n")
    )
    return submitted.count(), lost, extra_submissions + extra_hand_ins + extra_runs


def drain(assignment, timeout: float) -> tuple[float, Counter[str]]:
    from grading.models import Answer, AnswerStatus

    answers = Answer.objects.filter(submission__assignment=assignment)
    began = time.perf_counter()
    while answers.filter(status__in=[AnswerStatus.PENDING, AnswerStatus.GRADING]).exists():
        if time.perf_counter() - began > timeout:
            break
        time.sleep(0.25)
    return time.perf_counter() - began, Counter(answers.values_list("status", flat=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=500, help="students")
    parser.add_argument("--spread", type=float, default=3.0, help="seconds of the rush")
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--q-workers", type=int, default=2, help="qcluster workers")
    parser.add_argument("-c", type=int, default=64, help="model server slots")
    parser.add_argument("-l", type=float, default=0.5, help="seconds per model request")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # One socket per client, all at once.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.n + 256)), hard))

    tmp = Path(tempfile.mkdtemp(prefix="markwise-rush-"))
    (tmp / "rush_settings.py").write_text(SETTINGS_MODULE)
    sys.path.insert(0, str(tmp))  # this process creates the school with the same settings
    db_url = rush_database_url()
    redis_url = os.environ.get("RUSH_REDIS_URL", DEFAULT_REDIS)
    recreate_postgres(db_url)
    redis_reset(redis_url)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "rush_settings",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "SECRET_KEY": "rush-" + "x" * 50,
        "AUDIT_KEY": "rush-audit-" + "y" * 40,
        "AUDIT_CHECKPOINT_DIR": str(tmp / "audit"),
        "ALLOWED_HOSTS": "127.0.0.1",
        # Plain HTTP on loopback: no proxy in front to terminate TLS.
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "STATIC_ROOT": str(tmp / "static"),
        "LOG_LEVEL": "WARNING",
        "Q_WORKERS": str(args.q_workers),
    }
    env.pop("CACHE_URL", None)
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run(
            [sys.executable, "manage.py", *command, "-v0"], cwd=ROOT, env=env, check=True
        )

    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, str(args.c), str(args.l)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None and fake.stdin is not None
    env["LLM_BASE_URL"] = fake.stdout.readline().strip()
    os.environ.update(env)
    import django

    django.setup()
    assignment, essay, choice, usernames = make_school(args.n)

    port = free_port()
    web = Process(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.web_workers),
            "--timeout",
            "60",
            "--backlog",
            "2048",
            # Each request's own time in the worker (microseconds): the rest of what the
            # clients measure is waiting for a free worker.
            "--access-logfile",
            str(tmp / "access.log"),
            "--access-logformat",
            "%(m)s %(U)s %(s)s %(D)s",
        ],
        env=env,
        log=tmp / "gunicorn.log",
    )
    cluster = Process([sys.executable, "manage.py", "qcluster"], env=env, log=tmp / "qcluster.log")
    tally = Tally()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", web.proc)
        time.sleep(3)  # the cluster's workers start before the clock does
        print(f"database: {db_url.split('@')[-1]}  broker: {redis_url}")
        print(
            f"web: gunicorn, {args.web_workers} sync workers; cluster: {args.q_workers} workers; "
            f"model server: C={args.c}, L={args.l}s"
        )
        login_s, rush_s = asyncio.run(
            rush(
                base=f"http://127.0.0.1:{port}",
                assignment=assignment,
                essay=essay,
                choice=choice,
                usernames=usernames,
                spread=args.spread,
                tally=tally,
            )
        )
        submitted, lost, duplicates = check_database(assignment, essay, tally, args.n)
        drain_s, outcome = drain(assignment, args.drain_timeout)
    finally:
        cluster.stop()
        web.stop()
        fake.stdin.close()
        fake_stats = fake.stdout.read().split()
        fake.wait(timeout=10)

    http_5xx = sum(v for k, v in tally.statuses.items() if k.split()[-1].startswith("5"))
    submit = percentiles(tally.submit_ms)
    cheap = percentiles(tally.cheap_ms)
    login = percentiles(tally.login_ms)
    ratio = submit[1] / cheap[1] if cheap[1] else float("inf")
    print(f"logins: {args.n} students logged in and opened the form in {login_s:.1f}s")
    print(f"rush: {rush_s:.1f}s; responses: {dict(sorted(tally.statuses.items()))}")
    served_hand_in, served_home = served_ms(tmp / "access.log", assignment.pk)
    for name, (p50, p95, p99) in (
        ("login", login),
        ("hand-in", submit),
        ("home page", cheap),
        ("hand-in, in the worker", percentiles(served_hand_in)),
        ("home page, in the worker", percentiles(served_home)),
    ):
        print(f"{name:>24}: p50 {p50:.0f} ms  p95 {p95:.0f} ms  p99 {p99:.0f} ms")
    for error in tally.errors[:10]:
        print(f"error: {error}")
    # Essays wait for review with a proposal; the answer key's scores are final at once.
    graded = outcome.get("graded", 0) + outcome.get("approved", 0)
    print(
        f"accepted {len(tally.accepted)} hand-ins; in the database {submitted} submitted, "
        f"{lost} lost, {duplicates} duplicates"
    )
    print(
        f"drained in {drain_s:.1f}s after the rush: answers {dict(outcome)}; model server "
        f"max in flight {fake_stats[0] if fake_stats else '?'}, "
        f"requests {fake_stats[1] if len(fake_stats) > 1 else '?'}"
    )
    print(f"logs: {tmp}")
    print(
        f"submitted={submitted} lost={lost} duplicates={duplicates} http_5xx={http_5xx} "
        f"submit_p95_ratio={ratio:.2f} graded={graded}"
    )


if __name__ == "__main__":
    main()
