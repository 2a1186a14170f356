"""A real `manage.py qcluster` for the tests that need one: start, kill, wait.

A helper module (like fake_llm.py), not a test module: test files import from here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection
from django.db.models import Count, Q

from grading.models import AnswerStatus, AssessmentStatus

ROOT = Path(__file__).resolve().parent.parent
FINAL = (AnswerStatus.GRADED, AnswerStatus.NEEDS_MANUAL, AnswerStatus.APPROVED)


def database_url() -> str:
    """The test database as a URL, for a cluster process to share it."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def cluster_environment(*, llm_url: str, **settings: str) -> dict[str, str]:
    """The environment of a real qcluster: this process's, less its model and queue
    settings, with the test database, the given model server and the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "Q_", "GRADING_"))}
    env.update(DATABASE_URL=database_url(), LLM_BASE_URL=llm_url, DEBUG="true", **settings)
    return env


class Cluster:
    """One qcluster process group, started and killed like an operator would."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the whole group: no clean shutdown, tasks in flight are not acknowledged."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until_final(answers, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not answers.exclude(status__in=FINAL).exists():
            return
        time.sleep(0.3)
    left = answers.exclude(status__in=FINAL).count()
    raise AssertionError(f"{left} answers still not final after {timeout}s")


def completed_runs_per_answer(answers) -> dict[int, int]:
    return dict(
        answers.annotate(
            runs=Count("assessments", filter=Q(assessments__status=AssessmentStatus.COMPLETED))
        ).values_list("pk", "runs")
    )
